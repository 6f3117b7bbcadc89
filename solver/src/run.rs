//! `tessera run`: the time loop with output, monitors, checkpoints and progress.
use crate::case::{Case, Ranks};
use crate::error::{Result, RunError};
use crate::heat::HeatSolver;
use crate::output::{self, Monitor};
use decomp::comm::{agree, ReduceOp};
use decomp::io::H5File;
use decomp::{BlockLayout, Comm};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of one run beyond the case.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Continue from this checkpoint.
    pub restart: Option<PathBuf>,
    /// Replace an existing run in the output directory.
    pub overwrite: bool,
    /// Print progress lines on rank 0.
    pub progress: bool,
    /// Create missing parents of the output directory. The CLI sets this for the
    /// case's `[output] dir` and not for `--out`, whose parent must exist (a typo in a
    /// path typed on the command line should fail, not create a stray tree).
    pub create_parents: bool,
    /// Set asynchronously (SIGINT, SIGTERM, SIGUSR1) to stop cleanly: the run finishes
    /// the current step, writes a snapshot and a checkpoint, and reports "stopped".
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// What a finished run reports (also written to summary.json).
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// completed | diverged | failed.
    pub status: String,
    /// The model that ran.
    pub model: String,
    /// Last step reached.
    pub steps: u64,
    /// Time reached.
    pub time: f64,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
}

/// The block layout for `case` on `nranks` ranks, or a located error.
pub fn layout_for(case: &Case, nranks: usize) -> Result<BlockLayout> {
    match &case.ranks {
        Ranks::Fixed(p) => {
            let want: usize = p.iter().product();
            if want != nranks {
                let shape = p.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("×");
                return Err(case
                    .error_at(
                        "decomposition.ranks",
                        format!("asks for {shape} = {want} ranks but the job has {nranks}"),
                        format!("run with `mpirun -n {want}` (or --np {want}), or set ranks = \"auto\""),
                    )
                    .into());
            }
            BlockLayout::new(&case.grid, p, 1)
                .map_err(|e| case.error_at("decomposition.ranks", e.to_string(), "use fewer ranks along that axis").into())
        }
        Ranks::Auto => {
            BlockLayout::auto(&case.grid, nranks, 1).map_err(|e| RunError::Usage(format!("{e}; use fewer ranks or a finer mesh")))
        }
    }
}

