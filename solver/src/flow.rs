//! The `incompressible` model: the incompressible Navier–Stokes equations
//! `∂u/∂t + ∇·(u u) = -∇p + ν∇²u + f`, `∇·u = 0` on a staggered (MAC) grid.
//!
//! Storage: velocity component `d` lives on the faces normal to axis `d`; the face on
//! the low side of cell `I` is stored at index `I` of a cell-shaped field with one
//! ghost layer, so every rank owns the low faces of its cells and the face at the high
//! end of the domain sits in the last rank's ghost slot. Pressure lives at cell
//! centres. Second-order central differences throughout (Harlow & Welch 1965):
//! the advection term in conservative form with averaged fluxes, the five/seven-point
//! viscous Laplacian, and a discrete divergence and gradient that are adjoint, so the
//! projection leaves a divergence free to the pressure solver's tolerance.
//!
//! Time: the three-stage low-storage Runge–Kutta scheme of Spalart, Moser & Rogers
//! (1991) / Wray, with a projection at the end of every stage (Le & Moin 1991):
//! `u* = u + Δt (γ_k R(u) + ζ_k R(u_prev))`, `∇²φ = ∇·u*/(c_k Δt)`,
//! `u ← u* - c_k Δt ∇φ` with `c_k = γ_k + ζ_k`. Its stability region covers the
//! imaginary axis up to √3 (central advection) and the real axis to about -2.5
//! (explicit viscous term). The pressure equation is solved by the linear solver of
//! `[numerics.solver]` (MG-preconditioned CG by default), starting from the previous
//! pressure. With `numerics.projection = "final_stage"` only the last stage projects
//! (Le & Moin's simplification): the first two carry `-c_k Δt ∇p₀` with the step-start
//! pressure p₀ and keep their divergence; the last one's pressure p₃ makes the step's
//! velocity divergence-free, and the step's pressure is `p₀ + c₃ (p₃ - p₀)`, what
//! acted over the whole step (c₁ + c₂ + c₃ = 1). One pressure solve per step, second
//! order in time with a larger error constant.
//!
//! Boundaries: a wall sets the normal velocity (0) on its faces and the tangential
//! ghost so the face average equals the wall velocity (`u_g = 2U - u`); an inlet
//! does the same with its velocity; an outlet fixes the pressure (Dirichlet for φ)
//! and gives the velocity a zero normal gradient, its normal face value following from
//! continuity in the adjacent cell.
mod viscous;

use crate::case::{Bc, Case, FlowBc, Projection, Viscous};
use crate::expr::Expr;
use crate::linsolve::{BcKind, LinearSolver, Multigrid, OperatorSpec, SolveReport};
use decomp::comm::{agree, ReduceOp};
use decomp::{BlockLayout, Comm, Field, HaloPlan, Stencil};

/// γ_k of the three stages.
const GAMMA: [f64; 3] = [8.0 / 15.0, 5.0 / 12.0, 3.0 / 4.0];
/// ζ_k of the three stages.
const ZETA: [f64; 3] = [0.0, -17.0 / 60.0, -5.0 / 12.0];
/// Time at the start of stage k, as a fraction of the step.
const STAGE_START: [f64; 3] = [0.0, 8.0 / 15.0, 2.0 / 3.0];
/// Halo tags of the velocity and pressure exchanges.
const TAG: i32 = 7100;

/// Values of one velocity component (or the pressure) on one boundary face.
#[derive(Clone, Debug)]
enum Values {
    /// The same everywhere, always.
    Const(f64),
    /// Fixed in time, one per point of the padded face layer.
    Fixed(Vec<f64>),
    /// Varies in time: evaluated each time the boundary is filled.
    Timed(Expr),
}

/// What the boundary fill does on one face.
#[derive(Clone, Debug)]
enum FaceKind {
    /// Wall or inlet: normal and tangential velocity given.
    Given(Vec<Values>),
    /// Outlet: zero normal gradient; pressure given.
    Outlet(Values),
    /// Periodic or not on this rank: nothing to fill.
    None,
}

/// Per-step quantities every rank contributes to the monitors.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowStats {
    /// Σ over cells of |ū|² (cell-centred velocity), times ½ and the cell volume.
    pub kinetic_energy: f64,
    /// max |u_d| over owned faces and the given boundary velocities, per axis.
    pub umax: [f64; 3],
    /// The local Courant number per unit step: max over cells of Σ_d |u_d|/h_d (each
    /// |u_d| the larger of the cell's two d-faces), and max_d |U_d|/h_d over the
    /// velocities given on walls and inlets.
    pub courant_rate: f64,
    /// max |∇·u| over cells.
    pub max_divergence: f64,
    /// max |u^{n+1} - u^n| over owned faces.
    pub max_change: f64,
    /// Pressure-solve iterations in the step (all stages).
    pub iterations: usize,
    /// Largest relative residual of the step's pressure solves.
    pub residual: f64,
    /// False if a pressure solve failed to converge in the step.
    pub converged: bool,
    /// False if a Crank–Nicolson viscous solve missed `numerics.viscous_rtol` in the step.
    pub viscous_converged: bool,
}

/// Accumulated cost of the model's phases on this rank.
#[derive(Clone, Debug, Default)]
pub struct FlowTimes {
    /// Advection, viscous term and force.
    pub momentum: f64,
    /// Halo exchanges of velocity and pressure.
    pub halo: f64,
    /// Boundary fills.
    pub boundary: f64,
    /// Divergence, right-hand side and correction.
    pub projection: f64,
    /// Crank–Nicolson viscous solves.
    pub viscous: f64,
}

