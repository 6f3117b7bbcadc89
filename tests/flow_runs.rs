//! Model incompressible end to end under real MPI: the same case on 1..4 ranks gives
//! bit-identical snapshots (reproducible reductions), a restart on another rank count
//! continues bit for bit, a blow-up stops with exit 3 and an intact checkpoint, and
//! the shipped flow cases run.
use std::path::PathBuf;

mod common;
use common::{assert_bitwise, assert_valid_run_dir as validate, run, scratch, snapshots, tessera_on};

fn tmp(tag: &str) -> PathBuf {
    scratch("flow", tag)
}

/// A small cavity with everything switched on: odd cell counts (uneven blocks), a
/// time-dependent lid, an inlet and an outlet, a body force, probes.
const CASE: &str = r#"
[case]
name = "flowinv"
model = "incompressible"
[mesh]
cells = [27, 19]
upper = [1.4, 1.0]
[physics]
viscosity = 0.02
body_force = ["0.2*y", "-0.1*x*t"]
[boundary]
xlo = { type = "inlet", velocity = ["4*y*(1-y)", 0] }
xhi = { type = "outlet", pressure = 0.0 }
ylo = { type = "wall" }
yhi = { type = "moving_wall", velocity = ["1 + 0.5*sin(t)", 0] }
[numerics.solver]
rtol = 1e-10
reproducible = true
[control]
max_steps = 40
[output]
every = 10
checkpoint_every = 20
[monitor]
probes = [[0.7, 0.5]]
"#;

#[test]
fn flow_is_bit_identical_on_1_to_4_ranks_in_reproducible_mode() {
    let d = tmp("inv");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE).unwrap();
    run(0, &case, &d.join("r0"), &[]);
    validate(&d.join("r0"));
    let reference = snapshots(&d.join("r0"));
    assert_eq!(reference.len(), 5 * 4, "snapshots at 0, 10, .., 40, four fields each");
    let last = reference.iter().rev().find(|s| s.0.ends_with("velocity_y")).unwrap();
    assert!(last.1.iter().any(|v| v.abs() > 1e-2), "non-trivial flow");
    for n in 1..=4 {
        let out = d.join(format!("r{n}"));
        run(n, &case, &out, &[]);
        assert_bitwise(&reference, &snapshots(&out), &format!("flow on {n} ranks"));
    }
}

#[test]
fn flow_restarts_on_another_rank_count_bit_for_bit() {
    let d = tmp("restart");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE).unwrap();
    let full = d.join("full");
    run(2, &case, &full, &[]);
    let reference = snapshots(&full);
    let ck = full.join("checkpoints/step_00000020.h5");
    assert!(ck.exists());
    run(3, &case, &d.join("cont"), &["--restart", ck.to_str().unwrap()]);
    let got = snapshots(&d.join("cont"));
    // Snapshots 20, 30, 40 (four fields each) match the uninterrupted run.
    assert_bitwise(&reference[8..], &got, "restart 2 -> 3 ranks");
    // In place, as a requeued job does, on 4 ranks.
    run(4, &case, &full, &["--restart", ck.to_str().unwrap()]);
    assert_bitwise(&reference, &snapshots(&full), "in-place restart on 4 ranks");
    validate(&full);
}

/// The Crank–Nicolson viscous term under real MPI: 4 ranks give the bits of 1, and a
/// restart from step 20 on 3 ranks continues the 2-rank run bit for bit (its state is
/// the velocity and the pressure, whose gradient the predictor reads across ranks).
#[test]
fn crank_nicolson_flow_is_bit_identical_across_ranks_and_restarts() {
    let d = tmp("cn");
    let case = d.join("case.toml");
    std::fs::write(&case, CASE.replace("[numerics.solver]", "[numerics]\nviscous = \"crank_nicolson\"\n[numerics.solver]")).unwrap();
    let one = d.join("r1");
    run(1, &case, &one, &[]);
    let reference = snapshots(&one);
    assert_eq!(reference.len(), 5 * 4);
    let four = d.join("r4");
    run(4, &case, &four, &[]);
    assert_bitwise(&reference, &snapshots(&four), "crank_nicolson on 4 ranks");
    let two = d.join("r2");
    run(2, &case, &two, &[]);
    assert_bitwise(&reference, &snapshots(&two), "crank_nicolson on 2 ranks");
    let ck = two.join("checkpoints/step_00000020.h5");
    run(3, &case, &d.join("cont"), &["--restart", ck.to_str().unwrap()]);
    assert_bitwise(&reference[8..], &snapshots(&d.join("cont")), "crank_nicolson restart 2 -> 3 ranks");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(two.join("summary.json")).unwrap()).unwrap();
    let viscous = summary["linear_solves"].as_array().unwrap().iter().find(|s| s["name"] == "viscous").expect("viscous solves reported");
    assert_eq!(viscous["solves"], 40 * 3 * 2, "two components, three stages, 40 steps: {viscous}");
    assert_eq!(viscous["not_converged"], 0, "{viscous}");
}

