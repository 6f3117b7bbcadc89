#!/usr/bin/python3
"""The Dask side of benches/post_vs_dask.py: the two benchmark pipelines
(cases/pipelines/bench_vorticity.toml and bench_time_stats.toml) written the way a
Dask user would, on the same RUN_DIR/output.h5 (opened read-only with h5py).

    /usr/bin/python3 benches/dask_reference.py vorticity  RUN_DIR OUT_DIR [options]
    /usr/bin/python3 benches/dask_reference.py time_stats RUN_DIR OUT_DIR [options]
    /usr/bin/python3 benches/dask_reference.py selfcheck  RUN_DIR [--snapshots 2]

vorticity  writes OUT_DIR/vort_stats.csv: columns step, time, max(abs(vort)),
           mean(vort), l2(vort), one row per snapshot in step order, where
           vort = dv/dx - du/dy by da.gradient(..., edge_order=2) (numpy.gradient per
           block, second-order central inside, second-order one-sided at the walls),
           max(abs(f)) = max |f|, mean(f) = sum f / cells, l2(f) = sqrt(sum f^2 dx dy).
time_stats writes OUT_DIR/u_stats.h5: velocity_{x,y}_{mean,rms}, [ny, nx] float64,
           mean = time average over the snapshots, rms = population std (ddof = 0).
selfcheck  compares the Dask graphs with plain numpy on the first snapshots and exits
           non-zero if they differ by more than 1e-13 relative.

Every snapshot field is `da.from_array(h5py_dataset, chunks=..., lock=True)` (lock=True
is what dask picks for h5py datasets by default: HDF5 is not thread-safe), and the
per-snapshot arrays are stacked with `da.stack` along a new time axis. Options:

  --chunks h5|full        h5: the dataset's HDF5 chunk shape (one rank block per chunk,
                          the default); full: the whole [ny, nx] snapshot as one chunk
  --compute one|per-output  one: a single dask.compute of every output (shared reads
                          and shared vorticity); per-output: one compute per output
                          column / dataset (what a notebook often does)
  --workers N             threads of dask's threaded scheduler (default 2 = cores)
  --rechunk-rows N        time_stats: rechunk the stack to [all snapshots, N, nx] before
                          reducing over time (0, the default: one chunk per snapshot)
  --rms std|twopass|sumsq time_stats: x.std(axis=0) (default; dask's chunked moments),
                          sqrt(mean((x - mean)^2)) with the mean shared, or
                          sqrt(mean(x^2) - mean^2) (one pass, loses digits when rms << mean)

Prints one JSON line on stdout: the variant, seconds spent importing, and seconds
from opening the file to the output written (`work_seconds`).
"""

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402

_T_IMPORTED = time.perf_counter()

VORT_COLUMNS = ["step", "time", "max(abs(vort))", "mean(vort)", "l2(vort)"]
STAT_FIELDS = ["velocity_x", "velocity_y"]


def open_run(run_dir):
    """(h5py.File, dx, dy, sorted snapshot names, steps, times) of RUN_DIR/output.h5."""
    f = h5py.File(os.path.join(run_dir, "output.h5"), "r")
    if f.attrs["format"] != "tessera" or f.attrs["format_version"].split(".")[0] != "1":
        sys.exit(f"{run_dir}/output.h5: not a tessera 1.x output file")
    dx, dy = (float(s) for s in f["mesh"].attrs["spacing"][:2])
    names = sorted(f["snapshots"])
    steps = [int(f["snapshots"][n].attrs["step"][0]) for n in names]
    times = [float(f["snapshots"][n].attrs["time"][0]) for n in names]
    return f, dx, dy, names, steps, times


def stacked(f, names, field, chunks_mode):
    """da.stack of one field over the snapshots: shape [S, ny, nx], chunks [1, *chunk]."""
    arrays = []
    for n in names:
        ds = f["snapshots"][n][field]
        chunks = ds.chunks if (chunks_mode == "h5" and ds.chunks) else ds.shape
        arrays.append(da.from_array(ds, chunks=chunks, lock=True))
    return da.stack(arrays, axis=0)