/// The incompressible solver on one rank.
pub struct FlowSolver {
    /// The block layout.
    pub layout: BlockLayout,
    dims: usize,
    h: [f64; 3],
    nu: f64,
    /// Face velocities, one field per axis (see the module docs for the storage).
    pub vel: Vec<Field>,
    /// Pressure at cell centres: the last projection's, or with one projection per
    /// step the step's `p₀ + c₃ (p₃ - p₀)`.
    pub p: Field,
    /// Explicit tendencies R of the current and the previous stage, per axis.
    r_cur: Vec<Field>,
    r_prev: Vec<Field>,
    /// Velocity at the start of the step (for the steady-state change).
    old: Vec<Field>,
    /// Per outlet `[axis][side]`: the normal velocity on the faces next to it at the
    /// start of the stage (the predictor gives the outlet their increment).
    outlet_start: [[Vec<f64>; 2]; 3],
    /// Pressure right-hand side.
    rhs: Field,
    /// Right-hand side and solution in the pressure solver's layout (its finest level
    /// may keep wider ghosts than the velocity's one layer).
    solve_b: Field,
    solve_x: Field,
    halo: HaloPlan,
    /// The pressure solver.
    pub pressure: LinearSolver,
    /// Boundary treatment, `[axis][side]` (None off this rank's boundary).
    faces: Vec<[FaceKind; 2]>,
    /// Body force per axis: constant, fixed field on the faces, or timed.
    force: Vec<Values>,
    /// max |given boundary velocity| per axis at the last fill.
    bc_speed: [f64; 3],
    /// Scratch for timed boundary values.
    scratch: Vec<f64>,
    /// Cost of the phases.
    pub times: FlowTimes,
    /// Totals of the pressure solves.
    pub solves: u64,
    /// Σ iterations of the pressure solves.
    pub iterations: u64,
    /// Largest iteration count of one pressure solve.
    pub max_iterations: usize,
    /// Pressure solves that did not converge.
    pub not_converged: u64,
    /// The last pressure solve's report.
    pub last: Option<SolveReport>,
    /// Seconds in pressure solves.
    pub solve_seconds: f64,
    /// The Crank–Nicolson viscous solves' work space (None: explicit viscous term).
    imp: Option<viscous::Implicit>,
    /// `numerics.projection = "final_stage"`: the step's start pressure, padded
    /// (ghosts included), kept through the final projection; None when every stage
    /// projects.
    p_start: Option<Field>,
}

/// Coordinates of padded index `q` (of a block starting at global `lo`; `fill_with`
/// passes global indices, so `lo` = 0 there) along axis `a`: a face position when `a` is the
/// component's own axis (`staggered`), a cell centre otherwise.
fn coord(layout: &BlockLayout, lo: usize, g: usize, a: usize, q: usize, staggered: bool) -> f64 {
    let grid = &layout.grid;
    let h = grid.spacing()[a];
    let global = lo as f64 + q as f64 - g as f64;
    grid.lower[a] + h * (global + if staggered { 0.0 } else { 0.5 })
}

impl FlowSolver {
    /// Sets up fields, the pressure hierarchy and the boundary data.
    pub fn new(comm: &dyn Comm, case: &Case, layout: BlockLayout) -> crate::error::Result<Self> {
        let grid = layout.grid.clone();
        let dims = grid.dims;
        let block = layout.blocks[comm.rank()];
        let mut bc = [[BcKind::Neumann; 2]; 3];
        for a in 0..dims {
            for side in 0..2 {
                bc[a][side] = match case.boundary[a][side] {
                    Bc::Dirichlet(_) => BcKind::Dirichlet,
                    Bc::Periodic => BcKind::Periodic,
                    Bc::Neumann(_) => BcKind::Neumann,
                };
            }
        }
        let spec = OperatorSpec { alpha: 0.0, beta: 1.0, coefficient: None, bc };
        let mg = Multigrid::new(comm, &layout, &spec, case.solver.mg)?;
        let pressure = LinearSolver::new(mg, case.solver);
        let p = Field::zeros(block, dims, 1);
        let zeros = || (0..dims).map(|_| Field::zeros(block, dims, 1)).collect::<Vec<_>>();
        let halo = HaloPlan::new(&layout, comm.rank(), 1, Stencil::Box, TAG)?;
        let mut s = FlowSolver {
            dims,
            h: grid.spacing(),
            nu: case.viscosity,
            vel: zeros(),
            p,
            r_cur: zeros(),
            r_prev: zeros(),
            old: zeros(),
            outlet_start: Default::default(),
            rhs: Field::zeros(block, dims, 1),
            solve_b: pressure.new_field(),
            solve_x: pressure.new_field(),
            halo,
            pressure,
            faces: Vec::new(),
            force: Vec::new(),
            bc_speed: [0.0; 3],
            scratch: Vec::new(),
            times: FlowTimes::default(),
            solves: 0,
            iterations: 0,
            max_iterations: 0,
            not_converged: 0,
            last: None,
            solve_seconds: 0.0,
            imp: None,
            p_start: None,
            layout,
        };
        s.faces = (0..dims)
            .map(|a| {
                [0, 1].map(|side| {
                    if !s.on_boundary(a, side) {
                        return FaceKind::None;
                    }
                    match &case.flow_boundary[a][side] {
                        FlowBc::Periodic => FaceKind::None,
                        FlowBc::Wall { velocity, .. } | FlowBc::Inlet(velocity) => {
                            FaceKind::Given((0..dims).map(|d| s.face_values(&velocity[d], a, side, Some(d))).collect())
                        }
                        FlowBc::Outlet(pr) => FaceKind::Outlet(s.face_values(pr, a, side, None)),
                    }
                })
            })
            .collect();
        s.force = (0..dims).map(|d| s.force_values(&case.body_force[d], d)).collect();
        if case.projection == Projection::FinalStage {
            s.p_start = Some(Field::zeros(block, dims, 1));
        }
        if case.viscous == Viscous::CrankNicolson {
            s.imp = Some(viscous::Implicit::new(&s, case.viscous_rtol, case.solver.reproducible));
        }
        // Initial state: velocity from the case (then boundary values), pressure guess.
        for d in 0..dims {
            eval_points(&s.layout, &case.initial_velocity[d], Some(d), 0.0, &mut s.vel[d]);
        }
        eval_points(&s.layout, &case.initial, None, 0.0, &mut s.p);
        let bad = s.vel.iter().chain(std::iter::once(&s.p)).any(|f| f.interior().iter().any(|v| !v.is_finite()));
        let res = if bad {
            Err(case.error_at("initial", "the initial velocity or pressure is not finite somewhere in the domain", "check the expressions"))
        } else {
            Ok(())
        };
        agree(comm, res.map_err(crate::error::RunError::from), crate::error::RunError::Usage)?;
        Ok(s)
    }

    /// True when this rank's block touches the physical face (`axis`, `side`).
    fn on_boundary(&self, a: usize, side: usize) -> bool {
        let g = &self.layout.grid;
        let b = &self.vel[0].block;
        !g.periodic[a] && if side == 0 { b.lo[a] == 0 } else { b.hi[a] == g.cells[a] }
    }

    /// The other two axes of `a` (the second is z, of extent 1, in 2D).
    fn others(a: usize) -> (usize, usize) {
        match a {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        }
    }

    /// Evaluates `e` on the padded layer of face (`a`, `side`): the points of
    /// component `comp` (None: cell-centre points, the pressure).
    fn face_values(&self, e: &Expr, a: usize, side: usize, comp: Option<usize>) -> Values {
        if let Some(c) = e.as_constant() {
            return Values::Const(c);
        }
        if e.depends_on_time() {
            return Values::Timed(e.clone());
        }
        let mut v = Vec::new();
        self.eval_face(e, a, side, comp, 0.0, &mut v);
        Values::Fixed(v)
    }

