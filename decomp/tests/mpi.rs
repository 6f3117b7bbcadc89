//! Halo exchange and reductions under real `mpirun -n 1..4` (the same checks the
//! in-process ThreadComm tests run), plus a singleton run without a launcher.
use std::process::Command;

fn mpirun(n: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .arg("-n")
        .arg(n.to_string())
        .arg(env!("CARGO_BIN_EXE_decomp-selfcheck"));
    c
}

#[test]
fn selfcheck_under_mpirun_1_to_4_ranks() {
    for n in 1..=4 {
        let out = mpirun(n).output().expect("mpirun runs (install Open MPI: scripts/setup.sh)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{n} ranks failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("{n} ranks")) && stdout.contains(": ok"), "{stdout}");
    }
}

#[test]
fn selfcheck_as_singleton() {
    let out = Command::new(env!("CARGO_BIN_EXE_decomp-selfcheck"))
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
