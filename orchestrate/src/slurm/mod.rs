//! Runs on a Slurm cluster: `tessera slurm script` prints a readable sbatch script for
//! a case, `tessera slurm submit` writes it into RUN_DIR and submits it (docs/SLURM.md).
//!
//! Everything the user typed is checked before anything is submitted (exit 2): the
//! time format, the partition (against `scontrol show partition` when Slurm is
//! reachable), the resources against what that partition's nodes have, and the case
//! itself (loaded by the solver and decomposed onto the job's rank count, through a
//! callback from the binary). The script ([`script::render`]) launches `tessera run`
//! with `srun --mpi=pmix` (or mpirun inside the allocation), forwards the walltime
//! signal so every rank checkpoints, requeues itself when asked, and continues from
//! the newest checkpoint of RUN_DIR when it starts again.
//!
//! Also here for the study executor: one batched [`squeue`] query for many jobs,
//! [`JobState`] for every state Slurm reports, [`sbatch`] and [`scancel`].

pub mod executor;
pub mod script;

use postproc::error::PostError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The result type of this module: bad input is [`PostError::Input`] (exit 2), a
/// failure to talk to Slurm is [`PostError::Failed`] (exit 3).
pub type Result<T> = std::result::Result<T, PostError>;

/// The default for `--signal-seconds`: the walltime signal this long before the limit.
/// Slurm may send it up to 60 s early; the rest is time to write the checkpoint.
pub const DEFAULT_SIGNAL_SECONDS: u32 = 120;

/// The script's name inside RUN_DIR.
pub const SCRIPT_NAME: &str = "job.sbatch";

/// What the user asked for (the options of `tessera slurm script|submit`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Case file.
    pub case: PathBuf,
    /// `--set KEY=VALUE` overrides, passed on to `tessera run`.
    pub set: Vec<String>,
    /// RUN_DIR (default: the case's `[output] dir`).
    pub out: Option<PathBuf>,
    /// `--nodes`.
    pub nodes: Option<u32>,
    /// `--ntasks`: MPI ranks.
    pub ntasks: Option<u32>,
    /// `--ntasks-per-node`.
    pub ntasks_per_node: Option<u32>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--time`, in a Slurm format.
    pub time: Option<String>,
    /// `--partition` (a comma-separated list is allowed, as for sbatch).
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--mem` per node (sbatch units: K, M, G, T; default M).
    pub mem: Option<String>,
    /// `--job-name` (default: the case name).
    pub job_name: Option<String>,
    /// Requeue after the walltime signal, continuing from the checkpoint.
    pub requeue: bool,
    /// Seconds before the time limit for the signal (default [`DEFAULT_SIGNAL_SECONDS`]).
    pub signal_seconds: Option<u32>,
    /// The first attempt replaces a run already in RUN_DIR.
    pub overwrite: bool,
}

/// What the solver says about the case (from the binary's own case loading).
#[derive(Clone, Debug)]
pub struct CaseInfo {
    /// `[case] name`.
    pub name: String,
    /// The run directory the case resolves to (with `--out` applied).
    pub run_dir: PathBuf,
    /// The rank count `[decomposition] ranks` fixes, if it does.
    pub fixed_ranks: Option<usize>,
}

/// The case check: called with `None` to load the case, then with the job's rank
/// count to check it decomposes onto that many ranks. Errors are the solver's own
/// located messages.
pub type CaseCheck<'a> = &'a dyn Fn(Option<usize>) -> std::result::Result<CaseInfo, String>;

/// A job ready to be written: every value checked.
#[derive(Clone, Debug)]
pub struct Job {
    /// The case file, absolute.
    pub case: PathBuf,
    /// Its name.
    pub case_name: String,
    /// `--set` overrides.
    pub set: Vec<String>,
    /// RUN_DIR, absolute.
    pub run_dir: PathBuf,
    /// The tessera binary, absolute.
    pub exe: PathBuf,
    /// MPI ranks (`--ntasks`).
    pub ranks: u32,
    /// `--nodes`, when asked.
    pub nodes: Option<u32>,
    /// `--ntasks-per-node`, when asked.
    pub ntasks_per_node: Option<u32>,
    /// `--cpus-per-task`, when asked.
    pub cpus_per_task: Option<u32>,
    /// `--time` as given, with its length in seconds (`None` seconds: unlimited).
    pub time: Option<(String, Option<u64>)>,
    /// `--partition`, when asked.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--mem` as given, with its size in MiB.
    pub mem: Option<(String, u64)>,
    /// `--job-name`.
    pub job_name: String,
    /// Requeue after the walltime signal.
    pub requeue: bool,
    /// The walltime signal, seconds before the limit.
    pub signal_seconds: u32,
    /// The first attempt replaces a run in RUN_DIR.
    pub overwrite: bool,
    /// "checked against partition ..." or "not checked against a cluster (why)", for
    /// the script's header.
    pub checked: String,
    /// A job array: one task per run (the study's sweeps); `None` for one run.
    pub array: Option<ArrayTasks>,
}

/// The runs of a job array. Each task's id is its run's number, so Slurm's own names
/// (`JOBID_TASK`, `%a` in file names) say which run a task is.
#[derive(Clone, Debug)]
pub struct ArrayTasks {
    /// The `--array` value: task ids and ranges, with a `%N` throttle.
    pub spec: String,
    /// The `--output` and `--error` pattern (`%A` the array's job id, `%a` the task id).
    pub output: String,
    /// One entry per task.
    pub tasks: Vec<ArrayTask>,
}

/// One task of a job array.
#[derive(Clone, Debug)]
pub struct ArrayTask {
    /// Task id (the run's number).
    pub id: i64,
    /// RUN_DIR, absolute.
    pub run_dir: PathBuf,
    /// `--set` overrides.
    pub set: Vec<String>,
    /// The task's first attempt replaces a run in RUN_DIR.
    pub overwrite: bool,
}

