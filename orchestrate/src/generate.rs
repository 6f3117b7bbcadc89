//! The study kinds, as generators of runs (after libEnsemble's generator functions and
//! Dakota's iterators): the study actor asks a generator for up to `room` new points
//! whenever runs finish, and tells it every result. A sweep knows all its points up
//! front; a convergence study adds one mesh level at a time until the grid convergence
//! index is small enough; an adaptive study adds the points of largest loss.
//!
//! Generators are deterministic: the same asks and tells in the same order give the
//! same points. The journal records every batch of added runs and every final result in
//! one ordered log, so after a crash [`rebuild`] replays it and the generator is exactly
//! where it was (and checks that the points it proposes again are the recorded ones).
use crate::adaptive::{Learner1D, Learner2D};
use crate::gci::{gci, Convergence as Behaviour, GciInput, GciResult};
use crate::journal::{Journal, LogEntry, RunRow};
use crate::study::{cells_value, AdaptivePlan, ConvergencePlan, Plan, Study};
use postproc::plot::{line_plot, parameter_map, FieldMap, LinePlot, Series, SeriesStyle};
use std::collections::BTreeMap;
use std::path::Path;
use toml::Value;

/// One point: parameter names and values, as passed with `--set`.
pub type Point = Vec<(String, Value)>;

/// Why a generator adds no more runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    /// In words.
    pub reason: String,
    /// False when the study's goal was not reached (a convergence study whose GCI stays
    /// above the target at the finest level allowed, or whose level failed): the study
    /// then exits 3.
    pub goal_met: bool,
}

/// A study kind: proposes runs, learns from their results.
pub trait Generator: Send {
    /// Up to `room` new points to run now (none when it waits for results or is done).
    fn ask(&mut self, room: usize) -> Vec<Point>;
    /// The run this generator proposed `index`-th (0-based) ended for good: its
    /// quantities, or `None` when it failed.
    fn tell(&mut self, index: usize, quantities: Option<&BTreeMap<String, f64>>);
    /// `Some` once no more runs will be proposed.
    fn finished(&self) -> Option<Finish>;
    /// One line for the live progress (e.g. the current GCI).
    fn progress(&self) -> String;
    /// Writes the kind's own report files into the study directory and returns its
    /// summary text.
    fn report(&self, dir: &Path) -> Option<String>;
}

/// A sweep: its points are created with the study.
struct Sweep;

impl Generator for Sweep {
    fn ask(&mut self, _: usize) -> Vec<Point> {
        Vec::new()
    }
    fn tell(&mut self, _: usize, _: Option<&BTreeMap<String, f64>>) {}
    fn finished(&self) -> Option<Finish> {
        Some(Finish { reason: "every point of the sweep".into(), goal_met: true })
    }
    fn progress(&self) -> String {
        String::new()
    }
    fn report(&self, _: &Path) -> Option<String> {
        None
    }
}

/// A new generator for `study`, before any result.
pub fn new(study: &Study) -> Box<dyn Generator> {
    match &study.plan {
        Plan::Sweep => Box::new(Sweep),
        Plan::Convergence(c) => Box::new(Refinement::new(c.clone())),
        Plan::Adaptive(a) => Box::new(Sampler::new(a.clone())),
    }
}

