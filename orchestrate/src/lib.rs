//! Studies around the solver: parameter sweeps (and, from the same parts, grid
//! convergence with the GCI of Celik et al. 2008 and adaptive sampling), run by actors
//! (`engine`) on local slots (`exec`), with every state change in a durable SQLite
//! journal (`journal`) so a study resumes after a crash without re-running or
//! duplicating anything. The study file is documented in docs/STUDY.md.

pub mod adaptive;
pub mod engine;
pub mod exec;
pub mod gci;
pub mod generate;
pub mod journal;
pub mod slurm;
pub mod study;

use postproc::error::PostError;
use std::path::{Path, PathBuf};
pub use study::{Result, Study, StudyError};

/// The journal's file name inside a study directory.
pub const JOURNAL: &str = "journal.sqlite";

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| PostError::Failed(format!("cannot start the runtime: {e}")))
}

/// Checks one point: the base case with these `--set` overrides, decomposed onto this
/// many ranks; the error is the solver's own located message.
pub type PointCheck<'a> = &'a (dyn Fn(&[String], usize) -> std::result::Result<(), String> + Sync);

/// Checks every point of `study` before anything runs, so a bad parameter value is an
/// error (exit 2) up front: in process with `check` (the solver's own case loading, a
/// fraction of a millisecond per point), else with `tessera check` per point.
fn check_points(study: &Study, exe: &Path, check: Option<PointCheck>) -> Result<()> {
    let sets = |p: &[(String, toml::Value)]| p.iter().map(|(k, v)| study::set_arg(k, v)).collect::<Vec<String>>();
    let mut bad: Vec<(usize, String)> = Vec::new();
    if let Some(check) = check {
        for (i, p) in study.checks.iter().enumerate() {
            if let Err(e) = check(&sets(p), study.ranks) {
                bad.push((i, e));
            }
        }
    } else {
        let rt = runtime()?;
        bad = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
            for (i, p) in study.checks.iter().enumerate() {
                let mut c = tokio::process::Command::new(exe);
                c.arg("check").arg(&study.case).arg("--np").arg(study.ranks.to_string());
                for s in sets(p) {
                    c.arg("--set").arg(s);
                }
                let sem = sem.clone();
                set.spawn(async move {
                    let _permit = sem.acquire().await;
                    (i, c.output().await)
                });
            }
            let mut bad = Vec::new();
            while let Some(j) = set.join_next().await {
                let (i, o) = j.map_err(|e| PostError::Failed(e.to_string()))?;
                let o = o.map_err(|e| PostError::Failed(format!("cannot run {} check: {e}", exe.display())))?;
                if !o.status.success() {
                    bad.push((i, String::from_utf8_lossy(&o.stderr).trim().to_string()));
                }
            }
            Ok::<_, PostError>(bad)
        })?;
    }
    bad.sort();
    if let Some((i, msg)) = bad.first() {
        return Err(PostError::input(format!(
            "{}: {} of {} points are refused by the case; the first, point {i} ({}):\n{msg}",
            study.file.display(),
            bad.len(),
            study.checks.len(),
            sets(&study.checks[*i]).join(" ")
        )));
    }
    Ok(())
}

