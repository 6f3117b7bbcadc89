//! The steady `poisson` model: `-∇·(k ∇φ) = source` with Dirichlet (value),
//! Neumann (outward gradient) and periodic faces, solved by the linear solver of
//! `[numerics.solver]` (MG-preconditioned CG by default).
use crate::case::{Bc, Case};
use crate::error::{Result, RunError};
use crate::linsolve::{BcKind, LinearSolver, Multigrid, OperatorSpec, Reason, SolveReport};
use crate::output::{self, Monitor};
use crate::run::{check_memory, layout_for, prepare_run_dir, RunOptions, RunState, RunSummary};
use decomp::comm::{agree, ReduceOp};
use decomp::io::H5File;
use decomp::{BlockLayout, Comm, Field};
use std::time::Instant;

/// The assembled problem on this rank: operator, right-hand side, initial guess.
pub struct PoissonProblem {
    /// The solver (its multigrid finest level is the operator).
    pub solver: LinearSolver,
    /// Right-hand side with the boundary values folded in.
    pub rhs: Field,
    /// The unknown (initial guess before the solve).
    pub phi: Field,
}

fn bc_kind(bc: &Bc) -> BcKind {
    match bc {
        Bc::Dirichlet(_) => BcKind::Dirichlet,
        Bc::Neumann(_) => BcKind::Neumann,
        Bc::Periodic => BcKind::Periodic,
    }
}

impl PoissonProblem {
    /// Builds the operator, the multigrid hierarchy and the right-hand side.
    pub fn new(comm: &dyn Comm, case: &Case, layout: &BlockLayout) -> Result<PoissonProblem> {
        let grid = &layout.grid;
        let dims = grid.dims;
        let block = layout.blocks[comm.rank()];
        let mut bc = [[BcKind::Neumann; 2]; 3];
        for a in 0..dims {
            for side in 0..2 {
                bc[a][side] = bc_kind(&case.boundary[a][side]);
            }
        }
        let centre = |i: usize, j: usize, k: usize| [grid.centre(0, i), grid.centre(1, j), grid.centre(2, k)];
        // k(x): a constant folds into β; otherwise a cell field, checked positive.
        let kexpr = case.coefficient.clone().unwrap_or_else(|| crate::expr::Expr::constant(1.0));
        let (beta, kfield) = match kexpr.as_constant() {
            Some(c) => (c, None),
            None => {
                let mut k = Field::zeros(block, dims, 1);
                k.fill_with(|i, j, kk| {
                    let c = centre(i, j, kk);
                    kexpr.eval(c[0], c[1], c[2], 0.0)
                });
                (1.0, Some(k))
            }
        };
        let bad = match (&kfield, beta) {
            (None, b) if !(b > 0.0 && b.is_finite()) => Some(format!("it is {b} everywhere")),
            (Some(k), _) => {
                let lo = k.block.lo;
                k.interior().indexed_iter().find(|(_, v)| !(**v > 0.0 && v.is_finite())).map(|((kk, j, i), v)| {
                    let c = centre(lo[0] + i, lo[1] + j, lo[2] + kk);
                    format!("it is {v} at ({})", c[..dims].iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", "))
                })
            }
            _ => None,
        };
        let res = match bad {
            Some(m) => Err(case.error_at(
                "physics.coefficient",
                format!("the coefficient must be positive and finite; {m}"),
                "k > 0 everywhere in the domain",
            )),
            None => Ok(()),
        };
        agree(comm, res.map_err(RunError::from), RunError::Usage)?;

        let spec = OperatorSpec { alpha: 0.0, beta, coefficient: kfield.as_ref(), bc };
        let mut mg = Multigrid::new(comm, layout, &spec, case.solver.mg)?;
        // Exact coefficient on the physical faces of the finest level.
        let face_k = |a: usize, side: usize, l: [usize; 3]| {
            let g = [block.lo[0] + l[0], block.lo[1] + l[1], block.lo[2] + l[2]];
            let mut p = centre(g[0], g[1], g[2]);
            p[a] = if side == 0 { grid.lower[a] } else { grid.upper[a] };
            kexpr.eval(p[0], p[1], p[2], 0.0)
        };
        if kfield.is_some() {
            mg.levels[0].set_boundary_faces(face_k);
        }
        let solver = LinearSolver::new(mg, case.solver);
        let mut rhs = solver.new_field();
        rhs.fill_with(|i, j, k| {
            let c = centre(i, j, k);
            case.source.eval(c[0], c[1], c[2], 0.0)
        });
        // Boundary values: the ghost that makes the face value g (Dirichlet: 2g - φ_b)
        // or the outward gradient q (Neumann: φ_b + h q) contributes β k_b / h² times
        // its known part to the right-hand side.
        let h = grid.spacing();
        let n = block.shape();
        for a in 0..dims {
            for side in 0..2 {
                let at_face = if side == 0 { block.lo[a] == 0 } else { block.hi[a] == grid.cells[a] };
                let e = match &case.boundary[a][side] {
                    Bc::Dirichlet(e) | Bc::Neumann(e) if at_face => e,
                    _ => continue,
                };
                let face = if side == 0 { grid.lower[a] } else { grid.upper[a] };
                let li = if side == 0 { 0 } else { n[a] - 1 };
                decomp::grid::for_each_in_layer(n, a, li, |l| {
                    let g = [block.lo[0] + l[0], block.lo[1] + l[1], block.lo[2] + l[2]];
                    let mut p = centre(g[0], g[1], g[2]);
                    p[a] = face;
                    let v = e.eval(p[0], p[1], p[2], 0.0);
                    let kb = if kfield.is_some() { face_k(a, side, l) } else { 1.0 };
                    let add = match &case.boundary[a][side] {
                        Bc::Dirichlet(_) => beta * kb * 2.0 * v / (h[a] * h[a]),
                        _ => beta * kb * v / h[a],
                    };
                    let c = rhs.idx(l[0], l[1], l[2]);
                    rhs.as_slice_mut()[c] += add;
                });
            }
        }
        let mut phi = solver.new_field();
        phi.fill_with(|i, j, k| {
            let c = centre(i, j, k);
            case.initial.eval(c[0], c[1], c[2], 0.0)
        });
        Ok(PoissonProblem { solver, rhs, phi })
    }

    /// Solves in place.
    pub fn solve(&mut self, comm: &dyn Comm) -> SolveReport {
        self.solver.solve(comm, &self.rhs, &mut self.phi)
    }
}