    fn eval_face(&self, e: &Expr, a: usize, side: usize, comp: Option<usize>, t: f64, out: &mut Vec<f64>) {
        let f = &self.vel[0];
        let p = f.padded_shape();
        let (b, c) = Self::others(a);
        let lo = f.block.lo;
        let g = f.ghost;
        let grid = &self.layout.grid;
        let bound = if side == 0 { grid.lower[a] } else { grid.upper[a] };
        out.clear();
        for qc in 0..p[c] {
            for qb in 0..p[b] {
                let mut pt = [0.0; 3];
                pt[a] = bound;
                pt[b] = coord(&self.layout, lo[b], g[b], b, qb, comp == Some(b));
                if c < self.dims {
                    pt[c] = coord(&self.layout, lo[c], g[c], c, qc, comp == Some(c));
                }
                out.push(e.eval(pt[0], pt[1], pt[2], t));
            }
        }
    }

    fn force_values(&self, e: &Expr, d: usize) -> Values {
        if let Some(c) = e.as_constant() {
            return Values::Const(c);
        }
        if e.depends_on_time() {
            return Values::Timed(e.clone());
        }
        let mut f = self.vel[d].clone();
        eval_points(&self.layout, e, Some(d), 0.0, &mut f);
        Values::Fixed(f.as_slice().to_vec())
    }

    /// Global index range along `a` of the faces of component `d` this rank updates:
    /// its low faces, less the domain's first face on a wall-bounded axis.
    fn first_face(&self, d: usize) -> usize {
        usize::from(!self.layout.grid.periodic[d] && self.vel[d].block.lo[d] == 0)
    }

    /// Exchanges the ghosts of every velocity component.
    fn exchange_velocity(&mut self, comm: &dyn Comm) {
        let t0 = std::time::Instant::now();
        for f in &mut self.vel {
            self.halo.exchange(comm, f);
        }
        self.times.halo += t0.elapsed().as_secs_f64();
    }

    /// Fills the physical boundary: given normal faces and tangential ghosts at time
    /// `t`; outlet normal faces from continuity (`predictor` false) or by copying the
    /// adjacent face (`predictor` true: the intermediate velocity before projection).
    fn fill_boundary(&mut self, t: f64, predictor: bool) {
        let t0 = std::time::Instant::now();
        let dims = self.dims;
        let mut speed = [0.0f64; 3];
        let mut scratch = std::mem::take(&mut self.scratch);
        // Pass 1: given normal faces. Pass 2: outlet normal faces. Pass 3: tangential ghosts.
        for pass in 0..3 {
            for a in 0..dims {
                for side in 0..2 {
                    let kind = std::mem::replace(&mut self.faces[a][side], FaceKind::None);
                    match (&kind, pass) {
                        (FaceKind::Given(v), 0) => {
                            let vals = self.values(&v[a], a, side, Some(a), t, &mut scratch);
                            speed[a] = speed[a].max(self.set_normal(a, side, vals));
                        }
                        (FaceKind::Outlet(_), 1) => self.outlet_normal(a, side, predictor),
                        (FaceKind::Given(v), 2) => {
                            for d in (0..dims).filter(|&d| d != a) {
                                let vals = self.values(&v[d], a, side, Some(d), t, &mut scratch);
                                speed[d] = speed[d].max(self.set_tangential(a, side, d, Some(vals)));
                            }
                        }
                        (FaceKind::Outlet(_), 2) => {
                            for d in (0..dims).filter(|&d| d != a) {
                                self.set_tangential(a, side, d, None);
                            }
                        }
                        _ => {}
                    }
                    self.faces[a][side] = kind;
                }
            }
        }
        self.scratch = scratch;
        self.bc_speed = speed;
        self.times.boundary += t0.elapsed().as_secs_f64();
    }

    /// The values of `v` on the padded layer of face (`a`, `side`) at time `t`.
    fn values<'s>(&self, v: &'s Values, a: usize, side: usize, comp: Option<usize>, t: f64, scratch: &'s mut Vec<f64>) -> Vals<'s> {
        match v {
            Values::Const(c) => Vals::Const(*c),
            Values::Fixed(f) => Vals::Slice(f),
            Values::Timed(e) => {
                self.eval_face(e, a, side, comp, t, scratch);
                Vals::Slice(scratch)
            }
        }
    }

    /// Padded index of the boundary face slot along `a` for component `a` (normal) and
    /// of the ghost layer for the others: side 0 → 1 (normal) / 0 (ghost); side 1 → g + n.
    fn layer(&self, a: usize, side: usize) -> (usize, usize, usize) {
        let n = self.vel[0].shape()[a];
        // (normal face slot, tangential ghost slot, adjacent interior slot)
        if side == 0 {
            (1, 0, 1)
        } else {
            (1 + n, 1 + n, n)
        }
    }

    /// Sets the normal faces of component `a` on face (`a`, `side`); returns max |value|.
    fn set_normal(&mut self, a: usize, side: usize, vals: Vals) -> f64 {
        let (slot, _, _) = self.layer(a, side);
        let f = &mut self.vel[a];
        let p = f.padded_shape();
        let st = f.strides();
        let (b, c) = Self::others(a);
        let data = f.as_slice_mut();
        let mut m = 0.0f64;
        let mut q = 0;
        for qc in 0..p[c] {
            for qb in 0..p[b] {
                let v = vals.at(q);
                q += 1;
                let idx = slot * st[a] + qb * st[b] + qc * st[c];
                data[idx] = v;
                if side == 0 {
                    // The ghost beyond the first face is never read; keep it defined.
                    data[idx - st[a]] = v;
                }
                m = m.max(v.abs());
            }
        }
        m
    }

    /// Sets the tangential ghost of component `d` on face (`a`, `side`): the face
    /// average equals the given value (`2U - u`), or zero gradient (`None`, outlet).
    fn set_tangential(&mut self, a: usize, side: usize, d: usize, vals: Option<Vals>) -> f64 {
        let (_, ghost, inner) = self.layer(a, side);
        let f = &mut self.vel[d];
        let p = f.padded_shape();
        let st = f.strides();
        let (b, c) = Self::others(a);
        // The second cell in from the wall (padded 2, or n - 1 on the high side).
        let inner2 = if side == 0 { inner + 1 } else { inner - 1 };
        let data = f.as_slice_mut();
        let mut m = 0.0f64;
        let mut q = 0;
        for qc in 0..p[c] {
            for qb in 0..p[b] {
                let base = qb * st[b] + qc * st[c];
                let inside = data[inner * st[a] + base];
                data[ghost * st[a] + base] = match &vals {
                    Some(v) => {
                        // Quadratic through the wall value (at h/2) and the first two
                        // cells: exact for a parabolic profile, so a laminar channel
                        // flow is reproduced to round-off.
                        let u = v.at(q);
                        m = m.max(u.abs());
                        (8.0 * u - 6.0 * inside + data[inner2 * st[a] + base]) / 3.0
                    }
                    None => inside,
                };
                q += 1;
            }
        }
        m
    }

