//! The study executor against a real one-node Slurm WITH job accounting: munged, a
//! private MariaDB, slurmdbd, slurmctld and slurmd, started by
//! `scripts/slurm_local.sh start --accounting` in this test binary's own state dir and
//! ports (stopped by pid when the last test using it ends, pass or fail), with
//! `MinJobAge=2`, so squeue forgets a finished job within seconds and only `sacct` still
//! knows how it ended.
//!
//! The case that needs accounting: a study's orchestrator is killed while its job runs,
//! the job is cancelled from outside, squeue forgets it, and the study is resumed. The
//! resumed poller no longer sees the job in squeue and asks sacct, which says CANCELLED:
//! the run is reported `cancelled`. Without accounting it would be classified from the
//! run's summary.json (`stopped` by the scancel's signal: class `system`).
//!
//! Without the Slurm and accounting packages these tests FAIL (CI installs them with
//! scripts/setup.sh).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::scratch;
use common::slurm::{csv_rows, text, LocalSlurm, CASE};

/// This suite's slurmctld port (slurmd takes the next one, slurmdbd port+2, MariaDB
/// port+3): clear of tests/slurm.rs's 16817-16818.
const PORT: &str = "16827";

static SLURM: LocalSlurm = LocalSlurm { port: PORT, name: "slurm_accounting", accounting: true };

fn slurm_cmd(program: &str) -> Command {
    SLURM.cmd(program)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The job's `JobID|State` line as the accounting database has it ("" when unknown).
fn sacct_line(id: &str) -> String {
    let o = slurm_cmd("sacct").args(["-n", "-P", "-X", "-o", "JobID,State", "-j", id]).output().expect("sacct");
    assert!(o.status.success(), "sacct -j {id}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Waits until squeue no longer lists job `id` (MinJobAge after its end) and sacct
/// reports a state starting with `want`; returns sacct's line.
fn wait_forgotten_but_accounted(id: &str, want: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let (queue, acct) = (SLURM.job_state(id), sacct_line(id));
        if queue.is_empty() && acct.split('|').nth(1).is_some_and(|s| s.starts_with(want)) {
            return acct;
        }
        assert!(
            t0.elapsed() < limit,
            "job {id} after {limit:?}: squeue {queue:?}, sacct {acct:?} (want gone from squeue, {want} in sacct)"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_local_cluster_keeps_accounting_sacct_lists_a_completed_job() {
    let _cluster = SLURM.hold();
    let d = scratch("slurm_accounting", "sacct");
    let o = SLURM.control(&["status"]);
    assert!(o.status.success(), "{}", text(&o));
    let status = String::from_utf8_lossy(&o.stdout);
    assert!(status.contains("mariadbd: running") && status.contains("slurmdbd: running"), "{status}");
    let o = slurm_cmd("scontrol").args(["show", "config"]).output().unwrap();
    let config = String::from_utf8_lossy(&o.stdout);
    assert!(config.lines().any(|l| l.starts_with("AccountingStorageType") && l.ends_with("accounting_storage/slurmdbd")), "{config}");

    let out = d.join("slurm-%j.out");
    let o = slurm_cmd("sbatch").args(["--parsable", "-o", path(&out), "--wrap", "echo accounted"]).output().unwrap();
    assert!(o.status.success(), "sbatch: {}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // What a user does: `sacct -j ID` lists the finished job, also once squeue has forgotten it.
    let line = wait_forgotten_but_accounted(&id, "COMPLETED", Duration::from_secs(60));
    assert_eq!(line, format!("{id}|COMPLETED"));
    let o = slurm_cmd("sacct").args(["-j", &id]).output().unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && table.lines().any(|l| l.split_whitespace().next() == Some(id.as_str()) && l.contains("COMPLETED")),
        "{table}"
    );
}

#[test]
fn a_resumed_study_learns_from_sacct_that_its_forgotten_job_was_cancelled() {
    let _cluster = SLURM.hold();
    let d = scratch("slurm_accounting", "resume");
    // Long enough to still run when it is cancelled (the job's time limit ends it anyway).
    std::fs::write(d.join("heat.toml"), CASE.replace("max_steps = 400", "max_steps = 200000").replace("every = 100", "every = 0")).unwrap();
    std::fs::write(d.join("q.toml"), "[[output]]\nname = \"q\"\nkind = \"scalars\"\nvalues = { peak = \"max(temperature)\" }\n").unwrap();
    // No retries of system failures: without accounting the run would end `failed`
    // with class `system` at once, instead of being submitted again.
    let s = d.join("s.toml");
    std::fs::write(
        &s,
        "[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\nexecutor = \"slurm\"\nretries = { system = 0 }\n[slurm]\npartition = \"debug\"\ntime = \"5\"\npoll_interval = 0.5\n[parameters]\n\"physics.diffusivity\" = { values = [0.1] }\n[quantities]\npipeline = \"q.toml\"\n",
    )
    .unwrap();
    let dir = d.join("study");
    let mut child = SLURM
        .tessera_cmd(&["study", "run", path(&s), "--dir", path(&dir), "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = SLURM.wait_for_job(&dir, 0, Duration::from_secs(60));
    assert!(!job.contains('_'), "a single run is one plain job: {job}");
    // Once the solver's time loop runs (monitor.csv grows each step).
    let monitor = dir.join("runs/run_0000/monitor.csv");
    let t0 = Instant::now();
    while std::fs::read_to_string(&monitor).map(|m| m.lines().count() < 20).unwrap_or(true) {
        assert!(t0.elapsed() < Duration::from_secs(60), "job {job} ({}) did not start its time loop", SLURM.job_state(&job));
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: the orchestrator is gone, its job runs on.
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(SLURM.job_state(&job), "RUNNING", "the job outlives the orchestrator");

    // Cancelled from outside while no orchestrator watches; squeue forgets it after
    // MinJobAge, accounting keeps it.
    let o = slurm_cmd("scancel").arg(&job).output().unwrap();
    assert!(o.status.success(), "scancel: {}", text(&o));
    let line = wait_forgotten_but_accounted(&job, "CANCELLED", Duration::from_secs(60));
    assert!(line.starts_with(&format!("{job}|CANCELLED")), "{line}");

    // What the run itself left says only that it was stopped by a signal: classified
    // from it (as a cluster without accounting must), the run is a system failure.
    let run_dir = dir.join("runs/run_0000");
    let summary = std::fs::read_to_string(run_dir.join("summary.json")).unwrap_or_default();
    assert!(summary.contains("\"stopped\""), "the scancel's TERM stops the solver cleanly: {summary}");
    let without = orchestrate::slurm::executor::classify(&None, &run_dir).unwrap_err().0;
    assert_eq!(without.name(), "system", "without accounting the class would differ");

    let mut resume =
        SLURM.tessera_cmd(&["study", "resume", path(&dir), "-q"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while resume.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = resume.kill();
            let o = resume.wait_with_output().unwrap();
            panic!("study resume did not finish in 60 s (rows {:?}): {}", csv_rows(&dir), text(&o));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = resume.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "a study with a failed run: {}", text(&o));
    let rows = csv_rows(&dir);
    assert_eq!(&rows[0][..4], ["run", "state", "attempts", "class"], "{rows:?}");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(&rows[1][..4], ["0", "failed", "1", "cancelled"], "only accounting knows the job was cancelled: {rows:?}");
    let j = orchestrate::journal::Journal::open(&dir.join("journal.sqlite")).unwrap();
    assert_eq!(j.event_counts("launching").unwrap().get(&0), Some(&1), "the job was adopted, not submitted again");
}
