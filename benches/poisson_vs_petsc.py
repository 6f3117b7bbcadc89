#!/usr/bin/python3
"""tessera's multigrid-preconditioned CG against PETSc's KSP CG + PCMG, side by side.

Same problem on both sides: -laplace(u) = d pi^2 prod sin(pi x_a) on the unit
square/cube, u = 0 on the boundary, zero initial guess, CG to rtol 1e-8 in the
unpreconditioned 2-norm. PETSc runs its DMDA vertex grid with n points per axis
(n - 2 unknowns per axis inside the Dirichlet boundary); tessera runs n cells per
axis (cell-centred), so tessera solves slightly more unknowns. Every PETSc variant
(Chebyshev/Jacobi or SOR smoothing, 1 or 2 steps, rediscretised or Galerkin coarse
operators; see benches/petsc_poisson.py) runs in its own process so its peak memory
is its own, and the best solve time is the one compared. Each side reports the best
of --repeat solves after a warm-up; the two run back to back in one invocation, so
they see the same machine load.

    /usr/bin/python3 benches/poisson_vs_petsc.py [--repeat 3] [--quick] [--problem 3:129] [--json FILE]

Prints one table row per (problem, ranks): iterations, solve seconds and peak RSS
per rank for tessera and for PETSc's best variant, and speed-up = PETSc / tessera.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "target", "release", "examples", "poisson_bench")
PETSC = os.path.join(ROOT, "benches", "petsc_poisson.py")
VARIANTS = ["cheb1-redisc", "cheb1-galerkin", "cheb2-redisc", "cheb2-galerkin",
            "sor1-redisc", "sor1-galerkin", "sor2-redisc", "sor2-galerkin"]

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none",
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
# tessera advises its field storage onto transparent huge pages (decomp::field::zeroed_storage);
# PETSc gets the same from glibc, which then advises every mmap'd allocation: 3-5 % faster
# for PETSc at 129^3 on 1 rank (docs/BENCHMARKS.md), so its best is measured with it.
PETSC_ENV = dict(ENV, GLIBC_TUNABLES="glibc.malloc.hugetlb=1")


def mpirun(ranks, cmd, env=ENV):
    full = ["mpirun", "-n", str(ranks), "--bind-to", "core"] + cmd
    out = subprocess.run(full, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(full)}\n{out.stdout}\n{out.stderr}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if not rows:
        sys.exit(f"no JSON from: {' '.join(full)}\n{out.stdout}\n{out.stderr}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only 2D 1025^2 on 1 rank")
    ap.add_argument("--json", help="also write all rows to this file")
    ap.add_argument("--problem", action="append", metavar="DIMS:N",
                    help="run only this problem (e.g. 3:129); repeatable (default: 2:1025, 2:2049, 3:129)")
    ap.add_argument("--tessera-args", action="append", default=None,
                    help="options for poisson_bench, e.g. '--method fcg --cycle F'; repeatable: every configuration runs "
                         "against the same PETSc runs (default: one run with the solver defaults)")
    args = ap.parse_args()
    if not os.path.exists(TESSERA):
        sys.exit(f"{TESSERA} is missing: cargo build --release -p solver --example poisson_bench")
    problems = [(2, 1025)] if args.quick else [(2, 1025), (2, 2049), (3, 129)]
    if args.problem:
        try:
            problems = [tuple(int(v) for v in p.split(":")) for p in args.problem]
        except ValueError:
            sys.exit(f"--problem takes DIMS:N, e.g. 3:129 (got {args.problem})")
    rank_counts = [1] if args.quick else [1, 2]
    results = []
    header = (f"{'problem':>10} {'ranks':>5} | {'tessera its':>11} {'solve s':>8} {'RSS MiB':>8} | "
              f"{'PETSc best variant':>18} {'its':>4} {'solve s':>8} {'RSS MiB':>8} | {'speed-up':>8} {'memory':>7}")
    print(header)
    print("-" * len(header))
    configs = args.tessera_args or [""]
    for dims, n in problems:
        for ranks in rank_counts:
            tessera = [mpirun(ranks, [TESSERA, "--dims", str(dims), "--n", str(n), "--repeat", str(args.repeat)] + c.split())[0]
                       for c in configs]
            petsc = []
            for v in VARIANTS:
                petsc += mpirun(ranks, ["/usr/bin/python3", PETSC, "--dims", str(dims), "--n", str(n), "--variant", v,
                                        "--repeat", str(args.repeat), "--json"], env=PETSC_ENV)
            petsc = [p for p in petsc if p.get("converged_reason", 1) > 0]
            best = min(petsc, key=lambda p: p["solve_s"])
            for c, t in zip(configs, tessera):
                speed = best["solve_s"] / t["solve_s"]
                mem = best["rss_mib"] / t["rss_mib"]
                name = f"{n}^{dims}"
                print(f"{name:>10} {ranks:>5} | {t['iterations']:>11} {t['solve_s']:>8.3f} {t['rss_mib']:>8.1f} | "
                      f"{best['variant']:>18} {best['iterations']:>4} {best['solve_s']:>8.3f} {best['rss_mib']:>8.1f} | "
                      f"{speed:>7.2f}x {mem:>6.2f}x  tessera {t['variant']}", flush=True)
                results.append({"dims": dims, "n": n, "ranks": ranks, "tessera_args": c, "tessera": t, "petsc_best": best,
                                "petsc_all": petsc, "speedup": speed, "memory_ratio": mem})
    print("speed-up = PETSc best solve time / tessera solve time; memory = PETSc peak RSS / tessera peak RSS "
          "(per rank; PETSc's includes the Python interpreter and petsc4py, ~60 MiB)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
