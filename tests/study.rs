//! `tessera study` end to end on small heat cases: a sweep with quantities of
//! interest, retry classes (a diverging run is an application result, a failing
//! launcher a system failure), and crash safety: the orchestrator killed with SIGKILL
//! at random moments, then resumed, runs every point exactly once.
mod common;

use common::{scratch, with_mpi_env, EXE};
use orchestrate::journal::Journal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// A sine mode decaying on the unit square: peak(t) = exp(-2 pi^2 D t) up to O(h^2).
fn heat_case(dir: &Path) -> PathBuf {
    write(
        &dir.join("heat.toml"),
        r#"[case]
name = "decay"
model = "heat"
[mesh]
cells = [32, 32]
lower = [0.0, 0.0]
upper = [1.0, 1.0]
[physics]
diffusivity = 0.1
[boundary]
xlo = { type = "dirichlet", value = "0" }
xhi = { type = "dirichlet", value = "0" }
ylo = { type = "dirichlet", value = "0" }
yhi = { type = "dirichlet", value = "0" }
[initial]
temperature = "sin(pi*x)*sin(pi*y)"
[control]
end_time = 0.02
[output]
every = 0
"#,
    )
}

fn peak_pipeline(dir: &Path) -> PathBuf {
    write(
        &dir.join("q.toml"),
        "[[output]]\nname = \"q\"\nkind = \"scalars\"\nvalues = { peak = \"max(temperature)\", time = \"tlast(t)\" }\n",
    )
}

fn tessera(args: &[&str]) -> Command {
    let mut c = Command::new(EXE);
    c.args(args);
    with_mpi_env(&mut c);
    c
}

fn out(mut c: Command) -> Output {
    c.output().expect("start tessera")
}

fn results(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("results.csv")).unwrap().lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

#[test]
fn a_sweep_runs_every_point_and_reports_its_quantities() {
    let d = scratch("study", "sweep");
    heat_case(&d);
    peak_pipeline(&d);
    let s = write(
        &d.join("s.toml"),
        "[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\nranks_per_run = 1\nmax_parallel = 2\n[parameters]\n\"physics.diffusivity\" = { values = [0.05, 0.1, 0.2, 0.4] }\n[quantities]\npipeline = \"q.toml\"\n",
    );
    let dir = d.join("study");
    let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap()]));
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("4 done, 0 failed"), "live progress");
    let rows = results(&dir);
    assert_eq!(rows[0], ["run", "state", "attempts", "class", "seconds", "physics.diffusivity", "peak", "time"]);
    assert_eq!(rows.len(), 5);
    for r in &rows[1..] {
        assert_eq!((r[1].as_str(), r[2].as_str()), ("done", "1"), "{r:?}");
        let (dif, peak, t): (f64, f64, f64) = (r[5].parse().unwrap(), r[6].parse().unwrap(), r[7].parse().unwrap());
        // The discrete decay rate differs from 2 pi^2 D by O(h^2) = 0.1 %; the peak
        // cell centre sits h/2 off the maximum (a factor cos^2(pi h / 2) ~ 0.998).
        let exact = (-2.0 * std::f64::consts::PI.powi(2) * dif * t).exp();
        assert!((peak / exact - 1.0).abs() < 5e-3, "D = {dif}: peak {peak} vs {exact}");
        assert!((t - 0.02).abs() < 1e-12);
    }
    assert!(dir.join("results.png").exists());
    let st = out(tessera(&["study", "status", dir.to_str().unwrap()]));
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("4 done, 0 failed, 0 running, 0 queued"),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    // A second `run` into the same directory is refused; `results` rewrites the table.
    let again = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap()]));
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("study resume"));
    let res = out(tessera(&["study", "results", dir.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&res.stdout).lines().count() == 5);
}

