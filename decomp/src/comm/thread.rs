//! N ranks as threads in one process, for fast multi-rank tests without MPI.
use super::{Comm, CommStats, ReduceOp, Request, RequestKind, StatCells};
use std::sync::{Arc, Condvar, Mutex};

struct Message {
    src: usize,
    tag: i32,
    data: Vec<f64>,
}

/// State shared by the ranks of one [`ThreadComm`] group.
struct Shared {
    size: usize,
    /// One mailbox per destination rank.
    mailboxes: Vec<(Mutex<Vec<Message>>, Condvar)>,
    /// Slots for collectives plus a generation-counting rendezvous.
    slots: Mutex<Rendezvous>,
    turn: Condvar,
}

struct Rendezvous {
    data: Vec<Vec<u8>>,
    arrived: usize,
    generation: u64,
    /// Set when a rank panicked, so the others fail instead of waiting forever.
    aborted: bool,
}

/// One rank of a group of in-process ranks, each running on its own thread.
///
/// Point-to-point messages keep MPI's order between a pair of ranks for one tag;
/// reductions combine contributions in rank order, so results are deterministic.
pub struct ThreadComm {
    rank: usize,
    shared: Arc<Shared>,
    stats: StatCells,
}

/// Marks the group aborted when a rank's thread unwinds.
struct AbortOnPanic(Arc<Shared>);

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.slots.lock().unwrap_or_else(|e| e.into_inner()).aborted = true;
            self.0.turn.notify_all();
            for (_, cv) in &self.0.mailboxes {
                cv.notify_all();
            }
        }
    }
}

