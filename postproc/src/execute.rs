//! The executor: streams the snapshots through the optimised plan.
//!
//! Work is organised in *passes* (a field that uses a reduction or a time statistic
//! needs a pass after the one that computes it), each pass a sweep over the snapshots
//! it needs, each snapshot cut into *pieces* (runs of rows along the slowest axis,
//! aligned to 16-row blocks and sized to the memory bound). A reader thread does all
//! HDF5 reads, at most two pieces ahead, so memory stays flat however many snapshots
//! there are; the rows of a piece are computed in parallel blocks on the rayon pool.
//! Time statistics fold a *batch* of consecutive snapshots (up to [`MAX_FOLD`]) per
//! pass over their accumulators: the batch shares one snapshot's bytes in flight, cut
//! into thinner pieces, and each accumulator row is updated by every snapshot of the
//! batch while it is in registers (temporal blocking; the same Welford arithmetic in
//! the same order, so the numbers do not depend on the batch size).
//! Reductions combine per-block partial results in block order, so the numbers do
//! not depend on the thread count or on the memory bound.
use crate::kernel::{binary, fold_rows, unary, Buf, Geometry, Program, Regs, MAX_FOLD};
use crate::plan::{Id, Level, Op, Plan, Red, Stat, TRed};
use crate::rundir::Run;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc;

/// Rows per block: the unit of parallel work and of deterministic summation.
pub const BLOCK: usize = 16;

/// One set of points sampled by interpolation (a line or probes).
#[derive(Clone, Debug)]
pub struct SampleRequest {
    /// The field sampled.
    pub node: Id,
    /// Points (unused axes 0).
    pub points: Vec<[f64; 3]>,
    /// Known boundary values: (axis, side, value).
    pub walls: Vec<(usize, usize, f64)>,
    /// Steps at which to sample.
    pub steps: BTreeSet<u64>,
}

/// What the outputs need computed.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Scalar nodes (per snapshot or global) and the steps they are needed at.
    pub scalars: Vec<(Id, BTreeSet<u64>)>,
    /// Fields needed whole at some steps (field, map, slice and spectrum outputs).
    pub full: Vec<(Id, BTreeSet<u64>)>,
    /// Interpolated samples.
    pub samples: Vec<SampleRequest>,
    /// Time statistics wanted whole at the end.
    pub stats: Vec<Id>,
}

/// What the executor computed.
#[derive(Default)]
pub struct Results {
    /// Scalar values by (node, step); global values use step `u64::MAX`.
    pub scalars: HashMap<(Id, u64), f64>,
    /// Per sample request: step -> value at each point.
    pub samples: Vec<BTreeMap<u64, Vec<f64>>>,
    /// Time statistics, whole fields (rows of the slowest axis, C order).
    pub stats: HashMap<Id, Vec<f64>>,
    /// Passes made.
    pub passes: usize,
    /// Pieces processed.
    pub pieces: usize,
}

/// Options of an execution.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Bound on the bytes of field data held at once (approximately).
    pub memory_bytes: usize,
    /// Show progress on stderr.
    pub progress: bool,
}

/// Interpolation weights of one point: terms (slow-axis row, in-row index, weight)
/// plus a constant from known wall values.
#[derive(Clone, Debug)]
struct Stencil {
    terms: Vec<(isize, usize, f64)>,
    constant: f64,
    /// The row that owns the point (its lowest row).
    owner: usize,
}

/// 1D weights along `axis` at coordinate `x`: (cell index or None for the wall, weight).
fn weights_1d(run_geo: &Geometry, axis: usize, x: f64, walls: &[(usize, usize, f64)]) -> Vec<(Option<isize>, f64, f64)> {
    let n = run_geo.cells[axis];
    let h = run_geo.spacing[axis];
    let u = (x - run_geo.lower[axis]) / h - 0.5;
    let wall = |side: usize| walls.iter().find(|w| w.0 == axis && w.1 == side).map(|w| w.2);
    if n == 1 {
        return vec![(Some(0), 1.0, 0.0)];
    }
    if run_geo.periodic[axis] {
        let i0 = u.floor();
        let f = u - i0;
        return vec![(Some(i0 as isize), 1.0 - f, 0.0), (Some(i0 as isize + 1), f, 0.0)];
    }
    let last = (n - 1) as f64;
    if u < 0.0 {
        if let Some(wv) = wall(0) {
            let lam = (2.0 * u + 1.0).max(0.0);
            return vec![(None, 1.0 - lam, wv), (Some(0), lam, 0.0)];
        }
        return vec![(Some(0), 1.0 - u, 0.0), (Some(1), u, 0.0)];
    }
    if u > last {
        if let Some(wv) = wall(1) {
            let lam = (2.0 * (u - last)).min(1.0);
            return vec![(Some(n as isize - 1), 1.0 - lam, 0.0), (None, lam, wv)];
        }
        let f = u - (last - 1.0);
        return vec![(Some(n as isize - 2), 1.0 - f, 0.0), (Some(n as isize - 1), f, 0.0)];
    }
    let i0 = (u.floor() as isize).min(n as isize - 2);
    let f = u - i0 as f64;
    vec![(Some(i0), 1.0 - f, 0.0), (Some(i0 + 1), f, 0.0)]
}

