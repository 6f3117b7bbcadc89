//! Geometric multigrid on the decomposed grid: hierarchy, grid transfers, cycles,
//! agglomeration of small coarse levels, and the coarsest-level direct solve.
//!
//! Levels coarsen by merging global cell pairs, so the hierarchy depends only on the
//! global grid: a rank's coarse block is `[⌈lo/2⌉, ⌈hi/2⌉)` of its fine block, and a
//! coarse cell whose two children sit on different ranks belongs to the owner of the
//! first child (its second child is read from the fine residual's ghosts). When a
//! level gets small (`agglomerate_below` cells, or some block thinner than two
//! cells) every rank gathers the whole level and continues redundantly, as PETSc's
//! "redundant" coarse solve does: no rank idles on a handful of cells and nothing is
//! scattered back, since each rank reads the part it needs.
use super::axis::{Axis, BcKind};
use super::level::{Level, Slot};
use super::options::{Cycle, MgOptions, Smoother};
use crate::perf::{Mark, PhaseLog};
use decomp::comm::SerialComm;
use decomp::{BlockLayout, Comm, Field, Grid, IndexBox};

/// Per-axis weights of the transfer between a level and the next coarser one.
struct Transfer {
    /// For each coarse local cell: (fine padded index, weight) along the axis.
    rtab: [Vec<Vec<(usize, f64)>>; 3],
    /// For each fine local cell: two (coarse padded index, weight) pairs.
    ptab: [Vec<[(usize, f64); 2]>; 3],
    /// The coarse level is replicated: this rank's coarse block, gathered after
    /// restriction and read (with a ghost ring) before prolongation.
    stage: Option<Field>,
    /// Every rank's stage block (the fine layout coarsened), for that gather.
    stage_blocks: Vec<IndexBox>,
    tmp1: Vec<f64>,
    tmp2: Vec<f64>,
}

/// Dense LU factors of the coarsest level (partial pivoting).
struct DenseLu {
    n: usize,
    lu: Vec<f64>,
    piv: Vec<usize>,
    /// Row 0 replaced by the volume weights (singular operators): rhs[0] = 0.
    pin_mean: bool,
}

impl DenseLu {
    fn factor(mut a: Vec<f64>, n: usize, pin_mean: bool) -> DenseLu {
        let mut piv = vec![0; n];
        for k in 0..n {
            let p = (k..n).max_by(|&x, &y| a[x * n + k].abs().total_cmp(&a[y * n + k].abs())).unwrap_or(k);
            piv[k] = p;
            if p != k {
                for j in 0..n {
                    a.swap(k * n + j, p * n + j);
                }
            }
            let d = a[k * n + k];
            if d == 0.0 {
                continue;
            }
            for i in k + 1..n {
                let m = a[i * n + k] / d;
                a[i * n + k] = m;
                if m != 0.0 {
                    for j in k + 1..n {
                        a[i * n + j] -= m * a[k * n + j];
                    }
                }
            }
        }
        DenseLu { n, lu: a, piv, pin_mean }
    }

    fn solve(&self, b: &mut [f64]) {
        let n = self.n;
        if self.pin_mean {
            b[0] = 0.0;
        }
        for k in 0..n {
            b.swap(k, self.piv[k]);
        }
        for i in 0..n {
            let mut s = b[i];
            for j in 0..i {
                s -= self.lu[i * n + j] * b[j];
            }
            b[i] = s;
        }
        for i in (0..n).rev() {
            let mut s = b[i];
            for j in i + 1..n {
                s -= self.lu[i * n + j] * b[j];
            }
            let d = self.lu[i * n + i];
            b[i] = if d != 0.0 { s / d } else { 0.0 };
        }
    }
}

/// The description of the operator multigrid is built for.
pub struct OperatorSpec<'a> {
    /// Mass coefficient α in `α u - β ∇·(k ∇u)`.
    pub alpha: f64,
    /// Diffusion scale β.
    pub beta: f64,
    /// Cell coefficients `k` on this rank's block (any ghost width ≥ 1; ghosts are
    /// filled here), or `None` for `k = 1`.
    pub coefficient: Option<&'a Field>,
    /// Homogeneous condition on each face (x lo, x hi), (y lo, y hi), (z lo, z hi).
    pub bc: [[BcKind; 2]; 3],
}

