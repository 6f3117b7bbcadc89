//! Halo exchange against raw MPI messages of the same byte counts between the same peers.
//!
//! ```text
//! cargo build --release -p decomp --example halo_bench
//! mpirun -n 2 target/release/examples/halo_bench [--rounds R] [--ms T]
//! ```
//!
//! For each case, per exchange, interleaved (one trial of every variant in turn, `R`
//! rounds, each trial ~T ms of back-to-back exchanges, time = slowest rank, median):
//! - `halo`: `HaloPlan::exchange` (pack, Irecv/Isend, wait, unpack);
//! - `raw`: the same messages (count, sizes, peers, tags) from pre-packed contiguous
//!   buffers through `Comm::irecv/isend/wait_all`, no copies;
//! - `raw+copy`: `raw` plus the same pack and unpack copies as the plan does;
//! - `raw+copy'`: `raw+copy` with rows of 1-2 values (x faces) copied without a
//!   `memcpy` call per row (a candidate fix for `HaloPlan`'s pack/unpack);
//! - `copy`: the pack and unpack copies alone (no MPI);
//! - `dtype`: no explicit copies: MPI subarray datatypes on the field storage
//!   (MPI_Type_create_subarray, MPI_Isend/Irecv/Waitall), i.e. MPI packs itself.
//!
//! Overhead = (halo - raw) / raw; the copy share is (raw+copy - raw) / raw. Medians and
//! best trials are both printed: on a shared 2-core machine a trial in which one rank is
//! descheduled adds the same wait to every variant, which shrinks the ratios.
use decomp::comm::{Comm, MpiComm, Request};
use decomp::{BlockLayout, Field, Grid, HaloPlan, Stencil};
use mpi::ffi;
use std::time::Instant;

struct Case {
    name: &'static str,
    /// Cells per rank's block (the grid is this times the process grid).
    block: &'static [usize],
    ghost: usize,
    stencil: Stencil,
    periodic: bool,
}

const CASES: &[Case] = &[
    Case { name: "2d 2048^2 g1 star", block: &[2048, 2048], ghost: 1, stencil: Stencil::Star, periodic: false },
    Case { name: "3d 128^3 g1 star", block: &[128, 128, 128], ghost: 1, stencil: Stencil::Star, periodic: false },
    Case { name: "3d 128^3 g1 star periodic", block: &[128, 128, 128], ghost: 1, stencil: Stencil::Star, periodic: true },
    Case { name: "2d 2048^2 g2 box periodic", block: &[2048, 2048], ghost: 2, stencil: Stencil::Box, periodic: true },
    Case { name: "3d 128^3 g2 box periodic", block: &[128, 128, 128], ghost: 2, stencil: Stencil::Box, periodic: true },
];

/// One message of the exchange, as `HaloPlan::new` builds it (storage coordinates).
struct Msg {
    peer: usize,
    send_tag: i32,
    recv_tag: i32,
    send: ([usize; 3], [usize; 3]),
    recv: ([usize; 3], [usize; 3]),
    offset: usize,
    len: usize,
}

/// The messages of `rank`, derived independently of `HaloPlan` (same order and tags).
fn messages(layout: &BlockLayout, rank: usize, ghost: usize, stencil: Stencil, tag_base: i32) -> Vec<Msg> {
    let dims = layout.grid.dims;
    let n = layout.blocks[rank].shape();
    let g = [ghost, ghost, if dims == 3 { ghost } else { 0 }];
    let zr: &[i32] = if dims == 3 { &[-1, 0, 1] } else { &[0] };
    let code = |d: [i32; 3]| (d[0] + 1) + 3 * (d[1] + 1) + 9 * (d[2] + 1);
    let mut out = Vec::new();
    let mut offset = 0;
    for &dz in zr {
        for dy in -1..=1 {
            for dx in -1..=1 {
                let d = [dx, dy, dz];
                let nz = d.iter().filter(|&&c| c != 0).count();
                if nz == 0 || (stencil == Stencil::Star && nz > 1) {
                    continue;
                }
                let Some(peer) = layout.neighbour(rank, d) else { continue };
                let (mut s, mut r) = (([0; 3], [0; 3]), ([0; 3], [0; 3]));
                for a in 0..3 {
                    let (sa, ra) = match d[a] {
                        0 => ((g[a], g[a] + n[a]), (g[a], g[a] + n[a])),
                        1 => ((n[a], n[a] + g[a]), (g[a] + n[a], n[a] + 2 * g[a])),
                        _ => ((g[a], 2 * g[a]), (0, g[a])),
                    };
                    (s.0[a], s.1[a], r.0[a], r.1[a]) = (sa.0, sa.1, ra.0, ra.1);
                }
                let len = (0..3).map(|a| s.1[a] - s.0[a]).product();
                out.push(Msg {
                    peer,
                    send_tag: tag_base + code(d),
                    recv_tag: tag_base + code([-d[0], -d[1], -d[2]]),
                    send: s,
                    recv: r,
                    offset,
                    len,
                });
                offset += len;
            }
        }
    }
    out
}

