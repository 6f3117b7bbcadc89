//! The study executor on Slurm. Runs that are ready together (a sweep's points, a
//! convergence study's first levels, the queued runs of a resumed study) go in one job
//! array, whose task ids are the run numbers, throttled to `max_parallel` running
//! tasks; any other attempt (a retry, a generator's single new point) is one batch job
//! (the same script as `tessera slurm submit` writes, in the run's RUN_DIR). One poller
//! watches every job and task of the study with a single batched `squeue` per interval
//! (never one query per job), as submitit and Snakemake learnt to do, and cancels them
//! with one `scancel`. A job that squeue has forgotten (it ended more than `MinJobAge`
//! ago: an orchestrator resumed late) gets its final state from one `sacct` call when
//! the cluster keeps accounting, else from the run's summary.json. Job states map onto the study's failure
//! classes: NODE_FAIL, PREEMPTED and BOOT_FAIL are system failures (retried), TIMEOUT and
//! DEADLINE the timeout class, OUT_OF_MEMORY an application failure, CANCELLED from
//! outside the study its own class; a job that completed or failed is classified from
//! the run's summary.json, as a local run is.
use super::{format_time, newest_checkpoint, parse_time, plan, script, squeue, CaseInfo, JobState, Options, QueuedJob};
use crate::exec::Class;
use crate::study::Study;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the poller reports for a job: its final state, or `None` when it has left the
/// queue without one being seen (it ended more than Slurm's MinJobAge ago) and
/// accounting does not know it either.
pub type Ended = Option<QueuedJob>;

enum PollMsg {
    Watch(String, oneshot::Sender<Ended>),
    Cancel(String, oneshot::Sender<()>),
}

/// Handle to the poller.
#[derive(Clone)]
pub struct Poller(mpsc::UnboundedSender<PollMsg>);

/// Polls seen in a row without the job before it counts as gone (a job is in the
/// controller's table as soon as sbatch returns, so one miss would do; two tolerate a
/// controller restart).
const MISSES: u32 = 2;

/// How long the poller waits for more cancellations to send with the first.
const CANCEL_GATHER: Duration = Duration::from_millis(50);

