//! Model incompressible against analytic and published solutions, in process
//! (ThreadComm ranks):
//! - Taylor–Green vortex (exact decaying solution): second order in space;
//! - Poiseuille channel, driven by a body force or by an inlet and an outlet: the
//!   parabola is reproduced to 1e-8 (the discretisation is exact for it, so only the
//!   steady-state and solver tolerances remain);
//! - lid-driven cavity at Re = 100 against Ghia, Ghia & Shin (1982) and the
//!   high-resolution extrema of Bruneau & Saad (2006);
//! - the same case on 1..4 ranks: bit-identical with reproducible reductions, and
//!   within 1e-10 without.
use decomp::comm::ThreadComm;
use decomp::Comm;
use solver::case::Case;
use solver::flow::FlowSolver;
use solver::flow_run::choose_dt;
use std::f64::consts::PI;

fn load(tag: &str, text: &str, sets: &[String]) -> Case {
    // Tests run in parallel and may load the same text: one directory per call.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tessera-flow-{}-{tag}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("case.toml");
    std::fs::write(&path, text).unwrap();
    solver::case::load(&path, sets).unwrap()
}

/// One owned face value: (component, global face index, position, value).
type FaceValue = (usize, [usize; 3], [f64; 3], f64);

/// Every face this rank updates, plus the pressure as component 3 at cell centres.
fn faces(case: &Case, s: &FlowSolver) -> Vec<FaceValue> {
    let g = &case.grid;
    let h = g.spacing();
    let dims = g.dims;
    let mut out = Vec::new();
    for (d, f) in s.vel.iter().enumerate().chain(std::iter::once((3, &s.p))) {
        let lo = f.block.lo;
        for ((k, j, i), v) in f.interior().indexed_iter() {
            let gi = [lo[0] + i, lo[1] + j, lo[2] + k];
            if d < 3 && gi[d] == 0 && !g.periodic[d] {
                continue; // a boundary face: set by the boundary condition
            }
            let mut pos = [0.0; 3];
            for a in 0..dims {
                pos[a] = g.lower[a] + h[a] * (gi[a] as f64 + if a == d { 0.0 } else { 0.5 });
            }
            out.push((d, gi, pos, *v));
        }
    }
    out
}

/// Runs `case` on `ranks` ThreadComm ranks to `end` (or until max|du/dt| < `steady`),
/// with the automatic step; returns every face value, sorted, and the steps taken.
fn solve(case: &Case, ranks: usize, end: f64, steady: f64) -> (Vec<FaceValue>, u64) {
    let res = ThreadComm::run(ranks, |c| {
        let layout = solver::run::layout_for(case, c.size()).unwrap();
        let mut s = FlowSolver::new(c, case, layout).unwrap();
        s.prepare(c, 0.0);
        let (mut t, mut steps) = (0.0, 0u64);
        while t < end * (1.0 - 1e-12) {
            let dt = choose_dt(case, s.courant_rate(c)).min(end - t);
            let st = s.step(c, t, dt);
            t = if end - t <= dt { end } else { t + dt };
            steps += 1;
            let mut ch = [st.max_change];
            c.allreduce_f64(&mut ch, decomp::ReduceOp::Max);
            assert!(ch[0].is_finite(), "blew up at step {steps}");
            if ch[0] / dt < steady {
                break;
            }
        }
        (faces(case, &s), steps)
    });
    let steps = res[0].1;
    let mut all: Vec<FaceValue> = res.into_iter().flat_map(|r| r.0).collect();
    all.sort_by_key(|f| (f.0, f.1[2], f.1[1], f.1[0]));
    (all, steps)
}

const TAYLOR_GREEN: &str = r#"
[case]
name = "tg"
model = "incompressible"
[mesh]
cells = [16, 16]
upper = [6.283185307179586, 6.283185307179586]
periodic = [true, true]
[physics]
viscosity = 0.1
[initial]
velocity_x = "sin(x)*cos(y)"
velocity_y = "-cos(x)*sin(y)"
[numerics]
cfl = 0.5
[numerics.solver]
rtol = 1e-12
[control]
end_time = 1.0
"#;

const CN: &str = "numerics.viscous=\"crank_nicolson\"";
/// The two values of `numerics.projection`.
const PROJECTIONS: [&str; 2] = ["every_stage", "final_stage"];
const EXPLICIT: &str = "numerics.viscous=\"explicit\"";

