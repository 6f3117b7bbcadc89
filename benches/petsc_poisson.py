#!/usr/bin/python3
"""PETSc (petsc4py) reference for tessera's geometric-multigrid benchmark.

Problem ("PETSc's favourite problem", cf. KSP tutorials ex45 (3D), ex29/ex32 (2D)):

    -laplace(u) = f  on (0,1)^d,  u = 0 on the boundary,
    f = d*pi^2 * prod_a sin(pi x_a),  exact solution u = prod_a sin(pi x_a).

Discretisation: DMDA, vertex-centred, n points per axis INCLUDING the boundary
points (h = 1/(n-1)), 5-point (2D) / 7-point (3D) stencil.

Scaling (the ex45 one, generalised to 2D): every row is multiplied by the cell
volume h^d, i.e.
    2D: diag 2*(hy/hx + hx/hy) (= 4),  x-neighbours -hy/hx, y-neighbours -hx/hy
    3D: diag 2*(hx*hy/hz + hx*hz/hy + hy*hz/hx) (= 6h), neighbours -hx*hy/hz etc.
    b_i = h^d * f(x_i)
This is the finite-element ("h^(d-2)") scaling, which is the one that makes the
rediscretised coarse operators consistent with the Galerkin ones P^T A P for
the DMDA's Q1 interpolation P and restriction P^T.

Boundary rows are identity rows scaled by the interior diagonal (as in ex45)
with rhs 0.  By default (--bc symmetric) the couplings of interior rows to
boundary nodes are dropped as well (symmetric elimination of the homogeneous
Dirichlet values), so the matrix is SPD and CG is formally applicable; --bc ex45
keeps them exactly like ex45 (non-symmetric matrix, same discrete solution).

The KSP gets the DMDA (ksp.setDM) plus setComputeOperators/setComputeRHS, so
PCMG builds its hierarchy from DMDA coarsening and, with -pc_mg_galerkin none,
rediscretises every level through the same callback.

Usage:
    mpirun -n P /usr/bin/python3 benches/petsc_poisson.py --dims 2 --n 1025 \
        [--variant NAME]... --repeat 3 --json [-- extra PETSc options]

Unknown command-line arguments are passed to PETSc (e.g. -log_view, -ksp_view).
"""

import argparse
import ctypes
import json
import math
import os
import resource
import sys
import time

# One thread per rank: the Debian PETSc links OpenBLAS (pthreads) + libgomp.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

# --------------------------------------------------------------------------
# Variants: named sets of PETSc options, applied on top of COMMON_OPTIONS.
# --------------------------------------------------------------------------

# Chebyshev/Jacobi: PETSc's default MG smoother.  The eigenvalue estimate for
# the Chebyshev bounds uses CG (the operator is SPD), PETSc's usual advice.
_CHEB = {
    "mg_levels_ksp_type": "chebyshev",
    "mg_levels_pc_type": "jacobi",
    "mg_levels_esteig_ksp_type": "cg",
}
# Richardson + SOR: with PCSOR's defaults (omega 1, local symmetric sweep) one
# smoothing "step" is one forward + one backward Gauss-Seidel sweep per rank.
_SOR = {
    "mg_levels_ksp_type": "richardson",
    "mg_levels_pc_type": "sor",
}

VARIANTS = {}
for _sm_name, _sm in (("cheb", _CHEB), ("sor", _SOR)):
    for _steps in (1, 2):
        for _coarse in ("redisc", "galerkin"):
            _o = dict(_sm)
            _o["mg_levels_ksp_max_it"] = str(_steps)
            _o["pc_mg_galerkin"] = "none" if _coarse == "redisc" else "both"
            VARIANTS["%s%d-%s" % (_sm_name, _steps, _coarse)] = _o