/// The generator of `study` brought to the state the journal records (`rows` are its
/// runs): every recorded batch is asked again, and must give the recorded points, and
/// every recorded result is told again, in the journal's order.
pub fn rebuild(study: &Study, journal: &Journal, rows: &[RunRow]) -> Result<Box<dyn Generator>, String> {
    let mut g = new(study);
    if study.plan == Plan::Sweep {
        return Ok(g);
    }
    let by_id: BTreeMap<i64, &RunRow> = rows.iter().map(|r| (r.id, r)).collect();
    for entry in journal.generator_log()? {
        match entry {
            LogEntry::Added(ids) => {
                let pts = g.ask(ids.len());
                for (k, id) in ids.iter().enumerate() {
                    let recorded = by_id.get(id).map(|r| r.params.clone()).unwrap_or_default();
                    let again: Vec<(String, String)> =
                        pts.get(k).map(|p| p.iter().map(|(n, v)| (n.clone(), v.to_string())).collect()).unwrap_or_default();
                    if recorded != again {
                        return Err(format!(
                            "the journal's run {id} has {recorded:?}, but the study's {} plan now proposes {again:?}: \
                             the study was changed after it started (start a new study instead)",
                            study.kind
                        ));
                    }
                }
            }
            LogEntry::Done(id) => g.tell(id as usize, by_id.get(&id).map(|r| &r.quantities)),
            LogEntry::Failed(id) => g.tell(id as usize, None),
        }
    }
    Ok(g)
}

/// The value of `quantity` in a run's results, or why there is none.
fn value_of(quantity: &str, q: Option<&BTreeMap<String, f64>>) -> Result<f64, String> {
    match q {
        None => Err("the run failed".into()),
        Some(q) => match q.get(quantity) {
            Some(v) if v.is_finite() => Ok(*v),
            Some(v) => Err(format!("{quantity} = {v}")),
            None => Err(format!("the quantities pipeline gave no {quantity}")),
        },
    }
}

/// Grid convergence: levels of refinement until the GCI target is met.
struct Refinement {
    plan: ConvergencePlan,
    /// Result of each proposed level: `None` while it runs.
    values: Vec<Option<Result<f64, String>>>,
    /// GCI of each complete triple, keyed by its finest level.
    gcis: BTreeMap<usize, Result<GciResult, String>>,
    failed: Option<String>,
}

impl Refinement {
    fn new(plan: ConvergencePlan) -> Self {
        Refinement { plan, values: Vec::new(), gcis: BTreeMap::new(), failed: None }
    }

    fn dims(&self) -> usize {
        self.plan.cells.len()
    }

    fn total(&self, k: usize) -> f64 {
        self.plan.level_cells(k).iter().map(|&c| c as f64).product()
    }

    /// Levels complete from the coarsest on, without a gap.
    fn complete(&self) -> usize {
        self.values.iter().take_while(|v| matches!(v, Some(Ok(_)))).count()
    }

    fn value(&self, k: usize) -> f64 {
        match &self.values[k] {
            Some(Ok(v)) => *v,
            _ => f64::NAN,
        }
    }

    fn latest(&self) -> Option<(usize, &Result<GciResult, String>)> {
        self.gcis.iter().next_back().map(|(k, r)| (*k, r))
    }

    fn met(&self, g: &GciResult) -> bool {
        g.gci_fine <= self.plan.gci_target && g.convergence != Behaviour::Divergent
    }
}

impl Generator for Refinement {
    fn ask(&mut self, room: usize) -> Vec<Point> {
        if self.finished().is_some() {
            return Vec::new();
        }
        let n = self.values.len();
        let want = if n < 3 { 3 - n } else { usize::from(self.complete() == n && n < self.plan.max_levels) };
        (n..n + want.min(room))
            .map(|k| {
                self.values.push(None);
                vec![(self.plan.parameter.clone(), cells_value(&self.plan.level_cells(k)))]
            })
            .collect()
    }

    fn tell(&mut self, index: usize, quantities: Option<&BTreeMap<String, f64>>) {
        let Some(slot) = self.values.get_mut(index) else { return };
        let v = value_of(&self.plan.quantity, quantities);
        if let Err(why) = &v {
            self.failed.get_or_insert_with(|| {
                format!("level {index} ({:?} cells) has no value: {why}; refinement stops", self.plan.level_cells(index))
            });
        }
        *slot = Some(v);
        let k = self.complete();
        if k >= 3 && !self.gcis.contains_key(&(k - 1)) {
            let input = GciInput {
                cells: [self.total(k - 1), self.total(k - 2), self.total(k - 3)],
                values: [self.value(k - 1), self.value(k - 2), self.value(k - 3)],
                dims: self.dims(),
            };
            self.gcis.insert(k - 1, gci(&input).map_err(|e| e.to_string()));
        }
    }

