//! End-to-end runs of the binary under real MPI: the same case on 1..4 ranks gives
//! bit-identical fields, restarts on another rank count continue bit for bit, and
//! `tessera run --np N` launches mpirun itself.
use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{assert_bitwise, assert_valid_run_dir as validate, read_file, run, scratch, snapshots, tessera_on, with_mpi_env};

const CASE_2D: &str = r#"
[case]
name = "inv2d"
model = "heat"
[mesh]
cells = [30, 22]
lower = [0.0, -1.0]
upper = [2.0, 1.0]
periodic = [true, false]
[physics]
diffusivity = 0.3
source = "sin(pi*x)*exp(-y*y)*(1 + t)"
[boundary]
ylo = { type = "dirichlet", value = "cos(pi*x)*t" }
yhi = { type = "neumann", gradient = "0.5*sin(pi*x)" }
[initial]
temperature = "exp(-((x-1)^2 + y^2)*4)"
[control]
max_steps = 40
[output]
every = 10
checkpoint_every = 20
"#;

const CASE_3D: &str = r#"
[case]
name = "inv3d"
model = "heat"
[mesh]
cells = [14, 12, 10]
periodic = [false, false, true]
[physics]
diffusivity = 1.0
source = "x*y"
[boundary]
xlo = { type = "dirichlet", value = "1" }
xhi = { type = "neumann", gradient = "-1" }
ylo = { type = "dirichlet", value = "y*z" }
yhi = { type = "dirichlet", value = "sin(pi*z)" }
[initial]
temperature = "x + 2*y + 3*z"
[control]
max_steps = 40
[output]
every = 10
checkpoint_every = 20
"#;

fn tmp(tag: &str) -> PathBuf {
    scratch("mpi", tag)
}

fn invariance(text: &str, tag: &str) {
    let d = tmp(tag);
    let case = d.join("case.toml");
    std::fs::write(&case, text).unwrap();
    run(0, &case, &d.join("r0"), &[]);
    let reference = snapshots(&d.join("r0"));
    assert_eq!(reference.len(), 5, "snapshots at 0, 10, 20, 30, 40");
    // Guard against a trivially constant field making the comparison vacuous.
    let last = &reference.last().unwrap().1;
    assert!(last.iter().any(|v| (v - last[0]).abs() > 1e-3));
    for n in 1..=4 {
        let out = d.join(format!("r{n}"));
        run(n, &case, &out, &[]);
        assert_bitwise(&reference, &snapshots(&out), &format!("{tag} on {n} ranks"));
    }
}

/// A poisson case with a variable coefficient, every boundary type, an odd cell count
/// (coarse-cell pairs straddle ranks) and small agglomeration, so several multigrid
/// levels are distributed.
const POISSON_2D: &str = r#"
[case]
name = "pinv2d"
model = "poisson"
[mesh]
cells = [97, 75]
lower = [0.0, 0.0]
upper = [1.5, 1.0]
periodic = [false, true]
[physics]
coefficient = "1 + 0.5*sin(2*pi*x)*cos(2*pi*y)"
source = "exp(-20*((x-0.7)^2 + (y-0.4)^2))"
[boundary]
xlo = { type = "dirichlet", value = "y*(1-y)" }
xhi = { type = "neumann", gradient = "0.25" }
[numerics.solver]
rtol = 1e-10
reproducible = true
agglomerate_below = 64
"#;

const POISSON_3D: &str = r#"
[case]
name = "pinv3d"
model = "poisson"
[mesh]
cells = [33, 30, 27]
[physics]
source = "x*y*z"
[boundary]
xlo = { type = "dirichlet", value = "0" }
xhi = { type = "dirichlet", value = "y" }
ylo = { type = "neumann", gradient = "1" }
yhi = { type = "neumann", gradient = "0" }
zlo = { type = "dirichlet", value = "x*z" }
zhi = { type = "neumann", gradient = "-x" }
[numerics.solver]
method = "cg1"
reproducible = true
agglomerate_below = 64
"#;

