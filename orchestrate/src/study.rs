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
    /// The points: one `--set` list per run, with the parameter values for the table.
    pub points: Vec<Vec<(String, Value)>>,
    /// Parameter names in order.
    pub parameters: Vec<String>,
    /// Quantities-of-interest pipeline (absolute).
    pub pipeline: Option<PathBuf>,
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
    if kind != "sweep" {
        return Err(PostError::at(loc_of(file, text, &s.kind), format!("study.kind: {kind:?} is not available in this build yet"))
            .help("kind = \"sweep\""));
    }
    let executor = s.executor.as_ref().map(|e| e.get_ref().clone()).unwrap_or_else(|| "local".into());
    if executor != "local" {
        let e = s.executor.as_ref().expect("given");
        return Err(PostError::at(loc_of(file, text, e), format!("study.executor: {executor:?} is not available"))
            .help(format!("{}executors: local (slurm: not yet)", did_you_mean(&executor, &["local", "slurm"]))));
    }
    let ranks = positive(file, text, &s.ranks_per_run, "ranks_per_run", 1)?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let slots = positive(file, text, &s.slots, "slots", cores.max(ranks))?;
    let max_parallel = positive(file, text, &s.max_parallel, "max_parallel", (slots / ranks).max(1))?;
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
    if !ranged.is_empty() {
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
    if !ranged.is_empty() {
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
        parameters,
        pipeline,
    })
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
