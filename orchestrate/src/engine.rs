//! The actors that run a study, on tokio, hand-rolled over mpsc channels: a *journal
//! writer* (a thread owning the SQLite connection: every state change is committed and
//! acknowledged before anyone acts on it), a *scheduler* that owns the slots (a run of R
//! ranks takes R of them, at most `max_parallel` runs at once, first come first
//! served), one *run actor* per attempt (launch, timeout, classify, quantities), and
//! the *study actor* (this module's `drive`) that decides retries and keeps the results
//! table. A run actor that fails, even by panicking, is one failed attempt: the study
//! goes on. Four actor kinds with fixed protocols do not need a framework's
//! supervision trees; plain tasks and channels keep the failure handling explicit.
use crate::exec::{self, Class, Launch};
use crate::generate::{self, Finish, Generator};
use crate::journal::{Journal, RunRow, State};
use crate::study::Study;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum JournalMsg {
    Launching(Vec<i64>, Reply<Vec<i64>>),
    Started(i64, i64, i64, Reply<()>),
    Finish(i64, State, Option<String>, String, BTreeMap<String, f64>, f64, Reply<bool>),
    Requeue(i64, &'static str, Reply<()>),
    Runs(Reply<Vec<RunRow>>),
    Add(Vec<Vec<(String, String)>>, Reply<Vec<i64>>),
    Submitted(Vec<(i64, String)>, Reply<()>),
}

/// Handle to the journal writer.
#[derive(Clone)]
pub struct JournalHandle(mpsc::UnboundedSender<JournalMsg>);

impl JournalHandle {
    /// Starts the writer thread on `journal`.
    pub fn spawn(mut journal: Journal) -> JournalHandle {
        let (tx, mut rx) = mpsc::unbounded_channel::<JournalMsg>();
        std::thread::spawn(move || {
            while let Some(m) = rx.blocking_recv() {
                match m {
                    JournalMsg::Launching(ids, r) => drop(r.send(journal.launching(&ids))),
                    JournalMsg::Started(id, pid, st, r) => drop(r.send(journal.started(id, pid, st))),
                    JournalMsg::Finish(id, s, c, m, q, secs, r) => drop(r.send(journal.finish(id, s, c.as_deref(), &m, &q, secs))),
                    JournalMsg::Requeue(id, why, r) => drop(r.send(journal.requeue_interrupted(id, why))),
                    JournalMsg::Runs(r) => drop(r.send(journal.runs())),
                    JournalMsg::Add(runs, r) => drop(r.send(journal.add_runs(&runs))),
                    JournalMsg::Submitted(jobs, r) => drop(r.send(journal.submitted(&jobs))),
                }
            }
        });
        JournalHandle(tx)
    }

    async fn ask<T>(&self, m: impl FnOnce(Reply<T>) -> JournalMsg) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.0.send(m(tx)).map_err(|_| "the journal writer stopped".to_string())?;
        rx.await.map_err(|_| "the journal writer stopped".to_string())?
    }
}

enum SchedMsg {
    Acquire(usize, oneshot::Sender<()>),
    Release(usize),
}

/// Handle to the scheduler.
#[derive(Clone)]
struct Scheduler(mpsc::UnboundedSender<SchedMsg>);

impl Scheduler {
    fn spawn(slots: usize, max_parallel: usize) -> Scheduler {
        let (tx, mut rx) = mpsc::unbounded_channel::<SchedMsg>();
        tokio::spawn(async move {
            let (mut free, mut running) = (slots, 0usize);
            let mut waiting: VecDeque<(usize, oneshot::Sender<()>)> = VecDeque::new();
            while let Some(m) = rx.recv().await {
                match m {
                    SchedMsg::Acquire(n, r) => waiting.push_back((n, r)),
                    SchedMsg::Release(n) => {
                        free += n;
                        running = running.saturating_sub(1);
                    }
                }
                while let Some((n, _)) = waiting.front() {
                    if *n > free || running >= max_parallel {
                        break;
                    }
                    let (n, r) = waiting.pop_front().expect("front exists");
                    // A requester that went away (cancelled) gives its grant back at once.
                    if r.send(()).is_ok() {
                        free -= n;
                        running += 1;
                    }
                }
            }
        });
        Scheduler(tx)
    }