/// The `--array` value for task `ids` with at most `throttle` running at once:
/// consecutive ids collapse into ranges (`0-9,12,15-20%2`).
pub fn array_spec(ids: &[i64], throttle: usize) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut k = 0;
    while k < ids.len() {
        let mut end = k;
        while end + 1 < ids.len() && ids[end + 1] == ids[end] + 1 {
            end += 1;
        }
        parts.push(if end == k { ids[k].to_string() } else { format!("{}-{}", ids[k], ids[end]) });
        k = end + 1;
    }
    format!("{}%{}", parts.join(","), throttle.max(1))
}

/// `tessera slurm script`: checks everything and returns the script text.
pub fn script(opts: &Options, exe: &Path, check: CaseCheck) -> Result<String> {
    let job = plan(opts, exe, check, false)?;
    Ok(script::render(&job))
}

/// A submitted job.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// Slurm's job id.
    pub job_id: String,
    /// The script, RUN_DIR/job.sbatch.
    pub script: PathBuf,
    /// Slurm's output file of the job.
    pub log: PathBuf,
    /// The checkpoint the job continues from, when RUN_DIR already had one.
    pub continues_from: Option<PathBuf>,
}

/// `tessera slurm submit`: checks everything, checks RUN_DIR is free for this job,
/// writes RUN_DIR/job.sbatch and submits it with sbatch.
pub fn submit(opts: &Options, exe: &Path, check: CaseCheck) -> Result<Submitted> {
    if which("sbatch").is_none() {
        return Err(PostError::Failed("sbatch not found: submit from a machine with the Slurm client commands".into()));
    }
    let job = plan(opts, exe, check, true)?;
    let continues_from = check_run_dir(&job, opts.out.is_none())?;
    let created = !job.run_dir.exists();
    std::fs::create_dir_all(&job.run_dir)
        .map_err(|e| PostError::input(format!("{}: cannot create RUN_DIR: {e}", job.run_dir.display())))?;
    let path = job.run_dir.join(SCRIPT_NAME);
    postproc::sinks::write_atomic(&path, script::render(&job).as_bytes())?;
    let job_id = sbatch(&path).inspect_err(|_| {
        // Nothing was submitted: leave nothing behind either.
        let _ = std::fs::remove_file(&path);
        if created {
            let _ = std::fs::remove_dir(&job.run_dir);
        }
    })?;
    let log = job.run_dir.join(format!("slurm-{job_id}.out"));
    Ok(Submitted { job_id, script: path, log, continues_from })
}

/// Checks the request and builds the job (nothing is written or submitted). With
/// `need_cluster`, a Slurm that scontrol cannot reach is an error (exit 3); without,
/// the script's header says the request was not checked against a cluster.
pub fn plan(opts: &Options, exe: &Path, check: CaseCheck, need_cluster: bool) -> Result<Job> {
    let bad = |m: String| PostError::input(m);
    for (name, v) in [
        ("--nodes", opts.nodes),
        ("--ntasks", opts.ntasks),
        ("--ntasks-per-node", opts.ntasks_per_node),
        ("--cpus-per-task", opts.cpus_per_task),
    ] {
        if v == Some(0) {
            return Err(bad(format!("{name} 0: a job needs at least one")));
        }
    }
    let time = match &opts.time {
        Some(t) => Some((t.clone(), parse_time(t).map_err(|m| bad(format!("--time {t:?}: {m}")).help(TIME_FORMATS))?)),
        None => None,
    };
    let mem = match &opts.mem {
        Some(m) => Some((m.clone(), parse_mem(m).map_err(|e| bad(format!("--mem {m:?}: {e}")))?)),
        None => None,
    };
    let signal_seconds = opts.signal_seconds.unwrap_or(DEFAULT_SIGNAL_SECONDS);
    if signal_seconds > 65535 {
        return Err(bad(format!("--signal-seconds {signal_seconds}: Slurm allows at most 65535")));
    }
    if let Some((t, Some(secs))) = &time {
        if u64::from(signal_seconds) >= *secs {
            return Err(bad(format!(
                "--signal-seconds {signal_seconds} is not shorter than --time {t} ({secs} s): the signal would stop the run as it starts"
            ))
            .help("ask for more time, or a shorter --signal-seconds"));
        }
    }
    for (name, v) in [("--partition", &opts.partition), ("--account", &opts.account), ("--qos", &opts.qos)] {
        if let Some(v) = v {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "_-.,".contains(c)) {
                return Err(bad(format!("{name} {v:?}: only letters, digits, '_', '-', '.' and ',' are allowed")));
            }
        }
    }

    // The case, as the solver loads it.
    let info = check(None).map_err(PostError::input)?;
    let ranks = ranks(opts, info.fixed_ranks)?;
    let job_name = opts.job_name.clone().unwrap_or_else(|| info.name.clone());
    if job_name.is_empty() || !job_name.chars().all(|c| c.is_ascii_graphic() && !"\"'\\`$%".contains(c)) {
        return Err(bad(format!("--job-name {job_name:?}: use printable characters without spaces, quotes, '$', '%' or '\\'")));
    }
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let run_dir = abs(&info.run_dir);
    let case = abs(&opts.case);
    let case = case.canonicalize().unwrap_or(case);
    for (what, p) in [("RUN_DIR", &run_dir), ("the case path", &case), ("the tessera path", &exe.to_path_buf())] {
        let s = p.display().to_string();
        if s.chars().any(|c| c.is_whitespace() || c == '\'' || c == '"' || c == '\\') {
            return Err(bad(format!("{what} {s:?}: sbatch directives cannot hold spaces, quotes or backslashes")));
        }
    }

    let mut job = Job {
        case,
        case_name: info.name,
        set: opts.set.clone(),
        run_dir,
        exe: abs(exe),
        ranks,
        nodes: opts.nodes,
        ntasks_per_node: opts.ntasks_per_node,
        cpus_per_task: opts.cpus_per_task,
        time,
        partition: opts.partition.clone(),
        account: opts.account.clone(),
        qos: opts.qos.clone(),
        mem,
        job_name,
        requeue: opts.requeue,
        signal_seconds,
        overwrite: opts.overwrite,
        checked: String::new(),
        array: None,
    };
    job.checked = match Cluster::query() {
        Ok(Some(cluster)) => format!("checked against {}", cluster.check(&job)?),
        Ok(None) => "not checked against a cluster (no scontrol here)".into(),
        Err(e) if need_cluster => return Err(PostError::Failed(format!("cannot ask Slurm about its partitions: {e}"))),
        // scontrol's last line says why (e.g. "Could not establish a configuration source").
        Err(e) => format!("not checked against a cluster ({})", e.lines().last().unwrap_or("").trim()),
    };
    // Last, as it may be the slowest: the case decomposes onto the job's ranks.
    check(Some(ranks as usize)).map_err(PostError::input)?;
    Ok(job)
}