/// Max velocity error of the Taylor–Green vortex at t = 1 on an n² grid (`cn`: the
/// Crank–Nicolson viscous term).
fn taylor_green_error(n: usize, ranks: usize, cn: bool) -> f64 {
    let mut sets = vec![format!("mesh.cells=[{n},{n}]")];
    if cn {
        sets.extend([CN.to_string(), "numerics.viscous_rtol=1e-12".into()]);
    }
    let case = load(&format!("tg{n}{cn}"), TAYLOR_GREEN, &sets);
    let (f, _) = solve(&case, ranks, 1.0, 0.0);
    let decay = (-2.0 * 0.1 * 1.0f64).exp();
    f.iter()
        .filter(|v| v.0 < 2)
        .map(|(d, _, p, v)| {
            let exact = if *d == 0 { p[0].sin() * p[1].cos() } else { -p[0].cos() * p[1].sin() } * decay;
            (v - exact).abs()
        })
        .fold(0.0, f64::max)
}

/// Observed orders on 16², 32², 64² (2 ranks) are at least 1.9.
fn assert_second_order(cn: bool) {
    let e: Vec<f64> = [16, 32, 64].iter().map(|&n| taylor_green_error(n, 2, cn)).collect();
    let p1 = (e[0] / e[1]).log2();
    let p2 = (e[1] / e[2]).log2();
    assert!(e[2] < 2e-3, "error on 64²: {e:?} (crank_nicolson {cn})");
    assert!(p1 >= 1.9 && p2 >= 1.9, "observed orders {p1:.3}, {p2:.3} (errors {e:?}, crank_nicolson {cn})");
}

#[test]
fn taylor_green_vortex_converges_at_second_order() {
    assert_second_order(false);
}

/// The same with the Crank–Nicolson viscous term: the step follows the Courant
/// number alone (dt ∝ h), and the scheme stays second order in space and time.
#[test]
fn taylor_green_vortex_with_crank_nicolson_converges_at_second_order() {
    assert_second_order(true);
}

/// The vortex in the y-z plane of a 3D periodic box (w and v carry it, u stays 0):
/// the 3D code paths give the 2D answer, with either viscous scheme.
#[test]
fn taylor_green_vortex_in_3d_matches_the_analytic_decay() {
    taylor_green_3d(false);
    taylor_green_3d(true);
}

fn taylor_green_3d(cn: bool) {
    let text = TAYLOR_GREEN
        .replace("cells = [16, 16]", "cells = [4, 24, 24]")
        .replace("upper = [6.283185307179586, 6.283185307179586]", "upper = [1.0, 6.283185307179586, 6.283185307179586]")
        .replace("periodic = [true, true]", "periodic = [true, true, true]")
        .replace("velocity_x = \"sin(x)*cos(y)\"", "velocity_y = \"sin(y)*cos(z)\"")
        .replace("velocity_y = \"-cos(x)*sin(y)\"", "velocity_z = \"-cos(y)*sin(z)\"");
    let sets: Vec<String> = if cn { vec![CN.into(), "numerics.viscous_rtol=1e-12".into()] } else { vec![] };
    let case = load("tg3d", &text, &sets);
    let (f, _) = solve(&case, 3, 1.0, 0.0);
    let decay = (-0.2f64).exp();
    let mut err = 0.0f64;
    for (d, _, p, v) in f.iter().filter(|v| v.0 < 3) {
        let exact = match d {
            0 => 0.0,
            1 => p[1].sin() * p[2].cos() * decay,
            _ => -p[1].cos() * p[2].sin() * decay,
        };
        err = err.max((v - exact).abs());
    }
    // The 2D 24² error is about 1.3e-2 × (16/24)² ≈ 6e-3 at this resolution.
    let e2d = taylor_green_error(24, 1, cn);
    assert!(err < 1.05 * e2d + 1e-12, "3D error {err:e} vs 2D {e2d:e} (crank_nicolson {cn})");
}

const CHANNEL: &str = r#"
[case]
name = "channel"
model = "incompressible"
[mesh]
cells = [6, 20]
periodic = [true, false]
[physics]
viscosity = 0.5
body_force = [4.0, 0.0]
[boundary]
ylo = { type = "wall" }
yhi = { type = "wall" }
[numerics.solver]
rtol = 1e-12
[control]
end_time = 100.0
"#;