/// Copies one row segment; with `short`, rows of 1 or 2 values (x faces) are copied
/// by plain loads and stores instead of a `memcpy` call per row.
#[inline(always)]
fn copy_row(dst: &mut [f64], src: &[f64], short: bool) {
    match (short, dst.len()) {
        (true, 1) => dst[0] = src[0],
        (true, 2) => {
            dst[0] = src[0];
            dst[1] = src[1];
        }
        _ => dst.copy_from_slice(src),
    }
}

fn pack(msgs: &[Msg], p: [usize; 3], src: &[f64], buf: &mut [f64], short: bool) {
    for m in msgs {
        let (lo, hi) = m.send;
        let mut o = m.offset;
        let len = hi[0] - lo[0];
        for k in lo[2]..hi[2] {
            for j in lo[1]..hi[1] {
                let base = (k * p[1] + j) * p[0];
                copy_row(&mut buf[o..o + len], &src[base + lo[0]..base + hi[0]], short);
                o += len;
            }
        }
    }
}

fn unpack(msgs: &[Msg], p: [usize; 3], buf: &[f64], dst: &mut [f64], short: bool) {
    for m in msgs {
        let (lo, hi) = m.recv;
        let mut o = m.offset;
        let len = hi[0] - lo[0];
        for k in lo[2]..hi[2] {
            for j in lo[1]..hi[1] {
                let base = (k * p[1] + j) * p[0];
                copy_row(&mut dst[base + lo[0]..base + hi[0]], &buf[o..o + len], short);
                o += len;
            }
        }
    }
}

/// Posts every receive, then every send, then waits (the order `HaloPlan` uses).
fn raw_exchange(comm: &dyn Comm, msgs: &[Msg], send: &[f64], recv: &mut [f64], reqs: &mut Vec<Request>) {
    for m in msgs {
        // SAFETY: recv outlives the requests, which complete in wait_all below.
        reqs.push(unsafe { comm.irecv(recv.as_mut_ptr().add(m.offset), m.len, m.peer, m.recv_tag) });
    }
    for m in msgs {
        // SAFETY: as above, for send.
        reqs.push(unsafe { comm.isend(send.as_ptr().add(m.offset), m.len, m.peer, m.send_tag) });
    }
    comm.wait_all(reqs);
}

/// Committed MPI subarray datatypes for the send and receive region of each message.
struct Dtypes {
    send: Vec<ffi::MPI_Datatype>,
    recv: Vec<ffi::MPI_Datatype>,
    reqs: Vec<ffi::MPI_Request>,
}