/// The job's rank count: --ntasks, else --nodes × --ntasks-per-node, else the case's
/// fixed decomposition, else --ntasks-per-node (one node), else one per node, else 1.
fn ranks(opts: &Options, fixed: Option<usize>) -> Result<u32> {
    let n = match (opts.ntasks, opts.nodes, opts.ntasks_per_node, fixed) {
        (Some(n), ..) => n,
        (None, Some(nodes), Some(per), _) => nodes.saturating_mul(per),
        (None, _, _, Some(f)) => u32::try_from(f).unwrap_or(u32::MAX),
        (None, None, Some(per), None) => per,
        (None, Some(nodes), None, None) => nodes,
        (None, None, None, None) => 1,
    };
    if let Some(nodes) = opts.nodes {
        if n < nodes {
            return Err(PostError::input(format!("{n} rank(s) on --nodes {nodes}: every node needs at least one task")));
        }
        if let Some(per) = opts.ntasks_per_node {
            if u64::from(n) > u64::from(nodes) * u64::from(per) {
                return Err(PostError::input(format!(
                    "{n} ranks do not fit on --nodes {nodes} × --ntasks-per-node {per} = {} tasks",
                    u64::from(nodes) * u64::from(per)
                )));
            }
        }
    }
    Ok(n)
}

/// Checks RUN_DIR before a submission: no other queued or running job of this user
/// writes into it; a completed run, or one without checkpoints, is replaced only with
/// --overwrite; a run with checkpoints is continued (returns the newest). The parent
/// must exist when RUN_DIR came from --out (as for `tessera run --out`).
fn check_run_dir(job: &Job, from_case: bool) -> Result<Option<PathBuf>> {
    let dir = &job.run_dir;
    if dir.exists() && !dir.is_dir() {
        return Err(PostError::input(format!("RUN_DIR {} exists and is not a directory", dir.display())));
    }
    if let Some(parent) = dir.parent() {
        if !from_case && !parent.is_dir() {
            return Err(PostError::input(format!("RUN_DIR {}: parent directory {} does not exist", dir.display(), parent.display()))
                .help("create the parent first, or choose another --out"));
        }
    }
    if let Some((id, state)) = job_writing_into(dir) {
        return Err(PostError::input(format!("job {id} ({state}) already runs in {}", dir.display()))
            .help(format!("wait for it, cancel it (scancel {id}), or choose another --out")));
    }
    let newest = newest_checkpoint(dir);
    if job.overwrite {
        return Ok(None);
    }
    let status = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["status"].as_str().map(String::from));
    if status.as_deref() == Some("completed") {
        return Err(PostError::input(format!("RUN_DIR {} already holds a completed run", dir.display()))
            .help("pass --overwrite to replace it, or choose another --out"));
    }
    let has_run = dir.join("output.h5").exists() || dir.join("summary.json").exists();
    if has_run && newest.is_none() {
        return Err(PostError::input(format!("RUN_DIR {} already holds a run without a checkpoint to continue from", dir.display()))
            .help("pass --overwrite to replace it, or choose another --out"));
    }
    Ok(newest)
}

/// The newest checkpoint in RUN_DIR/checkpoints (names are zero-padded steps, so the
/// largest name is the latest step), as the job script finds it.
pub fn newest_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step_") && n.ends_with(".h5"))
        .collect();
    names.sort();
    names.pop().map(|n| run_dir.join("checkpoints").join(n))
}

/// A pending or running job of this user whose output file is in `dir` (best effort:
/// none when squeue is missing or fails).
fn job_writing_into(dir: &Path) -> Option<(String, String)> {
    which("squeue")?;
    let o = Command::new("squeue").args(["--me", "-h", "-t", "PD,R,CG,S,CF", "-O", "JobID:30,State:30,StdOut:4096"]).output().ok()?;
    if !o.status.success() {
        return None;
    }
    let prefix = format!("{}/", dir.display());
    String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (id, state, out) = (f.next()?, f.next()?, f.next()?);
        out.starts_with(&prefix).then(|| (id.to_string(), state.to_string()))
    })
}

/// The time formats Slurm accepts, for messages.
pub const TIME_FORMATS: &str =
    "Slurm time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (e.g. 90, 1:30:00, 2-12); UNLIMITED for none";

