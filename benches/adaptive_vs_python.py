#!/usr/bin/env python3
"""Adaptive sampling efficiency: tessera's Learner1D against python-adaptive's Learner1D.

Both learners sample the same known function with a sharp feature on [-1, 1]; for each
tolerance, the bench counts the completed points (runs) each needs before the
piecewise-linear interpolant of its points is within the tolerance of the function.

  function   peak: f(x) = x + a^2 / (a^2 + (x - x0)^2), a = 0.01, x0 = 0 (python-adaptive's
             tutorial function); also tanh((x - x0)/a) with --functions peak,tanh
  error      of the interpolant against f on 100000 equally spaced points of [-1, 1]
             (both ends included): the maximum, and L1 = 2 * mean |error|
  protocol   batch B: ask B points, tell all B, measure (B = 1, 2); inflight 2: keep 2
             points pending, tell the oldest, measure, ask one more (a study running 2
             at a time, runs finishing in order). Points asked but not yet told are
             pending in both learners (python-adaptive: ask(n) with tell_pending=True)
  learners   tessera: orchestrate::adaptive::Learner1D, through
             target/release/examples/adaptive_bench (one process per protocol);
             python-adaptive: adaptive.Learner1D(f, bounds) with its default loss
             (default_loss: the scaled segment length), driven in this process

Both sides compute the error the same way (tessera's example in Rust, this script with
numpy.interp: the same grid and the same formula). Target: tessera needs no more points
than python-adaptive at every tolerance.

    target/study-bench-venv/bin/python benches/adaptive_vs_python.py [--json FILE]
        [--functions peak] [--protocols batch1,batch2,inflight2] [--budget 20000]

Needs target/release/examples/adaptive_bench (cargo build --release --example
adaptive_bench -p orchestrate) and python-adaptive (bash scripts/setup_study_bench.sh);
`make bench-adaptive` does all of it.
"""

import argparse
import bisect
import collections
import heapq
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "adaptive_bench")
BOUNDS = (-1.0, 1.0)
WIDTH, CENTER = 0.01, 0.0
GRID = 100_000
MAX_TOL = [1e-1, 1e-2, 1e-3, 1e-4]
L1_TOL = [1e-3, 1e-4, 1e-5, 1e-6]
PROTOCOLS = {"batch1": ("batch", 1), "batch2": ("batch", 2), "inflight2": ("inflight", 2)}


def say(msg):
    print(msg, flush=True)


def make_function(name, a, x0):
    if name == "peak":
        return lambda x: x + a * a / (a * a + (x - x0) ** 2)
    if name == "tanh":
        return lambda x: np.tanh((x - x0) / a)
    raise ValueError(name)


class Milestones:
    def __init__(self, tols):
        self.tols, self.at = list(tols), [None] * len(tols)

    def update(self, n, err, loss):
        for k, t in enumerate(self.tols):
            if self.at[k] is None and err <= t:
                self.at[k] = (n, loss)

    def done(self):
        return all(a is not None for a in self.at)

    def json(self):
        return [{"tol": t, "points": a[0] if a else None, "loss": a[1] if a else None} for t, a in zip(self.tols, self.at)]


class Reference:
    """The dense grid, f on it, and the errors of the piecewise-linear interpolant of the
    completed points, kept up to date point by point, as adaptive_bench does: grid point
    x belongs to the interval (x_l, x_r] of consecutive completed points holding it (the
    first grid point to the first interval); a new point splits one interval and only
    the grid points inside it are evaluated again; L1 is a running sum, the maximum a heap
    of (-error, x_l, x_r) whose split intervals are dropped lazily."""

    def __init__(self, f):
        self.xs = np.linspace(BOUNDS[0], BOUNDS[1], GRID)
        self.fs = f(self.xs)
        self.px, self.py = [], []
        self.heap, self.sum = [], 0.0

    def started(self):
        return bool(self.px)

    def _interval(self, x0, y0, x1, y1):
        first = 0 if x0 == self.xs[0] else int(np.searchsorted(self.xs, x0, side="right"))
        last = int(np.searchsorted(self.xs, x1, side="right"))
        if last <= first:
            return 0.0, 0.0
        x = self.xs[first:last]
        e = np.abs(y0 + (y1 - y0) * (x - x0) / (x1 - x0) - self.fs[first:last])
        return float(e.max()), float(e.sum())

    def _add_interval(self, x0, y0, x1, y1):
        m, s = self._interval(x0, y0, x1, y1)
        self.sum += s
        heapq.heappush(self.heap, (-m, x0, x1))

    def start(self, data):
        self.px = sorted(data)
        self.py = [data[x] for x in self.px]
        for i in range(1, len(self.px)):
            self._add_interval(self.px[i - 1], self.py[i - 1], self.px[i], self.py[i])

    def add(self, x, y):
        i = bisect.bisect_left(self.px, x)
        if i == 0 or i == len(self.px) or self.px[i] == x:
            return
        (x0, y0), (x1, y1) = (self.px[i - 1], self.py[i - 1]), (self.px[i], self.py[i])
        self.sum -= self._interval(x0, y0, x1, y1)[1]
        self.px.insert(i, x)
        self.py.insert(i, y)
        self._add_interval(x0, y0, x, y)
        self._add_interval(x, y, x1, y1)

    def errors(self):
        while self.heap:
            m, x0, x1 = self.heap[0]
            i = bisect.bisect_left(self.px, x0)
            if i + 1 < len(self.px) and self.px[i] == x0 and self.px[i + 1] == x1:
                return -m, (BOUNDS[1] - BOUNDS[0]) * self.sum / GRID
            heapq.heappop(self.heap)
        return np.inf, np.inf


