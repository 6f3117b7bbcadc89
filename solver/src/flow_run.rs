//! `tessera run` for model incompressible: the time loop with the adaptive step,
//! monitors, divergence detection, snapshots, checkpoints and restart.
use crate::case::{Case, Viscous};
use crate::error::Result;
use crate::flow::{FlowSolver, FlowStats};
use crate::output::{self, Monitor};
use crate::perf::{Mark, PhaseLog};
use crate::run::{
    check_memory, finish, fraction_done, layout_for, open_run_dir, probe_cells, step_to_end, Progress, RunOptions, RunState, RunSummary,
};
use decomp::comm::ReduceOp;
use decomp::io::H5File;
use decomp::{Comm, Field};
use std::path::PathBuf;
use std::time::Instant;

/// A CFL number above this after a step means the step was unstable: the scheme's
/// limit is √3 and the automatic step aims at `numerics.cfl` ≤ 1.
const BLOWUP_CFL: f64 = 2.0;

/// Under Crank–Nicolson, the largest ν Δt Σ 1/h² of the automatic step.
const CN_DIFFUSION_NUMBER: f64 = 10.0;

/// ν Σ 1/h² of the case's mesh: a step's diffusion number is dt times it.
fn diffusion_rate(case: &Case) -> f64 {
    case.viscosity * case.grid.spacing().iter().take(case.grid.dims).map(|h| 1.0 / (h * h)).sum::<f64>()
}

/// The time step for the local Courant number per unit step `rate` (max over cells of
/// Σ_d |u_d|/h_d, see `FlowStats::courant_rate`): the Courant limit `cfl / rate` and the
/// viscous limit `stability_factor · 2.5 / (ν Σ 4/h²)` combined harmonically (each
/// uses its share of the stability region; under Crank–Nicolson the smaller of the
/// Courant limit and ν Δt Σ 1/h² = 10), capped by `dt_max`, or the fixed `dt`.
pub fn choose_dt(case: &Case, rate: f64) -> f64 {
    if let Some(dt) = case.dt {
        return dt;
    }
    let conv = rate / case.cfl;
    let mut dt = match case.viscous {
        Viscous::Explicit => 1.0 / (conv + 1.0 / (case.stability_factor * case.viscous_dt())),
        // Unconditionally stable, but the highest modes stop being damped for long
        // steps (the amplification tends to -1): ν Δt Σ 1/h² ≤ 10 bounds the step, and
        // gives one to a fluid at rest.
        Viscous::CrankNicolson => (1.0 / conv).min(CN_DIFFUSION_NUMBER / diffusion_rate(case)),
    };
    if let Some(m) = case.dt_max {
        dt = dt.min(m);
    }
    dt
}

