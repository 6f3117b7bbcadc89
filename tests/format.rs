//! End-to-end check of the on-disk format (docs/FORMAT.md): small 2D and 3D cases run
//! plainly (1-rank singleton MPI) and under `mpirun -n 2` and `-n 3`; each RUN_DIR is
//! validated by tests/check_format.py, and the snapshots must be bit-identical
//! between rank counts. Skipped (with a notice) when /usr/bin/python3 has no h5py.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

mod common;
use common::{have_h5py, scratch, tessera_on, validator, PYTHON};

/// mpirun jobs are serialised: the machines have 2 cores and oversubscribed ranks
/// from two concurrent jobs would only slow each other down.
static MPI_LOCK: Mutex<()> = Mutex::new(());

const CASE_2D: &str = r#"
# 24x20 cells on [0,1.2]x[-1,1]: dirichlet at xlo, neumann at xhi, periodic in y.
[case]
name = "format2d"
model = "heat"

[mesh]
cells = [24, 20]
lower = [0.0, -1.0]
upper = [1.2, 1.0]
periodic = [false, true]

[physics]
diffusivity = 0.1
source = "1.0"

[boundary]
xlo = { type = "dirichlet", value = "0.25*y" }
xhi = { type = "neumann", gradient = "0.5" }

[initial]
temperature = "sin(pi*x)*cos(pi*y)"

[control]
max_steps = 40

[output]
dir = "run-default"
every = 10
checkpoint_every = 20

[monitor]
probes = [[0.5, 0.5], [1.1, -0.9]]
norms = ["l2", "max", "min", "mean", "integral"]
"#;

const CASE_3D: &str = r#"
# 10x8x7 cells (uneven splits on 3 and 4 ranks): dirichlet x, periodic y, neumann z.
[case]
name = "format3d"
model = "heat"

[mesh]
cells = [10, 8, 7]
lower = [0.0, 0.0, 0.0]
upper = [1.0, 2.0, 0.5]
periodic = [false, true, false]

[physics]
diffusivity = 0.1
source = "1.0"

[boundary]
xlo = { type = "dirichlet", value = "0" }
xhi = { type = "dirichlet", value = "z" }
zlo = { type = "neumann", gradient = "0" }
zhi = { type = "neumann", gradient = "-0.2" }

[initial]
temperature = "0.2*sin(2*pi*y)*sin(pi*x)"

[control]
max_steps = 35

[output]
dir = "run-default"
every = 10
checkpoint_every = 20
"#;

fn temp_dir(name: &str) -> PathBuf {
    scratch("format", name)
}

fn show(what: &str, o: &Output) -> String {
    format!("{what}: {}\n--- stdout\n{}\n--- stderr\n{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs the validator; returns (success, stdout+stderr).
fn check(args: &[&Path]) -> (bool, String) {
    let o = Command::new(PYTHON).arg(validator()).args(args).output().expect("start /usr/bin/python3");
    (o.status.success(), show("check_format.py", &o))
}

fn assert_valid(run_dir: &Path) {
    let (ok, out) = check(&[run_dir]);
    assert!(ok, "{} is not valid format 1.0:\n{out}", run_dir.display());
    eprintln!("{}", out.lines().nth(2).unwrap_or_default());
}

/// Runs the case in `dir/case.toml` on `ranks` ranks (0 = plainly, no mpirun) into `out`.
fn run(dir: &Path, ranks: usize, out: Option<&Path>) -> PathBuf {
    let case = dir.join("case.toml");
    let _guard = (ranks > 0).then(|| MPI_LOCK.lock().unwrap_or_else(|p| p.into_inner()));
    let mut cmd = tessera_on(ranks);
    cmd.arg("run").arg(&case).arg("--quiet").current_dir(dir);
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    let start = std::time::Instant::now();
    let o = cmd.output().expect("start tessera / mpirun");
    assert!(o.status.success(), "{}", show(&format!("tessera run on {ranks} rank(s)"), &o));
    eprintln!("  ran on {} rank(s) in {:.2}s", ranks.max(1), start.elapsed().as_secs_f64());
    out.map(Path::to_path_buf).unwrap_or_else(|| dir.join("run-default"))
}

/// The whole check for one case: three rank counts, validation, bit-identity.
fn check_case(name: &str, case: &str) {
    if !have_h5py() {
        eprintln!("NOTICE: {PYTHON} cannot import h5py/numpy; skipping the format test (install python3-h5py: scripts/setup.sh)");
        return;
    }
    let dir = temp_dir(name);
    std::fs::write(dir.join("case.toml"), case).unwrap();
    // (a) plainly: a 1-rank singleton MPI job, into the case's [output] dir.
    let one = run(&dir, 0, None);
    // (b) under mpirun, into --out directories.
    let two = run(&dir, 2, Some(&dir.join("run-2")));
    let three = run(&dir, 3, Some(&dir.join("run-3")));
    for d in [&one, &two, &three] {
        assert_valid(d);
    }
    for other in [&two, &three] {
        let (ok, out) = check(&[Path::new("--compare"), &one, other]);
        assert!(ok, "snapshots differ between rank counts:\n{out}");
    }
    // The validator is not vacuous: debris and a missing monitor row are caught.
    std::fs::write(one.join("checkpoints").join("step_00000099.h5.tmp"), b"").unwrap();
    let (ok, out) = check(&[&one]);
    assert!(!ok && out.contains("step_00000099.h5.tmp"), "stray .tmp not reported:\n{out}");
    std::fs::remove_file(one.join("checkpoints").join("step_00000099.h5.tmp")).unwrap();
    let mon = one.join("monitor.csv");
    let text = std::fs::read_to_string(&mon).unwrap();
    let cut: Vec<&str> = text.lines().enumerate().filter(|(i, _)| *i != 5).map(|(_, l)| l).collect();
    std::fs::write(&mon, cut.join("\n") + "\n").unwrap();
    let (ok, out) = check(&[&one]);
    assert!(!ok && out.contains("monitor.csv"), "missing monitor row not reported:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn format_2d_one_two_three_ranks() {
    check_case("2d", CASE_2D);
}

#[test]
fn format_3d_one_two_three_ranks() {
    check_case("3d", CASE_3D);
}
