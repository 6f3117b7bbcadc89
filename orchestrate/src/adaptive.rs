//! Loss-driven adaptive sampling of a parameter space, after python-adaptive's `Learner1D`
//! and `LearnerND` (Nijholt et al., "Adaptive: parallel active learning of mathematical
//! functions", 2019).
//!
//! A learner proposes points ([`Learner1D::ask`]); the orchestrator runs them, several at a
//! time, and reports each result ([`Learner1D::tell`]) or failure
//! ([`Learner1D::tell_failed`]). Points in flight are *pending*: they already split the
//! region they lie in, and each part inherits its parent's loss in proportion to its size,
//! so a batch of asks spreads over the regions that need it instead of piling into one. A
//! failed point (NaN or infinite value) is left out of every loss and never proposed again.
//!
//! Learners are deterministic: the same sequence of asks and tells yields the same points,
//! so a study can rebuild its learner by replaying its journal.

use std::collections::BTreeMap;

/// Bounds that do not describe a non-empty finite interval.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("adaptive sampling: bounds of {axis} must be finite with lower < upper, got [{lo}, {hi}]")]
pub struct BoundsError {
    /// The axis: "x" or "y".
    pub axis: &'static str,
    /// The lower bound given.
    pub lo: f64,
    /// The upper bound given.
    pub hi: f64,
}

fn check_bounds(axis: &'static str, lo: f64, hi: f64) -> Result<(), BoundsError> {
    if lo.is_finite() && hi.is_finite() && lo < hi {
        Ok(())
    } else {
        Err(BoundsError { axis, lo, hi })
    }
}

/// State of a point of a learner.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Part of the initial design, not handed out yet.
    Unasked,
    /// Handed out by `ask`, no result yet.
    Pending,
    /// Completed with this value.
    Done(f64),
    /// The run failed: excluded from losses, never asked again.
    Failed,
}

impl State {
    fn from_value(v: f64) -> Self {
        if v.is_finite() {
            State::Done(v)
        } else {
            State::Failed
        }
    }

    fn value(self) -> Option<f64> {
        match self {
            State::Done(v) => Some(v),
            _ => None,
        }
    }
}

/// Range (min, max - min) of the completed values, `None` when they are all equal or absent.
fn value_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (hi > lo).then_some((lo, hi - lo))
}

/// Adaptive sampler of a function on an interval [a, b].
///
/// The loss of an interval between consecutive completed points is python-adaptive's
/// `default_loss`: the length of the segment joining them, with x scaled by b - a and y by
/// the range of all completed values (x alone when that range is zero). `ask` splits the
/// interval of largest loss at its midpoint. An interval cut by pending or failed points
/// has its parts weighted by their length fraction; a part not enclosed by two completed
/// points has loss dx / (b - a).
#[derive(Debug, Clone)]
pub struct Learner1D {
    a: f64,
    b: f64,
    /// Every point asked or told, sorted by x.
    samples: Vec<(f64, State)>,
}

impl Learner1D {
    /// A learner on [a, b]; both finite with a < b.
    pub fn new(a: f64, b: f64) -> Result<Self, BoundsError> {
        check_bounds("x", a, b)?;
        Ok(Self { a: a + 0.0, b: b + 0.0, samples: Vec::new() }) // + 0.0: -0.0 -> 0.0
    }