pub(crate) fn run_inner(comm: &dyn Comm, case: &Case, opts: &RunOptions, state: &mut RunState) -> Result<RunSummary> {
    let start = Instant::now();
    let layout = layout_for(case, comm.size())?;
    let dims = layout.grid.dims;
    let dir = case.output_dir.clone();
    // Velocity, two tendencies and the start-of-step copy per axis; pressure,
    // right-hand side, Krylov vectors and multigrid levels.
    // Crank–Nicolson adds the viscous tendency and row weights per axis and five CG
    // vectors.
    let cn_fields = if case.viscous == Viscous::CrankNicolson { 2 * dims as u128 + 5 } else { 0 };
    check_memory(comm, &layout, 4 * dims as u128 + 12 + cn_fields)?;
    let mut solver = FlowSolver::new(comm, case, layout.clone())?;
    let (mut step, mut t) = (0u64, 0.0f64);
    let restart_from = opts.restart.clone();
    if let Some(path) = &opts.restart {
        let r = output::read_checkpoint(comm, case, path, &mut solver.state_fields_mut())?;
        step = r.step;
        t = r.time;
    }
    solver.prepare(comm, t);
    let first_step = step;

    // A fixed step must start stable: refuse it before anything is written.
    let speeds0 = solver.speeds(comm);
    let rate0 = solver.courant_rate(comm);
    if let Some(dt) = case.dt {
        let c = dt * rate0;
        if c > 1.0 {
            return Err(case
                .error_at(
                    "numerics.dt",
                    format!(
                        "dt = {dt} gives a Courant number of {c:.3} at t = {t} (max |u| = {}); the explicit advection is not stable above about 1",
                        speeds0[..dims].iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
                    ),
                    format!("use dt <= {:.4e}, or remove dt to let tessera adapt the step to numerics.cfl", dt / c),
                )
                .into());
        }
    }

    // A fixed Crank–Nicolson step is stable at any size, but beyond the automatic
    // step's bound the shortest waves are no longer damped: say so, do not refuse it.
    if let (Some(dt), Viscous::CrankNicolson, 0) = (case.dt, case.viscous, comm.rank()) {
        let number = dt * diffusion_rate(case);
        if number > CN_DIFFUSION_NUMBER {
            eprintln!(
                "warning: numerics.dt = {dt} gives viscosity·dt·Σ1/h² = {number:.3} > {CN_DIFFUSION_NUMBER}: Crank–Nicolson stays stable \
                 but no longer damps the shortest waves (they flip sign each step); dt <= {:.4e} keeps them damped, as the automatic step does",
                dt * CN_DIFFUSION_NUMBER / number
            );
        }
    }

    let h5_path = dir.join("output.h5");
    let (mut snapshots, appending) = open_run_dir(comm, case, &layout, opts, state, step)?;

    let axes = ["x", "y", "z"];
    let mut columns: Vec<String> = [
        "step",
        "time",
        "dt",
        "cfl",
        "kinetic_energy",
        "max_velocity",
        "max_divergence",
        "pressure_iterations",
        "pressure_residual",
        "change_rate",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..case.probes.len() {
        for a in axes.iter().take(dims) {
            columns.push(format!("probe{i}_velocity_{a}"));
        }
        columns.push(format!("probe{i}_pressure"));
    }
    let mut monitor = Monitor::open(comm, &dir.join("monitor.csv"), &columns, opts.restart.as_ref().map(|_| step))?;
    let probes = probe_cells(case, &layout, comm.rank());

    let mut scratch: Vec<Field> = case.output_fields.iter().map(|_| Field::zeros(layout.blocks[comm.rank()], dims, 1)).collect();
    let mut write_snap = |solver: &mut FlowSolver, step: u64, t: f64, snaps: &mut Vec<(u64, f64)>| -> Result<()> {
        solver.output_fields(comm, t, &case.output_fields, &mut scratch);
        let h5 = H5File::open_rw(comm, &h5_path)?;
        let fields: Vec<(&str, &Field)> = case.output_fields.iter().map(|s| s.as_str()).zip(scratch.iter()).collect();
        output::write_snapshot(&h5, comm, &layout, step, t, &fields)?;
        h5.close(comm)?;
        snaps.push((step, t));
        output::write_on_rank0(comm, &dir.join("output.xdmf"), || {
            output::xdmf(&layout, "output.h5", snaps, &case.output_fields).into_bytes()
        })
    };
    let checkpoint = |solver: &FlowSolver, step: u64, t: f64, dt: f64| -> Result<PathBuf> {
        output::write_checkpoint(comm, case, &layout, &dir, step, t, dt, &solver.state_fields())
    };

    let mut perf = PhaseLog::new();
    let cn = case.viscous == Viscous::CrankNicolson;
    let declared: &[&str] = if cn {
        &["time step", "  momentum", "  viscous solves", "  halo exchange", "  boundary values", "  projection"]
    } else {
        &["time step", "  momentum", "  halo exchange", "  boundary values", "  projection"]
    };
    for name in declared {
        perf.declare(name);
    }
    let mut t_output = 0.0;
    let to = Instant::now();
    if !appending || snapshots.last().map(|s| s.0) != Some(step) {
        write_snap(&mut solver, step, t, &mut snapshots)?;
    }
    t_output += to.elapsed().as_secs_f64();

    let mut progress = Progress::new(comm, opts);
    let mut status = "completed".to_string();
    let mut message = String::new();
    let mut last_checkpoint: Option<PathBuf> = opts.restart.clone();
    let mut last_snapshot_step = step;
    let mut checkpoints_written = 0;
    let mut dt = choose_dt(case, rate0);
    let first_dt = dt;
    let mut last_dt = dt;
    let mut row: Vec<f64> = Vec::with_capacity(columns.len());
    // Summed each step: kinetic energy, Σ pressure (finiteness), then per probe the
    // velocity components and the pressure (zero on ranks not owning the probe).
    let mut sums = vec![0.0; 2 + case.probes.len() * (dims + 1)];
    let mut last_stats = FlowStats::default();
    let mut last_cfl = 0.0;
    let h = layout.grid.spacing();
    loop {
        if case.max_steps.is_some_and(|m| step >= m) {
            break;
        }
        let Some((this_dt, lands_on_end)) = step_to_end(case, t, dt) else { break };
        let mark = Mark::now(comm);
        let st = solver.step(comm, t, this_dt);
        perf.add("time step", comm, mark);
        t = lands_on_end.unwrap_or(t + this_dt);
        step += 1;
        last_dt = this_dt;

        let mark = Mark::now(comm);
        // Monitors: one sum and one max reduction per step.
        sums[0] = st.kinetic_energy;
        sums[1] = solver.p.interior().sum();
        for (i, pc) in probes.iter().enumerate() {
            let v = pc.map(|c| solver.probe(c)).unwrap_or([0.0; 4]);
            let slot = &mut sums[2 + i * (dims + 1)..2 + (i + 1) * (dims + 1)];
            slot[..dims].copy_from_slice(&v[..dims]);
            slot[dims] = v[3];
        }
        comm.allreduce_f64(&mut sums, ReduceOp::Sum);
        let stop_here = opts.stop.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
        let mut mx = [
            st.umax[0],
            st.umax[1],
            st.umax[2],
            st.max_divergence,
            st.max_change,
            st.residual,
            if st.converged { 0.0 } else { 1.0 },
            if stop_here { 1.0 } else { 0.0 },
            st.courant_rate,
            if st.viscous_converged { 0.0 } else { 1.0 },
        ];
        comm.allreduce_f64(&mut mx, ReduceOp::Max);
        let speeds = [mx[0], mx[1], mx[2]];
        let cfl = this_dt * mx[8];
        let umax = speeds[..dims].iter().map(|v| v * v).sum::<f64>().sqrt();
        let rate = mx[4] / this_dt;
        row.clear();
        row.extend_from_slice(&[t, this_dt, cfl, sums[0], umax, mx[3], st.iterations as f64, mx[5], rate]);
        row.extend_from_slice(&sums[2..]);
        monitor.row(&row, step);
        last_stats = st;
        last_stats.kinetic_energy = sums[0];
        last_cfl = cfl;
        perf.add("monitor", comm, mark);

        // Divergence: NaN/Inf anywhere, an unstable step, or a collapsing step.
        let nonfinite = !sums[0].is_finite() || !sums[1].is_finite() || mx.iter().any(|v| !v.is_finite());
        let next_dt = choose_dt(case, mx[8]);
        let reason = if nonfinite {
            Some("the solution is no longer finite".to_string())
        } else if cfl > BLOWUP_CFL {
            Some(format!("the Courant number reached {cfl:.3} in one step (stable up to about 1.7): the velocity is growing without bound"))
        } else if next_dt < 1e-8 * first_dt {
            Some(format!("the automatic step collapsed to {next_dt:.3e} (from {first_dt:.3e}): the velocity is growing without bound"))
        } else {
            None
        };
        if let Some(why) = reason {
            status = "diverged".into();
            message = divergence_message(comm, &solver, step, t, this_dt, case, &why, &h);
            message += &match &last_checkpoint {
                Some(p) => format!(" The last checkpoint, {}, is intact.", p.display()),
                None => " No checkpoint was written before it (set output.checkpoint_every).".to_string(),
            };
            break;
        }
        if mx[6] > 0.0 && case.solver.error_if_not_converged {
            status = "failed".into();
            let r = solver.last.as_ref();
            message = format!(
                "the pressure solve did not converge at step {step} (t={t:.6e}; {} after {} iterations, |r|/|b| = {:.3e}) and \
                 numerics.solver.error_if_not_converged is set",
                r.map(|r| r.reason.to_string()).unwrap_or_default(),
                r.map_or(0, |r| r.iterations),
                mx[5]
            );
            break;
        }
        if mx[9] > 0.0 && case.solver.error_if_not_converged {
            status = "failed".into();
            message = format!(
                "a Crank–Nicolson viscous solve did not reach numerics.viscous_rtol = {:e} at step {step} (t={t:.6e}) and \
                 numerics.solver.error_if_not_converged is set",
                case.viscous_rtol
            );
            break;
        }
        progress.emit(false, fraction_done(case, step, t), || {
            format!(
                "step {step:>8}  t={t:.5e}  dt={this_dt:.3e}  CFL={cfl:.3}  KE={:.6e}  max|div u|={:.2e}  p-its={}  du/dt={rate:.3e}",
                sums[0], mx[3], st.iterations
            )
        });
        let steady = case.steady_tolerance.is_some_and(|tol| rate < tol);
        let to = Instant::now();
        if case.output_every > 0 && step % case.output_every == 0 {
            write_snap(&mut solver, step, t, &mut snapshots)?;
            monitor.flush(comm)?;
            last_snapshot_step = step;
        }
        if case.checkpoint_every > 0 && step % case.checkpoint_every == 0 {
            last_checkpoint = Some(checkpoint(&solver, step, t, this_dt)?);
            checkpoints_written += 1;
            monitor.flush(comm)?;
        }
        t_output += to.elapsed().as_secs_f64();
        dt = next_dt;
        if steady {
            break;
        }
        if mx[7] > 0.0 {
            status = "stopped".into();
            break;
        }
    }
    monitor.flush(comm)?;
    let to = Instant::now();
    if status == "completed" || status == "stopped" {
        if last_snapshot_step != step {
            write_snap(&mut solver, step, t, &mut snapshots)?;
        }
        if last_checkpoint.as_ref().is_none_or(|p| *p != output::checkpoint_path(&dir, step)) {
            last_checkpoint = Some(checkpoint(&solver, step, t, last_dt)?);
            checkpoints_written += 1;
        }
    }
    t_output += to.elapsed().as_secs_f64();
    progress.emit(true, fraction_done(case, step, t), || {
        format!("step {step:>8}  t={t:.5e}  dt={last_dt:.3e}  CFL={last_cfl:.3}  KE={:.6e}  {status}", last_stats.kinetic_energy)
    });

    let wall = start.elapsed().as_secs_f64();
    let tm = &solver.times;
    for (name, secs) in [
        ("  momentum", tm.momentum),
        ("  viscous solves", tm.viscous),
        ("  halo exchange", tm.halo),
        ("  boundary values", tm.boundary),
        ("  projection", tm.projection),
    ] {
        if cn || name != "  viscous solves" {
            perf.add_seconds(name, secs);
        }
    }
    let mut merged = PhaseLog::new();
    for (n, _) in perf.phases().iter().take(declared.len()) {
        merged.declare(n);
    }
    merged.merge_prefixed("  pressure: ", &solver.pressure.phase_log());
    merged.merge_prefixed("", &perf);
    merged.add_seconds("output", t_output);
    let perf = merged.reduce(comm);
    if opts.progress && comm.rank() == 0 {
        eprint!("{}", perf.table(start.elapsed().as_secs_f64()));
    }
    let mut ph = [
        tm.momentum,
        tm.projection,
        solver.solve_seconds,
        tm.halo,
        tm.boundary,
        perf.phases().iter().find(|(n, _)| n == "monitor").map_or(0.0, |p| p.1.seconds),
        t_output,
    ];
    comm.allreduce_f64(&mut ph, ReduceOp::Max);
    let stats = comm.stats();
    let mut cs = [stats.messages, stats.bytes, stats.reductions];
    comm.allreduce_u64(&mut cs, ReduceOp::Sum);
    let steps_run = step - first_step;
    let total_cells = layout.grid.total_cells() as f64;
    let mut linear_solves = vec![serde_json::json!({
        "name": "pressure",
        "solves": solver.solves,
        "iterations_total": solver.iterations,
        "iterations_max": solver.max_iterations,
        "not_converged": solver.not_converged,
        "seconds": solver.solve_seconds,
        "last": solver.last,
    })];
    if let Some((solves, its, max, bad)) = solver.viscous_totals() {
        linear_solves.push(serde_json::json!({
            "name": "viscous",
            "method": "cg (symmetrised Helmholtz, Crank–Nicolson)",
            "rtol": case.viscous_rtol,
            "solves": solves,
            "iterations_total": its,
            "iterations_max": max,
            "not_converged": bad,
            "seconds": tm.viscous,
        }));
    }
    let summary_text = || {
        let s = serde_json::json!({
            "status": status,
            "message": message,
            "case": case.name,
            "model": case.model,
            "steps": step,
            "steps_this_run": steps_run,
            "final_time": t,
            "dt": last_dt,
            "cfl": last_cfl,
            "kinetic_energy": last_stats.kinetic_energy,
            "wall_seconds": wall,
            "ranks": comm.size(),
            "process_grid": &layout.procs[..dims],
            "cells": &layout.grid.cells[..dims],
            "cell_updates_per_second": if wall > 0.0 { steps_run as f64 * total_cells / wall } else { 0.0 },
            "restart_from": restart_from.as_ref().map(|p| p.display().to_string()),
            "last_checkpoint": last_checkpoint.as_ref().map(|p| p.display().to_string()),
            "checkpoints_written": checkpoints_written,
            "snapshots": snapshots.len(),
            "linear_solves": linear_solves,
            "timings": {
                "momentum": ph[0], "projection": ph[1], "pressure_solve": ph[2], "halo": ph[3], "boundary": ph[4],
                "monitor": ph[5], "output": ph[6], "total": wall
            },
            "communication": { "messages": cs[0], "bytes": cs[1], "reductions": cs[2] },
            "performance": perf.to_json(),
            "format_version": output::FORMAT_VERSION,
        });
        output::summary_bytes(s)
    };
    output::write_on_rank0(comm, &dir.join("summary.json"), summary_text)?;
    state.summary_written = true;
    finish(case, status, message, step, t, last_checkpoint.as_deref(), wall)
}

/// The message every rank returns for a diverged run: where the velocity is worst
/// (the first non-finite value, else the largest), on the lowest rank that holds it.
#[allow(clippy::too_many_arguments)]
fn divergence_message(comm: &dyn Comm, solver: &FlowSolver, step: u64, t: f64, dt: f64, case: &Case, why: &str, h: &[f64; 3]) -> String {
    let (name, pos, v) = solver.worst_value();
    let score = if v.is_finite() { v.abs() } else { f64::INFINITY };
    let mut m = [if score.is_nan() { f64::INFINITY } else { score }];
    comm.allreduce_f64(&mut m, ReduceOp::Max);
    let owner = comm.first_rank_with(score == m[0] || (m[0].is_infinite() && !v.is_finite()));
    let mut msg = Vec::new();
    if owner == Some(comm.rank()) {
        let d = case.grid.dims;
        let at = pos[..d].iter().zip(["x", "y", "z"]).map(|(p, a)| format!("{a}={p:.4}")).collect::<Vec<_>>().join(", ");
        let hmin = h[..d].iter().cloned().fold(f64::INFINITY, f64::min);
        let hint = if case.dt.is_some() {
            "Hint: the fixed numerics.dt is too large for the velocities the flow reached: lower it, or remove it so the step follows numerics.cfl".to_string()
        } else {
            format!(
                "Hint: lower numerics.cfl (now {}), refine the mesh (h = {hmin:.3e}) so the cell Reynolds number |u|h/ν stays moderate, or check the boundary and force expressions",
                case.cfl
            )
        };
        msg = format!("run diverged at step {step} (t={t:.6e}, dt={dt:.3e}): {why}; {name} = {v:.3e} at {at}. {hint}.").into_bytes();
    }
    comm.broadcast_bytes(owner.unwrap_or(0), &mut msg);
    String::from_utf8_lossy(&msg).into_owned()
}