fn stencil(geo: &Geometry, p: &[f64; 3], walls: &[(usize, usize, f64)]) -> Stencil {
    let d = geo.dims;
    let per_axis: Vec<_> = (0..d).map(|a| weights_1d(geo, a, p[a], walls)).collect();
    let mut terms = Vec::new();
    let mut constant = 0.0;
    // Tensor product over axes; a term touching a wall takes that wall's value.
    let mut idx = vec![0usize; d];
    loop {
        let mut w = 1.0;
        let mut cell = [0isize; 3];
        let mut wall_value = None;
        for a in 0..d {
            let (c, wa, wv) = per_axis[a][idx[a]];
            w *= wa;
            match c {
                Some(c) => cell[a] = c,
                None => {
                    wall_value.get_or_insert(wv);
                }
            }
        }
        if w != 0.0 {
            match wall_value {
                Some(v) => constant += w * v,
                None => {
                    let slow = d - 1;
                    let n0 = geo.cells[0] as isize;
                    let wrap = |a: usize, c: isize| c.rem_euclid(geo.cells[a] as isize);
                    let inrow = if d == 2 { wrap(0, cell[0]) } else { wrap(0, cell[0]) + n0 * wrap(1, cell[1]) } as usize;
                    terms.push((cell[slow], inrow, w));
                }
            }
        }
        let mut a = 0;
        loop {
            if a == d {
                let owner = terms.iter().map(|t| t.0).min().unwrap_or(0).rem_euclid(geo.cells[d - 1] as isize) as usize;
                // Rows of the terms relative to the owner (a periodic wrap keeps them adjacent).
                let base = terms.iter().map(|t| t.0).min().unwrap_or(0);
                for t in &mut terms {
                    t.0 = owner as isize + (t.0 - base);
                }
                return Stencil { terms, constant, owner };
            }
            idx[a] += 1;
            if idx[a] < per_axis[a].len() {
                break;
            }
            idx[a] = 0;
            a += 1;
        }
    }
}

/// Partial results of a reduction over some rows.
#[derive(Clone, Copy, Debug)]
struct Part {
    sum: f64,
    sumsq: f64,
    min: f64,
    max: f64,
    maxabs: f64,
    n: usize,
    /// A NaN was seen.
    nan: bool,
}

impl Part {
    fn new() -> Self {
        Part { sum: 0.0, sumsq: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, maxabs: 0.0, n: 0, nan: false }
    }

    /// Adds a row, computing only what reduction `r` needs (four independent lanes so
    /// the loop vectorises; the order is fixed, so results stay deterministic).
    fn add_row(&mut self, xs: &[f64], r: Red) {
        let lanes = xs.chunks_exact(4);
        let tail = lanes.remainder();
        match r {
            Red::Mean | Red::Sum | Red::Integral => {
                let mut a = [0.0f64; 4];
                for c in lanes {
                    for k in 0..4 {
                        a[k] += c[k];
                    }
                }
                self.sum += (a[0] + a[1]) + (a[2] + a[3]) + tail.iter().sum::<f64>();
            }
            Red::L2 | Red::Rms => {
                let mut a = [0.0f64; 4];
                for c in lanes {
                    for k in 0..4 {
                        a[k] += c[k] * c[k];
                    }
                }
                self.sumsq += (a[0] + a[1]) + (a[2] + a[3]) + tail.iter().map(|x| x * x).sum::<f64>();
                self.nan |= self.sumsq.is_nan();
            }
            Red::Min => {
                let (mut lo, mut nan) = (self.min, false);
                for &x in xs {
                    lo = if x < lo { x } else { lo };
                    nan |= x.is_nan();
                }
                self.min = lo;
                self.nan |= nan;
            }
            Red::Max => {
                let (mut hi, mut nan) = (self.max, false);
                for &x in xs {
                    hi = if x > hi { x } else { hi };
                    nan |= x.is_nan();
                }
                self.max = hi;
                self.nan |= nan;
            }
            Red::Linf => {
                let (mut ma, mut nan) = (self.maxabs, false);
                for &x in xs {
                    ma = if x.abs() > ma { x.abs() } else { ma };
                    nan |= x.is_nan();
                }
                self.maxabs = ma;
                self.nan |= nan;
            }
        }
        self.n += xs.len();
    }

    fn merge(&mut self, o: &Part) {
        self.sum += o.sum;
        self.sumsq += o.sumsq;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.maxabs = self.maxabs.max(o.maxabs);
        self.n += o.n;
        self.nan |= o.nan;
    }

    fn value(&self, r: Red, vol: f64) -> f64 {
        // NaN anywhere makes the reduction NaN (as numpy's).
        if self.nan || self.sum.is_nan() {
            return f64::NAN;
        }
        let n = self.n as f64;
        match r {
            Red::Min => self.min,
            Red::Max => self.max,
            Red::Mean => self.sum / n,
            Red::Sum => self.sum,
            Red::Integral => self.sum * vol,
            Red::L2 => (self.sumsq * vol).sqrt(),
            Red::Rms => (self.sumsq / n).sqrt(),
            Red::Linf => self.maxabs,
        }
    }
}

/// Per-cell running statistics of one field over snapshots (Welford's update).
struct Accum {
    arg: Id,
    sel: usize,
    n: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    want_m2: bool,
    want_min: bool,
    want_max: bool,
}

/// What one snapshot of a pass computes (shared by the snapshots with the same sinks).
struct StepWork {
    /// Row-program roots: reduce args, accumulator args, full fields (in that order).
    program: Program,
    reduces: Vec<Id>,
    /// The operation of each reduce node.
    red_ops: Vec<Red>,
    accums: Vec<usize>,
    fulls: Vec<usize>,
    samples: Vec<usize>,
    /// Materialised nodes: (node, slot, ghost rows), increasing id.
    mat: Vec<(Id, usize, usize)>,
    /// Programs computing the non-source materialised nodes, by slot.
    mat_programs: HashMap<usize, Program>,
    /// Whether every row is needed (else only the sample rows).
    all_rows: bool,
}

/// The sinks one snapshot of a pass feeds: reduce nodes, accumulators, whole fields,
/// sample sets (indices).
type SinkSet = (Vec<Id>, Vec<usize>, Vec<usize>, Vec<usize>);

/// A receiver of whole fields: (index into `Request::full`, step, values).
pub type FullSink<'a> = dyn FnMut(usize, u64, &[f64]) -> Result<(), String> + 'a;

/// State of a snapshot being computed (one per snapshot of the batch).
struct Current {
    scalars: HashMap<Id, f64>,
    parts: Vec<Vec<Part>>,
    fulls: Vec<Vec<f64>>,
}

/// One block's rows of a time-statistics accumulator.
struct AccRows<'a> {
    mean: &'a mut [f64],
    m2: Option<&'a mut [f64]>,
    min: Option<&'a mut [f64]>,
    max: Option<&'a mut [f64]>,
    /// Snapshots folded in before this batch.
    count0: usize,
}