/// Reproducible reductions: the multigrid-CG solution is bit-identical on a
/// singleton and on 1..4 ranks.
fn poisson_invariance(text: &str, tag: &str) {
    let d = tmp(tag);
    let case = d.join("case.toml");
    std::fs::write(&case, text).unwrap();
    run(0, &case, &d.join("r0"), &[]);
    validate(&d.join("r0"));
    let reference = snapshots(&d.join("r0"));
    assert_eq!(reference.len(), 1);
    let phi = &reference[0].1;
    assert!(phi.iter().any(|v| (v - phi[0]).abs() > 1e-3), "non-trivial solution");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("r0/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["linear_solves"][0]["report"]["reason"], "converged_rtol", "{summary}");
    for n in 1..=4 {
        let out = d.join(format!("r{n}"));
        run(n, &case, &out, &[]);
        assert_bitwise(&reference, &snapshots(&out), &format!("{tag} on {n} ranks"));
    }
}

#[test]
fn poisson_is_bit_identical_on_1_to_4_ranks_in_reproducible_mode_2d() {
    poisson_invariance(POISSON_2D, "pinv2d");
}

#[test]
fn poisson_is_bit_identical_on_1_to_4_ranks_in_reproducible_mode_3d() {
    poisson_invariance(POISSON_3D, "pinv3d");
}

/// Without reproducible reductions the answers differ only by round-off.
#[test]
fn poisson_without_reproducible_mode_agrees_to_1e_12() {
    let d = tmp("pdefault");
    let case = d.join("case.toml");
    std::fs::write(&case, POISSON_2D.replace("reproducible = true", "reproducible = false")).unwrap();
    run(1, &case, &d.join("r1"), &[]);
    let reference = snapshots(&d.join("r1"));
    let scale = reference[0].1.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for n in 2..=4 {
        let out = d.join(format!("r{n}"));
        run(n, &case, &out, &[]);
        let other = snapshots(&out);
        let diff = reference[0].1.iter().zip(&other[0].1).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-12 * scale, "{n} ranks: max difference {diff:e} (scale {scale:e})");
    }
}

#[test]
fn same_answer_bit_for_bit_on_1_to_4_ranks_2d() {
    invariance(CASE_2D, "inv2d");
}

/// Crank–Nicolson heat with reproducible reductions: each step's multigrid-CG solve
/// gives the same bits on every rank count, and a restart on another rank count
/// continues bit for bit.
fn cn_case() -> String {
    format!("{CASE_2D}[numerics]\ntime_scheme = \"crank_nicolson\"\ndt = 0.01\n[numerics.solver]\nrtol = 1e-10\nreproducible = true\n")
}

#[test]
fn implicit_heat_is_bit_identical_on_1_to_4_ranks_in_reproducible_mode() {
    invariance(&cn_case(), "cn2d");
}

#[test]
fn implicit_heat_restarts_on_another_rank_count_bit_for_bit() {
    let d = tmp("cnrestart");
    let case = d.join("case.toml");
    std::fs::write(&case, cn_case()).unwrap();
    run(2, &case, &d.join("full"), &[]);
    validate(&d.join("full"));
    let ck = d.join("full/checkpoints/step_00000020.h5");
    run(3, &case, &d.join("cont"), &["--restart", ck.to_str().unwrap()]);
    let full = snapshots(&d.join("full"));
    let cont = snapshots(&d.join("cont"));
    let last = |v: &[(String, Vec<f64>)]| v.last().unwrap().clone();
    assert_bitwise(&[last(&full)], &[last(&cont)], "CN restart 2 -> 3 ranks");
}

#[test]
fn same_answer_bit_for_bit_on_1_to_4_ranks_3d() {
    invariance(CASE_3D, "inv3d");
}