/// A geometric multigrid hierarchy for one operator on one layout.
pub struct Multigrid {
    /// Levels, finest first.
    pub levels: Vec<Level>,
    transfers: Vec<Transfer>,
    serial: SerialComm,
    coarse: DenseLu,
    /// Options the hierarchy was built with.
    pub opts: MgOptions,
    /// The operator has constants in its null space (no Dirichlet face, α = 0).
    pub singular: bool,
    /// Time and communication per multigrid phase.
    pub log: PhaseLog,
}

/// True when some block boundary between ranks falls on an odd global index along an
/// axis that coarsens: pairs straddle ranks, and restriction reads two ghost layers.
fn straddles(layout: &BlockLayout, coarsen: [bool; 3]) -> bool {
    layout.blocks.iter().any(|b| (0..3).any(|a| coarsen[a] && (b.lo[a] % 2 == 1 || (b.hi[a] % 2 == 1 && b.hi[a] != layout.grid.cells[a]))))
}

fn coarse_box(b: &IndexBox, coarsen: [bool; 3]) -> IndexBox {
    let mut c = *b;
    for a in 0..3 {
        if coarsen[a] {
            c.lo[a] = b.lo[a].div_ceil(2);
            c.hi[a] = b.hi[a].div_ceil(2);
        }
    }
    c
}

fn grid_of(dims: usize, axes: &[Axis; 3]) -> Grid {
    let n: Vec<usize> = axes.iter().take(dims).map(|a| a.n()).collect();
    let lo: Vec<f64> = axes.iter().take(dims).map(|a| a.edges[0]).collect();
    let hi: Vec<f64> = axes.iter().take(dims).map(|a| *a.edges.last().expect("edges")).collect();
    let per: Vec<bool> = axes.iter().take(dims).map(|a| a.periodic()).collect();
    Grid::new(&n, &lo, &hi, &per)
}

/// Physical-face ghosts of a cell coefficient field mirror the boundary cell.
fn mirror_ghosts(k: &mut Field, axes: &[Axis; 3], dims: usize) {
    let b = k.block;
    let n = k.shape();
    let p = k.padded_shape();
    let g = k.ghost;
    let s = k.strides();
    let data = k.as_slice_mut();
    for a in 0..dims {
        if axes[a].periodic() {
            continue;
        }
        for side in 0..2 {
            let at_face = if side == 0 { b.lo[a] == 0 } else { b.hi[a] == axes[a].n() };
            if !at_face {
                continue;
            }
            let (src, dst) = if side == 0 { (g[a], g[a] - 1) } else { (g[a] + n[a] - 1, g[a] + n[a]) };
            decomp::grid::for_each_in_layer(p, a, src, |l| {
                let cs = l[0] * s[0] + l[1] * s[1] + l[2] * s[2];
                data[cs + dst * s[a] - src * s[a]] = data[cs];
            });
        }
    }
}