/// `tessera study run`: checks, creates the study directory and its journal, runs.
pub fn run(file: &Path, dir: Option<PathBuf>, exe: &Path, check: Option<PointCheck>, progress: bool) -> Result<(PathBuf, engine::Outcome)> {
    let study = study::load(file)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from("studies").join(&study.name));
    // Absolute, so run processes can be recognised by their --out after a crash.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    if dir.join(JOURNAL).exists() {
        return Err(PostError::input(format!("{}: a study is already recorded here", dir.display()))
            .help(format!("continue it with `tessera study resume {}`, or pass another --dir", dir.display())));
    }
    check_points(&study, exe, check)?;
    if study.executor == "slurm" {
        // Partition, resources and time against the cluster, before any submission.
        slurm::executor::check_request(&study, exe, &dir)?;
    }
    std::fs::create_dir_all(dir.join("runs"))
        .map_err(|e| PostError::input(format!("{}: cannot create the study directory: {e}", dir.display())))?;
    postproc::sinks::write_atomic(&dir.join("study.toml"), study.text.as_bytes())?;
    let abs_file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let meta = [("name", study.name.clone()), ("study_file", abs_file.display().to_string()), ("study_text", study.text.clone())];
    let rows: Vec<Vec<(String, String)>> =
        study.points.iter().map(|p| p.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()).collect();
    let journal = journal::Journal::create(&dir.join(JOURNAL), &meta, &rows).map_err(PostError::Failed)?;
    let out = runtime()?.block_on(engine::drive(study, &dir, exe.to_path_buf(), journal, progress)).map_err(PostError::Failed)?;
    Ok((dir, out))
}

fn reopen(dir: &Path) -> Result<(Study, journal::Journal)> {
    let j = journal::Journal::open(&dir.join(JOURNAL)).map_err(|e| PostError::input(format!("{e} (not a study directory)")))?;
    let file = PathBuf::from(j.meta("study_file").unwrap_or_default());
    let text = j.meta("study_text").unwrap_or_default();
    let study = study::parse(&file.display().to_string(), &text, &file)?;
    Ok((study, j))
}

/// `tessera study resume`: continues a study after an interruption or a crash.
pub fn resume(dir: &Path, exe: &Path, progress: bool) -> Result<engine::Outcome> {
    let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (study, journal) = reopen(dir)?;
    runtime()?.block_on(engine::drive(study, dir, exe.to_path_buf(), journal, progress)).map_err(PostError::Failed)
}

/// `tessera study status`: counts by state and the failures, from the journal only.
pub fn status(dir: &Path) -> Result<String> {
    let (study, j) = reopen(dir)?;
    let rows = j.runs().map_err(PostError::Failed)?;
    let count = |s: journal::State| rows.iter().filter(|r| r.state == s).count();
    let mut out = format!(
        "study {} ({} runs of {}): {} done, {} failed, {} running, {} queued\n",
        study.name,
        rows.len(),
        study.case.display(),
        count(journal::State::Done),
        count(journal::State::Failed),
        count(journal::State::Running),
        count(journal::State::Queued)
    );
    let gen = generate::rebuild(&study, &j, &rows).map_err(PostError::Failed)?;
    let more = gen.progress();
    if !more.is_empty() {
        out += &format!("  {more}\n");
    }
    if let Some(f) = gen.finished() {
        out += &format!("  finished: {}\n", f.reason);
    }
    for r in rows.iter().filter(|r| r.state == journal::State::Failed) {
        out += &format!("  run {}: {} ({})\n", r.id, r.message, r.class.clone().unwrap_or_default());
    }
    for r in rows.iter().filter(|r| r.state == journal::State::Running) {
        let alive = r.pid.map(|(p, s)| exec::alive(p, s)).unwrap_or(false);
        out += &format!(
            "  run {}: running, pid {} ({})\n",
            r.id,
            r.pid.map(|p| p.0).unwrap_or(0),
            if alive { "alive" } else { "gone: resume re-queues it" }
        );
    }
    Ok(out)
}

/// `tessera study results`: rewrites results.csv and results.png from the journal and
/// returns the CSV text.
pub fn results(dir: &Path) -> Result<String> {
    let (study, j) = reopen(dir)?;
    let rows = j.runs().map_err(PostError::Failed)?;
    engine::write_results(dir, &study, &rows).map_err(PostError::Failed)?;
    engine::write_plot(dir, &study, &rows);
    let report = generate::rebuild(&study, &j, &rows).map_err(PostError::Failed)?.report(dir);
    let csv = std::fs::read_to_string(dir.join("results.csv")).map_err(|e| PostError::Failed(e.to_string()))?;
    Ok(csv + &report.map(|r| format!("\n{r}")).unwrap_or_default())
}
