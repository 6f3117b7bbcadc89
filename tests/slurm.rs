//! `tessera slurm` against a real one-node Slurm (munged, slurmctld, slurmd started by
//! scripts/slurm_local.sh in this test binary's own state dir and port, and stopped
//! by pid when the last test using it ends, pass or fail): a 2-rank job runs through
//! `srun --mpi=pmix` and equals the same case under mpirun; a job that receives the
//! walltime signal checkpoints, requeues itself and finishes equal to an uninterrupted
//! run; bad input is refused with exit 2 before anything is submitted.
//!
//! Without the Slurm packages these tests FAIL (CI installs them with scripts/setup.sh).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::slurm::{csv_rows, text, LocalSlurm, CASE};
use common::{assert_bitwise, scratch, snapshots, with_mpi_env, EXE};

/// This suite's slurmctld port (slurmd takes the next one). Another suite starting its
/// own cluster must use other ports.
const PORT: &str = "16817";

static SLURM: LocalSlurm = LocalSlurm { port: PORT, name: "slurm", accounting: false };

fn conf() -> PathBuf {
    SLURM.conf()
}

fn slurm_cmd(program: &str) -> Command {
    SLURM.cmd(program)
}

fn tessera(args: &[&str]) -> Output {
    SLURM.tessera_cmd(args).output().expect("run tessera")
}

