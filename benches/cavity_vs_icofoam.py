#!/usr/bin/python3
"""tessera's incompressible solver against OpenFOAM's icoFoam, side by side.

Same problem on both sides: the lid-driven cavity at Re = 100 (unit square, lid
u = 1 at y = 1, no slip elsewhere, nu = 0.01, 128 x 128 cells, fluid at rest at
t = 0), integrated to the same end time (default 20). icoFoam runs the case this
script writes (PISO, 2 correctors, Euler in time, linear/Gauss in space: the
`cavity` tutorial refined to 128^2 with tighter tolerances); tessera runs
cases/cavity.toml with control.end_time overridden, its steady-state stop switched
off and only the final state written (as icoFoam does). Every icoFoam linear-solver
variant (pressure PCG+DIC or GAMG; velocity symmetric Gauss-Seidel or PBiCGStab+DILU)
runs in its own process, and the fastest is the one compared, as in
benches/poisson_vs_petsc.py. Both sides are checked against Ghia, Ghia & Shin (1982)
on the two centrelines (max |u - u_Ghia| on x = 0.5, max |v - v_Ghia| on y = 0.5).

    /usr/bin/python3 benches/cavity_vs_icofoam.py [--end-time 20] [--ranks 1,2] [--json FILE]

Needs OpenFOAM (bash scripts/setup_openfoam.sh) and target/release/tessera
(cargo build --release). Cases and outputs live in a temporary directory, removed
at the end (--keep keeps it). Prints one row per (code, ranks): steps, wall seconds,
cell updates per second, the two errors, and speed-up = icoFoam / tessera wall time.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "target", "release", "tessera")
CASE = os.path.join(ROOT, "cases", "cavity.toml")
GHIA = os.path.join(ROOT, "cases", "data", "ghia1982_re100.csv")
# Debian's openfoam (v1912) keeps etc/ here and the binaries in /usr/bin. Sourcing it
# prints errors (Debian ships no foamEtcFile) but sets WM_PROJECT_DIR, which is what
# the binaries need to find etc/controlDict. An openfoam.com build would pass e.g.
# --foam-bashrc /usr/lib/openfoam/openfoam2312/etc/bashrc.
FOAM_BASHRC = "/usr/share/openfoam/etc/bashrc"

N = 128          # cells per axis, as in cases/cavity.toml
NU = 0.01        # Re = U L / nu = 100
MPI_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

# Linear solvers; {tol} is --tolerance, on OpenFOAM's normalised residuals. Every
# momentum solve and the last pressure corrector of each step go to {tol} with no
# relative stop (pFinal), the first pressure corrector to relTol 0.05 as in the
# tutorial. Measured at t = 20 on 1 rank (gamg-pbicgstab), against a run with every
# tolerance at 1e-10: tolerance 1e-6 (the tutorial's) leaves the velocity field
# 4.3e-5 off (the solves stop iterating before the steady state is reached), 1e-7
# leaves it 9e-6 off, 1e-8 5e-9. 1e-7 is the loosest that converges the field to
# better than the 5 decimals of Ghia's table (and the centreline errors to 7e-6), so
# icoFoam is not made to do more work than that accuracy needs; 1e-8 costs it ~35 %.
P_PCG = "solver PCG; preconditioner DIC; tolerance {tol}; relTol 0.05;"
P_GAMG = ("solver GAMG; smoother GaussSeidel; nPreSweeps 0; nPostSweeps 2; cacheAgglomeration true; "
          "agglomerator faceAreaPair; nCellsInCoarsestLevel 10; mergeLevels 1; tolerance {tol}; relTol 0.05;")
U_SGS = "solver smoothSolver; smoother symGaussSeidel; nSweeps 1; tolerance {tol}; relTol 0;"
U_BICG = "solver PBiCGStab; preconditioner DILU; tolerance {tol}; relTol 0;"
# tessera's configurations, each paired with icoFoam at the same Courant number (tessera's
# dt * sum |u_d| / h_d is icoFoam's Co): the case as shipped (viscosity Crank-Nicolson,
# cfl 1, one pressure solve per step), the same with a pressure solve per stage (the
# case before 2026-12-02 afternoon), the same at 0.5, and the explicit viscous term
# (limited by nu dt / h^2).
TESSERA_VARIANTS = {
    "cn-cfl1": ([], 1.0),
    "cn-cfl1-every-stage": (['numerics.projection="every_stage"'], 1.0),
    "cn-cfl0.5": (["numerics.cfl=0.5"], 0.5),
    "explicit-cfl0.5": (['numerics.viscous="explicit"', "numerics.cfl=0.5"], 0.5),
}
VARIANTS = {
    "pcg-sgs": (P_PCG, U_SGS),          # the cavity tutorial's choice
    "pcg-pbicgstab": (P_PCG, U_BICG),
    "gamg-sgs": (P_GAMG, U_SGS),        # GAMG: OpenFOAM's usual pressure solver
    "gamg-pbicgstab": (P_GAMG, U_BICG),
}


# ----------------------------------------------------------------------------- Ghia

# Ghia's table and the centreline comparison are scripts/cavity_report.py's (the
# report `make demo` prints), so both codes here are measured exactly as a user's
# run is.
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from cavity_report import read_ghia  # noqa: E402
from cavity_report import centreline_errors as _centreline_errors  # noqa: E402


def centreline_errors(u, v, ghia):
    """(max |u - u_Ghia|, max |v - v_Ghia|) of cell-centred [ny, nx] fields."""
    return _centreline_errors(u, v, ghia)[:2]


# ----------------------------------------------------------------------------- OpenFOAM

def foam_env(bashrc):
    if not os.path.exists(bashrc):
        sys.exit(f"{bashrc} is missing: bash scripts/setup_openfoam.sh (or pass --foam-bashrc)")
    out = subprocess.run(["bash", "-c", f"source '{bashrc}' >/dev/null 2>&1; env -0"],
                         capture_output=True, check=True)
    env = dict(kv.split("=", 1) for kv in out.stdout.decode().split("\0") if "=" in kv)
    env.setdefault("WM_PROJECT_DIR", os.path.dirname(os.path.dirname(bashrc)))
    env.update(MPI_ENV)
    if shutil.which("icoFoam", path=env.get("PATH")) is None:
        sys.exit(f"icoFoam not on PATH after sourcing {bashrc}: bash scripts/setup_openfoam.sh")
    return env


def foam_file(path, cls, obj, body, location=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    loc = f'    location    "{location}";\n' if location else ""
    with open(path, "w") as fh:
        fh.write("FoamFile\n{\n    version     2.0;\n    format      ascii;\n"
                 f"    class       {cls};\n{loc}    object      {obj};\n}}\n\n{body}\n")


def write_case(d, variant, end_time, dt, steps, ranks, split, tol):
    p_solver, u_solver = (x.format(tol=f"{tol:g}") for x in VARIANTS[variant])
    foam_file(f"{d}/system/blockMeshDict", "dictionary", "blockMeshDict", f"""\
