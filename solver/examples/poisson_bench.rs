//! The multigrid side of the PETSc comparison (benches/poisson_vs_petsc.py):
//! -∇²u = d π² Π sin(π x_a) on the unit square/cube, u = 0 on the boundary, n cells
//! per axis, MG-preconditioned CG to rtol 1e-8 in the unpreconditioned 2-norm from a
//! zero guess. Prints one JSON line per configuration on rank 0.
//!
//! `mpirun -n P target/release/examples/poisson_bench --dims 2 --n 1025 [--repeat 3]
//!  [--method cg|cg1|fcg|bicgstab|mg] [--smoother rbgs|chebyshev] [--cycle V|W|F] [--pre 2 --post 2] [--log]`
use decomp::comm::{Comm, MpiComm};
use decomp::{BlockLayout, Grid};
use solver::linsolve::{BcKind, Cycle, Interpolation, LinearSolver, Method, Multigrid, OperatorSpec, Smoother, SolverOptions};
use std::f64::consts::PI;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        / 1024.0
}

/// The value named by `flag`'s argument among `named`, else `default`.
fn choose<T: Copy>(args: &[String], flag: &str, named: &[(&str, T)], default: T) -> T {
    let v: String = arg(args, flag, String::new());
    named.iter().find(|(n, _)| *n == v).map_or(default, |&(_, t)| t)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let comm = MpiComm::init().expect("MPI initialises once");
    let dims: usize = arg(&args, "--dims", 2);
    let n: usize = arg(&args, "--n", 1025);
    let repeat: usize = arg(&args, "--repeat", 3);
    let mut opts = SolverOptions::default();
    opts.method = choose(
        &args,
        "--method",
        &[("cg1", Method::Cg1), ("fcg", Method::Fcg), ("bicgstab", Method::BiCgStab), ("mg", Method::Mg)],
        Method::Cg,
    );
    opts.mg.smoother = choose(&args, "--smoother", &[("chebyshev", Smoother::Chebyshev)], Smoother::Rbgs);
    opts.mg.cycle = choose(&args, "--cycle", &[("W", Cycle::W), ("F", Cycle::F)], Cycle::V);
    opts.mg.pre_smooth = arg(&args, "--pre", opts.mg.pre_smooth);
    opts.mg.post_smooth = arg(&args, "--post", opts.mg.post_smooth);
    opts.mg.interpolation = choose(&args, "--interpolation", &[("linear", Interpolation::Linear)], Interpolation::Cubic);
    opts.mg.max_levels = arg(&args, "--levels", opts.mg.max_levels);
    opts.mg.coarse_max = arg(&args, "--coarse-max", opts.mg.coarse_max);
    opts.reproducible = args.iter().any(|a| a == "--reproducible");
    let cells = vec![n; dims];
    let grid = Grid::new(&cells, &vec![0.0; dims], &vec![1.0; dims], &vec![false; dims]);
    let layout = BlockLayout::auto(&grid, comm.size(), 2).expect("layout");
    comm.barrier();
    let t0 = Instant::now();
    let spec = OperatorSpec { alpha: 0.0, beta: 1.0, coefficient: None, bc: [[BcKind::Dirichlet; 2]; 3] };
    let mg = Multigrid::new(&comm, &layout, &spec, opts.mg).expect("hierarchy");
    let mut solver = LinearSolver::new(mg, opts);
    let mut b = solver.new_field();
    let mut x = solver.new_field();
    comm.barrier();
    let setup = t0.elapsed().as_secs_f64();
    let exact = |i: usize, j: usize, k: usize| {
        let c = [grid.centre(0, i), grid.centre(1, j), grid.centre(2, k)];
        (0..dims).map(|a| (PI * c[a]).sin()).product::<f64>()
    };
    b.fill_with(|i, j, k| dims as f64 * PI * PI * exact(i, j, k));
    let mut best = f64::INFINITY;
    let mut total = 0.0;
    let mut rep = None;
    for _ in 0..repeat.max(1) + 1 {
        x.data.fill(0.0);
        comm.barrier();
        let t = Instant::now();
        let r = solver.solve(&comm, &b, &mut x);
        comm.barrier();
        let secs = t.elapsed().as_secs_f64();
        best = best.min(secs);
        total += secs;
        rep = Some(r);
    }
    let rep = rep.expect("solved");
    let lo = x.block.lo;
    let mut err: f64 = 0.0;
    for ((k, j, i), v) in x.interior().indexed_iter() {
        err = err.max((v - exact(lo[0] + i, lo[1] + j, lo[2] + k)).abs());
    }
    if args.iter().any(|a| a == "--log") {
        // Per-phase times of the Krylov work and the cycles, summed over every solve
        // (the warm-up included), as shares of the summed solve time.
        let mut log = solver.log.reduce(&comm);
        log.merge_prefixed("mg: ", &solver.mg.log.reduce(&comm));
        if comm.rank() == 0 {
            eprintln!("{}", log.table(total));
        }
    }
    if args.iter().any(|a| a == "--history") && comm.rank() == 0 {
        let h: Vec<String> = rep.history.iter().map(|r| format!("{r:.3e}")).collect();
        eprintln!("history (|r|/|b| per iteration): {}", h.join(" "));
    }
    let err = comm.max(err);
    let rss = comm.max(peak_rss_mib());
    if comm.rank() == 0 {
        println!(
            "{{\"tool\": \"tessera\", \"variant\": \"{}+mg({:?},{:?},{}/{})\", \"dims\": {dims}, \"n\": {n}, \"ranks\": {}, \"iterations\": {}, \"setup_s\": {setup:.6}, \"solve_s\": {best:.6}, \"rel_res\": {:.3e}, \"max_err\": {err:.6e}, \"rss_mib\": {rss:.1}, \"unknowns\": {}, \"levels\": {}, \"reductions\": {}}}",
            rep.method,
            opts.mg.smoother,
            opts.mg.cycle,
            opts.mg.pre_smooth,
            opts.mg.post_smooth,
            comm.size(),
            rep.iterations,
            rep.relative_residual(),
            grid.total_cells(),
            solver.mg.levels.len(),
            rep.reductions
        );
    }
}