/// `tessera slurm submit ...`: the job id it prints.
fn submit(args: &[&str]) -> String {
    let mut all = vec!["slurm", "submit"];
    all.extend_from_slice(args);
    let o = tessera(&all);
    assert!(o.status.success(), "submit failed: {}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()), "no job id printed: {}", text(&o));
    id
}

/// Waits until job `id` has finished; returns its final state.
fn wait_done(id: &str, log: &Path, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let s = SLURM.job_state(id);
        if ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"].contains(&s.as_str()) {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = slurm_cmd("scancel").arg(id).status();
            panic!("job {id} still {s:?} after {limit:?}; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn summary(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).expect("summary.json")).expect("summary.json parses")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `tessera run --np 2` (mpirun), the reference.
fn mpirun_reference(case: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["run", "--np", "2", path(case), "--out", path(out), "--quiet"];
    args.extend_from_slice(extra);
    let o = tessera(&args);
    assert!(o.status.success(), "mpirun reference failed: {}", text(&o));
}

#[test]
fn a_two_rank_job_runs_through_srun_and_equals_mpirun() {
    let _cluster = SLURM.hold();
    let d = scratch("slurm", "srun");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE).unwrap();
    let run_dir = d.join("slurm");
    let id = submit(&[path(&case), "--ntasks", "2", "--time", "5", "--out", path(&run_dir)]);
    let log = run_dir.join(format!("slurm-{id}.out"));
    assert!(run_dir.join("job.sbatch").is_file());
    let state = wait_done(&id, &log, Duration::from_secs(90));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(state, "COMPLETED", "{log_text}");
    assert!(log_text.contains("srun --mpi=pmix"), "launched through srun with PMIx:\n{log_text}");
    assert!(log_text.contains("completed: 400 steps") && log_text.contains("on 2 rank(s)"), "{log_text}");

    common::assert_valid_run_dir(&run_dir);
    let s = summary(&run_dir);
    assert_eq!(s["status"], "completed");
    assert_eq!(s["ranks"], 2);
    assert_eq!(s["slurm"]["job_id"], id.as_str(), "{s}");
    assert_eq!(s["slurm"]["restarts"], 0, "{s}");

    let reference = d.join("mpirun");
    mpirun_reference(&case, &reference, &[]);
    assert!(summary(&reference).get("slurm").is_none(), "a run outside Slurm records no job");
    let (a, b) = (snapshots(&run_dir), snapshots(&reference));
    assert_eq!(a.len(), 5, "snapshots at 0, 100, ..., 400");
    assert_bitwise(&a, &b, "srun --mpi=pmix vs mpirun");

    // The finished run is not overwritten by another submission.
    let o = tessera(&["slurm", "submit", path(&case), "--ntasks", "2", "--out", path(&run_dir)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a completed run"), "{}", text(&o));
}

#[test]
fn the_walltime_signal_checkpoints_requeues_and_finishes_like_an_uninterrupted_run() {
    let _cluster = SLURM.hold();
    let d = scratch("slurm", "requeue");
    let case = d.join("case.toml");
    // A snapshot every other step keeps each step slow enough (an HDF5 write) for the
    // signal to arrive mid-run on any machine, and monitor.csv is flushed with each.
    let long = CASE.replace("every = 100", "every = 2");
    std::fs::write(&case, long).unwrap();
    let run_dir = d.join("slurm");
    let id = submit(&[path(&case), "--ntasks", "2", "--requeue", "--out", path(&run_dir)]);
    let log = run_dir.join(format!("slurm-{id}.out"));

    // Once the time loop runs, the walltime signal, as Slurm sends it: USR1 to the
    // batch shell only (`--signal=B:USR1@S` does the same before the time limit).
    let monitor = run_dir.join("monitor.csv");
    let t0 = Instant::now();
    while std::fs::read_to_string(&monitor).map(|m| m.lines().count() < 101).unwrap_or(true) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the job did not start (state {}); log:\n{}",
            SLURM.job_state(&id),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = slurm_cmd("scancel").args(["--signal=USR1", "--batch", &id]).output().unwrap();
    assert!(o.status.success(), "scancel --signal: {}", text(&o));

    let state = wait_done(&id, &log, Duration::from_secs(120));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(state, "COMPLETED", "{log_text}");
    // It stopped with a checkpoint, requeued itself, and continued from that checkpoint.
    let stop_step: u64 = log_text
        .split("stopped by a signal at step ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the run did not stop on the signal:\n{log_text}"));
    assert!((100..400).contains(&stop_step), "stopped at {stop_step}");
    let ck = run_dir.join(format!("checkpoints/step_{stop_step:08}.h5"));
    assert!(ck.is_file(), "checkpoint of the stop step");
    assert!(log_text.contains(&format!("requeueing job {id}")), "{log_text}");
    assert!(log_text.contains(&format!("continuing from {}", ck.display())), "{log_text}");
    assert!(log_text.contains("attempt 2") && log_text.contains("completed: 400 steps"), "{log_text}");

    common::assert_valid_run_dir(&run_dir);
    let s = summary(&run_dir);
    assert_eq!(s["status"], "completed");
    assert_eq!(s["steps"], 400);
    assert_eq!(s["slurm"]["job_id"], id.as_str(), "{s}");
    assert_eq!(s["slurm"]["restarts"], 1, "{s}");
    assert_eq!(s["restart_from"], ck.display().to_string());
    let rows = std::fs::read_to_string(&monitor).unwrap().lines().count();
    assert_eq!(rows, 401, "header + one row per step, none lost or doubled by the requeue");

    // Every snapshot of an uninterrupted run is in the requeued run's output, bit for
    // bit (which also holds one more: the stop step's, when it is odd).
    let reference = d.join("mpirun");
    mpirun_reference(&case, &reference, &[]);
    let want = snapshots(&reference);
    let got: Vec<_> = snapshots(&run_dir).into_iter().filter(|(name, _)| want.iter().any(|(n, _)| n == name)).collect();
    assert_eq!(want.len(), 201);
    assert_bitwise(&got, &want, "requeued run vs uninterrupted run");
}

#[test]
fn bad_input_is_refused_before_anything_is_submitted() {
    let _cluster = SLURM.hold();
    let d = scratch("slurm", "bad");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE).unwrap();
    let name = format!("bad-input-{}", std::process::id());
    let run_dir = d.join("never");
    let bad_case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/bad/model_typo.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--partition", "nosuch"], "unknown partition \"nosuch\""),
        (vec!["--partition", "debg"], "did you mean `debug`?"),
        (vec!["--nodes", "2"], "--nodes 2: partition debug has 1 node(s)"),
        (vec!["--ntasks", "4096"], "partition debug has"),
        (vec!["--ntasks", "1", "--cpus-per-task", "512"], "CPUs"),
        (vec!["--mem", "64T"], "--mem 64T"),
        (vec!["--partition", "short", "--time", "2:00:00"], "partition short allows at most 00:10:00"),
        (vec!["--ntasks", "0"], "--ntasks 0"),
        (vec!["--time", "1h"], "Slurm time formats"),
        (vec!["--time", "10:75"], "seconds 75 must be below 60"),
        (vec!["--time", "1-25"], "hours 25 must be below 24"),
        (vec!["--time", "1:2:3:4"], "too many ':'"),
        (vec!["--time", "2", "--signal-seconds", "300"], "is not shorter than --time"),
    ];
    for (extra, want) in &cases {
        let mut args = vec!["slurm", "submit", path(&case), "--job-name", &name, "--out", path(&run_dir)];
        args.extend_from_slice(extra);
        let o = tessera(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?} must be refused with exit 2: {}", text(&o));
        assert!(err.contains(want), "{extra:?}: expected {want:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A case the solver refuses: its located message, before anything is submitted.
    let o = tessera(&["slurm", "submit", path(&bad_case), "--job-name", &name, "--out", path(&run_dir)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("model_typo.toml:7:9"), "{}", text(&o));
    // A case that cannot run on the asked rank count.
    let fixed = d.join("fixed.toml");
    std::fs::write(&fixed, CASE.replace("[physics]", "[decomposition]\nranks = [2, 1]\n[physics]")).unwrap();
    let o = tessera(&["slurm", "submit", path(&fixed), "--ntasks", "1", "--job-name", &name, "--out", path(&run_dir)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("decomposition.ranks"), "{}", text(&o));

    // Nothing was submitted and nothing written.
    let o = slurm_cmd("squeue").args(["-h", "-t", "all", "-n", &name, "-o", "%i"]).output().unwrap();
    assert!(o.status.success(), "squeue: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "", "no job may have been submitted");
    assert!(!run_dir.exists(), "RUN_DIR must not be created");

    // `script` prints the same job as a readable, valid script (and submits nothing).
    let o = tessera(&[
        "slurm",
        "script",
        path(&case),
        "--ntasks",
        "2",
        "--time",
        "1:00:00",
        "--partition",
        "debug",
        "--requeue",
        "--job-name",
        &name,
        "--out",
        path(&run_dir),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let script = String::from_utf8_lossy(&o.stdout).to_string();
    for want in [
        "#SBATCH --ntasks=2",
        "#SBATCH --time=1:00:00",
        "#SBATCH --partition=debug",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --requeue",
        "# Request checked against partition debug",
    ] {
        assert!(script.contains(want), "missing {want:?} in:\n{script}");
    }
    assert!(script.contains(&format!("#SBATCH --output={}/slurm-%j.out", run_dir.display())), "{script}");
    let file = d.join("job.sbatch");
    std::fs::write(&file, &script).unwrap();
    let o = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(o.status.success(), "bash -n: {}", text(&o));
    assert!(!run_dir.exists());
}

/// A small heat case for studies; `steps` sets how long each run takes.
fn study_case(d: &Path, steps: usize) -> PathBuf {
    let case = d.join("heat.toml");
    std::fs::write(&case, CASE.replace("max_steps = 400", &format!("max_steps = {steps}")).replace("every = 100", "every = 0")).unwrap();
    std::fs::write(d.join("q.toml"), "[[output]]\nname = \"q\"\nkind = \"scalars\"\nvalues = { peak = \"max(temperature)\" }\n").unwrap();
    case
}

fn sweep_on_slurm(d: &Path, values: &str) -> PathBuf {
    let s = d.join("s.toml");
    std::fs::write(
        &s,
        format!("[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\nexecutor = \"slurm\"\nmax_parallel = 2\nretries = {{ system = 1 }}\n[slurm]\npartition = \"debug\"\ntime = \"5\"\npoll_interval = 0.5\n[parameters]\n\"physics.diffusivity\" = {{ values = [{values}] }}\n[quantities]\npipeline = \"q.toml\"\n"),
    )
    .unwrap();
    s
}

#[test]
fn a_sweep_on_the_slurm_executor_completes_and_reports_a_cancelled_job_as_such() {
    let _cluster = SLURM.hold();
    let d = scratch("slurm", "study");
    study_case(&d, 60);
    let s = sweep_on_slurm(&d, "0.1, 0.2, 0.3");
    let dir = d.join("study");
    let o = tessera(&["study", "run", path(&s), "--dir", path(&dir), "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = csv_rows(&dir);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let mut arrays = Vec::new();
    for (k, r) in rows[1..].iter().enumerate() {
        assert_eq!(r[1], "done", "{rows:?}");
        let run = dir.join(format!("runs/run_{k:04}"));
        let slurm = summary(&run)["slurm"].clone();
        // The sweep went as one job array whose task ids are the run numbers.
        assert_eq!(slurm["array_task_id"].as_str(), Some(k.to_string().as_str()), "run {k}: {slurm}");
        arrays.push(slurm["array_job_id"].as_str().unwrap_or("").to_string());
        assert!(run.join("job.sbatch").is_file(), "each run keeps its own script, to resubmit it by hand");
        assert!(
            run.read_dir().unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("slurm-")),
            "Slurm's output is in RUN_DIR"
        );
    }
    assert!(arrays.iter().all(|a| a == &arrays[0]) && !arrays[0].is_empty(), "one array for the sweep: {arrays:?}");
    let script = std::fs::read_to_string(dir.join("runs/array_0000-0002.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-2%2\n"), "{script}");
    // The study's runs equal plain local runs of the same points.
    let local = d.join("local");
    let o = tessera(&["run", path(&d.join("heat.toml")), "--set", "physics.diffusivity=0.2", "--out", path(&local), "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_bitwise(&snapshots(&local), &snapshots(&dir.join("runs/run_0001")), "slurm study run vs local run");

    // A job cancelled from outside the study: reported as cancelled, not retried. A
    // single run is one plain job; two are an array, whose task is cancelled alone.
    study_case(&d, 200_000);
    for (values, name) in [("0.1", "cancelled"), ("0.1, 0.2", "cancelled-task")] {
        let s = sweep_on_slurm(&d, values);
        let dir = d.join(name);
        let child = {
            let mut c = Command::new(EXE);
            with_mpi_env(&mut c).env("SLURM_CONF", conf()).args(["study", "run", path(&s), "--dir", path(&dir), "-q"]);
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        };
        let job = SLURM.wait_for_job(&dir, 0, Duration::from_secs(60));
        assert_eq!(job.contains('_'), values.contains(','), "{job}");
        let _ = slurm_cmd("scancel").arg(&job).status();
        let other = (values.contains(',')).then(|| SLURM.wait_for_job(&dir, 1, Duration::from_secs(60)));
        let t0 = Instant::now();
        while other.is_some() && csv_rows(&dir).get(1).map(|r| r[1] == "failed") != Some(true) {
            assert!(t0.elapsed() < Duration::from_secs(60), "run 0 not reported failed: {:?}", csv_rows(&dir));
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(other) = &other {
            // The other task still runs: stopping the study cancels it (resume submits it again).
            assert_eq!(SLURM.job_state(other), "RUNNING");
            // SAFETY: kill(2) on the child we spawned.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while !["CANCELLED", ""].contains(&SLURM.job_state(other).as_str()) {
                assert!(t0.elapsed() < Duration::from_secs(60), "task {other} not cancelled with its study: {}", SLURM.job_state(other));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let rows = csv_rows(&dir);
        assert_eq!(&rows[1][1..4], ["failed", "1", "cancelled"], "{rows:?}");
        if other.is_some() {
            assert_eq!(&rows[2][1..3], ["queued", "0"], "the stopped run waits for resume: {rows:?}");
        }
    }
}

#[test]
fn a_study_killed_with_jobs_in_flight_resumes_and_adopts_them() {
    let _cluster = SLURM.hold();
    let d = scratch("slurm", "study-resume");
    study_case(&d, 3000);
    let s = sweep_on_slurm(&d, "0.1, 0.2, 0.3");
    let dir = d.join("study");
    let mut child = {
        let mut c = Command::new(EXE);
        with_mpi_env(&mut c).env("SLURM_CONF", conf()).args(["study", "run", path(&s), "--dir", path(&dir), "-q"]);
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
    };
    let job = SLURM.wait_for_job(&dir, 0, Duration::from_secs(60));
    let _ = child.kill(); // SIGKILL: the jobs stay queued or running on the cluster
    let _ = child.wait();
    assert!(["RUNNING", "COMPLETING", "COMPLETED"].contains(&SLURM.job_state(&job).as_str()), "the job outlives the orchestrator");
    let o = tessera(&["study", "resume", path(&dir), "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = csv_rows(&dir);
    assert!(rows.len() == 4 && rows[1..].iter().all(|r| r[1] == "done"), "{rows:?}");
    let j = orchestrate::journal::Journal::open(&dir.join("journal.sqlite")).unwrap();
    let (launched, done) = (j.event_counts("launching").unwrap(), j.event_counts("done").unwrap());
    assert_eq!(launched.get(&0), Some(&1), "run 0's job was adopted, not submitted again: {launched:?}");
    assert!((0..3).all(|i| done.get(&i) == Some(&1)), "{done:?}");
}