def run_python(fname, width, center, mode, batch, budget, loss="default"):
    """python-adaptive's Learner1D through the protocol; the same output as adaptive_bench."""
    import adaptive

    f = make_function(fname, width, center)
    ref = Reference(f)
    if loss == "curvature":
        from adaptive.learner.learner1D import curvature_loss_function
        learner = adaptive.Learner1D(f, bounds=BOUNDS, loss_per_interval=curvature_loss_function())
    else:
        learner = adaptive.Learner1D(f, bounds=BOUNDS)
    max_ms, l1_ms = Milestones(MAX_TOL), Milestones(L1_TOL)
    pending = collections.deque()
    asked = told = 0
    last = (np.inf, np.inf)
    t_learn = t_err = 0.0
    t0 = time.perf_counter()
    finished = False
    while told < budget and not finished:
        want = min(batch, budget - asked) if mode == "batch" else min(batch - len(pending), budget - asked)
        t = time.perf_counter()
        xs, _ = learner.ask(want) if want > 0 else ([], [])
        t_learn += time.perf_counter() - t
        asked += len(xs)
        pending.extend(xs)
        if not pending:
            break
        finishing = len(pending) if mode == "batch" else 1
        for k in range(finishing):
            x = pending.popleft()
            y = float(f(x))
            t = time.perf_counter()
            learner.tell(x, y)
            t_learn += time.perf_counter() - t
            told += 1
            t = time.perf_counter()
            if ref.started():
                ref.add(x, y)
            elif BOUNDS[0] in learner.data and BOUNDS[1] in learner.data:
                ref.start(learner.data)
            if ref.started() and k + 1 == finishing:
                emax, el1 = ref.errors()
                loss = float(learner.loss())
                max_ms.update(told, emax, loss)
                l1_ms.update(told, el1, loss)
                last = (emax, el1)
            t_err += time.perf_counter() - t
            if max_ms.done() and l1_ms.done():
                finished = True
                break
    return {"learner": "python-adaptive", "loss": loss, "function": fname, "width": width, "center": center, "batch": batch, "mode": mode, "max": max_ms.json(),
            "l1": l1_ms.json(), "points": told, "final_max_error": last[0], "final_l1_error": last[1],
            "final_loss": float(learner.loss()), "learner_seconds": t_learn, "error_seconds": t_err,
            "seconds": time.perf_counter() - t0}


