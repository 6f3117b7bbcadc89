//! One rank, no MPI.
use super::{Comm, CommStats, Request, RequestKind, StatCells};
use std::cell::RefCell;
use std::collections::VecDeque;

/// A single-rank communicator without MPI. Messages to itself (periodic axes with one
/// process) go through an in-memory queue.
#[derive(Debug, Default)]
pub struct SerialComm {
    queue: RefCell<VecDeque<(i32, Vec<f64>)>>,
    stats: StatCells,
}

impl SerialComm {
    /// A new single-rank communicator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Comm for SerialComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    unsafe fn irecv(&self, buf: *mut f64, len: usize, src: usize, tag: i32) -> Request {
        assert_eq!(src, 0, "SerialComm has one rank");
        Request(RequestKind::Recv { buf, len, src, tag })
    }
    unsafe fn isend(&self, buf: *const f64, len: usize, dest: usize, tag: i32) -> Request {
        assert_eq!(dest, 0, "SerialComm has one rank");
        // SAFETY: the caller guarantees buf..buf+len is valid.
        let data = unsafe { std::slice::from_raw_parts(buf, len) }.to_vec();
        self.stats.send(len);
        self.queue.borrow_mut().push_back((tag, data));
        Request(RequestKind::Done)
    }
    fn wait_all(&self, reqs: &mut Vec<Request>) {
        for r in reqs.drain(..) {
            if let RequestKind::Recv { buf, len, tag, .. } = r.0 {
                let mut q = self.queue.borrow_mut();
                let pos = q
                    .iter()
                    .position(|(t, _)| *t == tag)
                    .unwrap_or_else(|| panic!("SerialComm: receive with tag {tag} has no matching send"));
                let (_, data) = q.remove(pos).expect("position is valid");
                assert_eq!(data.len(), len, "message length mismatch");
                // SAFETY: the caller of irecv guarantees buf is valid for len values.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, len) };
            }
        }
    }
    fn allreduce_f64(&self, _values: &mut [f64], _op: super::ReduceOp) {
        self.stats.reduction();
    }
    fn allreduce_u64(&self, _values: &mut [u64], _op: super::ReduceOp) {
        self.stats.reduction();
    }
    fn broadcast_bytes(&self, _root: usize, _data: &mut Vec<u8>) {}
    fn gather_f64(&self, _root: usize, data: &[f64]) -> Option<Vec<Vec<f64>>> {
        Some(vec![data.to_vec()])
    }
    fn barrier(&self) {}
    fn stats(&self) -> CommStats {
        self.stats.get()
    }
}
