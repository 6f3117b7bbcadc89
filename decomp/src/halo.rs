//! Halo (ghost-layer) exchange between neighbouring blocks.
//!
//! A [`HaloPlan`] is computed once for a layout, rank, ghost width and stencil shape
//! (the pattern AMReX caches as `FBCache`) and reused for every exchange: it owns
//! its pack/unpack buffers and request list, so an exchange allocates nothing.
//! Exchanges are split-phase: [`HaloPlan::begin`] packs and posts, interior work
//! runs, [`HaloPlan::finish`] waits and unpacks. The blocking [`HaloPlan::exchange`]
//! holds the field exclusively throughout, so it sends and receives the regions that
//! are one contiguous run of storage (a face of a single row, e.g. a 2D block's y
//! faces) in place, without the copies; so too, for star stencils, the faces that
//! are one run but for the ghosts of the rows they cross (a 3D block's z faces when
//! no rank has x or y neighbours), carrying those few ghosts along.
use crate::comm::{Comm, Request};
use crate::error::{Error, Result};
use crate::field::Field;
use crate::layout::BlockLayout;

/// Which ghost cells a stencil reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stencil {
    /// Faces only (5-point / 7-point stencils). Corner and edge ghosts are not part of
    /// it: the split-phase exchange leaves them alone; the blocking one may write into
    /// edge ghosts next to a face it receives as one storage span whatever the
    /// neighbour holds in its own ghosts there. Star-stencil code never reads them.
    Star,
    /// Faces, edges and corners (9-point / 27-point stencils).
    Box,
}

/// A box in storage (padded, ghost-inclusive) coordinates, half-open, (x, y, z).
#[derive(Clone, Copy, Debug)]
struct Region {
    lo: [usize; 3],
    hi: [usize; 3],
}

impl Region {
    fn count(&self) -> usize {
        (0..3).map(|a| self.hi[a] - self.lo[a]).product()
    }

    /// The storage offset of the region's first value if the region is one contiguous
    /// run of storage with padded extent `p` (a single row, or whole rows of a single
    /// plane, or whole planes).
    fn run_start(&self, p: [usize; 3]) -> Option<usize> {
        let ext = |a: usize| self.hi[a] - self.lo[a];
        let full = |a: usize| self.lo[a] == 0 && self.hi[a] == p[a];
        let contiguous = (ext(1) == 1 && ext(2) == 1) || (full(0) && ext(2) == 1) || (full(0) && full(1));
        contiguous.then(|| self.start(p))
    }

    fn start(&self, p: [usize; 3]) -> usize {
        (self.lo[2] * p[1] + self.lo[1]) * p[0] + self.lo[0]
    }

    /// The storage run from the region's first value to its last: (offset, length).
    fn span(&self, p: [usize; 3]) -> (usize, usize) {
        let last = ((self.hi[2] - 1) * p[1] + self.hi[1] - 1) * p[0] + self.hi[0] - 1;
        (self.start(p), last + 1 - self.start(p))
    }
}

/// Largest share of a face message's values that may be ghost cells carried along when
/// the face is sent as one span of storage instead of being packed: 1/4 (a 3D z face of
/// ghost width 1 carries 2 x-ghosts per row, 1.6 % for rows of 128).
const SPAN_SLACK: usize = 4;

/// May a face message along `axis` of a star exchange travel as the storage span from
/// its first to its last value ([`Region::span`])? The cells in between that are not
/// part of the face are ghosts along the faster axes `b < axis`: on the sender, its own
/// ghosts next to the face; on the receiver, edge ghosts, which a star exchange does
/// not fill. That is safe when no message of this exchange writes those cells while
/// the span is in flight, i.e. no rank has a neighbour along any faster axis (one
/// process there, not periodic). This depends only on the layout, so both sides of
/// every message decide alike and the message lengths agree.
fn span_allowed(layout: &BlockLayout, stencil: Stencil, d: [i32; 3]) -> Option<usize> {
    let axes: Vec<usize> = (0..3).filter(|&a| d[a] != 0).collect();
    if stencil != Stencil::Star || axes.len() != 1 {
        return None;
    }
    let axis = axes[0];
    (0..axis.min(layout.grid.dims)).all(|b| layout.procs[b] == 1 && !layout.grid.periodic[b]).then_some(axis)
}

