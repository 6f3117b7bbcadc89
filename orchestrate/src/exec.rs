//! The local executor: one `tessera run` per attempt (through mpirun when it has more
//! than one rank, via `tessera run --np`), in its own process group with its own
//! RUN_DIR and log, so a timeout or a cancel kills the whole group and a crash of the
//! orchestrator leaves it running (to be adopted on resume). Outcomes are classified
//! from the exit status and the run's summary.json.
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What to launch.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The tessera binary.
    pub exe: PathBuf,
    /// Base case.
    pub case: PathBuf,
    /// `--set` overrides.
    pub sets: Vec<String>,
    /// Ranks.
    pub ranks: usize,
    /// RUN_DIR.
    pub run_dir: PathBuf,
    /// Log file (stdout and stderr, appended per attempt).
    pub log: PathBuf,
}

/// Failure classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The launcher failed, the run was killed, or it left no summary: retried.
    System,
    /// It ran past the study's timeout: retried per `retries.timeout`.
    Timeout,
    /// The solver diverged: an application result, retried only if asked.
    Diverged,
    /// The run failed otherwise (I/O, solver failure): not retried.
    Failed,
    /// The case was refused (exit 2): not retried.
    Input,
    /// Post-processing of a completed run failed.
    Post,
    /// Its Slurm job was cancelled from outside the study (scancel): not retried.
    Cancelled,
}

impl Class {
    /// Its name in the journal and tables.
    pub fn name(self) -> &'static str {
        match self {
            Class::System => "system",
            Class::Timeout => "timeout",
            Class::Diverged => "diverged",
            Class::Failed => "failed",
            Class::Input => "input",
            Class::Post => "post",
            Class::Cancelled => "cancelled",
        }
    }
}

/// Starts an attempt.
pub fn start(l: &Launch) -> std::io::Result<tokio::process::Child> {
    if let Some(p) = l.log.parent() {
        std::fs::create_dir_all(p)?;
    }
    // A summary left by an earlier attempt must not speak for this one.
    match std::fs::remove_file(l.run_dir.join("summary.json")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&l.log)?;
    let mut c = tokio::process::Command::new(&l.exe);
    c.arg("run").arg(&l.case);
    if l.ranks > 1 {
        c.arg("--np").arg(l.ranks.to_string());
    }
    for s in &l.sets {
        c.arg("--set").arg(s);
    }
    c.arg("--out").arg(&l.run_dir).arg("--overwrite").arg("--quiet");
    c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0).kill_on_drop(false);
    c.spawn()
}

/// Sends `sig` to the process group `pgid`.
pub fn signal_group(pgid: i64, sig: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) on a process group id we created.
        unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    }
}

/// The start time (clock ticks since boot) of process `pid`, from /proc.
pub fn start_time(pid: i64) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when process `pid` is alive and is the one that started at `start`
/// (not a later process that reused the id). A zombie counts as gone.
pub fn alive(pid: i64, start: i64) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = s.rfind(')').and_then(|i| s[i + 2..].split_whitespace().next().map(String::from));
    state.as_deref() != Some("Z") && start_time(pid) == Some(start)
}

/// The `tessera run` process writing `run_dir`, if one is alive: (pid, start time).
/// Finds an attempt whose launch was committed but whose pid was not (the orchestrator
/// died in between), so it is adopted rather than started a second time.
pub fn find_run(run_dir: &Path) -> Option<(i64, i64)> {
    let want = run_dir.as_os_str().as_encoded_bytes();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_run = args.get(1).is_some_and(|a| *a == b"run");
        if is_run && args.windows(2).any(|w| w[0] == b"--out" && w[1] == want) {
            if let Some(st) = start_time(pid) {
                if alive(pid, st) {
                    return Some((pid, st));
                }
            }
        }
    }
    None
}

/// Classifies a finished attempt from its exit code (None: unknown, e.g. an adopted
/// process) and RUN_DIR/summary.json. Ok(()) is a completed run.
pub fn classify(code: Option<i32>, run_dir: &Path) -> Result<(), (Class, String)> {
    let summary: Option<serde_json::Value> =
        std::fs::read_to_string(run_dir.join("summary.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let status = summary.as_ref().and_then(|s| s["status"].as_str().map(String::from));
    let message = summary.as_ref().and_then(|s| s["message"].as_str().map(String::from)).unwrap_or_default();
    match (code, status.as_deref()) {
        (Some(0) | None, Some("completed")) => Ok(()),
        (_, Some("diverged")) => Err((Class::Diverged, format!("diverged: {message}"))),
        (Some(2), _) => Err((Class::Input, "the case was refused (exit 2): see the run's log".into())),
        (Some(3), Some("failed")) => Err((Class::Failed, format!("failed: {message}"))),
        (_, Some("stopped")) => Err((Class::System, "stopped by a signal".into())),
        (Some(c), s) => Err((Class::System, format!("exit {c}, summary status {}", s.unwrap_or("missing")))),
        (None, s) => Err((Class::System, format!("the process ended; summary status {}", s.unwrap_or("missing")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = std::process::id() as i64;
        let st = start_time(me).expect("readable /proc");
        assert!(alive(me, st));
        assert!(!alive(me, st + 1), "another start time is another process");
        assert!(!alive(i32::MAX as i64, 0));
    }

    #[test]
    fn classification() {
        let d = std::env::temp_dir().join(format!("orch-exec-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(classify(Some(0), &d).unwrap_err().0, Class::System, "no summary");
        std::fs::write(d.join("summary.json"), r#"{"status": "completed"}"#).unwrap();
        assert!(classify(Some(0), &d).is_ok() && classify(None, &d).is_ok());
        std::fs::write(d.join("summary.json"), r#"{"status": "diverged", "message": "NaN"}"#).unwrap();
        assert_eq!(classify(Some(3), &d).unwrap_err().0, Class::Diverged);
        std::fs::write(d.join("summary.json"), r#"{"status": "failed"}"#).unwrap();
        assert_eq!(classify(Some(3), &d).unwrap_err().0, Class::Failed);
        assert_eq!(classify(Some(2), &d.join("none")).unwrap_err().0, Class::Input);
        assert_eq!(classify(Some(137), &d.join("none")).unwrap_err().0, Class::System);
    }
}
