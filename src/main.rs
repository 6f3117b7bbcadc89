//! The `tessera` command line: run, check (and later post, study, slurm).
use clap::{Parser, Subcommand};
use decomp::comm::MpiComm;
use decomp::Comm;
use solver::run::{layout_for, run, RunOptions};
use solver::RunError;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "tessera", version, about = "Distributed PDE/CFD solver with domain decomposition")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a case (under mpirun/srun, or with --np N to launch mpirun).
    Run {
        /// Case file (TOML).
        case: PathBuf,
        /// Launch N ranks with mpirun.
        #[arg(long)]
        np: Option<usize>,
        /// Override a case key, e.g. --set physics.diffusivity=0.5 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output directory (RUN_DIR); overrides [output] dir.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from a checkpoint file (any rank count).
        #[arg(long)]
        restart: Option<PathBuf>,
        /// Replace an existing run in the output directory.
        #[arg(long)]
        overwrite: bool,
        /// No progress lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Validate a case; print the resolved case and the decomposition report.
    Check {
        /// Case file (TOML).
        case: PathBuf,
        /// Override a case key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Rank count to report the decomposition for (default: the case's, or 1).
        #[arg(long)]
        np: Option<usize>,
    },
    /// Parameter studies: run, resume after a crash, status, results, GCI calculator
    /// (study file format: docs/STUDY.md).
    Study {
        #[command(subcommand)]
        action: StudyAction,
    },
    /// Post-process a run: derived fields, reductions, profiles, statistics, plots
    /// (pipeline file format: docs/POST.md).
    Post {
        /// The run directory (holds output.h5).
        run_dir: PathBuf,
        /// Pipeline file (TOML).
        pipeline: PathBuf,
        /// Output directory (default RUN_DIR/post).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the optimised plan as a Graphviz file.
        #[arg(long, value_name = "FILE.dot")]
        graph: Option<PathBuf>,
        /// Bound on field data held in memory at once, MiB.
        #[arg(long, value_name = "MIB", default_value_t = 1024)]
        memory: usize,
        /// Recompute every output, ignoring the result cache.
        #[arg(long)]
        no_cache: bool,
        /// No progress lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Slurm batch jobs: `script` prints a readable sbatch script for a case, `submit`
    /// writes it to RUN_DIR/job.sbatch, submits it and prints the job id (docs/SLURM.md).
    Slurm(SlurmArgs),
}

#[derive(Subcommand)]
enum StudyAction {
    /// Run a study: every run of it, on local slots, journaled.
    Run {
        /// Study file (TOML).
        study: PathBuf,
        /// Study directory (default studies/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// No progress lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Continue a study after an interruption or a crash (no finished run is re-run).
    Resume {
        /// Study directory.
        dir: PathBuf,
        /// No progress lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Counts by state, failures and runs in flight, from the journal only.
    Status {
        /// Study directory.
        dir: PathBuf,
    },
    /// Rewrite results.csv and results.png from the journal and print the table.
    Results {
        /// Study directory.
        dir: PathBuf,
    },
    /// Grid convergence index (Celik et al. 2008) of three solutions.
    Gci {
        /// Cell counts of the three grids, e.g. 18000,8000,4500.
        #[arg(long, value_delimiter = ',', required = true)]
        cells: Vec<f64>,
        /// The quantity on each grid, in the same order.
        #[arg(long, value_delimiter = ',', required = true, allow_hyphen_values = true)]
        values: Vec<f64>,
        /// Space dimensions (1, 2 or 3).
        #[arg(long, default_value_t = 2)]
        dims: usize,
    },
}

/// The base case of a study file (the study is parsed again by the orchestrator).
fn study_case(file: &std::path::Path) -> Result<PathBuf, String> {
    orchestrate::study::load(file).map(|s| s.case).map_err(|e| e.to_string())
}

fn study(action: StudyAction) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            report(&format!("cannot find the tessera binary: {e}"));
            return ExitCode::from(1);
        }
    };
    let done = |o: &orchestrate::engine::Outcome, dir: &std::path::Path| {
        println!("study: {} done, {} failed; results in {}", o.done, o.failed, dir.join("results.csv").display());
        if let Some(r) = &o.report {
            print!("{r}");
        }
        if o.stopped {
            println!("study: stopped by a signal; continue with `tessera study resume {}`", dir.display());
            ExitCode::from(3)
        } else if o.failed > 0 || o.finish.as_ref().is_some_and(|f| !f.goal_met) {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        }
    };
    let res = match action {
        StudyAction::Run { study, dir, quiet } => {
            // Every point is checked in process, as `tessera check --np RANKS` would.
            // (A study file that does not parse is reported by the orchestrator, located.)
            let base = study_case(&study).ok();
            let check = |sets: &[String], ranks: usize| -> Result<(), String> {
                let Some(base) = &base else { return Ok(()) };
                let c = solver::case::load(base, sets).map_err(|e| e.to_string())?;
                layout_for(&c, ranks).map(|_| ()).map_err(|e| e.to_string())
            };
            orchestrate::run(&study, dir, &exe, Some(&check), !quiet).map(|(d, o)| done(&o, &d))
        }
        StudyAction::Resume { dir, quiet } => orchestrate::resume(&dir, &exe, !quiet).map(|o| done(&o, &dir)),
        StudyAction::Status { dir } => orchestrate::status(&dir).map(|s| {
            print!("{s}");
            ExitCode::SUCCESS
        }),
        StudyAction::Results { dir } => orchestrate::results(&dir).map(|s| {
            print!("{s}");
            ExitCode::SUCCESS
        }),
        StudyAction::Gci { cells, values, .. } if cells.len() != 3 || values.len() != 3 => {
            report(&format!(
                "study gci: --cells and --values take three numbers each (fine, medium, coarse), given {} and {}",
                cells.len(),
                values.len()
            ));
            Ok(ExitCode::from(2))
        }
        StudyAction::Gci { cells, values, dims } => {
            let input =
                orchestrate::gci::GciInput { cells: [cells[0], cells[1], cells[2]], values: [values[0], values[1], values[2]], dims };
            match orchestrate::gci::gci(&input) {
                Ok(r) => {
                    println!("{}", r.summary());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    report(&e);
                    Ok(ExitCode::from(2))
                }
            }
        }
    };
    res.unwrap_or_else(|e| {
        report(&e);
        ExitCode::from(e.exit_code())
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check { case, set, np } => check(&case, &set, np),
        Command::Study { action } => study(action),
        Command::Slurm(args) => slurm(args),
        Command::Post { run_dir, pipeline, out, graph, memory, no_cache, quiet } => {
            post(&run_dir, &pipeline, out, graph, memory, no_cache, quiet)
        }
        Command::Run { case, np: Some(n), set, out, restart, overwrite, quiet } => launch(n, &case, &set, out, restart, overwrite, quiet),
        Command::Run { case, np: None, set, out, restart, overwrite, quiet } => run_here(&case, &set, out, restart, overwrite, quiet),
    }
}

/// The options of `tessera slurm script|submit`.
#[derive(clap::Args)]
struct SlurmArgs {
    /// script | submit.
    #[arg(value_parser = ["script", "submit"])]
    action: String,
    /// Case file (TOML).
    case: PathBuf,
    /// Override a case key (repeatable), passed on to `tessera run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// RUN_DIR (default: the case's [output] dir); Slurm's output goes there too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Nodes.
    #[arg(long)]
    nodes: Option<u32>,
    /// MPI ranks (default: nodes × ntasks-per-node, or the case's decomposition, or 1).
    #[arg(long)]
    ntasks: Option<u32>,
    /// Ranks per node.
    #[arg(long)]
    ntasks_per_node: Option<u32>,
    /// CPUs per rank.
    #[arg(long)]
    cpus_per_task: Option<u32>,
    /// Time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.
    #[arg(long)]
    time: Option<String>,
    /// Partition (default: the cluster's default partition).
    #[arg(long)]
    partition: Option<String>,
    /// Account to charge.
    #[arg(long)]
    account: Option<String>,
    /// Quality of service.
    #[arg(long)]
    qos: Option<String>,
    /// Memory per node (sbatch units: 4000, 16G, ...).
    #[arg(long)]
    mem: Option<String>,
    /// Job name (default: the case name).
    #[arg(long)]
    job_name: Option<String>,
    /// After the walltime signal, requeue and continue from the checkpoint.
    #[arg(long)]
    requeue: bool,
    /// Send the walltime signal (USR1) this many seconds before the limit [default: 120].
    #[arg(long, value_name = "S")]
    signal_seconds: Option<u32>,
    /// The first attempt replaces a run already in RUN_DIR.
    #[arg(long)]
    overwrite: bool,
}

/// `tessera slurm script|submit`: the case is checked by the solver's own loading and
/// decomposition, everything else by orchestrate::slurm, before anything is submitted.
fn slurm(a: SlurmArgs) -> ExitCode {
    let submit = a.action == "submit";
    let opts = orchestrate::slurm::Options {
        case: a.case,
        set: a.set,
        out: a.out,
        nodes: a.nodes,
        ntasks: a.ntasks,
        ntasks_per_node: a.ntasks_per_node,
        cpus_per_task: a.cpus_per_task,
        time: a.time,
        partition: a.partition,
        account: a.account,
        qos: a.qos,
        mem: a.mem,
        job_name: a.job_name,
        requeue: a.requeue,
        signal_seconds: a.signal_seconds,
        overwrite: a.overwrite,
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            report(&format!("cannot find the tessera binary: {e}"));
            return ExitCode::from(1);
        }
    };
    let check = |ranks: Option<usize>| -> Result<orchestrate::slurm::CaseInfo, String> {
        let c = load(&opts.case, &opts.set, opts.out.clone()).map_err(|e| e.to_string())?;
        if let Some(n) = ranks {
            layout_for(&c, n).map_err(|e| e.to_string())?;
        }
        let fixed_ranks = match &c.ranks {
            solver::case::Ranks::Fixed(p) => Some(p.iter().product()),
            solver::case::Ranks::Auto => None,
        };
        Ok(orchestrate::slurm::CaseInfo { name: c.name.clone(), run_dir: c.output_dir.clone(), fixed_ranks })
    };
    let res = if submit {
        orchestrate::slurm::submit(&opts, &exe, &check).map(|s| {
            if let Some(ck) = &s.continues_from {
                eprintln!("slurm: RUN_DIR holds a run: the job continues from {}", ck.display());
            }
            eprintln!("slurm: submitted job {} ({}); output in {}", s.job_id, s.script.display(), s.log.display());
            println!("{}", s.job_id);
        })
    } else {
        orchestrate::slurm::script(&opts, &exe, &check).map(|text| print!("{text}"))
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn post(
    run_dir: &PathBuf,
    pipeline: &PathBuf,
    out: Option<PathBuf>,
    graph: Option<PathBuf>,
    memory: usize,
    no_cache: bool,
    quiet: bool,
) -> ExitCode {
    if memory == 0 {
        report(&"--memory: must be at least 1 MiB");
        return ExitCode::from(2);
    }
    let opts = postproc::PostOptions { out, graph, memory_bytes: memory << 20, progress: !quiet, no_cache };
    match postproc::run_pipeline(run_dir, pipeline, &opts) {
        Ok(r) => {
            for (name, files, cached, summary) in &r.outputs {
                let tag = if *cached { " (cached)" } else { "" };
                println!("{name}{tag}: {}", files.join(", "));
                if let Some(refe) = summary.get("reference") {
                    println!(
                        "  vs {}: max |error| {:.4e}, rms {:.4e} over {} points",
                        refe["file"].as_str().unwrap_or(""),
                        refe["max_abs_error"].as_f64().unwrap_or(f64::NAN),
                        refe["rms_error"].as_f64().unwrap_or(f64::NAN),
                        refe["points"]
                    );
                }
                if let (true, Some(m)) = (files.iter().any(|f| f.ends_with(".json")), summary.as_object()) {
                    for (k, v) in m {
                        println!("  {k} = {v}");
                    }
                }
            }
            println!(
                "post: {} outputs in {} ({} field reads, {:.1} MiB; plan {} nodes, {} shared, {} culled; {} passes; {:.2} s; peak {:.0} MiB)",
                r.outputs.len(),
                r.out.display(),
                r.field_reads,
                r.bytes_read as f64 / (1 << 20) as f64,
                r.nodes.0,
                r.nodes.2,
                r.nodes.1,
                r.passes,
                r.seconds,
                r.peak_rss_mib
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn report(e: &dyn std::fmt::Display) {
    eprintln!("error: {e}");
}

fn load(case: &PathBuf, set: &[String], out: Option<PathBuf>) -> Result<solver::Case, RunError> {
    let mut c = solver::case::load(case, set)?;
    if let Some(o) = out {
        c.set_output_dir(o);
    }
    Ok(c)
}

fn check(path: &PathBuf, set: &[String], np: Option<usize>) -> ExitCode {
    let case = match load(path, set, None) {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let n = np.unwrap_or(match &case.ranks {
        solver::case::Ranks::Fixed(p) => p.iter().product(),
        solver::case::Ranks::Auto => 1,
    });
    let layout = match layout_for(&case, n) {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    println!("# resolved case: {}\n{}", path.display(), case.resolved);
    let g = &layout.grid;
    let d = g.dims;
    let dims = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" x ");
    println!("# decomposition on {n} rank(s)");
    println!("mesh          {} = {} cells", dims(&g.cells[..d]), g.total_cells());
    println!("process grid  {}", dims(&layout.procs[..d]));
    println!("{:>6} {:>24} {:>12} {:>12}", "rank", "block (cells per axis)", "cells", "halo cells");
    let mut halo_total = 0;
    for r in 0..layout.nranks() {
        let (cells, halo) = layout.rank_stats(r, 1);
        halo_total += halo;
        println!("{r:>6} {:>24} {cells:>12} {halo:>12}", dims(&layout.blocks[r].shape()[..d]));
    }
    let stable = case.stable_dt();
    println!("imbalance     {:.4} (largest block / average)", layout.imbalance());
    println!("halo total    {halo_total} cells per exchange ({:.2}% of the mesh)", 100.0 * halo_total as f64 / g.total_cells() as f64);
    if case.model == "incompressible" {
        let h = g.spacing();
        let hmin = h[..d].iter().cloned().fold(f64::INFINITY, f64::min);
        match case.dt {
            Some(dt) => println!("time step     fixed dt {dt:.6e} (viscous limit {:.6e})", case.viscous_dt()),
            None => println!(
                "time step     automatic: Courant number {} and {} x the viscous limit {:.6e}{}",
                case.cfl,
                case.stability_factor,
                case.viscous_dt(),
                case.dt_max.map(|m| format!(", at most {m:e}")).unwrap_or_default()
            ),
        }
        println!("viscosity     {:e}; cell Reynolds number |u| h / nu = {:.3} per unit speed", case.viscosity, hmin / case.viscosity);
    }
    if case.model == "poisson" || case.model == "incompressible" {
        let o = &case.solver;
        println!(
            "solver        {:?} + {:?} preconditioner; multigrid {:?}({},{}) {:?}; rtol {:e}, atol {:e}, at most {} iterations{}",
            o.method,
            o.precond,
            o.mg.cycle,
            o.mg.pre_smooth,
            o.mg.post_smooth,
            o.mg.smoother,
            o.rtol,
            o.atol,
            o.max_iterations,
            if o.reproducible { "; reproducible reductions" } else { "" }
        );
    }
    if case.model == "heat" {
        println!(
            "stable dt     {stable:.6e} (explicit limit); step used {:.6e}",
            case.dt.unwrap_or((case.stability_factor * stable).min(case.dt_max.unwrap_or(f64::INFINITY)))
        );
    }
    for a in 0..d {
        println!("boundary {}   lo: {}   hi: {}", ["x", "y", "z"][a], case.describe_bc(a, 0), case.describe_bc(a, 1));
    }
    println!("case OK");
    ExitCode::SUCCESS
}

/// `tessera run --np N`: re-executes this binary under mpirun.
fn launch(
    n: usize,
    case: &PathBuf,
    set: &[String],
    out: Option<PathBuf>,
    restart: Option<PathBuf>,
    overwrite: bool,
    quiet: bool,
) -> ExitCode {
    if MpiComm::launched_by_mpi() {
        report(&"--np launches mpirun itself; under mpirun or srun leave it out (the job's rank count is used)");
        return ExitCode::from(2);
    }
    if n == 0 {
        report(&"--np must be at least 1");
        return ExitCode::from(2);
    }
    // Validate before launching so input errors come back once, without mpirun noise.
    let c = match load(case, set, out.clone()) {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return ExitCode::from(2);
        }
    };
    if let Err(e) = layout_for(&c, n) {
        report(&e);
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            report(&format!("cannot find the tessera executable: {e}"));
            return ExitCode::from(1);
        }
    };
    let mut cmd = std::process::Command::new("mpirun");
    cmd.arg("-n").arg(n.to_string());
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    if n > cores {
        cmd.arg("--oversubscribe");
    }
    // Open MPI binds each rank to one core when there are at most two ranks: its
    // threads would take turns on it.
    if c.threads_per_rank > 1 {
        cmd.arg("--bind-to").arg("none");
    }
    // Open MPI refuses root unless told; a user running as root asked for this run.
    let is_root = {
        use std::os::unix::fs::MetadataExt;
        std::path::Path::new("/proc/self").metadata().map(|m| m.uid() == 0).unwrap_or(false)
    };
    if is_root && std::env::var_os("OMPI_ALLOW_RUN_AS_ROOT").is_none() {
        cmd.arg("--allow-run-as-root");
    }
    cmd.arg(&exe).arg("run").arg(case);
    for s in set {
        cmd.arg("--set").arg(s);
    }
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    if let Some(r) = restart {
        cmd.arg("--restart").arg(r);
    }
    if overwrite {
        cmd.arg("--overwrite");
    }
    if quiet {
        cmd.arg("--quiet");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            report(&format!("cannot start mpirun: {e} (install Open MPI: scripts/setup.sh)"));
            return ExitCode::from(3);
        }
    };
    // Signals to this launcher reach the job as a clean stop: the first one is sent on
    // as SIGUSR1 (mpirun forwards it to every rank, which checkpoints and exits); a
    // second one as SIGTERM. Without this, killing the launcher orphaned the MPI job.
    let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pid = child.id() as libc::pid_t;
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1]) {
        Ok(mut signals) => {
            let forwarded = forwarded.clone();
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    let n = forwarded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let sig = if n == 0 { libc::SIGUSR1 } else { libc::SIGTERM };
                    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
                    unsafe { libc::kill(pid, sig) };
                }
            });
        }
        Err(e) => report(&format!("cannot install signal handlers: {e}")),
    }
    match child.wait() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        // A stopped job exits 3 whatever mpirun itself reports for it.
        Ok(_) if forwarded.load(std::sync::atomic::Ordering::SeqCst) > 0 => ExitCode::from(3),
        Ok(s) => ExitCode::from(s.code().unwrap_or(3).clamp(0, 255) as u8),
        Err(e) => {
            report(&format!("lost track of mpirun: {e}"));
            ExitCode::from(3)
        }
    }
}