/// Body-force driven channel: u = G/(2ν) y (1 - y) = 4 y (1 - y), v = 0; with the
/// viscous term explicit and Crank–Nicolson (whose steady state does not depend on the
/// step: the delta form).
#[test]
fn poiseuille_channel_is_exact_to_1e_8() {
    for (case, ranks) in [
        (load("channel", CHANNEL, &[]), 1),
        (load("channel", CHANNEL, &[]), 3),
        (load("channel-cn", CHANNEL, &[CN.into(), "numerics.viscous_rtol=1e-10".into()]), 3),
    ] {
        let (f, steps) = solve(&case, ranks, 100.0, 1e-10);
        let mut err = 0.0f64;
        for (d, _, p, v) in f.iter().filter(|v| v.0 < 2) {
            let exact = if *d == 0 { 4.0 * p[1] * (1.0 - p[1]) } else { 0.0 };
            err = err.max((v - exact).abs());
        }
        assert!(err <= 1e-8, "{ranks} ranks: max error {err:e} after {steps} steps");
    }
}

/// Inlet (the parabola) and pressure outlet: the profile is kept and the pressure
/// falls linearly, dp/dx = ν u'' = -8ν.
#[test]
fn poiseuille_inlet_outlet_keeps_the_parabola_and_a_linear_pressure() {
    let text = CHANNEL
        .replace("periodic = [true, false]", "upper = [3.0, 1.0]")
        .replace("cells = [6, 20]", "cells = [30, 10]")
        .replace("body_force = [4.0, 0.0]", "")
        .replace(
            "[boundary]\n",
            "[boundary]\nxlo = { type = \"inlet\", velocity = [\"4*y*(1-y)\", 0.0] }\nxhi = { type = \"outlet\", pressure = 0.0 }\n",
        );
    for (case, ranks) in [
        (load("inout", &text, &[]), 1),
        (load("inout", &text, &[]), 4),
        (load("inout-cn", &text, &[CN.into(), "numerics.viscous_rtol=1e-10".into()]), 2),
    ] {
        let (f, steps) = solve(&case, ranks, 100.0, 1e-10);
        let (mut eu, mut ep) = (0.0f64, 0.0f64);
        for (d, _, p, v) in &f {
            match d {
                0 => eu = eu.max((v - 4.0 * p[1] * (1.0 - p[1])).abs()),
                1 => eu = eu.max(v.abs()),
                _ => ep = ep.max((v - 0.5 * 8.0 * (3.0 - p[0])).abs()),
            }
        }
        assert!(eu <= 1e-8, "{ranks} ranks: velocity error {eu:e} after {steps} steps");
        // The pressure is 4(3 - x) at cell centres (the outlet face x = 3 holds p = 0).
        assert!(ep <= 1e-7, "{ranks} ranks: pressure error {ep:e}");
    }
}

const CAVITY: &str = include_str!("../../cases/cavity.toml");

/// u on the vertical centreline x = 0.5 (the u faces there, at cell-centre heights)
/// and v on the horizontal centreline y = 0.5, with the wall values at the ends.
fn centrelines(f: &[FaceValue], n: usize) -> (Vec<(f64, f64)>, Vec<(f64, f64)>) {
    let mut u = vec![(0.0, 0.0)];
    let mut v = vec![(0.0, 0.0)];
    for (d, gi, p, val) in f {
        if *d == 0 && gi[0] == n / 2 {
            u.push((p[1], *val));
        }
        if *d == 1 && gi[1] == n / 2 {
            v.push((p[0], *val));
        }
    }
    u.push((1.0, 1.0));
    v.push((1.0, 0.0));
    u.sort_by(|a, b| a.0.total_cmp(&b.0));
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    (u, v)
}

fn interp(line: &[(f64, f64)], x: f64) -> f64 {
    let i = line.partition_point(|p| p.0 < x).clamp(1, line.len() - 1);
    let (a, b) = (line[i - 1], line[i]);
    a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0)
}