#[test]
fn bad_studies_are_refused_before_anything_runs() {
    let d = scratch("study", "bad");
    heat_case(&d);
    let cases = [
        ("[study]\ncase = \"heat.toml\"\nkind = \"swep\"\n", "3:8", "did you mean `sweep`"),
        ("[study]\ncase = \"nope.toml\"\nkind = \"sweep\"\n", "2:8", "no such case file"),
        ("[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\n[parameters]\n\"physics.difusivity\" = { values = [1.0] }\n", "", "difusivity"),
        (
            "[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\n[parameters]\n\"physics.diffusivity\" = { values = [1.0, -1.0] }\n",
            "",
            "1 of 2 points are refused",
        ),
        ("[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\nretries = { sytem = 1 }\n", "4:11", "did you mean `system`"),
    ];
    for (k, (text, at, want)) in cases.iter().enumerate() {
        let s = write(&d.join(format!("bad{k}.toml")), text);
        let dir = d.join(format!("dir{k}"));
        let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap()]));
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {k}: {e}");
        assert!(e.contains(want) && e.contains(&format!("bad{k}.toml:{at}")), "case {k}: {e}");
        assert!(!dir.join("journal.sqlite").exists(), "case {k}: nothing is recorded for a refused study");
    }
}

#[test]
fn a_diverging_run_is_not_retried_and_a_failing_launcher_is_retried_to_the_limit() {
    let d = scratch("study", "retries");
    // The second body force accelerates the fluid without bound: the run diverges.
    write(
        &d.join("flow.toml"),
        "[case]\nname = \"f\"\nmodel = \"incompressible\"\n[mesh]\ncells = [16, 16]\nperiodic = [true, true]\n[physics]\nviscosity = 1e-4\n[numerics]\ndt = 0.01\n[control]\nmax_steps = 200\n",
    );
    let s = write(
        &d.join("s.toml"),
        "[study]\ncase = \"flow.toml\"\nkind = \"sweep\"\nretries = 2\n[parameters]\n\"physics.body_force\" = { values = [[\"0\", \"0\"], [\"20*sin(2*pi*y)\", \"20*sin(2*pi*x)\"]] }\n",
    );
    let dir = d.join("study");
    let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]));
    assert_eq!(o.status.code(), Some(3), "a study with a failed run exits 3: {}", String::from_utf8_lossy(&o.stderr));
    let rows = results(&dir);
    assert_eq!(&rows[1][1..4], ["done", "1", ""]);
    assert_eq!(&rows[2][1..4], ["failed", "1", "diverged"], "diverged once, not retried");

    // A broken MPI launcher: every attempt fails before the solver starts.
    heat_case(&d);
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = write(&bin.join("mpirun"), "#!/bin/sh\necho 'mpirun: cannot start (test double)' >&2\nexit 1\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = write(
        &d.join("l.toml"),
        "[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\nranks_per_run = 2\nslots = 2\nretries = { system = 2 }\n",
    );
    let dir = d.join("launch");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]);
    c.env("PATH", path);
    let o = out(c);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = results(&dir);
    assert_eq!(&rows[1][1..4], ["failed", "3", "system"], "1 attempt + 2 retries: {rows:?}");
    let log = std::fs::read_to_string(dir.join("runs/run_0000.log")).unwrap();
    assert_eq!(log.matches("test double").count(), 3, "{log}");
}

/// A deterministic pseudo-random delay for trial `k`.
/// Starts `tessera ARGS` and kills it with SIGKILL (no clean-up of any kind) after `wait`.
fn kill_after(args: &[&str], wait: Duration) {
    let mut child = tessera(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(wait);
    let _ = child.kill();
    let _ = child.wait();
}

fn delay(k: u64) -> Duration {
    let x = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) >> 33;
    Duration::from_millis(50 + x % 1500)
}