    async fn acquire(&self, n: usize) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.0.send(SchedMsg::Acquire(n, tx)).map_err(|_| "the scheduler stopped")?;
        rx.await.map_err(|_| "the scheduler stopped".to_string())
    }

    fn release(&self, n: usize) {
        let _ = self.0.send(SchedMsg::Release(n));
    }
}

/// What a run actor reports.
struct Report {
    id: i64,
    /// The attempt this was (1-based; 0 when cancelled before it launched).
    attempt: i64,
    outcome: Result<BTreeMap<String, f64>, (Class, String)>,
    seconds: f64,
    cancelled: bool,
}

struct Ctx {
    study: Study,
    /// The Slurm poller (executor `slurm`).
    poller: Option<crate::slurm::executor::Poller>,
    dir: PathBuf,
    exe: PathBuf,
    journal: JournalHandle,
    sched: Scheduler,
    cancel: watch::Receiver<bool>,
}

impl Ctx {
    fn run_dir(&self, id: i64) -> PathBuf {
        self.dir.join("runs").join(format!("run_{id:04}"))
    }
}

/// What a resumed study takes over from the orchestrator that crashed.
enum Adopt {
    /// A local process: pid, start time, attempt.
    Process(i64, i64, i64),
    /// A Slurm job (None: it has ended and left the queue), attempt.
    Job(Option<String>, i64),
}

/// Runs one attempt of run `id` as a Slurm job (or adopts its job).
async fn slurm_actor(ctx: Arc<Ctx>, id: i64, sets: Vec<String>, adopt: Option<(Option<String>, i64)>) -> Report {
    use crate::slurm::executor;
    let t0 = Instant::now();
    let run_dir = ctx.run_dir(id);
    let mut cancel = ctx.cancel.clone();
    let ranks = ctx.study.ranks;
    let report = |attempt, outcome, cancelled| Report { id, attempt, outcome, seconds: t0.elapsed().as_secs_f64(), cancelled };
    let Some(poller) = ctx.poller.clone() else { return report(0, Err((Class::System, "no Slurm poller".into())), true) };
    // A task of a job array is throttled by the array itself (`%max_parallel`) and
    // bypasses the scheduler: only the jobs this actor submits, or adopts, hold slots.
    let holds_slots = !matches!(&adopt, Some((Some(job), _)) if job.contains('_'));
    let release = || {
        if holds_slots {
            ctx.sched.release(ranks)
        }
    };
    if holds_slots {
        tokio::select! {
            r = ctx.sched.acquire(ranks) => if r.is_err() { return report(0, Err((Class::System, "scheduler stopped".into())), true) },
            _ = wait_cancel(&mut cancel) => return report(0, Err((Class::System, "cancelled".into())), true),
        }
    }
    let (job, attempt) = match adopt {
        Some(a) => a,
        None => {
            let attempt = match ctx.journal.ask(|r| JournalMsg::Launching(vec![id], r)).await {
                Ok(a) => a[0],
                Err(e) => {
                    release();
                    return report(0, Err((Class::System, e)), true);
                }
            };
            let (study, exe, dir, s) = (ctx.study.clone(), ctx.exe.clone(), run_dir.clone(), sets.clone());
            let submitted = tokio::task::spawn_blocking(move || executor::submit(&study, &exe, id, &s, &dir)).await;
            match submitted.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(job) => {
                    let j = job.clone();
                    let _ = ctx.journal.ask(|r| JournalMsg::Submitted(vec![(id, j)], r)).await;
                    (Some(job), attempt)
                }
                Err(e) => {
                    release();
                    return report(attempt, Err((Class::System, format!("sbatch: {e}"))), false);
                }
            }
        }
    };
    let ended = match &job {
        None => None,
        Some(job) => {
            tokio::select! {
                e = poller.wait(job) => match e {
                    Ok(e) => e,
                    Err(e) => {
                        release();
                        return report(attempt, Err((Class::System, e)), true);
                    }
                },
                _ = wait_cancel(&mut cancel) => {
                    // The study is cancelled: so is its job (resume submits it again).
                    poller.cancel(job).await;
                    release();
                    return report(attempt, Err((Class::System, "cancelled".into())), true);
                }
            }
        }
    };
    let outcome = match executor::classify(&ended, &run_dir) {
        Err(e) => Err(e),
        Ok(()) => quantities(&ctx, &run_dir).await,
    };
    release();
    report(attempt, outcome, false)
}