scale 1;
vertices ((0 0 0) (1 0 0) (1 1 0) (0 1 0) (0 0 0.1) (1 0 0.1) (1 1 0.1) (0 1 0.1));
blocks (hex (0 1 2 3 4 5 6 7) ({N} {N} 1) simpleGrading (1 1 1));
edges ();
boundary
(
    movingWall   {{ type wall;  faces ((3 7 6 2)); }}
    fixedWalls   {{ type wall;  faces ((0 4 7 3) (2 6 5 1) (1 5 4 0)); }}
    frontAndBack {{ type empty; faces ((0 3 2 1) (4 5 6 7)); }}
);
mergePatchPairs ();""")
    # Write only the final time: one write after `steps` steps, ASCII, full precision.
    foam_file(f"{d}/system/controlDict", "dictionary", "controlDict", f"""\
application icoFoam;
startFrom startTime;
startTime 0;
stopAt endTime;
endTime {end_time!r};
deltaT {dt!r};
writeControl timeStep;
writeInterval {steps};
purgeWrite 0;
writeFormat ascii;
writePrecision 12;
writeCompression off;
timeFormat general;
timePrecision 12;
runTimeModifiable false;""", "system")
    foam_file(f"{d}/system/fvSchemes", "dictionary", "fvSchemes", """\