impl Poller {
    /// Starts the poller: one `squeue` for all watched jobs every `interval` (and one
    /// `sacct` for those squeue no longer lists, searching accounting back to `since`).
    pub fn spawn(interval: Duration, since: std::time::SystemTime) -> Poller {
        let (tx, mut rx) = mpsc::unbounded_channel::<PollMsg>();
        tokio::spawn(async move {
            let mut watched: HashMap<String, (oneshot::Sender<Ended>, u32)> = HashMap::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(PollMsg::Watch(job, r)) => { watched.insert(job, (r, 0)); }
                        Some(PollMsg::Cancel(job, r)) => {
                            // A cancelled study cancels all its jobs at once: gather the
                            // requests that arrive together into one scancel.
                            let mut jobs = vec![(job, r)];
                            tokio::time::sleep(CANCEL_GATHER).await;
                            while let Ok(m) = rx.try_recv() {
                                match m {
                                    PollMsg::Cancel(job, r) => jobs.push((job, r)),
                                    PollMsg::Watch(job, r) => { watched.insert(job, (r, 0)); }
                                }
                            }
                            let ids: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
                            let _ = tokio::task::spawn_blocking(move || super::scancel(&ids, None)).await;
                            for (_, r) in jobs {
                                let _ = r.send(());
                            }
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        watched.retain(|_, (r, _)| !r.is_closed());
                        if watched.is_empty() {
                            continue;
                        }
                        let ids: Vec<String> = watched.keys().cloned().collect();
                        // A failed query (controller busy or restarting) is tried again
                        // at the next tick; the jobs keep their state meanwhile.
                        let Ok(Ok(seen)) = tokio::task::spawn_blocking(move || squeue(&ids)).await else { continue };
                        let (mut ended, mut gone) = (Vec::new(), Vec::new());
                        for (job, (_, misses)) in watched.iter_mut() {
                            match seen.get(job) {
                                Some(q) if q.state.is_final() => ended.push((job.clone(), Some(q.clone()))),
                                Some(_) => *misses = 0,
                                None => {
                                    *misses += 1;
                                    if *misses >= MISSES {
                                        gone.push(job.clone());
                                    }
                                }
                            }
                        }
                        if !gone.is_empty() {
                            let asked = gone.clone();
                            let known = tokio::task::spawn_blocking(move || {
                                if super::accounting() { super::sacct(&asked, since).unwrap_or_default() } else { HashMap::new() }
                            })
                            .await
                            .unwrap_or_default();
                            for job in gone {
                                match known.get(&job) {
                                    Some(q) if q.state.is_final() => ended.push((job, Some(q.clone()))),
                                    // Accounting says it is still queued or running: keep watching.
                                    Some(_) => { if let Some(w) = watched.get_mut(&job) { w.1 = 0 } }
                                    None => ended.push((job, None)),
                                }
                            }
                        }
                        for (job, state) in ended {
                            if let Some((r, _)) = watched.remove(&job) {
                                let _ = r.send(state);
                            }
                        }
                    }
                }
            }
        });
        Poller(tx)
    }

    /// Cancels `job` (batched with the other cancellations that come at the same time).
    pub async fn cancel(&self, job: &str) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(PollMsg::Cancel(job.to_string(), tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Resolves when `job` has ended.
    pub async fn wait(&self, job: &str) -> Result<Ended, String> {
        let (tx, rx) = oneshot::channel();
        self.0.send(PollMsg::Watch(job.to_string(), tx)).map_err(|_| "the Slurm poller stopped".to_string())?;
        rx.await.map_err(|_| "the Slurm poller stopped".to_string())
    }
}

/// The job name of run `id` of a study: how a job submitted just before a crash (its id
/// not yet journaled) is found again.
pub fn job_name(study: &Study, id: i64) -> String {
    let clean: String = study.name.chars().map(|c| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' }).collect();
    format!("{clean}.run_{id:04}")
}

/// The sbatch options of one attempt of a run of `study`.
pub fn options(study: &Study, sets: &[String], run_dir: &Path) -> Result<Options, String> {
    let spec = study.slurm.clone().unwrap_or_default();
    // The walltime: [slurm] time, else the study's timeout rounded up to minutes.
    let time = spec.time.clone().or_else(|| study.timeout.map(|t| format_time(((t / 60.0).ceil() as u64).max(1) * 60)));
    let secs = match &time {
        Some(t) => parse_time(t)?,
        None => None,
    };
    Ok(Options {
        case: study.case.clone(),
        set: sets.to_vec(),
        out: Some(run_dir.to_path_buf()),
        ntasks: Some(study.ranks as u32),
        cpus_per_task: spec.cpus_per_task,
        time,
        partition: spec.partition,
        account: spec.account,
        qos: spec.qos,
        mem: spec.mem,
        // Each attempt is a fresh job: the study retries, Slurm does not requeue.
        requeue: false,
        signal_seconds: secs.map(|s| (s / 4).clamp(1, 120) as u32),
        // A retry continues from the newest checkpoint of the failed attempt, if any.
        overwrite: newest_checkpoint(run_dir).is_none(),
        ..Options::default()
    })
}

/// Checks the study's sbatch request against the cluster (partition, resources, time)
/// before anything is submitted.
pub fn check_request(study: &Study, exe: &Path, dir: &Path) -> crate::Result<String> {
    Ok(job_of(study, exe, 0, &[], &dir.join("runs").join("run_0000"), true)?.checked)
}

/// The checked job of run `id`. The points were checked by the study already (the case
/// loads and decomposes), so the case check here only names the run.
fn job_of(study: &Study, exe: &Path, id: i64, sets: &[String], run_dir: &Path, need_cluster: bool) -> crate::Result<super::Job> {
    let opts = options(study, sets, run_dir).map_err(crate::StudyError::input)?;
    let info = CaseInfo { name: study.name.clone(), run_dir: run_dir.to_path_buf(), fixed_ranks: None };
    let check = move |_: Option<usize>| Ok(info.clone());
    plan(&Options { job_name: Some(job_name(study, id)), ..opts }, exe, &check, need_cluster)
}

/// Writes RUN_DIR/job.sbatch for attempt of run `id` and submits it; returns the job id.
pub fn submit(study: &Study, exe: &Path, id: i64, sets: &[String], run_dir: &Path) -> Result<String, String> {
    let job = job_of(study, exe, id, sets, run_dir, false).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let path = run_dir.join(super::SCRIPT_NAME);
    postproc::sinks::write_atomic(&path, script::render(&job).as_bytes()).map_err(|e| e.to_string())?;
    super::sbatch(&path).map_err(|e| e.to_string())
}

/// The job name of the study's job arrays.
pub fn array_name(study: &Study) -> String {
    job_name(study, 0).replace(".run_0000", ".runs")
}

/// The ids of the jobs (or array tasks: `JOBID_TASK`) of this name that Slurm still
/// knows (queued, running or recently ended), newest first.
fn named(name: &str) -> Vec<String> {
    let Ok(o) = std::process::Command::new("squeue").args(["-h", "-t", "all", "-r", "-o", "%i", "-n", name]).output() else {
        return Vec::new();
    };
    let mut ids: Vec<String> =
        String::from_utf8_lossy(&o.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    let base = |id: &String| id.split('_').next().and_then(|b| b.parse::<u64>().ok()).unwrap_or(0);
    ids.sort_by_key(|id| std::cmp::Reverse(base(id)));
    ids
}

/// The newest job of this name that Slurm still knows.
pub fn find(name: &str) -> Option<String> {
    named(name).into_iter().next()
}

/// The newest array task of each run among the study's job arrays Slurm still knows:
/// run number → `JOBID_TASK`.
pub fn find_tasks(study: &Study) -> HashMap<i64, String> {
    let mut tasks = HashMap::new();
    for id in named(&array_name(study)) {
        if let Some(task) = id.split_once('_').and_then(|(_, t)| t.parse::<i64>().ok()) {
            tasks.entry(task).or_insert(id);
        }
    }
    tasks
}

/// The largest task id a job array may have (Slurm's MaxArraySize − 1; 1000 when
/// scontrol does not say).
pub fn max_array_task() -> i64 {
    super::config_value("MaxArraySize").and_then(|v| v.parse::<i64>().ok()).unwrap_or(1001) - 1
}

/// Submits runs `(id, sets)` of the study as one job array (task id = run id, at most
/// `max_parallel` running at once); returns the array's job id (its tasks are
/// `JOBID_ID`). The array script goes to `runs/array_FIRST-LAST.sbatch`, and every
/// run's RUN_DIR gets the one-run script too (`job.sbatch`), to resubmit it by hand.
pub fn submit_array(study: &Study, exe: &Path, dir: &Path, runs: &[(i64, Vec<String>)]) -> Result<String, String> {
    let (Some(first), Some(last)) = (runs.iter().map(|r| r.0).min(), runs.iter().map(|r| r.0).max()) else {
        return Err("an empty job array".into());
    };
    let runs_dir = dir.join("runs");
    let run_dir = |id: i64| runs_dir.join(format!("run_{id:04}"));
    let one = job_of(study, exe, first, &[], &run_dir(first), false).map_err(|e| e.to_string())?;
    let mut tasks = Vec::with_capacity(runs.len());
    for (id, sets) in runs {
        let rd = std::path::absolute(run_dir(*id)).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&rd).map_err(|e| format!("{}: {e}", rd.display()))?;
        let overwrite = newest_checkpoint(&rd).is_none();
        let single = super::Job { set: sets.clone(), run_dir: rd.clone(), overwrite, job_name: job_name(study, *id), ..one.clone() };
        postproc::sinks::write_atomic(&rd.join(super::SCRIPT_NAME), script::render(&single).as_bytes()).map_err(|e| e.to_string())?;
        tasks.push(super::ArrayTask { id: *id, run_dir: rd, set: sets.clone(), overwrite });
    }
    let ids: Vec<i64> = runs.iter().map(|r| r.0).collect();
    let abs_runs = std::path::absolute(&runs_dir).map_err(|e| e.to_string())?;
    let array = super::ArrayTasks {
        spec: super::array_spec(&ids, study.max_parallel),
        // %4a: the task id zero-padded to 4 digits, as the run directories are named.
        output: format!("{}/run_%4a/slurm-%A_%a.out", abs_runs.display().to_string().replace('%', "%%")),
        tasks,
    };
    let job = super::Job { job_name: array_name(study), array: Some(array), ..one };
    let path = runs_dir.join(format!("array_{first:04}-{last:04}.sbatch"));
    postproc::sinks::write_atomic(&path, script::render(&job).as_bytes()).map_err(|e| e.to_string())?;
    super::sbatch(&path).map_err(|e| e.to_string())
}

/// How an ended job went, as a failure class (or Ok for a completed run).
pub fn classify(ended: &Ended, run_dir: &Path) -> Result<(), (Class, String)> {
    let Some(q) = ended else { return crate::exec::classify(None, run_dir) };
    let why = if q.reason.is_empty() || q.reason == "None" { String::new() } else { format!(" ({})", q.reason) };
    match &q.state {
        JobState::Completed => crate::exec::classify(Some(0), run_dir),
        JobState::Timeout | JobState::Deadline => {
            Err((Class::Timeout, format!("Slurm {}{why}: the job reached its time limit", name(&q.state))))
        }
        s if s.is_system_failure() => Err((Class::System, format!("Slurm {}{why}: a system failure", name(s)))),
        JobState::OutOfMemory => Err((Class::Failed, format!("Slurm OUT_OF_MEMORY{why}: ask for more with [slurm] mem"))),
        JobState::Cancelled => Err((Class::Cancelled, format!("the Slurm job was cancelled outside the study{why}"))),
        // FAILED (non-zero exit) and anything else: what the run itself recorded.
        s => crate::exec::classify(None, run_dir).map_err(|(c, m)| (c, format!("Slurm {}{why}; {m}", name(s)))),
    }
}

/// Slurm's own name of a state.
fn name(s: &JobState) -> String {
    match s {
        JobState::NodeFail => "NODE_FAIL".into(),
        JobState::OutOfMemory => "OUT_OF_MEMORY".into(),
        JobState::BootFail => "BOOT_FAIL".into(),
        JobState::Other(o) => o.clone(),
        other => format!("{other:?}").to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_map_onto_failure_classes() {
        let d = std::env::temp_dir().join(format!("orch-slurm-exec-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let q = |s: &str| Some(QueuedJob { state: JobState::parse(s), reason: String::new() });
        for (state, class) in [
            ("NODE_FAIL", Class::System),
            ("PREEMPTED", Class::System),
            ("BOOT_FAIL", Class::System),
            ("TIMEOUT", Class::Timeout),
            ("DEADLINE", Class::Timeout),
            ("OUT_OF_MEMORY", Class::Failed),
            ("CANCELLED", Class::Cancelled),
            ("FAILED", Class::System),
        ] {
            assert_eq!(classify(&q(state), &d).unwrap_err().0, class, "{state}");
        }
        std::fs::write(d.join("summary.json"), r#"{"status": "diverged", "message": "NaN"}"#).unwrap();
        assert_eq!(classify(&q("FAILED"), &d).unwrap_err().0, Class::Diverged, "the run's own verdict");
        std::fs::write(d.join("summary.json"), r#"{"status": "completed"}"#).unwrap();
        assert!(classify(&q("COMPLETED"), &d).is_ok() && classify(&None, &d).is_ok());
    }
}