#[test]
fn twenty_kill_9_trials_then_resume_run_every_point_exactly_once() {
    let d = scratch("study", "crash");
    heat_case(&d);
    peak_pipeline(&d);
    let s = write(
        &d.join("s.toml"),
        "[study]\ncase = \"heat.toml\"\nkind = \"sweep\"\nmax_parallel = 2\n[parameters]\n\"physics.diffusivity\" = { values = [0.05, 0.1, 0.15, 0.2, 0.3] }\n[quantities]\npipeline = \"q.toml\"\n",
    );
    for trial in 0..20u64 {
        let dir = d.join(format!("t{trial}"));
        kill_after(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"], delay(trial));
        // Every other trial kills the first resume as well.
        if trial % 2 == 1 && dir.join("journal.sqlite").exists() {
            kill_after(&["study", "resume", dir.to_str().unwrap(), "-q"], delay(trial + 100));
        }
        if !dir.join("journal.sqlite").exists() {
            // Killed before the journal existed: nothing was recorded, start again.
            let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]));
            assert!(o.status.success(), "trial {trial}: {}", String::from_utf8_lossy(&o.stderr));
        } else {
            let o = out(tessera(&["study", "resume", dir.to_str().unwrap(), "-q"]));
            assert!(o.status.success(), "trial {trial}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let rows = results(&dir);
        assert_eq!(rows.len(), 6, "trial {trial}: {rows:?}");
        assert!(rows[1..].iter().all(|r| r[1] == "done" && !r[6].is_empty()), "trial {trial}: {rows:?}");
        let j = Journal::open(&dir.join("journal.sqlite")).unwrap();
        let launched = j.event_counts("launching").unwrap();
        let requeued = j.event_counts("requeued").unwrap();
        let started = j.event_counts("started").unwrap();
        let done = j.event_counts("done").unwrap();
        // Every launch is accounted for: one, plus one per journaled retry (a real
        // system failure, e.g. Open MPI's singleton start losing a race on its session
        // directory, is retried by design), plus one per launch that was re-queued
        // because its process never started. A crash never runs a run twice: a process
        // that was started is adopted, even when the crash came before its pid was
        // journaled (then it has no "started" event).
        let retried = j.event_counts("queued").unwrap();
        let count = |m: &std::collections::BTreeMap<i64, i64>, id: i64| m.get(&id).copied().unwrap_or(0);
        for id in 0..5 {
            assert_eq!(count(&done, id), 1, "trial {trial}: run {id} finished {} times", count(&done, id));
            let processes = count(&launched, id) - count(&requeued, id);
            assert_eq!(
                processes,
                1 + count(&retried, id),
                "trial {trial}: run {id}: {} launches, {} re-queued, {} retries",
                count(&launched, id),
                count(&requeued, id),
                count(&retried, id)
            );
            assert!(count(&started, id) <= processes, "trial {trial}: run {id}");
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The domain mean of sin(pi x) sin(pi y) exp(-2 pi^2 D t) on the unit square.
fn exact_mean(d: f64, t: f64) -> f64 {
    let pi = std::f64::consts::PI;
    4.0 / (pi * pi) * (-2.0 * pi * pi * d * t).exp()
}

#[test]
fn a_convergence_study_refines_until_the_gci_target_and_its_band_holds_the_exact_value() {
    let d = scratch("study", "convergence");
    heat_case(&d);
    write(&d.join("q.toml"), "[[output]]\nname = \"q\"\nkind = \"scalars\"\nvalues = { mean = \"mean(temperature)\" }\n");
    let study = |target: &str, levels: usize| {
        format!("[study]\ncase = \"heat.toml\"\nkind = \"convergence\"\nmax_parallel = 2\n[convergence]\ncells = [8, 8]\nratio = 2\nquantity = \"mean\"\ngci_target = {target}\nmax_levels = {levels}\n[quantities]\npipeline = \"q.toml\"\n")
    };
    // 1 % is met by the first triple (8², 16², 32²: GCI_fine about 0.09 %).
    let s = write(&d.join("c.toml"), &study("0.001", 5));
    let dir = d.join("c");
    let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("converged: GCI_fine") && stdout.contains("apparent order p"), "{stdout}");
    let c = json(&dir.join("convergence.json"));
    assert_eq!(c["levels"].as_array().unwrap().len(), 3, "three levels suffice: {c:#}");
    assert_eq!(c["levels"][2]["cells"], serde_json::json!([32, 32]));
    let g = &c["gci"][0]["result"];
    let (p, ext, gci) = (g["p"].as_f64().unwrap(), g["extrapolated"].as_f64().unwrap(), g["gci_fine"].as_f64().unwrap());
    let fine = c["levels"][2]["value"].as_f64().unwrap();
    let exact = exact_mean(0.1, 0.02);
    // Second order in space, and in time too (the explicit step scales with h²).
    assert!((p - 2.0).abs() < 0.15, "observed order {p}");
    // The GCI is an error band on the fine value (Celik et al. 2008): the exact mean
    // lies inside it ...
    assert!((fine - exact).abs() <= gci * fine.abs(), "|{fine} - {exact}| > GCI {gci}");
    // ... and Richardson extrapolation removes most of the O(h²) error (here about 12x;
    // 5x leaves room for the higher-order terms on these coarse grids).
    assert!((ext - exact).abs() * 5.0 < (fine - exact).abs(), "extrapolated {ext}, fine {fine}, exact {exact}");
    assert!(dir.join("convergence.png").exists());
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.lines().nth(1).unwrap().contains(",\"[8, 8]\","), "a mesh is one quoted CSV cell: {csv}");

    // A target beyond reach at the finest level allowed: reported, and exit 3.
    let s = write(&d.join("n.toml"), &study("1e-7", 4));
    let dir = d.join("n");
    let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("not converged") && stdout.contains("max_levels"), "{stdout}");
    let c = json(&dir.join("convergence.json"));
    assert_eq!(c["levels"].as_array().unwrap().len(), 4);
    assert_eq!(c["gci"].as_array().unwrap().len(), 2, "one GCI per triple of consecutive levels");
    assert_eq!(c["goal_met"], serde_json::json!(false));
}

