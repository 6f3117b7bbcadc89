#!/usr/bin/python3
"""Centreline comparison of a lid-driven cavity run with Ghia, Ghia & Shin (1982).

    /usr/bin/python3 scripts/cavity_report.py RUN_DIR [--ghia CSV] [--png FILE] [--json FILE]

Reads the last snapshot of RUN_DIR/output.h5 (docs/FORMAT.md): the cell-centred
velocity_x and velocity_y on the unit square. u on the vertical centreline x = 0.5 and
v on the horizontal centreline y = 0.5 are interpolated linearly between cell centres
(at x = 0.5 with an even cell count: the mean of the two columns either side), with
the wall values between the last centre and the wall (u = 1 on the lid y = 1, zero on
the other walls). Prints max |u - u_Ghia| and max |v - v_Ghia| over Ghia's points
(tables I and II of the paper, in cases/data/ghia1982_re100.csv), writes
RUN_DIR/cavity.png (both profiles with Ghia's points, and the vorticity map) unless
--png says otherwise, and the numbers as JSON with --json.

Exit status 0; 2 for a missing run or a run that is not a 2D cavity.
Needs h5py, numpy and matplotlib (Debian python3-h5py python3-matplotlib).
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GHIA = os.path.join(HERE, "..", "cases", "data", "ghia1982_re100.csv")


def fail(msg):
    print(f"cavity_report: {msg}", file=sys.stderr)
    sys.exit(2)


def read_ghia(path):
    u, v = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("table"):
                continue
            table, coord, value = line.split(",")
            (u if table == "u_vs_y" else v).append((float(coord), float(value)))
    return np.array(sorted(u)), np.array(sorted(v))


def profile(centres, values, lo_wall, hi_wall, at):
    """Linear interpolation of cell-centre values with the wall values at the ends."""
    xs = np.concatenate([[0.0], centres, [1.0]])
    ys = np.concatenate([[lo_wall], values, [hi_wall]])
    return np.interp(at, xs, ys)


def centreline(field, axis):
    """Values on the centreline across `axis` of a [ny, nx] cell field (x = 0.5 for
    axis 1, y = 0.5 for axis 0)."""
    n = field.shape[axis]
    take = (lambda i: field[:, i]) if axis == 1 else (lambda i: field[i, :])
    if n % 2 == 0:
        return 0.5 * (take(n // 2 - 1) + take(n // 2))
    return take(n // 2)


def centreline_errors(u, v, ghia):
    """max |u - u_Ghia| on x = 0.5 and max |v - v_Ghia| on y = 0.5 for cell-centred
    [ny, nx] fields on the unit square, and the two centreline profiles."""
    gu, gv = ghia
    ny, nx = u.shape
    x = (np.arange(nx) + 0.5) / nx
    y = (np.arange(ny) + 0.5) / ny
    u_line = centreline(u, 1)  # u(0.5, y_j)
    v_line = centreline(v, 0)  # v(x_i, 0.5)
    eu = float(np.max(np.abs(profile(y, u_line, 0.0, 1.0, gu[:, 0]) - gu[:, 1])))
    ev = float(np.max(np.abs(profile(x, v_line, 0.0, 0.0, gv[:, 0]) - gv[:, 1])))
    return eu, ev, u_line, v_line


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--ghia", default=DEFAULT_GHIA)
    ap.add_argument("--png", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    h5p = os.path.join(a.run_dir, "output.h5")
    if not os.path.exists(h5p):
        fail(f"{h5p}: no such file (run the case first: tessera run cases/cavity.toml)")
    if not os.path.exists(a.ghia):
        fail(f"{a.ghia}: Ghia's table not found (pass --ghia PATH)")
    with h5py.File(h5p, "r") as f:
        lower, upper = f["mesh"].attrs["lower"], f["mesh"].attrs["upper"]
        if len(lower) != 2 or np.any(np.abs(lower) > 1e-12) or np.any(np.abs(np.asarray(upper) - 1.0) > 1e-12):
            fail(f"{h5p}: not a 2D unit-square run (lower {list(lower)}, upper {list(upper)})")
        steps = sorted(f["snapshots"].keys())
        if not steps:
            fail(f"{h5p}: no snapshots")
        snap = f["snapshots"][steps[-1]]
        if "velocity_x" not in snap or "velocity_y" not in snap:
            fail(f"{h5p}: the last snapshot has no velocity_x / velocity_y (an incompressible run writes them)")
        u = snap["velocity_x"][...]
        v = snap["velocity_y"][...]
        w = snap["vorticity"][...] if "vorticity" in snap else None
        time = float(snap.attrs["time"])
        x = f["mesh"]["x"][...]
        y = f["mesh"]["y"][...]
    gu, gv = read_ghia(a.ghia)
    eu, ev, u_line, v_line = centreline_errors(u, v, (gu, gv))
    ny, nx = u.shape
    print(f"cavity {nx}x{ny} at t = {time:.4g} (step {int(steps[-1])}) vs Ghia et al. (1982), Re = 100:")
    print(f"  max |u - u_Ghia| on x = 0.5: {eu:.4e}  ({len(gu)} points)")
    print(f"  max |v - v_Ghia| on y = 0.5: {ev:.4e}  ({len(gv)} points)")
    result = {"cells": [nx, ny], "time": time, "step": int(steps[-1]), "max_error_u": eu, "max_error_v": ev}
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(result, f, indent=2)
        os.replace(a.json + ".tmp", a.json)

    png = a.png or os.path.join(a.run_dir, "cavity.png")
    fig, ax = plt.subplots(1, 3 if w is not None else 2, figsize=(15 if w is not None else 10, 4.6))
    ax[0].plot(np.concatenate([[0.0], u_line, [1.0]]), np.concatenate([[0.0], y, [1.0]]), "-", label=f"tessera {nx}x{ny}")
    ax[0].plot(gu[:, 1], gu[:, 0], "o", mfc="none", label="Ghia et al. 1982")
    ax[0].set_xlabel("u at x = 0.5")
    ax[0].set_ylabel("y")
    ax[0].set_title(f"max |u - u_Ghia| = {eu:.2e}")
    ax[0].legend()
    ax[1].plot(np.concatenate([[0.0], x, [1.0]]), np.concatenate([[0.0], v_line, [0.0]]), "-", label=f"tessera {nx}x{ny}")
    ax[1].plot(gv[:, 0], gv[:, 1], "o", mfc="none", label="Ghia et al. 1982")
    ax[1].set_xlabel("x")
    ax[1].set_ylabel("v at y = 0.5")
    ax[1].set_title(f"max |v - v_Ghia| = {ev:.2e}")
    ax[1].legend()
    if w is not None:
        lim = np.percentile(np.abs(w), 99)
        im = ax[2].imshow(w, origin="lower", extent=[0, 1, 0, 1], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax[2].streamplot(x, y, u, v, color="k", linewidth=0.5, density=1.2)
        ax[2].set_title(f"vorticity and streamlines, t = {time:.3g}")
        fig.colorbar(im, ax=ax[2])
    fig.tight_layout()
    fig.savefig(png + ".tmp.png", dpi=110)
    os.replace(png + ".tmp.png", png)
    print(f"  plot: {png}")


if __name__ == "__main__":
    main()