    /// The next `n` points to run, registered as pending: first a and b, then points
    /// spread over the intervals of largest loss. As python-adaptive does, the `n` points
    /// are placed together: an interval of loss L that gets k - 1 of them is cut into k
    /// equal parts of loss L / k each, with the k_i chosen to minimise the largest L_i / k_i
    /// (one point at a time to the interval whose parts have the largest loss; ties go to
    /// the leftmost), so a batch of two in one interval cuts it in thirds rather than
    /// halving it and then halving a half. Returns fewer only if no interval can be split
    /// any more in floating point.
    pub fn ask(&mut self, n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n);
        for x in [self.a, self.b] {
            if out.len() < n && self.find(x).is_err() {
                self.record(x, State::Pending);
                out.push(x);
            }
        }
        let mut ivals = self.interval_losses();
        // Parts per interval; an interval that cannot be cut finer stops taking points.
        let mut parts = vec![1usize; ivals.len()];
        let cut = |(l, r): (f64, f64), k: usize, j: usize| l + (r - l) * (j as f64 / k as f64);
        let fits = |(l, r): (f64, f64), k: usize| (1..k).all(|j| cut((l, r), k, j - 1) < cut((l, r), k, j)) && cut((l, r), k, k - 1) < r;
        while out.len() + parts.iter().map(|k| k - 1).sum::<usize>() < n {
            let mut best: Option<(f64, usize)> = None;
            for (i, iv) in ivals.iter().enumerate() {
                let loss = iv.2 / parts[i] as f64;
                if loss.is_finite() && best.is_none_or(|(b, _)| loss > b) && fits((iv.0, iv.1), parts[i] + 1) {
                    best = Some((loss, i));
                }
            }
            let Some((_, i)) = best else { break };
            parts[i] += 1;
            if !fits((ivals[i].0, ivals[i].1), parts[i] + 1) {
                ivals[i].2 = f64::NAN; // no finer cut: it takes no more points
            }
        }
        for (iv, &k) in ivals.iter().zip(&parts) {
            for j in 1..k {
                let x = cut((iv.0, iv.1), k, j);
                self.record(x, State::Pending);
                out.push(x);
            }
        }
        out
    }

    /// Records the result `y` at `x` (asked or not). A NaN or infinite `y` marks a failed
    /// run. Returns false, and ignores the point, if `x` is NaN or outside [a, b].
    pub fn tell(&mut self, x: f64, y: f64) -> bool {
        self.record(x, State::from_value(y))
    }

    /// Records that the run at `x` failed; it is never asked again. Returns false, and
    /// ignores the point, if `x` is NaN or outside [a, b].
    pub fn tell_failed(&mut self, x: f64) -> bool {
        self.record(x, State::Failed)
    }

    /// The largest loss over intervals between consecutive completed points (0 with fewer
    /// than two).
    pub fn loss(&self) -> f64 {
        let scale = self.value_scale();
        self.points().windows(2).map(|w| self.interval_loss(w[0], w[1], scale)).fold(0.0, f64::max)
    }

    /// Completed points (x, y), sorted by x.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.samples.iter().filter_map(|&(x, s)| Some((x, s.value()?))).collect()
    }

    /// True once both bounds have been asked, two points are complete and [`Self::loss`]
    /// is at most `loss_goal`. Regions next to failed points carry no loss: pair this with
    /// a budget of runs.
    pub fn done(&self, loss_goal: f64) -> bool {
        let bounds_asked = self.find(self.a).is_ok() && self.find(self.b).is_ok();
        bounds_asked && self.points().len() >= 2 && self.loss() <= loss_goal
    }

    fn find(&self, x: f64) -> Result<usize, usize> {
        self.samples.binary_search_by(|(sx, _)| sx.total_cmp(&x))
    }

    fn record(&mut self, x: f64, state: State) -> bool {
        if !(self.a <= x && x <= self.b) {
            return false;
        }
        let x = x + 0.0; // -0.0 -> 0.0, so that lookups by total order match
        match self.find(x) {
            Ok(i) => self.samples[i].1 = state,
            Err(i) => self.samples.insert(i, (x, state)),
        }
        true
    }

    fn value_scale(&self) -> Option<f64> {
        value_range(self.samples.iter().filter_map(|s| s.1.value())).map(|(_, range)| range)
    }

    fn interval_loss(&self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), scale: Option<f64>) -> f64 {
        let dx = (x1 - x0) / (self.b - self.a);
        scale.map_or(dx, |s| dx.hypot((y1 - y0) / s))
    }

    /// Every interval between consecutive points of any state, with its loss: the loss
    /// of the enclosing completed pair weighted by the interval's length fraction, or
    /// dx / (b - a) where no completed pair encloses it.
    fn interval_losses(&self) -> Vec<(f64, f64, f64)> {
        let scale = self.value_scale();
        let done = |i: usize| self.samples[i].1.value().map(|y| (self.samples[i].0, y));
        // Nearest completed point at or before / at or after each sample.
        let mut before = Vec::with_capacity(self.samples.len());
        for i in 0..self.samples.len() {
            before.push(done(i).or_else(|| before.last().copied().flatten()));
        }
        let mut after = vec![None; self.samples.len()];
        for i in (0..self.samples.len()).rev() {
            after[i] = done(i).or_else(|| after.get(i + 1).copied().flatten());
        }
        self.samples
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let (l, r) = (w[0].0, w[1].0);
                let loss = match (before[i], after[i + 1]) {
                    (Some(p), Some(q)) => self.interval_loss(p, q, scale) * (r - l) / (q.0 - p.0),
                    _ => (r - l) / (self.b - self.a),
                };
                (l, r, loss)
            })
            .collect()
    }
}