fn adaptive_study(d: &Path, name: &str, extra: &str, max_parallel: usize, max_runs: usize) -> PathBuf {
    write(
        &d.join(name),
        &format!("[study]\ncase = \"heat.toml\"\nkind = \"adaptive\"\nmax_parallel = {max_parallel}\n[parameters]\n\"physics.diffusivity\" = {{ between = [0.01, 1.0], scale = \"log\" }}\n{extra}[adaptive]\nquantity = \"peak\"\nloss_goal = 1e-6\nmax_runs = {max_runs}\n[quantities]\npipeline = \"q.toml\"\n"),
    )
}

/// (diffusivity, peak) of every completed run of an adaptive study.
fn adaptive_points(dir: &Path) -> Vec<(f64, f64)> {
    let a = json(&dir.join("adaptive.json"));
    a["points"].as_array().unwrap().iter().map(|p| (p["at"][0].as_f64().unwrap(), p["value"].as_f64().unwrap())).collect()
}

#[test]
fn an_adaptive_study_samples_a_response_curve_and_each_run_gets_its_point() {
    let d = scratch("study", "adaptive");
    heat_case(&d);
    peak_pipeline(&d);
    let s = adaptive_study(&d, "a.toml", "", 2, 10);
    let dir = d.join("a");
    let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("the budget of 10 runs is used"), "{stdout}");
    let pts = adaptive_points(&dir);
    assert_eq!(pts.len(), 10);
    assert_eq!((pts[0].0, pts[9].0), (0.01, 1.0), "the bounds exactly as given");
    // Each run was given its own diffusivity: the peak follows the analytic decay
    // c exp(-2 pi^2 D t) of the 32² grid's hottest cell, c = cos²(pi/64). The
    // discrete decay rate differs by (pi h)²/12 relatively, so at most 0.1 % here.
    let c = (std::f64::consts::PI / 64.0).cos().powi(2);
    for (dv, peak) in &pts {
        let want = c * (-2.0 * std::f64::consts::PI.powi(2) * dv * 0.02).exp();
        assert!((peak / want - 1.0).abs() < 1e-3, "D = {dv}: peak {peak}, analytic {want}");
    }
    // On the log axis the points are spread: no interval is more than a third of it.
    let u: Vec<f64> = pts.iter().map(|p| p.0.ln()).collect();
    let widest = u.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(widest < (1.0f64 / 0.01).ln() / 3.0, "{u:?}");
    assert!(dir.join("adaptive.png").exists());

    // Two parameters: a triangulation of the box, the initial design first.
    let s = adaptive_study(&d, "b.toml", "\"control.end_time\" = { between = [0.01, 0.03] }\n", 2, 7);
    let dir = d.join("b");
    let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]));
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let a = json(&dir.join("adaptive.json"));
    assert_eq!(a["points"].as_array().unwrap().len(), 7);
    assert!(dir.join("adaptive.png").exists() && dir.join("adaptive_points.png").exists());
}