    fn finished(&self) -> Option<Finish> {
        if let Some(why) = &self.failed {
            return Some(Finish { reason: why.clone(), goal_met: false });
        }
        let (k, r) = self.latest()?;
        let target = self.plan.gci_target * 100.0;
        match r {
            Ok(g) if self.met(g) => Some(Finish {
                reason: format!("GCI_fine = {:.3} % <= {target} % on levels {}..{k}", g.gci_fine * 100.0, k - 2),
                goal_met: true,
            }),
            _ if k + 1 < self.plan.max_levels => None,
            Ok(g) => Some(Finish {
                reason: format!(
                    "GCI_fine = {:.3} % is still above {target} % ({} convergence) at the finest level allowed ({} levels); \
                     raise convergence.max_levels or start finer",
                    g.gci_fine * 100.0,
                    g.convergence,
                    self.plan.max_levels
                ),
                goal_met: false,
            }),
            Err(e) => Some(Finish { reason: format!("at the finest level allowed: {e}"), goal_met: false }),
        }
    }

    fn progress(&self) -> String {
        let lvl = format!("level {} of at most {}", self.values.len(), self.plan.max_levels);
        match self.latest() {
            Some((_, Ok(g))) => format!("{lvl}; GCI_fine {:.3} % (target {} %)", g.gci_fine * 100.0, self.plan.gci_target * 100.0),
            Some((_, Err(e))) => format!("{lvl}; {e}"),
            None => lvl,
        }
    }

    fn report(&self, dir: &Path) -> Option<String> {
        let d = self.dims() as f64;
        let levels: Vec<serde_json::Value> = (0..self.values.len())
            .map(|k| {
                let n = self.total(k);
                serde_json::json!({
                    "level": k, "run": k, "cells": self.plan.level_cells(k), "total_cells": n, "h": n.powf(-1.0 / d),
                    "value": match &self.values[k] { Some(Ok(v)) => serde_json::json!(v), _ => serde_json::Value::Null },
                    "error": match &self.values[k] { Some(Err(e)) => serde_json::json!(e), _ => serde_json::Value::Null },
                })
            })
            .collect();
        let gcis: Vec<serde_json::Value> = self
            .gcis
            .iter()
            .map(|(k, r)| match r {
                Ok(g) => serde_json::json!({"levels": [k - 2, k - 1, *k], "result": g}),
                Err(e) => serde_json::json!({"levels": [k - 2, k - 1, *k], "error": e}),
            })
            .collect();
        let fin = self.finished();
        let js = serde_json::json!({
            "quantity": self.plan.quantity, "parameter": self.plan.parameter, "ratio": self.plan.ratio,
            "gci_target": self.plan.gci_target, "levels": levels, "gci": gcis,
            "finished": fin.as_ref().map(|f| f.reason.clone()), "goal_met": fin.as_ref().map(|f| f.goal_met),
        });
        let _ = postproc::sinks::write_atomic(&dir.join("convergence.json"), format!("{js:#}\n").as_bytes());
        self.plot(&dir.join("convergence.png"));
        let mut s = String::new();
        if let Some((k, r)) = self.latest() {
            s += &format!("grid convergence of {} on levels {}..{k} (finest {:?}):\n", self.plan.quantity, k - 2, self.plan.level_cells(k));
            match r {
                Ok(g) => s += &g.summary(),
                Err(e) => s += e,
            }
            s.push('\n');
        }
        if let Some(f) = fin {
            s += &format!("{}: {}\n", if f.goal_met { "converged" } else { "not converged" }, f.reason);
        }
        Some(s)
    }
}