/// Parses a Slurm time limit: `Some(seconds)`, or `None` for UNLIMITED/INFINITE.
pub fn parse_time(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return Ok(None);
    }
    let num = |x: &str, what: &str, max: Option<u64>| -> std::result::Result<u64, String> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) || x.len() > 9 {
            return Err(format!("{what} {x:?} is not a number"));
        }
        let v: u64 = x.parse().map_err(|_| format!("{what} {x:?} is not a number"))?;
        match max {
            Some(m) if v >= m => Err(format!("{what} {v} must be below {m}")),
            _ => Ok(v),
        }
    };
    let secs = if let Some((d, rest)) = t.split_once('-') {
        let days = num(d, "days", None)?;
        let p: Vec<&str> = rest.split(':').collect();
        let (h, m, sec) = match p.as_slice() {
            [h] => (num(h, "hours", Some(24))?, 0, 0),
            [h, m] => (num(h, "hours", Some(24))?, num(m, "minutes", Some(60))?, 0),
            [h, m, s] => (num(h, "hours", Some(24))?, num(m, "minutes", Some(60))?, num(s, "seconds", Some(60))?),
            _ => return Err("too many ':' fields after the days".into()),
        };
        ((days * 24 + h) * 60 + m) * 60 + sec
    } else {
        let p: Vec<&str> = t.split(':').collect();
        match p.as_slice() {
            [m] => num(m, "minutes", None)? * 60,
            [m, s] => num(m, "minutes", None)? * 60 + num(s, "seconds", Some(60))?,
            [h, m, s] => (num(h, "hours", None)? * 60 + num(m, "minutes", Some(60))?) * 60 + num(s, "seconds", Some(60))?,
            _ => return Err("too many ':' fields".into()),
        }
    };
    if secs == 0 {
        return Err("a time limit must be positive".into());
    }
    Ok(Some(secs))
}

/// `seconds` as Slurm prints a time: [D-]HH:MM:SS.
pub fn format_time(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Parses an sbatch memory size (default unit M; K, M, G, T) into MiB.
pub fn parse_mem(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let v: u64 = digits.parse().map_err(|_| "expected a size such as 4000, 4000M, 16G".to_string())?;
    let mib = match unit.to_ascii_uppercase().as_str() {
        "K" | "KB" => v.div_ceil(1024),
        "" | "M" | "MB" => v,
        "G" | "GB" => v * 1024,
        "T" | "TB" => v * 1024 * 1024,
        u => return Err(format!("unknown unit {u:?} (K, M, G or T)")),
    };
    if mib == 0 {
        return Err("ask for a positive size (sbatch's --mem=0, all of a node, is not supported here)".into());
    }
    Ok(mib)
}

/// A partition, from `scontrol show partition -o`.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    /// Name.
    pub name: String,
    /// The default partition.
    pub default: bool,
    /// UP, DOWN, DRAIN or INACTIVE.
    pub state: String,
    /// MaxTime in seconds (`None`: unlimited).
    pub max_time: Option<u64>,
    /// MaxNodes (`None`: unlimited).
    pub max_nodes: Option<u32>,
    /// Its nodes.
    pub nodes: Vec<String>,
}

/// A node, from `scontrol show node -o`.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name.
    pub name: String,
    /// CPUTot.
    pub cpus: u32,
    /// RealMemory, MiB.
    pub memory_mib: u64,
    /// Partitions it belongs to.
    pub partitions: Vec<String>,
}

/// What a cluster offers, to check a request against.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Partitions.
    pub partitions: Vec<Partition>,
    /// Nodes.
    pub nodes: Vec<Node>,
}

/// `key=value` pairs of one `scontrol show ... -o` line (a value may hold spaces: a
/// word without `=` continues the previous value).
fn key_values(line: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for w in line.split_whitespace() {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') => {
                out.push((k.to_string(), v.to_string()))
            }
            _ => {
                if let Some(last) = out.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(w);
                }
            }
        }
    }
    out
}

/// Expands a Slurm host list such as `node[01-03,7],gpu1` (one level of brackets).
pub fn expand_hostlist(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let b = list.as_bytes();
    let mut parts = Vec::new();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    for p in parts.into_iter().filter(|p| !p.is_empty() && *p != "(null)") {
        let Some((prefix, rest)) = p.split_once('[') else {
            out.push(p.to_string());
            continue;
        };
        let (ranges, suffix) = rest.split_once(']').unwrap_or((rest, ""));
        for r in ranges.split(',') {
            match r.split_once('-') {
                Some((a, z)) => {
                    let (Ok(lo), Ok(hi)) = (a.parse::<u64>(), z.parse::<u64>()) else {
                        out.push(format!("{prefix}{r}{suffix}"));
                        continue;
                    };
                    for n in lo..=hi {
                        out.push(format!("{prefix}{n:0w$}{suffix}", w = a.len()));
                    }
                }
                None => out.push(format!("{prefix}{r}{suffix}")),
            }
        }
    }
    out
}

impl Cluster {
    /// Asks Slurm (`scontrol show partition/node -o`). `Ok(None)` when scontrol is
    /// not installed; `Err` when it cannot reach the controller.
    pub fn query() -> std::result::Result<Option<Cluster>, String> {
        if which("scontrol").is_none() {
            return Ok(None);
        }
        let run = |what: &str| -> std::result::Result<String, String> {
            let o = Command::new("scontrol").args(["show", what, "-o"]).output().map_err(|e| format!("cannot run scontrol: {e}"))?;
            if !o.status.success() {
                let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                return Err(format!("scontrol show {what}: {}", if err.is_empty() { format!("exit {}", o.status) } else { err }));
            }
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        };
        Ok(Some(Cluster::parse(&run("partition")?, &run("node")?)))
    }

