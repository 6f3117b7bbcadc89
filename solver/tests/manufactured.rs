//! Manufactured-solution convergence of the heat model, run through the whole
//! pipeline (case file → run → output.h5) on in-process ranks.
//!
//! Exact solution u = (1 + t)(sin(πx)cos(πy) + xy) on the unit square (in 3D: (1 + t)(sin(πx)cos(πy)cos(πz) + xyz)), with the source that makes it satisfy
//! du/dt = D∇²u + s, Dirichlet values on x faces and Neumann gradients on y faces
//! taken from it. The scheme is second order in space and first order in time with
//! dt ∝ h², so the L2 error must fall by 4× per halving of h: observed order ≥ 1.9.
use decomp::comm::{SerialComm, ThreadComm};
use decomp::io::H5File;
use decomp::{Comm, Field, Grid};
use solver::run::{run, RunOptions};
use std::path::{Path, PathBuf};

const D: f64 = 0.5;
const T_END: f64 = 0.05;

fn exact2(x: f64, y: f64, t: f64) -> f64 {
    (1.0 + t) * ((std::f64::consts::PI * x).sin() * (std::f64::consts::PI * y).cos() + x * y)
}

fn exact3(x: f64, y: f64, z: f64, t: f64) -> f64 {
    (1.0 + t) * ((std::f64::consts::PI * x).sin() * (std::f64::consts::PI * y).cos() * (std::f64::consts::PI * z).cos() + x * y * z)
}

fn case_text(n: usize, dims: usize, dir: &Path) -> String {
    let (cells, u, src, gy, gz) = if dims == 2 {
        (
            format!("[{n}, {n}]"),
            "(1+t)*(sin(pi*x)*cos(pi*y) + x*y)".to_string(),
            format!("sin(pi*x)*cos(pi*y) + x*y + 2*pi^2*{D}*(1+t)*sin(pi*x)*cos(pi*y)"),
            // du/dn = ±du/dy; du/dy = (1+t)(-pi sin(pi x) sin(pi y) + x)
            ("-(1+t)*(-pi*sin(pi*x)*sin(pi*y) + x)", "(1+t)*(-pi*sin(pi*x)*sin(pi*y) + x)"),
            None,
        )
    } else {
        (
            format!("[{n}, {n}, {n}]"),
            "(1+t)*(sin(pi*x)*cos(pi*y)*cos(pi*z) + x*y*z)".to_string(),
            format!("sin(pi*x)*cos(pi*y)*cos(pi*z) + x*y*z + 3*pi^2*{D}*(1+t)*sin(pi*x)*cos(pi*y)*cos(pi*z)"),
            ("-(1+t)*(-pi*sin(pi*x)*sin(pi*y)*cos(pi*z) + x*z)", "(1+t)*(-pi*sin(pi*x)*sin(pi*y)*cos(pi*z) + x*z)"),
            Some(("-(1+t)*(-pi*sin(pi*x)*cos(pi*y)*sin(pi*z) + x*y)", "(1+t)*(-pi*sin(pi*x)*cos(pi*y)*sin(pi*z) + x*y)")),
        )
    };
    let mut s = format!(
        "[case]\nname = \"mms\"\nmodel = \"heat\"\n[mesh]\ncells = {cells}\n[physics]\ndiffusivity = {D}\nsource = \"{src}\"\n\
         [boundary]\nxlo = {{ type = \"dirichlet\", value = \"{u}\" }}\nxhi = {{ type = \"dirichlet\", value = \"{u}\" }}\n\
         ylo = {{ type = \"neumann\", gradient = \"{}\" }}\nyhi = {{ type = \"neumann\", gradient = \"{}\" }}\n",
        gy.0, gy.1
    );
    if let Some(gz) = gz {
        s += &format!("zlo = {{ type = \"neumann\", gradient = \"{}\" }}\nzhi = {{ type = \"neumann\", gradient = \"{}\" }}\n", gz.0, gz.1);
    }
    s += &format!(
        "[initial]\ntemperature = \"{}\"\n[numerics]\nstability_factor = 0.5\n[control]\nend_time = {T_END}\n[output]\ndir = \"{}\"\n",
        u.replace("(1+t)", "1"),
        dir.display()
    );
    s
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-mms-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the case on `ranks` in-process ranks; returns the L2 error of the final snapshot.
fn l2_error(n: usize, dims: usize, ranks: usize) -> f64 {
    let dir = tmp(&format!("{dims}d-{n}-{ranks}"));
    let run_dir = dir.join("run");
    let case_path = dir.join("mms.toml");
    std::fs::write(&case_path, case_text(n, dims, &run_dir)).unwrap();
    let case = solver::case::load(&case_path, &[]).unwrap_or_else(|e| panic!("{e}"));
    let opts = RunOptions { progress: false, create_parents: true, ..Default::default() };
    let summaries = ThreadComm::run(ranks, |c| run(c, &case, &opts).map_err(|e| e.to_string()));
    let s = summaries.into_iter().next().unwrap().unwrap();
    assert_eq!(s.time, T_END, "the last step lands on end_time");
    let c = SerialComm::new();
    let h5 = H5File::open(&c, &run_dir.join("output.h5")).unwrap();
    let grid = Grid::new(&vec![n; dims], &vec![0.0; dims], &vec![1.0; dims], &vec![false; dims]);
    let mut f = Field::zeros(grid.index_box(), dims, 0);
    h5.read_field(&c, &format!("/snapshots/{:08}/temperature", s.steps), &mut f).unwrap();
    let h = 1.0 / n as f64;
    let mut sum = 0.0;
    for ((k, j, i), v) in f.interior().indexed_iter() {
        let (x, y, z) = (grid.centre(0, i), grid.centre(1, j), grid.centre(2, k));
        let e = if dims == 2 { exact2(x, y, T_END) } else { exact3(x, y, z, T_END) };
        sum += (v - e).powi(2);
    }
    let _ = c.size();
    (sum * h.powi(dims as i32)).sqrt()
}

#[test]
fn initial_condition_matches_exact_solution() {
    // Guards the test itself: the initial expression written into the case is u(t=0).
    let t = case_text(8, 2, Path::new("/x"));
    assert!(t.contains("temperature = \"1*(sin(pi*x)*cos(pi*y) + x*y)\""), "{t}");
    let t = case_text(8, 3, Path::new("/x"));
    assert!(t.contains("temperature = \"1*(sin(pi*x)*cos(pi*y)*cos(pi*z) + x*y*z)\""), "{t}");
}

#[test]
fn second_order_in_2d_on_three_grids() {
    let e: Vec<f64> = [16, 32, 64].iter().map(|&n| l2_error(n, 2, 2)).collect();
    let p1 = (e[0] / e[1]).log2();
    let p2 = (e[1] / e[2]).log2();
    eprintln!("2D L2 errors {e:?}, observed orders {p1:.3} {p2:.3}");
    assert!(e[2] < 1e-3, "error too large: {e:?}");
    assert!(p1 >= 1.9 && p2 >= 1.9, "observed orders {p1} {p2} (errors {e:?})");
}

#[test]
fn second_order_in_3d_on_three_grids() {
    let e: Vec<f64> = [8, 16, 32].iter().map(|&n| l2_error(n, 3, 3)).collect();
    let p1 = (e[0] / e[1]).log2();
    let p2 = (e[1] / e[2]).log2();
    eprintln!("3D L2 errors {e:?}, observed orders {p1:.3} {p2:.3}");
    assert!(p1 >= 1.9 && p2 >= 1.9, "observed orders {p1} {p2} (errors {e:?})");
}