/// Max |piecewise-linear interpolant of `points` - f| over `samples` (at least 2) uniformly
/// spaced abscissae spanning the points. Non-finite points are skipped; infinity if fewer
/// than two distinct abscissae remain. NaN values of `f` are ignored.
pub fn interpolation_error_1d(points: &[(f64, f64)], f: impl Fn(f64) -> f64, samples: usize) -> f64 {
    let mut pts: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    pts.sort_by(|p, q| p.0.total_cmp(&q.0));
    pts.dedup_by(|p, q| p.0 == q.0);
    let (Some(&(lo, _)), Some(&(hi, _))) = (pts.first(), pts.last()) else { return f64::INFINITY };
    if pts.len() < 2 {
        return f64::INFINITY;
    }
    let samples = samples.max(2);
    (0..samples)
        .map(|k| {
            let x = lo + (hi - lo) * k as f64 / (samples - 1) as f64;
            let i = pts.partition_point(|p| p.0 <= x).clamp(1, pts.len() - 1);
            let ((x0, y0), (x1, y1)) = (pts[i - 1], pts[i]);
            (y0 + (y1 - y0) * (x - x0) / (x1 - x0) - f(x)).abs()
        })
        .fold(0.0, f64::max)
}

/// A vertex of the 2-D triangulation.
#[derive(Debug, Clone)]
struct Vertex {
    /// Physical coordinates.
    p: [f64; 2],
    /// Coordinates scaled to the unit square.
    s: [f64; 2],
    state: State,
}

/// A triangle; replaced (not alive) once bisected.
#[derive(Debug, Clone)]
struct Triangle {
    v: [usize; 3],
    alive: bool,
    /// Share of its parent's loss, used while a vertex is pending or failed.
    inherited: f64,
}

/// Edge key: the vertex indices, smaller first.
type Edge = (usize, usize);

fn edge(a: usize, b: usize) -> Edge {
    (a.min(b), a.max(b))
}

/// Adaptive sampler of a function on a rectangle [x0, x1] × [y0, y1], on a conforming
/// triangulation refined by longest-edge bisection.
///
/// The initial design is the 4 corners and the centre, with 4 triangles fanning from the
/// centre. The loss of a triangle whose vertices are all complete is python-adaptive
/// `LearnerND`'s default: the area of the triangle embedded in 3-D, with x and y scaled to
/// the unit square and the value scaled by the range of completed values. `ask` bisects
/// the triangle of largest loss at the midpoint of its longest edge, together with the
/// neighbour across that edge; when that edge is not also the neighbour's longest, the
/// neighbour is bisected first (Rivara's longest-edge propagation path), so the mesh stays
/// conforming and its angles bounded. Each bisection adds one point. A triangle with a
/// pending or failed vertex carries half its parent's loss (bisection halves the area).
#[derive(Debug, Clone)]
pub struct Learner2D {
    vertices: Vec<Vertex>,
    /// Vertex of each point, by the bits of its coordinates.
    index: BTreeMap<[u64; 2], usize>,
    triangles: Vec<Triangle>,
    /// Alive triangles on each edge (one or two).
    edges: BTreeMap<Edge, Vec<usize>>,
}