/// Ghia et al.'s tables I and II: (max |u - u_G|, max |v - v_G|).
fn ghia_errors(u: &[(f64, f64)], v: &[(f64, f64)]) -> (f64, f64) {
    let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../cases/data/ghia1982_re100.csv")).expect("Ghia's table");
    let (mut eu, mut ev) = (0.0f64, 0.0f64);
    for line in csv.lines().filter(|l| l.starts_with("u_vs_y") || l.starts_with("v_vs_x")) {
        let mut it = line.split(',');
        let (table, x, val) = (it.next().unwrap(), it.next().unwrap().parse::<f64>().unwrap(), it.next().unwrap().parse::<f64>().unwrap());
        if table == "u_vs_y" {
            eu = eu.max((interp(u, x) - val).abs());
        } else {
            ev = ev.max((interp(v, x) - val).abs());
        }
    }
    (eu, ev)
}

/// Extrema of the centreline profiles: (min u, max v, min v), by sampling the
/// piecewise-linear profile finely.
fn extrema(u: &[(f64, f64)], v: &[(f64, f64)]) -> (f64, f64, f64) {
    let xs: Vec<f64> = (0..=4000).map(|i| i as f64 / 4000.0).collect();
    let umin = xs.iter().map(|&x| interp(u, x)).fold(f64::INFINITY, f64::min);
    let vmax = xs.iter().map(|&x| interp(v, x)).fold(f64::NEG_INFINITY, f64::max);
    let vmin = xs.iter().map(|&x| interp(v, x)).fold(f64::INFINITY, f64::min);
    (umin, vmax, vmin)
}

/// Bruneau & Saad (2006), Computers & Fluids 35:326, Re = 100 on a 1024² grid:
/// min u on x = 0.5, max and min v on y = 0.5.
const BRUNEAU_SAAD: (f64, f64, f64) = (-0.2140424, 0.1795728, -0.2538030);

fn cavity_faces(n: usize, sets: &[String]) -> Vec<FaceValue> {
    let mut all = vec![format!("mesh.cells=[{n},{n}]")];
    all.extend_from_slice(sets);
    let case = load(&format!("cavity{n}-{}", sets.len()), CAVITY, &all);
    solve(&case, 2, 40.0, 1e-5).0
}

fn cavity(n: usize) -> ((f64, f64), (f64, f64, f64)) {
    let f = cavity_faces(n, &[]);
    let (u, v) = centrelines(&f, n);
    (ghia_errors(&u, &v), extrema(&u, &v))
}

/// CI-sized: 64². Ghia's own values (from a 129² grid) differ from converged ones by
/// up to 8.5e-3 (v_min -0.24533 against -0.25380), so the comparison with Ghia keeps
/// the issue's 0.01; the extrema against Bruneau & Saad's converged values must
/// agree to 2e-3, the size of the second-order error at 64² (the 128² run is 4x
/// closer: 3e-4).
#[test]
fn lid_driven_cavity_re100_matches_ghia_at_64() {
    let ((eu, ev), (umin, vmax, vmin)) = cavity(64);
    assert!(eu <= 0.01 && ev <= 0.01, "vs Ghia: max |du| = {eu:.4e}, max |dv| = {ev:.4e}");
    let (bu, bvmax, bvmin) = BRUNEAU_SAAD;
    let d = [(umin - bu).abs(), (vmax - bvmax).abs(), (vmin - bvmin).abs()];
    assert!(d.iter().all(|x| *x <= 2e-3), "extrema {umin:.5} {vmax:.5} {vmin:.5} vs Bruneau & Saad: {d:?}");
}

/// The shipped cavity (Crank–Nicolson viscous term, Courant number 1) reaches the
/// steady state of the explicit viscous term at Courant number 0.5 (the delta form
/// makes the steady state independent of the step): against Ghia and Bruneau & Saad
/// as above, and against the explicit run to 1e-4, the change left by the
/// steady-state stop at du/dt < 1e-5.
#[test]
fn lid_driven_cavity_with_crank_nicolson_reaches_the_explicit_steady_state() {
    let explicit = cavity_faces(64, &[EXPLICIT.into(), "numerics.cfl=0.5".into()]);
    let cn = cavity_faces(64, &[]);
    let (u, v) = centrelines(&cn, 64);
    let ((eu, ev), (umin, vmax, vmin)) = (ghia_errors(&u, &v), extrema(&u, &v));
    assert!(eu <= 0.01 && ev <= 0.01, "vs Ghia: max |du| = {eu:.4e}, max |dv| = {ev:.4e}");
    let (bu, bvmax, bvmin) = BRUNEAU_SAAD;
    let d = [(umin - bu).abs(), (vmax - bvmax).abs(), (vmin - bvmin).abs()];
    assert!(d.iter().all(|x| *x <= 2e-3), "extrema {umin:.5} {vmax:.5} {vmin:.5} vs Bruneau & Saad: {d:?}");
    assert_eq!(explicit.len(), cn.len());
    let diff = explicit.iter().zip(&cn).filter(|(a, _)| a.0 < 2).fold(0.0f64, |m, (a, b)| m.max((a.3 - b.3).abs()));
    assert!(diff <= 1e-4, "Crank–Nicolson vs explicit steady velocity: max difference {diff:e}");
}

