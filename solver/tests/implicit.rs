//! Implicit heat (backward Euler, Crank–Nicolson) against the exact semi-discrete
//! solution: the sine mode sin(πx) sin(πy) is an eigenvector of the cell-centred
//! Dirichlet Laplacian with eigenvalue λ_h = 2 · (4/h²) sin²(πh/2), so after n steps
//! the discrete-in-space answer is the mode times g(D λ_h dt)ⁿ, with the scheme's
//! amplification g. Comparing with exp(-D λ_h t) isolates the time error: BE must
//! show order 1, CN order 2; comparing with gⁿ checks the solves to round-off.
use decomp::comm::ThreadComm;
use decomp::Comm;
use solver::heat::HeatSolver;
use std::f64::consts::PI;

const CASE: &str = r#"
[case]
name = "implicit"
model = "heat"
[mesh]
cells = [32, 32]
[physics]
diffusivity = 0.1
[boundary]
xlo = { type = "dirichlet", value = "0" }
xhi = { type = "dirichlet", value = "0" }
ylo = { type = "dirichlet", value = "0" }
yhi = { type = "dirichlet", value = "0" }
[initial]
temperature = "sin(pi*x)*sin(pi*y)"
[numerics]
dt = 0.05
[numerics.solver]
rtol = 1e-12
[control]
end_time = 0.5
"#;

/// (max error vs exp(-Dλt), max error vs gⁿ) after stepping to t = 0.5.
fn errors(scheme: &str, dt: f64, ranks: usize) -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!("tessera-implicit-{}-{scheme}-{dt}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("case.toml");
    std::fs::write(&path, CASE).unwrap();
    let sets = [format!("numerics.time_scheme={scheme:?}"), format!("numerics.dt={dt:?}")];
    let case = solver::case::load(&path, &sets).unwrap();
    let res = ThreadComm::run(ranks, move |c| {
        let layout = solver::run::layout_for(&case, c.size()).unwrap();
        let mut s = HeatSolver::new(&case, layout.clone(), c).unwrap();
        let steps = (0.5 / dt).round() as usize;
        for n in 0..steps {
            s.step(c, n as f64 * dt, dt);
        }
        let h = 1.0 / 32.0;
        let lam = 2.0 * 4.0 / (h * h) * (PI * h / 2.0).sin().powi(2);
        let z = 0.1 * lam * dt;
        let g = if scheme == "backward_euler" { 1.0 / (1.0 + z) } else { (1.0 - z / 2.0) / (1.0 + z / 2.0) };
        let (exact, discrete) = ((-0.1 * lam * 0.5f64).exp(), g.powi(steps as i32));
        let g0 = &layout.grid;
        let lo = s.u.block.lo;
        let (mut e1, mut e2) = (0.0f64, 0.0f64);
        for ((k, j, i), v) in s.u.interior().indexed_iter() {
            let mode = (PI * g0.centre(0, lo[0] + i)).sin() * (PI * g0.centre(1, lo[1] + j)).sin();
            let _ = k;
            e1 = e1.max((v - mode * exact).abs());
            e2 = e2.max((v - mode * discrete).abs());
        }
        (c.max(e1), c.max(e2))
    });
    res[0]
}

fn order(scheme: &str, ranks: usize) -> Vec<f64> {
    let e: Vec<(f64, f64)> = [0.05, 0.025, 0.0125].iter().map(|&dt| errors(scheme, dt, ranks)).collect();
    println!("{scheme} on {ranks} rank(s): {e:?}");
    for (_, d) in &e {
        assert!(*d < 1e-9, "{scheme}: the solves leave {d:e} against the exact discrete amplification");
    }
    e.windows(2).map(|w| (w[0].0 / w[1].0).log2()).collect()
}

#[test]
fn backward_euler_is_first_order_in_time() {
    let p = order("backward_euler", 2);
    assert!(p.iter().all(|&q| (0.95..1.2).contains(&q)), "{p:?}");
}

#[test]
fn crank_nicolson_is_second_order_in_time() {
    let p = order("crank_nicolson", 3);
    assert!(p.iter().all(|&q| q >= 1.95), "{p:?}");
}
