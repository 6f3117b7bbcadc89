//! Runs the halo-exchange and reduction self-checks under real MPI:
//! `mpirun -n 4 target/debug/decomp-selfcheck`. Exit 0 on success; used by
//! `decomp/tests/mpi.rs`.
use decomp::comm::{Comm, MpiComm};
use decomp::halo::selfcheck;

fn main() {
    let comm = MpiComm::init().expect("MPI already initialised");
    let res = selfcheck::check_all(&comm);
    let failed = comm.any(res.is_err());
    let checked = comm.sum(*res.as_ref().unwrap_or(&0) as f64);
    if let Err(e) = &res {
        eprintln!("decomp-selfcheck: {e}");
    }
    if comm.rank() == 0 && !failed {
        println!("decomp-selfcheck: {} ranks, {} ghost values checked: ok", comm.size(), checked);
    }
    drop(comm);
    std::process::exit(if failed { 1 } else { 0 });
}
