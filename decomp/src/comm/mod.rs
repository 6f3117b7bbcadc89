//! The communicator abstraction and its backends.
//!
//! rsmpi's `Communicator` is sealed, so physics code talks to this trait instead;
//! [`MpiComm`] is the real backend, [`ThreadComm`] runs N ranks as threads in one
//! process (tests), [`SerialComm`] is one rank without MPI.
use std::cell::Cell;

mod mpi;
mod serial;
mod thread;

pub use self::mpi::MpiComm;
pub use serial::SerialComm;
pub use thread::ThreadComm;

/// Reduction operator for [`Comm::allreduce_f64`] and [`Comm::allreduce_u64`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl ReduceOp {
    /// Applies the operator to two values.
    #[inline]
    pub fn apply_f64(self, a: f64, b: f64) -> f64 {
        match self {
            ReduceOp::Sum => a + b,
            ReduceOp::Min => a.min(b),
            ReduceOp::Max => a.max(b),
        }
    }

    /// Applies the operator to two integers.
    #[inline]
    pub fn apply_u64(self, a: u64, b: u64) -> u64 {
        match self {
            ReduceOp::Sum => a + b,
            ReduceOp::Min => a.min(b),
            ReduceOp::Max => a.max(b),
        }
    }
}

/// A pending non-blocking operation, completed by [`Comm::wait_all`].
#[derive(Debug)]
pub struct Request(pub(crate) RequestKind);

#[derive(Debug)]
pub(crate) enum RequestKind {
    /// An MPI request handle.
    Mpi(::mpi::ffi::MPI_Request),
    /// A receive not yet matched (in-process backends).
    Recv { buf: *mut f64, len: usize, src: usize, tag: i32 },
    /// Already complete.
    Done,
}

/// Counters of communication done so far on this rank (for performance summaries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommStats {
    /// Point-to-point messages sent.
    pub messages: u64,
    /// Bytes sent point to point.
    pub bytes: u64,
    /// Collective reductions (allreduce, broadcast, gather).
    pub reductions: u64,
}

/// Interior-mutable [`CommStats`] kept by each backend.
#[derive(Debug, Default)]
pub(crate) struct StatCells {
    messages: Cell<u64>,
    bytes: Cell<u64>,
    reductions: Cell<u64>,
}

impl StatCells {
    pub(crate) fn send(&self, len: usize) {
        self.messages.set(self.messages.get() + 1);
        self.bytes.set(self.bytes.get() + (len * 8) as u64);
    }
    pub(crate) fn reduction(&self) {
        self.reductions.set(self.reductions.get() + 1);
    }
    pub(crate) fn get(&self) -> CommStats {
        CommStats { messages: self.messages.get(), bytes: self.bytes.get(), reductions: self.reductions.get() }
    }
}

/// A group of ranks that exchange messages: the only way physics code communicates.
///
/// Every collective must be called by all ranks in the same order. Decide failures
/// collectively (e.g. [`Comm::any`]) before entering a collective, so that one rank
/// never leaves the others waiting.
pub trait Comm {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;

    /// Starts receiving `len` values from `src` with `tag` into `buf`.
    ///
    /// # Safety
    /// `buf..buf+len` must stay valid and untouched until the request completes in
    /// [`Comm::wait_all`].
    unsafe fn irecv(&self, buf: *mut f64, len: usize, src: usize, tag: i32) -> Request;

    /// Starts sending `len` values at `buf` to `dest` with `tag`.
    ///
    /// # Safety
    /// `buf..buf+len` must stay valid and unmodified until the request completes in
    /// [`Comm::wait_all`].
    unsafe fn isend(&self, buf: *const f64, len: usize, dest: usize, tag: i32) -> Request;

    /// Completes every request in `reqs` and empties it (its capacity is kept).
    fn wait_all(&self, reqs: &mut Vec<Request>);

    /// Element-wise reduction of `values` over all ranks, result on every rank.
    fn allreduce_f64(&self, values: &mut [f64], op: ReduceOp);
    /// Element-wise reduction of `values` over all ranks, result on every rank.
    fn allreduce_u64(&self, values: &mut [u64], op: ReduceOp);
    /// Replaces `data` on every rank by `root`'s `data`.
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>);
    /// Collects every rank's `data` (any length) on `root`, in rank order.
    fn gather_f64(&self, root: usize, data: &[f64]) -> Option<Vec<Vec<f64>>>;
    /// Waits for all ranks.
    fn barrier(&self);

    /// The raw MPI communicator, when this backend is MPI (used by parallel HDF5).
    fn mpi_raw(&self) -> Option<::mpi::ffi::MPI_Comm> {
        None
    }

    /// Communication done so far by this rank.
    fn stats(&self) -> CommStats;

    /// Sum of one value over all ranks.
    fn sum(&self, x: f64) -> f64 {
        let mut v = [x];
        self.allreduce_f64(&mut v, ReduceOp::Sum);
        v[0]
    }

    /// Maximum of one value over all ranks.
    fn max(&self, x: f64) -> f64 {
        let mut v = [x];
        self.allreduce_f64(&mut v, ReduceOp::Max);
        v[0]
    }

    /// True on every rank when `flag` is true on any rank: the agreement step before a
    /// collective that some rank may not be able to enter.
    fn any(&self, flag: bool) -> bool {
        let mut v = [flag as u64];
        self.allreduce_u64(&mut v, ReduceOp::Max);
        v[0] != 0
    }

    /// Lowest rank on which `flag` is true, if any (to pick who reports an error).
    fn first_rank_with(&self, flag: bool) -> Option<usize> {
        let mut v = [if flag { self.rank() as u64 } else { u64::MAX }];
        self.allreduce_u64(&mut v, ReduceOp::Min);
        (v[0] != u64::MAX).then_some(v[0] as usize)
    }
}

/// Makes a per-rank result collective: if any rank failed, every rank returns an
/// error, and the message of the lowest failing rank is the one every rank sees
/// (built into an error by `wrap` on the ranks that did not fail themselves).
/// Call before any collective operation that a failed rank could not enter.
pub fn agree<T, E: std::fmt::Display>(comm: &dyn Comm, res: Result<T, E>, wrap: impl FnOnce(String) -> E) -> Result<T, E> {
    match comm.first_rank_with(res.is_err()) {
        None => res,
        Some(first) => {
            let mut msg = match (&res, comm.rank() == first) {
                (Err(e), true) => e.to_string().into_bytes(),
                _ => Vec::new(),
            };
            comm.broadcast_bytes(first, &mut msg);
            match res {
                Err(e) if comm.rank() == first => Err(e),
                _ => Err(wrap(String::from_utf8_lossy(&msg).into_owned())),
            }
        }
    }
}