#[test]
fn restart_on_other_rank_counts_is_bit_identical() {
    let d = tmp("restart");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE_3D).unwrap();
    let full = d.join("full");
    run(2, &case, &full, &[]);
    let reference = snapshots(&full);
    let ck20 = full.join("checkpoints/step_00000020.h5");
    assert!(ck20.exists() && full.join("checkpoints/step_00000040.h5").exists());

    // Restart from step 20 on 3 ranks into a new directory: snapshots 20..40 match.
    let other = d.join("other");
    run(3, &case, &other, &["--restart", ck20.to_str().unwrap()]);
    let got = snapshots(&other);
    assert_bitwise(&reference[2..], &got, "restart 2 -> 3 ranks");

    // Restart in place (as a requeued job does) on 4 ranks, then on 1: the run
    // directory ends up identical to the uninterrupted one.
    run(4, &case, &full, &["--restart", ck20.to_str().unwrap()]);
    assert_bitwise(&reference, &snapshots(&full), "in-place restart on 4 ranks");
    let monitor = std::fs::read_to_string(full.join("monitor.csv")).unwrap();
    assert_eq!(monitor.lines().count(), 41, "header + one row per step, no duplicates after restart");
    run(0, &case, &full, &["--restart", ck20.to_str().unwrap()]);
    assert_bitwise(&reference, &snapshots(&full), "in-place restart on 1 rank");
    // The checkpoint itself holds the same field as the snapshot of its step.
    let ck = read_file(&ck20);
    assert_bitwise(&reference[2..3], &ck, "checkpoint contents");
    validate(&full);

    // Restarting in place from an earlier checkpoint with a shorter horizon on another
    // rank count: the run directory describes this run only (header, decomposition,
    // no later snapshots or checkpoints), and passes the format validator.
    run(3, &case, &full, &["--restart", ck20.to_str().unwrap(), "--set", "control.max_steps=30"]);
    assert_bitwise(&reference[..4], &snapshots(&full), "shorter in-place restart");
    assert!(!full.join("checkpoints/step_00000040.h5").exists(), "abandoned checkpoint removed");
    validate(&full);
}

#[test]
fn np_option_launches_mpirun() {
    let d = tmp("np");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE_2D).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    with_mpi_env(&mut c).arg("run").arg("--np").arg("2").arg(&case).arg("--out").arg(d.join("out"));
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = std::fs::read_to_string(d.join("out/summary.json")).unwrap();
    assert!(summary.contains("\"ranks\": 2") && summary.contains("\"status\": \"completed\""), "{summary}");
    // Progress lines come from rank 0 only.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("completed: 40 steps").count(), 1, "{err}");
}

#[test]
fn sigterm_stops_cleanly_and_the_checkpoint_continues_bit_for_bit() {
    let d = tmp("signal");
    let case = d.join("case.toml");
    // Long enough to still be running when the signal arrives.
    std::fs::write(&case, CASE_2D.replace("max_steps = 40", "max_steps = 2000000").replace("every = 10", "every = 0")).unwrap();
    let stopped = d.join("stopped");
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    with_mpi_env(&mut c).arg("run").arg(&case).arg("--out").arg(&stopped).arg("--quiet");
    let child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until the time loop is running (monitor rows appear), then SIGTERM.
    let monitor = stopped.join("monitor.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&monitor).map(|m| m.lines().count() < 50).unwrap_or(true) {
        assert!(t0.elapsed().as_secs() < 60, "run did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("stopped by a signal") && err.contains("--restart"), "{err}");
    let summary = std::fs::read_to_string(stopped.join("summary.json")).unwrap();
    assert!(summary.contains("\"status\": \"stopped\""), "{summary}");
    // The stop step's checkpoint exists; continuing from it to a fixed step equals an
    // uninterrupted run to that step.
    let snaps = snapshots(&stopped);
    let stop_step: u64 = snaps.last().unwrap().0.split('/').next().unwrap().parse().unwrap();
    assert!(stop_step >= 49, "stopped at {stop_step}");
    let ck = stopped.join(format!("checkpoints/step_{stop_step:08}.h5"));
    assert!(ck.exists());
    let end = format!("control.max_steps={}", stop_step + 7);
    let cont = d.join("cont");
    run(2, &case, &cont, &["--restart", ck.to_str().unwrap(), "--set", &end]);
    let full = d.join("full");
    run(3, &case, &full, &["--set", &end]);
    let (a, b) = (snapshots(&cont), snapshots(&full));
    assert_bitwise(&a[a.len() - 1..], &b[b.len() - 1..], "continued after SIGTERM");
}

#[test]
fn divergence_stops_with_exit_3_a_located_message_and_an_intact_checkpoint() {
    // A source that grows like exp(400 t) drives the field past 1e150 after a few
    // hundred steps: the run must stop, say where, and keep its last checkpoint.
    let d = tmp("diverge");
    let case = d.join("case.toml");
    let text = CASE_2D
        .replace("source = \"sin(pi*x)*exp(-y*y)*(1 + t)\"", "source = \"exp(900*t)*(1 + x)\"")
        .replace("max_steps = 40", "max_steps = 100000")
        .replace("every = 10", "every = 0")
        .replace("checkpoint_every = 20", "checkpoint_every = 50");
    std::fs::write(&case, text).unwrap();
    let out = d.join("run");
    let mut c = tessera_on(2);
    c.arg("run").arg(&case).arg("--out").arg(&out).arg("--quiet");
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("run diverged at step") && err.contains("temperature =") && err.contains("at x="), "{err}");
    assert!(err.contains("The last checkpoint,") && err.contains("is intact"), "{err}");
    assert_eq!(err.matches("error: run diverged").count(), 1, "reported once, by rank 0: {err}");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"status\": \"diverged\""), "{summary}");
    // The last checkpoint is complete and restartable on another rank count.
    let mut cks: Vec<_> = std::fs::read_dir(out.join("checkpoints")).unwrap().map(|e| e.unwrap().path()).collect();
    cks.sort();
    let last = cks.last().expect("a checkpoint before the blow-up").clone();
    assert!(last.extension().is_some_and(|e| e == "h5"), "{last:?}");
    let step: u64 = last.file_stem().unwrap().to_str().unwrap()["step_".len()..].parse().unwrap();
    let cont = d.join("cont");
    run(3, &case, &cont, &["--restart", last.to_str().unwrap(), "--set", &format!("control.max_steps={}", step + 1)]);
}

