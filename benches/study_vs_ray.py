#!/usr/bin/env python3
"""Orchestration overhead per run: `tessera study run` against Ray, on 1000 trivial runs.

Every side launches the same 1000 commands, 2 at a time (1 rank each, on 2 cores):

    tessera run CASE --set physics.diffusivity=D_i --out SIDE/runs/run_NNNN --overwrite --quiet

with CASE a heat case reduced to nothing (cases/heat2d.toml on 4 x 4 cells, one time
step: about 0.45 s, almost all of it Open MPI's singleton start-up), its output (stdout
and stderr) appended to SIDE/runs/run_NNNN.log, in its own process group, stdin closed.

  baseline     a Python ThreadPoolExecutor of 2 threads, each running the commands with
               subprocess.run: the cost of the runs themselves, nothing else
  tessera      `tessera study run STUDY.toml --dir DIR --quiet` on a sweep of 1000 points
               (ranks_per_run 1, slots 2, max_parallel 2, no quantities pipeline): loads
               the study, checks every point (case loading and decomposition, in
               process), creates the journal, runs, journals every transition (SQLite,
               WAL; synchronous=NORMAL for the local executor) and keeps results.csv at
               most a second behind, as it always does
  ray-tasks    ray.init(num_cpus=2), one @ray.remote(num_cpus=1) task per run that runs
               the command with subprocess.run; all 1000 submitted at once, ray.get
  ray-actors   ray.init(num_cpus=2), ray.util.ActorPool of 2 actors (num_cpus=1), each
               running commands with subprocess.run (map_unordered)

Each side is its own process (python or tessera), timed from launch to exit by this
driver, so Ray's import, init and shutdown count, as they do for a user; the Ray sides
also report their times without import + init. Overhead per run, two estimates:
  wall   (wall(side) - wall(baseline)) / runs, the baseline measured before and after
         the tools (their mean is used; their difference is the noise floor)
  slots  from the runs' own timestamps (each run's log is created just before its spawn,
         its summary.json written at its end): (time to the first start + time after
         the last end) / runs + (idle slot time per run - the baseline's) / slots. It
         leaves out the runs' own slow-down (noise from other jobs on the machine), so
         it is the one compared; the orchestrator's CPU is reported beside it
The faster Ray variant is the one compared. Target: tessera's overhead <= 1/5 of Ray's.

Where tessera's time goes is read from the study directory: the journal's events
(launching / started / done, wall-clock timestamps), study.toml's mtime (written right
after every point was checked) and each run's summary.json mtime (written at the end
of the run), against the baseline's own per-command timings.

    target/study-bench-venv/bin/python benches/study_vs_ray.py [--runs 1000] [--json FILE]
        [--sides baseline,tessera,ray-tasks,ray-actors] [--tessera target/release/tessera]

Needs target/release/tessera (cargo build --release) and Ray
(bash scripts/setup_study_bench.sh); `make bench-ray` does all of it.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "target", "release", "tessera")
BASE_CASE = os.path.join(ROOT, "cases", "heat2d.toml")
SCRATCH = os.path.join(ROOT, "target", "bench-ray")
PARALLEL = 2
TARGET = 5.0  # Ray's overhead / tessera's overhead >= this
MPI_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
# Ray: no dashboard (a web server the other sides do not have), logs kept out of the driver.
RAY_INIT = dict(num_cpus=PARALLEL, include_dashboard=False, log_to_driver=False)


def say(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------- the runs

def diffusivities(n):
    return [repr(0.05 + 0.1 * i / max(n - 1, 1)) for i in range(n)]


def commands(tessera, case, side_dir, n):
    """The n commands of a side: (argv, log path)."""
    out = []
    for i, d in enumerate(diffusivities(n)):
        run_dir = os.path.join(side_dir, "runs", f"run_{i:04d}")
        out.append(([tessera, "run", case, "--set", f"physics.diffusivity={d}", "--out", run_dir,
                     "--overwrite", "--quiet"], run_dir + ".log"))
    return out


def launch(argv, log):
    """One run as the study engine launches it: own process group, log appended, stdin closed."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    t0 = time.time()
    with open(log, "ab") as fh:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, process_group=0).returncode
    return rc, t0, time.time()


