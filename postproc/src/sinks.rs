//! `run_pipeline`: from a RUN_DIR and a pipeline file to files in the output
//! directory, through the plan, the executor and the sinks (CSV, JSON, PNG, HDF5 +
//! XDMF). Every file is written under a temporary name and renamed, so a file with its
//! final name is complete. A result cache (`OUT/.cache/`) keyed by the content of each
//! output (its table, the expressions it uses, the run's identity and the selected
//! steps) skips outputs whose files are already up to date.
use crate::error::{did_you_mean, Location, PostError, Result};
use crate::execute::{execute, ExecOptions, Request, Results, SampleRequest};
use crate::pipeline::{self, Output, OutputKind, Pipeline, Snapshots};
use crate::plan::{Id, Level, Op, Plan, Scope, Stat};
use crate::plot::{self, FieldMap, LinePlot, Series, SeriesStyle};
use crate::rundir::{Run, RunDirError};
use decomp::h5read::H5Writer;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bump when results of the same inputs would change: invalidates every cache entry.
const CACHE_VERSION: &str = "postproc-2";

/// Options of `tessera post`.
#[derive(Clone, Debug)]
pub struct PostOptions {
    /// Output directory (default RUN_DIR/post).
    pub out: Option<PathBuf>,
    /// Write the optimised plan as Graphviz here.
    pub graph: Option<PathBuf>,
    /// Bound on field bytes held at once.
    pub memory_bytes: usize,
    /// Progress on stderr.
    pub progress: bool,
    /// Ignore the cache.
    pub no_cache: bool,
}

impl Default for PostOptions {
    fn default() -> Self {
        PostOptions { out: None, graph: None, memory_bytes: 1 << 30, progress: true, no_cache: false }
    }
}

/// What a pipeline run did (also written as OUT/post.json).
#[derive(Clone, Debug)]
pub struct PostReport {
    /// Output directory.
    pub out: PathBuf,
    /// Per output: name, files written, whether it came from the cache, and its
    /// summary (errors against a reference, scalar values, ...).
    pub outputs: Vec<(String, Vec<String>, bool, Value)>,
    /// Hyperslab reads of field data, and their bytes.
    pub field_reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Nodes in the plan, nodes culled, sub-expressions shared.
    pub nodes: (usize, usize, usize),
    /// Passes over the snapshots, pieces processed.
    pub passes: usize,
    /// Pieces.
    pub pieces: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Peak resident memory of the process, MiB (VmHWM).
    pub peak_rss_mib: f64,
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PostError::Failed(format!("{}: cannot write: {e}", path.display()))
    })
}

/// A number as CSV/JSON text: the shortest decimal that reads back to the same float.
fn num(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{x:e}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn json_num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// FNV-1a, 128 bits: a stable content hash for cache keys.
fn fnv128(parts: &[&[u8]]) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for p in parts {
        for &b in *p {
            h ^= b as u128;
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    format!("{h:032x}")
}

fn select(sel: &Snapshots, run: &Run) -> Vec<u64> {
    let all: Vec<u64> = run.snapshots.iter().map(|s| s.step).collect();
    match sel {
        Snapshots::All => all,
        Snapshots::Last => all.last().copied().into_iter().collect(),
        Snapshots::First => all.first().copied().into_iter().collect(),
        Snapshots::Steps(a, b) => all.into_iter().filter(|s| s >= a && s <= b).collect(),
        Snapshots::Every(n) => all.into_iter().step_by(*n).collect(),
    }
}

/// A line's reference data: coordinates, values, the sample set at those points, the
/// file's name, the points.
type RefData = (Vec<f64>, Vec<f64>, usize, String, Vec<[f64; 3]>);

/// One plane of a slice output: field, step, values, shape, extent.
type Plane = (String, u64, Vec<f64>, usize, usize, [f64; 4]);

/// Open derived-field files by output index: writer, snapshots written, field names.
type Writers = HashMap<usize, (H5Writer, Vec<(u64, f64)>, Vec<String>)>;

/// A prepared output: its nodes and what it asked the executor for.
enum Prep {
    Table { cols: Vec<(String, Id)>, steps: Vec<u64> },
    Line { s: Vec<f64>, pts: Vec<[f64; 3]>, sample: usize, reference: Option<RefData>, steps: Vec<u64> },
    Probe { fields: Vec<(String, usize)>, npoints: usize, steps: Vec<u64> },
    Map { full: usize },
    Slice { fields: Vec<(String, usize)>, steps: Vec<u64> },
    Stats { items: Vec<(String, Id)> },
    Field,
    Scalars { values: Vec<(String, Id)>, step: u64 },
    Spectrum { full: usize },
}

struct Ctx<'a> {
    pl: &'a Pipeline,
    run: &'a Run,
}

impl Ctx<'_> {
    fn field_node(&self, scope: &Scope, plan: &mut Plan, e: &pipeline::Expr, what: &str) -> Result<Id> {
        let id = scope.lower_text(plan, &e.text, e.offset)?;
        if plan.nodes[id].level != Level::Field {
            return Err(PostError::at(
                Location::of(&self.pl.file, &self.pl.text, (e.offset, e.offset + e.text.len())),
                format!("{what} needs a field, and {:?} is one number per snapshot", e.text),
            )
            .help("use a field expression such as \"velocity_x\" or \"vorticity(velocity_x, velocity_y)\""));
        }
        Ok(id)
    }

    fn scalar_node(&self, scope: &Scope, plan: &mut Plan, e: &pipeline::Expr, what: &str) -> Result<Id> {
        let id = scope.lower_text(plan, &e.text, e.offset)?;
        if plan.nodes[id].level == Level::Field {
            return Err(PostError::at(
                Location::of(&self.pl.file, &self.pl.text, (e.offset, e.offset + e.text.len())),
                format!("{what} needs one number per snapshot, and {:?} is a field", e.text),
            )
            .help("reduce it over space: max(f), min(f), mean(f), sum(f), integral(f), l2(f), rms(f), linf(f)"));
        }
        Ok(id)
    }

    fn in_domain(&self, p: &[f64], loc: &Location, what: &str) -> Result<[f64; 3]> {
        let r = self.run;
        let mut out = [0.0; 3];
        if p.len() != r.dims {
            return Err(PostError::at(loc.clone(), format!("{what}: a point of {} coordinates in a {}D run", p.len(), r.dims)));
        }
        for a in 0..r.dims {
            let lo = r.lower[a];
            let hi = lo + r.cells[a] as f64 * r.spacing[a];
            let tol = 1e-9 * (hi - lo).abs();
            if !(p[a] >= lo - tol && p[a] <= hi + tol) {
                return Err(PostError::at(loc.clone(), format!("{what}: point {p:?} is outside the domain"))
                    .help(format!("axis {} spans [{lo}, {hi}]", ["x", "y", "z"][a])));
            }
            out[a] = p[a].clamp(lo, hi);
        }
        Ok(out)
    }
}