impl ThreadComm {
    /// Runs `f` on `n` ranks, each on its own thread, and returns their results in rank
    /// order. A panic on any rank fails the whole group (and is re-raised here).
    pub fn run<R: Send>(n: usize, f: impl Fn(&ThreadComm) -> R + Sync) -> Vec<R> {
        assert!(n > 0);
        let shared = Arc::new(Shared {
            size: n,
            mailboxes: (0..n).map(|_| (Mutex::new(Vec::new()), Condvar::new())).collect(),
            slots: Mutex::new(Rendezvous { data: vec![Vec::new(); n], arrived: 0, generation: 0, aborted: false }),
            turn: Condvar::new(),
        });
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|rank| {
                    let shared = shared.clone();
                    let f = &f;
                    s.spawn(move || {
                        let _guard = AbortOnPanic(shared.clone());
                        let comm = ThreadComm { rank, shared, stats: StatCells::default() };
                        f(&comm)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    }

    /// Every rank contributes `mine`; every rank gets all contributions in rank order.
    fn allgather_bytes(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let sh = &*self.shared;
        let mut st = sh.slots.lock().unwrap();
        st.data[self.rank] = mine;
        // Phase 1: wait until all have deposited.
        st = self.rendezvous(st);
        let all = st.data.clone();
        // Phase 2: nobody may overwrite the slots until everyone has read them.
        drop(self.rendezvous(st));
        all
    }

    /// Waits, holding the slot lock between wake-ups, until every rank has arrived at
    /// this generation of the rendezvous.
    fn rendezvous<'a>(&'a self, mut st: std::sync::MutexGuard<'a, Rendezvous>) -> std::sync::MutexGuard<'a, Rendezvous> {
        let sh = &*self.shared;
        st.arrived += 1;
        let gen = st.generation;
        if st.arrived == sh.size {
            st.arrived = 0;
            st.generation += 1;
            sh.turn.notify_all();
        } else {
            while st.generation == gen {
                assert!(!st.aborted, "another rank panicked");
                st = sh.turn.wait(st).unwrap();
            }
        }
        st
    }
}

fn f64s_to_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_to_f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    unsafe fn irecv(&self, buf: *mut f64, len: usize, src: usize, tag: i32) -> Request {
        Request(RequestKind::Recv { buf, len, src, tag })
    }
    unsafe fn isend(&self, buf: *const f64, len: usize, dest: usize, tag: i32) -> Request {
        // SAFETY: the caller guarantees buf..buf+len is valid.
        let data = unsafe { std::slice::from_raw_parts(buf, len) }.to_vec();
        self.stats.send(len);
        let (mb, cv) = &self.shared.mailboxes[dest];
        mb.lock().unwrap().push(Message { src: self.rank, tag, data });
        cv.notify_all();
        Request(RequestKind::Done)
    }
    fn wait_all(&self, reqs: &mut Vec<Request>) {
        let (mb, cv) = &self.shared.mailboxes[self.rank];
        for r in reqs.drain(..) {
            if let RequestKind::Recv { buf, len, src, tag } = r.0 {
                let mut q = mb.lock().unwrap();
                let msg = loop {
                    if let Some(pos) = q.iter().position(|m| m.src == src && m.tag == tag) {
                        break q.remove(pos);
                    }
                    assert!(!self.shared.slots.lock().unwrap_or_else(|e| e.into_inner()).aborted, "another rank panicked");
                    q = cv.wait_timeout(q, std::time::Duration::from_millis(100)).unwrap().0;
                };
                assert_eq!(msg.data.len(), len, "message length mismatch from rank {src} tag {tag}");
                // SAFETY: the caller of irecv guarantees buf is valid for len values.
                unsafe { std::ptr::copy_nonoverlapping(msg.data.as_ptr(), buf, len) };
            }
        }
    }
    fn allreduce_f64(&self, values: &mut [f64], op: ReduceOp) {
        self.stats.reduction();
        let all = self.allgather_bytes(f64s_to_bytes(values));
        let mut acc = bytes_to_f64s(&all[0]);
        for other in &all[1..] {
            for (a, b) in acc.iter_mut().zip(bytes_to_f64s(other)) {
                *a = op.apply_f64(*a, b);
            }
        }
        values.copy_from_slice(&acc);
    }
    fn allreduce_u64(&self, values: &mut [u64], op: ReduceOp) {
        self.stats.reduction();
        let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let all = self.allgather_bytes(bytes);
        for (i, v) in values.iter_mut().enumerate() {
            let mut acc = u64::from_le_bytes(all[0][8 * i..8 * i + 8].try_into().unwrap());
            for other in &all[1..] {
                acc = op.apply_u64(acc, u64::from_le_bytes(other[8 * i..8 * i + 8].try_into().unwrap()));
            }
            *v = acc;
        }
    }
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) {
        self.stats.reduction();
        let mine = if self.rank == root { data.clone() } else { Vec::new() };
        let mut all = self.allgather_bytes(mine);
        *data = std::mem::take(&mut all[root]);
    }
    fn gather_f64(&self, root: usize, data: &[f64]) -> Option<Vec<Vec<f64>>> {
        self.stats.reduction();
        let all = self.allgather_bytes(f64s_to_bytes(data));
        (self.rank == root).then(|| all.iter().map(|b| bytes_to_f64s(b)).collect())
    }
    fn barrier(&self) {
        self.allgather_bytes(Vec::new());
    }
    fn stats(&self) -> CommStats {
        self.stats.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_and_messages() {
        for n in 1..=5 {
            let out = ThreadComm::run(n, |c| {
                let mut v = [c.rank() as f64, 1.0];
                c.allreduce_f64(&mut v, ReduceOp::Sum);
                let mut m = [c.rank() as u64];
                c.allreduce_u64(&mut m, ReduceOp::Max);
                // Ring: send rank to the right, receive from the left.
                let right = (c.rank() + 1) % c.size();
                let left = (c.rank() + c.size() - 1) % c.size();
                let send = [c.rank() as f64; 3];
                let mut recv = [0.0; 3];
                let mut reqs = Vec::new();
                unsafe {
                    reqs.push(c.irecv(recv.as_mut_ptr(), 3, left, 7));
                    reqs.push(c.isend(send.as_ptr(), 3, right, 7));
                }
                c.wait_all(&mut reqs);
                let mut b = if c.rank() == 0 { vec![42u8, 43] } else { vec![] };
                c.broadcast_bytes(0, &mut b);
                let g = c.gather_f64(0, &vec![c.rank() as f64; c.rank()]);
                (v, m[0], recv[0], b, g, c.any(c.rank() == n - 1), c.first_rank_with(c.rank() >= 1))
            });
            for (r, (v, m, left, b, g, any, first)) in out.into_iter().enumerate() {
                assert_eq!(v, [(n * (n - 1) / 2) as f64, n as f64]);
                assert_eq!(m, (n - 1) as u64);
                assert_eq!(left, ((r + n - 1) % n) as f64);
                assert_eq!(b, vec![42, 43]);
                assert_eq!(g.is_some(), r == 0);
                if let Some(g) = g {
                    assert_eq!(g.iter().map(|x| x.len()).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
                }
                assert!(any);
                assert_eq!(first, if n > 1 { Some(1) } else { None });
            }
        }
    }

    #[test]
    fn panic_on_one_rank_does_not_hang() {
        let r = std::panic::catch_unwind(|| {
            ThreadComm::run(3, |c| {
                if c.rank() == 1 {
                    panic!("rank 1 fails");
                }
                c.barrier();
            })
        });
        assert!(r.is_err());
    }
}