/// One piece of a batch of snapshots: what the reader reads and the compute side
/// computes in one go.
struct Item {
    /// The batch it belongs to (consecutive snapshots with the same work).
    batch: usize,
    /// The steps of the batch's snapshots, in time order.
    steps: Vec<u64>,
    work: usize,
    piece: (usize, usize),
    /// Sources to read at each step: (slot, field name, first row, rows).
    reads: Vec<(usize, String, isize, usize)>,
}

/// Bytes a batch piece reads, at most (unless that would make it thinner than
/// [`batch_min_rows`]). Small enough that the pieces in flight (about three) stay in
/// the last-level cache between the read that writes them and the fold that reads
/// them, large enough that a piece is several blocks of work.
const BATCH_READ_BYTES: usize = 4 << 20;

/// Rows of a batch piece, at least: a block per thread (two at least), so that the
/// compute of one piece keeps every thread busy.
fn batch_min_rows() -> usize {
    BLOCK * rayon::current_num_threads().max(2)
}

/// How many consecutive snapshots (of `run_len` with the same work) to fold per pass
/// over the accumulators, and the rows of their pieces. `max_rows` is the piece one
/// snapshot alone could have within the memory bound; `read_row_bytes` the bytes read
/// per row of one snapshot. Batching only pays for time statistics (every other sink
/// is per snapshot), and whole fields are kept per snapshot, so it is off when the
/// work has them. A batch's pieces take at most the rows of one snapshot's piece
/// between them, so the bytes in flight stay within those of one snapshot: memory is
/// flat in the batch size as it is in the snapshot count.
fn batching(work: &StepWork, max_rows: usize, nrows: usize, run_len: usize, read_row_bytes: usize) -> (usize, usize) {
    let cap = max_rows.min(nrows);
    let min_rows = batch_min_rows();
    if work.accums.is_empty() || !work.fulls.is_empty() {
        return (1, max_rows);
    }
    let b = (cap / min_rows).clamp(1, MAX_FOLD).min(run_len.max(1));
    if b == 1 {
        return (1, max_rows);
    }
    let by_bytes = BATCH_READ_BYTES / (b * read_row_bytes).max(1);
    let rows = (cap / b).min(by_bytes.max(min_rows));
    (b, (rows / BLOCK * BLOCK).max(BLOCK))
}