/// Prepares RUN_DIR on rank 0: checks the parent exists, refuses to clobber an existing
/// run unless asked, checks it is writable. Agreed across ranks. When the directory
/// comes from the case's `[output] dir` (not `--out`), errors point at that line.
pub(crate) fn prepare_run_dir(comm: &dyn Comm, case: &Case, opts: &RunOptions) -> Result<()> {
    let dir = case.output_dir.as_path();
    let res: Result<(), (String, String)> = if comm.rank() == 0 {
        (|| {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut ancestor = Some(parent);
            while let Some(a) = ancestor {
                if a.exists() && !a.is_dir() {
                    return Err((
                        format!("cannot use output directory {}: {} is a file, not a directory", dir.display(), a.display()),
                        "choose a directory path".to_string(),
                    ));
                }
                ancestor = a.parent().filter(|p| !p.as_os_str().is_empty());
            }
            if !parent.is_dir() && !opts.create_parents {
                return Err((
                    format!("output directory {}: parent directory {} does not exist", dir.display(), parent.display()),
                    "create the parent first, or choose another --out".to_string(),
                ));
            }
            if dir.exists() && !dir.is_dir() {
                return Err((
                    format!("output directory {} exists and is not a directory", dir.display()),
                    "choose a directory path".into(),
                ));
            }
            let has_run = dir.join("summary.json").exists() || dir.join("output.h5").exists();
            if has_run && opts.restart.is_none() && !opts.overwrite {
                return Err((
                    format!("output directory {} already holds a run", dir.display()),
                    "pass --overwrite to replace it, --restart a checkpoint to continue it, or --out another directory".into(),
                ));
            }
            std::fs::create_dir_all(dir.join("checkpoints")).map_err(|e| {
                (format!("cannot create output directory {}: {e}", dir.display()), "choose a writable location".to_string())
            })?;
            let probe = dir.join(".tessera-write-test");
            std::fs::write(&probe, b"").map_err(|e| {
                (format!("output directory {} is not writable: {e}", dir.display()), "choose a writable location".to_string())
            })?;
            let _ = std::fs::remove_file(&probe);
            if has_run && opts.restart.is_some() {
                // Restart in place: the old summary describes a run this one replaces
                // from the restart step on; until this run writes its own, none is true.
                let _ = std::fs::remove_file(dir.join("summary.json"));
            }
            if has_run && opts.restart.is_none() {
                // --overwrite: remove what the old run wrote (never anything else).
                for f in ["output.h5", "output.xdmf", "monitor.csv", "summary.json", "case.toml"] {
                    let _ = std::fs::remove_file(dir.join(f));
                }
                if let Ok(rd) = std::fs::read_dir(dir.join("checkpoints")) {
                    for e in rd.flatten() {
                        if e.file_name().to_string_lossy().starts_with("step_") {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                }
            }
            Ok(())
        })()
    } else {
        Ok(())
    };
    let from_case = opts.create_parents;
    match res {
        // Rank 0 knows the details; the others learn the message through agree().
        Err((msg, help)) if from_case => {
            let e: RunError = case.error_at("output.dir", msg, help).into();
            agree(comm, Err(e), RunError::Usage)
        }
        Err((msg, help)) => agree(comm, Err(RunError::Usage(format!("{msg}; {help}"))), RunError::Usage),
        Ok(()) => agree(comm, Ok(()), RunError::Usage),
    }
}

/// Refuses (exit 2) a run whose fields cannot fit in this node's available memory,
/// instead of aborting in the allocator. Counts the model's fields on this rank's
/// padded block times the ranks sharing the node. Agreed across ranks.
pub(crate) fn check_memory(comm: &dyn Comm, layout: &BlockLayout, fields: u128) -> Result<()> {
    let b = layout.blocks[comm.rank()].shape();
    let padded: u128 = (0..3).map(|a| if a < layout.grid.dims { b[a] as u128 + 2 } else { 1 }).product();
    let need = padded * 8 * fields;
    let local_ranks: u128 = std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u128>().ok())
            .map(|kb| kb * 1024)
    });
    let res = match available {
        Some(avail) if need * local_ranks > avail => Err(format!(
            "the fields need about {:.1} GiB per rank ({} rank(s) on this node) but {:.1} GiB is available; \
             use more nodes or a coarser mesh",
            need as f64 / 2f64.powi(30),
            local_ranks,
            avail as f64 / 2f64.powi(30)
        )),
        _ => Ok(()),
    };
    agree(comm, res, |m| m).map_err(RunError::Usage)
}

/// Prepares RUN_DIR for a time-dependent run starting at `step`: checks an existing
/// output.h5 before a restart touches anything, prepares the directory, writes
/// case.toml, and creates output.h5 — or, for a restart in place, rebuilds it from the
/// snapshots up to `step` (so header, case and decomposition describe this run) and
/// drops later checkpoints. Returns the snapshots kept and whether it appended.
pub(crate) fn open_run_dir(
    comm: &dyn Comm,
    case: &Case,
    layout: &BlockLayout,
    opts: &RunOptions,
    state: &mut RunState,
    step: u64,
) -> Result<(Vec<(u64, f64)>, bool)> {
    let dir = &case.output_dir;
    let h5_path = dir.join("output.h5");
    if opts.restart.is_some() && h5_path.exists() {
        output::check_existing_output(comm, layout, &h5_path)?;
    }
    prepare_run_dir(comm, case, opts)?;
    state.dir_ready = true;
    output::write_on_rank0(comm, &dir.join("case.toml"), || case.resolved.as_bytes().to_vec())?;
    let appending = opts.restart.is_some() && h5_path.exists();
    let mut snapshots = Vec::new();
    if appending {
        snapshots = output::rebuild_output(comm, case, layout, &h5_path, step)?;
        output::remove_checkpoints_after(comm, dir, step)?;
    } else {
        let h5 = H5File::create(comm, &h5_path)?;
        output::write_header(&h5, comm, case, layout, "output")?;
        h5.close(comm)?;
    }
    Ok((snapshots, appending))
}

