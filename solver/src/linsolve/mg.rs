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
use super::options::{Cycle, Interpolation, MgOptions, Smoother};
use crate::perf::{Mark, PhaseLog};
use decomp::comm::SerialComm;
use decomp::{BlockLayout, Comm, Field, Grid, IndexBox};

/// Per-axis weights of the transfer between a level and the next coarser one.
struct Transfer {
    /// For each coarse local cell: (fine padded index, weight) along the axis.
    rtab: [Vec<Vec<(usize, f64)>>; 3],
    /// For each fine local cell: up to four (coarse padded index, weight) pairs;
    /// unused slots repeat the first index with weight 0.
    ptab: [Vec<PSlot>; 3],
    /// Slots of `ptab` in use: 2 (linear), 4 (cubic).
    ptaps: usize,
    /// The coarse level is replicated: this rank's coarse block, gathered after
    /// restriction and read (with a ghost ring) before prolongation.
    stage: Option<Field>,
    /// Every rank's stage block (the fine layout coarsened), for that gather.
    stage_blocks: Vec<IndexBox>,
    /// Every cell restriction reads is a local (not ghost) fine cell: the residual
    /// can be computed as restriction streams through it, never stored or exchanged.
    local_only: bool,
    /// x restriction in fixed slots, when every coarse cell reads at most eight fine cells.
    xslots: XSlots,
    scratch: Scratch,
}

/// Up to `K` (fine padded index, weight) pairs of one coarse cell along x; unused
/// slots repeat the first index with weight 0 (no inner loop).
type XSlot<const K: usize> = ([usize; K], [f64; K]);

/// The x restriction of a transfer in fixed slots: four (linear) or eight (cubic).
enum XSlots {
    None,
    Four(Vec<XSlot<4>>),
    Eight(Vec<XSlot<8>>),
}

/// Interpolation pairs of one fine cell along one axis (see `Transfer::ptab`).
type PSlot = [(usize, f64); 4];

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

/// True when some block boundary between ranks splits a coarse cell's children along
/// an axis that coarsens: they straddle ranks, and restriction reads two ghost layers.
fn straddles(layout: &BlockLayout, axes: &[Axis; 3], coarsen: [bool; 3]) -> bool {
    layout.blocks.iter().any(|b| (0..3).any(|a| coarsen[a] && !(axes[a].splits_no_cell(b.lo[a]) && axes[a].splits_no_cell(b.hi[a]))))
}