impl Refinement {
    /// The quantity against the cell size, with the extrapolated value and the band
    /// phi_1 (1 ± GCI_fine) of the latest triple.
    fn plot(&self, path: &Path) {
        let d = self.dims() as f64;
        let done: Vec<(f64, f64)> = (0..self.values.len())
            .filter(|&k| matches!(self.values[k], Some(Ok(_))))
            .map(|k| (self.total(k).powf(-1.0 / d), self.value(k)))
            .collect();
        if done.is_empty() {
            return;
        }
        let hmax = done.iter().map(|p| p.0).fold(0.0, f64::max) * 1.05;
        let mut series = Vec::new();
        if let Some((_, Ok(g))) = self.latest() {
            let phi1 = done.iter().min_by(|a, b| a.0.total_cmp(&b.0)).map(|p| p.1).unwrap_or(f64::NAN);
            let half = g.gci_fine * phi1.abs();
            series.push(Series::new(
                format!("GCI_fine band: phi_1 ± {:.3} %", g.gci_fine * 100.0),
                vec![0.0, hmax, hmax, 0.0],
                vec![phi1 - half, phi1 - half, phi1 + half, phi1 + half],
                SeriesStyle::Area,
            ));
            series.push(Series::new(
                format!("Richardson extrapolation {:.6e} (p = {:.3})", g.extrapolated, g.p),
                vec![0.0, hmax],
                vec![g.extrapolated, g.extrapolated],
                SeriesStyle::Line,
            ));
            // phi(h) = phi_ext + (phi_1 - phi_ext) (h / h_1)^p through the finest level.
            let hs: Vec<f64> = (0..=100).map(|i| hmax * i as f64 / 100.0).collect();
            let fit = hs.iter().map(|h| g.extrapolated + (phi1 - g.extrapolated) * (h / g.h[0]).powf(g.p)).collect();
            series.push(Series::new(format!("phi_ext + C h^{:.3}", g.p), hs, fit, SeriesStyle::Line));
        }
        series.push(Series::new(
            format!("{} on each level", self.plan.quantity),
            done.iter().map(|p| p.0).collect(),
            done.iter().map(|p| p.1).collect(),
            SeriesStyle::Points,
        ));
        let plot = LinePlot {
            title: format!("grid convergence of {} (ratio {})", self.plan.quantity, self.plan.ratio),
            x_label: format!("cell size h = N^(-1/{})", self.dims()),
            y_label: self.plan.quantity.clone(),
            series,
            log_x: false,
            log_y: false,
        };
        let _ = line_plot(path, &plot);
    }
}

/// The learner of one or two parameters.
enum Learner {
    One(Learner1D),
    Two(Learner2D),
}

/// Adaptive sampling of one or two parameters.
struct Sampler {
    plan: AdaptivePlan,
    learner: Learner,
    /// Learner coordinates (log of the value on a log axis) of each proposed point.
    asked: Vec<Vec<f64>>,
}

impl Sampler {
    fn new(plan: AdaptivePlan) -> Self {
        let u = |i: usize| {
            let a = &plan.axes[i];
            if a.log {
                (a.lo.ln(), a.hi.ln())
            } else {
                (a.lo, a.hi)
            }
        };
        let learner = if plan.axes.len() == 1 {
            let (a, b) = u(0);
            Learner::One(Learner1D::new(a, b).expect("bounds checked with the study"))
        } else {
            let ((a, b), (c, d)) = (u(0), u(1));
            Learner::Two(Learner2D::new([a, b], [c, d]).expect("bounds checked with the study"))
        };
        Sampler { plan, learner, asked: Vec::new() }
    }

    /// The parameter value at learner coordinate `u` (the bounds exactly as given).
    fn value(&self, i: usize, u: f64) -> f64 {
        let a = &self.plan.axes[i];
        match a.log {
            true if u == a.lo.ln() => a.lo,
            true if u == a.hi.ln() => a.hi,
            true => u.exp(),
            false => u,
        }
    }

    fn loss(&self) -> f64 {
        match &self.learner {
            Learner::One(l) => l.loss(),
            Learner::Two(l) => l.loss(),
        }
    }