/// Global statistics of the interior of `f`: sum, sum of squares, min, max.
fn field_stats(comm: &dyn Comm, f: &Field) -> (f64, f64, f64, f64) {
    let mut s = [0.0, 0.0];
    let mut m = [f64::NEG_INFINITY, f64::NEG_INFINITY];
    for v in f.interior().iter() {
        s[0] += v;
        s[1] += v * v;
        m[0] = m[0].max(*v);
        m[1] = m[1].max(-v);
    }
    comm.allreduce_f64(&mut s, ReduceOp::Sum);
    comm.allreduce_f64(&mut m, ReduceOp::Max);
    (s[0], s[1], -m[1], m[0])
}

/// `tessera run` for a poisson case.
pub(crate) fn run_inner(comm: &dyn Comm, case: &Case, opts: &RunOptions, state: &mut RunState) -> Result<RunSummary> {
    let start = Instant::now();
    let layout = layout_for(case, comm.size())?;
    let dir = case.output_dir.clone();
    if opts.restart.is_some() {
        return Err(RunError::Usage("model poisson is steady: there is nothing to restart; run it again without --restart".into()));
    }
    // φ, the right-hand side, the Krylov vectors and the multigrid levels (≈ 1/3 more).
    check_memory(comm, &layout, 12)?;
    let t_setup = Instant::now();
    let mut prob = PoissonProblem::new(comm, case, &layout)?;
    let setup = t_setup.elapsed().as_secs_f64();
    prepare_run_dir(comm, case, opts)?;
    state.dir_ready = true;
    output::write_on_rank0(comm, &dir.join("case.toml"), || case.resolved.as_bytes().to_vec())?;
    let h5_path = dir.join("output.h5");
    {
        let h5 = H5File::create(comm, &h5_path)?;
        output::write_header(&h5, comm, case, &layout, "output")?;
        h5.close(comm)?;
    }
    let grid = &layout.grid;
    let levels = prob.solver.mg.describe();
    if opts.progress && comm.rank() == 0 {
        let sizes: Vec<String> = levels
            .iter()
            .map(|(n, rep)| format!("{}{}", n.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("x"), if *rep { "*" } else { "" }))
            .collect();
        eprintln!(
            "poisson: {} cells on {} rank(s); multigrid levels {} (* gathered on every rank)",
            grid.total_cells(),
            comm.size(),
            sizes.join(" ")
        );
    }

    let report = prob.solve(comm);
    let t_out = Instant::now();
    let step = 1u64;
    let snapshots = vec![(step, 0.0)];
    let (sum, sumsq, min, max) = field_stats(comm, &prob.phi);
    let h = grid.spacing();
    let cell_volume: f64 = h[..grid.dims].iter().product();
    let cells = grid.total_cells() as f64;
    let mut columns: Vec<String> = ["step", "time", "iterations", "relative_residual"].iter().map(|s| s.to_string()).collect();
    columns.extend(case.norms.iter().map(|n| format!("phi_{n}")));
    columns.extend((0..case.probes.len()).map(|i| format!("probe{i}_phi")));
    let mut row = vec![0.0, report.iterations as f64, report.relative_residual()];
    for n in &case.norms {
        row.push(match n.as_str() {
            "l2" => (sumsq * cell_volume).sqrt(),
            "max" => max,
            "min" => min,
            "mean" => sum / cells,
            _ => sum * cell_volume,
        });
    }
    let probes_at = crate::run::probe_cells(case, &layout, comm.rank());
    let mut probes: Vec<f64> = probes_at.iter().map(|c| c.map_or(0.0, |c| prob.phi.as_slice()[prob.phi.idx(c[0], c[1], c[2])])).collect();
    comm.allreduce_f64(&mut probes, ReduceOp::Sum);
    row.extend_from_slice(&probes);
    let mut monitor = Monitor::open(comm, &dir.join("monitor.csv"), &columns, None)?;
    monitor.row(&row, step);
    monitor.flush(comm)?;

    let (status, message) = match report.reason {
        Reason::DivergedNan => (
            "diverged",
            "the linear solve produced NaN or infinity; check the source, the coefficient and the boundary values".to_string(),
        ),
        r if !r.converged() && case.solver.error_if_not_converged => (
            "failed",
            format!(
                "the linear solve did not converge ({} after {} iterations, |r|/|b| = {:.3e}) and numerics.solver.error_if_not_converged is set",
                r,
                report.iterations,
                report.relative_residual()
            ),
        ),
        _ => ("completed", String::new()),
    };
    // Only a completed solve leaves a result: a diverged or failed one writes its
    // monitor row and summary, and no snapshot that could be mistaken for a solution.
    let mut checkpoint = None;
    let mut snapshots = snapshots;
    if status == "completed" {
        let fields: Vec<(&str, &Field)> = case.output_fields.iter().map(|f| (f.as_str(), &prob.phi)).collect();
        let h5 = H5File::open_rw(comm, &h5_path)?;
        output::write_snapshot(&h5, comm, &layout, step, 0.0, &fields)?;
        h5.close(comm)?;
        output::write_on_rank0(comm, &dir.join("output.xdmf"), || {
            output::xdmf(&layout, "output.h5", &snapshots, &case.output_fields).into_bytes()
        })?;
        checkpoint = Some(output::write_checkpoint(comm, case, &layout, &dir, step, 0.0, 0.0, &[("phi", &prob.phi)])?);
    } else {
        snapshots.clear();
    }
    let t_output = t_out.elapsed().as_secs_f64();
    if comm.rank() == 0 && opts.progress {
        eprintln!(
            "poisson: {}+{} {} in {} iterations, |r|/|b| = {:.3e}, {:.3} s (residual x{:.2} per iteration)",
            report.method,
            report.precond,
            report.reason,
            report.iterations,
            report.relative_residual(),
            report.seconds,
            report.convergence_factor()
        );
        if !report.reason.converged() && status == "completed" {
            eprintln!("warning: the solve did not converge; raise numerics.solver.max_iterations or check the problem");
        }
        if report.projected_mean.abs() > 1e-8 * (report.rhs_norm / cells.sqrt()).max(f64::MIN_POSITIVE) {
            eprintln!(
                "warning: the problem is singular (no dirichlet face) and the data were incompatible: a mean of {:.3e} was removed from the right-hand side",
                report.projected_mean
            );
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let mut ph = [setup, report.seconds, t_output];
    comm.allreduce_f64(&mut ph, ReduceOp::Max);
    let stats = comm.stats();
    let mut cs = [stats.messages, stats.bytes, stats.reductions];
    comm.allreduce_u64(&mut cs, ReduceOp::Sum);
    let mut perf = crate::perf::PhaseLog::new();
    perf.add_seconds("setup (hierarchy, rhs)", setup);
    perf.merge_prefixed("", &prob.solver.phase_log());
    perf.add_seconds("output", t_output);
    let perf = perf.reduce(comm);
    if opts.progress && comm.rank() == 0 {
        eprint!("{}", perf.table(start.elapsed().as_secs_f64()));
    }
    let levels_json: Vec<serde_json::Value> = levels.iter().map(|(n, rep)| serde_json::json!({ "cells": n, "gathered": rep })).collect();
    let text = || {
        let s = serde_json::json!({
            "status": status,
            "message": message,
            "case": case.name,
            "model": case.model,
            "steps": step,
            "final_time": 0.0,
            "wall_seconds": wall,
            "ranks": comm.size(),
            "process_grid": &layout.procs[..grid.dims],
            "cells": &grid.cells[..grid.dims],
            "restart_from": null,
            "last_checkpoint": checkpoint.as_ref().map(|p| p.display().to_string()),
            "checkpoints_written": usize::from(checkpoint.is_some()),
            "snapshots": snapshots.len(),
            "linear_solves": [ { "name": "phi", "report": &report, "multigrid_levels": levels_json } ],
            "timings": { "setup": ph[0], "solve": ph[1], "output": ph[2], "total": wall },
            "performance": perf.to_json(),
            "communication": { "messages": cs[0], "bytes": cs[1], "reductions": cs[2] },
            "format_version": output::FORMAT_VERSION,
        });
        output::summary_bytes(s)
    };
    output::write_on_rank0(comm, &dir.join("summary.json"), text)?;
    state.summary_written = true;
    if status != "completed" {
        return Err(RunError::Failed(message));
    }
    Ok(RunSummary { status: status.into(), model: case.model.clone(), steps: step, time: 0.0, run_dir: dir, wall_seconds: wall })
}