/// Runs `req` over `run`. `full_sink` receives each whole field of `req.full` as it
/// is completed: (index into req.full, step, values).
pub fn execute(plan: &Plan, run: &Run, req: &Request, opts: &ExecOptions, full_sink: &mut FullSink) -> Result<Results, String> {
    let geo = Geometry { dims: run.dims, cells: run.cells, lower: run.lower, spacing: run.spacing, periodic: run.periodic };
    let len = geo.row_len();
    let nrows = geo.cells[geo.slow()];
    let times: HashMap<u64, f64> = run.snapshots.iter().map(|s| (s.step, s.time)).collect();
    let order: Vec<u64> = run.snapshots.iter().map(|s| s.step).collect();

    // 1. Which node is needed at which steps.
    let mut needed: HashMap<Id, BTreeSet<u64>> = HashMap::new();
    fn need(plan: &Plan, id: Id, steps: &BTreeSet<u64>, needed: &mut HashMap<Id, BTreeSet<u64>>) {
        let have = needed.entry(id).or_default();
        let new: BTreeSet<u64> = steps.difference(have).copied().collect();
        if new.is_empty() && !steps.is_empty() {
            return;
        }
        have.extend(new.iter().copied());
        match &plan.nodes[id].op {
            Op::TimeReduce(_, a, sel) | Op::TimeStat(_, a, sel) => {
                let s: BTreeSet<u64> = plan.selections[*sel].iter().copied().collect();
                need(plan, *a, &s, needed);
            }
            _ => {
                for c in plan.children(id) {
                    need(plan, c, &new, needed);
                }
            }
        }
    }
    for (id, steps) in &req.scalars {
        need(plan, *id, steps, &mut needed);
    }
    for (id, steps) in &req.full {
        need(plan, *id, steps, &mut needed);
    }
    for s in &req.samples {
        need(plan, s.node, &s.steps, &mut needed);
    }
    for &id in &req.stats {
        need(plan, id, &BTreeSet::new(), &mut needed);
    }

    // 2. Sinks and their passes.
    let mut reduces: Vec<(Id, usize)> = Vec::new(); // (reduce node, pass)
    let mut accums: Vec<Accum> = Vec::new();
    let mut stat_accum: HashMap<Id, usize> = HashMap::new();
    let mut ids: Vec<Id> = needed.keys().copied().collect();
    ids.sort_unstable();
    for &id in &ids {
        match &plan.nodes[id].op {
            Op::Reduce(_, a) => reduces.push((id, plan.nodes[*a].pass)),
            Op::TimeStat(st, a, sel) => {
                let k = match accums.iter().position(|x| x.arg == *a && x.sel == *sel) {
                    Some(k) => k,
                    None => {
                        accums.push(Accum {
                            arg: *a,
                            sel: *sel,
                            n: 0,
                            mean: Vec::new(),
                            m2: Vec::new(),
                            min: Vec::new(),
                            max: Vec::new(),
                            want_m2: false,
                            want_min: false,
                            want_max: false,
                        });
                        accums.len() - 1
                    }
                };
                match st {
                    Stat::Rms => accums[k].want_m2 = true,
                    Stat::Min => accums[k].want_min = true,
                    Stat::Max => accums[k].want_max = true,
                    Stat::Mean => {}
                }
                stat_accum.insert(id, k);
            }
            _ => {}
        }
    }
    let sample_stencils: Vec<Vec<Stencil>> =
        req.samples.iter().map(|s| s.points.iter().map(|p| stencil(&geo, p, &s.walls)).collect()).collect();
    let npass = 1 + reduces
        .iter()
        .map(|r| r.1)
        .chain(accums.iter().map(|a| plan.nodes[a.arg].pass))
        .chain(req.full.iter().map(|f| plan.nodes[f.0].pass))
        .chain(req.samples.iter().map(|s| plan.nodes[s.node].pass))
        .max()
        .unwrap_or(0);
    let mut res = Results { samples: vec![BTreeMap::new(); req.samples.len()], ..Default::default() };
    let mut partials: HashMap<(Id, u64), Part> = HashMap::new();
    let mut statics: HashMap<Id, Buf> = HashMap::new();
    let vol = run.cell_volume();

    let total_steps: usize = (0..npass)
        .map(|p| {
            let mut s: BTreeSet<u64> = BTreeSet::new();
            for r in reduces.iter().filter(|r| r.1 == p) {
                s.extend(&needed[&r.0]);
            }
            for a in accums.iter().filter(|a| plan.nodes[a.arg].pass == p) {
                s.extend(&plan.selections[a.sel]);
            }
            for f in req.full.iter().filter(|f| plan.nodes[f.0].pass == p) {
                s.extend(&f.1);
            }
            for x in req.samples.iter().filter(|x| plan.nodes[x.node].pass == p) {
                s.extend(&x.steps);
            }
            s.len()
        })
        .sum();
    let mut progress = crate::progress::Progress::new(opts.progress, total_steps);

    for pass in 0..npass {
        // Steps of this pass and, for each, its sinks.
        let mut per_step: BTreeMap<u64, SinkSet> = BTreeMap::new();
        for r in reduces.iter().filter(|r| r.1 == pass) {
            for &s in &needed[&r.0] {
                per_step.entry(s).or_default().0.push(r.0);
            }
        }
        for (k, a) in accums.iter().enumerate().filter(|(_, a)| plan.nodes[a.arg].pass == pass) {
            for &s in &plan.selections[a.sel] {
                per_step.entry(s).or_default().1.push(k);
            }
        }
        for (k, f) in req.full.iter().enumerate().filter(|(_, f)| plan.nodes[f.0].pass == pass) {
            for &s in &f.1 {
                per_step.entry(s).or_default().2.push(k);
            }
        }
        for (k, x) in req.samples.iter().enumerate().filter(|(_, x)| plan.nodes[x.node].pass == pass) {
            for &s in &x.steps {
                per_step.entry(s).or_default().3.push(k);
            }
        }
        if per_step.is_empty() {
            continue;
        }
        res.passes += 1;
        for a in accums.iter_mut().filter(|a| plan.nodes[a.arg].pass == pass) {
            a.mean = filled(nrows * len, 0.0);
            if a.want_m2 {
                a.m2 = filled(nrows * len, 0.0);
            }
            if a.want_min {
                a.min = filled(nrows * len, f64::INFINITY);
            }
            if a.want_max {
                a.max = filled(nrows * len, f64::NEG_INFINITY);
            }
        }
        // Build the work of each distinct sink set once.
        let mut works: Vec<StepWork> = Vec::new();
        let mut work_of: HashMap<SinkSet, usize> = HashMap::new();
        let mut items: Vec<Item> = Vec::new();
        let steps: Vec<u64> = order.iter().copied().filter(|s| per_step.contains_key(s)).collect();
        let mut step_work = Vec::with_capacity(steps.len());
        for &step in &steps {
            let key = per_step[&step].clone();
            let w = match work_of.get(&key) {
                Some(&w) => w,
                None => {
                    let sw = build_work(plan, &geo, &key, &accums, req);
                    works.push(sw);
                    work_of.insert(key, works.len() - 1);
                    works.len() - 1
                }
            };
            step_work.push(w);
        }
        // Runs of consecutive snapshots with the same work, cut into batches of about
        // equal size (so every piece of the run has the same rows), and these into pieces.
        let mut si = 0;
        let mut nbatch = 0;
        while si < steps.len() {
            let w = step_work[si];
            let work = &works[w];
            let run_len = step_work[si..].iter().take_while(|&&x| x == w).count();
            // Rows these snapshots need.
            let blocks = block_ranges(nrows);
            let wanted: Vec<bool> = if work.all_rows {
                vec![true; blocks.len()]
            } else {
                let mut v = vec![false; blocks.len()];
                for &k in &work.samples {
                    for st in &sample_stencils[k] {
                        let b = blocks.iter().position(|b| st.owner >= b.0 && st.owner < b.1).unwrap_or(0);
                        v[b] = true;
                    }
                }
                v
            };
            let nsrc = work.mat.iter().filter(|m| matches!(plan.nodes[m.0].op, Op::Source(_))).count();
            let nmat = work.mat.len() - nsrc;
            let bytes_per_row = len * 8 * (3 * nsrc + nmat + work.fulls.len() + 1);
            let max_rows = ((opts.memory_bytes / bytes_per_row.max(1)) / BLOCK * BLOCK).max(BLOCK);
            let (nb, max_rows) = batching(work, max_rows, nrows, run_len, len * 8 * nsrc);
            let nbat = run_len.div_ceil(nb);
            for j in 0..nbat {
                // Sizes differ by one at most, none above nb.
                let group: Vec<u64> = steps[si + j * run_len / nbat..si + (j + 1) * run_len / nbat].to_vec();
                let mut b = 0;
                while b < blocks.len() {
                    if !wanted[b] {
                        b += 1;
                        continue;
                    }
                    let p0 = blocks[b].0;
                    let mut p1 = blocks[b].1;
                    b += 1;
                    while b < blocks.len() && wanted[b] && blocks[b].1 - p0 <= max_rows {
                        p1 = blocks[b].1;
                        b += 1;
                    }
                    let mut reads = Vec::new();
                    for &(id, slot, g) in &work.mat {
                        if let Op::Source(name) = &plan.nodes[id].op {
                            let (lo, rows) = extended(p0, p1, g, nrows, geo.periodic[geo.slow()]);
                            reads.push((slot, name.clone(), lo, rows));
                        }
                    }
                    items.push(Item { batch: nbatch, steps: group.clone(), work: w, piece: (p0, p1), reads });
                }
                nbatch += 1;
            }
            si += run_len;
        }
        // The reader thread runs ahead by at most two pieces.
        let nslots = works.iter().map(|w| w.mat.iter().map(|m| m.1 + 1).max().unwrap_or(0)).max().unwrap_or(0);
        let outcome: Result<(), String> = std::thread::scope(|scope| {
            // Per item: for each snapshot of its batch, the (slot, buffer) it read.
            type Got = Result<Vec<Vec<(usize, Buf)>>, String>;
            let (tx, rx) = mpsc::sync_channel::<Got>(1);
            // Buffers the compute side is done with go back to the reader for reuse.
            let (give_back, recycled) = mpsc::channel::<Vec<f64>>();
            let items_ref = &items;
            let reader = scope.spawn(move || {
                for it in items_ref {
                    // Every read of the batch at once, in parallel (a thin piece lies in
                    // one HDF5 chunk: its read alone would use one core).
                    let jobs: Vec<(usize, usize, Vec<f64>)> = (0..it.steps.len())
                        .flat_map(|s| (0..it.reads.len()).map(move |r| (s, r)))
                        .map(|(s, r)| (s, r, recycled.try_recv().unwrap_or_default()))
                        .collect();
                    let read: Result<Vec<(usize, usize, Buf)>, String> = jobs
                        .into_par_iter()
                        .map(|(s, r, spare)| {
                            let (slot, name, lo, rows) = &it.reads[r];
                            read_rows(run, it.steps[s], name, *lo, *rows, len, nrows, spare).map(|b| (s, *slot, b))
                        })
                        .collect();
                    let msg = read.map(|v| {
                        let mut got: Vec<Vec<(usize, Buf)>> = (0..it.steps.len()).map(|_| Vec::new()).collect();
                        for (s, slot, b) in v {
                            got[s].push((slot, b));
                        }
                        got
                    });
                    let failed = msg.is_err();
                    if tx.send(msg).is_err() || failed {
                        return;
                    }
                }
            });
            // The snapshots of the batch being computed.
            let mut current: Option<(usize, Vec<Current>)> = None;
            for (k, it) in items.iter().enumerate() {
                let got = rx.recv().map_err(|_| "the reader thread stopped".to_string())??;
                let work = &works[it.work];
                if current.as_ref().map(|c| c.0) != Some(it.batch) {
                    // A new batch: per snapshot, the scalars its kernels need and fresh
                    // partial results.
                    let mut snaps = Vec::with_capacity(it.steps.len());
                    for &step in &it.steps {
                        let mut sc = HashMap::new();
                        for p in std::iter::once(&work.program).chain(work.mat_programs.values()) {
                            for &id in &p.scalars {
                                sc.insert(id, scalar_value(plan, id, step, &times, &order, &partials, vol, &mut res.scalars));
                            }
                        }
                        let fulls = work.fulls.iter().map(|_| vec![0.0; nrows * len]).collect();
                        snaps.push(Current { scalars: sc, parts: Vec::new(), fulls });
                    }
                    for &a in &work.accums {
                        accums[a].n += it.steps.len();
                    }
                    current = Some((it.batch, snaps));
                }
                let (_, snaps) = current.as_mut().expect("set above");
                let mut bufs: Vec<Vec<Option<Buf>>> = Vec::with_capacity(got.len());
                for g in got {
                    let mut b: Vec<Option<Buf>> = vec![None; nslots];
                    for (slot, buf) in g {
                        b[slot] = Some(buf);
                    }
                    bufs.push(b);
                }
                let mut stat_view: Vec<Option<&Buf>> = vec![None; nslots];
                for (id, b) in &statics {
                    if let Some(&(_, slot, _)) = work.mat.iter().find(|m| m.0 == *id) {
                        stat_view[slot] = Some(b);
                    }
                }
                compute_piece(&geo, work, it.piece, &mut bufs, &stat_view, &mut accums, snaps);
                // Samples owned by this piece.
                for (s, &step) in it.steps.iter().enumerate() {
                    for &si in &work.samples {
                        let slot =
                            work.mat.iter().find(|m| m.0 == req.samples[si].node).map(|m| m.1).expect("sampled nodes are materialised");
                        let b = bufs[s][slot].as_ref().or(stat_view[slot]).expect("computed");
                        let vals = res.samples[si].entry(step).or_insert_with(|| vec![f64::NAN; sample_stencils[si].len()]);
                        for (pi, st) in sample_stencils[si].iter().enumerate() {
                            if st.owner >= it.piece.0 && st.owner < it.piece.1 {
                                vals[pi] = st.constant + st.terms.iter().map(|&(r, i, w)| w * b.row(r, len)[i]).sum::<f64>();
                            }
                        }
                    }
                }
                res.pieces += 1;
                // Only the buffers the reader filled go back (one per read: bounded).
                for b in &mut bufs {
                    for (slot, ..) in &it.reads {
                        if let Some(b) = b[*slot].take() {
                            let _ = give_back.send(b.data);
                        }
                    }
                }
                let last_piece = items.get(k + 1).is_none_or(|n| n.batch != it.batch);
                if last_piece {
                    let (_, snaps) = current.take().expect("set above");
                    for (Current { parts, fulls, .. }, &step) in snaps.into_iter().zip(&it.steps) {
                        for (ri, &rid) in work.reduces.iter().enumerate() {
                            let mut tot = Part::new();
                            for block in &parts {
                                tot.merge(&block[ri]);
                            }
                            partials.insert((rid, step), tot);
                        }
                        for (fi, &f) in work.fulls.iter().enumerate() {
                            full_sink(f, step, &fulls[fi])?;
                        }
                        progress.tick(pass, step, times.get(&step).copied().unwrap_or(0.0));
                    }
                }
            }
            drop(rx);
            reader.join().map_err(|_| "the reader thread panicked".to_string())?;
            Ok(())
        });
        outcome?;
        // Time statistics computed in this pass become whole-mesh buffers for later ones.
        // Each statistic of an accumulator is one node (nodes are unique by content),
        // so each takes its accumulator's vector rather than copying it.
        for (&id, &k) in &stat_accum {
            let a = &mut accums[k];
            if plan.nodes[a.arg].pass != pass {
                continue;
            }
            let Op::TimeStat(st, _, _) = plan.nodes[id].op else { continue };
            let data: Vec<f64> = match st {
                Stat::Mean => std::mem::take(&mut a.mean),
                Stat::Rms => {
                    let n = a.n.max(1) as f64;
                    let mut v = std::mem::take(&mut a.m2);
                    for m in v.iter_mut() {
                        *m = (*m / n).sqrt();
                    }
                    v
                }
                Stat::Min => std::mem::take(&mut a.min),
                Stat::Max => std::mem::take(&mut a.max),
            };
            statics.insert(id, Buf { lo: 0, rows: nrows, data, wrap: nrows });
        }
    }
    progress.finish();
    for (id, steps) in &req.scalars {
        if plan.nodes[*id].level == Level::Global {
            scalar_value(plan, *id, u64::MAX, &times, &order, &partials, vol, &mut res.scalars);
        } else {
            for &s in steps {
                scalar_value(plan, *id, s, &times, &order, &partials, vol, &mut res.scalars);
            }
        }
    }
    for &id in &req.stats {
        if let Some(b) = statics.remove(&id) {
            res.stats.insert(id, b.data);
        }
    }
    Ok(res)
}