/// The next step from `t` with the nominal size `dt`: `None` when `end_time` is
/// reached; otherwise the size to take and, for the step that lands on `end_time`,
/// that time exactly (whatever the rounding of t + dt).
pub(crate) fn step_to_end(case: &Case, t: f64, dt: f64) -> Option<(f64, Option<f64>)> {
    match case.end_time {
        Some(end) if end - t <= 1e-12 * end.abs().max(dt) => None,
        Some(end) if end - t < dt * (1.0 + 1e-9) => Some((end - t, Some(end))),
        _ => Some((dt, None)),
    }
}

/// For each probe point, the local index of the cell holding it on this rank (None
/// where another rank owns it).
pub(crate) fn probe_cells(case: &Case, layout: &BlockLayout, rank: usize) -> Vec<Option<[usize; 3]>> {
    let grid = &layout.grid;
    let h = grid.spacing();
    let block = layout.blocks[rank];
    case.probes
        .iter()
        .map(|p| {
            let mut c = [0usize; 3];
            for a in 0..grid.dims {
                c[a] = (((p[a] - grid.lower[a]) / h[a]).floor().max(0.0) as usize).min(grid.cells[a] - 1);
            }
            block.contains(c).then(|| [c[0] - block.lo[0], c[1] - block.lo[1], c[2] - block.lo[2]])
        })
        .collect()
}

/// Says on rank 0 when the rank may run on fewer cores than it has threads (mpirun
/// binds each rank to one core by default), which leaves the threads taking turns.
fn warn_if_threads_lack_cores(comm: &dyn Comm, threads: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if comm.rank() == 0 && threads > cores {
        eprintln!(
            "tessera: warning: decomposition.threads_per_rank = {threads} but rank 0 may run on {cores} core(s) only (its CPU affinity); \
             launch with `tessera run --np N` (which does not bind), `mpirun --bind-to none`, `mpirun --map-by slot:PE={threads}`, \
             or under Slurm `--cpus-per-task={threads}`"
        );
    }
}

/// Progress reporting on rank 0: at most one line a second.
pub(crate) struct Progress {
    enabled: bool,
    start: Instant,
    last: Instant,
}

impl Progress {
    /// Reports on rank 0 when `opts.progress` is set.
    pub(crate) fn new(comm: &dyn Comm, opts: &RunOptions) -> Self {
        Progress { enabled: opts.progress && comm.rank() == 0, start: Instant::now(), last: Instant::now() }
    }

    /// Prints `text()` followed by the fraction done and the ETA, unless a line was
    /// printed less than a second ago (`force` prints anyway).
    pub(crate) fn emit(&mut self, force: bool, frac: Option<f64>, text: impl FnOnce() -> String) {
        if !self.enabled || (!force && self.last.elapsed().as_secs_f64() < 1.0) {
            return;
        }
        self.last = Instant::now();
        let el = self.start.elapsed().as_secs_f64();
        let eta = match frac {
            Some(f) if f > 0.0 && f < 1.0 => format!("{:5.1}%  ETA {:.0}s", 100.0 * f, el * (1.0 - f) / f),
            Some(_) => "100.0%".to_string(),
            None => String::new(),
        };
        eprintln!("{}  {eta}", text());
    }

    fn line(&mut self, force: bool, step: u64, t: f64, dt: f64, l2: f64, max: f64, frac: Option<f64>) {
        self.emit(force, frac, || format!("step {step:>8}  t={t:.6e}  dt={dt:.3e}  |T|_2={l2:.6e}  max(T)={max:.6e}"));
    }
}

/// Runs `case` on `comm`. Returns the summary for completed runs; a diverged or failed
/// run returns an error after writing summary.json with its status.
pub fn run(comm: &dyn Comm, case: &Case, opts: &RunOptions) -> Result<RunSummary> {
    let mut state = RunState::default();
    let res = if case.model == "poisson" {
        crate::poisson::run_inner(comm, case, opts, &mut state)
    } else if case.model == "incompressible" {
        crate::flow_run::run_inner(comm, case, opts, &mut state)
    } else {
        run_inner(comm, case, opts, &mut state)
    };
    if let (Err(e), true, false) = (&res, state.dir_ready, state.summary_written) {
        // A run that failed after RUN_DIR was prepared (I/O error, ...) still says so in
        // summary.json. Every error here is already agreed across ranks, so this
        // collective write is reached by all of them. Best effort: keep the first error.
        let text = || {
            let s = serde_json::json!({
                "status": "failed",
                "message": e.to_string(),
                "case": case.name,
                "model": case.model,
                "ranks": comm.size(),
                "restart_from": opts.restart.as_ref().map(|p| p.display().to_string()),
                "format_version": output::FORMAT_VERSION,
            });
            output::summary_bytes(s)
        };
        let _ = output::write_on_rank0(comm, &case.output_dir.join("summary.json"), text);
    }
    res
}

