#!/usr/bin/python3
"""Post-processing of a heat run (the last step of `make demo`, until `tessera post`).

    /usr/bin/python3 scripts/heat_report.py RUN_DIR

Reads RUN_DIR/output.h5 (docs/FORMAT.md) and the resolved case stored in it. For the
sine-mode decay of cases/heat2d.toml (T0 = sin(pi x) sin(pi y) on the unit square,
zero Dirichlet walls, no source) it compares every snapshot with the analytic
solution T = sin(pi x) sin(pi y) exp(-2 pi^2 D t): max T, the analytic max over the
cell centres, the cell-volume-weighted L2 error and the relative L2 error. For any
other case it prints min / max / mean per snapshot. Both write RUN_DIR/report.png:
the final temperature map and the error (or min/max/mean) history.

Needs h5py, numpy and matplotlib (Debian python3-h5py python3-matplotlib, installed
by scripts/setup.sh for /usr/bin/python3).
"""
import math
import os
import re
import signal
import sys
import tomllib

import h5py
import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def norm_expr(s):
    return re.sub(r"\s+", "", str(s))


def zero_expr(s):
    try:
        return float(norm_expr(s)) == 0.0
    except ValueError:
        return False


def is_sine_mode(case, dims):
    """True when the case is the decaying sin(pi x) sin(pi y) mode of cases/heat2d.toml."""
    if dims != 2 or case.get("case", {}).get("model") != "heat":
        return False
    mesh = case.get("mesh", {})
    if [float(v) for v in mesh.get("lower", [])] != [0.0, 0.0] or [float(v) for v in mesh.get("upper", [])] != [1.0, 1.0]:
        return False
    if any(mesh.get("periodic", [False, False])):
        return False
    if not zero_expr(case.get("physics", {}).get("source", "0")):
        return False
    b = case.get("boundary", {})
    for face in ("xlo", "xhi", "ylo", "yhi"):
        f = b.get(face, {})
        if f.get("type") != "dirichlet" or not zero_expr(f.get("value", "")):
            return False
    init = norm_expr(case.get("initial", {}).get("temperature", ""))
    return init in ("sin(pi*x)*sin(pi*y)", "sin(pi*y)*sin(pi*x)")


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    run_dir = argv[1]
    path = os.path.join(run_dir, "output.h5")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        print(f"error: {path}: cannot open ({e})", file=sys.stderr)
        return 1
    with f:
        if f.attrs.get("format") != "tessera":
            print(f"error: {path}: not a tessera output file", file=sys.stderr)
            return 1
        version = f.attrs["format_version"]
        if version.split(".")[0] != "1":
            print(f"error: {path}: format version {version}, this script reads 1.x", file=sys.stderr)
            return 1
        case = tomllib.loads(f.attrs["case"])
        dims = int(f.attrs["dims"][0])
        mesh = f["mesh"]
        cells = [int(c) for c in mesh.attrs["cells"]]
        lower, upper = mesh.attrs["lower"], mesh.attrs["upper"]
        h = mesh.attrs["spacing"]
        coords = [mesh[a][()] for a in "xyz"[:dims]]
        vol = float(np.prod(h))
        names = sorted(f["snapshots"])
        if not names:
            print(f"error: {path}: no snapshots", file=sys.stderr)
            return 1
        first = f["snapshots"][names[0]]
        field = "temperature" if "temperature" in first else sorted(first)[0]
        name = case.get("case", {}).get("name", os.path.basename(os.path.normpath(run_dir)))
        D = float(case.get("physics", {}).get("diffusivity", float("nan")))
        analytic = is_sine_mode(case, dims)

        print(f"# {name}: {'x'.join(map(str, cells))} cells on "
              f"{' x '.join(f'[{lo:g}, {hi:g}]' for lo, hi in zip(lower, upper))}, "
              f"{len(names)} snapshot(s), field {field!r}")
        rows = []
        if analytic:
            X, Y = np.meshgrid(coords[0], coords[1])  # [ny, nx], like the field
            mode = np.sin(np.pi * X) * np.sin(np.pi * Y)
            print(f"# analytic solution T = sin(pi x) sin(pi y) exp(-2 pi^2 D t), D = {D:g}; "
                  f"L2 norms weighted by the cell area {vol:.3e}")
            print(f"{'step':>9} {'time':>12} {'max T':>13} {'analytic max':>13} {'L2 error':>12} {'rel. error':>11}")
        else:
            print("# not the sin(pi x) sin(pi y) decay case: statistics only (mean is cell-volume weighted)")
            print(f"{'step':>9} {'time':>12} {'min T':>13} {'max T':>13} {'mean T':>13}")
        for n in names:
            g = f["snapshots"][n]
            step, t = int(g.attrs["step"][0]), float(g.attrs["time"][0])
            T = g[field][()]
            if analytic:
                Ta = mode * math.exp(-2.0 * math.pi**2 * D * t)
                err = math.sqrt(float(np.sum((T - Ta) ** 2)) * vol)
                ref = math.sqrt(float(np.sum(Ta**2)) * vol)
                rel = err / ref if ref > 0 else float("nan")
                rows.append((step, t, float(T.max()), float(Ta.max()), err, rel))
                print(f"{step:9d} {t:12.6f} {T.max():13.6e} {Ta.max():13.6e} {err:12.4e} {rel:11.3e}")
            else:
                rows.append((step, t, float(T.min()), float(T.max()), float(T.mean())))
                print(f"{step:9d} {t:12.6f} {T.min():13.6e} {T.max():13.6e} {T.mean():13.6e}")
        last_step, last_t = rows[-1][0], rows[-1][1]
        final = f["snapshots"][names[-1]][field][()]
    if analytic:
        print(f"# final: t = {last_t:g}, continuous analytic peak exp(-2 pi^2 D t) = "
              f"{math.exp(-2 * math.pi**2 * D * last_t):.6f}, relative L2 error {rows[-1][5]:.3e}")

    # ---- figure
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    edges = [np.linspace(lower[a], upper[a], cells[a] + 1) for a in range(dims)]
    if dims == 3:
        k = cells[2] // 2
        img = final[k]
        where = f", slice z = {coords[2][k]:.4g}"
    else:
        img = final
        where = ""
    pm = ax0.pcolormesh(edges[0], edges[1], img, cmap="inferno", shading="flat")
    ax0.set_aspect("equal")
    ax0.set_xlabel("x (nondimensional)")
    ax0.set_ylabel("y (nondimensional)")
    ax0.set_title(f"{name}: {field} at t = {last_t:.4g} (step {last_step}){where}")
    cb = fig.colorbar(pm, ax=ax0, shrink=0.9)
    cb.set_label(f"{field} T (nondimensional)")

    times = np.array([r[1] for r in rows])
    if analytic:
        err = np.array([r[4] for r in rows])
        rel = np.array([r[5] for r in rows])
        ax1.plot(times, err, "o-", color="tab:blue", label=r"L2 error $\Vert T - T_{exact}\Vert_2$")
        ax1.set_ylabel("L2 error (cell-area weighted)", color="tab:blue")
        ax1.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax2 = ax1.twinx()
        ax2.plot(times, rel, "s--", color="tab:red", label="relative L2 error")
        ax2.set_ylabel(r"relative L2 error  $\Vert T - T_{exact}\Vert_2 \,/\, \Vert T_{exact}\Vert_2$", color="tab:red")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        lines = ax1.get_lines() + ax2.get_lines()
        ax1.legend(lines, [line.get_label() for line in lines], loc="upper left")
        ax1.set_title(rf"error against $T_{{exact}} = \sin(\pi x)\,\sin(\pi y)\,e^{{-2\pi^2 D t}}$, D = {D:g}", pad=16)
    else:
        ax1.plot(times, [r[3] for r in rows], "o-", label="max")
        ax1.plot(times, [r[4] for r in rows], "s-", label="mean")
        ax1.plot(times, [r[2] for r in rows], "^-", label="min")
        ax1.set_ylabel(f"{field} T (nondimensional)")
        ax1.legend(loc="best")
        ax1.set_title(f"{field} statistics per snapshot", pad=16)
    ax1.set_xlabel("time t (nondimensional)")
    ax1.grid(True, alpha=0.3)
    out = os.path.join(run_dir, "report.png")
    fig.savefig(out, dpi=110)
    print(f"# wrote {out}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    sys.exit(main(sys.argv))
