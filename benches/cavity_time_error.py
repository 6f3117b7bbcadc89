#!/usr/bin/python3
"""Time-integration error of tessera and icoFoam in the cavity's transient.

The cavity bench (benches/cavity_vs_icofoam.py) compares the two codes at t = 20,
where the flow is steady and neither code's answer depends on its time step. This
script measures what the step costs in accuracy before that: each code runs the same
cavity (Re = 100, 128^2, from rest) to an early time T (default 2, mid-transient) at
the bench's Courant numbers and tolerances, and its velocity is compared with its
own reference run to T at Courant number 1/16 with every tolerance at 1e-10. The
difference, max over cells of |u - u_ref| and |v - v_ref| (cell-centred velocity), is
the code's time-integration error plus what its solver tolerances leave; the spatial
error cancels, since each code is compared with itself on the same grid.

    /usr/bin/python3 benches/cavity_time_error.py [--end-time 2] [--courant 1,0.5] [--json FILE]

Needs what benches/cavity_vs_icofoam.py needs (OpenFOAM and target/release/tessera);
runs on one rank, about 5 minutes, most of it in the two reference runs.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cavity_vs_icofoam as bench  # noqa: E402

REF_COURANT = 1.0 / 16.0
REF_TOL = 1e-10
# tessera configurations: cases/cavity.toml as shipped, and with either projection
# (numerics.cfl set to the Courant number of the run).
CONFIGS = {
    "shipped": [],
    "every_stage": ['numerics.projection="every_stage"'],
    "final_stage": ['numerics.projection="final_stage"'],
}
REF_SETS = [f"numerics.cfl={REF_COURANT!r}", f"numerics.viscous_rtol={REF_TOL!r}", f"numerics.solver.rtol={REF_TOL!r}",
            'numerics.projection="every_stage"']


def tessera_velocity(work, args, ghia, name, sets, courant):
    """Runs tessera to args.end_time with `sets` (Courant number `courant`); returns
    (result row, u, v) with cell-centred [ny, nx] velocity."""
    import h5py
    bench.TESSERA_VARIANTS[name] = (sets + [f"numerics.cfl={courant!r}"] if courant != 1.0 else sets, courant)
    r = bench.run_tessera(work, 1, args, ghia, name)
    with h5py.File(os.path.join(work, f"tessera-{name}-np1", "output.h5"), "r") as f:
        snaps = f["snapshots"]
        last = snaps[max(snaps.keys(), key=int)]
        return r, last["velocity_x"][...], last["velocity_y"][...]


def foam_velocity(work, env, args, ghia, variant, courant, tol):
    """Runs icoFoam to args.end_time at `courant` with tolerance `tol`; returns (row, u, v)."""
    args.tolerance = tol
    r = bench.run_icofoam(work, env, variant, 1, args, courant, ghia)
    case = os.path.join(work, f"foam-{variant}-co{courant:g}-np1")
    times = [t for t in os.listdir(case) if re.fullmatch(r"[0-9.e+-]+", t) and float(t) > 0]
    U = bench.read_foam_U(os.path.join(case, max(times, key=float), "U"), bench.N * bench.N)
    return r, U[:, 0].reshape(bench.N, bench.N), U[:, 1].reshape(bench.N, bench.N)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--end-time", type=float, default=2.0, help="time at which the fields are compared (default 2)")
    ap.add_argument("--courant", default="1,0.5", help="Courant numbers of the compared runs (default 1,0.5)")
    ap.add_argument("--variant", default="gamg-pbicgstab", help="icoFoam linear solvers (default gamg-pbicgstab)")
    ap.add_argument("--tolerance", type=float, default=1e-7, help="icoFoam tolerance of the compared runs (default 1e-7)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"tessera configurations (default {','.join(CONFIGS)})")
    ap.add_argument("--skip-openfoam", action="store_true")
    ap.add_argument("--foam-bashrc", default=bench.FOAM_BASHRC)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    # What bench.run_tessera / run_icofoam read from their argument object.
    args.split, args.tessera_set = "y", []
    courants = [float(x) for x in args.courant.split(",") if x]
    configs = [c for c in args.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"unknown configuration {c}; known: {', '.join(CONFIGS)}")
    if args.variant not in bench.VARIANTS:
        sys.exit(f"unknown icoFoam variant {args.variant}; known: {', '.join(bench.VARIANTS)}")
    if not os.path.exists(bench.TESSERA):
        sys.exit(f"{bench.TESSERA} is missing: cargo build --release")
    ghia = bench.read_ghia(bench.GHIA)
    env = None if args.skip_openfoam else bench.foam_env(args.foam_bashrc)
    tol = args.tolerance
    work = tempfile.mkdtemp(prefix="cavity_time_error-")
    rows = []
    print(f"cavity Re = 100, {bench.N}^2, from rest to t = {args.end_time:g}, 1 rank: max velocity difference from "
          f"each code's own run at Courant {REF_COURANT:g} with tolerances {REF_TOL:g}")
    print(f"{'code':>8} {'configuration':>24} {'Courant':>8} {'steps':>6} {'wall s':>7} {'max |du|, |dv|':>15}")
    try:
        _, ru, rv = tessera_velocity(work, args, ghia, "reference", REF_SETS, REF_COURANT)
        for co in courants:
            for c in configs:
                r, u, v = tessera_velocity(work, args, ghia, f"{c}-co{co:g}", CONFIGS[c], co)
                rows.append({"code": "tessera", "configuration": c, "courant": co, "steps": r["steps"],
                             "wall_seconds": r["wall_seconds"], "overrides": r["overrides"],
                             "max_difference": float(max(np.abs(u - ru).max(), np.abs(v - rv).max()))})
                print(f"{'tessera':>8} {c:>24} {co:>8g} {r['steps']:>6} {r['wall_seconds']:>7.2f} "
                      f"{rows[-1]['max_difference']:>15.3e}", flush=True)
        if env is not None:
            _, ru, rv = foam_velocity(work, env, args, ghia, args.variant, REF_COURANT, REF_TOL)
            for co in courants:
                r, u, v = foam_velocity(work, env, args, ghia, args.variant, co, tol)
                rows.append({"code": "icoFoam", "configuration": f"{args.variant}, tolerance {tol:g}", "courant": co,
                             "steps": r["steps"], "wall_seconds": r["wall_seconds"],
                             "max_difference": float(max(np.abs(u - ru).max(), np.abs(v - rv).max()))})
                print(f"{'icoFoam':>8} {args.variant:>24} {co:>8g} {r['steps']:>6} {r['wall_seconds']:>7.2f} "
                      f"{rows[-1]['max_difference']:>15.3e}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"end_time": args.end_time, "reference_courant": REF_COURANT, "reference_tolerance": REF_TOL,
                       "results": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