/// How far [`run_inner`] got, for the failure summary.
#[derive(Default)]
pub(crate) struct RunState {
    /// RUN_DIR exists and holds this run's files.
    pub(crate) dir_ready: bool,
    /// summary.json was written by the run itself.
    pub(crate) summary_written: bool,
}

fn run_inner(comm: &dyn Comm, case: &Case, opts: &RunOptions, state: &mut RunState) -> Result<RunSummary> {
    let start = Instant::now();
    let layout = layout_for(case, comm.size())?;
    let dir = case.output_dir.clone();
    check_memory(comm, &layout, 2 + u128::from(case.source.as_constant() != Some(0.0)))?;
    // Read the checkpoint before touching RUN_DIR, so a refused --restart leaves
    // nothing behind.
    let mut solver = HeatSolver::new(case, layout.clone(), comm)?;
    warn_if_threads_lack_cores(comm, case.threads_per_rank);
    let (mut step, mut t) = (0u64, 0.0f64);
    let restart_from = opts.restart.clone();
    if let Some(path) = &opts.restart {
        let r = output::read_checkpoint(comm, case, path, &mut [("temperature", &mut solver.u)])?;
        step = r.step;
        t = r.time;
    }
    let first_step = step;
    let h5_path = dir.join("output.h5");
    let (mut snapshots, appending) = open_run_dir(comm, case, &layout, opts, state, step)?;
    if !snapshots.is_empty() {
        output::write_on_rank0(comm, &dir.join("output.xdmf"), || {
            output::xdmf(&layout, "output.h5", &snapshots, &case.output_fields).into_bytes()
        })?;
    }

    let dt_auto = {
        let mut d = case.stability_factor * case.stable_dt();
        if let Some(m) = case.dt_max {
            d = d.min(m);
        }
        d
    };
    let dt = case.dt.unwrap_or(dt_auto);

    let mut columns: Vec<String> = ["step", "time", "dt"].iter().map(|s| s.to_string()).collect();
    columns.extend(case.norms.iter().map(|n| format!("temperature_{n}")));
    columns.extend((0..case.probes.len()).map(|i| format!("probe{i}_temperature")));
    columns.push("change_rate".into());
    let implicit = case.time_scheme.implicit();
    if implicit {
        columns.push("solver_iterations".into());
        columns.push("solver_residual".into());
    }
    let mut monitor = Monitor::open(comm, &dir.join("monitor.csv"), &columns, opts.restart.as_ref().map(|_| step))?;

    // Probe owners: the cell containing each probe point.
    let grid = &layout.grid;
    let h = grid.spacing();
    let probe_cells = probe_cells(case, &layout, comm.rank());
    let cell_volume: f64 = h[..grid.dims].iter().product();
    let total_cells = grid.total_cells() as f64;

    let write_snap = |solver: &HeatSolver, step: u64, t: f64, snaps: &mut Vec<(u64, f64)>| -> Result<()> {
        let h5 = H5File::open_rw(comm, &h5_path)?;
        let fields: Vec<(&str, &decomp::Field)> = case.output_fields.iter().map(|f| (f.as_str(), &solver.u)).collect();
        output::write_snapshot(&h5, comm, &layout, step, t, &fields)?;
        h5.close(comm)?;
        snaps.push((step, t));
        output::write_on_rank0(comm, &dir.join("output.xdmf"), || {
            output::xdmf(&layout, "output.h5", snaps, &case.output_fields).into_bytes()
        })
    };

    let mut t_output = 0.0;
    let mut t_monitor = 0.0;
    let to = Instant::now();
    if !appending || snapshots.last().map(|s| s.0) != Some(step) {
        write_snap(&solver, step, t, &mut snapshots)?;
    }
    t_output += to.elapsed().as_secs_f64();

    let mut progress = Progress::new(comm, opts);
    let mut status = "completed".to_string();
    let mut message = String::new();
    // After a restart, the checkpoint it started from is the newest one until this run
    // writes its own.
    let mut last_checkpoint: Option<PathBuf> = opts.restart.clone();
    let mut last_snapshot_step = step;
    let mut last_dt = dt;
    let mut probe_buf = vec![0.0; 2 + case.probes.len()];
    let mut l2 = 0.0;
    let mut maxv = 0.0;
    let mut checkpoints_written = 0;
    let mut row: Vec<f64> = Vec::with_capacity(columns.len());
    let mut perf = crate::perf::PhaseLog::new();
    for name in ["time step", "  stencil sweep", "  halo exchange", "  boundary values"] {
        perf.declare(name);
    }
    // Set when a pair of steps was taken back because the run stops at the step
    // between them: that step is then redone alone.
    let mut single = false;
    'steps: loop {
        if case.max_steps.is_some_and(|m| step >= m) {
            break;
        }
        let Some((this_dt, lands_on_end)) = step_to_end(case, t, dt) else { break };
        // Two steps in one pass over memory where nothing is due at the step between
        // them (no output, checkpoint or step limit; both steps of the full dt).
        let due = |every: u64| every > 0 && (step + 1) % every == 0;
        let pair = !std::mem::take(&mut single)
            && solver.can_pair()
            && lands_on_end.is_none()
            && matches!(step_to_end(case, t + this_dt, dt), Some((d, None)) if d == this_dt)
            && case.max_steps.is_none_or(|m| step + 2 <= m)
            && !due(case.output_every)
            && !due(case.checkpoint_every);
        let mark = crate::perf::Mark::now(comm);
        let stats = if pair {
            let [a, b] = solver.step_pair(comm, t, this_dt);
            vec![a, b]
        } else {
            vec![solver.step(comm, t, this_dt)]
        };
        perf.add("time step", comm, mark);
        if let Some(m) = solver.solve_failure() {
            status = "failed".into();
            message = m.to_string();
            break;
        }
        for (e, st) in stats.iter().enumerate() {
            let between = pair && e == 0;
            // Monitors: one sum and one max reduction per step.
            let tm = Instant::now();
            let monitor_mark = crate::perf::Mark::now(comm);
            probe_buf[0] = st.sum;
            probe_buf[1] = st.sumsq;
            for (i, pc) in probe_cells.iter().enumerate() {
                probe_buf[2 + i] = pc.map_or(0.0, |c| {
                    if between {
                        solver.intermediate_value(c)
                    } else {
                        solver.u.as_slice()[solver.u.idx(c[0], c[1], c[2])]
                    }
                });
            }
            comm.allreduce_f64(&mut probe_buf, ReduceOp::Sum);
            // The stop request rides on the max reduction, so all ranks stop at the same step.
            let stop_here = opts.stop.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
            let mut mx = [st.max, -st.min, st.max_change, if stop_here { 1.0 } else { 0.0 }];
            comm.allreduce_f64(&mut mx, ReduceOp::Max);
            let stop_requested = mx[3] > 0.0;
            let (sum, sumsq, gmax, gmin, change) = (probe_buf[0], probe_buf[1], mx[0], -mx[1], mx[2]);
            let blown = !sum.is_finite() || !sumsq.is_finite() || !gmax.is_finite() || gmax.abs() > 1e150 || gmin.abs() > 1e150;
            let rate = change / this_dt;
            let steady = case.steady_tolerance.is_some_and(|tol| rate < tol);
            if between && (blown || steady || stop_requested) {
                // The run ends at the step between: take the pair back, redo it alone.
                solver.undo_pair();
                single = true;
                continue 'steps;
            }
            // The last step lands exactly on end_time, whatever the rounding of t + dt.
            t = if pair { t + this_dt } else { lands_on_end.unwrap_or(t + this_dt) };
            step += 1;
            last_dt = this_dt;
            l2 = (sumsq * cell_volume).sqrt();
            maxv = gmax;
            row.clear();
            row.extend_from_slice(&[t, this_dt]);
            for n in &case.norms {
                row.push(match n.as_str() {
                    "l2" => l2,
                    "max" => gmax,
                    "min" => gmin,
                    "mean" => sum / total_cells,
                    _ => sum * cell_volume,
                });
            }
            row.extend_from_slice(&probe_buf[2..]);
            row.push(rate);
            if let Some(r) = solver.implicit.as_ref().and_then(|i| i.last.as_ref()) {
                row.push(r.iterations as f64);
                row.push(r.relative_residual());
            }
            monitor.row(&row, step);
            t_monitor += tm.elapsed().as_secs_f64();
            perf.add("monitor", comm, monitor_mark);

            if blown {
                status = "diverged".into();
                message = divergence_message(comm, &solver, step, t, this_dt, case);
                message += &match &last_checkpoint {
                    Some(p) => format!(" The last checkpoint, {}, is intact.", p.display()),
                    None => " No checkpoint was written before it (set output.checkpoint_every).".to_string(),
                };
                break 'steps;
            }
            progress.line(false, step, t, this_dt, l2, gmax, fraction_done(case, step, t));

            let to = Instant::now();
            if case.output_every > 0 && step % case.output_every == 0 {
                write_snap(&solver, step, t, &mut snapshots)?;
                monitor.flush(comm)?;
                last_snapshot_step = step;
            }
            if case.checkpoint_every > 0 && step % case.checkpoint_every == 0 {
                last_checkpoint =
                    Some(output::write_checkpoint(comm, case, &layout, &dir, step, t, this_dt, &[("temperature", &solver.u)])?);
                checkpoints_written += 1;
                // Rows up to the checkpoint reach the disk with it: a hard kill after this
                // point leaves no gap for a restart from it.
                monitor.flush(comm)?;
            }
            t_output += to.elapsed().as_secs_f64();
            if steady {
                break 'steps;
            }
            if stop_requested {
                status = "stopped".into();
                break 'steps;
            }
        }
    }
    monitor.flush(comm)?;
    let to = Instant::now();
    if status == "completed" || status == "stopped" {
        if last_snapshot_step != step {
            write_snap(&solver, step, t, &mut snapshots)?;
        }
        if last_checkpoint.as_ref().is_none_or(|p| *p != output::checkpoint_path(&dir, step)) {
            last_checkpoint = Some(output::write_checkpoint(comm, case, &layout, &dir, step, t, last_dt, &[("temperature", &solver.u)])?);
            checkpoints_written += 1;
        }
        progress.line(true, step, t, last_dt, l2, maxv, fraction_done(case, step, t));
    }
    t_output += to.elapsed().as_secs_f64();

    let wall = start.elapsed().as_secs_f64();
    let stats = comm.stats();
    // Phase times: the maximum over ranks is what bounds the run.
    // The per-phase table: the step and its parts, the linear solves of an implicit
    // scheme, monitors and output.
    for (name, secs) in [
        ("  stencil sweep", solver.timings.compute),
        ("  halo exchange", solver.timings.halo),
        ("  boundary values", solver.timings.boundary),
    ] {
        perf.add_seconds(name, secs);
    }
    if let Some(i) = solver.implicit.as_ref() {
        let mut l = crate::perf::PhaseLog::new();
        l.merge_prefixed("  solve: ", &i.phase_log());
        // Keep the solve's rows under the time step, before monitor and output.
        let mut merged = crate::perf::PhaseLog::new();
        for (n, _) in perf.phases().iter().take(4) {
            merged.declare(n);
        }
        merged.merge_prefixed("", &l);
        merged.merge_prefixed("", &perf);
        perf = merged;
    }
    perf.add_seconds("output", t_output);
    let perf = perf.reduce(comm);
    if opts.progress && comm.rank() == 0 {
        eprint!("{}", perf.table(start.elapsed().as_secs_f64()));
    }
    let mut ph = [solver.timings.compute, solver.timings.halo, solver.timings.boundary, t_monitor, t_output];
    comm.allreduce_f64(&mut ph, ReduceOp::Max);
    let mut cs = [stats.messages, stats.bytes, stats.reductions];
    comm.allreduce_u64(&mut cs, ReduceOp::Sum);
    let steps_run = step - first_step;
    let linear_solves: Vec<serde_json::Value> = solver
        .implicit
        .as_ref()
        .map(|i| {
            serde_json::json!({
                "name": "temperature",
                "scheme": case.time_scheme.name(),
                "solves": i.solves,
                "iterations_total": i.iterations,
                "iterations_max": i.max_iterations,
                "not_converged": i.not_converged,
                "seconds": i.seconds,
                "last": i.last,
            })
        })
        .into_iter()
        .collect();
    let summary_text = || {
        let summary = serde_json::json!({
            "status": status,
            "message": message,
            "case": case.name,
            "model": case.model,
            "steps": step,
            "steps_this_run": steps_run,
            "final_time": t,
            "dt": dt,
            "wall_seconds": wall,
            "ranks": comm.size(),
            "threads_per_rank": case.threads_per_rank,
            "process_grid": &layout.procs[..grid.dims],
            "cells": &grid.cells[..grid.dims],
            "cell_updates_per_second": if ph[0] > 0.0 { steps_run as f64 * total_cells / wall } else { 0.0 },
            "restart_from": restart_from.as_ref().map(|p| p.display().to_string()),
            "last_checkpoint": last_checkpoint.as_ref().map(|p| p.display().to_string()),
            "checkpoints_written": checkpoints_written,
            "snapshots": snapshots.len(),
            "linear_solves": linear_solves,
            "timings": {
                "compute": ph[0], "halo": ph[1], "boundary": ph[2], "monitor": ph[3], "output": ph[4], "total": wall
            },
            "communication": { "messages": cs[0], "bytes": cs[1], "reductions": cs[2] },
            "performance": perf.to_json(),
            "format_version": output::FORMAT_VERSION,
        });
        output::summary_bytes(summary)
    };
    output::write_on_rank0(comm, &dir.join("summary.json"), summary_text)?;
    state.summary_written = true;
    finish(case, status, message, step, t, last_checkpoint.as_deref(), wall)
}