/// `n` copies of `v`, written in parallel. Zeroed memory from the allocator maps the
/// shared zero page when first read, and the first write after that costs a
/// copy-on-write fault with a TLB shootdown on every core: writing each page first
/// (in parallel) faults it in once, cheaply.
fn filled(n: usize, v: f64) -> Vec<f64> {
    let mut out = vec![0.0; n];
    out.par_chunks_mut(1 << 15).for_each(|c| c.fill(v));
    out
}

/// Rows `[p0 - g, p1 + g)`, clipped to the mesh on a non-periodic axis.
fn extended(p0: usize, p1: usize, g: usize, n: usize, periodic: bool) -> (isize, usize) {
    if periodic {
        (p0 as isize - g as isize, p1 - p0 + 2 * g)
    } else {
        let lo = p0.saturating_sub(g);
        let hi = (p1 + g).min(n);
        (lo as isize, hi - lo)
    }
}

/// The 16-row blocks of `n` rows; a last block shorter than 4 rows joins the one before,
/// so one-sided boundary stencils always find their rows inside a piece.
pub fn block_ranges(n: usize) -> Vec<(usize, usize)> {
    let mut v: Vec<(usize, usize)> = (0..n.div_ceil(BLOCK)).map(|b| (b * BLOCK, ((b + 1) * BLOCK).min(n))).collect();
    if v.len() > 1 {
        let last = v[v.len() - 1];
        if last.1 - last.0 < 4 {
            v.pop();
            let k = v.len() - 1;
            v[k].1 = last.1;
        }
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn read_rows(run: &Run, step: u64, name: &str, lo: isize, rows: usize, len: usize, n: usize, mut data: Vec<f64>) -> Result<Buf, String> {
    // A recycled vector keeps its pages: no page faults, no zeroing of fresh memory.
    // A fresh one comes zeroed from the allocator (untouched pages the read itself
    // faults in), not written with zeros first.
    if data.capacity() < rows * len {
        data = vec![0.0; rows * len];
    } else {
        data.resize(rows * len, 0.0);
    }
    // Contiguous runs of mesh rows (a periodic range wraps around once at most per side).
    let mut r = 0;
    while r < rows {
        let g = (lo + r as isize).rem_euclid(n as isize) as usize;
        let run_len = (n - g).min(rows - r);
        run.read_rows(step, name, g, run_len, &mut data[r * len..(r + run_len) * len])?;
        r += run_len;
    }
    Ok(Buf { lo, rows, data, wrap: 0 })
}

fn build_work(plan: &Plan, geo: &Geometry, key: &SinkSet, accums: &[Accum], req: &Request) -> StepWork {
    let (reds, accs, fulls, samples) = key;
    let mut roots: Vec<Id> = Vec::new();
    for &r in reds {
        if let Op::Reduce(_, a) = plan.nodes[r].op {
            roots.push(a);
        }
    }
    roots.extend(accs.iter().map(|&k| accums[k].arg));
    roots.extend(fulls.iter().map(|&f| req.full[f].0));
    // Materialised nodes: sources, static statistics, arguments of derivatives along
    // the slowest axis, and sampled fields.
    let mut mat: BTreeSet<Id> = BTreeSet::new();
    let mut stack: Vec<Id> = roots.clone();
    stack.extend(samples.iter().map(|&s| req.samples[s].node));
    for &s in samples {
        mat.insert(req.samples[s].node);
    }
    let mut seen = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) || plan.nodes[id].level != Level::Field {
            continue;
        }
        match &plan.nodes[id].op {
            Op::Source(_) => {
                mat.insert(id);
            }
            Op::TimeStat(..) => {
                mat.insert(id);
                continue;
            }
            Op::Diff { axis, arg, .. } if *axis == geo.slow() => {
                mat.insert(*arg);
            }
            _ => {}
        }
        stack.extend(plan.children(id));
    }
    let slots: HashMap<Id, usize> = mat.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let program = Program::build(plan, geo, &roots, &slots);
    let mut mat_programs = HashMap::new();
    for &id in &mat {
        if matches!(plan.nodes[id].op, Op::Source(_) | Op::TimeStat(..)) {
            continue;
        }
        let mut others = slots.clone();
        others.remove(&id);
        mat_programs.insert(slots[&id], Program::build(plan, geo, &[id], &others));
    }
    // Ghost rows: a program evaluated with ghost g needs g rows of what it loads and
    // g + 1 of what it differentiates along the slowest axis; samples need one row above.
    let mut ghost: HashMap<usize, usize> = HashMap::new();
    let bump = |ghost: &mut HashMap<usize, usize>, p: &Program, g: usize| {
        for b in p.loaded_bufs() {
            let e = ghost.entry(b).or_insert(0);
            *e = (*e).max(g);
        }
        for b in p.row_stencil_bufs() {
            let e = ghost.entry(b).or_insert(0);
            *e = (*e).max(g + 1);
        }
    };
    bump(&mut ghost, &program, 0);
    for &s in samples {
        let e = ghost.entry(slots[&req.samples[s].node]).or_insert(0);
        *e = (*e).max(1);
    }
    for &id in mat.iter().rev() {
        let slot = slots[&id];
        if let Some(p) = mat_programs.get(&slot) {
            let g = ghost.get(&slot).copied().unwrap_or(0);
            bump(&mut ghost, p, g);
        }
    }
    StepWork {
        program,
        reduces: reds.clone(),
        red_ops: reds.iter().map(|&r| if let Op::Reduce(op, _) = plan.nodes[r].op { op } else { Red::Sum }).collect(),
        accums: accs.clone(),
        fulls: fulls.clone(),
        samples: samples.clone(),
        mat: mat.iter().map(|&id| (id, slots[&id], ghost.get(&slots[&id]).copied().unwrap_or(0))).collect(),
        mat_programs,
        all_rows: !reds.is_empty() || !accs.is_empty() || !fulls.is_empty(),
    }
}