#[derive(Clone, Debug)]
struct Message {
    peer: usize,
    send_tag: i32,
    recv_tag: i32,
    send: Region,
    recv: Region,
    /// Offset of this message in the send and receive buffers.
    offset: usize,
    /// (storage offset, length) of a contiguous run of the field that covers the send
    /// (receive) region, when the blocking [`HaloPlan::exchange`] sends (receives) it in
    /// place: the region itself when it is one run, or the span from its first to its
    /// last value when only ghost cells nobody else writes meanwhile lie in between
    /// (see [`span_allowed`]). Both sides of a message agree on it.
    send_span: Option<(usize, usize)>,
    recv_span: Option<(usize, usize)>,
}

/// The precomputed exchange pattern of one rank for one field shape.
pub struct HaloPlan {
    messages: Vec<Message>,
    /// Exchanges with itself (a periodic axis with one process): (source, ghost)
    /// regions copied straight within the field, without buffers or messages.
    local: Vec<(Region, Region)>,
    send_buf: Vec<f64>,
    recv_buf: Vec<f64>,
    requests: Vec<Request>,
    padded: [usize; 3],
    in_flight: bool,
}

/// Calls `f(buffer offset, storage offset, row length)` for every x-row of region `r`
/// of storage with padded extent `p`, buffer offsets counting up from `offset`.
#[inline(always)]
fn for_rows(p: [usize; 3], r: Region, offset: usize, mut f: impl FnMut(usize, usize, usize)) {
    let len = r.hi[0] - r.lo[0];
    let mut o = offset;
    for k in r.lo[2]..r.hi[2] {
        for j in r.lo[1]..r.hi[1] {
            f(o, (k * p[1] + j) * p[0] + r.lo[0], len);
            o += len;
        }
    }
}