/// The result of a time-dependent run whose summary.json is written: Ok for a
/// completed run; a signal stop names the checkpoint to continue from; anything else
/// fails with its message (exit 3).
pub(crate) fn finish(
    case: &Case,
    status: String,
    message: String,
    step: u64,
    t: f64,
    last_checkpoint: Option<&Path>,
    wall: f64,
) -> Result<RunSummary> {
    if status == "stopped" {
        let ck = last_checkpoint.map(|p| p.display().to_string()).unwrap_or_default();
        return Err(RunError::Failed(format!("stopped by a signal at step {step} (t={t:.6e}); continue with --restart {ck}")));
    }
    if status != "completed" {
        return Err(RunError::Failed(message));
    }
    Ok(RunSummary { status, model: case.model.clone(), steps: step, time: t, run_dir: case.output_dir.clone(), wall_seconds: wall })
}

/// Fraction of the run done, for the ETA (None when only a steady tolerance stops it).
pub(crate) fn fraction_done(case: &Case, step: u64, t: f64) -> Option<f64> {
    match (case.end_time, case.max_steps) {
        (Some(e), Some(m)) => Some((t / e).max(step as f64 / m as f64)),
        (Some(e), None) => Some(t / e),
        (None, Some(m)) => Some(step as f64 / m as f64),
        _ => None,
    }
}