ddtSchemes { default Euler; }
gradSchemes { default Gauss linear; }
divSchemes { default none; div(phi,U) Gauss linear; }
laplacianSchemes { default Gauss linear orthogonal; }
interpolationSchemes { default linear; }
snGradSchemes { default orthogonal; }""", "system")
    foam_file(f"{d}/system/fvSolution", "dictionary", "fvSolution", f"""\
solvers
{{
    p {{ {p_solver} }}
    pFinal {{ $p; relTol 0; }}
    U {{ {u_solver} }}
}}
PISO {{ nCorrectors 2; nNonOrthogonalCorrectors 0; pRefCell 0; pRefValue 0; }}""", "system")
    foam_file(f"{d}/system/decomposeParDict", "dictionary", "decomposeParDict", f"""\
numberOfSubdomains {ranks};
method simple;
coeffs {{ n {"(%d 1 1)" % ranks if split == "x" else "(1 %d 1)" % ranks}; }}""", "system")
    foam_file(f"{d}/constant/transportProperties", "dictionary", "transportProperties",
              f"nu {NU!r};", "constant")
    walls = "movingWall {{ type {0}; {1} }}\n    fixedWalls {{ type {2}; }}\n    frontAndBack {{ type empty; }}"
    foam_file(f"{d}/0/U", "volVectorField", "U", "dimensions [0 1 -1 0 0 0 0];\ninternalField uniform (0 0 0);\n"
              "boundaryField\n{\n    " + walls.format("fixedValue", "value uniform (1 0 0);", "noSlip") + "\n}")
    foam_file(f"{d}/0/p", "volScalarField", "p", "dimensions [0 2 -2 0 0 0 0];\ninternalField uniform 0;\n"
              "boundaryField\n{\n    " + walls.format("zeroGradient", "", "zeroGradient") + "\n}")


def foam(cmd, case, env, log):
    """Runs an OpenFOAM command in `case`, logging to case/log.<log>; wall seconds."""
    with open(os.path.join(case, f"log.{log}"), "w") as fh:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=case, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=7200).returncode
        secs = time.perf_counter() - t0
    if rc != 0:
        with open(os.path.join(case, f"log.{log}")) as fh:
            tail = "".join(fh.readlines()[-30:])
        sys.exit(f"failed ({rc}): {' '.join(cmd)} in {case}\n{tail}")
    return secs


def read_foam_U(path, ncells):
    with open(path) as fh:
        text = fh.read()
    m = re.search(r"internalField\s+nonuniform\s+List<vector>\s*(\d+)\s*\(", text)
    if not m or int(m.group(1)) != ncells:
        sys.exit(f"{path}: no nonuniform internalField of {ncells} vectors")
    body = text[m.end():text.index("boundaryField", m.end())]
    vals = np.array(body.replace("(", " ").replace(")", " ").split()[:3 * ncells], dtype=float)
    return vals.reshape(ncells, 3)


def log_stats(path):
    """Steps, final Courant number, mean pressure/velocity iterations, CPU seconds."""
    with open(path) as fh:
        text = fh.read()
    p_its = [int(x) for x in re.findall(r"Solving for p,.*No Iterations (\d+)", text)]
    u_its = [int(x) for x in re.findall(r"Solving for U[xy],.*No Iterations (\d+)", text)]
    co = re.findall(r"Courant Number mean: \S+ max: (\S+)", text)
    cpu = re.findall(r"ExecutionTime = (\S+) s", text)
    return {"steps": len(re.findall(r"^Time = ", text, re.M)),
            "courant_max": float(co[-1]) if co else None,
            "p_iterations_mean": float(np.mean(p_its)) if p_its else None,
            "u_iterations_mean": float(np.mean(u_its)) if u_its else None,
            "cpu_seconds_rank0": float(cpu[-1]) if cpu else None}


def icofoam_step(end_time, courant):
    """icoFoam's dt for Courant number `courant` at the lid speed, rounded down so that a
    whole number of steps lands on the end time."""
    steps = math.ceil(round(end_time * N / courant, 9))
    return end_time / steps, steps


def run_icofoam(work, env, variant, ranks, args, courant, ghia):
    dt, steps = icofoam_step(args.end_time, courant)
    case = os.path.join(work, f"foam-{variant}-co{courant:g}-np{ranks}")
    write_case(case, variant, args.end_time, dt, steps, ranks, args.split, args.tolerance)
    r = {"code": "icoFoam", "variant": f"{variant}-co{courant:g}", "solvers": variant, "courant": courant,
         "ranks": ranks, "dt": dt}
    r["blockmesh_seconds"] = foam(["blockMesh"], case, env, "blockMesh")
    if ranks == 1:
        r["wall_seconds"] = foam(["icoFoam"], case, env, "icoFoam")
    else:
        r["decompose_seconds"] = foam(["decomposePar", "-force"], case, env, "decomposePar")
        r["wall_seconds"] = foam(["mpirun", "-np", str(ranks), "--bind-to", "core", "icoFoam", "-parallel"],
                                 case, env, "icoFoam")
        r["reconstruct_seconds"] = foam(["reconstructPar", "-latestTime"], case, env, "reconstructPar")
    r.update(log_stats(os.path.join(case, "log.icoFoam")))
    times = [t for t in os.listdir(case) if re.fullmatch(r"[0-9.e+-]+", t) and float(t) > 0]
    if not times:
        sys.exit(f"{case}: icoFoam wrote no time directory")
    last = max(times, key=float)
    r["final_time"] = float(last)
    U = read_foam_U(os.path.join(case, last, "U"), N * N)
    r["max_error_u"], r["max_error_v"] = centreline_errors(U[:, 0].reshape(N, N), U[:, 1].reshape(N, N), ghia)
    r["cell_updates_per_second"] = N * N * r["steps"] / r["wall_seconds"]
    return r


# ----------------------------------------------------------------------------- tessera

def run_tessera(work, ranks, args, ghia, variant):
    import h5py
    out = os.path.join(work, f"tessera-{variant}-np{ranks}")
    # The case stops early once max|du/dt| < control.steady_tolerance; that is
    # switched off (a tolerance no run reaches) so both codes integrate to the same
    # end time. Periodic snapshots/checkpoints off: like the icoFoam case, only the
    # final state is written (the final snapshot and checkpoint are always written).
    sets = [f"control.end_time={args.end_time!r}", "control.steady_tolerance=1e-300",
            "output.every=0", "output.checkpoint_every=0"] + TESSERA_VARIANTS[variant][0] + args.tessera_set
    cmd = [TESSERA, "run", "--np", str(ranks), CASE, "--out", out, "--overwrite", "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=dict(os.environ, **MPI_ENV), capture_output=True, text=True, timeout=7200)
    process_wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as fh:
        s = json.load(fh)
    with h5py.File(os.path.join(out, "output.h5"), "r") as f:
        snaps = f["snapshots"]
        last = max(snaps.keys(), key=int)
        u = snaps[last]["velocity_x"][...]
        v = snaps[last]["velocity_y"][...]
    if u.shape != (N, N):
        sys.exit(f"{out}/output.h5: velocity_x has shape {u.shape}, expected ({N}, {N})")
    r = {"code": "tessera", "variant": variant, "courant": TESSERA_VARIANTS[variant][1], "ranks": ranks,
         "steps": s["steps"], "status": s.get("status"),
         "final_time": s.get("final_time"), "dt": s.get("dt"), "courant_max": s.get("cfl"),
         "wall_seconds": s["wall_seconds"], "process_wall_seconds": process_wall, "snapshot_step": int(last),
         "process_grid": s.get("process_grid"),
         "overrides": sets}
    phases = {ph["phase"]: ph["seconds"] for ph in s.get("performance", [])}
    if "time step" in phases:
        r["time_step_seconds"] = phases["time step"]
    ls = s.get("linear_solves") or []
    if ls and ls[0].get("solves"):
        r["p_iterations_mean"] = ls[0]["iterations_total"] / ls[0]["solves"]
    if len(ls) > 1 and ls[1].get("solves"):
        r["viscous_iterations_mean"] = ls[1]["iterations_total"] / ls[1]["solves"]
    r["max_error_u"], r["max_error_v"] = centreline_errors(u, v, ghia)
    r["cell_updates_per_second"] = N * N * r["steps"] / r["wall_seconds"]
    return r


# ----------------------------------------------------------------------------- main

def row(r, extra=""):
    return (f"{r['code']:>8} {r['ranks']:>5} {r.get('variant', ''):>22} {r['steps']:>7} {r['final_time']:>7.3g} "
            f"{r['wall_seconds']:>8.2f} {r['cell_updates_per_second'] / 1e6:>9.2f} "
            f"{r['max_error_u']:>9.2e} {r['max_error_v']:>9.2e} {extra}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--end-time", type=float, default=20.0, help="simulated time for both codes (default 20)")
    ap.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"icoFoam linear-solver variants to try (default all: {','.join(VARIANTS)})")
    ap.add_argument("--courant", default="0.5,1",
                    help="icoFoam Courant numbers: time step = courant * h / U_lid, rounded down to divide the end "
                         "time; comma-separated (default 0.5,1)")
    ap.add_argument("--tessera-variants", default=",".join(TESSERA_VARIANTS),
                    help=f"tessera configurations (default all: {','.join(TESSERA_VARIANTS)})")
    ap.add_argument("--tolerance", type=float, default=1e-7,
                    help="icoFoam solver tolerance for U and the final p corrector (default 1e-7; see VARIANTS)")
    # Debian's openfoam 1912 ships only the stub libscotchDecomp.so (decomposePar
    # -> "Attempted to use <scotch> without the scotchDecomp library loaded"), so the
    # decomposition is `simple`: equal slabs, by default along y as tessera's automatic
    # layout does for this case (process grid 1 x 2); both cut 128 faces.
    ap.add_argument("--split", default="y", choices=["x", "y"], help="axis decomposePar (simple) cuts (default y)")
    ap.add_argument("--ghia", default=GHIA, help=f"Ghia et al. table (default {GHIA})")
    ap.add_argument("--foam-bashrc", default=FOAM_BASHRC)
    ap.add_argument("--tessera-set", action="append", default=[], help="extra --set KEY=VALUE for tessera (repeatable)")
    ap.add_argument("--skip-tessera", action="store_true")
    ap.add_argument("--skip-openfoam", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    ap.add_argument("--json", help="also write all results to this file")
    args = ap.parse_args()
    ranks_list = [int(x) for x in args.ranks.split(",") if x]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"unknown variant {v}; known: {', '.join(VARIANTS)}")
    tvariants = [v for v in args.tessera_variants.split(",") if v]
    for v in tvariants:
        if v not in TESSERA_VARIANTS:
            sys.exit(f"unknown tessera variant {v}; known: {', '.join(TESSERA_VARIANTS)}")
    courants = [float(x) for x in args.courant.split(",") if x]
    if not os.path.exists(args.ghia):
        sys.exit(f"{args.ghia}: Ghia's table not found (pass --ghia PATH)")
    ghia = read_ghia(args.ghia)
    if not args.skip_tessera:
        for path, hint in [(TESSERA, "cargo build --release"), (CASE, "cases/cavity.toml is missing")]:
            if not os.path.exists(path):
                sys.exit(f"{path} is missing: {hint} (or --skip-tessera)")
    env = None if args.skip_openfoam else foam_env(args.foam_bashrc)

    # icoFoam's time step. icoFoam treats viscosity implicitly, so the Courant number
    # is its only step limit. Co <= 0.5 is the usual choice (the explicit parts, the lagged
    # flux in the convection term and the non-iterated pressure-velocity coupling, lose
    # accuracy as Co grows); PISO with Euler steps also runs at Co = 1. Co is taken at
    # the lid speed U = 1 (the largest velocity in the domain) on h = 1/128, and dt
    # rounded down so that a whole number of steps reaches the end time (icoFoam then
    # reports max Co ~0.49 or ~0.98). tessera picks its own adaptive step from its
    # numerics.cfl; each tessera configuration is compared with the fastest icoFoam run
    # at its Courant number, and with the fastest icoFoam run overall.
    work = tempfile.mkdtemp(prefix="cavity_vs_icofoam-")
    results = []
    header = (f"{'code':>8} {'ranks':>5} {'variant':>22} {'steps':>7} {'t_end':>7} {'wall s':>8} {'Mcell/s':>9} "
              f"{'max|du|':>9} {'max|dv|':>9} notes")
    print(f"lid-driven cavity Re = 100, {N}x{N} cells, end time {args.end_time:g}; errors vs Ghia et al. (1982)")
    print(header)
    print("-" * len(header))
    try:
        for ranks in ranks_list:
            foam_rows = []
            if not args.skip_openfoam:
                for co in courants:
                    for v in variants:
                        r = run_icofoam(work, env, v, ranks, args, co, ghia)
                        foam_rows.append(r)
                        note = (f"p-its {r['p_iterations_mean']:.1f}, U-its {r['u_iterations_mean']:.1f}, "
                                f"Co {r['courant_max']:.3f}")
                        print(row(r, note), flush=True)
                for co in courants:
                    best = min((r for r in foam_rows if r["courant"] == co), key=lambda r: r["wall_seconds"])
                    best["best_for_courant"] = True
                min(foam_rows, key=lambda r: r["wall_seconds"])["best_for_ranks"] = True
                results += foam_rows
            if not args.skip_tessera:
                for tv in tvariants:
                    t = run_tessera(work, ranks, args, ghia, tv)
                    results.append(t)
                    note = (f"time-step phase {t['time_step_seconds']:.2f} s" if "time_step_seconds" in t else "")
                    if "viscous_iterations_mean" in t:
                        note += f", p-its {t['p_iterations_mean']:.2f}, viscous-its {t['viscous_iterations_mean']:.2f}"
                    if t["status"] != "completed" or abs(t["final_time"] - args.end_time) > 1e-6 * args.end_time:
                        note += f" [status {t['status']}, stopped at t = {t['final_time']:.6g}]"
                    print(row(t, note), flush=True)
                    if not foam_rows:
                        continue
                    same = [r for r in foam_rows if r["courant"] == t["courant"]]
                    overall = min(foam_rows, key=lambda r: r["wall_seconds"])
                    for key, pool in [("same_courant", same), ("overall", [overall])]:
                        if not pool:
                            continue
                        b = min(pool, key=lambda r: r["wall_seconds"])
                        t[f"speedup_vs_icofoam_{key}"] = b["wall_seconds"] / t["wall_seconds"]
                        t[f"icofoam_best_{key}"] = b["variant"]
                        t[f"cell_update_rate_ratio_{key}"] = t["cell_updates_per_second"] / b["cell_updates_per_second"]
                        print(f"{'':>8} {ranks:>5} speed-up icoFoam ({b['variant']}) / tessera ({tv}) wall time: "
                              f"{t[f'speedup_vs_icofoam_{key}']:.2f}x "
                              f"({'same Courant number' if key == 'same_courant' else 'fastest icoFoam run'}); "
                              f"cell-update rate tessera / icoFoam: {t[f'cell_update_rate_ratio_{key}']:.2f}x", flush=True)
        if not args.skip_openfoam:
            pre = [r for r in results if r["code"] == "icoFoam"]
            tools = f"blockMesh {np.mean([r['blockmesh_seconds'] for r in pre]):.2f} s"
            par = [r for r in pre if "decompose_seconds" in r]
            if par:
                tools += (f", decomposePar {np.mean([r['decompose_seconds'] for r in par]):.2f} s, "
                          f"reconstructPar {np.mean([r['reconstruct_seconds'] for r in par]):.2f} s")
            print(f"icoFoam: Courant numbers {courants} at the lid speed, tolerance {args.tolerance:g}; "
                  f"wall = icoFoam process incl. mesh read and final write; not included: {tools}")
        if not args.skip_tessera:
            print("tessera wall = summary.json wall_seconds (whole run incl. output); steps from its adaptive dt")
    finally:
        if args.keep:
            print(f"cases kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        meta = {"cells": [N, N], "nu": NU, "end_time": args.end_time, "icofoam_courant": courants,
                "tessera_variants": {v: TESSERA_VARIANTS[v] for v in tvariants},
                "ranks": ranks_list, "variants": variants, "decomposition": f"simple, split along {args.split}",
                "icofoam_tolerance": args.tolerance,
                "ghia": os.path.abspath(args.ghia)}
        with open(args.json, "w") as fh:
            json.dump({"config": meta, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