def write_inputs(work, n):
    """The trivial case and the 1000-point study file, in `work`."""
    os.makedirs(work, exist_ok=True)
    case = os.path.join(work, "trivial.toml")
    with open(case, "w") as fh:
        fh.write(f'# cases/heat2d.toml reduced to nothing: 4 x 4 cells, one step.\n'
                 f'extends = "{BASE_CASE}"\n[mesh]\ncells = [4, 4]\n[control]\nmax_steps = 1\n')
    study = os.path.join(work, "trivial_study.toml")
    vals = ", ".join(diffusivities(n))
    with open(study, "w") as fh:
        fh.write(f'[study]\nname = "trivial"\ncase = "trivial.toml"\nkind = "sweep"\n'
                 f'ranks_per_run = 1\nslots = {PARALLEL}\nmax_parallel = {PARALLEL}\n'
                 f'[parameters]\n"physics.diffusivity" = {{ values = [{vals}] }}\n')
    return case, study


# ----------------------------------------------------------------------------- sides (child processes)

def tree_own_cpu(root):
    """CPU seconds (utime + stime) of `root` and its live descendants, each its own only
    (not what it reaped: the runs' CPU stays out). For Ray: the driver, GCS, raylet,
    agents and workers, read just before ray.shutdown()."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as fh:
                st = fh.read()
        except OSError:
            continue
        f = st[st.rfind(")") + 2:].split()
        parent[int(e)], cpu[int(e)] = int(f[1]), (int(f[11]) + int(f[12])) / tick
    total = 0.0
    for pid in cpu:
        p = pid
        while p not in (0, 1, root) and p in parent:
            p = parent[p]
        if p == root:
            total += cpu[pid]
    return total


def side_baseline(args):
    from concurrent.futures import ThreadPoolExecutor
    cmds = commands(args.tessera, args.case, args.dir, args.runs)
    t0 = time.time()
    with ThreadPoolExecutor(PARALLEL) as pool:
        res = list(pool.map(lambda c: launch(*c), cmds))
    t1 = time.time()
    own = tree_own_cpu(os.getpid())
    # How long a run goes on after writing summary.json (MPI_Finalize, exit): to read
    # tessera's journal against the same clock.
    tail = []
    for (argv, _), r in zip(cmds, res):
        try:
            tail.append(r[2] - os.stat(os.path.join(argv[argv.index("--out") + 1], "summary.json")).st_mtime)
        except OSError:
            pass
    return {"failed": sum(1 for r in res if r[0] != 0), "t_first_start": min(r[1] for r in res),
            "t_last_end": max(r[2] for r in res), "run_seconds": [r[2] - r[1] for r in res],
            "exit_after_summary": tail, "work_seconds": t1 - t0,
            "orchestrator_cpu": own}


def side_ray(args, variant):
    t0 = time.perf_counter()
    import ray
    t1 = time.perf_counter()
    ray.init(**RAY_INIT)
    t2 = time.perf_counter()
    cmds = commands(args.tessera, args.case, args.dir, args.runs)
    if variant == "tasks":
        run_task = ray.remote(num_cpus=1)(launch)
        res = ray.get([run_task.remote(*c) for c in cmds])
    else:
        from ray.util import ActorPool

        @ray.remote(num_cpus=1)
        class Runner:
            def run(self, argv, log):
                return launch(argv, log)

        pool = ActorPool([Runner.remote() for _ in range(PARALLEL)])
        res = list(pool.map_unordered(lambda a, c: a.run.remote(*c), cmds))
    t3 = time.perf_counter()
    ray_cpu = tree_own_cpu(os.getpid())
    ray.shutdown()
    t4 = time.perf_counter()
    return {"failed": sum(1 for r in res if r[0] != 0), "t_first_start": min(r[1] for r in res),
            "t_last_end": max(r[2] for r in res), "import_seconds": t1 - t0, "init_seconds": t2 - t1,
            "work_seconds": t3 - t2, "shutdown_seconds": t4 - t3, "ray": ray.__version__,
            "orchestrator_cpu": ray_cpu}


def run_side_main(args):
    if args.side == "baseline":
        out = side_baseline(args)
    else:
        out = side_ray(args, args.side.split("-", 1)[1])
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- the driver

def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def busy_seconds():
    """CPU seconds spent by the whole machine so far (all cores, not idle or iowait)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu(pid):
    """utime + stime of process `pid` itself (not its children), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            s = fh.read()
        f = s[s.rfind(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def measure(side, args, case, study, side_dir):
    shutil.rmtree(side_dir, ignore_errors=True)
    env = {**os.environ, **MPI_ENV}
    if side == "tessera":
        argv = [args.tessera, "study", "run", study, "--dir", side_dir, "--quiet"]
    else:
        argv = [sys.executable, os.path.abspath(__file__), "--side", side, "--runs", str(args.runs),
                "--tessera", args.tessera, "--case", case, "--dir", side_dir]
    c0, b0 = children_cpu(), busy_seconds()
    t_start = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    # The orchestrator's own CPU (not its children's), sampled until it exits.
    own = [None]

    def sample():
        while p.poll() is None:
            v = own_cpu(p.pid)
            own[0] = v if v is not None else own[0]
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = p.communicate()
    t_end = time.time()
    sampler.join()
    own = own[0]
    r = {"side": side, "wall": t_end - t_start, "t_start": t_start, "t_end": t_end, "rc": p.returncode,
         "tree_cpu": children_cpu() - c0, "machine_cpu": busy_seconds() - b0, "own_cpu": own,
         "command": argv}
    if p.returncode != 0 and not (side == "tessera" and p.returncode == 3):
        r["error"] = (err or out)[-3000:]
        return r
    r.update(file_timeline(side_dir, args.runs, t_start, t_end))
    if side == "tessera":
        r.update(tessera_timeline(side_dir, t_start, t_end))
        r["orchestrator_cpu"] = own
    else:
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        r.update(json.loads(line[-1][7:]) if line else {"error": "no RESULT line"})
    return r


def file_timeline(d, n, t_start, t_end):
    """The same timestamps for every side: each run's log is created just before its
    process is spawned (its mtime, as the runs print nothing), its summary.json written at
    the end of the run (about 60 ms before the process exits). With PARALLEL slots, the
    k-th run to end frees the slot that the (k + PARALLEL)-th run to start takes: the
    difference is how long the slot stayed empty (the run's exit, then the
    orchestrator's turnaround)."""
    starts, ends, failed, busy = [], [], [], 0.0
    for i in range(n):
        base = os.path.join(d, "runs", f"run_{i:04d}")
        try:
            starts.append(os.stat(base + ".log").st_mtime)
        except OSError:
            failed.append(i)
            continue
        try:
            ends.append(os.stat(os.path.join(base, "summary.json")).st_mtime)
        except OSError:
            # A run that failed before writing its summary (Open MPI's singleton start-up
            # losing a race on its session directory): it ended when it last wrote its log.
            failed.append(i)
            ends.append(os.stat(base + ".log").st_mtime)
        busy += ends[-1] - starts[-1]
        try:
            with open(os.path.join(base, "summary.json")) as fh:
                if json.load(fh).get("status") != "completed":
                    failed.append(i)
        except (OSError, ValueError):
            pass
    if not ends:
        return {"file_failed": sorted(set(failed))}
    # Slot time from the first start to the last end is either busy (a run between its
    # log and its summary.json) or idle: idle = slots * span - busy, without pairing runs
    # to slots (a retried run's first attempt is the only thing it misses).
    span = max(ends) - min(starts)
    starts.sort()
    ends.sort()
    gaps = [starts[k + PARALLEL] - ends[k] for k in range(min(len(starts) - PARALLEL, len(ends)))]
    return {"file_failed": sorted(set(failed)), "first_start": starts[0] - t_start,
            "after_last_summary": t_end - ends[-1], "span": span, "busy": busy,
            "idle_per_run": (PARALLEL * span - busy) / n, "run_seconds_files": busy / len(ends),
            "slot_gaps": gaps}


def tessera_timeline(d, t_start, t_end):
    """Where `tessera study run` spent its time, from its study directory."""
    con = sqlite3.connect(os.path.join(d, "journal.sqlite"))
    ev = con.execute("SELECT run, at, event FROM events ORDER BY seq").fetchall()
    states = con.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
    con.close()
    launching = {run: at for run, at, e in ev if e == "launching"}
    started = {run: at for run, at, e in ev if e == "started"}
    done = {run: at for run, at, e in ev if e in ("done", "failed")}
    summary_mtime = {}
    for run in done:
        try:
            summary_mtime[run] = os.stat(os.path.join(d, "runs", f"run_{run:04d}", "summary.json")).st_mtime
        except OSError:
            pass
    checked = os.stat(os.path.join(d, "study.toml")).st_mtime
    first_launch, last_done = min(launching.values()), max(done.values())
    # The k-th launch after the first PARALLEL fills the slot freed by the k-th run to end.
    ends = sorted(summary_mtime.values())
    launches = sorted(launching.values())
    refill = [launches[k + PARALLEL] - ends[k] for k in range(len(launches) - PARALLEL)]
    return {
        "states": dict(states),
        "events": len(ev),
        "t_checked": checked, "t_first_launch": first_launch, "t_last_done": last_done,
        "startup_check_seconds": checked - t_start,
        "startup_journal_seconds": first_launch - checked,
        "tail_seconds": t_end - last_done,
        "runs_span_seconds": last_done - first_launch,
        "launch_to_started": [started[r] - launching[r] for r in launching if r in started],
        "summary_to_done": [done[r] - summary_mtime[r] for r in done if r in summary_mtime],
        "summary_to_refill": refill,
    }


def stats(xs):
    xs = sorted(xs)
    if not xs:
        return {}
    return {"mean": statistics.fmean(xs), "median": xs[len(xs) // 2], "p90": xs[int(0.9 * (len(xs) - 1))],
            "max": xs[-1]}


def ms(x):
    return "-" if x is None else f"{1e3 * x:.2f}"


def main():
    global SCRATCH
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--sides", default="baseline,tessera,ray-tasks,ray-actors,baseline",
                    help="in this order (baseline twice: before and after, the mean is used)")
    ap.add_argument("--tessera", default=TESSERA)
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (under --scratch)")
    ap.add_argument("--scratch", default=SCRATCH, help="work directory (default target/bench-ray)")
    # internal: one side in a child process
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.tessera = os.path.abspath(args.tessera)
    SCRATCH = os.path.abspath(args.scratch)
    if args.side:
        return run_side_main(args)

    sides = [s for s in args.sides.split(",") if s]
    for s in sides:
        if s not in ("baseline", "tessera", "ray-tasks", "ray-actors"):
            ap.error(f"unknown side {s!r}")
    if not os.path.exists(args.tessera):
        sys.exit(f"{args.tessera} is missing: `make bench-ray` (cargo build --release)")
    versions = {"python": platform.python_version()}
    tv = subprocess.run([args.tessera, "--version"], capture_output=True, text=True)
    versions["tessera"] = tv.stdout.strip()
    if any(s.startswith("ray") for s in sides):
        try:
            import ray
            versions["ray"] = ray.__version__
        except ImportError:
            sys.exit("ray is not importable by this python: run it with the venv of scripts/setup_study_bench.sh "
                     "(make bench-ray)")
    load = os.getloadavg()
    say(f"[setup] {versions.get('tessera')}; ray {versions.get('ray', '-')}; python {versions['python']}; "
        f"{os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    work = os.path.join(SCRATCH, "inputs")
    case, study = write_inputs(work, args.runs)
    one = subprocess.run([args.tessera, "run", case, "--out", os.path.join(SCRATCH, "probe"), "--overwrite", "--quiet"],
                         env={**os.environ, **MPI_ENV}, capture_output=True, text=True)
    if one.returncode != 0:
        sys.exit(f"the trivial case does not run:\n{one.stderr[-2000:]}")
    say(f"[setup] {args.runs} runs of {os.path.relpath(case, ROOT)} (4x4 cells, 1 step), {PARALLEL} at a time")

    results = []
    for k, side in enumerate(sides):
        side_dir = os.path.join(SCRATCH, f"{side}-{k}")
        r = measure(side, args, case, study, side_dir)
        results.append(r)
        extra = ""
        if not r.get("error") and side.startswith("ray"):
            extra = (f"  (import {r['import_seconds']:.2f} s, init {r['init_seconds']:.2f} s, "
                     f"runs {r['work_seconds']:.2f} s, shutdown {r['shutdown_seconds']:.2f} s)")
        elif not r.get("error") and side == "tessera":
            extra = (f"  (load + check {r['startup_check_seconds']:.2f} s, journal {r['startup_journal_seconds']:.2f} s, "
                     f"runs {r['runs_span_seconds']:.2f} s, tail {r['tail_seconds']:.2f} s; {r['events']} events)")
        nf = len(r.get("file_failed", []))
        status = "FAILED: " + r["error"] if r.get("error") else \
            (f"ok" if nf == 0 else f"ok, {nf} runs failed (logs in target/bench-ray/failed-logs)")
        say(f"[{side}] {r['wall']:8.2f} s wall, orchestrator CPU {r.get('orchestrator_cpu') or 0:6.2f} s, "
            f"machine CPU {r['machine_cpu']:7.2f} s  {status}{extra}")
        for i in r.get("file_failed", []):
            keep = os.path.join(SCRATCH, "failed-logs", f"{side}-{k}")
            os.makedirs(keep, exist_ok=True)
            for src in (os.path.join(side_dir, "runs", f"run_{i:04d}.log"),
                        os.path.join(side_dir, "runs", f"run_{i:04d}", "summary.json")):
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(keep, f"run_{i:04d}-" + os.path.basename(src)))
        if not args.keep:
            shutil.rmtree(side_dir, ignore_errors=True)
        with open(os.path.join(SCRATCH, "measurements.jsonl"), "a") as fh:  # partial results survive
            fh.write(json.dumps({k: v for k, v in r.items() if not isinstance(v, list) or len(v) < 50},
                                default=str) + "\n")

    ok = [r for r in results if not r.get("error") and r.get("slot_gaps")]
    base = [r for r in ok if r["side"] == "baseline"]
    if not base:
        sys.exit("no successful baseline")
    n = args.runs
    wb = statistics.fmean(r["wall"] for r in base)
    gb = statistics.fmean(r["idle_per_run"] for r in base)
    rb = statistics.fmean(r["run_seconds_files"] for r in base)
    fb = statistics.fmean(r["first_start"] for r in base)
    lb = statistics.fmean(r["after_last_summary"] for r in base)
    cb = statistics.fmean(r["orchestrator_cpu"] or 0 for r in base)
    noise = (max(r["wall"] for r in base) - min(r["wall"] for r in base)) / n
    summary = {"baseline_wall": wb, "baseline_walls": [r["wall"] for r in base], "noise_per_run": noise,
               "baseline_slot_gap": gb}
    say("")
    say(f"orchestration overhead per run, {n} trivial runs, {PARALLEL} at a time; baseline: ThreadPool of "
        f"{PARALLEL}, {wb:.2f} s (mean of {len(base)}, which differ by {ms(noise)} ms/run), slot idle "
        f"{ms(gb)} ms/run, runs {1e3 * rb:.1f} ms")
    say("  wall: (wall - baseline wall) / runs. slots: the same from the runs' own timestamps (log created = "
        "start, summary.json = end): (start-up + tail) / runs + (slot idle - baseline's) / slots, which leaves out "
        "how much slower the runs themselves were (noise from the rest of the machine, or the orchestrator's CPU)")
    hdr = (f"{'side':11s} {'wall s':>8s} {'failed':>6s} {'wall ms/run':>12s} {'slots ms/run':>13s} "
           f"{'w/o import+init':>15s} {'start-up s':>10s} {'idle ms/run':>11s} {'tail s':>7s} {'run ms':>7s} "
           f"{'CPU ms/run':>10s}")
    say(hdr)
    say("-" * len(hdr))
    per = {}
    for r in ok:
        if r["side"] == "baseline":
            continue
        gap = r["idle_per_run"]
        wall_ov = (r["wall"] - wb) / n
        slots_ov = (r["first_start"] - fb + r["after_last_summary"] - lb) / n + (gap - gb) / PARALLEL
        init = r.get("import_seconds", 0) + r.get("init_seconds", 0)
        no_init = (slots_ov - init / n) if r["side"].startswith("ray") else None
        cpu = ((r.get("orchestrator_cpu") or 0) - cb) / n
        per.setdefault(r["side"], []).append({
            "wall": r["wall"], "wall_overhead": wall_ov, "slots_overhead": slots_ov, "slots_overhead_without_init": no_init,
            "first_start": r["first_start"], "idle_per_run": gap, "run_seconds": r["run_seconds_files"],
            "after_last_summary": r["after_last_summary"], "orchestrator_cpu_per_run": cpu,
            "failed_runs": len(r.get("file_failed", []))})
        say(f"{r['side']:11s} {r['wall']:8.2f} {len(r.get('file_failed', [])):6d} {ms(wall_ov):>12s} {ms(slots_ov):>13s} "
            f"{ms(no_init):>15s} {r['first_start']:10.2f} {ms(gap):>11s} {r['after_last_summary']:7.2f} "
            f"{1e3 * r['run_seconds_files']:7.1f} {ms(cpu):>10s}")
    summary["per_side"] = per
    best = {s: min(v, key=lambda x: x["slots_overhead"]) for s, v in per.items()}
    rays = [s for s in best if s.startswith("ray")]
    if "tessera" in best and rays:
        best_ray = min(rays, key=lambda s: best[s]["slots_overhead"])
        for key, label in (("slots_overhead", "slots"), ("wall_overhead", "wall")):
            t, ry = best["tessera"][key], best[best_ray][key]
            ratio = t / ry if ry > 0 else float("inf")
            summary[f"ratio_{label}"] = ratio
            say(f"tessera / Ray ({best_ray}) overhead ({label}): {ratio:.2f} (target <= {1 / TARGET:.2f}): "
                f"{'PASS' if ratio <= 1 / TARGET else 'MISS'}")
        ry2 = best[best_ray]["slots_overhead_without_init"]
        if ry2 and ry2 > 0:
            summary["ratio_slots_without_ray_init"] = best["tessera"]["slots_overhead"] / ry2
            say(f"tessera / Ray without Ray's import + init (slots): {best['tessera']['slots_overhead'] / ry2:.2f}")
        summary["best_ray"] = best_ray

    tr = next((r for r in ok if r["side"] == "tessera"), None)
    if tr:
        lt, sd, rf = stats(tr["launch_to_started"]), stats(tr["summary_to_done"]), stats(tr["summary_to_refill"])
        tail = statistics.fmean(base[0]["exit_after_summary"])
        say("")
        say("where tessera's overhead goes (journal events, study.toml and summary.json mtimes):")
        say(f"  before the first launch: {tr['startup_check_seconds']:.2f} s loading the study + checking "
            f"every point ({ms(tr['startup_check_seconds'] / n)} ms/run), then {tr['startup_journal_seconds']:.3f} s "
            f"creating the journal and the first results.csv")
        say(f"  per run: slot idle {ms(tr['idle_per_run'])} ms/run (baseline {ms(gb)}: the runs go on {ms(tail)} ms "
            f"after their summary.json): {ms((tr['idle_per_run'] - gb) / PARALLEL)} ms/run of the overhead: the "
            f"'done' and 'launching' commits and the spawn between a run's exit and the next start")
        say(f"  launching -> started events (commit, spawn, start time, next commit queued): mean {ms(lt.get('mean'))} ms, "
            f"p90 {ms(lt.get('p90'))} ms; summary.json -> 'done' event: mean {ms(sd.get('mean'))} ms")
        say(f"  after the last run: {tr['tail_seconds']:.3f} s; orchestrator's own CPU {tr['orchestrator_cpu'] or 0:.2f} s")
        summary["tessera_breakdown"] = {
            "startup_check_seconds": tr["startup_check_seconds"],
            "startup_journal_seconds": tr["startup_journal_seconds"],
            "tail_seconds": tr["tail_seconds"], "runs_span_seconds": tr["runs_span_seconds"],
            "launch_to_started": lt, "summary_to_done": sd, "summary_to_launching": rf,
            "baseline_exit_after_summary": tail}

    if args.json:
        for r in results:  # keep the JSON small: distributions instead of every value
            for k in ("slot_gaps", "launch_to_started", "summary_to_done", "summary_to_refill", "run_seconds",
                      "exit_after_summary"):
                if k in r:
                    r[k] = stats(r[k])
        doc = {"versions": versions, "runs": n, "parallel": PARALLEL, "load_average_at_start": load,
               "cores": os.cpu_count(), "case": "cases/heat2d.toml, mesh.cells=[4,4], control.max_steps=1",
               "summary": summary, "measurements": results}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1, default=str)
        say(f"wrote {args.json}")
    if len(ok) != len(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