/// Finds where the solution first went non-finite (lowest rank, first cell) and
/// builds the message every rank returns.
fn divergence_message(comm: &dyn Comm, solver: &HeatSolver, step: u64, t: f64, dt: f64, case: &Case) -> String {
    let u = &solver.u;
    let lo = u.block.lo;
    let bad = u
        .interior()
        .indexed_iter()
        .find(|(_, v)| !v.is_finite() || v.abs() > 1e150)
        .map(|((k, j, i), v)| (lo[0] + i, lo[1] + j, lo[2] + k, *v));
    let first = comm.first_rank_with(bad.is_some());
    let mut msg = Vec::new();
    if let (Some(r), Some((i, j, k, v))) = (first, bad) {
        if r == comm.rank() {
            let g = &solver.layout.grid;
            let at = if g.dims == 3 {
                format!("cell ({i}, {j}, {k}) at x={:.4}, y={:.4}, z={:.4}", g.centre(0, i), g.centre(1, j), g.centre(2, k))
            } else {
                format!("cell ({i}, {j}) at x={:.4}, y={:.4}", g.centre(0, i), g.centre(1, j))
            };
            msg = format!(
                "run diverged at step {step} (t={t:.6e}): temperature = {v:.3e} in {at}; dt = {dt:.3e} vs the explicit stability limit {:.3e}. \
                 Hint: lower numerics.dt or numerics.stability_factor, or check the source and boundary expressions.",
                case.stable_dt()
            )
            .into_bytes();
        }
    }
    comm.broadcast_bytes(first.unwrap_or(0), &mut msg);
    String::from_utf8_lossy(&msg).into_owned()
}