    /// The padded layer of the faces next to outlet (`a`, `side`) and their normal
    /// velocity: side 0 → slot 2, side 1 → slot n (the last owned).
    fn outlet_adjacent(&self, a: usize, side: usize) -> usize {
        let (slot, _, _) = self.layer(a, side);
        if side == 0 {
            2
        } else {
            slot - 1
        }
    }

    /// Keeps the stage-start normal velocity next to each outlet ([`FlowSolver::outlet_normal`]).
    fn save_outlet_start(&mut self) {
        for a in 0..self.dims {
            for side in 0..2 {
                if !matches!(self.faces[a][side], FaceKind::Outlet(_)) {
                    continue;
                }
                let adj = self.outlet_adjacent(a, side);
                let f = &self.vel[a];
                let (p, st) = (f.padded_shape(), f.strides());
                let (data, keep) = (f.as_slice(), &mut self.outlet_start[a][side]);
                keep.clear();
                keep.extend(layer_offsets(p, st, a).map(|o| data[adj * st[a] + o]));
            }
        }
    }

    /// Outlet normal faces of component `a` on face (`a`, `side`). After the
    /// projection (`predictor` false) they follow from continuity in the adjacent cell.
    /// For the intermediate velocity they take the increment of the adjacent face over
    /// the stage (zero normal gradient of the change): copying its value instead made
    /// the outlet first order in time, for either viscous scheme (a pulsed inlet's
    /// flow converged at order 1 instead of 3 with the explicit term, 2 with
    /// Crank–Nicolson).
    fn outlet_normal(&mut self, a: usize, side: usize, predictor: bool) {
        let (slot, _, _) = self.layer(a, side);
        let adj = self.outlet_adjacent(a, side);
        let start = std::mem::take(&mut self.outlet_start[a][side]);
        // The adjacent cell: side 0 → padded 1, side 1 → padded n.
        let cell = if side == 0 { 1 } else { slot - 1 };
        let dims = self.dims;
        let st = self.vel[a].strides();
        let p = self.vel[a].padded_shape();
        let (b, c) = Self::others(a);
        let h = self.h;
        for qc in 0..p[c] {
            for qb in 0..p[b] {
                let base = qb * st[b] + qc * st[c];
                let mut v = self.vel[a].as_slice()[adj * st[a] + base];
                if predictor {
                    v = self.vel[a].as_slice()[slot * st[a] + base] + (v - start[qc * p[b] + qb]);
                } else {
                    // Continuity in the adjacent cell: Σ_e (u_e[C+e] - u_e[C]) / h_e = 0.
                    let in_range = |q: usize, e: usize| q + 1 < p[e];
                    let cc = cell * st[a] + base;
                    let mut tang = 0.0;
                    for e in (0..dims).filter(|&e| e != a) {
                        let q = if e == b { qb } else { qc };
                        if !in_range(q, e) {
                            continue;
                        }
                        let ue = self.vel[e].as_slice();
                        tang += (ue[cc + st[e]] - ue[cc]) / h[e];
                    }
                    v = if side == 0 { v + h[a] * tang } else { v - h[a] * tang };
                }
                self.vel[a].as_slice_mut()[slot * st[a] + base] = v;
                if side == 0 {
                    self.vel[a].as_slice_mut()[(slot - 1) * st[a] + base] = v;
                }
            }
        }
        self.outlet_start[a][side] = start;
    }

    /// Makes ghosts and boundary faces of the velocity consistent at time `t` (after
    /// a restart or an initial condition): halo exchange, then the boundary fill.
    pub fn prepare(&mut self, comm: &dyn Comm, t: f64) {
        self.exchange_velocity(comm);
        self.fill_boundary(t, false);
        // Tangential ghosts next to rank boundaries may depend on normal faces filled
        // just now on a neighbour: a second exchange makes every ghost final.
        self.exchange_velocity(comm);
        self.fill_boundary(t, false);
        // The Crank–Nicolson predictor reads the pressure gradient on rank boundaries.
        self.halo.exchange(comm, &mut self.p);
    }

    /// Totals of the Crank–Nicolson viscous solves: (solves, Σ iterations, largest
    /// count, not converged), or None for the explicit viscous term.
    pub fn viscous_totals(&self) -> Option<(u64, u64, usize, u64)> {
        self.imp.as_ref().map(|m| (m.solves, m.iterations, m.max_iterations_seen, m.not_converged))
    }

    /// The explicit tendency R_d = -∇·(u u_d) + ν∇²u_d + f_d at the faces of component
    /// `d` this rank updates, at time `t`, into `self.r_cur[d]` (with Crank–Nicolson
    /// the viscous part ν∇²u_d into its own field instead). One pass per row; faces
    /// outside the updated ones are left as they are (nothing reads them).
    fn tendency(&mut self, d: usize, t: f64) {
        let ih = self.h.map(|h| 1.0 / h);
        let k = TendencyCoefficients { ih, visc: ih.map(|x| self.nu * (x * x)) };
        let first = self.first_face(d);
        let out = &mut self.r_cur[d];
        // A constant force enters the pass itself; any other is written first.
        let force = match &self.force[d] {
            Values::Const(c) => Some(*c),
            Values::Fixed(v) => {
                out.as_slice_mut().copy_from_slice(v);
                None
            }
            Values::Timed(e) => {
                eval_points(&self.layout, e, Some(d), t, out);
                None
            }
        };
        let vel = slices(&self.vel);
        let st = self.vel[d].strides();
        let o = out.as_slice_mut();
        let mut visc = self.imp.as_mut().map(|m| m.visc[d].as_slice_mut());
        // Every combination as its own loop: the branches are constants in each.
        macro_rules! rows {
            ($split:literal, $constf:literal) => {
                face_rows(&self.p, d, first, |r| {
                    let vo = match visc.as_deref_mut() {
                        Some(v) => &mut v[r.clone()],
                        None => &mut [][..],
                    };
                    let (or, f0, c0) = (&mut o[r.clone()], force.unwrap_or(0.0), r.start);
                    match (self.dims, d) {
                        (2, 0) => tendency_row::<0, 2, $split, $constf>(&vel, st, &k, c0, f0, or, vo),
                        (2, _) => tendency_row::<1, 2, $split, $constf>(&vel, st, &k, c0, f0, or, vo),
                        (_, 0) => tendency_row::<0, 3, $split, $constf>(&vel, st, &k, c0, f0, or, vo),
                        (_, 1) => tendency_row::<1, 3, $split, $constf>(&vel, st, &k, c0, f0, or, vo),
                        _ => tendency_row::<2, 3, $split, $constf>(&vel, st, &k, c0, f0, or, vo),
                    }
                })
            };
        }
        match (visc.is_some(), force.is_some()) {
            (true, true) => rows!(true, true),
            (true, false) => rows!(true, false),
            (false, true) => rows!(false, true),
            (false, false) => rows!(false, false),
        }
    }