/// Runs one attempt of run `id` (or adopts what the crashed orchestrator left running).
async fn run_actor(ctx: Arc<Ctx>, id: i64, sets: Vec<String>, adopt: Option<Adopt>) -> Report {
    let adopt = match adopt {
        Some(Adopt::Job(job, a)) => return slurm_actor(ctx, id, sets, Some((job, a))).await,
        _ if ctx.poller.is_some() => return slurm_actor(ctx, id, sets, None).await,
        Some(Adopt::Process(pid, st, a)) => Some((pid, st, a)),
        None => None,
    };
    let t0 = Instant::now();
    let run_dir = ctx.run_dir(id);
    let mut cancel = ctx.cancel.clone();
    let timeout = ctx.study.timeout.map(Duration::from_secs_f64).unwrap_or(Duration::MAX);
    let ranks = ctx.study.ranks;
    let attempt;
    let report = |attempt, outcome, cancelled| Report { id, attempt, outcome, seconds: t0.elapsed().as_secs_f64(), cancelled };
    let code: Option<i32> = match adopt {
        Some((pid, start, a)) => {
            attempt = a;
            // The process outlived an orchestrator that crashed: wait for it to end.
            if ctx.sched.acquire(ranks).await.is_err() {
                return report(attempt, Err((Class::System, "scheduler stopped".into())), true);
            }
            let deadline = Instant::now() + timeout.min(Duration::from_secs(1 << 40));
            while exec::alive(pid, start) {
                let cancelled = *cancel.borrow();
                if cancelled {
                    exec::signal_group(pid, libc::SIGTERM);
                    ctx.sched.release(ranks);
                    return report(attempt, Err((Class::System, "cancelled".into())), true);
                }
                if Instant::now() > deadline {
                    kill_group(pid).await;
                    ctx.sched.release(ranks);
                    return report(attempt, Err((Class::Timeout, format!("timed out after {:.0} s", timeout.as_secs_f64()))), false);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
        None => {
            tokio::select! {
                r = ctx.sched.acquire(ranks) => if r.is_err() { return report(0, Err((Class::System, "scheduler stopped".into())), true) },
                _ = wait_cancel(&mut cancel) => return report(0, Err((Class::System, "cancelled".into())), true),
            }
            match ctx.journal.ask(|r| JournalMsg::Launching(vec![id], r)).await {
                Ok(a) => attempt = a[0],
                Err(e) => {
                    ctx.sched.release(ranks);
                    return report(0, Err((Class::System, e)), true);
                }
            }
            let launch = Launch {
                exe: ctx.exe.clone(),
                case: ctx.study.case.clone(),
                sets,
                ranks,
                run_dir: run_dir.clone(),
                log: ctx.dir.join("runs").join(format!("run_{id:04}.log")),
            };
            let mut child = match exec::start(&launch) {
                Ok(c) => c,
                Err(e) => {
                    ctx.sched.release(ranks);
                    return report(attempt, Err((Class::System, format!("cannot launch {}: {e}", ctx.exe.display()))), false);
                }
            };
            let pid = child.id().map(|p| p as i64).unwrap_or(0);
            let start = exec::start_time(pid).unwrap_or(0);
            let _ = ctx.journal.ask(|r| JournalMsg::Started(id, pid, start, r)).await;
            tokio::select! {
                st = child.wait() => match st {
                    Ok(s) => {
                        use std::os::unix::process::ExitStatusExt;
                        s.code().or(s.signal().map(|g| 128 + g))
                    }
                    Err(_) => Some(-1),
                },
                _ = tokio::time::sleep(timeout.min(Duration::from_secs(1 << 40))) => {
                    kill_group(pid).await;
                    let _ = child.wait().await;
                    ctx.sched.release(ranks);
                    return report(attempt, Err((Class::Timeout, format!("timed out after {:.0} s", timeout.as_secs_f64()))), false);
                }
                _ = wait_cancel(&mut cancel) => {
                    kill_group(pid).await;
                    let _ = child.wait().await;
                    ctx.sched.release(ranks);
                    return report(attempt, Err((Class::System, "cancelled".into())), true);
                }
            }
        }
    };
    let outcome = match exec::classify(code, &run_dir) {
        Err(e) => Err(e),
        Ok(()) => quantities(&ctx, &run_dir).await,
    };
    ctx.sched.release(ranks);
    report(attempt, outcome, false)
}

/// Resolves once the study is cancelled (drops the watch guard before returning, so the
/// future stays `Send`).
async fn wait_cancel(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await.is_ok();
}

/// SIGTERM to the group, SIGKILL after a grace period if it is still there.
async fn kill_group(pgid: i64) {
    exec::signal_group(pgid, libc::SIGTERM);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SAFETY: kill with signal 0 only probes the group.
        if unsafe { libc::kill(-(pgid as libc::pid_t), 0) } != 0 {
            return;
        }
    }
    exec::signal_group(pgid, libc::SIGKILL);
}

/// The run's quantities of interest: `tessera post` with the study's pipeline, then
/// the values of its `scalars` outputs.
async fn quantities(ctx: &Ctx, run_dir: &Path) -> Result<BTreeMap<String, f64>, (Class, String)> {
    let Some(pipeline) = &ctx.study.pipeline else { return Ok(BTreeMap::new()) };
    let out = run_dir.join("post");
    let o = tokio::process::Command::new(&ctx.exe)
        .arg("post")
        .arg(run_dir)
        .arg(pipeline)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .output()
        .await
        .map_err(|e| (Class::Post, format!("cannot start tessera post: {e}")))?;
    if !o.status.success() {
        return Err((Class::Post, format!("tessera post failed: {}", String::from_utf8_lossy(&o.stderr).trim())));
    }
    let report: serde_json::Value = std::fs::read_to_string(out.join("post.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| (Class::Post, "tessera post wrote no post.json".to_string()))?;
    let mut q = BTreeMap::new();
    for o in report["outputs"].as_array().into_iter().flatten() {
        for f in o["files"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
            if !f.ends_with(".json") {
                continue;
            }
            let v: serde_json::Value =
                std::fs::read_to_string(out.join(f)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
            for (k, x) in v["values"].as_object().into_iter().flatten() {
                q.insert(k.clone(), x.as_f64().unwrap_or(f64::NAN));
            }
        }
    }
    Ok(q)
}

/// How often results.csv is rewritten while a study runs.
const TABLE_EVERY: Duration = Duration::from_secs(1);

/// How a study ended.
pub struct Outcome {
    /// Runs done.
    pub done: usize,
    /// Runs failed for good.
    pub failed: usize,
    /// Interrupted by a signal (resume continues it).
    pub stopped: bool,
    /// Why the study's generator added no more runs (None when stopped early).
    pub finish: Option<Finish>,
    /// The kind's own summary (the GCI of a convergence study, the loss of an adaptive one).
    pub report: Option<String>,
}

/// Asks the generator for as many runs as there is room for, records them in the
/// journal (committed before they launch) and starts their actors. Returns how many.
async fn top_up(
    gen: &mut dyn Generator,
    ctx: &Arc<Ctx>,
    tasks: &mut JoinSet<Report>,
    task_run: &mut BTreeMap<tokio::task::Id, i64>,
    sets: &mut BTreeMap<i64, Vec<String>>,
) -> Result<usize, String> {
    let room = ctx.study.max_parallel.saturating_sub(tasks.len());
    if room == 0 {
        return Ok(0);
    }
    let pts = gen.ask(room);
    if pts.is_empty() {
        return Ok(0);
    }
    let rows: Vec<Vec<(String, String)>> = pts.iter().map(|p| p.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()).collect();
    let ids = ctx.journal.ask(|r| JournalMsg::Add(rows.clone(), r)).await?;
    let mut new = Vec::with_capacity(ids.len());
    for (id, row) in ids.iter().zip(&rows) {
        let s: Vec<String> = row.iter().map(|(k, v)| format!("{k}={v}")).collect();
        sets.insert(*id, s.clone());
        new.push((*id, s));
    }
    launch(ctx, tasks, task_run, new).await?;
    Ok(ids.len())
}

/// Starts the actors of queued runs `(id, sets)`. On Slurm, two or more runs go as one
/// job array: all of them journaled as launching before sbatch, and their tasks right
/// after it (a crash in between is caught on resume by the array's job name). An array
/// Slurm refuses falls back to one job per run, each reporting its own sbatch error.
async fn launch(
    ctx: &Arc<Ctx>,
    tasks: &mut JoinSet<Report>,
    task_run: &mut BTreeMap<tokio::task::Id, i64>,
    runs: Vec<(i64, Vec<String>)>,
) -> Result<(), String> {
    use crate::slurm::executor;
    let mut adopt: BTreeMap<i64, Adopt> = BTreeMap::new();
    if ctx.poller.is_some() && runs.len() >= 2 {
        // Task ids are run numbers, and Slurm bounds them (MaxArraySize).
        let max = tokio::task::block_in_place(executor::max_array_task);
        let batch: Vec<(i64, Vec<String>)> = runs.iter().filter(|r| r.0 <= max).cloned().collect();
        if batch.len() >= 2 {
            let ids: Vec<i64> = batch.iter().map(|r| r.0).collect();
            let attempts = ctx.journal.ask(|r| JournalMsg::Launching(ids.clone(), r)).await?;
            let (study, exe, dir) = (ctx.study.clone(), ctx.exe.clone(), ctx.dir.clone());
            let submitted = tokio::task::spawn_blocking(move || executor::submit_array(&study, &exe, &dir, &batch)).await;
            match submitted.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(array) => {
                    let jobs: Vec<(i64, String)> = ids.iter().map(|id| (*id, format!("{array}_{id}"))).collect();
                    ctx.journal.ask(|r| JournalMsg::Submitted(jobs.clone(), r)).await?;
                    for ((id, job), a) in jobs.into_iter().zip(attempts) {
                        adopt.insert(id, Adopt::Job(Some(job), a));
                    }
                }
                Err(e) => {
                    eprintln!(
                        "study {}: a job array of {} runs was not submitted ({e}); submitting them one by one",
                        ctx.study.name,
                        ids.len()
                    );
                    for id in ids {
                        ctx.journal
                            .ask(|r| JournalMsg::Requeue(id, "its job array was not submitted: it goes as a job of its own", r))
                            .await?;
                    }
                }
            }
        }
    }
    for (id, sets) in runs {
        let h = tasks.spawn(run_actor(ctx.clone(), id, sets, adopt.remove(&id)));
        task_run.insert(h.id(), id);
    }
    Ok(())
}

fn attempts_allowed(study: &Study, class: Class) -> i64 {
    1 + match class {
        Class::System => study.retries.system,
        Class::Timeout => study.retries.timeout,
        Class::Diverged => study.retries.diverged,
        Class::Failed | Class::Input | Class::Post | Class::Cancelled => 0,
    } as i64
}

/// Why a resumed study requeues a run it found running.
const GONE: &str = "interrupted: the orchestrator stopped and the run's process or job is gone";

/// Drives the study in `dir` to its end: the study actor.
pub async fn drive(study: Study, dir: &Path, exe: PathBuf, journal: Journal, progress: bool) -> Result<Outcome, String> {
    // The generator replays the journal before the writer takes it over.
    let mut gen = generate::rebuild(&study, &journal, &journal.runs()?)?;
    // Local runs die with the machine, Slurm jobs do not: see the journal's documentation.
    journal.sync_to_disk(study.slurm.is_some())?;
    // Accounting is searched back to the study's first launch (now, for a new study).
    let since = journal.first_event().unwrap_or_else(std::time::SystemTime::now);
    let journal = JournalHandle::spawn(journal);
    let sched = Scheduler::spawn(study.slots, study.max_parallel);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let poller = study.slurm.as_ref().map(|s| crate::slurm::executor::Poller::spawn(Duration::from_secs_f64(s.poll_interval), since));
    let ctx =
        Arc::new(Ctx { study: study.clone(), poller, dir: dir.to_path_buf(), exe, journal: journal.clone(), sched, cancel: cancel_rx });
    let sets_of = |row: &RunRow| row.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<String>>();
    let mut tasks: JoinSet<Report> = JoinSet::new();
    let mut task_run: BTreeMap<tokio::task::Id, i64> = BTreeMap::new();
    let rows = journal.ask(JournalMsg::Runs).await?;
    let mut sets: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    // Array tasks of runs whose crash came between sbatch and the journal, by run.
    let lost = ctx.poller.is_some() && rows.iter().any(|r| r.state == State::Running && r.job.is_none());
    let mut array_tasks =
        if lost { tokio::task::block_in_place(|| crate::slurm::executor::find_tasks(&study)) } else { Default::default() };
    let mut queued = Vec::new();
    for row in &rows {
        sets.insert(row.id, sets_of(row));
        // A run recorded as running outlived the orchestrator that launched it: adopt
        // its process (alive, or ended: then its summary.json tells the outcome).
        // Requeue it only when it never started.
        let adopt = match (row.state, row.pid, &row.job) {
            // On Slurm: its job, journaled, or found by its name when the crash came
            // between sbatch and the journal; a job gone from the queue whose run left
            // a summary is classified from it.
            (State::Running, _, Some(job)) => Some(Adopt::Job(Some(job.clone()), row.attempts)),
            (State::Running, _, None) if ctx.poller.is_some() => {
                let job = array_tasks.remove(&row.id).or_else(|| {
                    tokio::task::block_in_place(|| crate::slurm::executor::find(&crate::slurm::executor::job_name(&study, row.id)))
                });
                match job {
                    Some(job) => Some(Adopt::Job(Some(job), row.attempts)),
                    None if ctx.run_dir(row.id).join("summary.json").exists() => Some(Adopt::Job(None, row.attempts)),
                    None => {
                        journal.ask(|r| JournalMsg::Requeue(row.id, GONE, r)).await?;
                        None
                    }
                }
            }
            (State::Running, Some((pid, st)), _) => Some(Adopt::Process(pid, st, row.attempts)),
            (State::Running, None, _) => match exec::find_run(&ctx.run_dir(row.id)) {
                Some((pid, st)) => Some(Adopt::Process(pid, st, row.attempts)),
                None if ctx.run_dir(row.id).join("summary.json").exists() => Some(Adopt::Process(0, 0, row.attempts)),
                None => {
                    journal.ask(|r| JournalMsg::Requeue(row.id, GONE, r)).await?;
                    None
                }
            },
            (State::Queued, ..) => None,
            _ => continue,
        };
        match adopt {
            Some(adopt) => {
                let h = tasks.spawn(run_actor(ctx.clone(), row.id, sets_of(row), Some(adopt)));
                task_run.insert(h.id(), row.id);
            }
            None => queued.push((row.id, sets_of(row))),
        }
    }
    launch(&ctx, &mut tasks, &mut task_run, queued).await?;
    let mut total = rows.len();
    let mut done = rows.iter().filter(|r| r.state == State::Done).count();
    let mut failed = rows.iter().filter(|r| r.state == State::Failed).count();
    let t0 = Instant::now();
    let started_done = done + failed;
    let mut stopped = false;
    write_results(dir, &study, &journal.ask(JournalMsg::Runs).await?)?;
    let (mut last_table, mut stale) = (tokio::time::Instant::now(), false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| e.to_string())?;
    total += top_up(&mut *gen, &ctx, &mut tasks, &mut task_run, &mut sets).await?;
    while !tasks.is_empty() {
        let joined = tokio::select! {
            j = tasks.join_next_with_id() => j,
            _ = term.recv() => { stopped = true; let _ = cancel_tx.send(true); continue }
            _ = int.recv() => { stopped = true; let _ = cancel_tx.send(true); continue }
            _ = tokio::time::sleep_until(last_table + TABLE_EVERY), if stale => {
                write_results(dir, &study, &journal.ask(JournalMsg::Runs).await?)?;
                (last_table, stale) = (tokio::time::Instant::now(), false);
                continue
            }
        };
        let Some(joined) = joined else { break };
        let rep = match joined {
            Ok((_, r)) => r,
            Err(e) => {
                // A run actor that panicked is a failed attempt of its run.
                let id = task_run.get(&e.id()).copied().unwrap_or(-1);
                let attempt = journal.ask(JournalMsg::Runs).await?.iter().find(|r| r.id == id).map(|r| r.attempts).unwrap_or(1);
                Report { id, attempt, outcome: Err((Class::System, format!("run actor failed: {e}"))), seconds: 0.0, cancelled: false }
            }
        };
        let id = rep.id;
        if rep.cancelled {
            let _ = journal.ask(|r| JournalMsg::Requeue(id, "the study was stopped: resume starts it again", r)).await;
            continue;
        }
        let n = rep.attempt;
        match rep.outcome {
            Ok(q) => {
                journal.ask(|r| JournalMsg::Finish(id, State::Done, None, "completed".into(), q.clone(), rep.seconds, r)).await?;
                gen.tell(id as usize, Some(&q));
                done += 1;
            }
            Err((class, msg)) if n < attempts_allowed(&study, class) && !stopped => {
                journal
                    .ask(|r| {
                        JournalMsg::Finish(
                            id,
                            State::Queued,
                            Some(class.name().into()),
                            format!("attempt {n}: {msg}; retrying"),
                            BTreeMap::new(),
                            rep.seconds,
                            r,
                        )
                    })
                    .await?;
                let h = tasks.spawn(run_actor(ctx.clone(), id, sets[&id].clone(), None));
                task_run.insert(h.id(), id);
            }
            Err((class, msg)) => {
                journal
                    .ask(|r| {
                        JournalMsg::Finish(
                            id,
                            State::Failed,
                            Some(class.name().into()),
                            format!("attempt {n}: {msg}"),
                            BTreeMap::new(),
                            rep.seconds,
                            r,
                        )
                    })
                    .await?;
                gen.tell(id as usize, None);
                failed += 1;
            }
        }
        if !stopped {
            total += top_up(&mut *gen, &ctx, &mut tasks, &mut task_run, &mut sets).await?;
        }
        // The table follows the journal at most a second behind (and exactly at the end):
        // rewriting it after every one of a thousand short runs would cost more than the runs.
        stale = true;
        if last_table.elapsed() >= TABLE_EVERY {
            write_results(dir, &study, &journal.ask(JournalMsg::Runs).await?)?;
            (last_table, stale) = (tokio::time::Instant::now(), false);
        }
        if progress {
            let finished = done + failed - started_done;
            let left = total - done - failed;
            let eta = if finished > 0 { t0.elapsed().as_secs_f64() / finished as f64 * left as f64 } else { f64::NAN };
            let running = tasks.len().min(study.max_parallel);
            let more = gen.progress();
            // The ETA counts the runs known so far: a generator may add more.
            eprintln!(
                "study {}: {done} done, {failed} failed, {running} running, {} queued of {total}; ETA {}{}",
                study.name,
                left.saturating_sub(running),
                if eta.is_finite() && (gen.finished().is_some() || study.points.len() == total) {
                    format!("{eta:.0} s")
                } else {
                    "-".into()
                },
                if more.is_empty() { more } else { format!("; {more}") }
            );
        }
    }
    let rows = journal.ask(JournalMsg::Runs).await?;
    write_results(dir, &study, &rows)?;
    write_plot(dir, &study, &rows);
    let report = gen.report(dir);
    let finish = if stopped { None } else { gen.finished() };
    Ok(Outcome { done, failed, stopped, finish, report })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Every quantity name any run reported, sorted.
fn quantity_names(rows: &[RunRow]) -> Vec<String> {
    let mut q: Vec<String> = rows.iter().flat_map(|r| r.quantities.keys().cloned()).collect();
    q.sort();
    q.dedup();
    q
}

/// results.csv: one row per run, written atomically after every change, so it can be
/// read while the study runs (or after it crashed) without resuming.
pub fn write_results(dir: &Path, study: &Study, rows: &[RunRow]) -> Result<(), String> {
    let qnames = quantity_names(rows);
    let mut head = vec!["run".to_string(), "state".into(), "attempts".into(), "class".into(), "seconds".into()];
    head.extend(study.parameters.iter().cloned());
    head.extend(qnames.iter().cloned());
    let mut s = head.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        let state = match r.state {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        };
        let mut cells =
            vec![r.id.to_string(), state.into(), r.attempts.to_string(), r.class.clone().unwrap_or_default(), format!("{:.3}", r.seconds)];
        for p in &study.parameters {
            cells.push(csv_field(&r.params.iter().find(|x| &x.0 == p).map(|x| x.1.clone()).unwrap_or_default()));
        }
        for q in &qnames {
            cells.push(r.quantities.get(q).map(|v| format!("{v:e}")).unwrap_or_default());
        }
        s += &cells.join(",");
        s.push('\n');
    }
    postproc::sinks::write_atomic(&dir.join("results.csv"), s.as_bytes()).map_err(|e| e.to_string())
}

/// results.png: every quantity against the first numeric parameter (a response curve).
pub fn write_plot(dir: &Path, study: &Study, rows: &[RunRow]) {
    use postproc::plot::{line_plot, LinePlot, Series, SeriesStyle};
    let Some(p) = study.parameters.iter().find(|p| rows.iter().any(|r| r.params.iter().any(|x| &x.0 == *p && x.1.parse::<f64>().is_ok())))
    else {
        return;
    };
    let qnames = quantity_names(rows);
    let mut series = Vec::new();
    for q in &qnames {
        let mut pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.state == State::Done)
            .filter_map(|r| Some((r.params.iter().find(|x| &x.0 == p)?.1.parse::<f64>().ok()?, *r.quantities.get(q)?)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            series.push(Series {
                label: q.clone(),
                x: pts.iter().map(|x| x.0).collect(),
                y: pts.iter().map(|x| x.1).collect(),
                style: if study.parameters.len() == 1 { SeriesStyle::Line } else { SeriesStyle::Points },
            });
        }
    }
    if series.is_empty() {
        return;
    }
    let plot = LinePlot {
        title: format!("study {}: quantities against {p}", study.name),
        x_label: p.clone(),
        y_label: "quantity".into(),
        series,
        log_x: false,
        log_y: false,
    };
    let _ = line_plot(&dir.join("results.png"), &plot);
}