/// One projection per step (`numerics.projection = "final_stage"`) under real MPI:
/// 3 ranks give the bits of 1, a restart from step 20 on 4 ranks continues the 2-rank
/// run bit for bit (the step's pressure, the checkpointed state, is all the first two
/// stages read), and the run makes one pressure solve per step.
#[test]
fn final_stage_projection_is_bit_identical_across_ranks_and_restarts() {
    let d = tmp("final");
    let case = d.join("case.toml");
    let text =
        CASE.replace("[numerics.solver]", "[numerics]\nviscous = \"crank_nicolson\"\nprojection = \"final_stage\"\n[numerics.solver]");
    std::fs::write(&case, text).unwrap();
    let one = d.join("r1");
    run(1, &case, &one, &[]);
    let reference = snapshots(&one);
    assert_eq!(reference.len(), 5 * 4);
    let three = d.join("r3");
    run(3, &case, &three, &[]);
    assert_bitwise(&reference, &snapshots(&three), "final_stage on 3 ranks");
    let two = d.join("r2");
    run(2, &case, &two, &[]);
    assert_bitwise(&reference, &snapshots(&two), "final_stage on 2 ranks");
    let ck = two.join("checkpoints/step_00000020.h5");
    run(4, &case, &d.join("cont"), &["--restart", ck.to_str().unwrap()]);
    assert_bitwise(&reference[8..], &snapshots(&d.join("cont")), "final_stage restart 2 -> 4 ranks");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(two.join("summary.json")).unwrap()).unwrap();
    let pressure = summary["linear_solves"].as_array().unwrap().iter().find(|s| s["name"] == "pressure").expect("pressure solves reported");
    assert_eq!(pressure["solves"], 40, "one pressure solve per step: {pressure}");
    let resolved = std::fs::read_to_string(two.join("case.toml")).unwrap();
    assert!(resolved.contains("projection = \"final_stage\""), "{resolved}");
}

#[test]
fn a_blow_up_stops_with_exit_3_a_located_message_and_an_intact_checkpoint() {
    // A fixed step that is stable for the fluid at rest, and a force that accelerates
    // it without bound: the Courant number passes 2 within a few dozen steps.
    let d = tmp("diverge");
    let case = d.join("case.toml");
    let text = r#"
[case]
name = "blowup"
model = "incompressible"
[mesh]
cells = [16, 16]
periodic = [true, true]
[physics]
viscosity = 1e-4
body_force = ["20*sin(2*pi*y)", "20*sin(2*pi*x)"]
[numerics]
dt = 0.01
[control]
max_steps = 10000
[output]
checkpoint_every = 5
"#;
    std::fs::write(&case, text).unwrap();
    let out = d.join("run");
    let mut c = tessera_on(2);
    c.arg("run").arg(&case).arg("--out").arg(&out).arg("--quiet");
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("run diverged at step") && err.contains("velocity_") && err.contains(" at x="), "{err}");
    assert!(err.contains("Hint:") && err.contains("numerics.dt"), "{err}");
    assert!(err.contains("The last checkpoint,") && err.contains("is intact"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "diverged", "{summary}");
    let step = summary["steps"].as_u64().unwrap();
    assert!(step < 100, "stopped within a few steps of the blow-up, not at step {step}");
    // The last checkpoint is intact: it restarts on another rank count, with the
    // smaller step the hint asks for (the old one is refused up front at that state).
    let mut cks: Vec<_> = std::fs::read_dir(out.join("checkpoints")).unwrap().map(|e| e.unwrap().path()).collect();
    cks.sort();
    let last = cks.last().expect("a checkpoint before the blow-up").clone();
    assert!(last.extension().is_some_and(|e| e == "h5"), "{last:?}");
    let ck_step: u64 = last.file_stem().unwrap().to_str().unwrap()["step_".len()..].parse().unwrap();
    assert!(ck_step < step);
    run(
        3,
        &case,
        &d.join("cont"),
        &["--restart", last.to_str().unwrap(), "--set", "numerics.dt=0.002", "--set", &format!("control.max_steps={}", ck_step + 1)],
    );
}

/// The flow cases in cases/ run on 2 ranks (shortened) and write a valid RUN_DIR.
#[test]
fn shipped_flow_cases_run() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (name, steps) in
        [("cavity", 20), ("cavity_re400", 20), ("cavity_re1000", 20), ("taylor_green", 20), ("poiseuille", 20), ("cavity3d", 5)]
    {
        let d = tmp(name);
        let out = d.join("run");
        run(2, &root.join("cases").join(format!("{name}.toml")), &out, &["--set", &format!("control.max_steps={steps}")]);
        validate(&out);
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["status"], "completed", "{name}: {summary}");
        assert_eq!(summary["steps"], steps, "{name}");
    }
}