/// The coarse cells whose first child lies in the fine block `b` (over `axes`).
fn coarse_box(b: &IndexBox, coarsen: [bool; 3], axes: &[Axis; 3]) -> IndexBox {
    let mut c = *b;
    for a in 0..3 {
        if coarsen[a] {
            c.lo[a] = axes[a].coarse_below(b.lo[a]);
            c.hi[a] = axes[a].coarse_below(b.hi[a]);
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
/// it, the axes it coarsens along, whether its transfer interpolates cubically and
/// the ghost width of its fields.
struct LevelPlan {
    last: bool,
    copy_below: bool,
    coarsen: [bool; 3],
    cubic: bool,
    ghost: usize,
}

/// The plan of the level over `axes` on `layout` at `depth` (0 = finest);
/// `above_cubic`: the transfer from the finer level interpolates cubically.
#[allow(clippy::too_many_arguments)]
fn plan_level(
    axes: &[Axis; 3],
    dims: usize,
    layout: &BlockLayout,
    replicated: bool,
    force_last: bool,
    depth: usize,
    opts: &MgOptions,
    above_cubic: bool,
) -> LevelPlan {
    let can: [bool; 3] = std::array::from_fn(|a| a < dims && axes[a].can_coarsen());
    let total: usize = axes.iter().take(dims).map(|a| a.n()).product();
    let last = force_last || total <= opts.coarse_max.max(1) || !can.iter().any(|&c| c) || depth + 1 >= opts.max_levels;
    // The direct solve needs the whole level: a distributed last level gets a
    // gathered copy below it.
    let copy_below = last && !replicated;
    let coarsen = if copy_below { [false; 3] } else { can };
    // Ghosts are read across open faces (periodic images, other ranks' cells): by
    // restriction (linear: 1, or 2 where cell pairs straddle ranks; cubic: up to 4)
    // and by prolongation into the finer level (cubic: 2). Cubic restriction needs
    // blocks at least 4 cells thick, else this level's transfer stays linear: that
    // happens only on a finest level split that thin (coarser distributed levels are
    // gathered first) or on a small periodic level, the same on every rank count.
    let open = (0..dims).any(|a| axes[a].periodic()) || (!replicated && layout.blocks.len() > 1);
    let thick = layout.blocks.iter().all(|b| (0..dims).all(|a| b.hi[a] - b.lo[a] >= 4));
    let cubic = opts.interpolation == Interpolation::Cubic && !last && (!open || thick);
    let restrict_reach = if last || !open {
        1
    } else if cubic {
        4
    } else if !replicated && straddles(layout, axes, coarsen) {
        2
    } else {
        1
    };
    let prolong_reach = if above_cubic && open { 2 } else { 1 };
    LevelPlan { last, copy_below, coarsen, cubic, ghost: restrict_reach.max(prolong_reach) }
}

/// The transfer from `fine` (over `axes`) to the level over `caxes`; `gather`: the
/// coarse level is replicated and this rank restricts into a stage block first;
/// `cubic`: cubic interpolation (and its adjoint).
#[allow(clippy::too_many_arguments)]
fn build_transfer(
    fine: &Level,
    axes: &[Axis; 3],
    caxes: &[Axis; 3],
    coarsen: [bool; 3],
    gather: bool,
    cghost: usize,
    stage_blocks: Vec<IndexBox>,
    cubic: bool,
) -> Transfer {
    let dims = fine.dims;
    let fb = fine.block();
    let cb = coarse_box(&fb, coarsen, axes);
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
    let mut ptab: [Vec<PSlot>; 3] = Default::default();
    let mut ptaps = 2;
    for a in 0..3 {
        if !coarsen[a] {
            rtab[a] = (cb.lo[a]..cb.hi[a]).map(|ci| vec![((ci - fb.lo[a]) + fg[a], 1.0)]).collect();
            ptab[a] = (fb.lo[a]..fb.hi[a])
                .map(|fi| {
                    let l = (fi as isize - coarse_origin[a]) as usize;
                    [(l, 1.0), (l, 0.0), (l, 0.0), (l, 0.0)]
                })
                .collect();
            continue;
        }
        for ci in cb.lo[a]..cb.hi[a] {
            let row = axes[a]
                .restrict_weights(&caxes[a], ci, cubic)
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
            let pairs = axes[a].interp(&caxes[a], fi, cubic);
            ptaps = ptaps.max(pairs.len());
            let g = if a < dims { cghost as isize } else { 0 };
            let extent = if fine.replicated { caxes[a].n() as isize } else { (cb.hi[a] - cb.lo[a]) as isize } + 2 * g;
            let local: Vec<(usize, f64)> = pairs
                .into_iter()
                .map(|(ci, w)| {
                    // Physical-face ghosts fold onto the cells they mirror; periodic
                    // ghosts are read from the exchanged ghost ring.
                    let (ci, w) = if caxes[a].periodic() {
                        (ci, w)
                    } else {
                        let (cf, s) = caxes[a].fold(ci);
                        (cf, s * w)
                    };
                    let l = ci - coarse_origin[a];
                    assert!(l >= 0 && l < extent, "prolongation reads beyond the ghost ring (axis {a}, fine {fi}, coarse {ci})");
                    (l as usize, w)
                })
                .collect();
            let out: PSlot = std::array::from_fn(|e| local.get(e).copied().unwrap_or((local[0].0, 0.0)));
            ptab[a].push(out);
        }
    }
    let stage = gather.then(|| Field::zeros(cb, dims, cghost));
    let stage_blocks = if gather { stage_blocks } else { Vec::new() };
    let n = fine.shape();
    let local_only = (0..3).all(|a| rtab[a].iter().flatten().all(|&(f, _)| f >= fg[a] && f < fg[a] + n[a]));
    fn slots<const K: usize>(rtab: &[Vec<(usize, f64)>]) -> Option<Vec<XSlot<K>>> {
        rtab.iter()
            .map(|tab| {
                (tab.len() <= K && !tab.is_empty()).then(|| {
                    let mut i = [tab[0].0; K];
                    let mut w = [0.0; K];
                    for (e, &(f, x)) in tab.iter().enumerate() {
                        i[e] = f;
                        w[e] = x;
                    }
                    (i, w)
                })
            })
            .collect()
    }
    let widest = rtab[0].iter().map(Vec::len).max().unwrap_or(0);
    let xslots = if widest <= 4 {
        slots::<4>(&rtab[0]).map_or(XSlots::None, XSlots::Four)
    } else {
        slots::<8>(&rtab[0]).map_or(XSlots::None, XSlots::Eight)
    };
    let ptaps = if ptaps > 2 { 4 } else { 2 };
    Transfer { rtab, ptab, ptaps, stage, stage_blocks, local_only, xslots, scratch: Scratch::default() }
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
        let mut above_cubic = false;
        loop {
            let LevelPlan { last, copy_below, coarsen, cubic, ghost } =
                plan_level(&axes, dims, &cur_layout, replicated, force_last, levels.len(), &opts, above_cubic);
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
            let stage_layout = coarse_layout(&cur_layout, &axes, &caxes, coarsen, dims);
            // Blocks too thin for the ghost layers the next level's transfers read: it
            // is gathered instead. With cubic interpolation that is any block thinner
            // than 4 cells, so a distributed level always interpolates cubically and
            // the hierarchy is the same on every rank count.
            let cubic_wanted = opts.interpolation == Interpolation::Cubic;
            let thin = stage_layout.blocks.iter().any(|b| {
                (0..dims).any(|a| {
                    let w = b.hi[a] - b.lo[a];
                    (cur_layout.procs[a] > 1 && w < 2) || (cubic_wanted && w < 4)
                })
            });
            let gather = !replicated && (copy_below || ctotal <= opts.agglomerate_below || ctotal <= opts.coarse_max || thin);
            let next_layout = if gather || replicated {
                let cgrid = grid_of(dims, &caxes);
                BlockLayout { grid: cgrid.clone(), procs: [1, 1, 1], blocks: vec![cgrid.index_box()] }
            } else {
                stage_layout.clone()
            };
            // The coarse storage the transfer addresses: the stage block (one ghost
            // layer) when gathering, else the next level's own fields.
            let next = plan_level(&caxes, dims, &next_layout, gather || replicated, copy_below, levels.len() + 1, &opts, cubic);
            let cghost = if gather { 1 + usize::from(cubic) } else { next.ghost };
            let mut t = build_transfer(&lv, &axes, &caxes, coarsen, gather, cghost, stage_layout.blocks.clone(), cubic);
            // Fused or not, every rank of the level must exchange alike.
            t.local_only = c.max(if t.local_only { 0.0 } else { 1.0 }) == 0.0;
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
            above_cubic = cubic;
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
        let (smooth, residual_restrict) =
            if l == 0 { ("smooth (finest)", "residual+restrict (finest)") } else { ("smooth (coarse)", "residual+restrict (coarse)") };
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
            // Only the residual restriction reads across open faces is stored and
            // exchanged; the rest is computed as restriction streams through it.
            let local = self.transfers[l].local_only;
            let lv = &mut self.levels[l];
            let c: &dyn Comm = if lv.replicated { &self.serial } else { comm };
            lv.exchange(c, Slot::U);
            if !local {
                lv.residual_open_layers();
                lv.exchange_residual_full(c);
            }
        }
        self.restrict(comm, l, true);
        if l + 1 == self.levels.len() - 1 || !self.skips_zero_fill() {
            self.levels[l + 1].u.data.fill(0.0);
        }
        self.log.add(residual_restrict, comm, m);
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

    /// Restricts level `l`'s residual to level `l + 1`'s right-hand side: the residual
    /// field with its ghosts filled, or (`fused`) `f - A u` computed on the way, with
    /// `u`'s ghosts filled and, unless [`Multigrid::restricts_locally`], the residual
    /// field's open-face layers computed and exchanged.
    pub(crate) fn restrict(&mut self, comm: &dyn Comm, l: usize, fused: bool) {
        let (fine, rest) = self.levels.split_at_mut(l + 1);
        let (fine, coarse) = (&fine[l], &mut rest[0]);
        let t = &mut self.transfers[l];
        let mut stage = t.stage.take();
        {
            let dst = stage.as_mut().unwrap_or(&mut coarse.f);
            let src = if fused { Fine::Residual { lv: fine, frame: !t.local_only } } else { Fine::Field(fine.r.as_slice()) };
            restrict_separable(src, fine.r.padded_shape(), t, dst);
        }
        if let Some(st) = stage.as_ref() {
            allgather_into(comm, &t.stage_blocks, st, &mut coarse.f);
        }
        t.stage = stage;
    }

    /// Whether restriction from level `l` reads no ghost cell (no residual layer is
    /// stored and exchanged first).
    #[cfg(test)]
    pub(crate) fn restricts_locally(&self, l: usize) -> bool {
        self.transfers[l].local_only
    }

    /// Adds the interpolated level `l + 1` correction to level `l`'s `u`.
    fn prolong(&mut self, comm: &dyn Comm, l: usize) {
        let serial = &self.serial;
        let (fine, rest) = self.levels.split_at_mut(l + 1);
        let (fine, coarse) = (&mut fine[l], &mut rest[0]);
        let t = &mut self.transfers[l];
        let c: &dyn Comm = if coarse.replicated { serial } else { comm };
        coarse.exchange_u_box(c, t.ptaps / 2);
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
            prolong_separable(stage, &t.ptab, t.ptaps, &mut fine.u, &mut t.scratch);
        } else {
            prolong_separable(&coarse.u, &t.ptab, t.ptaps, &mut fine.u, &mut t.scratch);
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
fn coarse_layout(fine: &BlockLayout, axes: &[Axis; 3], caxes: &[Axis; 3], coarsen: [bool; 3], dims: usize) -> BlockLayout {
    BlockLayout {
        grid: grid_of(dims, caxes),
        procs: fine.procs,
        blocks: fine.blocks.iter().map(|b| coarse_box(b, coarsen, axes)).collect(),
    }
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
                    std::array::from_fn(|a| if coarsen[a] { axes[a].children(cl[a]) } else { cl[a]..cl[a] + 1 });
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

/// Partial results of a separable transfer, one slab (a plane in 3D, a row in 2D)
/// each, kept by slab index while consecutive output slabs share them: the
/// transfers stream through the fine field once and their temporaries stay in cache.
#[derive(Default)]
struct SlabCache {
    keys: Vec<Option<usize>>,
    data: Vec<Vec<f64>>,
}

impl SlabCache {
    /// Forgets every slab (the source changed).
    fn clear(&mut self) {
        self.keys.fill(None);
    }

    /// The slot holding slab `key`, filled by `fill` when missing; no slab whose key
    /// is in `keep` is evicted for it.
    #[inline(always)]
    fn get(&mut self, key: usize, keep: impl Fn(usize) -> bool, len: usize, fill: impl FnOnce(&mut [f64])) -> usize {
        if let Some(s) = self.keys.iter().position(|&k| k == Some(key)) {
            return s;
        }
        let s = match self.keys.iter().position(|k| k.is_none_or(|k| !keep(k))) {
            Some(s) => s,
            None => {
                self.keys.push(None);
                self.data.push(Vec::new());
                self.keys.len() - 1
            }
        };
        self.data[s].resize(len, 0.0);
        fill(&mut self.data[s]);
        self.keys[s] = Some(key);
        s
    }
}

/// Work space of one level's transfers.
#[derive(Default)]
struct Scratch {
    /// One slab after the x pass (3D).
    t1: Vec<f64>,
    /// One slab of the fine residual, when restriction computes it.
    plane: Vec<f64>,
    slabs: SlabCache,
}

/// Where restriction reads the fine residual: a field with its ghosts filled, or the
/// level's `f - A u`, computed slab by slab as restriction needs it and never
/// stored; with `frame`, the ghost cells restriction reads come from the level's
/// residual field, whose ghosts were exchanged after its open-face layers were
/// computed ([`Level::residual_open_layers`]).
enum Fine<'a> {
    Field(&'a [f64]),
    Residual { lv: &'a Level, frame: bool },
}

/// Copies the ghost frame of one padded slab (`fp`: padded shape, `g` ghosts, `n`
/// local cells) from `src` into `dst`.
fn copy_frame(src: &[f64], dst: &mut [f64], fp: [usize; 3], g: [usize; 3], n: [usize; 3], d3: bool) {
    let rows = if d3 { fp[1] } else { 1 };
    for j in 0..rows {
        let r = j * fp[0]..(j + 1) * fp[0];
        if d3 && (j < g[1] || j >= g[1] + n[1]) {
            dst[r.clone()].copy_from_slice(&src[r]);
        } else {
            let (a, b) = (r.start + g[0], r.start + g[0] + n[0]);
            dst[r.start..a].copy_from_slice(&src[r.start..a]);
            dst[b..r.end].copy_from_slice(&src[b..r.end]);
        }
    }
}

/// `dst = R src`, one axis at a time (x, then y, then z), slab by slab along the last
/// axis: every value is the same sum, in the same order, as three whole-field passes.
fn restrict_separable(src: Fine, fp: [usize; 3], t: &mut Transfer, dst: &mut Field) {
    crate::simd::avx(
        #[inline(always)]
        || restrict_body(src, fp, &t.rtab, &t.xslots, dst, &mut t.scratch),
    )
}

/// The shape of one restriction: weights, sizes, and the fixed x slots.
struct RestrictShape<'a> {
    rtab: &'a [Vec<Vec<(usize, f64)>>; 3],
    slots: &'a XSlots,
    fp: [usize; 3],
    nc: [usize; 3],
    d3: bool,
    /// The slab axis (z in 3D, y in 2D) and the padded fine slab length.
    ta: usize,
    ps: usize,
}

impl RestrictShape<'_> {
    /// One fine row restricted along x.
    #[inline(always)]
    fn x(&self, row: &[f64], out: &mut [f64]) {
        #[inline(always)]
        fn fixed<const K: usize>(sl: &[XSlot<K>], row: &[f64], out: &mut [f64]) {
            for (o, (i, w)) in out.iter_mut().zip(sl) {
                // Left to right, as the sum over the table below.
                let mut acc = w[0] * row[i[0]];
                for k in 1..K {
                    acc += w[k] * row[i[k]];
                }
                *o = acc;
            }
        }
        match self.slots {
            XSlots::Four(sl) => fixed(sl, row, out),
            XSlots::Eight(sl) => fixed(sl, row, out),
            XSlots::None => {
                for (o, tab) in out.iter_mut().zip(&self.rtab[0]) {
                    *o = tab.iter().map(|&(f, w)| w * row[f]).sum();
                }
            }
        }
    }

    /// The fine slab at padded index `f`, reduced along x (and y in 3D) into `red`.
    #[inline(always)]
    fn reduce(&self, src: &Fine, f: usize, t1: &mut [f64], plane: &mut [f64], red: &mut [f64]) {
        let (fp, nc, ps, ta, d3) = (self.fp, self.nc, self.ps, self.ta, self.d3);
        let slab: &[f64] = match src {
            Fine::Field(s) => &s[f * ps..(f + 1) * ps],
            Fine::Residual { lv, frame } => {
                let (g, n) = (lv.u.ghost, lv.shape());
                let stored = &lv.r.as_slice()[f * ps..(f + 1) * ps];
                if f < g[ta] || f >= g[ta] + n[ta] {
                    stored
                } else {
                    lv.residual_slab(f - g[ta], plane);
                    if *frame {
                        copy_frame(stored, plane, fp, g, n, d3);
                    }
                    plane
                }
            }
        };
        if !d3 {
            self.x(slab, red);
            return;
        }
        for j in 0..fp[1] {
            self.x(&slab[j * fp[0]..(j + 1) * fp[0]], &mut t1[j * nc[0]..(j + 1) * nc[0]]);
        }
        for (jc, tab) in self.rtab[1].iter().enumerate() {
            let out = &mut red[jc * nc[0]..(jc + 1) * nc[0]];
            out.fill(0.0);
            for &(f, w) in tab {
                for (o, v) in out.iter_mut().zip(&t1[f * nc[0]..(f + 1) * nc[0]]) {
                    *o += w * v;
                }
            }
        }
    }
}

#[inline(always)]
fn restrict_body(src: Fine, fp: [usize; 3], rtab: &[Vec<Vec<(usize, f64)>>; 3], slots: &XSlots, dst: &mut Field, sc: &mut Scratch) {
    let nc = [rtab[0].len(), rtab[1].len(), rtab[2].len()];
    let d3 = !(fp[2] == 1 && nc[2] == 1);
    let ta = if d3 { 2 } else { 1 };
    // Padded fine slab and reduced (coarse in x and y) slab lengths.
    let (ps, rs) = if d3 { (fp[0] * fp[1], nc[0] * nc[1]) } else { (fp[0], nc[0]) };
    let shape = RestrictShape { rtab, slots, fp, nc, d3, ta, ps };
    let Scratch { t1, plane, slabs } = sc;
    slabs.clear();
    t1.resize(if d3 { fp[1] * nc[0] } else { 0 }, 0.0);
    plane.resize(ps, 0.0);
    for (kc, tab) in rtab[ta].iter().enumerate() {
        // Coarse rows of this slab: (jc, kc) in 3D, the row kc in 2D.
        let rows = if d3 { nc[1] } else { 1 };
        let row0 = |dst: &Field, jc: usize| if d3 { dst.idx(0, jc, kc) } else { dst.idx(0, kc, 0) };
        for jc in 0..rows {
            let c0 = row0(dst, jc);
            dst.as_slice_mut()[c0..c0 + nc[0]].fill(0.0);
        }
        for &(f, w) in tab {
            let s = slabs.get(
                f,
                |k| tab.iter().any(|e| e.0 == k),
                rs,
                #[inline(always)]
                |red| shape.reduce(&src, f, t1, plane, red),
            );
            let red = &slabs.data[s];
            for jc in 0..rows {
                let c0 = row0(dst, jc);
                let out = &mut dst.as_slice_mut()[c0..c0 + nc[0]];
                for (o, v) in out.iter_mut().zip(&red[jc * nc[0]..(jc + 1) * nc[0]]) {
                    *o += w * v;
                }
            }
        }
    }
}

/// `dst += P src` (src with its ghost ring filled), one axis at a time, slab by slab
/// along the last axis: the same sums, in the same order, as whole-field passes.
fn prolong_separable(src: &Field, ptab: &[Vec<PSlot>; 3], ptaps: usize, dst: &mut Field, sc: &mut Scratch) {
    crate::simd::avx(
        #[inline(always)]
        || match ptaps {
            2 => prolong_body::<2>(src, ptab, dst, sc),
            _ => prolong_body::<4>(src, ptab, dst, sc),
        },
    )
}

/// `Σ_k w_k · v_k(i)` over the first `K` slots, left to right, into `out[i]`
/// (`add`: `out[i] += ` that sum).
#[inline(always)]
fn combine<const K: usize>(p: &PSlot, rows: [&[f64]; K], out: &mut [f64], add: bool) {
    for (i, o) in out.iter_mut().enumerate() {
        let mut acc = p[0].1 * rows[0][i];
        for k in 1..K {
            acc += p[k].1 * rows[k][i];
        }
        *o = if add { *o + acc } else { acc };
    }
}

/// The coarse slab at padded index `c` of `s` (padded shape `cp`), interpolated
/// along x (and y in 3D) into `e`.
#[inline(always)]
fn prolong_expand<const K: usize>(s: &[f64], cp: [usize; 3], ptab: &[Vec<PSlot>; 3], d3: bool, c: usize, t1: &mut [f64], e: &mut [f64]) {
    let nf0 = ptab[0].len();
    let ps = if d3 { cp[0] * cp[1] } else { cp[0] };
    let slab = &s[c * ps..(c + 1) * ps];
    let x = |row: &[f64], out: &mut [f64]| {
        for (o, p) in out.iter_mut().zip(&ptab[0]) {
            let mut acc = p[0].1 * row[p[0].0];
            for k in 1..K {
                acc += p[k].1 * row[p[k].0];
            }
            *o = acc;
        }
    };
    if !d3 {
        x(slab, e);
        return;
    }
    for j in 0..cp[1] {
        x(&slab[j * cp[0]..(j + 1) * cp[0]], &mut t1[j * nf0..(j + 1) * nf0]);
    }
    for (j, p) in ptab[1].iter().enumerate() {
        let rows: [&[f64]; K] = std::array::from_fn(|k| &t1[p[k].0 * nf0..(p[k].0 + 1) * nf0]);
        combine::<K>(p, rows, &mut e[j * nf0..(j + 1) * nf0], false);
    }
}

#[inline(always)]
fn prolong_body<const K: usize>(src: &Field, ptab: &[Vec<PSlot>; 3], dst: &mut Field, sc: &mut Scratch) {
    let cp = src.padded_shape();
    let s = src.as_slice();
    let nf = [ptab[0].len(), ptab[1].len(), ptab[2].len()];
    let d3 = !(cp[2] == 1 && nf[2] == 1);
    let ta = if d3 { 2 } else { 1 };
    // Expanded (fine in x and y) slab length.
    let es = if d3 { nf[0] * nf[1] } else { nf[0] };
    let Scratch { t1, slabs, .. } = sc;
    slabs.clear();
    t1.resize(if d3 { cp[1] * nf[0] } else { 0 }, 0.0);
    for (k, p) in ptab[ta].iter().enumerate() {
        let keep = |c: usize| p[..K].iter().any(|e| e.0 == c);
        let ids: [usize; K] = std::array::from_fn(|q| {
            let c = p[q].0;
            slabs.get(
                c,
                keep,
                es,
                #[inline(always)]
                |e| prolong_expand::<K>(s, cp, ptab, d3, c, t1, e),
            )
        });
        let rows = if d3 { nf[1] } else { 1 };
        for j in 0..rows {
            let c0 = if d3 { dst.idx(0, j, k) } else { dst.idx(0, k, 0) };
            let out = &mut dst.as_slice_mut()[c0..c0 + nf[0]];
            let src_rows: [&[f64]; K] = std::array::from_fn(|q| &slabs.data[ids[q]][j * nf[0]..(j + 1) * nf[0]]);
            combine::<K>(p, src_rows, out, true);
        }
    }
}
