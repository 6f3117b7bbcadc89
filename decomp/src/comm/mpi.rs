//! The MPI backend (rsmpi), the one used in production runs.
use super::{Comm, CommStats, ReduceOp, Request, RequestKind, StatCells};
use ::mpi::collective::SystemOperation;
use ::mpi::datatype::PartitionMut;
use ::mpi::ffi;
use ::mpi::raw::AsRaw;
use ::mpi::traits::*;
use ::mpi::Count;

/// MPI_COMM_WORLD of an initialised MPI environment. Dropping it finalises MPI, so
/// keep it alive until the very end of `main` (and drop it before `process::exit`).
pub struct MpiComm {
    world: ::mpi::topology::SimpleCommunicator,
    stats: StatCells,
    // Declared last so the communicator is released before MPI_Finalize.
    _universe: ::mpi::environment::Universe,
}

impl MpiComm {
    /// Initialises MPI (singleton init when not started by mpirun/srun).
    /// Returns `None` if MPI was already initialised in this process.
    pub fn init() -> Option<Self> {
        let universe = ::mpi::initialize()?;
        let world = universe.world();
        Some(MpiComm { world, stats: StatCells::default(), _universe: universe })
    }

    /// True when this process was started by an MPI launcher: Open MPI's mpirun, or a
    /// PMI/PMIx launcher such as `srun --mpi=pmix`. (Not merely inside a Slurm job: a
    /// batch script may run `tessera run --np N` itself.)
    pub fn launched_by_mpi() -> bool {
        ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some())
    }

    /// Aborts every rank of the job with `code` (for errors one rank cannot share).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

fn op(o: ReduceOp) -> SystemOperation {
    match o {
        ReduceOp::Sum => SystemOperation::sum(),
        ReduceOp::Min => SystemOperation::min(),
        ReduceOp::Max => SystemOperation::max(),
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    unsafe fn irecv(&self, buf: *mut f64, len: usize, src: usize, tag: i32) -> Request {
        let mut req: ffi::MPI_Request = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: the caller keeps buf valid until wait_all; datatype and comm are valid.
        let rc = unsafe { ffi::MPI_Irecv(buf.cast(), len as Count, ffi::RSMPI_DOUBLE, src as i32, tag, self.world.as_raw(), &mut req) };
        assert_eq!(rc, 0, "MPI_Irecv failed");
        Request(RequestKind::Mpi(req))
    }
    unsafe fn isend(&self, buf: *const f64, len: usize, dest: usize, tag: i32) -> Request {
        let mut req: ffi::MPI_Request = unsafe { ffi::RSMPI_REQUEST_NULL };
        self.stats.send(len);
        // SAFETY: the caller keeps buf valid and unmodified until wait_all.
        let rc = unsafe {
            ffi::MPI_Isend(buf as *mut std::ffi::c_void, len as Count, ffi::RSMPI_DOUBLE, dest as i32, tag, self.world.as_raw(), &mut req)
        };
        assert_eq!(rc, 0, "MPI_Isend failed");
        Request(RequestKind::Mpi(req))
    }
    fn wait_all(&self, reqs: &mut Vec<Request>) {
        for r in reqs.iter_mut() {
            if let RequestKind::Mpi(ref mut raw) = r.0 {
                // SAFETY: raw is a request returned by MPI_Isend/MPI_Irecv.
                let rc = unsafe { ffi::MPI_Wait(raw, ffi::RSMPI_STATUS_IGNORE) };
                assert_eq!(rc, 0, "MPI_Wait failed");
            }
        }
        reqs.clear();
    }
    fn allreduce_f64(&self, values: &mut [f64], o: ReduceOp) {
        self.stats.reduction();
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, op(o));
    }
    fn allreduce_u64(&self, values: &mut [u64], o: ReduceOp) {
        self.stats.reduction();
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, op(o));
    }
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) {
        self.stats.reduction();
        let root_proc = self.world.process_at_rank(root as i32);
        let mut len = data.len() as u64;
        root_proc.broadcast_into(&mut len);
        data.resize(len as usize, 0);
        root_proc.broadcast_into(&mut data[..]);
    }
    fn gather_f64(&self, root: usize, data: &[f64]) -> Option<Vec<Vec<f64>>> {
        self.stats.reduction();
        let root_proc = self.world.process_at_rank(root as i32);
        let n = data.len() as Count;
        if self.rank() == root {
            let mut counts = vec![0 as Count; self.size()];
            root_proc.gather_into_root(&n, &mut counts[..]);
            let displs: Vec<Count> = counts
                .iter()
                .scan(0, |acc, &c| {
                    let d = *acc;
                    *acc += c;
                    Some(d)
                })
                .collect();
            let total: Count = counts.iter().sum();
            let mut buf = vec![0.0f64; total as usize];
            {
                let mut part = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
                root_proc.gather_varcount_into_root(data, &mut part);
            }
            Some(counts.iter().zip(&displs).map(|(&c, &d)| buf[d as usize..(d + c) as usize].to_vec()).collect())
        } else {
            root_proc.gather_into(&n);
            root_proc.gather_varcount_into(data);
            None
        }
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn mpi_raw(&self) -> Option<ffi::MPI_Comm> {
        Some(self.world.as_raw())
    }
    fn stats(&self) -> CommStats {
        self.stats.get()
    }
}