fn subarray(p: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> ffi::MPI_Datatype {
    // C order: z, y, x.
    let sizes = [p[2] as i32, p[1] as i32, p[0] as i32];
    let sub = [(hi[2] - lo[2]) as i32, (hi[1] - lo[1]) as i32, (hi[0] - lo[0]) as i32];
    let starts = [lo[2] as i32, lo[1] as i32, lo[0] as i32];
    // SAFETY: plain MPI calls on valid arrays; the type is committed before use.
    unsafe {
        let mut t: ffi::MPI_Datatype = ffi::RSMPI_DATATYPE_NULL;
        let rc = ffi::MPI_Type_create_subarray(
            3,
            sizes.as_ptr(),
            sub.as_ptr(),
            starts.as_ptr(),
            ffi::MPI_ORDER_C as i32,
            ffi::RSMPI_DOUBLE,
            &mut t,
        );
        assert_eq!(rc, 0);
        assert_eq!(ffi::MPI_Type_commit(&mut t), 0);
        t
    }
}

impl Dtypes {
    fn new(msgs: &[Msg], p: [usize; 3]) -> Self {
        Dtypes {
            send: msgs.iter().map(|m| subarray(p, m.send.0, m.send.1)).collect(),
            recv: msgs.iter().map(|m| subarray(p, m.recv.0, m.recv.1)).collect(),
            reqs: Vec::with_capacity(2 * msgs.len()),
        }
    }

    fn exchange(&mut self, comm: ffi::MPI_Comm, msgs: &[Msg], field: &mut [f64]) {
        let base = field.as_mut_ptr();
        for (m, t) in msgs.iter().zip(&self.recv) {
            // SAFETY: the datatype addresses cells inside `field`, which outlives the wait.
            unsafe {
                let mut r = ffi::RSMPI_REQUEST_NULL;
                assert_eq!(ffi::MPI_Irecv(base.cast(), 1, *t, m.peer as i32, m.recv_tag, comm, &mut r), 0);
                self.reqs.push(r);
            }
        }
        for (m, t) in msgs.iter().zip(&self.send) {
            // SAFETY: as above; send regions (interior) and receive regions (ghosts) are disjoint.
            unsafe {
                let mut r = ffi::RSMPI_REQUEST_NULL;
                assert_eq!(ffi::MPI_Isend(base as *const _, 1, *t, m.peer as i32, m.send_tag, comm, &mut r), 0);
                self.reqs.push(r);
            }
        }
        // SAFETY: every request in reqs was just started.
        unsafe {
            assert_eq!(ffi::MPI_Waitall(self.reqs.len() as i32, self.reqs.as_mut_ptr(), ffi::RSMPI_STATUSES_IGNORE), 0);
        }
        self.reqs.clear();
    }
}

impl Drop for Dtypes {
    fn drop(&mut self) {
        for t in self.send.iter_mut().chain(self.recv.iter_mut()) {
            // SAFETY: committed types no longer used by any pending request.
            unsafe { ffi::MPI_Type_free(t) };
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Halo,
    Raw,
    RawCopy,
    RawShort,
    Copy,
    Dtype,
}

const VARIANTS: [(Variant, &str); 6] = [
    (Variant::Halo, "halo"),
    (Variant::Raw, "raw"),
    (Variant::RawCopy, "raw+copy"),
    (Variant::RawShort, "raw+copy'"),
    (Variant::Copy, "copy"),
    (Variant::Dtype, "dtype"),
];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let comm = MpiComm::init().expect("MPI already initialised");
    let raw_comm = comm.mpi_raw().unwrap();
    let (rank, size) = (comm.rank(), comm.size());
    let rounds: usize = arg("--rounds", 15);
    let trial_ms: f64 = arg("--ms", 20.0);
    if rank == 0 {
        println!(
            "halo_bench: {size} rank(s), {rounds} rounds, ~{trial_ms} ms per trial; per-exchange medians in µs (slowest rank per trial)"
        );
    }
    for case in CASES {
        let dims = case.block.len();
        // Split the slowest axis over the ranks; every block is `case.block`.
        let mut procs = vec![1; dims];
        procs[dims - 1] = size;
        let cells: Vec<usize> = (0..dims).map(|a| case.block[a] * procs[a]).collect();
        let grid = Grid::new(&cells, &vec![0.0; dims], &vec![1.0; dims], &vec![case.periodic; dims]);
        let layout = BlockLayout::new(&grid, &procs, case.ghost).unwrap();
        let mut field = Field::zeros(layout.blocks[rank], dims, case.ghost);
        for (i, v) in field.as_slice_mut().iter_mut().enumerate() {
            *v = (rank * 1_000_000_000 + i) as f64;
        }
        let p = field.padded_shape();
        let mut plan = HaloPlan::new(&layout, rank, case.ghost, case.stencil, 0).unwrap();
        let msgs = messages(&layout, rank, case.ghost, case.stencil, 64);
        let volume: usize = msgs.iter().map(|m| m.len).sum();
        // The plan turns messages to itself into copies within the field; the raw
        // variants still send them, so they move the same bytes as the plan does.
        assert_eq!(
            (msgs.len(), volume),
            (plan.message_count() + plan.local_count(), plan.volume() + plan.local_volume()),
            "message list differs from the plan"
        );
        let mut send = vec![0.0; volume];
        let mut recv = vec![0.0; volume];
        pack(&msgs, p, field.as_slice(), &mut send, false);
        let mut reqs = Vec::with_capacity(2 * msgs.len());
        let mut dt = Dtypes::new(&msgs, p);

        // Every variant that fills ghosts must fill them exactly as the plan does.
        let mut reference = field.clone();
        plan.exchange(&comm, &mut reference);
        for v in [Variant::RawCopy, Variant::RawShort, Variant::Dtype] {
            let mut f = field.clone();
            if v != Variant::Dtype {
                let short = v == Variant::RawShort;
                pack(&msgs, p, f.as_slice(), &mut send, short);
                raw_exchange(&comm, &msgs, &send, &mut recv, &mut reqs);
                unpack(&msgs, p, &recv, f.as_slice_mut(), short);
            } else {
                dt.exchange(raw_comm, &msgs, f.as_slice_mut());
            }
            assert!(
                promised(&f, case.stencil) == promised(&reference, case.stencil),
                "{}: variant does not reproduce the halo exchange",
                case.name
            );
        }

        let mut run = |v: Variant, reps: usize| -> f64 {
            comm.barrier();
            let t0 = Instant::now();
            for _ in 0..reps {
                match v {
                    Variant::Halo => plan.exchange(&comm, &mut field),
                    Variant::Raw => raw_exchange(&comm, &msgs, &send, &mut recv, &mut reqs),
                    Variant::RawCopy | Variant::RawShort => {
                        let short = v == Variant::RawShort;
                        pack(&msgs, p, field.as_slice(), &mut send, short);
                        raw_exchange(&comm, &msgs, &send, &mut recv, &mut reqs);
                        unpack(&msgs, p, &recv, field.as_slice_mut(), short);
                    }
                    Variant::Copy => {
                        pack(&msgs, p, field.as_slice(), &mut send, false);
                        unpack(&msgs, p, &recv, field.as_slice_mut(), false);
                    }
                    Variant::Dtype => dt.exchange(raw_comm, &msgs, field.as_slice_mut()),
                }
            }
            comm.max(t0.elapsed().as_secs_f64()) / reps as f64
        };
        // Repetitions per trial from one calibration pass (agreed: max over ranks).
        let reps: Vec<usize> = VARIANTS
            .iter()
            .map(|&(v, _)| {
                run(v, 3);
                let t = run(v, 10);
                ((trial_ms * 1e-3 / t).ceil() as usize).clamp(5, 100_000)
            })
            .collect();
        let mut samples = vec![Vec::with_capacity(rounds); VARIANTS.len()];
        for _ in 0..rounds {
            for (i, &(v, _)) in VARIANTS.iter().enumerate() {
                samples[i].push(run(v, reps[i]));
            }
        }
        let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        // Samples are sorted by median(): [0] is the best trial.
        let best: Vec<f64> = samples.iter().map(|s| s[0]).collect();
        if rank == 0 {
            let peers: std::collections::BTreeSet<usize> = msgs.iter().map(|m| m.peer).collect();
            let to_self = msgs.iter().filter(|m| m.peer == rank).count();
            println!(
                "\n== {} (procs {:?}): rank 0 sends {} message(s) ({} to itself), {:.1} KiB in all, peers {:?} ==",
                case.name,
                procs,
                msgs.len(),
                to_self,
                (volume * 8) as f64 / 1024.0,
                peers
            );
            println!("{:<10}{:>12}{:>14}{:>12}{:>14}", "variant", "median µs", "vs raw", "best µs", "vs raw");
            for (i, &(_, name)) in VARIANTS.iter().enumerate() {
                let rel = |v: &[f64]| if i == 1 { String::new() } else { format!("{:+.1}%", 100.0 * (v[i] - v[1]) / v[1]) };
                println!("{:<10}{:>12.1}{:>14}{:>12.1}{:>14}", name, med[i] * 1e6, rel(&med), best[i] * 1e6, rel(&best));
            }
            let pct = |a: f64, b: f64| 100.0 * (a - b) / b;
            println!(
                "overhead halo vs raw: {:+.1}% median, {:+.1}% best; copies (raw+copy vs raw) {:+.1}% / {:+.1}%; halo vs raw+copy {:+.1}% / {:+.1}%",
                pct(med[0], med[1]),
                pct(best[0], best[1]),
                pct(med[2], med[1]),
                pct(best[2], best[1]),
                pct(med[0], med[2]),
                pct(best[0], best[2])
            );
        }
    }
}

/// The values an exchange for `stencil` defines: every cell but, for a star stencil,
/// edge and corner ghosts (the blocking exchange may carry the neighbour's own ghosts
/// into those, see `Stencil::Star`).
fn promised(f: &Field, stencil: Stencil) -> Vec<f64> {
    let (p, g, n) = (f.padded_shape(), f.ghost, f.shape());
    let mut out = Vec::with_capacity(f.as_slice().len());
    for k in 0..p[2] {
        for j in 0..p[1] {
            for i in 0..p[0] {
                let outside = [i, j, k].iter().enumerate().filter(|&(a, &l)| l < g[a] || l >= g[a] + n[a]).count();
                if stencil == Stencil::Box || outside <= 1 {
                    out.push(f.as_slice()[(k * p[1] + j) * p[0] + i]);
                }
            }
        }
    }
    out
}
