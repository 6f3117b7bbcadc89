#!/usr/bin/python3
"""`tessera post` against Dask (+ h5py), side by side, on the same real run.

The data: the lid-driven cavity (cases/cavity.toml) on 1024 x 1024 cells, 2 ranks
(so output.h5 has two rank blocks = two HDF5 chunks per field), 50 steps with a
snapshot every step (51 snapshots of velocity_x and velocity_y, 816 MiB of fields),
written into target/bench-dask/run and reused by later runs of this script when it
still matches (cells, steps, 2 rank blocks, a completed run).

Two pipelines, each run by both sides on that output.h5 (read-only):
  vorticity   cases/pipelines/bench_vorticity.toml -> vort_stats.csv: per snapshot
              step, time, max(abs(vort)), mean(vort), l2(vort) of
              vort = dv/dx - du/dy
  time_stats  cases/pipelines/bench_time_stats.toml -> u_stats.h5: time mean and rms
              of velocity_x and velocity_y over the snapshots
The Dask side is benches/dask_reference.py (da.from_array on the h5py datasets with
lock=True, da.stack over snapshots, da.gradient(edge_order=2), reductions, dask's
threaded scheduler with 2 workers = the cores). It runs in several variants (chunk
shape, one compute vs one per output, how the time statistics are reduced); the
fastest variant of each pipeline is the one compared.

Each command is a separate process run under /usr/bin/time: the time is the wall
time of the whole process (start-up, imports, reading, computing, writing the
output), the memory its peak RSS. Every command runs --repeat times (default 3),
interleaved (tessera, then each Dask variant, then again); the best (minimum) time
counts, with the peak RSS of that same run. The CPU time that other processes used
during each command (from /proc/stat) is reported too; a command during which it
exceeded 10 % of the wall time is measured again (--retries, default 3), and a
warning is printed if a best run still had it: the machine was not idle. output.h5 is read once first, so both
sides read it from the page cache (warm), as they do on every repeat.

Agreement: every column of vort_stats.csv against the Dask variant's, and every
dataset of u_stats.h5, as max |a - b| / max |b| per column / dataset; all must be
<= 1e-10 (the exit code is 1 otherwise, or when a command fails; a missed speed or
memory target is only reported). Targets: >= 5x faster than Dask, <= 0.5x its peak
memory.

    /usr/bin/python3 benches/post_vs_dask.py [--json FILE] [--no-reuse] [--repeat 3]
        [--cases vorticity,time_stats] [--variants NAME,...] [--dask-only]

Needs target/release/tessera (cargo build --release) and Dask
(bash scripts/setup_dask.sh); `make bench-dask` does all of it.
"""

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "target", "release", "tessera")
CASE = os.path.join(ROOT, "cases", "cavity.toml")
DASK_REF = os.path.join(ROOT, "benches", "dask_reference.py")
SCRATCH = os.path.join(ROOT, "target", "bench-dask")
PY = "/usr/bin/python3"
GNU_TIME = "/usr/bin/time"
RANKS = 2
TOL = 1e-10
SPEED_TARGET = 5.0      # dask seconds / tessera seconds >= this
MEMORY_TARGET = 0.5     # tessera peak RSS / dask peak RSS <= this
BUSY = 0.1              # other processes' CPU seconds / wall seconds above this: measure again
MPI_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")

CASES = {
    "vorticity": dict(pipeline="cases/pipelines/bench_vorticity.toml", output="vort_stats.csv",
                      columns=["step", "time", "max(abs(vort))", "mean(vort)", "l2(vort)"]),
    "time_stats": dict(pipeline="cases/pipelines/bench_time_stats.toml", output="u_stats.h5",
                       datasets=["velocity_x_mean", "velocity_x_rms", "velocity_y_mean", "velocity_y_rms"]),
}