COMMON_OPTIONS = {
    "ksp_type": "cg",
    "ksp_norm_type": "unpreconditioned",
    "ksp_rtol": "1e-8",
    "ksp_atol": "1e-50",
    "ksp_max_it": "1000",
    "ksp_initial_guess_nonzero": "false",
    "pc_type": "mg",
    "pc_mg_type": "multiplicative",
    "pc_mg_cycle_type": "v",
    # coarse solve: redundant direct LU (PETSc's parallel default, made explicit
    # so it is the same on 1 and on 2 ranks)
    "mg_coarse_ksp_type": "preonly",
    "mg_coarse_pc_type": "redundant",
    "mg_coarse_redundant_pc_type": "lu",
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dims", type=int, choices=(2, 3), default=2)
    p.add_argument("--n", type=int, default=1025,
                   help="grid points per axis incl. boundary (n-1 a power of 2)")
    p.add_argument("--variant", action="append", default=[],
                   help="variant name (repeatable); default: all. "
                        "Known: " + ", ".join(VARIANTS))
    p.add_argument("--repeat", type=int, default=3,
                   help="timed solves after one warm-up solve (best is reported)")
    p.add_argument("--levels", type=int, default=0,
                   help="MG levels (default log2(n-1)-1: coarsest grid 5 points/axis)")
    p.add_argument("--bc", choices=("symmetric", "ex45"), default="symmetric")
    p.add_argument("--json", action="store_true", help="JSON lines on rank 0")
    p.add_argument("--track-malloc", action="store_true",
                   help="enable PETSc malloc tracing (-malloc_debug) and report the "
                        "PetscMallocGetMaximumUsage high-water mark (max over ranks); "
                        "slows setup, use a separate run for timings")
    p.add_argument("--verbose", action="store_true",
                   help="also -ksp_view the first variant's solver, callback counts")
    args, petsc_args = p.parse_known_args()
    petsc_args = [a for a in petsc_args if a != "--"]
    return args, petsc_args


ARGS, PETSC_ARGS = parse_args()
if ARGS.track_malloc:
    PETSC_ARGS = PETSC_ARGS + ["-malloc_debug"]

import petsc4py  # noqa: E402

petsc4py.init([sys.argv[0]] + PETSC_ARGS)
from petsc4py import PETSc  # noqa: E402

COMM = PETSc.COMM_WORLD
RANK = COMM.getRank()
SIZE = COMM.getSize()


def _find_libpetsc():
    """The libpetsc*.so that petsc4py loaded (for the few C calls petsc4py lacks)."""
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1]
                if "/libpetsc" in path and ".so" in path:
                    return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass
    return None


_LIBPETSC = _find_libpetsc()


def _petsc_double(fname, *args):
    """Call a PETSc C function `PetscErrorCode f(..., PetscLogDouble*)`."""
    if _LIBPETSC is None:
        return None
    try:
        f = getattr(_LIBPETSC, fname)
    except AttributeError:
        return None
    d = ctypes.c_double(0.0)
    if f(*args, ctypes.byref(d)) != 0:
        return None
    return d.value


def allreduce_max(value):
    v = PETSc.Vec().createMPI((1, SIZE), comm=COMM)
    v.setValue(RANK, float(value))
    v.assemble()
    m = v.max()[1]
    v.destroy()
    return m


def current_rss_mib():
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------
# Discretisation callbacks
# --------------------------------------------------------------------------

CALLS = {"operators": 0, "rhs": 0, "assembly_s": 0.0}
CHUNK_ROWS = 1 << 17  # rows per assembly slab


def spacing(da):
    return [1.0 / (m - 1) for m in da.getSizes()]


def stencil_weights(h):
    """(diag, [w_axis0, w_axis1, ...]) of h^d * (-laplace_h)."""
    d = len(h)
    vol = float(np.prod(h))
    w = [vol / (h[a] * h[a]) for a in range(d)]
    return 2.0 * sum(w), w


def _axis_view(vec1d, a, d):
    """Reshape a 1-D per-axis array (axis a, x = 0) for broadcasting against
    owned-box arrays in C order (z, y, x)."""
    shape = [1] * d
    shape[d - 1 - a] = vec1d.size
    return vec1d.reshape(shape)