/// Computes one piece of a batch of snapshots: per snapshot, the materialised nodes over
/// their ghosted ranges; then the row program over the piece's rows, block by block in
/// parallel. At each row every snapshot of the batch is computed before the next row,
/// so each time-statistics accumulator's row is folded over the whole batch at once
/// (temporal blocking: one pass over the accumulators per batch, not per snapshot).
fn compute_piece(
    geo: &Geometry,
    work: &StepWork,
    piece: (usize, usize),
    bufs: &mut [Vec<Option<Buf>>],
    statics: &[Option<&Buf>],
    accums: &mut [Accum],
    snaps: &mut [Current],
) {
    let len = geo.row_len();
    let n = geo.cells[geo.slow()];
    let periodic = geo.periodic[geo.slow()];
    let nb = snaps.len();
    debug_assert!((1..=MAX_FOLD).contains(&nb) && bufs.len() == nb);
    for (own, snap) in bufs.iter_mut().zip(snaps.iter()) {
        let sc = &snap.scalars;
        for &(_, slot, g) in &work.mat {
            let Some(p) = work.mat_programs.get(&slot) else { continue };
            let (lo, rows) = extended(piece.0, piece.1, g, n, periodic);
            let mut data = vec![0.0; rows * len];
            {
                let view = views(own, statics);
                let view = &view[..];
                data.par_chunks_mut(BLOCK * len).enumerate().for_each(|(c, chunk)| {
                    let mut regs = p.regs(len);
                    for (k, out) in chunk.chunks_mut(len).enumerate() {
                        let r = lo + (c * BLOCK + k) as isize;
                        p.run(geo, r, r.rem_euclid(n as isize) as usize, view, sc, &mut regs);
                        out.copy_from_slice(p.output(0, &regs, view, r));
                    }
                });
            }
            own[slot] = Some(Buf { lo, rows, data, wrap: 0 });
        }
    }
    if !work.all_rows {
        return;
    }
    // Blocks of this piece, each with its own slices of the accumulators and fields.
    let blocks: Vec<(usize, usize)> = block_ranges(n).into_iter().filter(|b| b.0 >= piece.0 && b.1 <= piece.1).collect();
    struct Job<'a> {
        rows: (usize, usize),
        acc: Vec<AccRows<'a>>,
        /// Per snapshot of the batch, per whole field.
        full: Vec<Vec<&'a mut [f64]>>,
    }
    let mut jobs: Vec<Job> =
        blocks.iter().map(|&rows| Job { rows, acc: Vec::new(), full: (0..nb).map(|_| Vec::new()).collect() }).collect();
    for (_, acc) in accums.iter_mut().enumerate().filter(|(i, _)| work.accums.contains(i)) {
        // The count already includes this batch.
        let count0 = acc.n - nb;
        let mut means = split_blocks(&mut acc.mean, &blocks, len).into_iter();
        let mut m2 = acc.want_m2.then(|| split_blocks(&mut acc.m2, &blocks, len).into_iter());
        let mut mins = acc.want_min.then(|| split_blocks(&mut acc.min, &blocks, len).into_iter());
        let mut maxs = acc.want_max.then(|| split_blocks(&mut acc.max, &blocks, len).into_iter());
        for j in jobs.iter_mut() {
            let m = means.next().expect("one slice per block");
            j.acc.push(AccRows {
                mean: m,
                m2: m2.as_mut().and_then(Iterator::next),
                min: mins.as_mut().and_then(Iterator::next),
                max: maxs.as_mut().and_then(Iterator::next),
                count0,
            });
        }
    }
    let mut scs: Vec<&HashMap<Id, f64>> = Vec::with_capacity(nb);
    let mut parts_out: Vec<&mut Vec<Vec<Part>>> = Vec::with_capacity(nb);
    for (s, Current { scalars, parts, fulls, .. }) in snaps.iter_mut().enumerate() {
        scs.push(scalars);
        parts_out.push(parts);
        for f in fulls.iter_mut() {
            for (j, sl) in jobs.iter_mut().zip(split_blocks(f, &blocks, len)) {
                j.full[s].push(sl);
            }
        }
    }
    let nred = work.reduces.len();
    let nacc = work.accums.len();
    let prog = &work.program;
    let snap_views: Vec<Vec<Option<&Buf>>> = bufs.iter().map(|own| views(own, statics)).collect();
    let snap_views = &snap_views[..];
    let scs = &scs[..];
    // Accumulator inputs read straight from the snapshots' buffers can all be held at
    // once; others live in the registers of one snapshot at a time.
    let direct = (0..nacc).all(|k| prog.is_direct(nred + k));
    let run = prog.has_work();
    let block_parts: Vec<Vec<Vec<Part>>> = jobs
        .into_par_iter()
        .map(|mut job| {
            let mut regs: Regs = prog.regs(len);
            let mut ps = vec![vec![Part::new(); nred]; nb];
            for r in job.rows.0..job.rows.1 {
                let ri = r as isize;
                let off = (r - job.rows.0) * len;
                for s in 0..nb {
                    let view = &snap_views[s][..];
                    if run {
                        prog.run(geo, ri, r, view, scs[s], &mut regs);
                    }
                    for (k, p) in ps[s].iter_mut().enumerate() {
                        p.add_row(prog.output(k, &regs, view, ri), work.red_ops[k]);
                    }
                    if !direct {
                        for (k, acc) in job.acc.iter_mut().enumerate() {
                            let n0 = acc.count0 + s;
                            fold_acc(acc, off, len, &[prog.output(nred + k, &regs, view, ri)], n0);
                        }
                    }
                    for (k, f) in job.full[s].iter_mut().enumerate() {
                        f[off..off + len].copy_from_slice(prog.output(nred + nacc + k, &regs, view, ri));
                    }
                }
                if direct {
                    for (k, acc) in job.acc.iter_mut().enumerate() {
                        let mut xs: [&[f64]; MAX_FOLD] = [&[]; MAX_FOLD];
                        for (s, x) in xs.iter_mut().enumerate().take(nb) {
                            *x = prog.direct_output(nred + k, &snap_views[s], ri, len).expect("a direct root");
                        }
                        let n0 = acc.count0;
                        fold_acc(acc, off, len, &xs[..nb], n0);
                    }
                }
            }
            ps
        })
        .collect();
    for job_parts in block_parts {
        for (s, p) in job_parts.into_iter().enumerate() {
            parts_out[s].push(p);
        }
    }
}