# Dask variants per pipeline: name -> options of benches/dask_reference.py.
VARIANTS = {
    "vorticity": {
        "h5chunks-one-compute": ["--chunks", "h5", "--compute", "one"],
        "full-snapshot-one-compute": ["--chunks", "full", "--compute", "one"],
        "h5chunks-per-output": ["--chunks", "h5", "--compute", "per-output"],
    },
    "time_stats": {
        "h5chunks-std": ["--chunks", "h5", "--rms", "std"],
        "h5chunks-twopass": ["--chunks", "h5", "--rms", "twopass"],
        "h5chunks-sumsq": ["--chunks", "h5", "--rms", "sumsq"],
        "h5chunks-rechunk32-std": ["--chunks", "h5", "--rechunk-rows", "32", "--rms", "std"],
        "full-snapshot-rechunk16-std": ["--chunks", "full", "--rechunk-rows", "16", "--rms", "std"],
    },
}


def say(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------- the run

def run_matches(run_dir, cells, steps):
    """Why the existing run cannot be reused, or None when it can."""
    h5 = os.path.join(run_dir, "output.h5")
    try:
        with open(os.path.join(run_dir, "summary.json")) as fh:
            summary = json.load(fh)
        if summary.get("status") != "completed":
            return f"status {summary.get('status')!r}"
        with h5py.File(h5, "r") as f:
            got = [int(c) for c in f["mesh"].attrs["cells"]]
            if got != [cells, cells]:
                return f"cells {got}"
            n = len(f["snapshots"])
            if n != steps + 1:
                return f"{n} snapshots, not {steps + 1}"
            if f["decomposition"]["blocks"].shape[0] != RANKS:
                return f"{f['decomposition']['blocks'].shape[0]} rank blocks"
            last = f["snapshots"][sorted(f["snapshots"])[-1]]
            for fl in ("velocity_x", "velocity_y"):
                if fl not in last:
                    return f"no {fl}"
    except (OSError, KeyError, ValueError) as e:
        return f"unreadable ({e.__class__.__name__}: {e})"
    return None


def ensure_run(run_dir, cells, steps, reuse):
    why = run_matches(run_dir, cells, steps) if reuse else "--no-reuse"
    if why is None:
        say(f"[run] reusing {os.path.relpath(run_dir, ROOT)} ({cells}x{cells}, {steps + 1} snapshots, {RANKS} ranks)")
        return {"reused": True}
    say(f"[run] creating {os.path.relpath(run_dir, ROOT)} ({why}): cavity {cells}x{cells}, {steps} steps, "
        f"a snapshot every step, {RANKS} ranks")
    cmd = [TESSERA, "run", CASE, "--np", str(RANKS),
           "--set", f"mesh.cells=[{cells},{cells}]",
           "--set", f"control.max_steps={steps}",
           "--set", "control.end_time=1e6",
           # no steady-state stop in 50 steps (the change rate is O(1e2) there)
           "--set", "control.steady_tolerance=1e-12",
           "--set", "output.every=1",
           "--set", 'output.fields=["velocity_x","velocity_y"]',
           "--set", "output.checkpoint_every=0",
           "--out", run_dir, "--overwrite", "--quiet"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env={**os.environ, **MPI_ENV}, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"tessera run failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    why = run_matches(run_dir, cells, steps)
    if why is not None:
        sys.exit(f"the new run in {run_dir} does not match: {why}")
    say(f"[run] done in {secs:.1f} s")
    return {"reused": False, "seconds": secs, "command": cmd}


def warm(path):
    """Reads the file once, so that every measured command finds it in the page cache."""
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        while True:
            b = fh.read(1 << 24)
            if not b:
                break
            n += len(b)
    return n, time.perf_counter() - t0


# ----------------------------------------------------------------------------- measuring

def busy_seconds():
    """CPU seconds spent by the whole machine so far (all cores, not idle or iowait)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def measure(cmd, log_dir, env=None):
    """Runs cmd under GNU time: {wall, rss_mib, cpu, other_cpu, rc, stdout}; logs in log_dir.

    other_cpu: CPU seconds the rest of the machine used meanwhile (from /proc/stat, less
    the command's own user + system time): near 0 on an idle machine.
    """
    os.makedirs(log_dir, exist_ok=True)
    tfile = os.path.join(log_dir, "time.txt")
    full = [GNU_TIME, "-f", "%e %M %U %S", "-o", tfile] + cmd
    b0 = busy_seconds()
    t0 = time.perf_counter()
    p = subprocess.run(full, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    busy = busy_seconds() - b0
    with open(os.path.join(log_dir, "stdout.txt"), "w") as fh:
        fh.write(p.stdout)
    with open(os.path.join(log_dir, "stderr.txt"), "w") as fh:
        fh.write(p.stderr)
    rss_kib = cpu = other = None
    try:
        with open(tfile) as fh:
            last = fh.read().strip().splitlines()[-1].split()
        rss_kib = int(last[1])
        cpu = float(last[2]) + float(last[3])
        other = max(busy - cpu, 0.0)
    except (OSError, IndexError, ValueError):
        pass
    return {"wall": wall, "rss_mib": rss_kib / 1024 if rss_kib is not None else None, "cpu": cpu,
            "other_cpu": other, "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


def post_available():
    if not os.path.exists(TESSERA):
        return False, f"{TESSERA} not built"
    p = subprocess.run([TESSERA, "post", "--help"], capture_output=True, text=True, env={**os.environ, **MPI_ENV})
    if p.returncode != 0:
        return False, (p.stderr or p.stdout).strip().splitlines()[0] if (p.stderr or p.stdout) else f"exit {p.returncode}"
    return True, ""


# ----------------------------------------------------------------------------- agreement

def rel_diff(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    d = np.abs(a - b)
    if not np.all(np.isfinite(d)):
        return math.inf
    return float(d.max() / max(float(np.abs(b).max()), 1e-300))


def read_table(path, columns):
    """(header line as written, {column: values}) of a vort_stats.csv."""
    with open(path, newline="") as fh:
        first = fh.readline().rstrip("\r\n")
        fh.seek(0)
        rows = list(csv.reader(fh))
    header, body = rows[0], [r for r in rows[1:] if r]
    if header != columns:
        raise ValueError(f"header {header!r}, expected {columns!r}")
    vals = {c: [float(r[i]) for r in body] for i, c in enumerate(columns)}
    return first, vals


def compare(case, a_dir, b_dir):
    """{name: rel diff} of the output in a_dir against the one in b_dir, plus problems."""
    spec = CASES[case]
    problems = []
    diffs = {}
    pa, pb = os.path.join(a_dir, spec["output"]), os.path.join(b_dir, spec["output"])
    if case == "vorticity":
        try:
            line, a = read_table(pa, spec["columns"])
            expected_line = ",".join(spec["columns"])
            if line != expected_line:
                problems.append(f"{pa}: header line {line!r}, expected {expected_line!r}")
        except (OSError, ValueError, IndexError) as e:
            return {c: math.inf for c in spec["columns"]}, [f"{pa}: {e}"]
        _, b = read_table(pb, spec["columns"])
        if len(a["step"]) != len(b["step"]):
            problems.append(f"{pa}: {len(a['step'])} rows, expected {len(b['step'])}")
        elif a["step"] != b["step"]:
            problems.append(f"{pa}: steps {a['step'][:5]}..., expected {b['step'][:5]}...")
        for c in spec["columns"]:
            diffs[c] = rel_diff(a[c], b[c])
    else:
        try:
            fa = h5py.File(pa, "r")
        except OSError as e:
            return {d: math.inf for d in spec["datasets"]}, [f"{pa}: {e}"]
        with fa, h5py.File(pb, "r") as fb:
            for d in spec["datasets"]:
                if d not in fa:
                    problems.append(f"{pa}: no dataset {d} (has {sorted(fa)})")
                    diffs[d] = math.inf
                    continue
                if fa[d].dtype != np.float64:
                    problems.append(f"{pa}: {d} is {fa[d].dtype}, expected float64")
                if fa[d].shape != fb[d].shape:
                    problems.append(f"{pa}: {d} has shape {fa[d].shape}, expected {fb[d].shape}")
                diffs[d] = rel_diff(fa[d][...], fb[d][...])
    return diffs, problems


# ----------------------------------------------------------------------------- main

def fmt_s(x):
    return "-" if x is None else f"{x:.3f}"


def fmt_m(x):
    return "-" if x is None else f"{x:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write every measurement and check here")
    ap.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=True,
                    help="reuse target/bench-dask/run when it matches (default); --no-reuse re-creates it")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cells", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cases", default="vorticity,time_stats")
    ap.add_argument("--variants", default="", help="comma-separated Dask variant names (default: all)")
    ap.add_argument("--retries", type=int, default=3,
                    help="measure a command again (up to this many times) when other processes used more than "
                         "10%% of its wall time in CPU")
    ap.add_argument("--dask-only", action="store_true", help="measure the Dask side only (no tessera post)")
    args = ap.parse_args()

    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}: {', '.join(CASES)}")
    wanted = {v for v in args.variants.split(",") if v}
    known = {v for c in VARIANTS.values() for v in c}
    if wanted - known:
        ap.error(f"unknown variants {sorted(wanted - known)}: {sorted(known)}")
    for tool in (GNU_TIME, TESSERA):
        if not os.path.exists(tool):
            sys.exit(f"{tool} is missing: `make bench-dask` (bash scripts/setup_dask.sh; cargo build --release)")

    ok, why = (False, "--dask-only") if args.dask_only else post_available()
    if not ok and not args.dask_only:
        sys.exit(f"`tessera post` is not available ({why}); rebuild (cargo build --release), or --dask-only")

    import dask  # noqa: F401 (versions for the record; the measured processes import their own)
    versions = {"dask": dask.__version__, "numpy": np.__version__, "h5py": h5py.__version__,
                "hdf5": h5py.version.hdf5_version, "python": platform.python_version()}
    tv = subprocess.run([TESSERA, "--version"], capture_output=True, text=True, env={**os.environ, **MPI_ENV})
    versions["tessera"] = tv.stdout.strip()
    say(f"[setup] {versions['tessera']}; dask {versions['dask']}, numpy {versions['numpy']}, "
        f"h5py {versions['h5py']} (HDF5 {versions['hdf5']}); {os.cpu_count()} cores; repeat {args.repeat}")
    load = os.getloadavg()
    say(f"[setup] load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        + ("  (recently busy: the 'other' CPU of each command shows whether it was disturbed)" if load[0] > 0.5 else ""))

    run_dir = os.path.join(SCRATCH, "run")
    run_info = ensure_run(run_dir, args.cells, args.steps, args.reuse)
    h5 = os.path.join(run_dir, "output.h5")
    nbytes, wsecs = warm(h5)
    say(f"[run] output.h5: {nbytes / 2**20:.0f} MiB read once to warm the page cache ({wsecs:.2f} s)")
    with h5py.File(h5, "r") as f:
        snaps = sorted(f["snapshots"])
        chunks = f["snapshots"][snaps[-1]]["velocity_x"].chunks
        shape = f["snapshots"][snaps[-1]]["velocity_x"].shape
    say(f"[run] {len(snaps)} snapshots of velocity_x, velocity_y, shape {list(shape)}, HDF5 chunks {list(chunks)}")

    out_root = os.path.join(SCRATCH, "out")
    env_t = {**os.environ, **MPI_ENV}
    results = {}
    failed = []
    for case in cases:
        spec = CASES[case]
        variants = {k: v for k, v in VARIANTS[case].items() if not wanted or k in wanted}
        if not variants:
            variants = dict(list(VARIANTS[case].items())[:1])
        sides = ([] if args.dask_only else ["tessera"]) + [f"dask:{v}" for v in variants]
        runs = {s: [] for s in sides}
        for rep in range(args.repeat):
            for side in sides:
                tag = side.replace(":", "-")
                d = os.path.join(out_root, case, tag, f"rep{rep}")
                logs = os.path.join(out_root, case, tag, f"rep{rep}-logs")
                for attempt in range(1 + args.retries):
                    shutil.rmtree(d, ignore_errors=True)
                    if side == "tessera":
                        cmd = [TESSERA, "post", run_dir, os.path.join(ROOT, spec["pipeline"]), "--out", d,
                               "--no-cache", "--quiet"]
                        r = measure(cmd, logs, env_t)
                    else:
                        cmd = [PY, DASK_REF, case, run_dir, d] + variants[side[5:]]
                        r = measure(cmd, logs)
                        if r["rc"] == 0:
                            try:
                                r["inner"] = json.loads(r["stdout"].strip().splitlines()[-1])
                            except (ValueError, IndexError):
                                r["inner"] = None
                    status = "ok" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
                    busy = r["rc"] == 0 and r["other_cpu"] is not None and r["other_cpu"] > BUSY * r["wall"]
                    if busy and attempt < args.retries:
                        status = "machine busy: measured again"
                    elif busy:
                        status = "ok, but the machine was busy (retries used up)"
                    say(f"[{case}] rep {rep + 1}/{args.repeat} {side:38s} {r['wall']:7.3f} s "
                        f"{fmt_m(r['rss_mib']):>6s} MiB  cpu {fmt_s(r['cpu'])} s  other {fmt_s(r['other_cpu'])} s  {status}")
                    if not busy:
                        break
                r["dir"] = d
                r["command"] = cmd
                r["attempts"] = attempt + 1
                runs[side].append(r)
                if r["rc"] != 0:
                    say("    " + "\n    ".join((r["stderr"] or r["stdout"]).strip().splitlines()[-15:]))
        # best run of each side
        best = {}
        for side, rs in runs.items():
            good = [r for r in rs if r["rc"] == 0]
            if not good:
                failed.append(f"{case}: {side} failed")
                continue
            best[side] = min(good, key=lambda r: r["wall"])
        dask_sides = [s for s in best if s.startswith("dask:")]
        case_res = {"variants": {}, "tessera": None}
        for s in dask_sides:
            b = best[s]
            case_res["variants"][s[5:]] = {
                "best_seconds": b["wall"], "peak_mib": b["rss_mib"], "options": variants[s[5:]],
                "seconds": [r["wall"] for r in runs[s]], "peaks_mib": [r["rss_mib"] for r in runs[s]],
                "cpu_seconds": b["cpu"], "other_cpu_seconds": b["other_cpu"],
                "work_seconds": (b.get("inner") or {}).get("work_seconds"),
                "import_seconds": (b.get("inner") or {}).get("import_seconds")}
        # the Dask variants must agree with each other (the definitions are the same)
        ref_side = min(dask_sides, key=lambda s: best[s]["wall"]) if dask_sides else None
        if ref_side:
            for s in dask_sides:
                if s != ref_side:
                    dd, probs = compare(case, best[s]["dir"], best[ref_side]["dir"])
                    case_res["variants"][s[5:]]["rel_diff_vs_best_variant"] = max(dd.values())
                    if max(dd.values()) > TOL or probs:
                        failed.append(f"{case}: Dask variant {s[5:]} differs from {ref_side[5:]}: {dd} {probs}")
        case_res["best_variant"] = ref_side[5:] if ref_side else None
        if "tessera" in best and ref_side:
            t, d = best["tessera"], best[ref_side]
            diffs, probs = compare(case, t["dir"], d["dir"])
            worst = max(diffs.values())
            if worst > TOL or probs:
                failed.append(f"{case}: tessera post differs from Dask: max rel diff {worst:.3e}; "
                              + "; ".join(probs))
            # and against every other variant, for the record
            all_v = {s[5:]: max(compare(case, t["dir"], best[s]["dir"])[0].values()) for s in dask_sides}
            speed = d["wall"] / t["wall"]
            mem = (t["rss_mib"] / d["rss_mib"]) if (t["rss_mib"] and d["rss_mib"]) else None
            case_res.update({
                "tessera": {"best_seconds": t["wall"], "peak_mib": t["rss_mib"],
                            "seconds": [r["wall"] for r in runs["tessera"]],
                            "peaks_mib": [r["rss_mib"] for r in runs["tessera"]], "command": t["command"],
                            "cpu_seconds": t["cpu"], "other_cpu_seconds": t["other_cpu"]},
                "dask_seconds": d["wall"], "dask_peak_mib": d["rss_mib"],
                "speed_ratio": speed, "memory_ratio": mem,
                "rel_diff": diffs, "max_rel_diff": worst, "problems": probs,
                "max_rel_diff_vs_each_variant": all_v,
                "speed_target_met": speed >= SPEED_TARGET,
                "memory_target_met": mem is not None and mem <= MEMORY_TARGET})
            say(f"[{case}] agreement tessera vs dask:{ref_side[5:]}: "
                + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()) + ("; " + "; ".join(probs) if probs else ""))
        elif ref_side:
            case_res.update({"dask_seconds": best[ref_side]["wall"], "dask_peak_mib": best[ref_side]["rss_mib"]})
        results[case] = case_res

    # ------------------------------------------------------------------ table
    say("")
    say(f"tessera post vs Dask {versions['dask']} (threads, 2 workers), cavity {args.cells}^2, "
        f"{len(snaps)} snapshots, best of {args.repeat}, warm page cache")
    hdr = (f"{'case':11s} {'tessera s':>9s} {'dask s':>8s} {'speed':>7s} {'tessera MiB':>11s} "
           f"{'dask MiB':>8s} {'memory':>7s} {'max rel diff':>12s}  best Dask variant")
    say(hdr)
    say("-" * len(hdr))
    for case, r in results.items():
        t = r.get("tessera") or {}
        say(f"{case:11s} {fmt_s(t.get('best_seconds')):>9s} {fmt_s(r.get('dask_seconds')):>8s} "
            f"{(str(round(r['speed_ratio'], 2)) + 'x') if 'speed_ratio' in r else '-':>7s} "
            f"{fmt_m(t.get('peak_mib')):>11s} {fmt_m(r.get('dask_peak_mib')):>8s} "
            f"{(str(round(r['memory_ratio'], 2)) + 'x') if r.get('memory_ratio') else '-':>7s} "
            f"{('%.2e' % r['max_rel_diff']) if 'max_rel_diff' in r else '-':>12s}  {r.get('best_variant')}")
    say("")
    for case, r in results.items():
        if "speed_ratio" in r:
            say(f"{case}: speed {r['speed_ratio']:.2f}x (target >= {SPEED_TARGET:g}x): "
                f"{'PASS' if r['speed_target_met'] else 'MISS'}; memory "
                + (f"{r['memory_ratio']:.2f}x" if r["memory_ratio"] is not None else "?")
                + f" (target <= {MEMORY_TARGET:g}x): {'PASS' if r['memory_target_met'] else 'MISS'}; "
                f"agreement {r['max_rel_diff']:.2e} (<= {TOL:g}): "
                f"{'PASS' if r['max_rel_diff'] <= TOL and not r['problems'] else 'FAIL'}")
        say(f"{case}: Dask variants (best s / peak MiB / in-process work s): "
            + "; ".join(f"{k} {v['best_seconds']:.3f} / {fmt_m(v['peak_mib'])} / {fmt_s(v['work_seconds'])}"
                        for k, v in r["variants"].items()))

    noisy = []
    for case, r in results.items():
        pairs = ([("tessera", r["tessera"])] if r.get("tessera") else []) + \
            [(f"dask:{k}", v) for k, v in r["variants"].items() if k == r.get("best_variant")]
        for side, v in pairs:
            o = v.get("other_cpu_seconds")
            if o is not None and o > BUSY * v["best_seconds"]:
                noisy.append(f"{case} {side}: {o:.2f} CPU s of other processes in a {v['best_seconds']:.2f} s run")
    if noisy:
        say("WARNING: the machine was not idle during the best runs (times are noisy; rerun):\n  " + "\n  ".join(noisy))

    if args.json:
        doc = {"noisy": noisy, "versions": versions, "cores": os.cpu_count(), "cpu": platform.processor() or _cpu_model(),
               "cells": [args.cells, args.cells], "steps": args.steps, "snapshots": len(snaps),
               "ranks": RANKS, "hdf5_chunks": list(chunks), "output_h5_bytes": nbytes,
               "repeat": args.repeat, "load_average_at_start": load, "page_cache": "warm (output.h5 read once before, and by every repeat)",
               "timing": "wall time of the whole process (start-up, imports, read, compute, write); "
                         "peak RSS by GNU time %M; best of repeats",
               "tolerance": TOL, "targets": {"speed_at_least": SPEED_TARGET, "memory_at_most": MEMORY_TARGET},
               "run": {**run_info, "dir": run_dir}, "cases": results, "failures": failed}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2, default=str)
        say(f"wrote {args.json}")

    if failed:
        say("FAILED:\n  " + "\n  ".join(failed))
        sys.exit(1)
    if args.dask_only:
        say("(Dask side only: no comparison made)")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    main()