def compute_operators(ksp, J, P):
    """Assemble h^d * (-laplace_h) on the KSP's (level) DMDA, vectorised.

    Rows are inserted in slabs of planes of the slowest axis (bounded numpy
    temporaries, so peak RSS reflects PETSc, not the Python driver).  Entries
    of each row go in increasing global column order (z-, y-, x-, diag, x+,
    y+, z+ is monotone in PETSc's DMDA ordering): with -dm_preallocate_only an
    unsorted row gave a silently wrong SeqAIJ matrix.
    """
    t0 = time.perf_counter()
    da = ksp.getDM()
    sizes = da.getSizes()
    d = len(sizes)
    diag, w = stencil_weights(spacing(da))
    ranges = da.getRanges()         # owned [start, end) per axis (x first)
    granges = da.getGhostRanges()   # ghosted [start, end) per axis
    own = [np.arange(s, e) for (s, e) in ranges]
    stride = [1] * d                # ghosted-local strides (x fastest)
    for a in range(1, d):
        stride[a] = stride[a - 1] * (granges[a - 1][1] - granges[a - 1][0])
    lg = da.getLGMap().getIndices()  # ghosted-local -> global (PETSc ordering)
    nlg = lg.size
    rstart = P.getOwnershipRange()[0]
    top = d - 1                      # slowest axis
    plane = int(np.prod([len(o) for o in own[:top]]))
    chunk_planes = max(1, CHUNK_ROWS // max(plane, 1))

    def inner(a, vals1d):
        return (vals1d > 0) & (vals1d < sizes[a] - 1)

    row0 = 0
    for p0 in range(0, len(own[top]), chunk_planes):
        sub = list(own)
        sub[top] = own[top][p0:p0 + chunk_planes]
        shape = tuple(len(o) for o in sub[::-1])
        gl = 0                       # ghosted-local index of the slab's points
        interior = True
        for a in range(d):
            gl = gl + _axis_view((sub[a] - granges[a][0]) * stride[a], a, d)
            interior = interior & _axis_view(inner(a, sub[a]), a, d)
        gl = np.broadcast_to(gl, shape).ravel()
        interior = np.broadcast_to(interior, shape).ravel()
        m = gl.size
        cols = np.empty((m, 2 * d + 1), dtype=PETSc.IntType)
        vals = np.empty((m, 2 * d + 1), dtype=PETSc.ScalarType)
        k = 0
        for a, off in [(a, -1) for a in reversed(range(d))] + [(None, 0)] + \
                      [(a, +1) for a in range(d)]:
            if a is None:
                cols[:, k] = lg[gl]
                vals[:, k] = diag
            else:
                valid = interior
                if ARGS.bc == "symmetric":  # drop couplings to boundary nodes
                    valid = valid & np.broadcast_to(
                        _axis_view(inner(a, sub[a] + off), a, d), shape).ravel()
                cols[:, k] = np.where(valid, lg[np.clip(gl + off * stride[a], 0, nlg - 1)], -1)
                vals[:, k] = np.where(valid, -w[a], 0.0)
            k += 1
        keep = cols >= 0
        indptr = np.zeros(m + 1, dtype=PETSc.IntType)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        rows = np.arange(rstart + row0, rstart + row0 + m, dtype=PETSc.IntType)
        P.setValuesIJV(indptr, cols[keep], vals[keep], rowmap=rows)
        row0 += m
        del gl, interior, cols, vals, keep, indptr, rows
    P.assemble()
    if J != P:
        J.assemble()
    CALLS["operators"] += 1
    CALLS["assembly_s"] += time.perf_counter() - t0


def _fill_separable(da, arr, factors):
    """arr (flat owned Vec array, PETSc order) = prod_a factors[a] (1-D per
    axis), written in place without full-size temporaries."""
    d = len(factors)
    shape = tuple(f.size for f in factors[::-1])
    out = arr.reshape(shape)
    if d == 2:
        np.multiply(factors[1][:, None], factors[0][None, :], out=out)
    else:
        yx = factors[1][:, None] * factors[0][None, :]
        np.multiply(factors[2][:, None, None], yx[None, :, :], out=out)


def exact_factors(da):
    h = spacing(da)
    return [np.sin(math.pi * np.arange(s, e) * h[a]) for a, (s, e) in enumerate(da.getRanges())]


def compute_rhs(ksp, b):
    """b = h^d f at interior points, 0 on boundary rows."""
    da = ksp.getDM()
    sizes = da.getSizes()
    h = spacing(da)
    d = len(h)
    fac = []
    for a, (s, e) in enumerate(da.getRanges()):
        i = np.arange(s, e)
        fac.append(np.where((i > 0) & (i < sizes[a] - 1), np.sin(math.pi * i * h[a]), 0.0))
    fac[0] = fac[0] * (d * math.pi ** 2 * float(np.prod(h)))
    _fill_separable(da, b.getArray(), fac)
    CALLS["rhs"] += 1


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def default_levels(n):
    k = int(round(math.log2(n - 1)))
    if 2 ** k != n - 1:
        raise SystemExit("--n must be 2^k + 1 (got %d)" % n)
    return max(1, k - 1)  # coarsest grid 2^(k-(k-2)) + 1 = 5 points per axis


def set_options(opts):
    o = PETSc.Options()
    for k, v in opts.items():
        o.setValue(k, v)


def clear_options(opts):
    o = PETSc.Options()
    for k in opts:
        if o.hasName(k):
            o.delValue(k)


def run_variant(name, da, levels):
    opts = dict(COMMON_OPTIONS)
    opts["pc_mg_levels"] = str(levels)
    opts.update(VARIANTS[name])
    if ARGS.verbose and RANK == 0:
        print("# %s options: %s" % (name, " ".join("-%s %s" % kv for kv in opts.items())),
              file=sys.stderr)
    set_options(opts)
    CALLS.update(operators=0, rhs=0, assembly_s=0.0)

    ksp = PETSc.KSP().create(comm=COMM)
    ksp.setDM(da)
    ksp.setComputeOperators(compute_operators)
    ksp.setComputeRHS(compute_rhs)
    ksp.setFromOptions()

    COMM.barrier()
    t0 = time.perf_counter()
    ksp.setUp()  # RHS + fine operator + DMDA hierarchy + all level ops + coarse LU
    COMM.barrier()
    setup_s = time.perf_counter() - t0
    setup_calls = dict(CALLS)

    clear_options(opts)  # everything has been read during setUp
    # Without this, every KSPSolve re-runs the (Python) RHS callback through
    # KSPSetUp, i.e. inside the timed region.  The PCMG hierarchy is already
    # built, so deactivating the DM on the outer KSP changes nothing else.
    ksp.setDMActive(False)
    b = ksp.getRhs()
    A = ksp.getOperators()[0]
    x = da.createGlobalVec()
    bnorm = b.norm()

    times, its, warmup = [], [], None
    for rep in range(ARGS.repeat + 1):  # rep 0 = warm-up
        x.set(0.0)
        COMM.barrier()
        t0 = time.perf_counter()
        ksp.solve(b, x)
        COMM.barrier()
        dt = time.perf_counter() - t0
        reason = ksp.getConvergedReason()
        if reason <= 0 and RANK == 0:
            print("# WARNING %s: KSP diverged, reason %d after %d its"
                  % (name, reason, ksp.getIterationNumber()), file=sys.stderr)
        its.append(ksp.getIterationNumber())
        if rep > 0:
            times.append(dt)
        else:
            warmup = dt
    if len(set(its)) != 1 and RANK == 0:
        print("# WARNING %s: iteration counts differ between repeats: %s" % (name, its),
              file=sys.stderr)

    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)  # r = b - A x
    rel_res = r.norm() / bnorm
    ue = x.duplicate()
    _fill_separable(da, ue.getArray(), exact_factors(da))
    ue.axpy(-1.0, x)
    max_err = ue.norm(PETSc.NormType.NORM_INFINITY)

    rss_peak = allreduce_max(peak_rss_mib())
    rss_cur = allreduce_max(current_rss_mib())
    malloc_max = None
    if ARGS.track_malloc:
        # process-lifetime PetscMalloc high-water mark (PetscMallocPush/Pop-
        # MaximumUsage only work with -log_view_memory in 3.18)
        mm = _petsc_double("PetscMallocGetMaximumUsage")
        malloc_max = allreduce_max(mm / 2**20) if mm is not None else None

    pc = ksp.getPC()
    coarse_pc = pc.getMGCoarseSolve().getPC()
    res = {
        "variant": name,
        "dims": da.getDim(),
        "n": da.getSizes()[0],
        "ranks": SIZE,
        "iterations": its[-1],
        "setup_s": setup_s,
        "solve_s": min(times) if times else float("nan"),
        "rel_res": rel_res,
        "max_err": max_err,
        "rss_mib": rss_peak,
        "unknowns": da.getSizes()[0] ** da.getDim(),
        # extras
        "levels": levels,
        "coarse_n": pc.getMGCoarseSolve().getDM().getSizes()[0]
        if pc.getMGCoarseSolve().getDM() is not None else None,
        "coarse_pc": coarse_pc.getType(),
        "converged_reason": ksp.getConvergedReason(),
        "solve_times_s": times,
        "warmup_s": warmup,
        "assembly_calls": setup_calls["operators"],
        "rhs_calls": setup_calls["rhs"],
        "assembly_s": setup_calls["assembly_s"],
        "rss_cur_mib": rss_cur,
        "petsc_malloc_max_mib": malloc_max,
        "petsc": PETSc.Sys.getVersion(),
    }
    if ARGS.verbose:
        res["callback_calls_after_solves"] = dict(CALLS)
        if name == VERBOSE_FIRST[0]:
            ksp.view()
    for obj in (r, ue, x, ksp):
        obj.destroy()
    del r, ue, x, ksp, b, A, pc, coarse_pc
    # petsc4py >= 3.18 defers destruction of garbage-collected parallel objects
    # to a collective PETSc.garbage_cleanup(); without it every variant leaks
    # its whole hierarchy into the next one.
    if hasattr(PETSc, "garbage_cleanup"):
        PETSc.garbage_cleanup()
    if ARGS.verbose and ARGS.track_malloc and RANK == 0:
        print("# %s: PetscMalloc current after destroy: %.1f MiB" % (
            name, _petsc_double("PetscMallocGetCurrentUsage") / 2**20), file=sys.stderr)
    return res