#[test]
fn restart_into_a_directory_holding_another_mesh_is_refused_without_hanging() {
    let d = tmp("other-mesh");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE_2D).unwrap();
    let small = d.join("small");
    run(2, &case, &small, &[]);
    let big = d.join("big");
    run(2, &case, &big, &["--set", "mesh.cells=[30,44]"]);
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = ["output.h5", "case.toml", "monitor.csv", "summary.json"]
        .iter()
        .map(|f| (small.join(f), std::fs::read(small.join(f)).unwrap()))
        .collect();
    // The big run's checkpoint, restarted into the small run's directory, on 2 ranks
    // (where a rank-local failure inside a collective read used to hang).
    let ck = big.join("checkpoints/step_00000020.h5");
    let mut c = tessera_on(2);
    c.arg("run").arg(&case).args(["--set", "mesh.cells=[30,44]", "--quiet", "--restart"]).arg(&ck).arg("--out").arg(&small);
    let mut child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed().as_secs() > 60 {
            let _ = child.kill();
            panic!("restart into another mesh's directory hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("another mesh") && err.contains("--out"), "{err}");
    for (p, bytes) in before {
        assert!(std::fs::read(&p).unwrap() == bytes, "{} changed", p.display());
    }
}

#[test]
fn sigterm_to_the_np_launcher_stops_the_whole_job_cleanly() {
    let d = tmp("np-signal");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE_2D.replace("max_steps = 40", "max_steps = 2000000").replace("every = 10", "every = 0")).unwrap();
    let out = d.join("run");
    let mut c = with_mpi_env(&mut Command::new(common::EXE))
        .arg("run")
        .arg("--np")
        .arg("2")
        .arg(&case)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let monitor = out.join("monitor.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&monitor).map(|m| m.lines().count() < 50).unwrap_or(true) {
        assert!(t0.elapsed().as_secs() < 60, "run did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let status = c.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"status\": \"stopped\""), "{summary}");
    // No rank outlives the launcher.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = Command::new("pgrep").arg("-f").arg(out.to_str().unwrap()).output().unwrap();
    assert!(String::from_utf8_lossy(&ps.stdout).trim().is_empty(), "orphaned ranks: {}", String::from_utf8_lossy(&ps.stdout));
}