/// Copies one row. Rows of x faces hold only the ghost width (1 or 2 values): copy
/// those with plain stores, since a `memcpy` call per value made packing cost several
/// times the MPI transfer itself (docs/BENCHMARKS.md).
#[inline(always)]
fn copy_row(dst: &mut [f64], src: &[f64]) {
    match dst.len() {
        1 => dst[0] = src[0],
        2 => {
            dst[0] = src[0];
            dst[1] = src[1];
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Tag of the message travelling in direction `d`.
fn direction_code(d: [i32; 3]) -> i32 {
    (d[0] + 1) + 3 * (d[1] + 1) + 9 * (d[2] + 1)
}

impl HaloPlan {
    /// The plan for `rank` of `layout`, ghost width `ghost`, stencil shape `stencil`.
    /// `tag_base` separates plans whose exchanges are in flight at the same time
    /// (use multiples of 32).
    pub fn new(layout: &BlockLayout, rank: usize, ghost: usize, stencil: Stencil, tag_base: i32) -> Result<Self> {
        Self::with_width(layout, rank, ghost, ghost, stencil, tag_base)
    }

    /// A plan that fills only the innermost `width` ghost layers of fields with `ghost`
    /// layers (`width <= ghost`): multigrid levels keep a wider ghost ring for transfers
    /// but smooth with a width-1 exchange.
    pub fn with_width(layout: &BlockLayout, rank: usize, ghost: usize, width: usize, stencil: Stencil, tag_base: i32) -> Result<Self> {
        assert!(width <= ghost, "halo width {width} exceeds the ghost width {ghost}");
        let dims = layout.grid.dims;
        let block = layout.blocks[rank];
        let n = block.shape();
        let g = [ghost, ghost, if dims == 3 { ghost } else { 0 }];
        let w = [width, width, if dims == 3 { width } else { 0 }];
        for a in 0..dims {
            if n[a] < width {
                return Err(Error::Layout(format!(
                    "rank {rank} holds {} cells along {} but the ghost width is {width}; use fewer ranks",
                    n[a],
                    ["x", "y", "z"][a]
                )));
            }
        }
        let padded = [n[0] + 2 * g[0], n[1] + 2 * g[1], n[2] + 2 * g[2]];
        let zr: &[i32] = if dims == 3 { &[-1, 0, 1] } else { &[0] };
        let mut messages = Vec::new();
        let mut offset = 0;
        for &dz in zr {
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let d = [dx, dy, dz];
                    let nonzero = d.iter().filter(|&&c| c != 0).count();
                    if nonzero == 0 || (stencil == Stencil::Star && nonzero > 1) {
                        continue;
                    }
                    let Some(peer) = layout.neighbour(rank, d) else { continue };
                    let mut send = Region { lo: [0; 3], hi: [0; 3] };
                    let mut recv = send;
                    for a in 0..3 {
                        let (s, r) = match d[a] {
                            0 => ((g[a], g[a] + n[a]), (g[a], g[a] + n[a])),
                            1 => ((g[a] + n[a] - w[a], g[a] + n[a]), (g[a] + n[a], g[a] + n[a] + w[a])),
                            _ => ((g[a], g[a] + w[a]), (g[a] - w[a], g[a])),
                        };
                        send.lo[a] = s.0;
                        send.hi[a] = s.1;
                        recv.lo[a] = r.0;
                        recv.hi[a] = r.1;
                    }
                    let count = send.count();
                    let (send_span, recv_span) = match (send.run_start(padded), recv.run_start(padded)) {
                        (Some(s), Some(r)) => (Some((s, count)), Some((r, count))),
                        (s, r) => {
                            let (ss, rs) = (send.span(padded), recv.span(padded));
                            // Equal lengths on both sides: a face neighbour has the same
                            // extents along the other axes, so the same padded rows.
                            if span_allowed(layout, stencil, d).is_some() && ss.1 == rs.1 && ss.1 - count <= count / SPAN_SLACK {
                                (Some(ss), Some(rs))
                            } else {
                                (s.map(|s| (s, count)), r.map(|r| (r, count)))
                            }
                        }
                    };
                    messages.push(Message {
                        peer,
                        send_tag: tag_base + direction_code(d),
                        recv_tag: tag_base + direction_code([-d[0], -d[1], -d[2]]),
                        send,
                        recv,
                        offset,
                        send_span,
                        recv_span,
                    });
                    offset += count;
                }
            }
        }
        // A message to ourselves in direction d fills our ghosts on side -d: pair each
        // self-message's ghost region with the source region of the opposite direction.
        let local: Vec<(Region, Region)> = messages
            .iter()
            .filter(|m| m.peer == rank)
            .map(|m| {
                let partner =
                    messages.iter().find(|o| o.peer == rank && o.send_tag == m.recv_tag).expect("periodic self-neighbour is symmetric");
                (partner.send, m.recv)
            })
            .collect();
        messages.retain(|m| m.peer != rank);
        let mut offset = 0;
        for m in &mut messages {
            m.offset = offset;
            offset += m.send.count();
        }
        Ok(HaloPlan {
            requests: Vec::with_capacity(2 * messages.len()),
            local,
            messages,
            send_buf: vec![0.0; offset],
            recv_buf: vec![0.0; offset],
            padded,
            in_flight: false,
        })
    }

    /// Ghost values filled by copies within the field (periodic axes with one process).
    pub fn local_volume(&self) -> usize {
        self.local.iter().map(|(_, g)| g.count()).sum()
    }

    /// Number of exchanges with itself, done as copies within the field.
    pub fn local_count(&self) -> usize {
        self.local.len()
    }

    /// Number of messages sent per exchange.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Messages the blocking [`HaloPlan::exchange`] sends straight from the field,
    /// without packing.
    pub fn in_place_count(&self) -> usize {
        self.messages.iter().filter(|m| m.send_span.is_some()).count()
    }

    /// Values sent per exchange (ghost cells that travel along inside a storage span
    /// not counted).
    pub fn volume(&self) -> usize {
        self.send_buf.len()
    }

    fn check_shape(&self, field: &Field) {
        assert_eq!(field.padded_shape(), self.padded, "field does not match the halo plan's block");
    }

    /// Packs the boundary layers of `field` and posts all sends and receives.
    pub fn begin(&mut self, comm: &dyn Comm, field: &Field) {
        assert!(!self.in_flight, "halo exchange already in flight");
        self.check_shape(field);
        let src = field.as_slice();
        for m in 0..self.messages.len() {
            self.pack(m, src);
        }
        // SAFETY: no field pointer: every request uses the plan's buffers, which are
        // never resized and not touched until finish() completes them (Drop leaks them
        // if finish never runs).
        unsafe { self.post(comm, None) };
        self.in_flight = true;
    }

    /// Posts every receive, then every send: through the plan's buffers, or, given the
    /// field's storage `field`, in place for the messages whose region is one
    /// contiguous run.
    ///
    /// # Safety
    /// `field`, if given, points to the storage of a field of the plan's shape that
    /// nothing else reads or writes until the requests complete. Receive regions lie in
    /// its ghost layers, disjoint from every send region and from each other, so the
    /// requests themselves never overlap a write with another access. The spans of
    /// [`span_allowed`] add only ghost cells that no message of the plan writes.
    unsafe fn post(&mut self, comm: &dyn Comm, field: Option<*mut f64>) {
        for m in &self.messages {
            let (buf, len) = match (field, m.recv_span) {
                (Some(base), Some((at, len))) => (unsafe { base.add(at) }, len),
                _ => (unsafe { self.recv_buf.as_mut_ptr().add(m.offset) }, m.recv.count()),
            };
            self.requests.push(unsafe { comm.irecv(buf, len, m.peer, m.recv_tag) });
        }
        for m in &self.messages {
            let (buf, len) = match (field, m.send_span) {
                (Some(base), Some((at, len))) => (unsafe { base.add(at) as *const f64 }, len),
                _ => (unsafe { self.send_buf.as_ptr().add(m.offset) }, m.send.count()),
            };
            self.requests.push(unsafe { comm.isend(buf, len, m.peer, m.send_tag) });
        }
    }

    /// Waits for the exchange started by [`HaloPlan::begin`] and fills the ghosts of `field`.
    pub fn finish(&mut self, comm: &dyn Comm, field: &mut Field) {
        assert!(self.in_flight, "finish without begin");
        self.check_shape(field);
        comm.wait_all(&mut self.requests);
        self.in_flight = false;
        let dst = field.as_slice_mut();
        for m in &self.messages {
            self.unpack(m, dst);
        }
        self.copy_local(dst);
    }

    fn unpack(&self, m: &Message, dst: &mut [f64]) {
        for_rows(self.padded, m.recv, m.offset, |buf_at, field_at, len| {
            copy_row(&mut dst[field_at..field_at + len], &self.recv_buf[buf_at..buf_at + len]);
        });
    }

    fn pack(&mut self, m: usize, src: &[f64]) {
        let m = &self.messages[m];
        for_rows(self.padded, m.send, m.offset, |buf_at, field_at, len| {
            copy_row(&mut self.send_buf[buf_at..buf_at + len], &src[field_at..field_at + len]);
        });
    }

    /// The exchanges with itself, as copies within the field.
    fn copy_local(&self, dst: &mut [f64]) {
        let p = self.padded;
        for (src, ghost) in &self.local {
            // Same shape; walk both regions' rows in step. Source (interior) and ghost
            // regions never overlap.
            let shift = |r: &Region| (r.lo[2] * p[1] + r.lo[1]) * p[0] + r.lo[0];
            let delta = shift(ghost) as isize - shift(src) as isize;
            for_rows(p, *src, 0, |_, from, len| {
                let to = (from as isize + delta) as usize;
                match len {
                    1 => dst[to] = dst[from],
                    2 => {
                        dst[to] = dst[from];
                        dst[to + 1] = dst[from + 1];
                    }
                    _ => dst.copy_within(from..from + len, to),
                }
            });
        }
    }

    /// A blocking exchange: what [`HaloPlan::begin`] then [`HaloPlan::finish`] do, except
    /// that a message whose region is one contiguous run of the field (a face of one
    /// row, or of whole rows) is sent from, or received into, the field itself rather
    /// than through the plan's buffers: the field is borrowed exclusively until every
    /// request completed, so nothing else reads or writes it meanwhile.
    pub fn exchange(&mut self, comm: &dyn Comm, field: &mut Field) {
        assert!(!self.in_flight, "halo exchange already in flight");
        self.check_shape(field);
        for m in 0..self.messages.len() {
            if self.messages[m].send_span.is_none() {
                self.pack(m, field.as_slice());
            }
        }
        let data = field.as_slice_mut();
        // SAFETY: `field` is borrowed exclusively here until wait_all completes every
        // request; its shape is the plan's (checked above).
        unsafe { self.post(comm, Some(data.as_mut_ptr())) };
        comm.wait_all(&mut self.requests);
        for m in &self.messages {
            if m.recv_span.is_none() {
                self.unpack(m, data);
            }
        }
        self.copy_local(data);
    }
}

impl Drop for HaloPlan {
    fn drop(&mut self) {
        if self.in_flight {
            // Requests still reference the buffers: leak them rather than free memory
            // that MPI may still write into.
            std::mem::forget(std::mem::take(&mut self.send_buf));
            std::mem::forget(std::mem::take(&mut self.recv_buf));
            std::mem::forget(std::mem::take(&mut self.requests));
        }
    }
}

/// Self-checks of halo exchange and reductions, shared by the in-process tests and
/// the `mpirun` test driver (`decomp/examples/halo_check.rs`).
pub mod selfcheck {
    use super::*;
    use crate::comm::ReduceOp;
    use crate::grid::Grid;

    /// A distinct value for every global cell.
    fn tag_value(i: usize, j: usize, k: usize) -> f64 {
        1.0 + i as f64 + 1000.0 * j as f64 + 1.0e6 * k as f64
    }

    /// Exchanges a field filled with [`tag_value`] and checks every ghost cell: ghosts
    /// that mirror a neighbour's cell (or its periodic image) hold that value, the rest
    /// keep the sentinel. Returns the number of ghost values checked on this rank.
    pub fn check_exchange(comm: &dyn Comm, layout: &BlockLayout, ghost: usize, stencil: Stencil) -> std::result::Result<usize, String> {
        check_exchange_width(comm, layout, ghost, ghost, stencil)
    }

    /// [`check_exchange`] for a plan that fills only `width` of the `ghost` layers.
    pub fn check_exchange_width(
        comm: &dyn Comm,
        layout: &BlockLayout,
        ghost: usize,
        width: usize,
        stencil: Stencil,
    ) -> std::result::Result<usize, String> {
        let mut plan = HaloPlan::with_width(layout, comm.rank(), ghost, width, stencil, 0).map_err(|e| e.to_string())?;
        // Both ways of exchanging: split phase (through the buffers) and blocking (in
        // place where a region is contiguous), each twice: the plan must be reusable.
        let mut checked = 0;
        for blocking in [false, true] {
            let mut f = Field::zeros(layout.blocks[comm.rank()], layout.grid.dims, ghost);
            f.data.fill(-1.0);
            f.fill_with(tag_value);
            for _ in 0..2 {
                if blocking {
                    plan.exchange(comm, &mut f);
                } else {
                    plan.begin(comm, &f);
                    plan.finish(comm, &mut f);
                }
            }
            checked += check_ghosts(comm, layout, &f, width, stencil).map_err(|e| format!("{e} (blocking exchange: {blocking})"))?;
        }
        Ok(checked)
    }

    /// Checks every ghost of `f` after an exchange of `width` layers for `stencil`:
    /// filled ones hold the neighbour's [`tag_value`], the others still -1.
    fn check_ghosts(
        comm: &dyn Comm,
        layout: &BlockLayout,
        f: &Field,
        width: usize,
        stencil: Stencil,
    ) -> std::result::Result<usize, String> {
        let rank = comm.rank();
        let grid = &layout.grid;
        let g = f.ghost;
        let n = f.shape();
        let p = f.padded_shape();
        let mut checked = 0;
        for k in 0..p[2] {
            for j in 0..p[1] {
                for i in 0..p[0] {
                    let local = [i, j, k];
                    // Offset direction of this storage cell relative to the interior.
                    let mut d = [0i32; 3];
                    let mut global = [0i64; 3];
                    let mut within = true;
                    for a in 0..3 {
                        let l = local[a] as i64 - g[a] as i64;
                        within &= l >= -(width as i64) && l < (n[a] + width) as i64;
                        d[a] = if l < 0 {
                            -1
                        } else if l >= n[a] as i64 {
                            1
                        } else {
                            0
                        };
                        global[a] = layout.blocks[rank].lo[a] as i64 + l;
                    }
                    let nonzero = d.iter().filter(|&&c| c != 0).count();
                    if nonzero == 0 {
                        continue;
                    }
                    let v = f.data[[k, j, i]];
                    let filled = within && layout.neighbour(rank, d).is_some() && (stencil == Stencil::Box || nonzero == 1);
                    let expect = if filled {
                        let mut w = [0usize; 3];
                        for a in 0..3 {
                            w[a] = global[a].rem_euclid(grid.cells[a] as i64) as usize;
                        }
                        tag_value(w[0], w[1], w[2])
                    } else {
                        -1.0
                    };
                    if v != expect {
                        return Err(format!("rank {rank}: ghost at storage {local:?} (direction {d:?}) holds {v}, expected {expect}"));
                    }
                    checked += 1;
                }
            }
        }
        Ok(checked)
    }

    /// Checks allreduce, broadcast and gather against values computed independently.
    pub fn check_reductions(comm: &dyn Comm) -> std::result::Result<(), String> {
        let (r, n) = (comm.rank() as f64, comm.size());
        let mut v = [r, -r, 1.0];
        comm.allreduce_f64(&mut v, ReduceOp::Sum);
        let tri = (n * (n - 1) / 2) as f64;
        if v != [tri, -tri, n as f64] {
            return Err(format!("allreduce sum gave {v:?}"));
        }
        let mut m = [r, r];
        comm.allreduce_f64(&mut m[..1], ReduceOp::Max);
        comm.allreduce_f64(&mut m[1..], ReduceOp::Min);
        if m != [(n - 1) as f64, 0.0] {
            return Err(format!("allreduce max/min gave {m:?}"));
        }
        let mut u = [comm.rank() as u64 + 1];
        comm.allreduce_u64(&mut u, ReduceOp::Sum);
        if u[0] != (n * (n + 1) / 2) as u64 {
            return Err(format!("allreduce u64 gave {u:?}"));
        }
        let mut b = if comm.rank() == n - 1 { b"tessera".to_vec() } else { Vec::new() };
        comm.broadcast_bytes(n - 1, &mut b);
        if b != b"tessera" {
            return Err("broadcast lost data".into());
        }
        let mine: Vec<f64> = (0..comm.rank() + 1).map(|x| x as f64 + r).collect();
        if let Some(all) = comm.gather_f64(0, &mine) {
            for (q, part) in all.iter().enumerate() {
                if part.len() != q + 1 || part[q] != 2.0 * q as f64 {
                    return Err(format!("gather from rank {q} gave {part:?}"));
                }
            }
        }
        comm.barrier();
        Ok(())
    }

    /// The layouts every multi-rank test exercises for `nranks`: uneven splits,
    /// periodic axes, 2D and 3D.
    pub fn test_layouts(nranks: usize) -> Vec<BlockLayout> {
        let mut out = Vec::new();
        let grids = [
            Grid::new(&[13, 11], &[0.0; 2], &[1.0; 2], &[false, false]),
            Grid::new(&[17, 9], &[0.0; 2], &[1.0; 2], &[true, false]),
            Grid::new(&[10, 12], &[0.0; 2], &[1.0; 2], &[true, true]),
            Grid::new(&[7, 9, 8], &[0.0; 3], &[1.0; 3], &[false, true, false]),
            Grid::new(&[6, 6, 7], &[0.0; 3], &[1.0; 3], &[true, true, true]),
            // Wide z faces, no neighbours along x and y once split along z: the
            // blocking exchange sends those faces as storage spans (`span_allowed`).
            Grid::new(&[40, 36, 16], &[0.0; 3], &[1.0; 3], &[false, false, false]),
        ];
        for g in grids {
            if let Ok(l) = BlockLayout::auto(&g, nranks, 2) {
                out.push(l);
            }
            // A forced 1D split along x exercises the other axis choice.
            let mut p = vec![1; g.dims];
            p[0] = nranks;
            if let Ok(l) = BlockLayout::new(&g, &p, 2) {
                out.push(l);
            }
            // And along the slowest axis.
            if g.dims == 3 {
                if let Ok(l) = BlockLayout::new(&g, &[1, 1, nranks], 2) {
                    out.push(l);
                }
            }
        }
        out
    }

    /// Runs every exchange and reduction check for this communicator's size.
    pub fn check_all(comm: &dyn Comm) -> std::result::Result<usize, String> {
        check_reductions(comm)?;
        let mut total = 0;
        let layouts = test_layouts(comm.size());
        if layouts.is_empty() {
            return Err(format!("no test layout for {} ranks", comm.size()));
        }
        for l in &layouts {
            for ghost in [1, 2] {
                for st in [Stencil::Star, Stencil::Box] {
                    total += check_exchange(comm, l, ghost, st)
                        .map_err(|e| format!("{:?} procs {:?} ghost {ghost} {st:?}: {e}", &l.grid.cells[..l.grid.dims], l.procs))?;
                }
            }
            // Width-1 exchanges of fields with two ghost layers (multigrid levels).
            for st in [Stencil::Star, Stencil::Box] {
                total += check_exchange_width(comm, l, 2, 1, st)
                    .map_err(|e| format!("{:?} procs {:?} ghost 2 width 1 {st:?}: {e}", &l.grid.cells[..l.grid.dims], l.procs))?;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::selfcheck::*;
    use crate::comm::{SerialComm, ThreadComm};

    #[test]
    fn exchange_and_reductions_on_1_to_8_thread_ranks() {
        for n in 1..=8 {
            let res = ThreadComm::run(n, |c| check_all(c));
            for (r, x) in res.into_iter().enumerate() {
                let checked = x.unwrap_or_else(|e| panic!("{n} ranks, rank {r}: {e}"));
                assert!(checked > 0);
            }
        }
    }

    #[test]
    fn z_faces_travel_as_spans_only_without_x_or_y_neighbours() {
        use crate::{BlockLayout, Grid, HaloPlan, Stencil};
        let plan = |periodic: [bool; 3], procs: [usize; 3], ghost: usize, stencil: Stencil| {
            let g = Grid::new(&[128, 128, 64], &[0.0; 3], &[1.0; 3], &periodic);
            let l = BlockLayout::new(&g, &procs, 2).unwrap();
            let p = HaloPlan::new(&l, 0, ghost, stencil, 0).unwrap();
            (p.message_count(), p.in_place_count())
        };
        // Rank 0 of a z split: one z face, sent from the field (width 1 and 2).
        assert_eq!(plan([false; 3], [1, 1, 2], 1, Stencil::Star), (1, 1));
        assert_eq!(plan([false; 3], [1, 1, 2], 2, Stencil::Star), (1, 1));
        // x neighbours (periodic x, or x split) write the x ghosts a span would carry.
        assert_eq!(plan([true, false, false], [1, 1, 2], 1, Stencil::Star).1, 0);
        assert_eq!(plan([false; 3], [2, 1, 2], 1, Stencil::Star).1, 0);
        // A box exchange fills the edge ghosts a span would write.
        assert_eq!(plan([false; 3], [1, 1, 2], 1, Stencil::Box).1, 0);
        // Faces along x and y are strided: packed.
        assert_eq!(plan([false; 3], [2, 1, 1], 1, Stencil::Star).1, 0);
    }

    #[test]
    fn serial_comm_exchanges_periodic_ghosts() {
        let c = SerialComm::new();
        assert!(check_all(&c).unwrap() > 0);
    }
}
