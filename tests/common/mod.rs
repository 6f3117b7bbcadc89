//! Helpers shared by the end-to-end tests of the `tessera` binary.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod slurm;

use decomp::comm::SerialComm;
use decomp::io::H5File;
use decomp::{Field, IndexBox};

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_tessera");
/// Debian's Python, the one python3-h5py installs into (the `python3` on PATH may be
/// another interpreter).
pub const PYTHON: &str = "/usr/bin/python3";

/// Open MPI settings every test launch needs: root is allowed (CI runs as root), and
/// up to 4 ranks may share the 2 cores.
pub fn with_mpi_env(c: &mut Command) -> &mut Command {
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
}

/// `tessera` on `ranks` ranks: 0 runs it plainly (an MPI singleton), otherwise under
/// `mpirun -n ranks`. Add the subcommand and its arguments.
pub fn tessera_on(ranks: usize) -> Command {
    let mut c = if ranks == 0 {
        Command::new(EXE)
    } else {
        let mut c = Command::new("mpirun");
        c.arg("-n").arg(ranks.to_string()).arg(EXE);
        c
    };
    with_mpi_env(&mut c);
    c
}

/// A fresh, empty scratch directory for one test of one suite.
pub fn scratch(suite: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-{suite}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// True when Debian's Python can read HDF5 (python3-h5py, installed by scripts/setup.sh).
pub fn have_h5py() -> bool {
    Command::new(PYTHON).args(["-c", "import h5py, numpy"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// The format validator, tests/check_format.py.
pub fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("check_format.py")
}

/// Asserts that RUN_DIR passes the format validator (skipped with a notice without h5py).
pub fn assert_valid_run_dir(run_dir: &Path) {
    if !have_h5py() {
        eprintln!("NOTICE: {PYTHON} cannot import h5py; skipping format validation of {}", run_dir.display());
        return;
    }
    let o = Command::new(PYTHON).arg(validator()).arg(run_dir).output().expect("start /usr/bin/python3");
    assert!(
        o.status.success(),
        "{} is not valid format 1.0:\n{}{}",
        run_dir.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `tessera run CASE --out OUT extra...` on `ranks` (0 = plain singleton).
pub fn run(ranks: usize, case: &Path, out: &Path, extra: &[&str]) {
    let mut c = tessera_on(ranks);
    c.arg("run").arg(case).arg("--out").arg(out).arg("--quiet").args(extra);
    let o = c.output().expect("runs");
    assert!(o.status.success(), "{ranks} ranks failed: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

/// Every snapshot of RUN_DIR/output.h5 as (name, values in file order).
pub fn snapshots(run_dir: &Path) -> Vec<(String, Vec<f64>)> {
    read_file(&run_dir.join("output.h5"))
}

pub fn read_file(path: &Path) -> Vec<(String, Vec<f64>)> {
    let c = SerialComm::new();
    let h5 = H5File::open(&c, path).unwrap();
    let cells = h5.attr_u64(&c, "/mesh", "cells").unwrap();
    let dims = cells.len();
    let mut hi = [1usize; 3];
    for a in 0..dims {
        hi[a] = cells[a] as usize;
    }
    let mut out = Vec::new();
    for s in h5.members(&c, "/snapshots").unwrap() {
        for name in h5.members(&c, &format!("/snapshots/{s}")).unwrap() {
            let mut f = Field::zeros(IndexBox { lo: [0; 3], hi }, dims, 0);
            h5.read_field(&c, &format!("/snapshots/{s}/{name}"), &mut f).unwrap();
            out.push((format!("{s}/{name}"), f.as_slice().to_vec()));
        }
    }
    out
}

pub fn assert_bitwise(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)], what: &str) {
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>(), "{what}: snapshot lists differ");
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let same = x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{what}: snapshot {name} differs");
    }
}