#[test]
fn a_run_that_fails_on_io_says_so_in_summary_json() {
    if !common::have_h5py() {
        eprintln!("NOTICE: no h5py; skipping");
        return;
    }
    let d = tmp("io-failure");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE_2D).unwrap();
    let out = d.join("run");
    run(2, &case, &out, &[]);
    // Damage output.h5: the step-10 snapshot's field gets the wrong shape.
    let py = "import h5py,sys\nf=h5py.File(sys.argv[1],'r+')\ndel f['snapshots/00000010/temperature']\nf['snapshots/00000010/temperature']=[[1.0,2.0],[3.0,4.0]]\n";
    let ok = Command::new(common::PYTHON).args(["-c", py]).arg(out.join("output.h5")).status().unwrap();
    assert!(ok.success());
    // Restarting in place must rebuild output.h5 from it, which fails: exit 3 and a
    // "failed" summary (not the previous run's "completed").
    let ck = out.join("checkpoints/step_00000020.h5");
    let mut c = tessera_on(2);
    c.arg("run").arg(&case).arg("--out").arg(&out).arg("--quiet").arg("--restart").arg(&ck);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"status\": \"failed\"") && summary.contains("too small for this mesh"), "{summary}");
}

/// A heat case where one rank takes two steps per pass (no periodic axis, a source
/// constant in time) while 2..4 ranks step one at a time: time-dependent Dirichlet and
/// Neumann faces, probes, and output and checkpoint steps that fall between pairs.
const PAIRED_3D: &str = r#"
[case]
name = "pair3d"
model = "heat"
[mesh]
cells = [20, 15, 12]
upper = [1.0, 1.5, 0.7]
[physics]
diffusivity = 0.1
source = "x*y + z"
[boundary]
xlo = { type = "dirichlet", value = "sin(3*t)*y" }
xhi = { type = "neumann", gradient = "0.5 + t*z" }
ylo = { type = "dirichlet", value = "1" }
yhi = { type = "neumann", gradient = "0" }
zlo = { type = "dirichlet", value = "x*t" }
zhi = { type = "neumann", gradient = "-0.2" }
[initial]
temperature = "sin(pi*x)*cos(y) + z"
[control]
max_steps = 41
[output]
every = 7
checkpoint_every = 5
[monitor]
probes = [[0.31, 0.72, 0.33], [0.9, 0.1, 0.6]]
"#;