/// Folds snapshot rows `xs` into row `off / len` of a block's accumulators.
fn fold_acc(acc: &mut AccRows, off: usize, len: usize, xs: &[&[f64]], n0: usize) {
    let r = off..off + len;
    fold_rows(
        &mut acc.mean[r.clone()],
        acc.m2.as_deref_mut().map(|q| &mut q[r.clone()]),
        acc.min.as_deref_mut().map(|v| &mut v[r.clone()]),
        acc.max.as_deref_mut().map(|v| &mut v[r.clone()]),
        xs,
        n0,
    );
}

/// The buffers of a piece by slot: its own, or the whole-run statistics.
pub(crate) fn views<'a>(own: &'a [Option<Buf>], statics: &[Option<&'a Buf>]) -> Vec<Option<&'a Buf>> {
    own.iter().zip(statics).map(|(o, s)| o.as_ref().or(*s)).collect()
}

/// Disjoint mutable slices of `v` for each block (rows of `len` values).
fn split_blocks<'a>(v: &'a mut [f64], blocks: &[(usize, usize)], len: usize) -> Vec<&'a mut [f64]> {
    let mut out = Vec::new();
    let Some(first) = blocks.first() else { return out };
    let (_, mut rest) = v.split_at_mut(first.0 * len);
    for b in blocks {
        let (head, tail) = rest.split_at_mut((b.1 - b.0) * len);
        out.push(head);
        rest = tail;
    }
    out
}