    /// Builds the cluster from the text of `scontrol show partition -o` and
    /// `scontrol show node -o`.
    pub fn parse(partitions: &str, nodes: &str) -> Cluster {
        let get = |kv: &[(String, String)], k: &str| kv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let limit = |v: Option<String>| v.filter(|v| !v.eq_ignore_ascii_case("UNLIMITED") && !v.eq_ignore_ascii_case("INFINITE"));
        let mut c = Cluster::default();
        for line in partitions.lines().filter(|l| l.starts_with("PartitionName=")) {
            let kv = key_values(line);
            c.partitions.push(Partition {
                name: get(&kv, "PartitionName").unwrap_or_default(),
                default: get(&kv, "Default").is_some_and(|v| v == "YES"),
                state: get(&kv, "State").unwrap_or_else(|| "UP".into()),
                max_time: limit(get(&kv, "MaxTime")).and_then(|v| parse_time(&v).ok().flatten()),
                max_nodes: limit(get(&kv, "MaxNodes")).and_then(|v| v.parse().ok()),
                nodes: get(&kv, "Nodes").map(|v| expand_hostlist(&v)).unwrap_or_default(),
            });
        }
        for line in nodes.lines().filter(|l| l.starts_with("NodeName=")) {
            let kv = key_values(line);
            c.nodes.push(Node {
                name: get(&kv, "NodeName").unwrap_or_default(),
                cpus: get(&kv, "CPUTot").and_then(|v| v.parse().ok()).unwrap_or(0),
                memory_mib: get(&kv, "RealMemory").and_then(|v| v.parse().ok()).unwrap_or(0),
                partitions: get(&kv, "Partitions").map(|v| v.split(',').map(String::from).collect()).unwrap_or_default(),
            });
        }
        c
    }

    /// The nodes of partition `p`.
    fn nodes_of<'a>(&'a self, p: &'a Partition) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| p.nodes.contains(&n.name) || n.partitions.contains(&p.name))
    }

    /// One line per partition, for messages.
    pub fn describe(&self) -> String {
        self.partitions
            .iter()
            .map(|p| {
                let nodes: Vec<&Node> = self.nodes_of(p).collect();
                let cpus: u64 = nodes.iter().map(|n| u64::from(n.cpus)).sum();
                format!(
                    "  {}{}: {} node(s), {} CPUs, {}{}",
                    p.name,
                    if p.default { " (default)" } else { "" },
                    nodes.len(),
                    cpus,
                    p.max_time.map(|t| format!("time limit {}", format_time(t))).unwrap_or_else(|| "no time limit".into()),
                    if p.state == "UP" { String::new() } else { format!(", {}", p.state) }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Checks `job` against the partition(s) it asks for (or the default one).
    /// Returns a one-line description for the script's header.
    pub fn check(&self, job: &Job) -> Result<String> {
        let names: Vec<String> = match &job.partition {
            Some(p) => p.split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
            None => match self.partitions.iter().find(|p| p.default) {
                Some(p) => vec![p.name.clone()],
                None => {
                    return Err(PostError::input("this cluster has no default partition: pass --partition")
                        .help(format!("partitions:\n{}", self.describe())))
                }
            },
        };
        let mut lines = Vec::new();
        for name in &names {
            let Some(p) = self.partitions.iter().find(|p| &p.name == name) else {
                let known: Vec<&str> = self.partitions.iter().map(|p| p.name.as_str()).collect();
                let hint = postproc::error::did_you_mean(name, &known);
                return Err(PostError::input(format!(
                    "unknown partition {name:?}{}",
                    if hint.is_empty() { String::new() } else { format!("; {}", hint.trim_end()) }
                ))
                .help(format!("this cluster has:\n{}", self.describe())));
            };
            lines.push(self.check_partition(job, p)?);
        }
        Ok(lines.join("; "))
    }

    fn check_partition(&self, job: &Job, p: &Partition) -> Result<String> {
        let bad = |m: String| Err(PostError::input(m).help(format!("this cluster has:\n{}", self.describe())));
        if p.state == "INACTIVE" {
            return bad(format!("partition {} is INACTIVE: it accepts no jobs", p.name));
        }
        let nodes: Vec<&Node> = self.nodes_of(p).collect();
        let node_count = nodes.len() as u32;
        let cpus_total: u64 = nodes.iter().map(|n| u64::from(n.cpus)).sum();
        let cpus_max = nodes.iter().map(|n| n.cpus).max().unwrap_or(0);
        let mem_max = nodes.iter().map(|n| n.memory_mib).max().unwrap_or(0);
        let cpt = u64::from(job.cpus_per_task.unwrap_or(1));
        if let Some(n) = job.nodes {
            if n > node_count {
                return bad(format!("--nodes {n}: partition {} has {node_count} node(s)", p.name));
            }
            if let Some(m) = p.max_nodes.filter(|m| n > *m) {
                return bad(format!("--nodes {n}: partition {} allows at most {m} node(s) per job", p.name));
            }
        }
        let want = u64::from(job.ranks) * cpt;
        if want > cpus_total {
            return bad(format!(
                "{} rank(s) × {cpt} CPU(s) per task = {want} CPUs: partition {} has {cpus_total} CPUs in all",
                job.ranks, p.name
            ));
        }
        let per_node = match (job.ntasks_per_node, job.nodes) {
            (Some(per), _) => Some(u64::from(per)),
            (None, Some(n)) => Some(u64::from(job.ranks).div_ceil(u64::from(n))),
            (None, None) => None,
        };
        if let Some(per) = per_node {
            if per * cpt > u64::from(cpus_max) {
                return bad(format!(
                    "{per} task(s) per node × {cpt} CPU(s) per task = {} CPUs: the largest node of partition {} has {cpus_max}",
                    per * cpt,
                    p.name
                ));
            }
        }
        if cpt > u64::from(cpus_max) {
            return bad(format!("--cpus-per-task {cpt}: the largest node of partition {} has {cpus_max} CPUs", p.name));
        }
        if let Some((m, mib)) = &job.mem {
            if *mib > mem_max {
                return bad(format!("--mem {m} ({mib} MiB): the largest node of partition {} has {mem_max} MiB", p.name));
            }
        }
        if let (Some((t, secs)), Some(max)) = (&job.time, p.max_time) {
            match secs {
                Some(s) if *s <= max => {}
                _ => return bad(format!("--time {t}: partition {} allows at most {}", p.name, format_time(max))),
            }
        }
        Ok(format!(
            "partition {} ({} node(s), {cpus_total} CPUs, {})",
            p.name,
            node_count,
            p.max_time.map(|t| format!("time limit {}", format_time(t))).unwrap_or_else(|| "no time limit".into())
        ))
    }
}

/// The path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
        })
    })
}