fn read_reference(r: &pipeline::Reference) -> Result<(Vec<f64>, Vec<f64>, Vec<u8>)> {
    let bytes = std::fs::read(&r.file).map_err(|e| PostError::at(r.loc.clone(), format!("reference {}: {e}", r.file.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut header: Option<Vec<String>> = None;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<String> = line.split(',').map(|c| c.trim().trim_matches('"').to_string()).collect();
        let Some(h) = &header else {
            header = Some(cells);
            continue;
        };
        let col = |name: &str| -> Result<usize> {
            h.iter().position(|c| c == name).ok_or_else(|| {
                let names: Vec<&str> = h.iter().map(String::as_str).collect();
                PostError::at(r.loc.clone(), format!("reference {}: no column `{name}`", r.file.display())).help(format!(
                    "{}columns: {}",
                    did_you_mean(name, &names),
                    h.join(", ")
                ))
            })
        };
        let (ci, vi) = (col(&r.coordinate)?, col(&r.value)?);
        let mut keep = true;
        for (k, v) in &r.filter {
            let fi = col(k)?;
            keep &= cells.get(fi).map(|c| c == v).unwrap_or(false);
        }
        if !keep {
            continue;
        }
        let parse = |i: usize| cells.get(i).and_then(|c| c.parse::<f64>().ok());
        match (parse(ci), parse(vi)) {
            (Some(x), Some(y)) => {
                xs.push(x);
                ys.push(y);
            }
            _ => {
                return Err(PostError::input(format!(
                    "{}:{}: not a number in column `{}` or `{}`",
                    r.file.display(),
                    ln + 1,
                    r.coordinate,
                    r.value
                )))
            }
        }
    }
    if xs.is_empty() {
        return Err(PostError::at(r.loc.clone(), format!("reference {}: no data rows (after the filter)", r.file.display())));
    }
    Ok((xs, ys, bytes))
}

/// A consumer of whole fields as the executor completes them.
enum FullUse {
    Map {
        out: String,
        dir: PathBuf,
        per_step: bool,
        plane: Option<(usize, f64)>,
        range: Option<(f64, f64)>,
        label: String,
        files: Vec<String>,
    },
    Slice {
        out: usize,
        field: String,
    },
    Field {
        out: usize,
        field: String,
    },
    Spectrum {
        axis: usize,
        time_average: bool,
        sum: Vec<f64>,
        count: usize,
        per_step: Vec<(u64, Vec<f64>)>,
    },
}

/// Extracts the plane `axis = at` of a whole field (nearest plane of cell centres,
/// linearly interpolated between the two around it), as (values, n1, n2, extent).
fn plane_of(run: &Run, data: &[f64], axis: usize, at: f64) -> (Vec<f64>, usize, usize, [f64; 4]) {
    let c = run.cells;
    let (nx, ny) = (c[0], c[1]);
    let idx = |i: usize, j: usize, k: usize| (k * ny + j) * nx + i;
    let u = ((at - run.lower[axis]) / run.spacing[axis] - 0.5).clamp(0.0, (c[axis] - 1) as f64);
    let i0 = (u.floor() as usize).min(c[axis].saturating_sub(2));
    let f = if c[axis] > 1 { u - i0 as f64 } else { 0.0 };
    let i1 = (i0 + 1).min(c[axis] - 1);
    let (a1, a2) = match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let mut out = Vec::with_capacity(c[a1] * c[a2]);
    for q in 0..c[a2] {
        for p in 0..c[a1] {
            let at3 = |s: usize| {
                let mut ijk = [0; 3];
                ijk[axis] = s;
                ijk[a1] = p;
                ijk[a2] = q;
                data[idx(ijk[0], ijk[1], ijk[2])]
            };
            out.push((1.0 - f) * at3(i0) + f * at3(i1));
        }
    }
    let ext = |a: usize| (run.lower[a], run.lower[a] + c[a] as f64 * run.spacing[a]);
    let (e1, e2) = (ext(a1), ext(a2));
    (out, c[a1], c[a2], [e1.0, e1.1, e2.0, e2.1])
}

fn spectrum_of(run: &Run, data: &[f64], axis: usize) -> Vec<f64> {
    use realfft::RealFftPlanner;
    let c = run.cells;
    let n = c[axis];
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let mut input = fft.make_input_vec();
    let mut spec = fft.make_output_vec();
    let mut power = vec![0.0; n / 2 + 1];
    let total: usize = c[..run.dims].iter().product();
    let lines = total / n;
    let stride: usize = c[..axis].iter().product();
    for l in 0..lines {
        // Line l: all cells with the other indices fixed.
        let (lo, hi) = (l % stride, l / stride);
        let base = lo + hi * stride * n;
        for (i, v) in input.iter_mut().enumerate() {
            *v = data[base + i * stride];
        }
        if fft.process(&mut input, &mut spec).is_err() {
            continue;
        }
        for (p, z) in power.iter_mut().zip(&spec) {
            *p += z.norm_sqr() / (n as f64 * n as f64);
        }
    }
    // One-sided spectrum: double the bins that stand for two (all but 0 and n/2).
    for (k, p) in power.iter_mut().enumerate() {
        *p /= lines as f64;
        if k != 0 && !(n % 2 == 0 && k == n / 2) {
            *p *= 2.0;
        }
    }
    power
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn failed(e: impl std::fmt::Display) -> PostError {
    PostError::Failed(e.to_string())
}

/// Runs the pipeline `pipeline_file` over `run_dir`.
pub fn run_pipeline(run_dir: &Path, pipeline_file: &Path, opts: &PostOptions) -> Result<PostReport> {
    let t0 = Instant::now();
    let pl = pipeline::load(pipeline_file)?;
    let run = Run::open(run_dir).map_err(|e| match e {
        RunDirError::Bad(m) => PostError::input(m),
        RunDirError::Io(m) => PostError::Failed(m),
    })?;
    if run.snapshots.is_empty() {
        return Err(PostError::input(format!("{}: output.h5 holds no snapshot", run.file.display())));
    }
    let out_dir = opts.out.clone().unwrap_or_else(|| run.dir.join("post"));
    let ctx = Ctx { pl: &pl, run: &run };
    let fields = run.common_fields();
    for (f, loc) in &pl.fields {
        if !fields.contains(f) {
            let names: Vec<&str> = fields.iter().map(String::as_str).collect();
            return Err(PostError::at(loc.clone(), format!("source.fields: the run has no field `{f}` in every snapshot")).help(format!(
                "{}fields of this run: {}",
                did_you_mean(f, &names),
                fields.join(", ")
            )));
        }
    }
    let source_steps = select(&pl.snapshots, &run);
    if source_steps.is_empty() {
        return Err(PostError::input(format!(
            "{}: [source] snapshots selects none of the run's {} snapshots",
            pl.file,
            run.snapshots.len()
        )));
    }
    let mut plan = Plan::default();
    let mut scope = Scope {
        run: &run,
        fields: fields.clone(),
        derived: HashMap::new(),
        later: pl.derive.iter().map(|d| d.0.clone()).collect(),
        file: &pl.file,
        text: &pl.text,
        selection: source_steps.clone(),
    };
    for (name, e, loc) in &pl.derive {
        scope.later.retain(|n| n != name);
        if fields.contains(name) {
            return Err(PostError::at(loc.clone(), format!("derive.name: `{name}` is a field of the run")).help("pick another name"));
        }
        let id = scope.lower_text(&mut plan, &e.text, e.offset)?;
        scope.derived.insert(name.clone(), id);
    }

    // Prepare every output: its nodes, requests and cache key.
    let mut req = Request::default();
    let mut preps: Vec<Option<Prep>> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut roots_of: Vec<(String, Vec<Id>)> = Vec::new();
    let mut uses: Vec<FullUse> = Vec::new();
    let mut cached_report: Vec<Option<(Vec<String>, Value)>> = Vec::new();
    std::fs::create_dir_all(out_dir.join(".cache"))
        .map_err(|e| PostError::input(format!("{}: cannot create the output directory: {e}", out_dir.display())))?;
    for o in &pl.outputs {
        let steps = select(&o.snapshots, &run);
        if steps.is_empty() {
            return Err(PostError::at(o.loc.clone(), format!("output `{}` selects no snapshot", o.name)).help(format!(
                "the run has steps {} to {}",
                run.snapshots[0].step,
                run.snapshots[run.snapshots.len() - 1].step
            )));
        }
        scope.selection = match o.kind {
            OutputKind::TimeStatistics { .. } | OutputKind::Scalars { .. } => steps.clone(),
            _ => source_steps.clone(),
        };
        let set: BTreeSet<u64> = steps.iter().copied().collect();
        let mut extra_key: Vec<u8> = Vec::new();
        let mut ids: Vec<Id> = Vec::new();
        let mark = (req.scalars.len(), req.full.len(), req.samples.len(), req.stats.len(), uses.len());
        let prep = match &o.kind {
            OutputKind::Table { columns, .. } => {
                let mut cols = Vec::new();
                for (name, e) in columns {
                    let id = ctx.scalar_node(&scope, &mut plan, e, &format!("table column {name:?}"))?;
                    req.scalars.push((id, set.clone()));
                    ids.push(id);
                    cols.push((name.clone(), id));
                }
                Prep::Table { cols, steps: steps.clone() }
            }
            OutputKind::Line { field, from, to, points, walls, reference, .. } => {
                let node = ctx.field_node(&scope, &mut plan, field, "a line profile")?;
                ids.push(node);
                let a = ctx.in_domain(from, &o.loc, "from")?;
                let b = ctx.in_domain(to, &o.loc, "to")?;
                let len: f64 = (0..3).map(|k| (b[k] - a[k]).powi(2)).sum::<f64>().sqrt();
                let pts: Vec<[f64; 3]> = (0..*points)
                    .map(|i| {
                        let l = i as f64 / (*points - 1) as f64;
                        [a[0] + l * (b[0] - a[0]), a[1] + l * (b[1] - a[1]), a[2] + l * (b[2] - a[2])]
                    })
                    .collect();
                let s: Vec<f64> = (0..*points).map(|i| len * i as f64 / (*points - 1) as f64).collect();
                req.samples.push(SampleRequest { node, points: pts.clone(), walls: walls.clone(), steps: set.clone() });
                let sample = req.samples.len() - 1;
                let reference = match reference {
                    None => None,
                    Some(r) => {
                        let (xs, ys, bytes) = read_reference(r)?;
                        extra_key.extend(bytes);
                        // Each reference point is sampled exactly where it lies on the line.
                        let mut rp = Vec::new();
                        for &c in &xs {
                            let lam = match r.axis {
                                None => c / len.max(f64::MIN_POSITIVE),
                                Some(ax) => {
                                    if (b[ax] - a[ax]).abs() < 1e-300 {
                                        return Err(PostError::at(
                                            r.loc.clone(),
                                            format!("reference axis {} does not vary along the line", ["x", "y", "z"][ax]),
                                        ));
                                    }
                                    (c - a[ax]) / (b[ax] - a[ax])
                                }
                            };
                            if !(-1e-9..=1.0 + 1e-9).contains(&lam) {
                                return Err(PostError::at(
                                    r.loc.clone(),
                                    format!("reference coordinate {c} is not on the line from {from:?} to {to:?}"),
                                ));
                            }
                            let lam = lam.clamp(0.0, 1.0);
                            rp.push([a[0] + lam * (b[0] - a[0]), a[1] + lam * (b[1] - a[1]), a[2] + lam * (b[2] - a[2])]);
                        }
                        req.samples.push(SampleRequest { node, points: rp.clone(), walls: walls.clone(), steps: set.clone() });
                        let label = r.file.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
                        Some((xs, ys, req.samples.len() - 1, label, rp))
                    }
                };
                Prep::Line { s, pts, sample, reference, steps: steps.clone() }
            }
            OutputKind::Probe { fields, points, .. } => {
                let mut pts = Vec::new();
                for p in points {
                    pts.push(ctx.in_domain(p, &o.loc, "probe")?);
                }
                let mut fs = Vec::new();
                for (name, e) in fields {
                    let node = ctx.field_node(&scope, &mut plan, e, "a probe")?;
                    ids.push(node);
                    req.samples.push(SampleRequest { node, points: pts.clone(), walls: Vec::new(), steps: set.clone() });
                    fs.push((name.clone(), req.samples.len() - 1));
                }
                Prep::Probe { fields: fs, npoints: pts.len(), steps: steps.clone() }
            }
            OutputKind::Map { field, plane, range } => {
                let node = ctx.field_node(&scope, &mut plan, field, "a map")?;
                if run.dims == 3 && plane.is_none() {
                    return Err(PostError::at(o.loc.clone(), format!("output `{}`: a map of a 3D run needs its plane", o.name))
                        .help("add axis = \"z\" and at = 0.5 (the plane's coordinate)"));
                }
                ids.push(node);
                req.full.push((node, set.clone()));
                uses.push(FullUse::Map {
                    out: o.name.clone(),
                    dir: out_dir.clone(),
                    per_step: steps.len() > 1,
                    plane: if run.dims == 3 { *plane } else { None },
                    range: *range,
                    label: field.text.clone(),
                    files: Vec::new(),
                });
                Prep::Map { full: uses.len() - 1 }
            }
            OutputKind::Slice { fields, axis, at } => {
                if *axis >= run.dims || run.dims != 3 {
                    return Err(PostError::at(o.loc.clone(), format!("output `{}`: a slice is a plane of a 3D run", o.name))
                        .help("in a 2D run use kind = \"line\" (a profile) or kind = \"map\""));
                }
                let hi = run.lower[*axis] + run.cells[*axis] as f64 * run.spacing[*axis];
                if !(run.lower[*axis]..=hi).contains(at) {
                    return Err(PostError::at(
                        o.loc.clone(),
                        format!("output `{}`: at = {at} is outside the domain [{}, {hi}]", o.name, run.lower[*axis]),
                    ));
                }
                let mut fs = Vec::new();
                for (name, e) in fields {
                    let node = ctx.field_node(&scope, &mut plan, e, "a slice")?;
                    ids.push(node);
                    req.full.push((node, set.clone()));
                    uses.push(FullUse::Slice { out: preps.len(), field: name.clone() });
                    fs.push((name.clone(), uses.len() - 1));
                }
                Prep::Slice { fields: fs, steps: steps.clone() }
            }
            OutputKind::TimeStatistics { fields, statistics, .. } => {
                let mut items = Vec::new();
                for (name, e) in fields {
                    let node = ctx.field_node(&scope, &mut plan, e, "time statistics")?;
                    let sel = plan.selection(steps.clone());
                    for st in statistics {
                        let s = match st.as_str() {
                            "mean" => Stat::Mean,
                            "rms" => Stat::Rms,
                            "min" => Stat::Min,
                            _ => Stat::Max,
                        };
                        let id = plan.add(Op::TimeStat(s, node, sel));
                        ids.push(id);
                        req.stats.push(id);
                        items.push((format!("{}_{st}", name_of(name)), id));
                    }
                }
                Prep::Stats { items }
            }
            OutputKind::Field { fields } => {
                for (name, e) in fields {
                    let node = ctx.field_node(&scope, &mut plan, e, "a field output")?;
                    ids.push(node);
                    req.full.push((node, set.clone()));
                    uses.push(FullUse::Field { out: preps.len(), field: name_of(name) });
                }
                Prep::Field
            }
            OutputKind::Scalars { values } => {
                let last = *steps.last().expect("non-empty");
                let mut vs = Vec::new();
                for (name, e) in values {
                    let id = ctx.scalar_node(&scope, &mut plan, e, &format!("scalar {name:?}"))?;
                    ids.push(id);
                    req.scalars.push((id, [last].into_iter().collect()));
                    vs.push((name.clone(), id));
                }
                Prep::Scalars { values: vs, step: last }
            }
            OutputKind::Spectrum { field, axis, time_average } => {
                if *axis >= run.dims {
                    return Err(PostError::at(o.loc.clone(), format!("output `{}`: axis z in a 2D run", o.name)));
                }
                let node = ctx.field_node(&scope, &mut plan, field, "a spectrum")?;
                ids.push(node);
                req.full.push((node, set.clone()));
                uses.push(FullUse::Spectrum { axis: *axis, time_average: *time_average, sum: Vec::new(), count: 0, per_step: Vec::new() });
                Prep::Spectrum { full: uses.len() - 1 }
            }
        };
        let contents: Vec<String> = ids.iter().map(|&i| plan.content(i)).collect();
        let steps_txt = format!("{steps:?}");
        let key = fnv128(&[
            CACHE_VERSION.as_bytes(),
            o.canonical.as_bytes(),
            contents.join(";").as_bytes(),
            run.identity.as_bytes(),
            steps_txt.as_bytes(),
            &extra_key,
        ]);
        // A cache hit: the files are there and were made from exactly these inputs.
        let entry = out_dir.join(".cache").join(format!("{}.json", o.name));
        let hit = (!opts.no_cache)
            .then(|| std::fs::read_to_string(&entry).ok())
            .flatten()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|v| v["key"] == key.as_str())
            .and_then(|v| {
                let files: Vec<String> = v["files"].as_array()?.iter().filter_map(|f| f.as_str().map(String::from)).collect();
                files.iter().all(|f| out_dir.join(f).exists()).then(|| (files, v["summary"].clone()))
            });
        if hit.is_some() {
            // Withdraw what this output asked for.
            req.scalars.truncate(mark.0);
            req.full.truncate(mark.1);
            req.samples.truncate(mark.2);
            req.stats.truncate(mark.3);
            uses.truncate(mark.4);
            preps.push(None);
        } else {
            roots_of.push((o.name.clone(), ids));
            preps.push(Some(prep));
        }
        cached_report.push(hit);
        keys.push(key);
    }
    let mut all_roots: Vec<Id> = req.scalars.iter().map(|s| s.0).collect();
    all_roots.extend(req.full.iter().map(|f| f.0));
    all_roots.extend(req.samples.iter().map(|s| s.node));
    all_roots.extend(req.stats.iter().copied());
    let (keep, culled) = crate::optimise::cull(&plan, &all_roots);
    if let Some(g) = &opts.graph {
        write_atomic(g, crate::optimise::dot(&plan, &keep, &roots_of).as_bytes())?;
    }

    // Field outputs are written as the executor completes each snapshot.
    let mut writers: Writers = HashMap::new();
    let mut slices: HashMap<usize, Vec<Plane>> = HashMap::new();
    let times: HashMap<u64, f64> = run.snapshots.iter().map(|s| (s.step, s.time)).collect();
    for (k, p) in preps.iter().enumerate() {
        if let Some(Prep::Field) = p {
            let path = out_dir.join(format!("{}.h5", pl.outputs[k].name));
            let w = H5Writer::create(&path).map_err(failed)?;
            write_header(&w, &run, "derived").map_err(failed)?;
            writers.insert(k, (w, Vec::new(), Vec::new()));
        }
    }
    let res: Results = if req.scalars.is_empty() && req.full.is_empty() && req.samples.is_empty() && req.stats.is_empty() {
        Results::default()
    } else {
        let exec = ExecOptions { memory_bytes: opts.memory_bytes, progress: opts.progress };
        let mut sink = |fi: usize, step: u64, data: &[f64]| -> std::result::Result<(), String> {
            let time = times.get(&step).copied().unwrap_or(0.0);
            match &mut uses[fi] {
                FullUse::Map { out, dir, per_step, plane, range, label, files } => {
                    let name = if *per_step { format!("{out}_{step:08}.png") } else { format!("{out}.png") };
                    let (vals, n1, n2, extent, xl, yl) = match plane {
                        Some((axis, at)) => {
                            let (v, a, b, e) = plane_of(&run, data, *axis, *at);
                            let names = match axis {
                                0 => ("y", "z"),
                                1 => ("x", "z"),
                                _ => ("x", "y"),
                            };
                            (v, a, b, e, names.0, names.1)
                        }
                        None => (data.to_vec(), run.cells[0], run.cells[1], run.extent_xy(), "x", "y"),
                    };
                    let vals: Vec<f64> = match range {
                        Some((lo, hi)) => vals.iter().map(|v| if v.is_nan() { *v } else { v.clamp(*lo, *hi) }).collect(),
                        None => vals,
                    };
                    let m = FieldMap {
                        title: format!("{label} at t = {time:.6} (step {step})"),
                        data: &vals,
                        nx: n1,
                        ny: n2,
                        extent,
                        x_label: xl.into(),
                        y_label: yl.into(),
                        colorbar_label: label.clone(),
                    };
                    plot::field_map(&dir.join(&name), &m).map_err(|e| e.to_string())?;
                    files.push(name);
                }
                FullUse::Slice { out, field } => {
                    let OutputKind::Slice { axis, at, .. } = &pl.outputs[*out].kind else { unreachable!() };
                    let (v, a, b, e) = plane_of(&run, data, *axis, *at);
                    slices.entry(*out).or_default().push((field.clone(), step, v, a, b, e));
                }
                FullUse::Field { out, field } => {
                    let (w, snaps, names) = writers.get_mut(out).expect("opened above");
                    let g = format!("/snapshots/{step:08}");
                    if !snaps.iter().any(|s| s.0 == step) {
                        w.group(&g).map_err(|e| e.to_string())?;
                        w.attr_u64(&g, "step", &[step]).map_err(|e| e.to_string())?;
                        w.attr_f64(&g, "time", &[time]).map_err(|e| e.to_string())?;
                        snaps.push((step, time));
                    }
                    if !names.contains(field) {
                        names.push(field.clone());
                    }
                    w.dataset_f64(&format!("{g}/{field}"), &dataset_shape(&run), data).map_err(|e| e.to_string())?;
                }
                FullUse::Spectrum { axis, time_average, sum, count, per_step } => {
                    let p = spectrum_of(&run, data, *axis);
                    if *time_average {
                        if sum.is_empty() {
                            *sum = vec![0.0; p.len()];
                        }
                        for (s, v) in sum.iter_mut().zip(&p) {
                            *s += v;
                        }
                        *count += 1;
                    } else {
                        per_step.push((step, p));
                    }
                }
            }
            Ok(())
        };
        execute(&plan, &run, &req, &exec, &mut sink).map_err(PostError::Failed)?
    };

    // Sinks.
    let step_nodes: Vec<Id> = (0..plan.nodes.len()).filter(|&i| plan.nodes[i].op == Op::Step).collect();
    let mut report_outputs = Vec::new();
    for (k, o) in pl.outputs.iter().enumerate() {
        if let Some((files, summary)) = cached_report[k].take() {
            report_outputs.push((o.name.clone(), files, true, summary));
            continue;
        }
        let prep = preps[k].as_ref().expect("not cached");
        let (files, summary) = write_output(&run, &out_dir, (k, o), prep, &res, &mut uses, &mut writers, &mut slices, &times, &step_nodes)?;
        let entry = json!({"key": keys[k], "files": files, "summary": summary});
        write_atomic(
            &out_dir.join(".cache").join(format!("{}.json", o.name)),
            serde_json::to_string_pretty(&entry).map_err(failed)?.as_bytes(),
        )?;
        report_outputs.push((o.name.clone(), files, false, summary));
    }
    let (reads, bytes) = run.read_counts();
    let report = PostReport {
        out: out_dir.clone(),
        outputs: report_outputs,
        field_reads: reads,
        bytes_read: bytes,
        nodes: (plan.nodes.len(), culled, plan.shared),
        passes: res.passes,
        pieces: res.pieces,
        seconds: t0.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
    };
    let j = json!({
        "run_dir": run.dir.display().to_string(),
        "pipeline": pl.file,
        "outputs": report.outputs.iter().map(|(n, f, c, s)| json!({"name": n, "files": f, "cached": c, "summary": s})).collect::<Vec<_>>(),
        "field_reads": reads,
        "bytes_read": bytes,
        "plan": {"nodes": report.nodes.0, "culled": report.nodes.1, "shared": report.nodes.2, "passes": report.passes, "pieces": report.pieces},
        "seconds": report.seconds,
        "peak_rss_mib": report.peak_rss_mib,
        "memory_bound_mib": opts.memory_bytes as f64 / (1 << 20) as f64,
    });
    write_atomic(&out_dir.join("post.json"), serde_json::to_string_pretty(&j).map_err(failed)?.as_bytes())?;
    Ok(report)
}

/// A derived name as a dataset name: expressions used as names lose their punctuation.
fn name_of(s: &str) -> String {
    let n: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    n.trim_matches('_').to_string()
}

fn dataset_shape(run: &Run) -> Vec<usize> {
    if run.dims == 2 {
        vec![run.cells[1], run.cells[0]]
    } else {
        vec![run.cells[2], run.cells[1], run.cells[0]]
    }
}

/// Root attributes and /mesh as in docs/FORMAT.md, for derived files.
fn write_header(w: &H5Writer, run: &Run, kind: &str) -> decomp::Result<()> {
    let d = run.dims;
    w.attr_str("/", "format", "tessera")?;
    w.attr_str("/", "format_version", "1.0")?;
    w.attr_str("/", "kind", kind)?;
    w.attr_str("/", "model", &run.model)?;
    w.attr_u64("/", "dims", &[d as u64])?;
    w.attr_str("/", "source", &run.file.display().to_string())?;
    w.group("/mesh")?;
    w.attr_u64("/mesh", "cells", &run.cells[..d].iter().map(|&c| c as u64).collect::<Vec<_>>())?;
    w.attr_f64("/mesh", "lower", &run.lower[..d])?;
    let upper: Vec<f64> = (0..d).map(|a| run.lower[a] + run.cells[a] as f64 * run.spacing[a]).collect();
    w.attr_f64("/mesh", "upper", &upper)?;
    w.attr_f64("/mesh", "spacing", &run.spacing[..d])?;
    w.attr_u64("/mesh", "periodic", &run.periodic[..d].iter().map(|&p| p as u64).collect::<Vec<_>>())?;
    for (a, n) in ["x", "y", "z"].iter().enumerate().take(d) {
        let c: Vec<f64> = (0..run.cells[a]).map(|i| run.centre(a, i)).collect();
        w.dataset_f64(&format!("/mesh/{n}"), &[c.len()], &c)?;
    }
    Ok(())
}

fn xdmf_for(run: &Run, h5: &str, grids: &[decomp::xdmf::XdmfGrid]) -> String {
    decomp::xdmf::document(run.dims, &run.cells[..run.dims], &run.lower, &run.spacing, h5, grids)
}

#[allow(clippy::too_many_arguments)]
fn write_output(
    run: &Run,
    dir: &Path,
    (idx, o): (usize, &Output),
    prep: &Prep,
    res: &Results,
    uses: &mut [FullUse],
    writers: &mut Writers,
    slices: &mut HashMap<usize, Vec<Plane>>,
    times: &HashMap<u64, f64>,
    step_nodes: &[Id],
) -> Result<(Vec<String>, Value)> {
    let k = o.name.as_str();
    let mut files = Vec::new();
    let integer_cols: Vec<Id> = step_nodes.to_vec();
    let time = |s: &u64| times.get(s).copied().unwrap_or(f64::NAN);
    let sv = |id: Id, step: u64| res.scalars.get(&(id, step)).or_else(|| res.scalars.get(&(id, u64::MAX))).copied().unwrap_or(f64::NAN);
    let summary = match prep {
        Prep::Table { cols, steps } => {
            let mut csv = cols.iter().map(|c| csv_field(&c.0)).collect::<Vec<_>>().join(",") + "\n";
            for s in steps {
                // The step column is an integer, as in monitor.csv.
                let cell = |c: &(String, Id)| if integer_cols.contains(&c.1) { s.to_string() } else { num(sv(c.1, *s)) };
                csv += &cols.iter().map(cell).collect::<Vec<_>>().join(",");
                csv.push('\n');
            }
            write_atomic(&dir.join(format!("{k}.csv")), csv.as_bytes())?;
            files.push(format!("{k}.csv"));
            if let OutputKind::Table { plot: true, .. } = o.kind {
                let ts: Vec<f64> = steps.iter().map(time).collect();
                let series: Vec<Series> = cols
                    .iter()
                    .filter(|c| c.0 != "time" && c.0 != "step" && c.0 != "t")
                    .map(|c| Series {
                        label: c.0.clone(),
                        x: ts.clone(),
                        y: steps.iter().map(|s| sv(c.1, *s)).collect(),
                        style: SeriesStyle::Line,
                    })
                    .collect();
                let p =
                    LinePlot { title: k.to_string(), x_label: "time".into(), y_label: "value".into(), series, log_x: false, log_y: false };
                plot::line_plot(&dir.join(format!("{k}.png")), &p).map_err(failed)?;
                files.push(format!("{k}.png"));
            }
            let last = steps.last().copied().unwrap_or(0);
            // The step column is a whole number here too, as in the CSV.
            let value = |c: &(String, Id)| if integer_cols.contains(&c.1) { json!(last) } else { json_num(sv(c.1, last)) };
            json!({"rows": steps.len(), "last": cols.iter().map(|c| (c.0.clone(), value(c))).collect::<serde_json::Map<_, _>>()})
        }
        Prep::Line { s, pts, sample, reference, steps, .. } => {
            let OutputKind::Line { field, plot: do_plot, .. } = &o.kind else { unreachable!() };
            let d = run.dims;
            let axes = ["x", "y", "z"];
            let mut csv = format!("step,time,s,{},{}\n", axes[..d].join(","), csv_field(&field.text));
            for st in steps {
                let vals = &res.samples[*sample][st];
                for (i, p) in pts.iter().enumerate() {
                    csv += &format!(
                        "{st},{},{},{},{}\n",
                        num(time(st)),
                        num(s[i]),
                        p[..d].iter().map(|v| num(*v)).collect::<Vec<_>>().join(","),
                        num(vals[i])
                    );
                }
            }
            write_atomic(&dir.join(format!("{k}.csv")), csv.as_bytes())?;
            files.push(format!("{k}.csv"));
            let last = *steps.last().expect("non-empty");
            // Plot against the coordinate along an axis-parallel line, else the distance s.
            let span: Vec<f64> = (0..d).map(|a| (pts[pts.len() - 1][a] - pts[0][a]).abs()).collect();
            let moving: Vec<usize> = (0..d).filter(|&a| span[a] > 0.0).collect();
            let along = |p: &[f64; 3], i: usize| if moving.len() == 1 { p[moving[0]] } else { s[i] };
            let xname = if moving.len() == 1 { axes[moving[0]].to_string() } else { "s (distance along the line)".to_string() };
            let mut summary = json!({"step": last, "time": json_num(time(&last)), "points": pts.len()});
            let mut series = vec![Series {
                label: format!("tessera, t = {:.4}", time(&last)),
                x: pts.iter().enumerate().map(|(i, p)| along(p, i)).collect(),
                y: res.samples[*sample][&last].clone(),
                style: SeriesStyle::Line,
            }];
            if let Some((xs, ys, rs, label, rp)) = reference {
                let ours = &res.samples[*rs][&last];
                let mut rc = format!("coordinate,reference,{},difference\n", csv_field(&field.text));
                let (mut emax, mut e2) = (0.0f64, 0.0);
                let mut at_max = f64::NAN;
                for i in 0..xs.len() {
                    let diff = ours[i] - ys[i];
                    rc += &format!("{},{},{},{}\n", num(xs[i]), num(ys[i]), num(ours[i]), num(diff));
                    if diff.abs() > emax || diff.is_nan() {
                        emax = diff.abs();
                        at_max = xs[i];
                    }
                    e2 += diff * diff;
                }
                write_atomic(&dir.join(format!("{k}_reference.csv")), rc.as_bytes())?;
                files.push(format!("{k}_reference.csv"));
                let rms = (e2 / xs.len() as f64).sqrt();
                summary["reference"] = json!({"file": label, "points": xs.len(), "max_abs_error": json_num(emax), "rms_error": json_num(rms), "max_error_at": json_num(at_max)});
                let total = s.last().copied().unwrap_or(0.0);
                let rs_of = |p: &[f64; 3]| -> f64 {
                    let first = pts[0];
                    let d2: f64 = (0..d).map(|a| (p[a] - first[a]).powi(2)).sum();
                    d2.sqrt().min(total)
                };
                let x = rp.iter().map(|p| if moving.len() == 1 { p[moving[0]] } else { rs_of(p) }).collect();
                series.push(Series { label: label.clone(), x, y: ys.clone(), style: SeriesStyle::Points });
            }
            if *do_plot {
                let p = LinePlot {
                    title: format!("{k}: {} along the line", field.text),
                    x_label: xname,
                    y_label: field.text.clone(),
                    series,
                    log_x: false,
                    log_y: false,
                };
                plot::line_plot(&dir.join(format!("{k}.png")), &p).map_err(failed)?;
                files.push(format!("{k}.png"));
            }
            summary
        }
        Prep::Probe { fields, npoints, steps } => {
            let mut header = vec!["step".to_string(), "time".to_string()];
            for p in 0..*npoints {
                for (name, _) in fields {
                    header.push(csv_field(&format!("probe{p}_{name}")));
                }
            }
            let mut csv = header.join(",") + "\n";
            for st in steps {
                let mut row = vec![st.to_string(), num(time(st))];
                for p in 0..*npoints {
                    for (_, si) in fields {
                        row.push(num(res.samples[*si][st][p]));
                    }
                }
                csv += &row.join(",");
                csv.push('\n');
            }
            write_atomic(&dir.join(format!("{k}.csv")), csv.as_bytes())?;
            files.push(format!("{k}.csv"));
            if let OutputKind::Probe { plot: true, .. } = o.kind {
                let ts: Vec<f64> = steps.iter().map(time).collect();
                let mut series = Vec::new();
                for p in 0..*npoints {
                    for (name, si) in fields {
                        series.push(Series {
                            label: format!("probe{p} {name}"),
                            x: ts.clone(),
                            y: steps.iter().map(|st| res.samples[*si][st][p]).collect(),
                            style: SeriesStyle::Line,
                        });
                    }
                }
                let p = LinePlot {
                    title: format!("{k}: probes"),
                    x_label: "time".into(),
                    y_label: "value".into(),
                    series,
                    log_x: false,
                    log_y: false,
                };
                plot::line_plot(&dir.join(format!("{k}.png")), &p).map_err(failed)?;
                files.push(format!("{k}.png"));
            }
            let last = steps.last().copied().unwrap_or(0);
            json!({"rows": steps.len(), "last": fields.iter().map(|(n, si)| (n.clone(), Value::Array(res.samples[*si][&last].iter().map(|v| json_num(*v)).collect()))).collect::<serde_json::Map<_, _>>()})
        }
        Prep::Map { full } => {
            let FullUse::Map { files: f, .. } = &uses[*full] else { unreachable!() };
            files.extend(f.iter().cloned());
            json!({"images": f.len()})
        }
        Prep::Slice { fields, steps } => {
            let path = dir.join(format!("{k}.h5"));
            let w = H5Writer::create(&path).map_err(failed)?;
            let planes = slices.remove(&idx).unwrap_or_default();
            debug_assert_eq!(planes.len(), fields.len() * steps.len());
            let mut last_png = None;
            let mut groups = BTreeSet::new();
            for (field, step, v, a, b, e) in &planes {
                let g = format!("/snapshots/{step:08}");
                if groups.insert(*step) {
                    w.group(&g).map_err(failed)?;
                    w.attr_u64(&g, "step", &[*step]).map_err(failed)?;
                    w.attr_f64(&g, "time", &[time(step)]).map_err(failed)?;
                }
                w.dataset_f64(&format!("{g}/{field}"), &[*b, *a], v).map_err(failed)?;
                last_png = Some((field, step, v, a, b, e));
            }
            w.attr_str("/", "format", "tessera-slice").map_err(failed)?;
            w.finish().map_err(failed)?;
            files.push(format!("{k}.h5"));
            if let Some((field, step, v, a, b, e)) = last_png {
                let OutputKind::Slice { axis, .. } = &o.kind else { unreachable!() };
                let names = match axis {
                    0 => ("y", "z"),
                    1 => ("x", "z"),
                    _ => ("x", "y"),
                };
                let m = FieldMap {
                    title: format!("{field} at t = {:.6} (step {step})", time(step)),
                    data: v,
                    nx: *a,
                    ny: *b,
                    extent: *e,
                    x_label: names.0.into(),
                    y_label: names.1.into(),
                    colorbar_label: field.clone(),
                };
                plot::field_map(&dir.join(format!("{k}.png")), &m).map_err(failed)?;
                files.push(format!("{k}.png"));
            }
            json!({"planes": planes.len()})
        }
        Prep::Stats { items } => {
            let path = dir.join(format!("{k}.h5"));
            let w = H5Writer::create(&path).map_err(failed)?;
            write_header(&w, run, "time_statistics").map_err(failed)?;
            let OutputKind::TimeStatistics { plot: do_plot, .. } = &o.kind else { unreachable!() };
            let mut names = Vec::new();
            let mut maps = Vec::new();
            for (name, id) in items {
                let data = res.stats.get(id).ok_or_else(|| failed(format!("time statistic {name} was not computed")))?;
                w.dataset_f64(&format!("/{name}"), &dataset_shape(run), data).map_err(failed)?;
                names.push((name.clone(), format!("/{name}")));
                if run.dims == 2 && *do_plot {
                    maps.push((name, data));
                }
            }
            // The maps are independent: draw them in parallel.
            let e = run.extent_xy();
            let drawn: Vec<Result<String>> = maps
                .par_iter()
                .map(|(name, data)| {
                    let m = FieldMap {
                        title: name.to_string(),
                        data,
                        nx: run.cells[0],
                        ny: run.cells[1],
                        extent: e,
                        x_label: "x".into(),
                        y_label: "y".into(),
                        colorbar_label: name.to_string(),
                    };
                    let file = format!("{k}_{name}.png");
                    plot::field_map(&dir.join(&file), &m).map_err(failed)?;
                    Ok(file)
                })
                .collect();
            for f in drawn {
                files.push(f?);
            }
            w.finish().map_err(failed)?;
            files.push(format!("{k}.h5"));
            let grid = decomp::xdmf::XdmfGrid { name: k.to_string(), time: 0.0, fields: names };
            write_atomic(&dir.join(format!("{k}.xdmf")), xdmf_for(run, &format!("{k}.h5"), &[grid]).as_bytes())?;
            files.push(format!("{k}.xdmf"));
            json!({"fields": items.iter().map(|i| i.0.clone()).collect::<Vec<_>>()})
        }
        Prep::Field => {
            let (w, snaps, names) = writers.remove(&idx).ok_or_else(|| failed("field writer missing"))?;
            w.finish().map_err(failed)?;
            files.push(format!("{k}.h5"));
            let grids: Vec<_> = snaps
                .iter()
                .map(|(s, t)| decomp::xdmf::XdmfGrid {
                    name: format!("step_{s:08}"),
                    time: *t,
                    fields: names.iter().map(|n| (n.clone(), format!("/snapshots/{s:08}/{n}"))).collect(),
                })
                .collect();
            write_atomic(&dir.join(format!("{k}.xdmf")), xdmf_for(run, &format!("{k}.h5"), &grids).as_bytes())?;
            files.push(format!("{k}.xdmf"));
            json!({"snapshots": snaps.len(), "fields": names})
        }
        Prep::Scalars { values, step } => {
            let mut m = serde_json::Map::new();
            for (n, id) in values {
                m.insert(n.clone(), json_num(sv(*id, *step)));
            }
            let j = json!({"step": step, "time": json_num(time(step)), "values": m});
            write_atomic(&dir.join(format!("{k}.json")), serde_json::to_string_pretty(&j).map_err(failed)?.as_bytes())?;
            files.push(format!("{k}.json"));
            Value::Object(m)
        }
        Prep::Spectrum { full } => {
            let FullUse::Spectrum { axis, time_average, sum, count, per_step } = &uses[*full] else { unreachable!() };
            let n = run.cells[*axis];
            let lx = n as f64 * run.spacing[*axis];
            let cols: Vec<(String, Vec<f64>)> = if *time_average {
                vec![("power".into(), sum.iter().map(|s| s / (*count).max(1) as f64).collect())]
            } else {
                per_step.iter().map(|(s, p)| (format!("power_step_{s}"), p.clone())).collect()
            };
            let nk = n / 2 + 1;
            let mut csv = format!("k,wavenumber,{}\n", cols.iter().map(|c| c.0.clone()).collect::<Vec<_>>().join(","));
            for kk in 0..nk {
                csv += &format!("{kk},{}", num(2.0 * std::f64::consts::PI * kk as f64 / lx));
                for c in &cols {
                    csv += &format!(",{}", num(c.1.get(kk).copied().unwrap_or(f64::NAN)));
                }
                csv.push('\n');
            }
            write_atomic(&dir.join(format!("{k}.csv")), csv.as_bytes())?;
            files.push(format!("{k}.csv"));
            let series: Vec<Series> = cols
                .iter()
                .map(|c| Series {
                    label: c.0.clone(),
                    x: (1..nk).map(|kk| 2.0 * std::f64::consts::PI * kk as f64 / lx).collect(),
                    y: c.1[1..].to_vec(),
                    style: SeriesStyle::Line,
                })
                .collect();
            let p = LinePlot {
                title: format!("{k}: power spectrum along {}", ["x", "y", "z"][*axis]),
                x_label: "wavenumber".into(),
                y_label: "power".into(),
                series,
                log_x: true,
                log_y: true,
            };
            plot::line_plot(&dir.join(format!("{k}.png")), &p).map_err(failed)?;
            files.push(format!("{k}.png"));
            json!({"bins": nk, "snapshots": if *time_average { *count } else { per_step.len() }})
        }
    };
    Ok((files, summary))
}