/// The issue's full check at 128² (about a minute; `cargo test -- --ignored`).
#[test]
#[ignore = "slow: the full-resolution validation (run with --ignored)"]
fn lid_driven_cavity_re100_matches_ghia_at_128() {
    let ((eu, ev), (umin, vmax, vmin)) = cavity(128);
    assert!(eu <= 0.01 && ev <= 0.01, "vs Ghia: max |du| = {eu:.4e}, max |dv| = {ev:.4e}");
    let (bu, bvmax, bvmin) = BRUNEAU_SAAD;
    let d = [(umin - bu).abs(), (vmax - bvmax).abs(), (vmin - bvmin).abs()];
    assert!(d.iter().all(|x| *x <= 6e-4), "extrema {umin:.5} {vmax:.5} {vmin:.5} vs Bruneau & Saad: {d:?}");
}

/// A cavity with a time-dependent lid, an odd mesh and a body force, 40 steps on 1..4
/// ranks.
fn invariance_case(reproducible: bool, cn: bool, projection: &str) -> Case {
    let mut sets = vec![
        format!("numerics.projection=\"{projection}\""),
        "mesh.cells=[27,21]".into(),
        "boundary.yhi={type=\"moving_wall\", velocity=[\"sin(pi*x)*(1+t)\", 0]}".into(),
        "physics.body_force=[\"0.3*y\", \"-0.2*x*t\"]".into(),
        format!("numerics.solver.reproducible={reproducible}"),
        "numerics.solver.rtol=1e-10".into(),
    ];
    sets.push(if cn { CN } else { EXPLICIT }.into());
    load(&format!("inv{reproducible}{cn}{projection}"), CAVITY, &sets)
}

#[test]
fn same_velocity_bit_for_bit_on_1_to_4_ranks_in_reproducible_mode() {
    for cn in [false, true] {
        for projection in PROJECTIONS {
            bit_for_bit_on_1_to_4_ranks(cn, projection);
        }
    }
}

fn bit_for_bit_on_1_to_4_ranks(cn: bool, projection: &str) {
    let case = invariance_case(true, cn, projection);
    let (reference, _) = solve(&case, 1, 0.4, 0.0);
    assert!(reference.iter().any(|f| f.0 == 1 && f.3.abs() > 1e-2), "non-trivial flow");
    for ranks in 2..=4 {
        let (got, _) = solve(&case, ranks, 0.4, 0.0);
        assert_eq!(got.len(), reference.len());
        for (a, b) in reference.iter().zip(&got) {
            assert!(a.3.to_bits() == b.3.to_bits(), "{ranks} ranks, {projection}: component {} at {:?}: {} vs {}", a.0, a.1, a.3, b.3);
        }
    }
}

#[test]
fn same_velocity_to_1e_10_on_1_to_4_ranks_without_reproducible_mode() {
    for (cn, projection) in [false, true].into_iter().flat_map(|cn| PROJECTIONS.map(|p| (cn, p))) {
        let case = invariance_case(false, cn, projection);
        let (reference, _) = solve(&case, 1, 0.4, 0.0);
        let scale = reference.iter().filter(|f| f.0 < 3).fold(0.0f64, |m, f| m.max(f.3.abs()));
        for ranks in 2..=4 {
            let (got, _) = solve(&case, ranks, 0.4, 0.0);
            let diff = reference.iter().zip(&got).filter(|(a, _)| a.0 < 3).fold(0.0f64, |m, (a, b)| m.max((a.3 - b.3).abs()));
            assert!(diff <= 1e-10 * scale, "{ranks} ranks, crank_nicolson {cn}, {projection}: max difference {diff:e} (scale {scale:e})");
        }
    }
}