/// Submits `script` with `sbatch --parsable`; returns the job id. A request sbatch
/// refuses is bad input (exit 2); a controller it cannot reach is a failure (exit 3).
pub fn sbatch(script: &Path) -> Result<String> {
    let o =
        Command::new("sbatch").arg("--parsable").arg(script).output().map_err(|e| PostError::Failed(format!("cannot run sbatch: {e}")))?;
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    if !o.status.success() {
        let unreachable = ["contact", "timed out", "Connection refused", "Unable to establish", "communication", "configuration source"]
            .iter()
            .any(|w| err.to_lowercase().contains(&w.to_lowercase()));
        let msg = format!("sbatch {}: {err}", script.display());
        return Err(if unreachable { PostError::Failed(msg) } else { PostError::input(msg) });
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let id = out.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PostError::Failed(format!("sbatch printed no job id: {out} {err}")));
    }
    Ok(id)
}

/// Cancels jobs (`scancel ID...`; optionally only sends `signal`).
pub fn scancel(ids: &[String], signal: Option<&str>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut c = Command::new("scancel");
    if let Some(s) = signal {
        c.arg(format!("--signal={s}"));
    }
    let o = c.args(ids).output().map_err(|e| PostError::Failed(format!("cannot run scancel: {e}")))?;
    if !o.status.success() {
        return Err(PostError::Failed(format!("scancel: {}", String::from_utf8_lossy(&o.stderr).trim())));
    }
    Ok(())
}

/// Every state Slurm reports for a job (squeue `%T`, sacct `State`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for resources (or its begin time, after a requeue).
    Pending,
    /// Running.
    Running,
    /// Suspended.
    Suspended,
    /// Finishing: processes are being killed or the epilog runs.
    Completing,
    /// Nodes are booting for it.
    Configuring,
    /// Finished with exit code 0.
    Completed,
    /// Finished with a non-zero exit code (an application result).
    Failed,
    /// Hit its time limit.
    Timeout,
    /// Cancelled by a user or an administrator.
    Cancelled,
    /// A node it ran on failed.
    NodeFail,
    /// Preempted by another job.
    Preempted,
    /// Killed for exceeding its memory.
    OutOfMemory,
    /// Its nodes failed to boot.
    BootFail,
    /// Reached its deadline.
    Deadline,
    /// Being requeued (REQUEUED, REQUEUE_HOLD, REQUEUE_FED).
    Requeued,
    /// Anything else (RESIZING, REVOKED, SIGNALING, SPECIAL_EXIT, STAGE_OUT, STOPPED, ...).
    Other(String),
}

impl JobState {
    /// From Slurm's name (long or squeue's two-letter code; sacct's `CANCELLED by N`).
    pub fn parse(s: &str) -> JobState {
        let s = s.trim();
        let word = s.split_whitespace().next().unwrap_or("").trim_end_matches('+');
        match word {
            "PENDING" | "PD" => JobState::Pending,
            "RUNNING" | "R" => JobState::Running,
            "SUSPENDED" | "S" => JobState::Suspended,
            "COMPLETING" | "CG" => JobState::Completing,
            "CONFIGURING" | "CF" => JobState::Configuring,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" => JobState::Failed,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            "PREEMPTED" | "PR" => JobState::Preempted,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            "BOOT_FAIL" | "BF" => JobState::BootFail,
            "DEADLINE" | "DL" => JobState::Deadline,
            "REQUEUED" | "RQ" | "REQUEUE_HOLD" | "RH" | "REQUEUE_FED" | "RF" => JobState::Requeued,
            other => JobState::Other(other.to_string()),
        }
    }

    /// The job will not run again by itself.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Failed
                | JobState::Timeout
                | JobState::Cancelled
                | JobState::NodeFail
                | JobState::Preempted
                | JobState::OutOfMemory
                | JobState::BootFail
                | JobState::Deadline
        )
    }

    /// A failure of the system rather than of the application: worth a retry.
    pub fn is_system_failure(&self) -> bool {
        matches!(self, JobState::NodeFail | JobState::Preempted | JobState::BootFail)
    }
}

/// One job as squeue reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedJob {
    /// State.
    pub state: JobState,
    /// squeue's reason (why pending, or how it ended).
    pub reason: String,
}

/// The state of many jobs with ONE squeue call (`squeue -h -t all -r -j ID,...`):
/// jobs Slurm no longer knows (purged after MinJobAge) are missing from the map. Array
/// tasks (`JOBID_TASK`) are asked for by their array's id, which lists every task.
pub fn squeue(ids: &[String]) -> Result<HashMap<String, QueuedJob>> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let asked: std::collections::BTreeSet<&str> = ids.iter().map(|id| id.split('_').next().unwrap_or(id)).collect();
    let o = Command::new("squeue")
        .args(["-h", "-t", "all", "-r", "-o", "%i|%T|%r", "-j"])
        .arg(asked.into_iter().collect::<Vec<_>>().join(","))
        .output()
        .map_err(|e| PostError::Failed(format!("cannot run squeue: {e}")))?;
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() && !err.contains("Invalid job id") {
        return Err(PostError::Failed(format!("squeue: {}", err.trim())));
    }
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut f = line.splitn(3, '|');
        if let (Some(id), Some(state)) = (f.next(), f.next()) {
            out.insert(
                id.trim().to_string(),
                QueuedJob { state: JobState::parse(state), reason: f.next().unwrap_or("").trim().to_string() },
            );
        }
    }
    Ok(out)
}