/// The monitor's step and probe columns, as text (written with full precision).
fn probe_columns(run_dir: &std::path::Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(run_dir.join("monitor.csv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..head.len()).filter(|&i| head[i] == "step" || head[i].starts_with("probe")).collect();
    lines.map(|l| l.split(',').collect::<Vec<_>>()).map(|f| keep.iter().map(|&i| f[i].to_string()).collect()).collect()
}

/// Periodic in x, exchanged faces meeting physical ones with time-dependent values (the
/// rim ghosts of a pair), an uneven split on 3 ranks.
const PAIRED_2D: &str = r#"
[case]
name = "pair2d"
model = "heat"
[mesh]
cells = [23, 17]
upper = [2.0, 1.0]
periodic = [true, false]
[physics]
diffusivity = 0.2
source = "cos(pi*x)*y"
[boundary]
ylo = { type = "dirichlet", value = "sin(pi*x)*(1 + t)" }
yhi = { type = "neumann", gradient = "x*t - 0.3" }
[initial]
temperature = "sin(pi*x)*y + y*y"
[control]
max_steps = 33
[output]
every = 11
"#;

#[test]
fn two_steps_per_pass_equal_single_steps_bit_for_bit_on_1_to_4_ranks() {
    let d = tmp("paired");
    let single = ["--set", "numerics.steps_per_pass=1"];
    for (tag, text, snaps) in [("p2d", PAIRED_2D, 4), ("p3dper", CASE_3D, 5)] {
        let case = d.join(format!("{tag}.toml"));
        std::fs::write(&case, text).unwrap();
        run(0, &case, &d.join(format!("{tag}_single")), &single);
        let reference = snapshots(&d.join(format!("{tag}_single")));
        assert_eq!(reference.len(), snaps, "{tag}: snapshots");
        for n in 1..=4 {
            let out = d.join(format!("{tag}_r{n}"));
            run(n, &case, &out, &[]);
            assert_bitwise(&reference, &snapshots(&out), &format!("{tag}: two steps per pass on {n} ranks"));
        }
    }
    let case = d.join("case.toml");
    std::fs::write(&case, PAIRED_3D).unwrap();
    run(0, &case, &d.join("single"), &single);
    run(0, &case, &d.join("r0"), &[]);
    let reference = snapshots(&d.join("single"));
    let probes = probe_columns(&d.join("single"));
    assert_eq!(reference.len(), 7, "snapshots at 0, 7, ..., 35 and 41");
    assert_eq!(probes.len(), 41);
    assert_bitwise(&reference, &snapshots(&d.join("r0")), "paired case on 1 rank");
    assert_eq!(probe_columns(&d.join("r0")), probes, "probe values on 1 rank");
    for n in 2..=4 {
        let out = d.join(format!("r{n}"));
        run(n, &case, &out, &[]);
        assert_bitwise(&reference, &snapshots(&out), &format!("paired case on {n} ranks"));
        assert_eq!(probe_columns(&out), probes, "probe values on {n} ranks");
    }
    // From a checkpoint at an odd step, on one rank: the pairs fall one step later.
    let ck = d.join("r2/checkpoints/step_00000015.h5");
    run(0, &case, &d.join("cont"), &["--restart", ck.to_str().unwrap()]);
    let last = |v: &[(String, Vec<f64>)]| v.last().unwrap().clone();
    assert_bitwise(&[last(&reference)], &[last(&snapshots(&d.join("cont")))], "restart from step 15 on one rank");
    // A steady state reached at the step between a pair: the pair is taken back and
    // the run stops at that step, as on 2 ranks.
    let steady = PAIRED_3D
        .replace("sin(3*t)*y", "y")
        .replace("0.5 + t*z", "0.5")
        .replace("x*t", "x")
        .replace("max_steps = 41", "steady_tolerance = 0.0101\nend_time = 50.0")
        .replace("every = 7\ncheckpoint_every = 5", "every = 0");
    let case = d.join("steady.toml");
    std::fs::write(&case, steady).unwrap();
    run(0, &case, &d.join("s1"), &[]);
    run(2, &case, &d.join("s2"), &single);
    let (p1, p2) = (probe_columns(&d.join("s1")), probe_columns(&d.join("s2")));
    assert_eq!(p1, p2, "steady stop: same steps and probes");
    assert!(p1.len() % 2 == 1, "the steady step should be odd, so that a pair is taken back ({} steps)", p1.len());
    assert_bitwise(&snapshots(&d.join("s1")), &snapshots(&d.join("s2")), "steady stop");
    // The same taken back across exchanged faces, on 3 ranks.
    run(3, &case, &d.join("s3"), &[]);
    assert_eq!(probe_columns(&d.join("s3")), p1, "steady stop on 3 ranks, paired");
    assert_bitwise(&snapshots(&d.join("s1")), &snapshots(&d.join("s3")), "steady stop on 3 ranks, paired");
}

/// Threads inside ranks (`decomposition.threads_per_rank`): each rank's block is cut
/// into parts along its slowest axis, one per thread, and the fields are the same bits
/// as with one thread, for pairs of steps (the 3D case: constant source and
/// boundaries) and for single steps split around the halo exchange (the 2D case: a
/// time-dependent source), on 1 to 3 ranks. The meshes are refined so that every
/// rank's block has at least two parts' worth of cells (32 Ki cells a part) on 3 ranks.
#[test]
fn threads_inside_ranks_give_the_same_bits_as_one_thread() {
    let d = tmp("threads");
    let cases = [
        ("t3d", CASE_3D.replace("cells = [14, 12, 10]", "cells = [80, 60, 48]")),
        ("t2d", CASE_2D.replace("cells = [30, 22]", "cells = [480, 420]")),
    ];
    for (tag, text) in cases {
        let case = d.join(format!("{tag}.toml"));
        std::fs::write(&case, text).unwrap();
        run(0, &case, &d.join(format!("{tag}_ref")), &[]);
        let reference = snapshots(&d.join(format!("{tag}_ref")));
        assert_eq!(reference.len(), 5, "{tag}: snapshots at 0, 10, 20, 30, 40");
        for (n, threads) in [(0, 2), (1, 3), (2, 2), (3, 2)] {
            let out = d.join(format!("{tag}_r{n}_t{threads}"));
            run(n, &case, &out, &["--set", &format!("decomposition.threads_per_rank={threads}")]);
            validate(&out);
            let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
            assert_eq!(summary["threads_per_rank"], threads, "{tag}: summary.json records the threads");
            assert_bitwise(&reference, &snapshots(&out), &format!("{tag}: {threads} threads on {n} rank(s)"));
        }
    }
}