/// The discrete divergence after each step is at the pressure solver's tolerance.
#[test]
fn velocity_stays_divergence_free() {
    for cn in [false, true] {
        for projection in PROJECTIONS {
            divergence_free(cn, projection);
        }
    }
}

fn divergence_free(cn: bool, projection: &str) {
    let case = invariance_case(false, cn, projection);
    let res = ThreadComm::run(2, |c| {
        let layout = solver::run::layout_for(&case, c.size()).unwrap();
        let mut s = FlowSolver::new(c, &case, layout).unwrap();
        s.prepare(c, 0.0);
        let mut t = 0.0;
        let mut worst = 0.0f64;
        for _ in 0..20 {
            let dt = choose_dt(&case, s.courant_rate(c));
            let st = s.step(c, t, dt);
            t += dt;
            let mut m = [st.max_divergence, st.umax[0]];
            c.allreduce_f64(&mut m, decomp::ReduceOp::Max);
            worst = worst.max(m[0]);
        }
        worst
    });
    // rtol 1e-10 on |∇·u*|/(c dt): the divergence left is ~1e-10 of the O(1/h) predictor
    // divergence.
    assert!(res[0] < 1e-7, "max |div u| = {:e}", res[0]);
    let _ = PI;
}

/// A channel periodic in x between a wall (y = 0) and a lid oscillating in its own
/// plane, u = sin(4t) (Stokes' second problem in a gap): v stays 0 and u(y, t) obeys
/// the heat equation, so only the time integration of the viscous term is tested.
const OSCILLATING_LID: &str = r#"
[case]
name = "stokes2"
model = "incompressible"
[mesh]
cells = [4, 32]
upper = [0.25, 1.0]
periodic = [true, false]
[physics]
viscosity = 0.05
[boundary]
ylo = { type = "wall" }
yhi = { type = "moving_wall", velocity = ["sin(4*t)", 0] }
[numerics]
solver = { rtol = 1e-13 }
[control]
end_time = 1.0
"#;

/// A channel fed by an inlet whose parabolic profile pulses in time, u = 4y(1-y)(1 +
/// sin(3t)/2), leaving through an outlet: the normal boundary velocity changes within
/// each stage. It starts from the t = 0 profile, which is divergence-free and matches
/// the inlet (an impulsive start from rest would itself limit the order to 1).
const PULSED_INLET: &str = r#"
[case]
name = "pulse"
model = "incompressible"
[mesh]
cells = [32, 16]
upper = [2.0, 1.0]
[physics]
viscosity = 0.05
[boundary]
xlo = { type = "inlet", velocity = ["4*y*(1-y)*(1+0.5*sin(3*t))", 0] }
xhi = { type = "outlet", pressure = 0 }
ylo = { type = "wall" }
yhi = { type = "wall" }
[initial]
velocity_x = "4*y*(1-y)"
[numerics]
solver = { rtol = 1e-13 }
[control]
end_time = 1.0
"#;

/// Observed temporal order of `text` at t = 1 from fixed steps dt0, dt0/2, dt0/4 on one
/// grid (differences of successive solutions, velocity only).
fn time_order(tag: &str, text: &str, dt0: f64, cn: bool) -> (f64, [f64; 2]) {
    time_order_with(tag, text, dt0, cn, "every_stage")
}

/// [`time_order`] with `numerics.projection = projection`.
fn time_order_with(tag: &str, text: &str, dt0: f64, cn: bool, projection: &str) -> (f64, [f64; 2]) {
    let scheme = if cn { CN } else { EXPLICIT };
    let runs: Vec<Vec<FaceValue>> = [1.0, 2.0, 4.0]
        .iter()
        .map(|m| {
            let mut sets = vec![scheme.to_string(), format!("numerics.dt={}", dt0 / m), format!("numerics.projection=\"{projection}\"")];
            if cn {
                sets.push("numerics.viscous_rtol=1e-13".into());
            }
            let case = load(&format!("{tag}{m}{cn}{projection}"), text, &sets);
            solve(&case, 1, 1.0, 0.0).0
        })
        .collect();
    let diff =
        |a: &[FaceValue], b: &[FaceValue]| a.iter().zip(b).filter(|(x, _)| x.0 < 2).map(|(x, y)| (x.3 - y.3).abs()).fold(0.0, f64::max);
    let e = [diff(&runs[0], &runs[1]), diff(&runs[1], &runs[2])];
    ((e[0] / e[1]).log2(), e)
}