impl Learner2D {
    /// A learner on `[x[0], x[1]] × [y[0], y[1]]`; bounds finite with lower < upper.
    pub fn new(x: [f64; 2], y: [f64; 2]) -> Result<Self, BoundsError> {
        check_bounds("x", x[0], x[1])?;
        check_bounds("y", y[0], y[1])?;
        let mut learner = Self { vertices: Vec::new(), index: BTreeMap::new(), triangles: Vec::new(), edges: BTreeMap::new() };
        for s in [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]] {
            let p = [x[0] + s[0] * (x[1] - x[0]), y[0] + s[1] * (y[1] - y[0])];
            learner.add_vertex(p, s, State::Unasked);
        }
        for k in 0..4 {
            learner.add_triangle([k, (k + 1) % 4, 4], 0.25);
        }
        Ok(learner)
    }

    /// The next `n` points to run, registered as pending: first the initial design, then
    /// one new vertex per bisection. Returns fewer only if no triangle can be split any
    /// more in floating point.
    pub fn ask(&mut self, n: usize) -> Vec<[f64; 2]> {
        let mut out = Vec::with_capacity(n);
        for v in self.vertices.iter_mut().filter(|v| v.state == State::Unasked).take(n) {
            v.state = State::Pending;
            out.push(v.p);
        }
        while out.len() < n {
            let scale = self.value_scale();
            let target = self
                .live()
                .filter(|&t| self.midpoint_is_new(self.longest_edge(t)))
                .map(|t| (t, self.current_loss(t, scale)))
                .max_by(|x, y| x.1.total_cmp(&y.1));
            let Some(v) = target.and_then(|(t, _)| self.refine(t, scale)) else { break };
            out.push(self.vertices[v].p);
        }
        out
    }

    /// Records the value at an asked point `p`. A NaN or infinite value marks a failed run.
    /// Returns false, and ignores the call, if `p` is not a point of the learner.
    pub fn tell(&mut self, p: [f64; 2], value: f64) -> bool {
        self.set_state(p, State::from_value(value))
    }

    /// Records that the run at `p` failed; it is never asked again. Returns false if `p` is
    /// not a point of the learner.
    pub fn tell_failed(&mut self, p: [f64; 2]) -> bool {
        self.set_state(p, State::Failed)
    }

    /// The largest loss over triangles whose three vertices are complete (0 if none).
    pub fn loss(&self) -> f64 {
        let scale = self.value_scale();
        self.live().filter_map(|t| self.embedded_area(t, scale)).fold(0.0, f64::max)
    }

    /// Completed points and their values, in the order they were first asked.
    pub fn points(&self) -> Vec<([f64; 2], f64)> {
        self.vertices.iter().filter_map(|v| Some((v.p, v.state.value()?))).collect()
    }

    /// True once the initial design has been asked, some triangle is complete and
    /// [`Self::loss`] is at most `loss_goal`. Pair this with a budget of runs.
    pub fn done(&self, loss_goal: f64) -> bool {
        let scale = self.value_scale();
        let asked = self.vertices.iter().all(|v| v.state != State::Unasked);
        asked && self.live().any(|t| self.embedded_area(t, scale).is_some()) && self.loss() <= loss_goal
    }

    /// The current triangles, as their vertices' coordinates (for plots and checks).
    pub fn triangles(&self) -> Vec<[[f64; 2]; 3]> {
        self.live().map(|t| self.triangles[t].v.map(|v| self.vertices[v].p)).collect()
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.triangles.len()).filter(|&t| self.triangles[t].alive)
    }

    fn set_state(&mut self, p: [f64; 2], state: State) -> bool {
        match self.index.get(&p.map(|c| (c + 0.0).to_bits())) {
            Some(&v) => {
                self.vertices[v].state = state;
                true
            }
            None => false,
        }
    }

    fn add_vertex(&mut self, p: [f64; 2], s: [f64; 2], state: State) -> usize {
        let id = self.vertices.len();
        self.index.insert(p.map(|c| (c + 0.0).to_bits()), id);
        self.vertices.push(Vertex { p, s, state });
        id
    }

    fn add_triangle(&mut self, v: [usize; 3], inherited: f64) {
        let id = self.triangles.len();
        self.triangles.push(Triangle { v, alive: true, inherited });
        for k in 0..3 {
            self.edges.entry(edge(v[k], v[(k + 1) % 3])).or_default().push(id);
        }
    }

    fn value_scale(&self) -> Option<(f64, f64)> {
        value_range(self.vertices.iter().filter_map(|v| v.state.value()))
    }

    /// Area of triangle `t` in (scaled x, scaled y, scaled value); `None` unless its three
    /// vertices are complete.
    fn embedded_area(&self, t: usize, scale: Option<(f64, f64)>) -> Option<f64> {
        let mut q = [[0.0; 3]; 3];
        for (qk, &v) in q.iter_mut().zip(&self.triangles[t].v) {
            let (s, value) = (self.vertices[v].s, self.vertices[v].state.value()?);
            *qk = [s[0], s[1], scale.map_or(0.0, |(lo, range)| (value - lo) / range)];
        }
        let (a, b) = ([0, 1, 2].map(|k| q[1][k] - q[0][k]), [0, 1, 2].map(|k| q[2][k] - q[0][k]));
        let cross = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
        Some(0.5 * cross.iter().map(|c| c * c).sum::<f64>().sqrt())
    }

    fn current_loss(&self, t: usize, scale: Option<(f64, f64)>) -> f64 {
        self.embedded_area(t, scale).unwrap_or(self.triangles[t].inherited)
    }

    /// Squared scaled length of an edge.
    fn length2(&self, (a, b): Edge) -> f64 {
        let (p, q) = (self.vertices[a].s, self.vertices[b].s);
        (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)
    }

    /// Longest edge of `t`, ties broken by vertex indices so the order is strict.
    fn longest_edge(&self, t: usize) -> Edge {
        let v = self.triangles[t].v;
        let edges = [edge(v[0], v[1]), edge(v[1], v[2]), edge(v[2], v[0])];
        edges.into_iter().map(|e| (self.length2(e), e)).max_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1))).map_or(edges[0], |x| x.1)
    }

    fn midpoint(&self, (a, b): Edge) -> ([f64; 2], [f64; 2]) {
        let (a, b) = (&self.vertices[a], &self.vertices[b]);
        let mid = |p: [f64; 2], q: [f64; 2]| [0.5 * (p[0] + q[0]), 0.5 * (p[1] + q[1])];
        (mid(a.p, b.p), mid(a.s, b.s))
    }

    /// Whether the midpoint of `e` is a new point in floating point (the edge can be split).
    fn midpoint_is_new(&self, e: Edge) -> bool {
        !self.index.contains_key(&self.midpoint(e).0.map(|c| (c + 0.0).to_bits()))
    }

    /// One step of Rivara's refinement of `t`: follow the longest-edge propagation path to
    /// its terminal edge (the longest edge of every triangle on it) and bisect that edge.
    /// Edges grow strictly along the path, so it ends. Returns the new vertex, or `None` if
    /// the terminal edge is too short to split in floating point.
    fn refine(&mut self, t: usize, scale: Option<(f64, f64)>) -> Option<usize> {
        let mut current = t;
        loop {
            let e = self.longest_edge(current);
            let neighbour = self.edges.get(&e).and_then(|ts| ts.iter().copied().find(|&o| o != current));
            match neighbour {
                Some(n) if self.longest_edge(n) != e => current = n,
                _ => return self.midpoint_is_new(e).then(|| self.bisect(e, scale)),
            }
        }
    }

    /// Splits edge `e` at its midpoint, bisecting the one or two triangles on it; each half
    /// inherits half of its parent's current loss.
    fn bisect(&mut self, e: Edge, scale: Option<(f64, f64)>) -> usize {
        let (p, s) = self.midpoint(e);
        let m = self.add_vertex(p, s, State::Pending);
        for t in self.edges.remove(&e).unwrap_or_default() {
            let loss = self.current_loss(t, scale);
            let v = self.triangles[t].v;
            let Some(k) = (0..3).find(|&k| edge(v[k], v[(k + 1) % 3]) == e) else { continue };
            let (p, q, c) = (v[k], v[(k + 1) % 3], v[(k + 2) % 3]);
            self.triangles[t].alive = false;
            for other in [edge(q, c), edge(c, p)] {
                if let Some(ts) = self.edges.get_mut(&other) {
                    ts.retain(|&o| o != t);
                }
            }
            self.add_triangle([p, m, c], 0.5 * loss);
            self.add_triangle([m, q, c], 0.5 * loss);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// python-adaptive's tutorial "peak": a narrow bump of width 0.01 on a slope.
    fn peak(x: f64) -> f64 {
        let a2 = 0.01f64.powi(2);
        x + a2 / (a2 + x * x)
    }

    /// python-adaptive's 2-D tutorial "ring": a sharp ridge on the circle r = 0.75.
    fn ring([x, y]: [f64; 2]) -> f64 {
        x + (-(x * x + y * y - 0.75f64.powi(2)).powi(2) / 0.2f64.powi(4)).exp()
    }

    /// Runs `budget` points of `f` through a 1-D learner, `batch` of them in flight at once.
    fn run_1d(learner: &mut Learner1D, f: impl Fn(f64) -> f64, budget: usize, batch: usize) {
        let mut used = 0;
        while used < budget {
            let xs = learner.ask(batch.min(budget - used));
            if xs.is_empty() {
                break;
            }
            used += xs.len();
            for x in xs {
                learner.tell(x, f(x));
            }
        }
    }

    #[test]
    fn first_asks_are_the_bounds_then_the_midpoint() {
        let mut l = Learner1D::new(-1.0, 1.0).unwrap();
        assert_eq!(l.ask(3), [-1.0, 1.0, 0.0]);
        assert_eq!(l.ask(2), [-0.5, 0.5], "nothing told yet: halve the longest intervals");
        assert!(!l.done(1.0) && l.loss() == 0.0 && l.points().is_empty());
    }

    /// f(x) = x told at 0, 1/2, 1: both intervals have loss sqrt(2)/2. A batch of 4 gives
    /// each interval two points, at its thirds, instead of stacking them in one.
    #[test]
    fn pending_points_share_their_interval_loss() {
        let mut l = Learner1D::new(0.0, 1.0).unwrap();
        run_1d(&mut l, |x| x, 3, 3);
        assert!((l.loss() - 0.5f64.hypot(0.5)).abs() < 1e-15);
        assert_eq!(l.ask(4), [1.0 / 6.0, 1.0 / 3.0, 0.5 + 1.0 / 6.0, 0.5 + 1.0 / 3.0], "each interval cut in thirds");
    }

    #[test]
    fn failed_points_are_excluded_and_never_asked_again() {
        let mut l = Learner1D::new(0.0, 1.0).unwrap();
        let first = l.ask(3);
        assert!(l.tell(0.0, 0.0) && l.tell(1.0, 1.0) && l.tell(0.5, f64::NAN));
        assert_eq!(l.points(), [(0.0, 0.0), (1.0, 1.0)]);
        assert!((l.loss() - 2f64.sqrt()).abs() < 1e-15, "the failed point does not enter the loss");
        let mut seen: Vec<f64> = first;
        for round in 0..10 {
            for x in l.ask(3) {
                assert!(!seen.contains(&x), "{x} asked twice");
                seen.push(x);
                if round % 3 == 0 {
                    l.tell_failed(x);
                } else {
                    l.tell(x, x * x);
                }
            }
        }
        assert_eq!(seen.len(), 33);
    }

    #[test]
    fn peak_gets_the_points_and_beats_a_uniform_grid() {
        let budget = 50;
        let xs: Vec<f64> = (0..budget).map(|k| -1.0 + 2.0 * k as f64 / (budget - 1) as f64).collect();
        let uniform: Vec<(f64, f64)> = xs.iter().map(|&x| (x, peak(x))).collect();
        // 20001 samples: spacing 1e-4, a hundredth of the peak's width.
        let uniform_error = interpolation_error_1d(&uniform, peak, 20001);
        for batch in [1, 4] {
            let mut l = Learner1D::new(-1.0, 1.0).unwrap();
            run_1d(&mut l, peak, budget, batch);
            let pts = l.points();
            assert_eq!(pts.len(), budget);
            // |x| < 0.05 is 5 % of the domain: ask for six times the uniform density there.
            let near = pts.iter().filter(|p| p.0.abs() < 0.05).count();
            assert!(near * 10 > 3 * budget, "batch {batch}: only {near} of {budget} points near the peak");
            let error = interpolation_error_1d(&pts, peak, 20001);
            assert!(error < 0.1 * uniform_error, "batch {batch}: error {error} vs uniform {uniform_error}");
        }
    }

    /// For f(x) = 2x + 1 on [0, 1] every interval of length dx has loss sqrt(2) dx, so
    /// loss <= 0.05 needs dx <= 0.035: 33 points by bisection (dx = 1/32).
    #[test]
    fn done_when_the_loss_goal_is_met() {
        let mut l = Learner1D::new(0.0, 1.0).unwrap();
        let mut used = 0;
        while !l.done(0.05) && used < 100 {
            used += 1;
            let x = l.ask(1)[0];
            l.tell(x, 2.0 * x + 1.0);
        }
        assert!(l.loss() <= 0.05);
        assert_eq!(used, 33);
    }

    #[test]
    fn invalid_bounds_and_points_are_rejected() {
        for (a, b) in [(1.0, 1.0), (2.0, 1.0), (f64::NAN, 1.0), (0.0, f64::INFINITY)] {
            let e = Learner1D::new(a, b).unwrap_err();
            assert!(e.to_string().contains("lower < upper"), "{e}");
        }
        assert_eq!(Learner2D::new([0.0, 1.0], [1.0, 0.0]).unwrap_err().axis, "y");
        let mut l = Learner1D::new(0.0, 1.0).unwrap();
        assert!(!l.tell(1.5, 0.0) && !l.tell(f64::NAN, 0.0) && !l.tell_failed(-0.1));
        assert!(l.tell(0.3, 1.0) && l.points() == [(0.3, 1.0)] && l.loss() == 0.0);
    }

    #[test]
    fn exhausted_domains_return_fewer_points() {
        let mut l = Learner1D::new(-0.0, 5e-324).unwrap();
        assert_eq!(l.ask(5), [0.0, 5e-324], "the smallest subnormal interval has no midpoint");
        // At 1e16 neighbouring doubles are 2 apart: each axis offers 3 values, 9 points in all.
        let mut l = Learner2D::new([1e16, 1e16 + 4.0], [1e16, 1e16 + 4.0]).unwrap();
        let asked = run_2d(&mut l, |p| p[1], 100, 10, 0);
        let distinct: HashSet<[u64; 2]> = asked.iter().map(|&p| key(p)).collect();
        assert!(distinct.len() == asked.len() && asked.len() <= 9, "{asked:?}");
        assert!(l.ask(10).is_empty());
    }

    #[test]
    fn interpolation_error_of_known_cases() {
        assert!(interpolation_error_1d(&[(0.0, 1.0), (1.0, 3.0)], |x| 2.0 * x + 1.0, 101) < 1e-15);
        // x^2 through (0, 0) and (1, 1): the chord is x, off by 1/4 at x = 1/2.
        let e = interpolation_error_1d(&[(1.0, 1.0), (0.0, 0.0)], |x| x * x, 101);
        assert!((e - 0.25).abs() < 1e-15);
        assert_eq!(interpolation_error_1d(&[(0.0, 1.0)], |x| x, 10), f64::INFINITY);
    }

    /// Runs `budget` points of `f` through a 2-D learner, in batches of `batch`; every
    /// `fail_every`-th point fails (0: none). Returns every point asked.
    fn run_2d(l: &mut Learner2D, f: impl Fn([f64; 2]) -> f64, budget: usize, batch: usize, fail_every: usize) -> Vec<[f64; 2]> {
        let mut asked = Vec::new();
        while asked.len() < budget {
            let batch = l.ask(batch.min(budget - asked.len()));
            if batch.is_empty() {
                break;
            }
            for p in batch {
                asked.push(p);
                let ok = if fail_every > 0 && asked.len() % fail_every == 0 { l.tell_failed(p) } else { l.tell(p, f(p)) };
                assert!(ok, "{p:?} is a point of the learner");
            }
        }
        asked
    }

    fn key(p: [f64; 2]) -> [u64; 2] {
        p.map(f64::to_bits)
    }

    #[test]
    fn asks_without_tells_give_distinct_points_in_the_box() {
        let mut l = Learner2D::new([-2.0, 1.0], [0.0, 5.0]).unwrap();
        let first = l.ask(5);
        assert_eq!(first, [[-2.0, 0.0], [1.0, 0.0], [1.0, 5.0], [-2.0, 5.0], [-0.5, 2.5]]);
        let more = l.ask(60);
        assert_eq!(more.len(), 60);
        let all: HashSet<[u64; 2]> = first.iter().chain(&more).map(|&p| key(p)).collect();
        assert_eq!(all.len(), 65);
        assert!(more.iter().all(|p| (-2.0..=1.0).contains(&p[0]) && (0.0..=5.0).contains(&p[1])));
        assert!(l.points().is_empty() && l.loss() == 0.0 && !l.done(1.0));
    }

    /// Every edge lies on at most two triangles, an edge on only one lies on the boundary
    /// (so there are no hanging vertices) and the areas add up to the rectangle's. Every
    /// bisection cuts the longest edge of the triangles it splits, so in scaled coordinates
    /// all triangles stay similar to the initial right isosceles ones: no angle below 45°.
    #[test]
    fn triangulation_stays_conforming() {
        let (x, y) = ([-1.0, 1.0], [-1.0, 2.0]);
        let mut l = Learner2D::new(x, y).unwrap();
        run_2d(&mut l, ring, 300, 7, 11);
        l.ask(13); // leave some pending
        let tris = l.triangles();
        let mut edges: BTreeMap<[[u64; 2]; 2], usize> = BTreeMap::new();
        let mut area = 0.0;
        let scaled = |p: [f64; 2]| [(p[0] - x[0]) / (x[1] - x[0]), (p[1] - y[0]) / (y[1] - y[0])];
        for t in &tris {
            let [a, b, c] = *t;
            for k in 0..3 {
                let [o, p, q] = [t[k], t[(k + 1) % 3], t[(k + 2) % 3]].map(scaled);
                let (u, v) = ([p[0] - o[0], p[1] - o[1]], [q[0] - o[0], q[1] - o[1]]);
                let angle = (u[0] * v[1] - u[1] * v[0]).abs().atan2(u[0] * v[0] + u[1] * v[1]).to_degrees();
                assert!(angle > 45.0 - 1e-9, "angle {angle} in {t:?}");
            }
            area += 0.5 * ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])).abs();
            for (p, q) in [(a, b), (b, c), (c, a)] {
                let k = if key(p) < key(q) { [key(p), key(q)] } else { [key(q), key(p)] };
                *edges.entry(k).or_default() += 1;
            }
        }
        assert!((area / 6.0 - 1.0).abs() < 1e-12, "area {area}");
        let bounds = [x, y];
        for (e, &count) in &edges {
            let [p, q] = e.map(|k| k.map(f64::from_bits));
            let on_boundary = (0..2).any(|k| p[k] == q[k] && bounds[k].contains(&p[k]));
            assert!(count <= 2, "edge {p:?}-{q:?} on {count} triangles");
            assert!(count == 2 || on_boundary, "interior edge {p:?}-{q:?} on one triangle: hanging vertex");
        }
    }

    #[test]
    fn failed_points_are_never_asked_again_2d() {
        let mut l = Learner2D::new([0.0, 1.0], [0.0, 1.0]).unwrap();
        let asked = run_2d(&mut l, ring, 200, 5, 3);
        let distinct: HashSet<[u64; 2]> = asked.iter().map(|&p| key(p)).collect();
        assert_eq!(distinct.len(), asked.len());
        assert!(!l.tell([0.3, 0.3], 1.0), "not a point of the learner");
        assert!(l.points().iter().all(|(_, v)| v.is_finite()) && l.loss().is_finite());
    }

    #[test]
    fn ridge_gets_the_points() {
        let mut l = Learner2D::new([-1.0, 1.0], [-1.0, 1.0]).unwrap();
        run_2d(&mut l, ring, 400, 4, 0);
        // The band 0.7 < r < 0.8 covers pi (0.8^2 - 0.7^2) / 4 = 11.8 % of the square.
        let near = l.points().iter().filter(|(p, _)| (p[0].hypot(p[1]) - 0.75).abs() < 0.05).count();
        assert!(near * 100 > 25 * 400, "only {near} of 400 points near the ridge (twice the uniform share: 95)");
    }

    /// On the plane f = x + y, scaled to z = (s_x + s_y) / 2, each of the four initial
    /// triangles has embedded area (1/4) sqrt(1 + 2 (1/2)^2) = sqrt(6)/8.
    #[test]
    fn loss_of_a_plane_and_done() {
        let mut l = Learner2D::new([0.0, 1.0], [0.0, 1.0]).unwrap();
        run_2d(&mut l, |p| p[0] + p[1], 5, 5, 0);
        assert!((l.loss() - 6f64.sqrt() / 8.0).abs() < 1e-15, "loss {}", l.loss());
        assert!(l.done(0.31) && !l.done(0.3));
        run_2d(&mut l, |p| p[0] + p[1], 64, 8, 0);
        assert!(l.loss() < 0.04 && l.loss() > 0.0);
    }
}