def vorticity_graph(f, dx, dy, names, chunks_mode):
    """Lazy per-snapshot columns (max |w|, mean w, l2 w), each of shape [S]."""
    u = stacked(f, names, "velocity_x", chunks_mode)
    v = stacked(f, names, "velocity_y", chunks_mode)
    # x is the last axis (spacing[0]), y the middle one (spacing[1]).
    w = da.gradient(v, dx, axis=2, edge_order=2) - da.gradient(u, dy, axis=1, edge_order=2)
    return [
        da.abs(w).max(axis=(1, 2)),
        w.mean(axis=(1, 2)),
        da.sqrt((w * w).sum(axis=(1, 2)) * (dx * dy)),
    ]


def time_stats_graph(f, names, chunks_mode, rechunk_rows=0, rms="std"):
    """Lazy {dataset name: [ny, nx] array}: mean and population std over time.

    rechunk_rows > 0 rechunks the [S, ny, nx] stack to chunks [S, rows, nx] (every
    snapshot in one chunk, the HDF5 chunks still read once each), so each reduction
    is a single numpy call per block instead of a tree over S chunks. rms: "std"
    (x.std(axis=0), dask's chunked moments), "twopass" (sqrt(mean((x - mean)^2)),
    the mean shared) or "sumsq" (sqrt(mean(x^2) - mean^2), one pass, less exact).
    """
    out = {}
    for field in STAT_FIELDS:
        x = stacked(f, names, field, chunks_mode)
        if rechunk_rows:
            x = x.rechunk((x.shape[0], rechunk_rows) + x.shape[2:])
        m = x.mean(axis=0)
        out[f"{field}_mean"] = m
        if rms == "std":
            out[f"{field}_rms"] = x.std(axis=0)  # sqrt(mean((x - mean)^2)), ddof = 0
        elif rms == "twopass":
            out[f"{field}_rms"] = da.sqrt(((x - m) ** 2).mean(axis=0))
        else:
            out[f"{field}_rms"] = da.sqrt(da.maximum((x * x).mean(axis=0) - m * m, 0.0))
    return out


def compute(lazy, mode, workers):
    """Computes a list of dask arrays, in one call or one call each."""
    if mode == "one":
        return list(dask.compute(*lazy, scheduler="threads", num_workers=workers))
    return [dask.compute(x, scheduler="threads", num_workers=workers)[0] for x in lazy]


def fmt(x):
    return repr(float(x))


def run_vorticity(args):
    f, dx, dy, names, steps, times = open_run(args.run_dir)
    with f:
        cols = compute(vorticity_graph(f, dx, dy, names, args.chunks), args.compute, args.workers)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "vort_stats.csv"), "w", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(VORT_COLUMNS)
        for i, (s, t) in enumerate(zip(steps, times)):
            wr.writerow([s, fmt(t)] + [fmt(c[i]) for c in cols])
    return len(names)