    fn done(&self) -> bool {
        match &self.learner {
            Learner::One(l) => l.done(self.plan.loss_goal),
            Learner::Two(l) => l.done(self.plan.loss_goal),
        }
    }

    /// Completed points in parameter values, and their quantity.
    fn points(&self) -> Vec<(Vec<f64>, f64)> {
        match &self.learner {
            Learner::One(l) => l.points().into_iter().map(|(u, y)| (vec![self.value(0, u)], y)).collect(),
            Learner::Two(l) => l.points().into_iter().map(|(p, y)| (vec![self.value(0, p[0]), self.value(1, p[1])], y)).collect(),
        }
    }
}

impl Generator for Sampler {
    fn ask(&mut self, room: usize) -> Vec<Point> {
        if self.finished().is_some() {
            return Vec::new();
        }
        let n = room.min(self.plan.max_runs - self.asked.len());
        let us: Vec<Vec<f64>> = match &mut self.learner {
            Learner::One(l) => l.ask(n).into_iter().map(|u| vec![u]).collect(),
            Learner::Two(l) => l.ask(n).into_iter().map(|p| p.to_vec()).collect(),
        };
        let pts = us
            .iter()
            .map(|u| u.iter().enumerate().map(|(i, &c)| (self.plan.axes[i].name.clone(), Value::Float(self.value(i, c)))).collect())
            .collect();
        self.asked.extend(us);
        pts
    }

    fn tell(&mut self, index: usize, quantities: Option<&BTreeMap<String, f64>>) {
        let Some(u) = self.asked.get(index).cloned() else { return };
        let y = value_of(&self.plan.quantity, quantities).unwrap_or(f64::NAN);
        match &mut self.learner {
            Learner::One(l) => l.tell(u[0], y),
            Learner::Two(l) => l.tell([u[0], u[1]], y),
        };
    }

    fn finished(&self) -> Option<Finish> {
        if self.done() {
            return Some(Finish {
                reason: format!("loss {:.4e} <= goal {:e} after {} runs", self.loss(), self.plan.loss_goal, self.asked.len()),
                goal_met: true,
            });
        }
        (self.asked.len() >= self.plan.max_runs).then(|| Finish {
            reason: format!("the budget of {} runs is used; loss {:.4e} (goal {:e})", self.plan.max_runs, self.loss(), self.plan.loss_goal),
            // A run budget is a stopping rule the user chose, as in python-adaptive.
            goal_met: true,
        })
    }

    fn progress(&self) -> String {
        format!("{} of at most {} runs; loss {:.4e} (goal {:e})", self.asked.len(), self.plan.max_runs, self.loss(), self.plan.loss_goal)
    }

    fn report(&self, dir: &Path) -> Option<String> {
        let names: Vec<&str> = self.plan.axes.iter().map(|a| a.name.as_str()).collect();
        let pts = self.points();
        let fin = self.finished();
        let js = serde_json::json!({
            "quantity": self.plan.quantity, "parameters": names, "loss": self.loss(), "loss_goal": self.plan.loss_goal,
            "runs": self.asked.len(), "max_runs": self.plan.max_runs,
            "points": pts.iter().map(|(p, y)| serde_json::json!({"at": p, "value": y})).collect::<Vec<_>>(),
            "finished": fin.as_ref().map(|f| f.reason.clone()),
        });
        let _ = postproc::sinks::write_atomic(&dir.join("adaptive.json"), format!("{js:#}\n").as_bytes());
        self.plot(dir);
        Some(format!(
            "adaptive sampling of {} over {}: {}\n",
            self.plan.quantity,
            names.join(" x "),
            fin.map(|f| f.reason).unwrap_or_else(|| self.progress())
        ))
    }
}