/// The value of scalar node `id` at `step` (global nodes: any step), memoised.
#[allow(clippy::too_many_arguments)]
fn scalar_value(
    plan: &Plan,
    id: Id,
    step: u64,
    times: &HashMap<u64, f64>,
    order: &[u64],
    partials: &HashMap<(Id, u64), Part>,
    vol: f64,
    memo: &mut HashMap<(Id, u64), f64>,
) -> f64 {
    let node = &plan.nodes[id];
    let key_step = if node.level == Level::Global { u64::MAX } else { step };
    if let Some(&v) = memo.get(&(id, key_step)) {
        return v;
    }
    let v = match &node.op {
        Op::Const(c) => *c,
        Op::Time => times.get(&step).copied().unwrap_or(f64::NAN),
        Op::Step => step as f64,
        Op::Unary(u, a) => unary(*u, scalar_value(plan, *a, step, times, order, partials, vol, memo)),
        Op::Binary(b, x, y) => {
            let xv = scalar_value(plan, *x, step, times, order, partials, vol, memo);
            let yv = scalar_value(plan, *y, step, times, order, partials, vol, memo);
            binary(*b, xv, yv)
        }
        Op::Reduce(r, _) => partials.get(&(id, step)).map(|p| p.value(*r, vol)).unwrap_or(f64::NAN),
        Op::TimeReduce(r, a, sel) => {
            let steps: Vec<u64> = order.iter().copied().filter(|s| plan.selections[*sel].contains(s)).collect();
            let vals: Vec<f64> = steps.iter().map(|&s| scalar_value(plan, *a, s, times, order, partials, vol, memo)).collect();
            match r {
                TRed::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
                TRed::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                TRed::Sum => vals.iter().sum(),
                TRed::Mean => vals.iter().sum::<f64>() / vals.len().max(1) as f64,
                TRed::First => vals.first().copied().unwrap_or(f64::NAN),
                TRed::Last => vals.last().copied().unwrap_or(f64::NAN),
            }
        }
        _ => f64::NAN,
    };
    memo.insert((id, key_step), v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_rows_and_are_never_tiny() {
        for n in [1, 3, 4, 16, 17, 19, 20, 33, 1024] {
            let b = block_ranges(n);
            assert_eq!(b[0].0, 0);
            assert_eq!(b.last().unwrap().1, n);
            for w in b.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            if n >= 4 {
                assert!(b.iter().all(|r| r.1 - r.0 >= 4), "{n}: {b:?}");
            }
        }
    }

    #[test]
    fn interpolation_weights() {
        let geo = Geometry { dims: 2, cells: [4, 4, 1], lower: [0.0; 3], spacing: [0.25, 0.25, 1.0], periodic: [false; 3] };
        // At a cell centre: one term of weight 1.
        let w = weights_1d(&geo, 0, 0.375, &[]);
        assert!(w.iter().any(|t| t.0 == Some(1) && (t.1 - 1.0).abs() < 1e-15));
        // Between the wall and the first centre with a known wall value.
        let w = weights_1d(&geo, 1, 0.0, &[(1, 0, 5.0)]);
        assert_eq!(w[0], (None, 1.0, 5.0));
        // Without: linear extrapolation from the first two centres.
        let w = weights_1d(&geo, 1, 0.0, &[]);
        assert_eq!(w, vec![(Some(0), 1.5, 0.0), (Some(1), -0.5, 0.0)]);
        let s = stencil(&geo, &[0.5, 1.0, 0.0], &[(1, 1, 1.0)]);
        assert!((s.constant - 1.0).abs() < 1e-15 && s.terms.iter().all(|t| t.2 == 0.0 || t.0 == 3), "{s:?}");
    }
}