#[test]
fn an_adaptive_study_killed_and_resumed_proposes_the_same_points_as_an_uninterrupted_one() {
    let d = scratch("study", "adaptive-crash");
    heat_case(&d);
    peak_pipeline(&d);
    // One run at a time makes the sequence of asks and tells, hence the points, a
    // function of the results alone.
    let s = adaptive_study(&d, "a.toml", "", 1, 7);
    let reference = d.join("reference");
    let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", reference.to_str().unwrap(), "-q"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = adaptive_points(&reference);
    for trial in 0..3u64 {
        let dir = d.join(format!("t{trial}"));
        kill_after(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"], Duration::from_millis(700 + 900 * trial));
        let args = if dir.join("journal.sqlite").exists() {
            vec!["study", "resume", dir.to_str().unwrap(), "-q"]
        } else {
            vec!["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "-q"]
        };
        let o = out(tessera(&args));
        assert!(o.status.success(), "trial {trial}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(adaptive_points(&dir), want, "trial {trial}");
        let done = Journal::open(&dir.join("journal.sqlite")).unwrap().event_counts("done").unwrap();
        assert!(done.len() == 7 && done.values().all(|&n| n == 1), "trial {trial}: {done:?}");
    }
}

#[test]
fn bad_convergence_and_adaptive_studies_are_refused_with_their_location() {
    let d = scratch("study", "bad-kinds");
    heat_case(&d);
    peak_pipeline(&d);
    let conv = "[study]\ncase = \"heat.toml\"\nkind = \"convergence\"\n[convergence]\ncells = [8, 8]\nquantity = \"peak\"\ngci_target = 0.01\n[quantities]\npipeline = \"q.toml\"\n";
    let adap = "[study]\ncase = \"heat.toml\"\nkind = \"adaptive\"\n[parameters]\n\"physics.diffusivity\" = { between = [0.01, 1.0] }\n[adaptive]\nquantity = \"peak\"\nloss_goal = 0.01\nmax_runs = 10\n[quantities]\npipeline = \"q.toml\"\n";
    let cases = [
        (conv.replace("quantity = \"peak\"", "quantity = \"peek\""), "6:12", "did you mean `peak`"),
        (conv.replace("gci_target = 0.01", "gci_target = 5"), "7:14", "not in (0, 1)"),
        (conv.replace("cells = [8, 8]", "cells = [8, 8]\nratio = 1.01"), "6:9", "same mesh"),
        (
            conv.replace("[quantities]", "[parameters]\n\"physics.diffusivity\" = { values = [1.0] }\n[quantities]"),
            "9:1",
            "takes no [parameters]",
        ),
        (conv.replace("gci_target = 0.01\n", "gci_target = 0.01\nmax_levels = 2\n"), "8:14", "not in 3..=12"),
        (conv.replace("[quantities]\npipeline = \"q.toml\"\n", ""), "1:1", "needs [quantities]"),
        (adap.replace("between = [0.01, 1.0]", "values = [0.1]"), "5:1", "samples `between` ranges"),
        (adap.replace("max_runs = 10", "max_runs = 1"), "9:12", "initial design"),
        (
            adap.replace("[adaptive]", "[convergence]\ncells = [8]\nquantity = \"peak\"\ngci_target = 0.1\n[adaptive]"),
            "6:1",
            "belongs to kind = \"convergence\"",
        ),
    ];
    for (k, (text, at, want)) in cases.iter().enumerate() {
        let s = write(&d.join(format!("bad{k}.toml")), text);
        let dir = d.join(format!("dir{k}"));
        let o = out(tessera(&["study", "run", s.to_str().unwrap(), "--dir", dir.to_str().unwrap()]));
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {k}: {e}");
        assert!(e.contains(want) && e.contains(&format!("bad{k}.toml:{at}")), "case {k}: {e}");
        assert!(!dir.join("journal.sqlite").exists(), "case {k}");
    }
}