def run_tessera(example, fname, width, center, mode, batch, budget):
    cmd = [example, "--function", fname, "--width", repr(width), "--center", repr(center),
           "--bounds", f"{BOUNDS[0]!r},{BOUNDS[1]!r}", "--batch", str(batch), "--mode", mode,
           "--budget", str(budget), "--grid", str(GRID),
           "--max-tol", ",".join(map(repr, MAX_TOL)), "--l1-tol", ",".join(map(repr, L1_TOL))]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def fmt_n(n):
    return "-" if n is None else str(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--functions", default="peak")
    ap.add_argument("--widths", default=repr(WIDTH), help="a, comma-separated")
    ap.add_argument("--centers", default=repr(CENTER), help="x0, comma-separated")
    ap.add_argument("--protocols", default="batch1,batch2,inflight2")
    ap.add_argument("--budget", type=int, default=20000, help="points at most per learner and protocol")
    ap.add_argument("--example", default=EXAMPLE)
    ap.add_argument("--python-loss", choices=["default", "curvature"], default="default",
                    help="python-adaptive's loss: default_loss (the comparison), or curvature_loss_function() "
                         "(for reference: what a curvature-aware loss buys)")
    args = ap.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    for p in protocols:
        if p not in PROTOCOLS:
            ap.error(f"unknown protocol {p!r}: {', '.join(PROTOCOLS)}")
    if not os.path.exists(args.example):
        sys.exit(f"{args.example} is missing: cargo build --release --example adaptive_bench -p orchestrate "
                 "(make bench-adaptive)")
    try:
        import adaptive
    except ImportError:
        sys.exit("python-adaptive is not importable by this python: use the venv of scripts/setup_study_bench.sh "
                 "(make bench-adaptive)")
    versions = {"adaptive": adaptive.__version__, "numpy": np.__version__, "python": platform.python_version()}
    say(f"[setup] python-adaptive {versions['adaptive']}, numpy {versions['numpy']}; error on {GRID} points of "
        f"[{BOUNDS[0]:g}, {BOUNDS[1]:g}]; budget {args.budget} points")

    results = []
    configs = [(fn, float(w), float(c)) for fn in args.functions.split(",") if fn
               for w in args.widths.split(",") if w for c in args.centers.split(",") if c]
    for fname, width, center in configs:
        for proto in protocols:
            mode, batch = PROTOCOLS[proto]
            t = run_tessera(args.example, fname, width, center, mode, batch, args.budget)
            py = run_python(fname, width, center, mode, batch, args.budget, args.python_loss)
            results.append({"function": fname, "width": width, "center": center, "protocol": proto,
                            "tessera": t, "python_adaptive": py})
            say(f"[{fname} a={width:g} x0={center:g} {proto}] tessera {t['points']} points "
                f"({t['learner_seconds']:.2f} s in the learner); python-adaptive {py['points']} points "
                f"({py['learner_seconds']:.2f} s)")

    say("")
    say(f"points needed to reach an interpolation error on [{BOUNDS[0]:g}, {BOUNDS[1]:g}] "
        f"(peak: x + a^2/(a^2 + (x-x0)^2); tanh: tanh((x-x0)/a); '-': not within {args.budget} points)")
    hdr = (f"{'function':8s} {'a':>5s} {'x0':>7s} {'protocol':10s} {'error':5s} {'tolerance':>9s} "
           f"{'tessera':>8s} {'adaptive':>8s} {'ratio':>6s}")
    say(hdr)
    say("-" * len(hdr))
    worse, logs = [], collections.defaultdict(list)
    for r in results:
        for metric in ("max", "l1"):
            for mt, mp in zip(r["tessera"][metric], r["python_adaptive"][metric]):
                nt, npy = mt["points"], mp["points"]
                ratio = (nt / npy) if (nt and npy) else None
                if ratio is not None:
                    logs[r["protocol"]].append(math.log(ratio))
                    logs["all"].append(math.log(ratio))
                if (nt is None and npy is not None) or (ratio is not None and ratio > 1):
                    worse.append(f"{r['function']} a={r['width']:g} x0={r['center']:g} {r['protocol']} {metric} "
                                 f"{mt['tol']:g}: {fmt_n(nt)} vs {fmt_n(npy)}")
                say(f"{r['function']:8s} {r['width']:5g} {r['center']:7g} {r['protocol']:10s} {metric:5s} "
                    f"{mt['tol']:9.0e} {fmt_n(nt):>8s} {fmt_n(npy):>8s} {('%.3f' % ratio) if ratio else '-':>6s}")
    say("")
    summary = {}
    for k, v in logs.items():
        summary[k] = {"geometric_mean_ratio": math.exp(statistics.fmean(v)), "min": math.exp(min(v)),
                      "max": math.exp(max(v)), "count": len(v)}
        say(f"tessera / python-adaptive points, {k}: geometric mean {summary[k]['geometric_mean_ratio']:.3f} "
            f"(min {summary[k]['min']:.3f}, max {summary[k]['max']:.3f}, {len(v)} tolerances)")
    if worse:
        say(f"tessera needs more points than python-adaptive at {len(worse)} of {len(logs['all'])}: " + "; ".join(worse))
    else:
        say("target (tessera needs no more points than python-adaptive at every tolerance): PASS")
    if args.json:
        doc = {"versions": versions, "grid": GRID, "bounds": BOUNDS, "budget": args.budget, "results": results,
               "summary": summary, "worse": worse}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