impl Sampler {
    /// 1D: the response curve through the samples. 2D: the piecewise-linear interpolant
    /// on the learner's triangulation as a map (adaptive.png) and where the samples fell
    /// (adaptive_points.png).
    fn plot(&self, dir: &Path) {
        let pts = self.points();
        let ax = &self.plan.axes;
        if let Learner::One(_) = &self.learner {
            let plot = LinePlot {
                title: format!("adaptive sampling: {} against {} ({} runs)", self.plan.quantity, ax[0].name, pts.len()),
                x_label: ax[0].name.clone(),
                y_label: self.plan.quantity.clone(),
                series: vec![
                    Series::new("interpolant", pts.iter().map(|p| p.0[0]).collect(), pts.iter().map(|p| p.1).collect(), SeriesStyle::Line),
                    Series::new("runs", pts.iter().map(|p| p.0[0]).collect(), pts.iter().map(|p| p.1).collect(), SeriesStyle::Points),
                ],
                log_x: ax[0].log,
                log_y: false,
            };
            let _ = line_plot(&dir.join("adaptive.png"), &plot);
            return;
        }
        let Learner::Two(l) = &self.learner else { return };
        let scatter = LinePlot {
            title: format!("adaptive sampling: where the {} runs fell", pts.len()),
            x_label: ax[0].name.clone(),
            y_label: ax[1].name.clone(),
            series: vec![Series::new("", pts.iter().map(|p| p.0[0]).collect(), pts.iter().map(|p| p.0[1]).collect(), SeriesStyle::Points)],
            log_x: ax[0].log,
            log_y: ax[1].log,
        };
        let _ = line_plot(&dir.join("adaptive_points.png"), &scatter);
        // Rasterise the triangulation (learner coordinates) with barycentric weights.
        let values: BTreeMap<[u64; 2], f64> = l.points().into_iter().map(|(p, y)| (p.map(f64::to_bits), y)).collect();
        let (n, tris) = (240usize, l.triangles());
        let (bx, by) = (l_bounds(&tris, 0), l_bounds(&tris, 1));
        let mut grid = vec![f64::NAN; n * n];
        for t in &tris {
            let Some(v) = t.iter().map(|p| values.get(&p.map(f64::to_bits)).copied()).collect::<Option<Vec<f64>>>() else { continue };
            let det = (t[1][1] - t[2][1]) * (t[0][0] - t[2][0]) + (t[2][0] - t[1][0]) * (t[0][1] - t[2][1]);
            if det == 0.0 {
                continue;
            }
            for j in 0..n {
                let y = by.0 + (j as f64 + 0.5) / n as f64 * (by.1 - by.0);
                for i in 0..n {
                    let x = bx.0 + (i as f64 + 0.5) / n as f64 * (bx.1 - bx.0);
                    let w0 = ((t[1][1] - t[2][1]) * (x - t[2][0]) + (t[2][0] - t[1][0]) * (y - t[2][1])) / det;
                    let w1 = ((t[2][1] - t[0][1]) * (x - t[2][0]) + (t[0][0] - t[2][0]) * (y - t[2][1])) / det;
                    let w2 = 1.0 - w0 - w1;
                    if w0 >= -1e-12 && w1 >= -1e-12 && w2 >= -1e-12 {
                        grid[j * n + i] = w0 * v[0] + w1 * v[1] + w2 * v[2];
                    }
                }
            }
        }
        let label = |a: &crate::study::Axis| if a.log { format!("ln {}", a.name) } else { a.name.clone() };
        let map = FieldMap {
            title: format!("adaptive sampling: {} (piecewise linear on {} runs)", self.plan.quantity, pts.len()),
            data: &grid,
            nx: n,
            ny: n,
            extent: [bx.0, bx.1, by.0, by.1],
            x_label: label(&ax[0]),
            y_label: label(&ax[1]),
            colorbar_label: self.plan.quantity.clone(),
        };
        let _ = parameter_map(&dir.join("adaptive.png"), &map);
    }
}

/// Bounds of the triangles' coordinate `c`.
fn l_bounds(tris: &[[[f64; 2]; 3]], c: usize) -> (f64, f64) {
    tris.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p[c]), hi.max(p[c])))
}