/// A run on the ranks of the current MPI job (singleton when started plainly).
fn run_here(case: &PathBuf, set: &[String], out: Option<PathBuf>, restart: Option<PathBuf>, overwrite: bool, quiet: bool) -> ExitCode {
    // SIGINT/SIGTERM (Ctrl-C, scancel, mpirun forwarding) and SIGUSR1 (Slurm's
    // pre-timeout signal) stop the run cleanly with a checkpoint. Installed first, so a
    // signal during the case check or MPI start-up stops the run at its first step
    // instead of killing the process (USR1's default action).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            report(&format!("cannot install signal handler: {e}"));
        }
    }
    // Outside a launcher, report input errors before paying for MPI start-up. Under
    // mpirun/srun every rank must initialise MPI, and rank 0 alone reports.
    if !MpiComm::launched_by_mpi() {
        if let Err(e) = load(case, set, out.clone()) {
            report(&e);
            return ExitCode::from(e.exit_code() as u8);
        }
    }
    let Some(comm) = MpiComm::init() else {
        report(&"MPI could not be initialised");
        return ExitCode::from(1);
    };
    let create_parents = out.is_none();
    let res = load(case, set, out).and_then(|c| {
        let opts = RunOptions { restart, overwrite, progress: !quiet, create_parents, stop: Some(stop.clone()) };
        run(&comm, &c, &opts)
    });
    let code = match &res {
        Ok(s) => {
            if comm.rank() == 0 && !quiet && s.model == "poisson" {
                eprintln!("{}: solved on {} rank(s) in {:.2}s; output in {}", s.status, comm.size(), s.wall_seconds, s.run_dir.display());
            } else if comm.rank() == 0 && !quiet {
                eprintln!(
                    "{}: {} steps to t={:.6e} on {} rank(s) in {:.2}s; output in {}",
                    s.status,
                    s.steps,
                    s.time,
                    comm.size(),
                    s.wall_seconds,
                    s.run_dir.display()
                );
            }
            0
        }
        Err(e) => {
            if comm.rank() == 0 {
                report(e);
            }
            e.exit_code()
        }
    };
    drop(comm); // MPI_Finalize before exiting
    ExitCode::from(code as u8)
}