/// A value of `scontrol show config` (`Key = value` lines), read once per process;
/// `None` when scontrol is missing, cannot reach the controller, or has no such key.
pub fn config_value(key: &str) -> Option<String> {
    static CONFIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = CONFIG.get_or_init(|| {
        Command::new("scontrol")
            .args(["show", "config"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    config_lookup(text, key)
}

fn config_lookup(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()))
}

/// Whether the cluster keeps job accounting (slurmdbd), so that `sacct` knows jobs
/// squeue has already forgotten (after `MinJobAge`).
pub fn accounting() -> bool {
    config_value("AccountingStorageType").is_some_and(|v| has_accounting(&v))
}

fn has_accounting(storage: &str) -> bool {
    !storage.is_empty() && !storage.ends_with("/none") && storage != "(null)"
}

/// The final states of jobs (or array tasks) that squeue no longer lists, from the
/// accounting database with ONE call: `sacct -n -P -X -o JobID,State -j ID,...
/// --starttime now-SECONDS`, the start time bounding the database search to the
/// study's lifetime. Jobs accounting does not know are missing from the map.
pub fn sacct(ids: &[String], since: std::time::SystemTime) -> Result<HashMap<String, QueuedJob>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let back = since.elapsed().map(|d| d.as_secs()).unwrap_or(0) + 3600;
    let o = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "JobID,State", "--starttime"])
        .arg(format!("now-{back}"))
        .arg("-j")
        .arg(ids.join(","))
        .output()
        .map_err(|e| PostError::Failed(format!("cannot run sacct: {e}")))?;
    if !o.status.success() {
        return Err(PostError::Failed(format!("sacct: {}", String::from_utf8_lossy(&o.stderr).trim())));
    }
    Ok(parse_sacct(&String::from_utf8_lossy(&o.stdout)))
}