    /// Applies `f(c)` to the storage index of every face of component `d` this rank
    /// updates.
    fn for_each_face(&self, d: usize, f: impl FnMut(usize)) {
        each_face(&self.p, d, self.first_face(d), f);
    }

    /// Cell divergence Σ_e (u_e[C+e] - u_e[C]) / h_e times `scale` into `self.rhs`.
    fn divergence_into_rhs(&mut self, scale: f64) {
        let n = self.rhs.shape();
        for k in 0..n[2] {
            for j in 0..n[1] {
                let row0 = self.p.idx(0, j, k);
                divergence_row(&self.vel, &self.h, row0, scale, &mut self.rhs.as_slice_mut()[row0..row0 + n[0]]);
            }
        }
    }

    /// max over cells of |∇·u| (the pressure right-hand side serves as scratch).
    fn max_divergence(&mut self) -> f64 {
        self.divergence_into_rhs(1.0);
        self.rhs.interior().iter().fold(0.0f64, |m, v| m.max(v.abs()))
    }

    /// Adds the outlet pressure to the right-hand side of `-∇²φ = rhs`: the ghost
    /// `2g - φ` contributes `2g/h²` in the adjacent cell.
    fn outlet_rhs(&mut self, t: f64) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let faces = std::mem::take(&mut self.faces);
        for a in 0..self.dims {
            for side in 0..2 {
                let FaceKind::Outlet(pv) = &faces[a][side] else { continue };
                let vals = self.values(pv, a, side, None, t, &mut scratch);
                let (_, _, inner) = self.layer(a, side);
                let st = self.rhs.strides();
                let p = self.rhs.padded_shape();
                let (b, c) = Self::others(a);
                let w = 2.0 / (self.h[a] * self.h[a]);
                let mut q = 0;
                let data = self.rhs.as_slice_mut();
                for qc in 0..p[c] {
                    for qb in 0..p[b] {
                        let interior_b = qb >= 1 && qb + 1 < p[b];
                        let interior_c = c >= self.dims || (qc >= 1 && qc + 1 < p[c]);
                        if interior_b && interior_c {
                            data[inner * st[a] + qb * st[b] + qc * st[c]] += w * vals.at(q);
                        }
                        q += 1;
                    }
                }
            }
        }
        self.faces = faces;
        self.scratch = scratch;
    }

    /// One time step from `t` to `t + dt`. Returns this rank's share of the monitors.
    pub fn step(&mut self, comm: &dyn Comm, t: f64, dt: f64) -> FlowStats {
        let dims = self.dims;
        let mut stats = FlowStats { converged: true, viscous_converged: true, ..Default::default() };
        for d in 0..dims {
            self.old[d].as_slice_mut().copy_from_slice(self.vel[d].as_slice());
        }
        if let Some(p0) = self.p_start.as_mut() {
            p0.as_slice_mut().copy_from_slice(self.p.as_slice());
        }
        for k in 0..3 {
            let ts = t + STAGE_START[k] * dt;
            let te = if k == 2 { t + dt } else { t + STAGE_START[k + 1] * dt };
            if k > 0 {
                self.exchange_velocity(comm);
                self.fill_boundary(ts, false);
            }
            self.save_outlet_start();
            // Momentum predictor.
            let t0 = std::time::Instant::now();
            for d in 0..dims {
                self.tendency(d, ts);
            }
            let (g, z) = (GAMMA[k] * dt, ZETA[k] * dt);
            let cdt = (GAMMA[k] + ZETA[k]) * dt;
            // With one projection per step, stages 1 and 2 keep the step-start pressure
            // gradient in their velocity and skip the projection.
            let project = k == 2 || self.p_start.is_none();
            if let Some(mut imp) = self.imp.take() {
                self.times.momentum += t0.elapsed().as_secs_f64();
                let tv = std::time::Instant::now();
                let ok = self.implicit_predictor(comm, &mut imp, k, [g, z, cdt], (ts, te), project);
                stats.viscous_converged &= ok;
                self.imp = Some(imp);
                self.times.viscous += tv.elapsed().as_secs_f64();
            } else {
                self.explicit_predictor(k, g, z, if project { 0.0 } else { cdt });
                self.times.momentum += t0.elapsed().as_secs_f64();
            }
            self.exchange_velocity(comm);
            self.fill_boundary(te, true);
            if !project {
                std::mem::swap(&mut self.r_cur, &mut self.r_prev);
                continue;
            }

            // Projection.
            let t1 = std::time::Instant::now();

            self.divergence_into_rhs(-1.0 / cdt);
            self.outlet_rhs(te);
            self.times.projection += t1.elapsed().as_secs_f64();
            copy_interior(&self.rhs, &mut self.solve_b);
            copy_interior(&self.p, &mut self.solve_x);
            let report = self.pressure.solve(comm, &self.solve_b, &mut self.solve_x);
            copy_interior(&self.solve_x, &mut self.p);
            self.solves += 1;
            self.iterations += report.iterations as u64;
            self.max_iterations = self.max_iterations.max(report.iterations);
            self.solve_seconds += report.seconds;
            stats.iterations += report.iterations;
            stats.residual = stats.residual.max(report.relative_residual());
            if !report.reason.converged() {
                self.not_converged += 1;
                stats.converged = false;
            }
            self.last = Some(report);
            let t2 = std::time::Instant::now();
            self.halo.exchange(comm, &mut self.p);
            self.times.halo += t2.elapsed().as_secs_f64();
            let t3 = std::time::Instant::now();
            for d in 0..dims {
                let first = self.first_face(d);
                let sd = self.p.strides()[d];
                let w = cdt / self.h[d];
                let (us, ps) = (self.vel[d].as_slice_mut(), self.p.as_slice());
                each_face(&self.p, d, first, |c| us[c] -= w * (ps[c] - ps[c - sd]));
            }
            // One projection per step: the final stage's pressure p₃ acted over its
            // share c₃ of the step, the step-start pressure p₀ over the rest, so the
            // step's pressure is p₀ + c₃ (p₃ - p₀) (ghosts included: the same
            // arithmetic on every rank).
            if let Some(p0) = self.p_start.as_ref() {
                let c = cdt / dt;
                for (pv, p0) in self.p.as_slice_mut().iter_mut().zip(p0.as_slice()) {
                    *pv = p0 + c * (*pv - p0);
                }
            }
            self.times.projection += t3.elapsed().as_secs_f64();
            std::mem::swap(&mut self.r_cur, &mut self.r_prev);
        }
        self.exchange_velocity(comm);
        self.fill_boundary(t + dt, false);

        // Monitors.
        let vol: f64 = self.h[..dims].iter().product();
        let n = self.p.shape();
        let st = self.vel[0].strides();
        let mut ke = 0.0;
        let vel = self.vel_slices();
        let vel = &vel[..dims];
        for k in 0..n[2] {
            for j in 0..n[1] {
                let row0 = self.p.idx(0, j, k);
                for c in row0..row0 + n[0] {
                    for (e, ue) in vel.iter().enumerate() {
                        let m = 0.5 * (ue[c] + ue[c + st[e]]);
                        ke += m * m;
                    }
                }
            }
        }
        stats.kinetic_energy = 0.5 * ke * vol;
        for d in 0..dims {
            let (u, o) = (self.vel[d].as_slice(), self.old[d].as_slice());
            let mut m = self.bc_speed[d];
            let mut ch = 0.0f64;
            self.for_each_face(d, |c| {
                m = m.max(u[c].abs());
                ch = ch.max((u[c] - o[c]).abs());
            });
            stats.umax[d] = m;
            stats.max_change = stats.max_change.max(ch);
        }
        stats.max_divergence = self.max_divergence();
        stats.courant_rate = self.local_rate();
        stats
    }

    /// The velocity components' storage (unused entries empty), taken once before a
    /// loop over cells rather than per cell.
    fn vel_slices(&self) -> [&[f64]; 3] {
        slices(&self.vel)
    }

    /// This rank's share of [`FlowStats::courant_rate`] (needs the ghosts and
    /// boundary faces of the velocity).
    fn local_rate(&self) -> f64 {
        let ih = self.h.map(|h| 1.0 / h);
        let st = self.vel[0].strides();
        let n = self.p.shape();
        let mut rate = (0..self.dims).map(|d| self.bc_speed[d] * ih[d]).fold(0.0f64, f64::max);
        let vel = self.vel_slices();
        let vel = &vel[..self.dims];
        for k in 0..n[2] {
            for j in 0..n[1] {
                let c0 = self.p.idx(0, j, k);
                for i in 0..n[0] {
                    let mut r = 0.0;
                    for (d, u) in vel.iter().enumerate() {
                        r += u[c0 + i].abs().max(u[c0 + i + st[d]].abs()) * ih[d];
                    }
                    rate = rate.max(r);
                }
            }
        }
        rate
    }

    /// [`FlowSolver::local_rate`] reduced over the ranks: the step's Courant number
    /// is `dt` times it.
    pub fn courant_rate(&self, comm: &dyn Comm) -> f64 {
        let mut r = [self.local_rate()];
        comm.allreduce_f64(&mut r, ReduceOp::Max);
        r[0]
    }

    /// The explicit predictor of stage `k`: `u += g R_k + z R_{k-1} - pdt G p` (`pdt`
    /// is 0 when the stage projects).
    fn explicit_predictor(&mut self, k: usize, g: f64, z: f64, pdt: f64) {
        for d in 0..self.dims {
            let first = self.first_face(d);
            let sd = self.p.strides()[d];
            let w = pdt / self.h[d];
            let (us, rc, rp, ps) = (self.vel[d].as_slice_mut(), self.r_cur[d].as_slice(), self.r_prev[d].as_slice(), self.p.as_slice());
            match (k, pdt == 0.0) {
                (0, true) => each_face(&self.p, d, first, |c| us[c] += g * rc[c]),
                (_, true) => each_face(&self.p, d, first, |c| us[c] += g * rc[c] + z * rp[c]),
                (0, false) => each_face(&self.p, d, first, |c| us[c] += g * rc[c] - w * (ps[c] - ps[c - sd])),
                (_, false) => each_face(&self.p, d, first, |c| us[c] += g * rc[c] + z * rp[c] - w * (ps[c] - ps[c - sd])),
            }
        }
    }

    /// The Crank–Nicolson predictor of stage `k` (see `viscous`): solves for δ per
    /// component, then leaves `u + δ + c_k Δt G p` for the projection, or `u + δ` (the
    /// stage's velocity, with the pressure gradient in it) when the stage does not
    /// project. Returns false if a solve missed its tolerance.
    /// `ts`, `te`: the stage's start and end times (for the boundary lifting).
    fn implicit_predictor(
        &mut self,
        comm: &dyn Comm,
        imp: &mut viscous::Implicit,
        k: usize,
        [g, z, cdt]: [f64; 3],
        (ts, te): (f64, f64),
        project: bool,
    ) -> bool {
        let beta = 0.5 * cdt * self.nu;
        let mut ok = true;
        for d in 0..self.dims {
            let first = self.first_face(d);
            let sd = self.p.strides()[d];
            let ih = 1.0 / self.h[d];
            {
                let (b, rc, rp, v, ps) = (
                    imp.rhs.as_slice_mut(),
                    self.r_cur[d].as_slice(),
                    self.r_prev[d].as_slice(),
                    imp.visc[d].as_slice(),
                    self.p.as_slice(),
                );
                if k == 0 {
                    each_face(&self.p, d, first, |c| b[c] = g * rc[c] + cdt * (v[c] - (ps[c] - ps[c - sd]) * ih));
                } else {
                    each_face(&self.p, d, first, |c| b[c] = g * rc[c] + z * rp[c] + cdt * (v[c] - (ps[c] - ps[c - sd]) * ih));
                }
            }
            self.lift_boundary(imp, d, beta, ts, te);
            ok &= self.viscous_solve(comm, imp, d, beta);
            let (us, x, ps) = (self.vel[d].as_slice_mut(), imp.x.as_slice(), self.p.as_slice());
            if project {
                each_face(&self.p, d, first, |c| us[c] += x[c] + cdt * (ps[c] - ps[c - sd]) * ih);
            } else {
                each_face(&self.p, d, first, |c| us[c] += x[c]);
            }
        }
        ok
    }

    /// max |u_d| per axis over owned faces and given boundary velocities, reduced.
    pub fn speeds(&self, comm: &dyn Comm) -> [f64; 3] {
        let mut m = [0.0; 3];
        for d in 0..self.dims {
            let u = self.vel[d].as_slice();
            let mut x = self.bc_speed[d];
            self.for_each_face(d, |c| x = x.max(u[c].abs()));
            m[d] = x;
        }
        comm.allreduce_f64(&mut m, ReduceOp::Max);
        m
    }

    /// Computes the snapshot fields `names` into `outs`. Collective: the velocity
    /// ghosts are exchanged first, so values next to a rank boundary that meets a
    /// physical one (read by the vorticity) are their owner's, then the boundary fill
    /// restores exactly the state the next step expects.
    pub fn output_fields(&mut self, comm: &dyn Comm, t: f64, names: &[String], outs: &mut [Field]) {
        self.exchange_velocity(comm);
        for (name, f) in names.iter().zip(outs.iter_mut()) {
            self.output_field(name, f);
        }
        self.fill_boundary(t, false);
    }

    /// The cell-centred field `name` (a snapshot field) into `out`.
    fn output_field(&self, name: &str, out: &mut Field) {
        let st = self.vel[0].strides();
        let dims = self.dims;
        let h = self.h;
        let comp = |name: &str| ["x", "y", "z"].iter().position(|s| name.ends_with(s));
        // ω_a at the edge along `a` through the low corner of cell c (the other axes'
        // low faces): ∂u_c/∂x_b - ∂u_b/∂x_c.
        // Edges on an outlet take the value of the edge one cell inside (the outlet's
        // zero normal gradient): the outlet's normal velocity in a ghost row across a
        // rank boundary is not known exactly on this rank (its continuity needs the
        // row beyond), and the answer must not depend on the decomposition.
        let pad = self.p.padded_shape();
        let n = out.shape();
        let outlet: Vec<[bool; 2]> = (0..dims).map(|e| [0, 1].map(|side| matches!(self.faces[e][side], FaceKind::Outlet(_)))).collect();
        let edge = |a: usize, mut c: usize| -> f64 {
            let (b, cc) = match a {
                0 => (1, 2),
                1 => (2, 0),
                _ => (0, 1),
            };
            for e in [b, cc].into_iter().filter(|&e| e < dims) {
                let q = (c / st[e]) % pad[e];
                if outlet[e][1] && q == n[e] + 1 {
                    c -= st[e];
                } else if outlet[e][0] && q == 1 {
                    c += st[e];
                }
            }
            let ub = self.vel[b].as_slice();
            let uc = self.vel[cc].as_slice();
            (uc[c] - uc[c - st[b]]) / h[b] - (ub[c] - ub[c - st[cc]]) / h[cc]
        };
        // Cell-centre ω_a: the mean of the four edges along a around the cell.
        let centre = |a: usize, c: usize| -> f64 {
            let (b, cc) = match a {
                0 => (1, 2),
                1 => (2, 0),
                _ => (0, 1),
            };
            0.25 * (edge(a, c) + edge(a, c + st[b]) + edge(a, c + st[cc]) + edge(a, c + st[b] + st[cc]))
        };
        let os = out.strides();
        debug_assert_eq!(os, st);
        for k in 0..n[2] {
            for j in 0..n[1] {
                let row0 = self.p.idx(0, j, k);
                for c in row0..row0 + n[0] {
                    let v = match name {
                        "pressure" => self.p.as_slice()[c],
                        "vorticity" if dims == 2 => centre(2, c),
                        "vorticity" => (0..3).map(|a| centre(a, c).powi(2)).sum::<f64>().sqrt(),
                        _ if name.starts_with("vorticity_") => centre(comp(name).expect("axis"), c),
                        _ => {
                            let d = comp(name).expect("velocity axis");
                            let u = self.vel[d].as_slice();
                            0.5 * (u[c] + u[c + st[d]])
                        }
                    };
                    out.as_slice_mut()[c] = v;
                }
            }
        }
    }

    /// Cell-centred (u, v, w, p) in local cell `c` (w = 0 in 2D).
    pub fn probe(&self, c: [usize; 3]) -> [f64; 4] {
        let i = self.p.idx(c[0], c[1], c[2]);
        let st = self.vel[0].strides();
        let mut v = [0.0; 4];
        for d in 0..self.dims {
            let u = self.vel[d].as_slice();
            v[d] = 0.5 * (u[i] + u[i + st[d]]);
        }
        v[3] = self.p.as_slice()[i];
        v
    }

    /// The state a checkpoint holds: face velocities and pressure, by dataset name.
    pub fn state_fields(&self) -> Vec<(&'static str, &Field)> {
        let names = ["velocity_x_face", "velocity_y_face", "velocity_z_face"];
        let mut v: Vec<(&'static str, &Field)> = (0..self.dims).map(|d| (names[d], &self.vel[d])).collect();
        v.push(("pressure", &self.p));
        v
    }

    /// The same, mutable, for a restart.
    pub fn state_fields_mut(&mut self) -> Vec<(&'static str, &mut Field)> {
        let names = ["velocity_x_face", "velocity_y_face", "velocity_z_face"];
        let mut v: Vec<(&'static str, &mut Field)> = Vec::new();
        for (d, f) in self.vel.iter_mut().enumerate() {
            v.push((names[d], f));
        }
        v.push(("pressure", &mut self.p));
        v
    }

    /// Finds the first non-finite or largest velocity on this rank: (field name,
    /// position, value).
    pub fn worst_value(&self) -> (String, [f64; 3], f64) {
        let mut best: Option<(usize, usize, f64)> = None;
        for d in 0..self.dims {
            let u = self.vel[d].as_slice();
            self.for_each_face(d, |c| {
                let v = u[c];
                let score = if v.is_finite() { v.abs() } else { f64::INFINITY };
                if best.is_none_or(|(_, _, s)| score > s) {
                    best = Some((d, c, score));
                }
            });
        }
        let Some((d, c, _)) = best else { return (String::new(), [0.0; 3], 0.0) };
        let f = &self.vel[d];
        let p = f.padded_shape();
        let q = [c % p[0], (c / p[0]) % p[1], c / (p[0] * p[1])];
        let mut pos = [0.0; 3];
        for a in 0..self.dims {
            pos[a] = coord(&self.layout, f.block.lo[a], f.ghost[a], a, q[a], a == d);
        }
        (["velocity_x", "velocity_y", "velocity_z"][d].to_string(), pos, f.as_slice()[c])
    }
}

/// Evaluates `e` at the interior points of `out`: the faces of component `d`
/// (`staggered = Some(d)`: the low face of each cell) or the cell centres (None).
fn eval_points(layout: &BlockLayout, e: &Expr, staggered: Option<usize>, t: f64, out: &mut Field) {
    let dims = layout.grid.dims;
    out.fill_with(|i, j, k| {
        let x = [i, j, k];
        let mut pt = [0.0; 3];
        for a in 0..dims {
            // fill_with passes global indices: lo = 0, padded index = global + 1.
            pt[a] = coord(layout, 0, 1, a, x[a] + 1, staggered == Some(a));
        }
        e.eval(pt[0], pt[1], pt[2], t)
    });
}

/// Storage offsets, relative to layer 0 along `a`, of the points of a padded layer
/// normal to `a` (`p`, `st`: the field's padded shape and strides), in the order
/// boundary values are evaluated and stored: the second other axis outer.
fn layer_offsets(p: [usize; 3], st: [usize; 3], a: usize) -> impl Iterator<Item = usize> {
    let (b, c) = FlowSolver::others(a);
    (0..p[c]).flat_map(move |qc| (0..p[b]).map(move |qb| qb * st[b] + qc * st[c]))
}

/// Applies `f(c)` to the storage index of every face of component `d` a rank updates,
/// indexed through `p` (any field of the block with one ghost layer): its low faces,
/// less the domain's first face (`first` = 1) on a wall-bounded axis.
fn each_face(p: &Field, d: usize, first: usize, mut f: impl FnMut(usize)) {
    face_rows(p, d, first, |r| r.for_each(&mut f));
}

/// The same faces as `each_face`, one storage range per row.
fn face_rows(p: &Field, d: usize, first: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
    let n = p.shape();
    for k in 0..n[2] {
        if d == 2 && k < first {
            continue;
        }
        for j in 0..n[1] {
            if d == 1 && j < first {
                continue;
            }
            let row0 = p.idx(0, j, k);
            let i0 = if d == 0 { first } else { 0 };
            f(row0 + i0..row0 + n[0]);
        }
    }
}

/// The storage of up to three fields (unused entries empty).
fn slices(fields: &[Field]) -> [&[f64]; 3] {
    let mut s: [&[f64]; 3] = [&[], &[], &[]];
    for (v, f) in s.iter_mut().zip(fields) {
        *v = f.as_slice();
    }
    s
}

/// 1/h and ν/h² per axis, for [`tendency_row`].
struct TendencyCoefficients {
    ih: [f64; 3],
    visc: [f64; 3],
}

/// One row of [`FlowSolver::tendency`] for component `D` of a `DIMS`-dimensional
/// flow: the faces at storage indices `c0..c0 + out.len()`. `out` starts from `force`
/// (`CONSTF`) or holds the force already; the advection terms are subtracted and the
/// viscous ones added axis by axis, in the order of the axes, into `out` or (`SPLIT`)
/// into `visc`, from 0. The axis loop unrolls and the branches are constants, and
/// every access is a shifted row slice, so the pass vectorises.
#[inline(always)]
fn tendency_row<const D: usize, const DIMS: usize, const SPLIT: bool, const CONSTF: bool>(
    vel: &[&[f64]; 3],
    st: [usize; 3],
    k: &TendencyCoefficients,
    c0: usize,
    force: f64,
    out: &mut [f64],
    visc: &mut [f64],
) {
    let n = out.len();
    fn slice(f: &[f64], o: usize, n: usize) -> &[f64] {
        &f[o..o + n]
    }
    let row = |f, o| slice(f, o, n);
    let ud = vel[D];
    let sd = st[D];
    let uc = row(ud, c0);
    // Per axis e: u_d shifted by ±e; for e ≠ d also u_e at the four corners of the
    // flux faces: (c + e), (c + e - d), (c), (c - d).
    let up: [&[f64]; DIMS] = std::array::from_fn(|e| row(ud, c0 + st[e]));
    let um: [&[f64]; DIMS] = std::array::from_fn(|e| row(ud, c0 - st[e]));
    let ep: [&[f64]; DIMS] = std::array::from_fn(|e| if e == D { uc } else { row(vel[e], c0 + st[e]) });
    let epm: [&[f64]; DIMS] = std::array::from_fn(|e| if e == D { uc } else { row(vel[e], c0 + st[e] - sd) });
    let ec: [&[f64]; DIMS] = std::array::from_fn(|e| if e == D { uc } else { row(vel[e], c0) });
    let em: [&[f64]; DIMS] = std::array::from_fn(|e| if e == D { uc } else { row(vel[e], c0 - sd) });
    let w_self = k.ih;
    let w_cross = k.ih.map(|x| 0.25 * x);
    let visc = if SPLIT { &mut visc[..n] } else { visc };
    for i in 0..n {
        let mut acc = if CONSTF { force } else { out[i] };
        let mut v = 0.0;
        for e in 0..DIMS {
            if e == D {
                let hi = 0.5 * (uc[i] + up[e][i]);
                let lo = 0.5 * (um[e][i] + uc[i]);
                acc -= (hi * hi - lo * lo) * w_self[e];
            } else {
                let fhi = (ep[e][i] + epm[e][i]) * (uc[i] + up[e][i]);
                let flo = (ec[e][i] + em[e][i]) * (uc[i] + um[e][i]);
                acc -= (fhi - flo) * w_cross[e];
            }
            let lap = k.visc[e] * (up[e][i] - 2.0 * uc[i] + um[e][i]);
            if SPLIT {
                v += lap;
            } else {
                acc += lap;
            }
        }
        out[i] = acc;
        if SPLIT {
            visc[i] = v;
        }
    }
}

/// `out[i]` = `scale` × the divergence of the cell at storage index `row0 + i`,
/// summed axis by axis (each pass a plain vectorisable loop over the row).
fn divergence_row(vel: &[Field], h: &[f64; 3], row0: usize, scale: f64, out: &mut [f64]) {
    let st = vel[0].strides();
    out.fill(0.0);
    for (e, f) in vel.iter().enumerate() {
        let ue = &f.as_slice()[row0..row0 + out.len() + st[e]];
        let w = scale / h[e];
        let se = st[e];
        for (i, o) in out.iter_mut().enumerate() {
            *o += (ue[i + se] - ue[i]) * w;
        }
    }
}

/// Copies the interior of `src` into `dst` (same block, any ghost widths).
fn copy_interior(src: &Field, dst: &mut Field) {
    let n = src.shape();
    for k in 0..n[2] {
        for j in 0..n[1] {
            let (a, b) = (src.idx(0, j, k), dst.idx(0, j, k));
            dst.as_slice_mut()[b..b + n[0]].copy_from_slice(&src.as_slice()[a..a + n[0]]);
        }
    }
}

/// Boundary values in use: a constant or one value per point of the padded layer.
enum Vals<'a> {
    Const(f64),
    Slice(&'a [f64]),
}

impl Vals<'_> {
    #[inline]
    fn at(&self, q: usize) -> f64 {
        match self {
            Vals::Const(c) => *c,
            Vals::Slice(s) => s[q],
        }
    }
}