/// Gathers every rank's `stage` interior (rank `r` holds `boxes[r]`) into the
/// replicated `dst` interior: one gather and one broadcast.
fn allgather_into(comm: &dyn Comm, boxes: &[IndexBox], stage: &Field, dst: &mut Field) {
    let mine: Vec<f64> = stage.interior().iter().copied().collect();
    let all = comm.gather_f64(0, &mine);
    let mut bytes = Vec::new();
    if let Some(all) = all {
        let nb = dst.shape();
        let mut global = vec![0.0; nb[0] * nb[1] * nb[2]];
        for (b, part) in boxes.iter().zip(&all) {
            let mut it = part.iter();
            for k in b.lo[2]..b.hi[2] {
                for j in b.lo[1]..b.hi[1] {
                    for i in b.lo[0]..b.hi[0] {
                        global[(k * nb[1] + j) * nb[0] + i] = *it.next().expect("gathered block size");
                    }
                }
            }
        }
        bytes = global.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    comm.broadcast_bytes(0, &mut bytes);
    let mut it = bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")));
    for v in dst.interior_mut().iter_mut() {
        *v = it.next().expect("broadcast size");
    }
}

/// A copy of `f`'s interior with `ghost` ghost layers (zero ghosts).
fn with_ghost(f: &Field, dims: usize, ghost: usize) -> Field {
    let mut out = Field::zeros(f.block, dims, ghost);
    out.interior_mut().assign(&f.interior());
    out
}

/// How one level is built: whether it is the last, whether a gathered copy follows
/// it, the axes it coarsens along and the ghost width of its fields.
struct LevelPlan {
    last: bool,
    copy_below: bool,
    coarsen: [bool; 3],
    ghost: usize,
}

/// The plan of the level over `axes` on `layout` at `depth` (0 = finest).
fn plan_level(
    axes: &[Axis; 3],
    dims: usize,
    layout: &BlockLayout,
    replicated: bool,
    force_last: bool,
    depth: usize,
    opts: &MgOptions,
) -> LevelPlan {
    let can: [bool; 3] = std::array::from_fn(|a| a < dims && axes[a].can_coarsen());
    let total: usize = axes.iter().take(dims).map(|a| a.n()).product();
    let last = force_last || total <= opts.coarse_max.max(1) || !can.iter().any(|&c| c) || depth + 1 >= opts.max_levels;
    // The direct solve needs the whole level: a distributed last level gets a
    // gathered copy below it.
    let copy_below = last && !replicated;
    let coarsen = if copy_below { [false; 3] } else { can };
    let ghost = if !last && !replicated && straddles(layout, coarsen) { 2 } else { 1 };
    LevelPlan { last, copy_below, coarsen, ghost }
}

/// The transfer from `fine` (over `axes`) to the level over `caxes`; `gather`: the
/// coarse level is replicated and this rank restricts into a stage block first.
fn build_transfer(
    fine: &Level,
    axes: &[Axis; 3],
    caxes: &[Axis; 3],
    coarsen: [bool; 3],
    gather: bool,
    cghost: usize,
    stage_blocks: Vec<IndexBox>,
) -> Transfer {
    let dims = fine.dims;
    let fb = fine.block();
    let cb = coarse_box(&fb, coarsen);
    // Coarse storage origin: the stage block (gathered levels) or the coarse block of a
    // distributed or replicated level, with `cghost` ghost layers; a replicated coarse
    // level's block is the whole grid, and this rank's part of it is `cb`.
    let coarse_origin: [isize; 3] = std::array::from_fn(|a| {
        let g = if a < dims { cghost } else { 0 };
        if fine.replicated {
            -(g as isize)
        } else {
            cb.lo[a] as isize - g as isize
        }
    });
    let fg = fine.u.ghost;
    let fpad = fine.u.padded_shape();
    let mut rtab: [Vec<Vec<(usize, f64)>>; 3] = Default::default();
    let mut ptab: [Vec<[(usize, f64); 2]>; 3] = Default::default();
    for a in 0..3 {
        if !coarsen[a] {
            rtab[a] = (cb.lo[a]..cb.hi[a]).map(|ci| vec![((ci - fb.lo[a]) + fg[a], 1.0)]).collect();
            ptab[a] = (fb.lo[a]..fb.hi[a])
                .map(|fi| {
                    let l = (fi as isize - coarse_origin[a]) as usize;
                    [(l, 1.0), (l, 0.0)]
                })
                .collect();
            continue;
        }
        for ci in cb.lo[a]..cb.hi[a] {
            let row = axes[a]
                .restrict_weights(&caxes[a], ci)
                .into_iter()
                .map(|(f, w)| {
                    let local = f - fb.lo[a] as isize + fg[a] as isize;
                    assert!(local >= 0 && (local as usize) < fpad[a], "restriction reads beyond the ghost ring");
                    (local as usize, w)
                })
                .collect();
            rtab[a].push(row);
        }
        for fi in fb.lo[a]..fb.hi[a] {
            let mut out = [(0usize, 0.0); 2];
            for (e, (ci, w)) in out.iter_mut().zip(axes[a].interp(&caxes[a], fi)) {
                // Physical-face ghosts fold onto the boundary cell; periodic ghosts are
                // read from the exchanged ghost ring.
                let (ci, w) = if caxes[a].periodic() {
                    (ci, w)
                } else {
                    let (cf, s) = caxes[a].fold(ci);
                    (cf, s * w)
                };
                let local = ci - coarse_origin[a];
                assert!(local >= 0, "prolongation reads beyond the ghost ring");
                *e = (local as usize, w);
            }
            ptab[a].push(out);
        }
    }
    let stage = gather.then(|| Field::zeros(cb, dims, 1));
    let stage_blocks = if gather { stage_blocks } else { Vec::new() };
    Transfer { rtab, ptab, stage, stage_blocks, tmp1: Vec::new(), tmp2: Vec::new() }
}

impl Multigrid {
    /// Builds the hierarchy for `spec` on `layout` (this rank is `comm.rank()`).
    pub fn new(comm: &dyn Comm, layout: &BlockLayout, spec: &OperatorSpec, opts: MgOptions) -> decomp::Result<Multigrid> {
        let dims = layout.grid.dims;
        let grid = &layout.grid;
        let mut axes: [Axis; 3] = std::array::from_fn(|a| {
            if a < dims {
                let bc = if grid.periodic[a] { [BcKind::Periodic; 2] } else { spec.bc[a] };
                Axis::uniform(grid.cells[a], grid.lower[a], grid.upper[a], bc)
            } else {
                Axis::uniform(1, 0.0, 1.0, [BcKind::Neumann; 2])
            }
        });
        let singular = spec.alpha == 0.0 && !(0..dims).any(|a| axes[a].bc.contains(&BcKind::Dirichlet));
        let serial = SerialComm::new();
        let mut levels: Vec<Level> = Vec::new();
        let mut transfers: Vec<Transfer> = Vec::new();
        let mut cur_layout = layout.clone();
        let mut cur_rank = comm.rank();
        let mut replicated = comm.size() == 1;
        let mut force_last = false;
        let mut kc: Option<Field> = spec.coefficient.map(|k| with_ghost(k, dims, 1));
        let mut tag = 4096;
        loop {
            let LevelPlan { last, copy_below, coarsen, ghost } =
                plan_level(&axes, dims, &cur_layout, replicated, force_last, levels.len(), &opts);
            let c: &dyn Comm = if replicated { &serial } else { comm };
            let kc_level = kc.take().map(|k| {
                let mut k = with_ghost(&k, dims, ghost);
                let mut plan = decomp::HaloPlan::with_width(&cur_layout, cur_rank, ghost, 1, decomp::Stencil::Box, tag - 64)
                    .expect("coefficient halo plan");
                plan.exchange(c, &mut k);
                mirror_ghosts(&mut k, &axes, dims);
                k
            });
            let lv = Level::new(
                dims,
                axes.clone(),
                cur_layout.clone(),
                cur_rank,
                replicated,
                ghost,
                spec.alpha,
                spec.beta,
                kc_level.as_ref(),
                tag,
            )?;
            tag += 128;
            if last && !copy_below {
                levels.push(lv);
                break;
            }
            let caxes: [Axis; 3] = std::array::from_fn(|a| if coarsen[a] { axes[a].coarsen() } else { axes[a].clone() });
            let ctotal: usize = caxes.iter().take(dims).map(|a| a.n()).product();
            let stage_layout = coarse_layout(&cur_layout, &caxes, coarsen, dims);
            let thin = stage_layout.blocks.iter().any(|b| (0..dims).any(|a| cur_layout.procs[a] > 1 && b.hi[a] - b.lo[a] < 2));
            let gather = !replicated && (copy_below || ctotal <= opts.agglomerate_below || ctotal <= opts.coarse_max || thin);
            let next_layout = if gather || replicated {
                let cgrid = grid_of(dims, &caxes);
                BlockLayout { grid: cgrid.clone(), procs: [1, 1, 1], blocks: vec![cgrid.index_box()] }
            } else {
                stage_layout.clone()
            };
            // The coarse storage the transfer addresses: the stage block (one ghost
            // layer) when gathering, else the next level's own fields.
            let next = plan_level(&caxes, dims, &next_layout, gather || replicated, copy_below, levels.len() + 1, &opts);
            let cghost = if gather { 1 } else { next.ghost };
            let t = build_transfer(&lv, &axes, &caxes, coarsen, gather, cghost, stage_layout.blocks.clone());
            if let Some(k) = kc_level.as_ref() {
                let mine = stage_layout.blocks[cur_rank];
                let ck = restrict_coefficient(k, &axes, coarsen, mine, dims);
                kc = Some(if gather {
                    let mut full = Field::zeros(grid_of(dims, &caxes).index_box(), dims, 1);
                    allgather_into(comm, &stage_layout.blocks, &ck, &mut full);
                    full
                } else {
                    ck
                });
            }
            if gather || replicated {
                cur_rank = 0;
                replicated = true;
            }
            cur_layout = next_layout;
            force_last = copy_below;
            levels.push(lv);
            transfers.push(t);
            axes = caxes;
        }
        let coarse = Self::factor_coarsest(levels.last_mut().expect("a level"), &serial, singular);
        Ok(Multigrid { levels, transfers, serial, coarse, opts, singular, log: PhaseLog::new() })
    }

    fn factor_coarsest(lv: &mut Level, serial: &SerialComm, singular: bool) -> DenseLu {
        let n = lv.shape();
        let cells = n[0] * n[1] * n[2];
        let idx: Vec<usize> = (0..cells).map(|q| lv.u.idx(q % n[0], (q / n[0]) % n[1], q / (n[0] * n[1]))).collect();
        let mut a = vec![0.0; cells * cells];
        for (col, &c) in idx.iter().enumerate() {
            lv.u.data.fill(0.0);
            lv.u.as_slice_mut()[c] = 1.0;
            lv.apply_overlapped(serial, Slot::U, Slot::R);
            for (row, &rc) in idx.iter().enumerate() {
                a[row * cells + col] = lv.r.as_slice()[rc];
            }
        }
        lv.u.data.fill(0.0);
        if singular {
            for (col, w) in a.iter_mut().take(cells).enumerate() {
                *w = lv.volume(col % n[0], (col / n[0]) % n[1], col / (n[0] * n[1]));
            }
        }
        DenseLu::factor(a, cells, singular)
    }

    /// Smooths level `l` (`pre`: before the coarse correction).
    fn smooth(&mut self, comm: &dyn Comm, l: usize, pre: bool, zero: bool) {
        let o = self.opts;
        let skip = self.skips_zero_fill();
        let lv = &mut self.levels[l];
        let c: &dyn Comm = if lv.replicated { &self.serial } else { comm };
        let sweeps = if pre { o.pre_smooth } else { o.post_smooth };
        if zero && pre && !skip {
            lv.u.data.fill(0.0);
        }
        match o.smoother {
            Smoother::Rbgs if zero && pre && sweeps > 0 => lv.smooth_rbgs_from_zero(c, sweeps),
            Smoother::Rbgs => lv.smooth_rbgs(c, sweeps, pre, zero && pre),
            Smoother::Chebyshev => lv.smooth_chebyshev(c, sweeps, o.chebyshev_ratio),
        }
    }

    /// Whether a cycle started from zero needs no cleared `u` (the first
    /// Gauss–Seidel sweep writes every cell without reading any).
    fn skips_zero_fill(&self) -> bool {
        self.opts.smoother == Smoother::Rbgs && self.opts.pre_smooth > 0
    }

    /// One cycle on level `l` for `A u = f` from the current `u` (`zero`: u is zero,
    /// or stands for zero when [`Multigrid::skips_zero_fill`]).
    fn cycle(&mut self, comm: &dyn Comm, l: usize, kind: Cycle, zero: bool) {
        let (smooth, residual) = if l == 0 { ("smooth (finest)", "residual (finest)") } else { ("smooth (coarse)", "residual (coarse)") };
        if l == self.levels.len() - 1 {
            let m = Mark::now(comm);
            self.coarse_solve();
            self.log.add("coarsest solve", comm, m);
            return;
        }
        let m = Mark::now(comm);
        self.smooth(comm, l, true, zero);
        self.log.add(smooth, comm, m);
        let m = Mark::now(comm);
        {
            let lv = &mut self.levels[l];
            let c: &dyn Comm = if lv.replicated { &self.serial } else { comm };
            lv.residual(c);
            lv.exchange_residual_full(c);
        }
        self.log.add(residual, comm, m);
        let m = Mark::now(comm);
        self.restrict(comm, l);
        if l + 1 == self.levels.len() - 1 || !self.skips_zero_fill() {
            self.levels[l + 1].u.data.fill(0.0);
        }
        self.log.add("restrict", comm, m);
        match kind {
            Cycle::V => self.cycle(comm, l + 1, Cycle::V, true),
            Cycle::W => {
                self.cycle(comm, l + 1, Cycle::W, true);
                self.cycle(comm, l + 1, Cycle::W, false);
            }
            Cycle::F => {
                self.cycle(comm, l + 1, Cycle::F, true);
                self.cycle(comm, l + 1, Cycle::V, false);
            }
        }
        let m = Mark::now(comm);
        self.prolong(comm, l);
        self.log.add("prolong", comm, m);
        let m = Mark::now(comm);
        self.smooth(comm, l, false, false);
        self.log.add(smooth, comm, m);
    }

    fn coarse_solve(&mut self) {
        let lv = self.levels.last_mut().expect("a level");
        let n = lv.shape();
        let mut b = Vec::with_capacity(n[0] * n[1] * n[2]);
        for k in 0..n[2] {
            for j in 0..n[1] {
                for i in 0..n[0] {
                    b.push(lv.f.as_slice()[lv.f.idx(i, j, k)]);
                }
            }
        }
        self.coarse.solve(&mut b);
        let mut it = b.into_iter();
        for k in 0..n[2] {
            for j in 0..n[1] {
                for i in 0..n[0] {
                    let c = lv.u.idx(i, j, k);
                    lv.u.as_slice_mut()[c] = it.next().expect("size");
                }
            }
        }
    }

    /// Restricts level `l`'s residual (ghosts filled) to level `l + 1`'s right-hand side.
    fn restrict(&mut self, comm: &dyn Comm, l: usize) {
        let (fine, rest) = self.levels.split_at_mut(l + 1);
        let (fine, coarse) = (&fine[l], &mut rest[0]);
        let t = &mut self.transfers[l];
        let mut stage = t.stage.take();
        {
            let dst = stage.as_mut().unwrap_or(&mut coarse.f);
            restrict_separable(fine.r.as_slice(), fine.r.padded_shape(), &t.rtab, dst, &mut t.tmp1, &mut t.tmp2);
        }
        if let Some(st) = stage.as_ref() {
            allgather_into(comm, &t.stage_blocks, st, &mut coarse.f);
        }
        t.stage = stage;
    }

    /// Adds the interpolated level `l + 1` correction to level `l`'s `u`.
    fn prolong(&mut self, comm: &dyn Comm, l: usize) {
        let serial = &self.serial;
        let (fine, rest) = self.levels.split_at_mut(l + 1);
        let (fine, coarse) = (&mut fine[l], &mut rest[0]);
        let t = &mut self.transfers[l];
        let c: &dyn Comm = if coarse.replicated { serial } else { comm };
        coarse.exchange_u_box(c);
        if let Some(stage) = t.stage.as_mut() {
            // Copy this rank's coarse block and its ghost ring from the replicated level.
            let p = stage.padded_shape();
            let sb = stage.block;
            let cs = coarse.u.as_slice();
            let sg = stage.ghost;
            let cg = coarse.u.ghost;
            let cp = coarse.u.padded_shape();
            let st = stage.as_slice_mut();
            for k in 0..p[2] {
                for j in 0..p[1] {
                    for i in 0..p[0] {
                        let gi = sb.lo[0] as isize + i as isize - sg[0] as isize + cg[0] as isize;
                        let gj = sb.lo[1] as isize + j as isize - sg[1] as isize + cg[1] as isize;
                        let gk = sb.lo[2] as isize + k as isize - sg[2] as isize + cg[2] as isize;
                        if gi < 0 || gj < 0 || gk < 0 || gi >= cp[0] as isize || gj >= cp[1] as isize || gk >= cp[2] as isize {
                            continue;
                        }
                        st[(k * p[1] + j) * p[0] + i] = cs[(gk as usize * cp[1] + gj as usize) * cp[0] + gi as usize];
                    }
                }
            }
            prolong_separable(stage, &t.ptab, &mut fine.u, &mut t.tmp1, &mut t.tmp2);
        } else {
            prolong_separable(&coarse.u, &t.ptab, &mut fine.u, &mut t.tmp1, &mut t.tmp2);
        }
    }

    /// Applies one cycle to `rhs` (this rank's block, ghost width of level 0 or any
    /// field of the fine shape) and writes the approximate solution of `A z = rhs`
    /// into `z`: the preconditioner `z = M rhs`.
    pub fn precondition(&mut self, comm: &dyn Comm, rhs: &mut Field, z: &mut Field) {
        let lv = &mut self.levels[0];
        std::mem::swap(&mut lv.f, rhs);
        if !self.skips_zero_fill() || self.levels.len() == 1 {
            self.levels[0].u.data.fill(0.0);
        }
        self.cycle(comm, 0, self.opts.cycle, true);
        let lv = &mut self.levels[0];
        std::mem::swap(&mut lv.f, rhs);
        std::mem::swap(&mut lv.u, z);
    }

    /// One cycle on the finest level for the current `levels[0].u` and `.f`.
    pub fn cycle_fine(&mut self, comm: &dyn Comm, zero: bool) {
        let kind = self.opts.cycle;
        self.cycle(comm, 0, kind, zero);
    }

    /// Changes the mass coefficient α on every level (a new time step) and refactors
    /// the coarsest level.
    pub fn set_alpha(&mut self, alpha: f64) {
        for l in &mut self.levels {
            l.set_alpha(alpha);
        }
        self.singular = self.singular && alpha == 0.0;
        self.coarse = Self::factor_coarsest(self.levels.last_mut().expect("a level"), &self.serial, self.singular);
    }

    /// The mass coefficient α of the operator.
    pub fn alpha(&self) -> f64 {
        self.levels[0].alpha
    }

    /// Sizes of every level (global cells per axis) and whether it is replicated.
    pub fn describe(&self) -> Vec<(Vec<usize>, bool)> {
        let multi = self.levels[0].layout.nranks() > 1;
        self.levels.iter().map(|l| (l.axes.iter().take(l.dims).map(|a| a.n()).collect(), l.replicated && multi)).collect()
    }
}

/// The distributed layout of the coarse level: every fine block coarsened.
fn coarse_layout(fine: &BlockLayout, caxes: &[Axis; 3], coarsen: [bool; 3], dims: usize) -> BlockLayout {
    BlockLayout { grid: grid_of(dims, caxes), procs: fine.procs, blocks: fine.blocks.iter().map(|b| coarse_box(b, coarsen)).collect() }
}

/// Volume-weighted average of the children: the cell coefficients of the coarse
/// cells in `cb` (children read from `k`, whose first ghost layer is filled).
fn restrict_coefficient(k: &Field, axes: &[Axis; 3], coarsen: [bool; 3], cb: IndexBox, dims: usize) -> Field {
    let mut out = Field::zeros(cb, dims, 1);
    let fb = k.block;
    let fg = k.ghost;
    let n = out.shape();
    for kk in 0..n[2] {
        for j in 0..n[1] {
            for i in 0..n[0] {
                let cl = [cb.lo[0] + i, cb.lo[1] + j, cb.lo[2] + kk];
                let ranges: [std::ops::Range<usize>; 3] =
                    std::array::from_fn(|a| if coarsen[a] { 2 * cl[a]..(2 * cl[a] + 2).min(axes[a].n()) } else { cl[a]..cl[a] + 1 });
                let (mut sum, mut vol) = (0.0, 0.0);
                for fz in ranges[2].clone() {
                    for fy in ranges[1].clone() {
                        for fx in ranges[0].clone() {
                            let f = [fx, fy, fz];
                            let w: f64 = (0..dims).map(|a| axes[a].widths[f[a]]).product();
                            let loc: [usize; 3] = std::array::from_fn(|a| f[a] + fg[a] - fb.lo[a]);
                            sum += w * k.data[[loc[2], loc[1], loc[0]]];
                            vol += w;
                        }
                    }
                }
                let c = out.idx(i, j, kk);
                out.as_slice_mut()[c] = sum / vol;
            }
        }
    }
    out
}

/// `dst = R src`, one axis at a time (x, then y, then z).
fn restrict_separable(
    src: &[f64],
    fp: [usize; 3],
    rtab: &[Vec<Vec<(usize, f64)>>; 3],
    dst: &mut Field,
    t1: &mut Vec<f64>,
    t2: &mut Vec<f64>,
) {
    let nc = [rtab[0].len(), rtab[1].len(), rtab[2].len()];
    t1.resize(fp[2] * fp[1] * nc[0], 0.0);
    // x: up to four fine cells per coarse cell in fixed slots (no inner loop).
    let slots: Option<Vec<([usize; 4], [f64; 4])>> = rtab[0]
        .iter()
        .map(|tab| {
            (tab.len() <= 4 && !tab.is_empty()).then(|| {
                let mut i = [tab[0].0; 4];
                let mut w = [0.0; 4];
                for (e, &(f, x)) in tab.iter().enumerate() {
                    i[e] = f;
                    w[e] = x;
                }
                (i, w)
            })
        })
        .collect();
    for k in 0..fp[2] {
        for j in 0..fp[1] {
            let row = &src[(k * fp[1] + j) * fp[0]..(k * fp[1] + j + 1) * fp[0]];
            let out = &mut t1[(k * fp[1] + j) * nc[0]..(k * fp[1] + j + 1) * nc[0]];
            match &slots {
                Some(sl) => {
                    for (o, (i, w)) in out.iter_mut().zip(sl) {
                        *o = w[0] * row[i[0]] + w[1] * row[i[1]] + w[2] * row[i[2]] + w[3] * row[i[3]];
                    }
                }
                None => {
                    for (o, tab) in out.iter_mut().zip(&rtab[0]) {
                        *o = tab.iter().map(|&(f, w)| w * row[f]).sum();
                    }
                }
            }
        }
    }
    // 2D: the y pass writes the coarse field directly.
    if fp[2] == 1 && nc[2] == 1 {
        for (jc, tab) in rtab[1].iter().enumerate() {
            let c0 = dst.idx(0, jc, 0);
            let out = &mut dst.as_slice_mut()[c0..c0 + nc[0]];
            out.fill(0.0);
            for &(f, w) in tab {
                let inp = &t1[f * nc[0]..(f + 1) * nc[0]];
                for (o, v) in out.iter_mut().zip(inp) {
                    *o += w * v;
                }
            }
        }
        return;
    }
    t2.resize(fp[2] * nc[1] * nc[0], 0.0);
    for k in 0..fp[2] {
        for (jc, tab) in rtab[1].iter().enumerate() {
            let out = &mut t2[(k * nc[1] + jc) * nc[0]..(k * nc[1] + jc + 1) * nc[0]];
            out.fill(0.0);
            for &(f, w) in tab {
                let inp = &t1[(k * fp[1] + f) * nc[0]..(k * fp[1] + f + 1) * nc[0]];
                for (o, v) in out.iter_mut().zip(inp) {
                    *o += w * v;
                }
            }
        }
    }
    for (kc, tab) in rtab[2].iter().enumerate() {
        for jc in 0..nc[1] {
            let c0 = dst.idx(0, jc, kc);
            let out = &mut dst.as_slice_mut()[c0..c0 + nc[0]];
            out.fill(0.0);
            for &(f, w) in tab {
                let inp = &t2[(f * nc[1] + jc) * nc[0]..(f * nc[1] + jc + 1) * nc[0]];
                for (o, v) in out.iter_mut().zip(inp) {
                    *o += w * v;
                }
            }
        }
    }
}

/// `dst += P src` (src with its ghost ring filled), one axis at a time.
fn prolong_separable(src: &Field, ptab: &[Vec<[(usize, f64); 2]>; 3], dst: &mut Field, t1: &mut Vec<f64>, t2: &mut Vec<f64>) {
    let cp = src.padded_shape();
    let s = src.as_slice();
    let nf = [ptab[0].len(), ptab[1].len(), ptab[2].len()];
    t1.resize(cp[2] * cp[1] * nf[0], 0.0);
    for k in 0..cp[2] {
        for j in 0..cp[1] {
            let row = &s[(k * cp[1] + j) * cp[0]..(k * cp[1] + j + 1) * cp[0]];
            let out = &mut t1[(k * cp[1] + j) * nf[0]..(k * cp[1] + j + 1) * nf[0]];
            for (o, p) in out.iter_mut().zip(&ptab[0]) {
                *o = p[0].1 * row[p[0].0] + p[1].1 * row[p[1].0];
            }
        }
    }
    // 2D: the y pass adds into the fine field directly.
    if cp[2] == 1 && nf[2] == 1 {
        for (j, p) in ptab[1].iter().enumerate() {
            let a = &t1[p[0].0 * nf[0]..(p[0].0 + 1) * nf[0]];
            let b = &t1[p[1].0 * nf[0]..(p[1].0 + 1) * nf[0]];
            let c0 = dst.idx(0, j, 0);
            let out = &mut dst.as_slice_mut()[c0..c0 + nf[0]];
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o += p[0].1 * x + p[1].1 * y;
            }
        }
        return;
    }
    t2.resize(cp[2] * nf[1] * nf[0], 0.0);
    for k in 0..cp[2] {
        for (j, p) in ptab[1].iter().enumerate() {
            let a = &t1[(k * cp[1] + p[0].0) * nf[0]..(k * cp[1] + p[0].0 + 1) * nf[0]];
            let b = &t1[(k * cp[1] + p[1].0) * nf[0]..(k * cp[1] + p[1].0 + 1) * nf[0]];
            let out = &mut t2[(k * nf[1] + j) * nf[0]..(k * nf[1] + j + 1) * nf[0]];
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o = p[0].1 * x + p[1].1 * y;
            }
        }
    }
    for (k, p) in ptab[2].iter().enumerate() {
        for j in 0..nf[1] {
            let a = &t2[(p[0].0 * nf[1] + j) * nf[0]..(p[0].0 * nf[1] + j + 1) * nf[0]];
            let b = &t2[(p[1].0 * nf[1] + j) * nf[0]..(p[1].0 * nf[1] + j + 1) * nf[0]];
            let c0 = dst.idx(0, j, k);
            let out = &mut dst.as_slice_mut()[c0..c0 + nf[0]];
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o += p[0].1 * x + p[1].1 * y;
            }
        }
    }
}
