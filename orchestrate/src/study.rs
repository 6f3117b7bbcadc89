//! The study file (TOML): a base case, parameters, resources, retries, and the
//! quantities of interest. Checked key by key: a mistake names its file, line and
//! column (exit 2) before anything runs. The format is documented in docs/STUDY.md.
use postproc::error::{did_you_mean, Location, PostError};
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Spanned, Value};

/// Errors of studies: bad input (exit 2, located) or a failure (exit 3).
pub type StudyError = PostError;
/// Result with [`StudyError`].
pub type Result<T, E = StudyError> = std::result::Result<T, E>;

/// Study kinds.
pub const KINDS: &[&str] = &["sweep", "convergence", "adaptive"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    study: Spanned<RawStudy>,
    #[serde(default)]
    parameters: BTreeMap<Spanned<String>, Spanned<RawParam>>,
    quantities: Option<RawQuantities>,
    convergence: Option<Spanned<RawConvergence>>,
    adaptive: Option<Spanned<RawAdaptive>>,
    slurm: Option<Spanned<RawSlurm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlurm {
    partition: Option<String>,
    account: Option<String>,
    qos: Option<String>,
    mem: Option<String>,
    cpus_per_task: Option<u32>,
    time: Option<Spanned<String>>,
    poll_interval: Option<Spanned<f64>>,
}

/// How runs are submitted with the slurm executor: sbatch options per run.
#[derive(Clone, Debug, PartialEq)]
pub struct SlurmSpec {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--mem` per node.
    pub mem: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--time` (default: from `study.timeout`, rounded up to minutes).
    pub time: Option<String>,
    /// Seconds between the batched squeue queries (default 5).
    pub poll_interval: f64,
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec { partition: None, account: None, qos: None, mem: None, cpus_per_task: None, time: None, poll_interval: 5.0 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConvergence {
    parameter: Option<Spanned<String>>,
    cells: Spanned<Vec<i64>>,
    ratio: Option<Spanned<f64>>,
    quantity: Spanned<String>,
    gci_target: Spanned<f64>,
    max_levels: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdaptive {
    quantity: Spanned<String>,
    loss_goal: Spanned<f64>,
    max_runs: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStudy {
    name: Option<Spanned<String>>,
    case: Spanned<String>,
    kind: Spanned<String>,
    ranks_per_run: Option<Spanned<i64>>,
    max_parallel: Option<Spanned<i64>>,
    slots: Option<Spanned<i64>>,
    retries: Option<Spanned<Value>>,
    timeout: Option<Spanned<f64>>,
    executor: Option<Spanned<String>>,
    sampling: Option<Spanned<String>>,
    samples: Option<Spanned<i64>>,
    seed: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    values: Option<Vec<Value>>,
    range: Option<[f64; 2]>,
    logspace: Option<[f64; 2]>,
    count: Option<i64>,
    between: Option<[f64; 2]>,
    scale: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuantities {
    pipeline: Spanned<String>,
}

/// How many times each failure class is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retries {
    /// Launch or system failures (the launcher failed, the run was killed, no summary).
    pub system: u32,
    /// Runs that hit the study's timeout.
    pub timeout: u32,
    /// Runs that diverged (an application result: not retried by default).
    pub diverged: u32,
}

/// A grid convergence study: the mesh refined by `ratio` per level from `cells` until
/// the GCI of `quantity` on the three finest levels is at most `gci_target`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvergencePlan {
    /// The case key refined (default `mesh.cells`).
    pub parameter: String,
    /// Cells per axis of the coarsest level.
    pub cells: Vec<i64>,
    /// Refinement ratio per level (cells per axis scale by it, rounded).
    pub ratio: f64,
    /// The quantity of interest (a `scalars` value of the quantities pipeline).
    pub quantity: String,
    /// Stop once GCI_fine is at most this (a fraction: 0.01 is 1 %).
    pub gci_target: f64,
    /// Levels at most (at least 3).
    pub max_levels: usize,
}

impl ConvergencePlan {
    /// Cells per axis of level `k` (0 = coarsest).
    pub fn level_cells(&self, k: usize) -> Vec<i64> {
        self.cells.iter().map(|&c| (c as f64 * self.ratio.powi(k as i32)).round() as i64).collect()
    }
}

/// One sampled parameter of an adaptive study.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// The case key.
    pub name: String,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Sampled in log space.
    pub log: bool,
}

/// Loss-driven sampling of one or two parameters (see `adaptive`).
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptivePlan {
    /// The sampled parameters (1 or 2).
    pub axes: Vec<Axis>,
    /// The quantity learnt (a `scalars` value of the quantities pipeline).
    pub quantity: String,
    /// Stop once the largest loss is at most this.
    pub loss_goal: f64,
    /// Runs at most.
    pub max_runs: usize,
}

/// What a study runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Every point of [`Study::points`], all known up front.
    Sweep,
    /// Levels of mesh refinement, added one by one until the GCI target is met.
    Convergence(ConvergencePlan),
    /// Points chosen one batch at a time where the loss is largest.
    Adaptive(AdaptivePlan),
}

/// A checked study.
#[derive(Clone, Debug)]
pub struct Study {
    /// Study name.
    pub name: String,
    /// The study file, as given.
    pub file: PathBuf,
    /// Its text.
    pub text: String,
    /// The base case (absolute).
    pub case: PathBuf,
    /// Study kind.
    pub kind: String,
    /// Ranks per run.
    pub ranks: usize,
    /// Runs at once.
    pub max_parallel: usize,
    /// Slots (cores) the runs may occupy together.
    pub slots: usize,
    /// Retries by class.
    pub retries: Retries,
    /// Wall seconds per run attempt, if bounded.
    pub timeout: Option<f64>,
    /// `local` (Slurm comes with the slurm executor).
    pub executor: String,
    /// The points known up front (a sweep's): one `--set` list per run, with the
    /// parameter values for the table. Empty for kinds that choose their points.
    pub points: Vec<Vec<(String, Value)>>,
    /// Points checked with `tessera check` before anything runs: a sweep's points, every
    /// level of a convergence study, the corners of an adaptive study's box.
    pub checks: Vec<Vec<(String, Value)>>,
    /// How the runs are chosen.
    pub plan: Plan,
    /// Parameter names in order.
    pub parameters: Vec<String>,
    /// Quantities-of-interest pipeline (absolute).
    pub pipeline: Option<PathBuf>,
    /// sbatch options (executor `slurm`).
    pub slurm: Option<SlurmSpec>,
}

fn loc_of<T>(file: &str, text: &str, s: &Spanned<T>) -> Location {
    let r = s.span();
    Location::of(file, text, (r.start, r.end))
}

fn positive(file: &str, text: &str, v: &Option<Spanned<i64>>, key: &str, default: usize) -> Result<usize> {
    match v {
        None => Ok(default),
        Some(s) if *s.get_ref() >= 1 => Ok(*s.get_ref() as usize),
        Some(s) => Err(PostError::at(loc_of(file, text, s), format!("study.{key}: must be at least 1, found {}", s.get_ref()))),
    }
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<Study> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PostError::input(format!("{file}: cannot read the study file: {e}")))?;
    parse(&file, &text, path)
}

/// Parses study text (`path` resolves the relative paths in it).
pub fn parse(file: &str, text: &str, path: &Path) -> Result<Study> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().map(|r| (r.start, r.end)).unwrap_or((0, 0));
        PostError::at(Location::of(file, text, span), e.message().trim().to_string())
            .help("a study file has [study] (case, kind, ranks_per_run, max_parallel, slots, retries, timeout, executor, sampling, samples, seed), [parameters] and [quantities]")
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let abs = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        let p = if p.is_absolute() { p } else { dir.join(p) };
        std::path::absolute(&p).unwrap_or(p)
    };
    let s = raw.study.get_ref();
    let case = abs(s.case.get_ref());
    if !case.is_file() {
        return Err(PostError::at(loc_of(file, text, &s.case), format!("study.case: no such case file {}", case.display()))
            .help("a path relative to the study file"));
    }
    let kind = s.kind.get_ref().clone();
    if !KINDS.contains(&kind.as_str()) {
        return Err(PostError::at(loc_of(file, text, &s.kind), format!("study.kind: unknown kind {kind:?}")).help(format!(
            "{}kinds: {}",
            did_you_mean(&kind, KINDS),
            KINDS.join(", ")
        )));
    }
    let executor = s.executor.as_ref().map(|e| e.get_ref().clone()).unwrap_or_else(|| "local".into());
    if executor != "local" && executor != "slurm" {
        let e = s.executor.as_ref().expect("given");
        return Err(PostError::at(loc_of(file, text, e), format!("study.executor: unknown executor {executor:?}"))
            .help(format!("{}executors: local, slurm", did_you_mean(&executor, &["local", "slurm"]))));
    }
    let slurm = match (&raw.slurm, executor.as_str()) {
        (Some(t), "local") => {
            return Err(PostError::at(loc_of(file, text, t), "[slurm] is for executor = \"slurm\", but this study runs locally")
                .help("set study.executor = \"slurm\", or remove [slurm]"))
        }
        (None, "local") => None,
        (t, _) => {
            let t = t.as_ref().map(|t| t.get_ref());
            if let Some(tm) = t.and_then(|t| t.time.as_ref()) {
                crate::slurm::parse_time(tm.get_ref()).map_err(|m| {
                    PostError::at(loc_of(file, text, tm), format!("slurm.time {:?}: {m}", tm.get_ref()))
                        .help("MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
                })?;
            }
            let poll_interval = match t.and_then(|t| t.poll_interval.as_ref()) {
                None => SlurmSpec::default().poll_interval,
                Some(p) if *p.get_ref() >= 0.1 && *p.get_ref() <= 3600.0 => *p.get_ref(),
                Some(p) => {
                    return Err(PostError::at(loc_of(file, text, p), "slurm.poll_interval: expected seconds in [0.1, 3600]")
                        .help("one batched squeue per interval for all the study's jobs; 5 to 60 s on a shared cluster"))
                }
            };
            Some(SlurmSpec {
                partition: t.and_then(|t| t.partition.clone()),
                account: t.and_then(|t| t.account.clone()),
                qos: t.and_then(|t| t.qos.clone()),
                mem: t.and_then(|t| t.mem.clone()),
                cpus_per_task: t.and_then(|t| t.cpus_per_task),
                time: t.and_then(|t| t.time.as_ref().map(|x| x.get_ref().clone())),
                poll_interval,
            })
        }
    };
    let ranks = positive(file, text, &s.ranks_per_run, "ranks_per_run", 1)?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // On Slurm the cluster places the jobs: `max_parallel` bounds the jobs in flight.
    let (default_slots, default_parallel) = match (&slurm, &s.max_parallel) {
        (Some(_), Some(m)) => ((*m.get_ref()).max(1) as usize * ranks, None),
        (Some(_), None) => (8 * ranks, Some(8)),
        (None, _) => (cores.max(ranks), None),
    };
    let slots = positive(file, text, &s.slots, "slots", default_slots)?;
    let max_parallel = positive(file, text, &s.max_parallel, "max_parallel", default_parallel.unwrap_or((slots / ranks).max(1)))?;
    if ranks > slots {
        let at = s.ranks_per_run.as_ref().expect("given when larger than the default slots");
        return Err(PostError::at(loc_of(file, text, at), format!("study.ranks_per_run = {ranks} needs more than the {slots} slots"))
            .help("raise study.slots or lower ranks_per_run"));
    }
    let retries = match &s.retries {
        None => Retries { system: 2, timeout: 1, diverged: 0 },
        Some(v) => match v.get_ref() {
            Value::Integer(n) if *n >= 0 => Retries { system: *n as u32, timeout: *n as u32, diverged: 0 },
            Value::Table(t) => {
                let mut r = Retries { system: 2, timeout: 1, diverged: 0 };
                for (k, x) in t {
                    let n = x
                        .as_integer()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| PostError::at(loc_of(file, text, v), format!("study.retries.{k}: expected an integer >= 0")))?;
                    match k.as_str() {
                        "system" => r.system = n as u32,
                        "timeout" => r.timeout = n as u32,
                        "diverged" => r.diverged = n as u32,
                        _ => {
                            return Err(PostError::at(loc_of(file, text, v), format!("study.retries: unknown failure class `{k}`")).help(
                                format!("{}classes: system, timeout, diverged", did_you_mean(k, &["system", "timeout", "diverged"])),
                            ))
                        }
                    }
                }
                r
            }
            _ => {
                return Err(PostError::at(
                    loc_of(file, text, v),
                    "study.retries: expected an integer >= 0 or a table { system, timeout, diverged }",
                ))
            }
        },
    };
    let timeout = match &s.timeout {
        None => None,
        Some(t) if *t.get_ref() > 0.0 && t.get_ref().is_finite() => Some(*t.get_ref()),
        Some(t) => return Err(PostError::at(loc_of(file, text, t), "study.timeout: expected seconds > 0")),
    };
    // Parameters: lists form a Cartesian product; `between` ranges are sampled jointly.
    let mut lists: Vec<(String, Vec<Value>)> = Vec::new();
    let mut ranged: Vec<(String, f64, f64, bool)> = Vec::new();
    for (k, p) in &raw.parameters {
        let key = k.get_ref().clone();
        let l = loc_of(file, text, k);
        let bad = |m: String| PostError::at(l.clone(), format!("parameter {key}: {m}"));
        let pr = p.get_ref();
        let forms = [pr.values.is_some(), pr.range.is_some(), pr.logspace.is_some(), pr.between.is_some()].iter().filter(|b| **b).count();
        if forms != 1 {
            return Err(bad("give exactly one of values, range, logspace, between".into())
                .help("values = [...]; range = [lo, hi], count = N; logspace = [lo, hi], count = N; between = [lo, hi] (sampled)"));
        }
        let count = match pr.count {
            Some(n) if n >= 1 => Some(n as usize),
            Some(_) => return Err(bad("count must be at least 1".into())),
            None => None,
        };
        if let Some(v) = &pr.values {
            if v.is_empty() {
                return Err(bad("values must not be empty".into()));
            }
            lists.push((key, v.clone()));
        } else if let Some([a, b]) = pr.range {
            let n = count.ok_or_else(|| bad("range needs count".into()))?;
            lists.push((key, (0..n).map(|i| Value::Float(if n == 1 { a } else { a + (b - a) * i as f64 / (n - 1) as f64 })).collect()));
        } else if let Some([a, b]) = pr.logspace {
            let n = count.ok_or_else(|| bad("logspace needs count".into()))?;
            if a <= 0.0 || b <= 0.0 {
                return Err(bad("logspace bounds must be positive".into()));
            }
            let (la, lb) = (a.ln(), b.ln());
            lists.push((
                key,
                (0..n).map(|i| Value::Float(if n == 1 { a } else { (la + (lb - la) * i as f64 / (n - 1) as f64).exp() })).collect(),
            ));
        } else if let Some([a, b]) = pr.between {
            let log = match pr.scale.as_deref() {
                None | Some("linear") => false,
                Some("log") if a > 0.0 && b > 0.0 => true,
                Some("log") => return Err(bad("a log scale needs positive bounds".into())),
                Some(o) => return Err(bad(format!("unknown scale {o:?}")).help("\"linear\" or \"log\"")),
            };
            if !(a < b) {
                return Err(bad("between needs lo < hi".into()));
            }
            ranged.push((key, a, b, log));
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new()];
    // An adaptive study chooses the values of its `between` parameters itself.
    if !ranged.is_empty() && kind != "adaptive" {
        let how = s.sampling.as_ref().map(|x| x.get_ref().as_str()).unwrap_or("lhs");
        let n = positive(file, text, &s.samples, "samples", 0)?;
        if n == 0 {
            return Err(PostError::at(loc_of(file, text, &raw.study), "study.samples: `between` parameters need a sample count")
                .help("samples = 20"));
        }
        let seed = s.seed.as_ref().map(|x| *x.get_ref() as u64).unwrap_or(0);
        let unit = match how {
            "lhs" => latin_hypercube(n, ranged.len(), seed),
            "random" => random_unit(n, ranged.len(), seed),
            other => {
                let at = s.sampling.as_ref().expect("given");
                return Err(PostError::at(loc_of(file, text, at), format!("study.sampling: unknown method {other:?}"))
                    .help(format!("{}methods: lhs, random", did_you_mean(other, &["lhs", "random"]))));
            }
        };
        samples = unit
            .into_iter()
            .map(|u| {
                u.iter()
                    .zip(&ranged)
                    .map(|(x, (_, a, b, log))| if *log { (a.ln() + x * (b.ln() - a.ln())).exp() } else { a + x * (b - a) })
                    .collect()
            })
            .collect();
    }
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (k, vals) in &lists {
        let mut next = Vec::new();
        for p in &points {
            for v in vals {
                let mut q = p.clone();
                q.push((k.clone(), v.clone()));
                next.push(q);
            }
        }
        points = next;
    }
    if !ranged.is_empty() && kind != "adaptive" {
        let mut next = Vec::new();
        for p in &points {
            for smp in &samples {
                let mut q = p.clone();
                for ((k, ..), x) in ranged.iter().zip(smp) {
                    q.push((k.clone(), Value::Float(*x)));
                }
                next.push(q);
            }
        }
        points = next;
    }
    let mut parameters: Vec<String> = lists.iter().map(|l| l.0.clone()).collect();
    parameters.extend(ranged.iter().map(|r| r.0.clone()));
    let pipeline = match &raw.quantities {
        None => None,
        Some(q) => {
            let p = abs(q.pipeline.get_ref());
            if !p.is_file() {
                return Err(PostError::at(
                    loc_of(file, text, &q.pipeline),
                    format!("quantities.pipeline: no such pipeline file {}", p.display()),
                ));
            }
            Some(p)
        }
    };
    let (plan, points, checks) = plan_of(file, text, &raw, &kind, points, &ranged, pipeline.as_deref())?;
    let parameters = match &plan {
        Plan::Convergence(c) => vec![c.parameter.clone()],
        _ => parameters,
    };
    let name = s
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| path.file_stem().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| "study".into()));
    Ok(Study {
        name,
        file: path.to_path_buf(),
        text: text.to_string(),
        case,
        kind,
        ranks,
        max_parallel,
        slots,
        retries,
        timeout,
        executor,
        points,
        checks,
        plan,
        parameters,
        pipeline,
        slurm,
    })
}