VERBOSE_FIRST = [None]


def main():
    names = ARGS.variant or list(VARIANTS)
    for nm in names:
        if nm not in VARIANTS:
            raise SystemExit("unknown variant %r; known: %s" % (nm, ", ".join(VARIANTS)))
    VERBOSE_FIRST[0] = names[0]
    n, d = ARGS.n, ARGS.dims
    levels = ARGS.levels or default_levels(n)
    da = PETSc.DMDA().create(dim=d, sizes=(n,) * d, dof=1, stencil_width=1,
                             stencil_type=PETSc.DMDA.StencilType.STAR,
                             boundary_type=(PETSc.DM.BoundaryType.NONE,) * d,
                             comm=COMM, setup=False)
    # Only the entries the callback sets become nonzeros (no explicit zeros for
    # the dropped boundary couplings / the off-diagonal slots of boundary rows).
    PETSc.Options().setValue("dm_preallocate_only", "1")
    da.setFromOptions()
    da.setUp()
    results = []
    if RANK == 0 and not ARGS.json:
        print("# PETSc %s, %dD, n=%d (%d unknowns), %d rank(s), %d MG levels (coarse %d^%d)"
              % (".".join(map(str, PETSc.Sys.getVersion())), d, n, n ** d, SIZE, levels,
                 (n - 1) // 2 ** (levels - 1) + 1, d))
        print("%-16s %5s %9s %9s %10s %10s %9s %9s" % (
            "variant", "its", "setup_s", "solve_s", "rel_res", "max_err", "rss_MiB",
            "cur_MiB"))
    for nm in names:
        res = run_variant(nm, da, levels)
        results.append(res)
        if RANK == 0:
            if ARGS.json:
                print(json.dumps(res), flush=True)
            else:
                print("%-16s %5d %9.3f %9.3f %10.2e %10.3e %9.1f %9.1f" % (
                    nm, res["iterations"], res["setup_s"], res["solve_s"], res["rel_res"],
                    res["max_err"], res["rss_mib"], res["rss_cur_mib"]), flush=True)
    if RANK == 0 and len(results) > 1:
        ok = [r for r in results if r["converged_reason"] > 0] or results
        fs = min(ok, key=lambda r: r["solve_s"])
        ft = min(ok, key=lambda r: r["solve_s"] + r["setup_s"])
        msg = ("# fastest solve: %s (%.3f s, %d its); fastest setup+solve: %s (%.3f s)"
               % (fs["variant"], fs["solve_s"], fs["iterations"], ft["variant"],
                  ft["setup_s"] + ft["solve_s"]))
        print(msg, file=sys.stderr if ARGS.json else sys.stdout, flush=True)
        if len(results) > 1:
            print("# note: rss_mib is the process peak so far (ru_maxrss); run one "
                  "variant per process for per-variant peaks", file=sys.stderr
                  if ARGS.json else sys.stdout, flush=True)
    da.destroy()


if __name__ == "__main__":
    main()
