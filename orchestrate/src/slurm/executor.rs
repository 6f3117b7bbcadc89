//! The study executor on Slurm: each run attempt is one batch job (the same script as
//! `tessera slurm submit` writes, in the run's RUN_DIR), and one poller watches every
//! job of the study with a single batched `squeue` per interval (never one query per
//! job), as submitit and Snakemake learnt to do. Job states map onto the study's failure
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
/// queue without one being seen (it ended more than Slurm's MinJobAge ago).
pub type Ended = Option<QueuedJob>;

enum PollMsg {
    Watch(String, oneshot::Sender<Ended>),
}

/// Handle to the poller.
#[derive(Clone)]
pub struct Poller(mpsc::UnboundedSender<PollMsg>);

/// Polls seen in a row without the job before it counts as gone (a job is in the
/// controller's table as soon as sbatch returns, so one miss would do; two tolerate a
/// controller restart).
const MISSES: u32 = 2;

impl Poller {
    /// Starts the poller: one `squeue` for all watched jobs every `interval`.
    pub fn spawn(interval: Duration) -> Poller {
        let (tx, mut rx) = mpsc::unbounded_channel::<PollMsg>();
        tokio::spawn(async move {
            let mut watched: HashMap<String, (oneshot::Sender<Ended>, u32)> = HashMap::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(PollMsg::Watch(job, r)) => { watched.insert(job, (r, 0)); }
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
                        let mut ended = Vec::new();
                        for (job, (_, misses)) in watched.iter_mut() {
                            match seen.get(job) {
                                Some(q) if q.state.is_final() => ended.push((job.clone(), Some(q.clone()))),
                                Some(_) => *misses = 0,
                                None => {
                                    *misses += 1;
                                    if *misses >= MISSES {
                                        ended.push((job.clone(), None));
                                    }
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

/// A job of this name that Slurm still knows (queued, running or recently ended).
pub fn find(name: &str) -> Option<String> {
    let o = std::process::Command::new("squeue").args(["-h", "-t", "all", "-o", "%i", "-n", name]).output().ok()?;
    String::from_utf8_lossy(&o.stdout).lines().map(str::trim).find(|l| !l.is_empty()).map(String::from)
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