/// The kind's plan, the points to create up front and the points to check.
#[allow(clippy::type_complexity)]
fn plan_of(
    file: &str,
    text: &str,
    raw: &RawFile,
    kind: &str,
    points: Vec<Vec<(String, Value)>>,
    ranged: &[(String, f64, f64, bool)],
    pipeline: Option<&Path>,
) -> Result<(Plan, Vec<Vec<(String, Value)>>, Vec<Vec<(String, Value)>>)> {
    let study_loc = loc_of(file, text, &raw.study);
    let stray = |name: &str, table: Option<Location>| -> Result<()> {
        match table {
            Some(l) => Err(PostError::at(l, format!("[{name}] belongs to kind = \"{name}\", but this study is kind = \"{kind}\""))),
            None => Ok(()),
        }
    };
    let need_pipeline = |what: &str| -> Result<&Path> {
        pipeline.ok_or_else(|| {
            PostError::at(study_loc.clone(), format!("a {kind} study needs [quantities] pipeline = \"...\" for its {what}"))
                .help("a pipeline with a `scalars` output that computes the quantity, see docs/POST.md")
        })
    };
    match kind {
        "convergence" => {
            stray("adaptive", raw.adaptive.as_ref().map(|a| loc_of(file, text, a)))?;
            let c = raw.convergence.as_ref().ok_or_else(|| {
                PostError::at(study_loc.clone(), "a convergence study needs a [convergence] table")
                    .help("[convergence]\ncells = [16, 16]      # the coarsest mesh\nratio = 2\nquantity = \"peak\"\ngci_target = 0.01")
            })?;
            let cl = loc_of(file, text, c);
            let c = c.get_ref();
            if let Some((k, _)) = raw.parameters.first_key_value() {
                return Err(PostError::at(
                    loc_of(file, text, k),
                    "a convergence study refines the mesh of one case: it takes no [parameters]",
                )
                .help("fix other values in the case (or a case that `extends` it); run a sweep of convergence studies for several"));
            }
            let parameter = c.parameter.as_ref().map(|p| p.get_ref().clone()).unwrap_or_else(|| "mesh.cells".into());
            let cells = c.cells.get_ref().clone();
            if cells.is_empty() || cells.len() > 3 || cells.iter().any(|&n| n < 1) {
                return Err(PostError::at(loc_of(file, text, &c.cells), "convergence.cells: 1 to 3 positive cell counts, one per axis"));
            }
            let ratio = c.ratio.as_ref().map(|r| *r.get_ref()).unwrap_or(2.0);
            if !(ratio > 1.0 && ratio <= 4.0) {
                let at = c.ratio.as_ref().expect("the default is valid");
                return Err(PostError::at(loc_of(file, text, at), format!("convergence.ratio: {ratio} is not in (1, 4]"))
                    .help("Celik et al. (2008) recommend ratios above 1.3; 2 is usual"));
            }
            let max_levels = match &c.max_levels {
                None => 6,
                Some(m) if (3..=12).contains(m.get_ref()) => *m.get_ref() as usize,
                Some(m) => {
                    return Err(PostError::at(loc_of(file, text, m), format!("convergence.max_levels: {} is not in 3..=12", m.get_ref()))
                        .help("three levels give one GCI; each further level a finer one"))
                }
            };
            let gci_target = *c.gci_target.get_ref();
            if !(gci_target > 0.0 && gci_target < 1.0) {
                return Err(PostError::at(
                    loc_of(file, text, &c.gci_target),
                    format!("convergence.gci_target: {gci_target} is not in (0, 1)"),
                )
                .help("a fraction of the fine-grid value: 0.01 is 1 %"));
            }
            let plan = ConvergencePlan { parameter, cells, ratio, quantity: c.quantity.get_ref().clone(), gci_target, max_levels };
            let total = |k: usize| plan.level_cells(k).iter().product::<i64>();
            if let Some(k) = (1..max_levels).find(|&k| total(k) <= total(k - 1)) {
                return Err(PostError::at(
                    c.ratio.as_ref().map(|r| loc_of(file, text, r)).unwrap_or(cl),
                    format!("convergence: levels {} and {k} have the same mesh {:?} after rounding", k - 1, plan.level_cells(k)),
                )
                .help("start from more cells or use a larger ratio"));
            }
            check_quantity(file, text, &c.quantity, need_pipeline("quantity")?)?;
            let checks = (0..max_levels).map(|k| vec![(plan.parameter.clone(), cells_value(&plan.level_cells(k)))]).collect();
            Ok((Plan::Convergence(plan), Vec::new(), checks))
        }
        "adaptive" => {
            stray("convergence", raw.convergence.as_ref().map(|a| loc_of(file, text, a)))?;
            let a = raw.adaptive.as_ref().ok_or_else(|| {
                PostError::at(study_loc.clone(), "an adaptive study needs an [adaptive] table")
                    .help("[adaptive]\nquantity = \"peak\"\nloss_goal = 0.01\nmax_runs = 40")
            })?;
            let a = a.get_ref();
            let fixed: Vec<&Spanned<String>> =
                raw.parameters.iter().filter(|(_, p)| p.get_ref().between.is_none()).map(|(k, _)| k).collect();
            if let Some(k) = fixed.first() {
                return Err(PostError::at(
                    loc_of(file, text, *k),
                    format!("parameter {}: an adaptive study samples `between` ranges", k.get_ref()),
                )
                .help("\"KEY\" = { between = [lo, hi] } (scale = \"log\" for a log axis); fix other values in the case"));
            }
            if ranged.is_empty() || ranged.len() > 2 {
                return Err(PostError::at(
                    study_loc.clone(),
                    format!("an adaptive study samples 1 or 2 parameters, found {}", ranged.len()),
                )
                .help("[parameters]\n\"physics.diffusivity\" = { between = [0.01, 1.0] }"));
            }
            let loss_goal = *a.loss_goal.get_ref();
            if !(loss_goal > 0.0 && loss_goal.is_finite()) {
                return Err(PostError::at(loc_of(file, text, &a.loss_goal), "adaptive.loss_goal: expected a number > 0")
                    .help("the loss is the scaled length (1D) or area (2D) of the worst interval or triangle; 0.01 is fine"));
            }
            let least = if ranged.len() == 1 { 2 } else { 5 };
            let max_runs = *a.max_runs.get_ref();
            if max_runs < least {
                return Err(PostError::at(
                    loc_of(file, text, &a.max_runs),
                    format!("adaptive.max_runs: {max_runs} is below the {least} runs of the initial design"),
                ));
            }
            check_quantity(file, text, &a.quantity, need_pipeline("quantity")?)?;
            let axes: Vec<Axis> = ranged.iter().map(|(n, lo, hi, log)| Axis { name: n.clone(), lo: *lo, hi: *hi, log: *log }).collect();
            // The corners of the box: the extreme values every axis takes.
            let mut checks: Vec<Vec<(String, Value)>> = vec![Vec::new()];
            for ax in &axes {
                checks = checks
                    .into_iter()
                    .flat_map(|p| {
                        [ax.lo, ax.hi].map(|v| {
                            let mut q = p.clone();
                            q.push((ax.name.clone(), Value::Float(v)));
                            q
                        })
                    })
                    .collect();
            }
            let plan = AdaptivePlan { axes, quantity: a.quantity.get_ref().clone(), loss_goal, max_runs: max_runs as usize };
            Ok((Plan::Adaptive(plan), Vec::new(), checks))
        }
        _ => {
            stray("convergence", raw.convergence.as_ref().map(|a| loc_of(file, text, a)))?;
            stray("adaptive", raw.adaptive.as_ref().map(|a| loc_of(file, text, a)))?;
            Ok((Plan::Sweep, points.clone(), points))
        }
    }
}