/// `JobID|State` lines of sacct (`36_1|COMPLETED`, `37|CANCELLED by 0`); a job listed
/// more than once (requeued) keeps its last line, the latest.
fn parse_sacct(text: &str) -> HashMap<String, QueuedJob> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some((id, state)) = line.split_once('|') {
            let id = id.trim();
            if !id.is_empty() {
                out.insert(id.to_string(), QueuedJob { state: JobState::parse(state), reason: "from accounting".into() });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_answers() {
        let cfg = "Configuration data as of 2026-12-02T01:00:00\nAccountingStorageType   = accounting_storage/slurmdbd\nMaxArraySize            = 4001\n";
        assert_eq!(config_lookup(cfg, "MaxArraySize").as_deref(), Some("4001"));
        assert_eq!(config_lookup(cfg, "MaxJobCount"), None);
        assert!(has_accounting(&config_lookup(cfg, "AccountingStorageType").unwrap()));
        assert!(!has_accounting("accounting_storage/none") && !has_accounting(""));
        let m = parse_sacct("36_1|COMPLETED\n37|CANCELLED by 0\n38|NODE_FAIL\n38|TIMEOUT\n\n");
        assert_eq!(m["36_1"].state, JobState::Completed);
        assert_eq!(m["37"].state, JobState::Cancelled);
        assert_eq!(m["38"].state, JobState::Timeout, "the latest record of a requeued job");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn slurm_time_formats() {
        for (s, secs) in [
            ("90", 5400),
            ("10:30", 630),
            ("1:30:00", 5400),
            ("2-12", (2 * 24 + 12) * 3600),
            ("1-2:30", (26 * 60 + 30) * 60),
            ("0-00:05:07", 307),
            ("100:00:00", 360000),
        ] {
            assert_eq!(parse_time(s), Ok(Some(secs)), "{s}");
        }
        assert_eq!(parse_time("UNLIMITED"), Ok(None));
        assert_eq!(parse_time("infinite"), Ok(None));
        for s in ["", "1h", "1:2:3:4", "10:60", "1:61:00", "1-24", "1-", "-5", "a-1", "1-1:1:1:1", "0", "00:00", "1.5", " : "] {
            assert!(parse_time(s).is_err(), "{s:?} must be refused");
        }
        assert_eq!(format_time(5400), "01:30:00");
        assert_eq!(format_time(2 * 86400 + 61), "2-00:01:01");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem("4000"), Ok(4000));
        assert_eq!(parse_mem("16G"), Ok(16384));
        assert_eq!(parse_mem("2t"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_mem("512K"), Ok(1));
        assert!(parse_mem("16X").is_err());
        assert!(parse_mem("G").is_err());
        assert!(parse_mem("0").is_err());
    }

    #[test]
    fn host_lists() {
        assert_eq!(expand_hostlist("vm"), vec!["vm"]);
        assert_eq!(expand_hostlist("n[01-03,7],gpu1"), vec!["n01", "n02", "n03", "n7", "gpu1"]);
        assert_eq!(expand_hostlist("(null)"), Vec::<String>::new());
    }

    const PARTS: &str =
        "PartitionName=debug AllowGroups=ALL Default=YES MaxNodes=UNLIMITED MaxTime=UNLIMITED Nodes=n[1-2] State=UP TotalCPUs=8\n\
PartitionName=short Default=NO MaxNodes=1 MaxTime=00:10:00 Nodes=n1 State=UP\n\
PartitionName=old Default=NO MaxTime=1-00:00:00 Nodes=n2 State=INACTIVE\n";
    const NODES: &str =
        "NodeName=n1 Arch=x86_64 CoresPerSocket=2 CPUTot=4 RealMemory=8000 OS=Linux 6.1.0 #1 SMP Partitions=debug,short State=IDLE\n\
NodeName=n2 CPUTot=4 RealMemory=16000 Partitions=debug,old State=IDLE Reason=being fixed [root@2024]\n";

    fn job() -> Job {
        Job {
            case: "/c.toml".into(),
            case_name: "c".into(),
            set: vec![],
            run_dir: "/r".into(),
            exe: "/tessera".into(),
            ranks: 2,
            nodes: None,
            ntasks_per_node: None,
            cpus_per_task: None,
            time: None,
            partition: None,
            account: None,
            qos: None,
            mem: None,
            job_name: "c".into(),
            requeue: false,
            signal_seconds: 120,
            overwrite: false,
            checked: String::new(),
            array: None,
        }
    }

    #[test]
    fn array_specs_collapse_ranges() {
        assert_eq!(array_spec(&[3, 0, 1, 2, 7, 9, 10, 11, 9], 2), "0-3,7,9-11%2");
        assert_eq!(array_spec(&[5], 0), "5%1");
    }

    #[test]
    fn requests_are_checked_against_the_partition() {
        let c = Cluster::parse(PARTS, NODES);
        assert_eq!(c.partitions.len(), 3);
        assert_eq!(c.partitions[1].max_time, Some(600));
        assert_eq!(c.nodes[0].cpus, 4);
        assert_eq!(c.nodes[1].memory_mib, 16000);
        assert!(c.check(&job()).unwrap().starts_with("partition debug (2 node(s), 8 CPUs"));
        let err = |j: Job| {
            let e = c.check(&j).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        };
        let e = err(Job { partition: Some("gpu".into()), ..job() });
        assert!(e.contains("unknown partition \"gpu\"") && e.contains("debug (default)") && e.contains("short"), "{e}");
        assert!(err(Job { nodes: Some(3), ..job() }).contains("--nodes 3: partition debug has 2 node(s)"));
        assert!(err(Job { ranks: 9, ..job() }).contains("9 CPUs: partition debug has 8"));
        assert!(err(Job { ranks: 6, nodes: Some(1), ..job() }).contains("the largest node of partition debug has 4"));
        assert!(err(Job { cpus_per_task: Some(5), ranks: 1, ..job() }).contains("--cpus-per-task 5"));
        assert!(err(Job { mem: Some(("20G".into(), 20480)), ..job() }).contains("has 16000 MiB"));
        let long = Job { partition: Some("short".into()), time: Some(("1:00:00".into(), Some(3600))), ..job() };
        assert!(err(long).contains("partition short allows at most 00:10:00"));
        let unlimited = Job { partition: Some("short".into()), time: Some(("UNLIMITED".into(), None)), ..job() };
        assert!(err(unlimited).contains("at most 00:10:00"));
        assert!(err(Job { partition: Some("old".into()), ..job() }).contains("INACTIVE"));
        assert!(c.check(&Job { partition: Some("short".into()), time: Some(("5".into(), Some(300))), ..job() }).is_ok());
        assert!(err(Job { partition: Some("short".into()), nodes: Some(2), ..job() }).contains("has 1 node(s)"));
    }

    #[test]
    fn rank_count_from_the_options_or_the_case() {
        let o = |ntasks, nodes, per| Options { ntasks, nodes, ntasks_per_node: per, ..Options::default() };
        assert_eq!(ranks(&o(None, None, None), None).unwrap(), 1);
        assert_eq!(ranks(&o(None, None, None), Some(4)).unwrap(), 4);
        assert_eq!(ranks(&o(Some(3), None, None), Some(4)).unwrap(), 3);
        assert_eq!(ranks(&o(None, Some(2), Some(8)), None).unwrap(), 16);
        assert_eq!(ranks(&o(None, None, Some(8)), None).unwrap(), 8);
        assert_eq!(ranks(&o(None, Some(2), None), None).unwrap(), 2);
        assert!(ranks(&o(Some(1), Some(2), None), None).unwrap_err().to_string().contains("every node needs at least one task"));
        assert!(ranks(&o(Some(5), Some(2), Some(2)), None).unwrap_err().to_string().contains("do not fit"));
    }

    #[test]
    fn job_states() {
        assert_eq!(JobState::parse("COMPLETED"), JobState::Completed);
        assert_eq!(JobState::parse("CANCELLED by 0"), JobState::Cancelled);
        assert_eq!(JobState::parse("OUT_OF_MEMORY"), JobState::OutOfMemory);
        assert_eq!(JobState::parse("NODE_FAIL"), JobState::NodeFail);
        assert_eq!(JobState::parse("REQUEUE_HOLD"), JobState::Requeued);
        assert_eq!(JobState::parse("PD"), JobState::Pending);
        assert!(JobState::parse("PREEMPTED").is_system_failure());
        assert!(!JobState::parse("FAILED").is_system_failure());
        assert!(JobState::parse("TIMEOUT").is_final());
        assert!(!JobState::parse("REQUEUED").is_final());
        assert_eq!(JobState::parse("RESIZING"), JobState::Other("RESIZING".into()));
    }

    #[test]
    fn newest_checkpoint_is_the_largest_step() {
        let d = std::env::temp_dir().join(format!("tessera-slurm-ck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(newest_checkpoint(&d), None);
        std::fs::create_dir_all(d.join("checkpoints")).unwrap();
        for f in ["step_00000100.h5", "step_00002000.h5", "step_00003000.h5.tmp", "step_00000900.h5"] {
            std::fs::write(d.join("checkpoints").join(f), b"").unwrap();
        }
        assert_eq!(newest_checkpoint(&d), Some(d.join("checkpoints/step_00002000.h5")));
        let _ = std::fs::remove_dir_all(&d);
    }
}