def run_time_stats(args):
    f, _, _, names, _, _ = open_run(args.run_dir)
    with f:
        lazy = time_stats_graph(f, names, args.chunks, args.rechunk_rows, args.rms)
        values = compute(list(lazy.values()), args.compute, args.workers)
    os.makedirs(args.out_dir, exist_ok=True)
    with h5py.File(os.path.join(args.out_dir, "u_stats.h5"), "w") as out:
        for name, val in zip(lazy, values):
            out.create_dataset(name, data=np.asarray(val, dtype=np.float64))
    return len(names)


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def run_selfcheck(args):
    """Dask graphs against plain numpy (the definitions, written out) on a few snapshots."""
    f, dx, dy, names, steps, _ = open_run(args.run_dir)
    names = names[: args.snapshots] if args.snapshots < len(names) else names
    worst = 0.0
    with f:
        for mode, rows, rms in (("h5", 0, "std"), ("full", 0, "twopass"), ("h5", 16, "std"), ("full", 0, "sumsq")):
            cols = compute(vorticity_graph(f, dx, dy, names, mode), "one", args.workers)
            stats = compute(list(time_stats_graph(f, names, mode, rows, rms).values()), "one", args.workers)
            tag = f"chunks={mode} rechunk_rows={rows} rms={rms}"
            ref_cols = [[], [], []]
            series = {fl: [] for fl in STAT_FIELDS}
            for n in names:
                g = f["snapshots"][n]
                u, v = g["velocity_x"][...], g["velocity_y"][...]
                series["velocity_x"].append(u)
                series["velocity_y"].append(v)
                # the definitions by hand: central inside, (-3 f0 + 4 f1 - f2) / 2h at walls
                dvdx = np.empty_like(v)
                dvdx[:, 1:-1] = (v[:, 2:] - v[:, :-2]) / (2 * dx)
                dvdx[:, 0] = (-3 * v[:, 0] + 4 * v[:, 1] - v[:, 2]) / (2 * dx)
                dvdx[:, -1] = (3 * v[:, -1] - 4 * v[:, -2] + v[:, -3]) / (2 * dx)
                dudy = np.empty_like(u)
                dudy[1:-1] = (u[2:] - u[:-2]) / (2 * dy)
                dudy[0] = (-3 * u[0] + 4 * u[1] - u[2]) / (2 * dy)
                dudy[-1] = (3 * u[-1] - 4 * u[-2] + u[-3]) / (2 * dy)
                w = dvdx - dudy
                assert np.allclose(w, np.gradient(v, dx, axis=1, edge_order=2)
                                   - np.gradient(u, dy, axis=0, edge_order=2), rtol=1e-12, atol=1e-9)
                ref_cols[0].append(np.max(np.abs(w)))
                ref_cols[1].append(np.sum(w) / w.size)
                ref_cols[2].append(np.sqrt(np.sum(w * w) * dx * dy))
            ref_stats = []
            for fl in STAT_FIELDS:
                x = np.stack(series[fl])
                m = x.sum(axis=0) / len(names)
                ref_stats += [m, np.sqrt(((x - m) ** 2).sum(axis=0) / len(names))]
            for label, got, ref in zip(["max|w|", "mean w", "l2 w"], cols, ref_cols):
                d = rel(got, ref)
                worst = max(worst, d)
                print(f"selfcheck {tag}: {label:7s} rel diff {d:.2e}")
            for label, got, ref in zip(["u mean", "u rms", "v mean", "v rms"], stats, ref_stats):
                d = rel(got, ref)
                worst = max(worst, d)
                print(f"selfcheck {tag}: {label:7s} rel diff {d:.2e}")
    print(f"selfcheck: {len(names)} snapshots (steps {steps[0]}..{steps[len(names) - 1]}), worst {worst:.2e}")
    if not worst <= 1e-13:
        sys.exit("selfcheck: Dask and numpy disagree")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pipeline", choices=["vorticity", "time_stats", "selfcheck"])
    ap.add_argument("run_dir")
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--chunks", choices=["h5", "full"], default="h5")
    ap.add_argument("--compute", choices=["one", "per-output"], default="one")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rechunk-rows", type=int, default=0,
                    help="time_stats: rechunk to [all snapshots, ROWS, nx] (0: keep one chunk per snapshot)")
    ap.add_argument("--rms", choices=["std", "twopass", "sumsq"], default="std", help="time_stats: how rms is computed")
    ap.add_argument("--snapshots", type=int, default=2, help="selfcheck: how many snapshots")
    args = ap.parse_args()
    if args.pipeline == "selfcheck":
        return run_selfcheck(args)
    if not args.out_dir:
        ap.error("OUT_DIR is required")
    t0 = time.perf_counter()
    n = (run_vorticity if args.pipeline == "vorticity" else run_time_stats)(args)
    t1 = time.perf_counter()
    print(json.dumps({"pipeline": args.pipeline, "chunks": args.chunks, "compute": args.compute,
                      "rechunk_rows": args.rechunk_rows, "rms": args.rms,
                      "workers": args.workers, "snapshots": n, "dask": dask.__version__,
                      "import_seconds": _T_IMPORTED - _T_START, "work_seconds": t1 - t0}))


if __name__ == "__main__":
    main()