/// A mesh as a TOML array of cell counts.
pub fn cells_value(cells: &[i64]) -> Value {
    Value::Array(cells.iter().map(|&c| Value::Integer(c)).collect())
}

/// Checks that the quantities pipeline computes `q` as a `scalars` value.
fn check_quantity(file: &str, text: &str, q: &Spanned<String>, pipeline: &Path) -> Result<()> {
    let p = postproc::pipeline::load(pipeline)?;
    let names: Vec<String> = p
        .outputs
        .iter()
        .filter_map(|o| match &o.kind {
            postproc::pipeline::OutputKind::Scalars { values } => Some(values.iter().map(|v| v.0.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    let want = q.get_ref();
    if names.iter().any(|n| n == want) {
        return Ok(());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    Err(PostError::at(loc_of(file, text, q), format!("quantity {want:?} is not computed by {}", pipeline.display())).help(
        if names.is_empty() {
            "the pipeline has no `scalars` output; add one: [[output]] kind = \"scalars\" values = { NAME = \"...\" }".to_string()
        } else {
            format!("{}its scalars: {}", did_you_mean(want, &refs), names.join(", "))
        },
    ))
}

/// `--set` text of a parameter value.
pub fn set_arg(key: &str, v: &Value) -> String {
    format!("{key}={v}")
}

/// `n` points in the unit cube of `d` dimensions, one per stratum along every axis
/// (McKay et al. 1979), reproducible from `seed`.
pub fn latin_hypercube(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut pts = vec![vec![0.0; d]; n];
    for a in 0..d {
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            perm.swap(i, j);
        }
        for (i, p) in pts.iter_mut().enumerate() {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            p[a] = (perm[i] as f64 + u) / n as f64;
        }
    }
    pts
}

/// `n` uniform random points in the unit cube, reproducible from `seed`.
pub fn random_unit(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (0..d).map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_hypercube_has_one_point_per_stratum() {
        let p = latin_hypercube(10, 3, 7);
        for a in 0..3 {
            let mut strata: Vec<usize> = p.iter().map(|x| (x[a] * 10.0).floor() as usize).collect();
            strata.sort();
            assert_eq!(strata, (0..10).collect::<Vec<_>>());
        }
        assert_eq!(p, latin_hypercube(10, 3, 7), "reproducible");
        assert_ne!(p, latin_hypercube(10, 3, 8));
    }

    #[test]
    fn sweep_points_and_errors() {
        let dir = std::env::temp_dir().join(format!("orch-study-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.toml"), "").unwrap();
        let f = dir.join("s.toml");
        let text = "[study]\ncase = \"c.toml\"\nkind = \"sweep\"\nmax_parallel = 2\n[parameters]\n\"physics.diffusivity\" = { values = [0.5, 1.0] }\n\"numerics.dt\" = { logspace = [1e-3, 1e-1], count = 3 }\n";
        let s = parse("s.toml", text, &f).unwrap();
        assert_eq!(s.points.len(), 6);
        assert_eq!(s.parameters, vec!["numerics.dt".to_string(), "physics.diffusivity".to_string()]);
        assert!((s.points[2][0].1.as_float().unwrap() - 1e-2).abs() < 1e-15, "{:?}", s.points);
        let e = parse("s.toml", &text.replace("kind = \"sweep\"", "kind = \"swep\""), &f).unwrap_err().to_string();
        assert!(e.starts_with("s.toml:3:8:") && e.contains("did you mean `sweep`"), "{e}");
        let e = parse("s.toml", &text.replace("max_parallel", "max_paralel"), &f).unwrap_err().to_string();
        assert!(e.starts_with("s.toml:4:1:") && e.contains("max_paralel"), "{e}");
        let e = parse("s.toml", &text.replace("count = 3", "count = 0"), &f).unwrap_err().to_string();
        assert!(e.contains("count must be at least 1"), "{e}");
        let e = parse("s.toml", &text.replace("c.toml", "missing.toml"), &f).unwrap_err().to_string();
        assert!(e.contains("no such case file"), "{e}");
    }
}