/// Time-dependent walls and inlets, and outlets, keep the schemes' order in time.
/// Two faults made both cases first order, and this test failed on each:
/// - the change of a boundary velocity within a stage did not enter the
///   Crank–Nicolson implicit half (its lifting): the lid case converged at order 1.04;
/// - the intermediate velocity's outlet faces copied the adjacent face's value
///   instead of its increment over the stage: the inlet case converged at order 0.97
///   with the explicit term and 1.47 with Crank–Nicolson.
///
/// Measured now: explicit 2.64 (lid) and 2.83 (inlet) for Runge–Kutta 3 with a
/// projection per stage; Crank–Nicolson 1.99 and 1.90, its second order. The bounds,
/// 1.9 and 1.8, claim second order with room for the next-order terms at these steps,
/// and are far from the first order of either fault.
#[test]
fn time_dependent_boundaries_keep_the_order_in_time() {
    let cases = [
        ("lid", OSCILLATING_LID, 0.006, false, 1.9),
        ("inlet", PULSED_INLET, 0.016, false, 1.9),
        ("lid", OSCILLATING_LID, 0.05, true, 1.8),
        ("inlet", PULSED_INLET, 0.05, true, 1.8),
    ];
    for (tag, text, dt0, cn, bound) in cases {
        let (p, e) = time_order(tag, text, dt0, cn);
        assert!(p >= bound, "{tag} (crank_nicolson {cn}): observed order {p:.3} (differences {e:?})");
    }
}

/// The Taylor–Green vortex at 32² (nonlinear, with a pressure that decays in time):
/// observed temporal order from fixed steps 0.1, 0.05, 0.025 to t = 1, each scheme
/// with each projection.
///
/// With one projection per step (`numerics.projection = "final_stage"`, after Le &
/// Moin 1991) the first two Runge–Kutta stages use the step-start pressure and are not
/// projected. Measured: every_stage 3.01 (explicit) and 2.00 (Crank–Nicolson);
/// final_stage 2.05 and 2.06, with differences about 2000x larger (1.8e-3 against
/// 7.7e-7 at dt = 0.1 with Crank–Nicolson): the step-start pressure lags the stages by
/// O(Δt), which leaves an O(Δt²) error in the stages' velocity. Through the boundary
/// cases of the test above, final_stage measures 2.64 and 1.99 (lid: no pressure
/// gradient, the same numbers as every_stage) and 1.86 and 2.34 (inlet). The bounds:
/// 1.9 where the scheme is third order or exactly second, 1.8 for final_stage (the
/// inlet case's 1.86 has the next-order terms in it) — far above the first order of a
/// pressure that is not brought up to date.
#[test]
fn one_projection_per_step_keeps_second_order_in_time() {
    let tg = TAYLOR_GREEN.replace("rtol = 1e-12", "rtol = 1e-13").replace("cells = [16, 16]", "cells = [32, 32]");
    let cases = [
        ("tg", tg.as_str(), 0.1, false, "every_stage", 1.9),
        ("tg", tg.as_str(), 0.1, true, "every_stage", 1.9),
        ("tg", tg.as_str(), 0.1, false, "final_stage", 1.8),
        ("tg", tg.as_str(), 0.1, true, "final_stage", 1.8),
        ("lid", OSCILLATING_LID, 0.006, false, "final_stage", 1.8),
        ("inlet", PULSED_INLET, 0.016, false, "final_stage", 1.8),
        ("lid", OSCILLATING_LID, 0.05, true, "final_stage", 1.8),
        ("inlet", PULSED_INLET, 0.05, true, "final_stage", 1.8),
    ];
    for (tag, text, dt0, cn, projection, bound) in cases {
        let (p, e) = time_order_with(tag, text, dt0, cn, projection);
        assert!(p >= bound, "{tag} (crank_nicolson {cn}, {projection}): observed order {p:.3} (differences {e:?})");
    }
}
