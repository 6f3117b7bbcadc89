#!/usr/bin/python3
"""Strict validator of a tessera RUN_DIR against docs/FORMAT.md (format 1.0).

    /usr/bin/python3 tests/check_format.py RUN_DIR
    /usr/bin/python3 tests/check_format.py --compare RUN_DIR_A RUN_DIR_B

The first form checks output.h5, every checkpoint, output.xdmf, monitor.csv,
summary.json and case.toml, prints one OK line and exits 0, or prints every
violation (what and where) and exits 1.

The second form checks that two runs of the same case (typically on different rank
counts) wrote bit-identical snapshots (every snapshot of output.h5 and the final
checkpoint), same steps and same times; exits 0 or 1 the same way.

Needs h5py and numpy (Debian: python3-h5py, only for /usr/bin/python3).
"""
import csv
import json
import math
import os
import re
import sys
import tomllib
import xml.etree.ElementTree as ET

import h5py
import numpy as np

KNOWN_MAJOR = 1
MAX_REPORTED = 60

# The snapshot fields each model may write (its `[output] fields`), in the order of
# its default; the names in FIELDS_3D_ONLY exist only on a 3D mesh.
MODEL_FIELDS = {
    "heat": ["temperature"],
    "poisson": ["phi"],
    "incompressible": ["velocity_x", "velocity_y", "velocity_z", "pressure", "vorticity",
                       "vorticity_x", "vorticity_y", "vorticity_z"],
}
# `[output] fields` when the case does not set it.
DEFAULT_FIELDS = {
    "heat": ["temperature"],
    "poisson": ["phi"],
    "incompressible": ["velocity_x", "velocity_y", "velocity_z", "pressure", "vorticity"],
}
# What a checkpoint's snapshot holds: the solver's state, whatever `[output] fields` says.
CHECKPOINT_FIELDS = {
    "heat": ["temperature"],
    "poisson": ["phi"],
    "incompressible": ["velocity_x_face", "velocity_y_face", "velocity_z_face", "pressure"],
}
FIELDS_3D_ONLY = {"velocity_z", "vorticity_x", "vorticity_y", "vorticity_z", "velocity_z_face"}
# monitor.csv columns of model incompressible after step, time, dt (then the probes, then nothing).
FLOW_MONITOR = ["cfl", "kinetic_energy", "max_velocity", "max_divergence", "pressure_iterations",
                "pressure_residual", "change_rate"]
# linear_solves[].report of a poisson summary.json (docs/FORMAT.md).
REPORT_KEYS = ["method", "precond", "reason", "iterations", "rhs_norm", "final_residual", "history",
               "reductions", "messages", "bytes", "seconds", "projected_mean"]
REASONS = ["converged_rtol", "converged_atol", "max_iterations", "diverged_nan", "indefinite", "breakdown"]
METHODS = ["cg", "cg1", "fcg", "bicgstab", "mg"]
PRECONDS = ["mg", "jacobi", "none"]


def for_dims(names, dims):
    return [n for n in names if dims == 3 or n not in FIELDS_3D_ONLY]


def known(model):
    """`model`, or heat for an unknown model (that is reported elsewhere)."""
    return model if model in MODEL_FIELDS else "heat"


def model_fields(model, dims):
    """The snapshot fields `model` may write on a `dims`-D mesh."""
    return for_dims(MODEL_FIELDS[known(model)], dims)


def default_fields(model, dims):
    return for_dims(DEFAULT_FIELDS[known(model)], dims)


def checkpoint_fields(model, dims):
    """The datasets of a checkpoint's snapshot group for `model` on a `dims`-D mesh."""
    return for_dims(CHECKPOINT_FIELDS[known(model)], dims)


class Checker:
    def __init__(self):
        self.errors = []

    def fail(self, where, what):
        self.errors.append(f"{where}: {what}")

    def check(self, cond, where, what):
        if not cond:
            self.fail(where, what)
        return cond


# ----------------------------------------------------------------- HDF5 helpers

def attr_info(obj, name):
    """(value, dtype, shape) of attribute `name` of `obj`."""
    aid = obj.attrs.get_id(name)
    return obj.attrs[name], aid.dtype, aid.shape


def is_utf8_vlen_str(dtype):
    info = h5py.check_string_dtype(dtype)
    return info is not None and info.length is None and info.encoding == "utf-8"


def get_str_attr(c, obj, name, where):
    if name not in obj.attrs:
        c.fail(where, f"missing attribute `{name}`")
        return None
    v, dt, shape = attr_info(obj, name)
    if not c.check(is_utf8_vlen_str(dt) and shape == (), where, f"attribute `{name}` must be a scalar variable-length UTF-8 string, is dtype {dt} shape {shape}"):
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    return v


def get_arr_attr(c, obj, name, where, kind, length):
    """A 1-D attribute of `kind` ('u8' or 'f8') and `length` entries, or None."""
    if name not in obj.attrs:
        c.fail(where, f"missing attribute `{name}`")
        return None
    v, dt, shape = attr_info(obj, name)
    want = np.dtype("<u8") if kind == "u8" else np.dtype("<f8")
    ok = c.check(dt == want, where, f"attribute `{name}` has dtype {dt}, expected {want}")
    ok = c.check(shape == (length,), where, f"attribute `{name}` has shape {shape}, expected ({length},)") and ok
    return np.asarray(v) if ok else None


def exact_members(c, group, expected, where, allow_extra=False):
    names = set(group.keys())
    missing = sorted(set(expected) - names)
    extra = sorted(names - set(expected))
    c.check(not missing, where, f"missing member(s) {missing}")
    if not allow_extra:
        c.check(not extra, where, f"unexpected member(s) {extra} (not in format 1.0)")
    return not missing


def exact_attrs(c, obj, expected, where):
    names = set(obj.attrs.keys())
    missing = sorted(set(expected) - names)
    extra = sorted(names - set(expected))
    c.check(not missing, where, f"missing attribute(s) {missing}")
    c.check(not extra, where, f"unexpected attribute(s) {extra} (not in format 1.0)")


def split_start(n, p, i):
    return i * (n // p) + min(i, n % p)


# ----------------------------------------------------------------- one HDF5 file

class H5Info:
    """What a validated file holds, for cross-checks."""

    def __init__(self):
        self.dims = None
        self.cells = None  # x first
        self.lower = None
        self.upper = None
        self.spacing = None
        self.case_text = None
        self.case = None
        self.snapshots = []  # [(step, time, {field: dataset path})] in step order
        self.state = None  # (step, time, dt) for checkpoints
        self.nranks = None
        self.process_grid = None
        self.model = None
        self.periodic = None  # x first, bools


def check_h5(c, path, kind, expect_fields=None, model_hint=None):
    """Validates output.h5 (kind 'output') or a checkpoint (kind 'checkpoint').

    The model (which fields, which /state rules) is the file's root `model`
    attribute, or `model_hint` when that attribute is missing or unreadable."""
    info = H5Info()
    w = path
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001 - any open failure is a violation
        c.fail(w, f"cannot open as HDF5: {e}")
        return None
    with f:
        # ---- root
        exact_attrs(c, f, ["format", "format_version", "kind", "model", "dims", "case"], f"{w}:/")
        fmt = get_str_attr(c, f, "format", f"{w}:/")
        c.check(fmt == "tessera", f"{w}:/", f"format is {fmt!r}, expected 'tessera'")
        ver = get_str_attr(c, f, "format_version", f"{w}:/")
        if ver is not None:
            m = re.fullmatch(r"(\d+)\.(\d+)", ver)
            if c.check(m is not None, f"{w}:/", f"format_version {ver!r} is not MAJOR.MINOR"):
                c.check(int(m.group(1)) == KNOWN_MAJOR, f"{w}:/", f"format_version {ver} has major {m.group(1)}, this validator reads major {KNOWN_MAJOR}")
                c.check(ver == "1.0", f"{w}:/", f"format_version {ver}: this validator checks 1.0 strictly")
        k = get_str_attr(c, f, "kind", f"{w}:/")
        c.check(k == kind, f"{w}:/", f"kind is {k!r}, expected {kind!r}")
        model = get_str_attr(c, f, "model", f"{w}:/")
        if model is not None:
            c.check(model in MODEL_FIELDS, f"{w}:/", f"model {model!r} is not one of {sorted(MODEL_FIELDS)}")
        info.model = model if model is not None else model_hint
        dims = get_arr_attr(c, f, "dims", f"{w}:/", "u8", 1)
        if dims is None or int(dims[0]) not in (2, 3):
            c.fail(f"{w}:/", f"dims must be [2] or [3], is {dims}")
            return None
        d = info.dims = int(dims[0])
        case_text = info.case_text = get_str_attr(c, f, "case", f"{w}:/")
        if case_text is not None:
            try:
                info.case = tomllib.loads(case_text)
            except tomllib.TOMLDecodeError as e:
                c.fail(f"{w}:/@case", f"not valid TOML: {e}")
        case = info.case or {}
        if info.case is not None:
            c.check(case.get("case", {}).get("model") == model, f"{w}:/", f"model {model!r} differs from case [case] model {case.get('case', {}).get('model')!r}")

        root_members = ["mesh", "decomposition", "snapshots"] + (["state"] if kind == "checkpoint" else [])
        if not exact_members(c, f, root_members, f"{w}:/"):
            return None
        for g in root_members:
            if not c.check(isinstance(f[g], h5py.Group), f"{w}:/{g}", "must be a group"):
                return None

        # ---- /mesh
        mesh = f["mesh"]
        mw = f"{w}:/mesh"
        exact_attrs(c, mesh, ["cells", "lower", "upper", "spacing", "periodic"], mw)
        cells = get_arr_attr(c, mesh, "cells", mw, "u8", d)
        lower = get_arr_attr(c, mesh, "lower", mw, "f8", d)
        upper = get_arr_attr(c, mesh, "upper", mw, "f8", d)
        spacing = get_arr_attr(c, mesh, "spacing", mw, "f8", d)
        periodic = get_arr_attr(c, mesh, "periodic", mw, "u8", d)
        if any(v is None for v in (cells, lower, upper, spacing, periodic)):
            return None
        cells = [int(x) for x in cells]
        info.cells, info.lower, info.upper, info.spacing = cells, lower, upper, spacing
        info.periodic = [bool(x) for x in periodic]
        c.check(all(n >= 1 for n in cells), mw, f"cells {cells} must all be >= 1")
        c.check(bool(np.all(upper > lower)), mw, f"upper {upper} must exceed lower {lower}")
        want_h = (upper - lower) / np.array(cells, dtype=np.float64)
        c.check(np.array_equal(spacing, want_h), mw, f"spacing {spacing.tolist()} != (upper-lower)/cells {want_h.tolist()}")
        c.check(set(periodic.tolist()) <= {0, 1}, mw, f"periodic {periodic.tolist()} must hold 0/1")
        if info.case is not None:
            cm = case.get("mesh", {})
            c.check(list(cm.get("cells", [])) == cells, mw, f"cells {cells} differ from case mesh.cells {cm.get('cells')}")
            c.check([float(x) for x in cm.get("lower", [])] == lower.tolist(), mw, f"lower {lower.tolist()} differs from case mesh.lower {cm.get('lower')}")
            c.check([float(x) for x in cm.get("upper", [])] == upper.tolist(), mw, f"upper {upper.tolist()} differs from case mesh.upper {cm.get('upper')}")
            c.check([int(bool(x)) for x in cm.get("periodic", [])] == periodic.tolist(), mw, f"periodic {periodic.tolist()} differs from case mesh.periodic {cm.get('periodic')}")
        axes = ["x", "y", "z"][:d]
        exact_members(c, mesh, axes, mw)
        for a, name in enumerate(axes):
            if name not in mesh:
                continue
            ds = mesh[name]
            aw = f"{w}:/mesh/{name}"
            if not c.check(isinstance(ds, h5py.Dataset), aw, "must be a dataset"):
                continue
            c.check(ds.dtype == np.dtype("<f8"), aw, f"dtype {ds.dtype}, expected float64")
            if c.check(ds.shape == (cells[a],), aw, f"shape {ds.shape}, expected ({cells[a]},)"):
                v = ds[()]
                want = lower[a] + (np.arange(cells[a], dtype=np.float64) + 0.5) * spacing[a]
                if not np.array_equal(v, want):
                    i = int(np.argmax(v != want))
                    c.fail(aw, f"cell centre {i} is {v[i]!r}, expected lower+(i+0.5)*spacing = {want[i]!r} (max |diff| {np.max(np.abs(v - want)):.3e})")

        # ---- /decomposition
        dec = f["decomposition"]
        dw = f"{w}:/decomposition"
        exact_attrs(c, dec, ["process_grid"], dw)
        exact_members(c, dec, ["blocks"], dw)
        pg = get_arr_attr(c, dec, "process_grid", dw, "u8", d)
        chunk_want = None
        if pg is not None and "blocks" in dec and isinstance(dec["blocks"], h5py.Dataset):
            pg = [int(p) for p in pg]
            info.process_grid = pg
            nranks = info.nranks = int(np.prod(pg))
            bw = f"{w}:/decomposition/blocks"
            b = dec["blocks"]
            ok = c.check(b.dtype == np.dtype("<u8"), bw, f"dtype {b.dtype}, expected uint64")
            ok = c.check(b.shape == (nranks, 2 * d), bw, f"shape {b.shape}, expected ({nranks}, {2 * d}) for process_grid {pg}") and ok
            if ok:
                blocks = b[()].astype(np.int64)
                occ = np.zeros(cells[::-1], dtype=np.int64)
                p3 = pg + [1] * (3 - d)
                for r in range(nranks):
                    start, count = blocks[r, :d], blocks[r, d:]
                    coords = [r % p3[0], (r // p3[0]) % p3[1], r // (p3[0] * p3[1])]
                    ws = [split_start(cells[a], pg[a], coords[a]) for a in range(d)]
                    wc = [split_start(cells[a], pg[a], coords[a] + 1) - ws[a] for a in range(d)]
                    c.check(list(start) == ws and list(count) == wc, bw, f"row {r} (rank at process coords {coords[:d]}) is start {list(start)} count {list(count)}, the documented split gives start {ws} count {wc}")
                    if np.any(count < 1) or np.any(start + count > np.array(cells)):
                        c.fail(bw, f"row {r}: block start {list(start)} count {list(count)} leaves the mesh {cells}")
                        continue
                    sl = tuple(slice(int(start[a]), int(start[a] + count[a])) for a in reversed(range(d)))
                    occ[sl] += 1
                if not np.all(occ == 1):
                    gaps = int(np.sum(occ == 0))
                    over = int(np.sum(occ > 1))
                    c.fail(bw, f"blocks do not tile the mesh exactly once: {gaps} cell(s) uncovered, {over} cell(s) covered more than once")
                chunk_want = tuple(int(blocks[:, d + a].max()) for a in reversed(range(d)))

        # ---- /snapshots
        snaps = f["snapshots"]
        sw = f"{w}:/snapshots"
        c.check(len(snaps.attrs) == 0, sw, f"unexpected attribute(s) {list(snaps.attrs)}")
        names = sorted(snaps.keys())
        c.check(len(names) >= 1, sw, "no snapshot")
        if kind == "checkpoint":
            c.check(len(names) == 1, sw, f"a checkpoint holds exactly one snapshot, found {names}")
        if expect_fields is None and kind == "checkpoint":
            expect_fields = checkpoint_fields(info.model, d)
        elif expect_fields is None:
            expect_fields = list(case.get("output", {}).get("fields", default_fields(info.model, d)))
            allowed = model_fields(info.model, d)
            fw = f"{w}:/@case [output] fields"
            c.check(len(expect_fields) >= 1, fw, "must name at least one field")
            c.check(len(set(expect_fields)) == len(expect_fields), fw, f"{expect_fields} names a field twice")
            bad = [x for x in expect_fields if x not in allowed]
            c.check(not bad, fw, f"{bad} not among the {d}D fields of model {info.model!r}: {allowed}")
        shape_want = tuple(cells[::-1])
        last_time = None
        for name in names:
            gw = f"{sw}/{name}"
            if not c.check(re.fullmatch(r"\d{8}", name) is not None, gw, "snapshot name must be the step as 8 digits"):
                continue
            g = snaps[name]
            if not c.check(isinstance(g, h5py.Group), gw, "must be a group"):
                continue
            exact_attrs(c, g, ["step", "time"], gw)
            st = get_arr_attr(c, g, "step", gw, "u8", 1)
            tm = get_arr_attr(c, g, "time", gw, "f8", 1)
            if st is None or tm is None:
                continue
            step, time = int(st[0]), float(tm[0])
            c.check(step == int(name), gw, f"attribute step = {step} differs from the group name")
            c.check(math.isfinite(time) and time >= 0.0, gw, f"time {time} must be finite and >= 0")
            if last_time is not None:
                c.check(time > last_time, gw, f"time {time!r} is not after the previous snapshot's {last_time!r}")
            last_time = time
            exact_members(c, g, expect_fields, gw)
            paths = {}
            for fld in expect_fields:
                if fld not in g:
                    continue
                ds = g[fld]
                fw = f"{gw}/{fld}"
                if not c.check(isinstance(ds, h5py.Dataset), fw, "must be a dataset"):
                    continue
                paths[fld] = ds.name
                c.check(ds.dtype == np.dtype("<f8"), fw, f"dtype {ds.dtype}, expected float64 (<f8)")
                c.check(ds.shape == shape_want, fw, f"shape {ds.shape}, expected {shape_want} (cells {cells} reversed)")
                c.check(len(ds.attrs) == 0, fw, f"unexpected attribute(s) {list(ds.attrs)}")
                if not c.check(ds.chunks is not None, fw, "must be chunked"):
                    continue
                if chunk_want is not None:
                    c.check(tuple(ds.chunks) == chunk_want, fw, f"chunk shape {ds.chunks}, expected the largest rank block {chunk_want} (/decomposition/blocks)")
                dcpl = ds.id.get_create_plist()
                c.check(dcpl.get_nfilters() == 0, fw, f"{dcpl.get_nfilters()} filter(s), format 1.0 has none")
                c.check(ds.fillvalue == 0.0, fw, f"fill value {ds.fillvalue}, expected 0")
                if ds.shape == shape_want:
                    nchunks = int(np.prod([math.ceil(s / k) for s, k in zip(ds.shape, ds.chunks)]))
                    try:
                        got = ds.id.get_num_chunks()
                        c.check(got == nchunks, fw, f"{got} of {nchunks} chunks written: part of the field was never written")
                    except (AttributeError, RuntimeError):
                        pass
                    v = ds[()]
                    if not np.all(np.isfinite(v)):
                        c.fail(fw, f"{int(np.sum(~np.isfinite(v)))} non-finite value(s)")
            info.snapshots.append((step, time, paths))

        # ---- /state (checkpoints)
        if kind == "checkpoint":
            s = f["state"]
            stw = f"{w}:/state"
            exact_attrs(c, s, ["step", "time", "dt"], stw)
            c.check(len(s.keys()) == 0, stw, f"unexpected member(s) {list(s.keys())}")
            st = get_arr_attr(c, s, "step", stw, "u8", 1)
            tm = get_arr_attr(c, s, "time", stw, "f8", 1)
            dt = get_arr_attr(c, s, "dt", stw, "f8", 1)
            if st is not None and tm is not None and dt is not None:
                info.state = (int(st[0]), float(tm[0]), float(dt[0]))
                if info.model == "poisson":
                    # A steady solve takes no time step.
                    c.check(info.state[2] == 0.0, stw, f"dt {info.state[2]} must be 0 (model poisson is steady)")
                else:
                    c.check(math.isfinite(info.state[2]) and info.state[2] > 0, stw, f"dt {info.state[2]} must be finite and > 0")
                if info.snapshots:
                    step, time, _ = info.snapshots[0]
                    c.check(info.state[0] == step, stw, f"step {info.state[0]} differs from the snapshot's {step}")
                    c.check(info.state[1] == time, stw, f"time {info.state[1]!r} differs from the snapshot's {time!r}")
    return info


def read_field(path, dset):
    with h5py.File(path, "r") as f:
        return f[dset][()]


# ----------------------------------------------------------------- XDMF

def floats(text):
    return [float(x) for x in (text or "").split()]


def ints(text):
    return [int(x) for x in (text or "").split()]


def check_xdmf(c, run_dir, out):
    path = os.path.join(run_dir, "output.xdmf")
    w = path
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        c.fail(w, f"cannot parse XML: {e}")
        return 0
    d = out.dims
    c.check(root.tag == "Xdmf" and root.get("Version") == "3.0", w, f"root must be <Xdmf Version=\"3.0\">, is <{root.tag} Version={root.get('Version')!r}>")
    domains = root.findall("Domain")
    if not c.check(len(domains) == 1 and len(root) == 1, w, "must hold exactly one <Domain>"):
        return 0
    colls = domains[0].findall("Grid")
    if not c.check(len(colls) == 1 and len(domains[0]) == 1, w, "<Domain> must hold exactly one <Grid>"):
        return 0
    coll = colls[0]
    c.check(coll.get("GridType") == "Collection" and coll.get("CollectionType") == "Temporal", w,
            f"outer grid must be GridType=Collection CollectionType=Temporal, is {coll.get('GridType')}/{coll.get('CollectionType')}")
    grids = coll.findall("Grid")
    c.check(len(grids) == len(coll), w, "temporal collection must hold only <Grid> elements")
    snaps = out.snapshots
    c.check(len(grids) == len(snaps), w, f"{len(grids)} time step(s) but output.h5 has {len(snaps)} snapshot(s)")
    # XDMF axes are (z, y, x). A 2D mesh is described as one layer of cells in the
    # x-y plane: z has 1 cell, origin 0 and thickness min(dx, dy).
    if d == 3:
        xcells = list(reversed(out.cells))
        xorigin = list(reversed(out.lower.tolist()))
        xspacing = list(reversed(out.spacing.tolist()))
    else:
        xcells = [1] + list(reversed(out.cells))
        xorigin = [0.0] + list(reversed(out.lower.tolist()))
        xspacing = [min(out.spacing.tolist())] + list(reversed(out.spacing.tolist()))
    nodes = " ".join(str(n + 1) for n in xcells)
    cellsr = " ".join(str(n) for n in xcells)
    topo = "3DCoRectMesh"
    geo = "ORIGIN_DXDYDZ"
    h5files = {}
    for i, g in enumerate(grids):
        gw = f"{w}: grid {i} ({g.get('Name')})"
        if i >= len(snaps):
            c.fail(gw, "no matching snapshot in output.h5")
            continue
        step, time, paths = snaps[i]
        c.check(g.get("Name") == f"step_{step:08d}", gw, f"name must be step_{step:08d} (snapshot {i} of output.h5)")
        c.check(g.get("GridType") == "Uniform", gw, f"GridType {g.get('GridType')!r}, expected 'Uniform'")
        t = g.findall("Time")
        if c.check(len(t) == 1, gw, "needs exactly one <Time>"):
            try:
                tv = float(t[0].get("Value"))
                c.check(tv == time, gw, f"Time Value {t[0].get('Value')} != snapshot time {time!r}")
            except (TypeError, ValueError):
                c.fail(gw, f"Time Value {t[0].get('Value')!r} is not a number")
        tp = g.findall("Topology")
        if c.check(len(tp) == 1, gw, "needs exactly one <Topology>"):
            c.check(tp[0].get("TopologyType") == topo, gw, f"TopologyType {tp[0].get('TopologyType')!r}, expected {topo!r}")
            c.check(tp[0].get("Dimensions") == nodes, gw, f"Topology Dimensions {tp[0].get('Dimensions')!r}, expected node counts {nodes!r} (cells+1, z y x{', one cell layer in z' if d == 2 else ''})")
        ge = g.findall("Geometry")
        if c.check(len(ge) == 1, gw, "needs exactly one <Geometry>"):
            c.check(ge[0].get("GeometryType") == geo, gw, f"GeometryType {ge[0].get('GeometryType')!r}, expected {geo!r}")
            items = ge[0].findall("DataItem")
            if c.check(len(items) == 2, gw, "Geometry needs two DataItems (origin, spacing)"):
                for it, want, what in ((items[0], xorigin, "origin"), (items[1], xspacing, "spacing")):
                    c.check(it.get("Format") == "XML" and it.get("Dimensions") == "3" and it.get("NumberType") == "Float" and it.get("Precision") == "8",
                            gw, f"{what} DataItem must be Format=XML Dimensions=3 NumberType=Float Precision=8")
                    try:
                        got = floats(it.text)
                    except ValueError:
                        c.fail(gw, f"{what} {it.text!r} is not a list of numbers")
                        continue
                    c.check(got == want, gw, f"{what} {got} != expected (z, y, x) {want} from /mesh {'lower' if what == 'origin' else 'spacing'}")
        attrs = g.findall("Attribute")
        c.check(len(g) == 3 + len(attrs), gw, "unexpected child element(s)")
        c.check(sorted(a.get("Name") for a in attrs) == sorted(paths), gw, f"attributes {[a.get('Name') for a in attrs]} != snapshot fields {sorted(paths)}")
        for a in attrs:
            aw = f"{gw} attribute {a.get('Name')}"
            c.check(a.get("AttributeType") == "Scalar" and a.get("Center") == "Cell", aw, "must be AttributeType=Scalar Center=Cell")
            items = a.findall("DataItem")
            if not c.check(len(items) == 1, aw, "needs one DataItem"):
                continue
            it = items[0]
            c.check(it.get("Format") == "HDF" and it.get("NumberType") == "Float" and it.get("Precision") == "8", aw, "DataItem must be Format=HDF NumberType=Float Precision=8")
            c.check(it.get("Dimensions") == cellsr, aw, f"Dimensions {it.get('Dimensions')!r}, expected {cellsr!r} (cells, z y x)")
            ref = (it.text or "").strip()
            want_ref = f"output.h5:/snapshots/{step:08d}/{a.get('Name')}"
            c.check(ref == want_ref, aw, f"references {ref!r}, expected {want_ref!r}")
            fname, _, dset = ref.partition(":")
            fpath = os.path.join(os.path.dirname(path), fname)
            try:
                if fpath not in h5files:
                    h5files[fpath] = h5py.File(fpath, "r")
                hf = h5files[fpath]
                if c.check(dset in hf and isinstance(hf[dset], h5py.Dataset), aw, f"{ref} does not exist"):
                    ds = hf[dset]
                    declared = ints(it.get("Dimensions"))
                    # 2D: the declared "1 ny nx" is the dataset's [ny, nx] as one layer.
                    if d == 2 and declared[:1] == [1]:
                        declared = declared[1:]
                    c.check(list(ds.shape) == declared, aw, f"{ref} has shape {ds.shape}, declared {it.get('Dimensions')}")
                    c.check(ds.dtype == np.dtype("<f8"), aw, f"{ref} has dtype {ds.dtype}, declared Float 8")
            except OSError as e:
                c.fail(aw, f"cannot open {fpath}: {e}")
    for hf in h5files.values():
        hf.close()
    return len(grids)


# ----------------------------------------------------------------- poisson

POISSON_SUMMARY_KEYS = ["status", "message", "case", "model", "steps", "final_time", "wall_seconds", "ranks",
                        "process_grid", "cells", "restart_from", "last_checkpoint", "checkpoints_written",
                        "snapshots", "linear_solves", "timings", "communication", "performance", "format_version"]

PERF_KEYS = ["phase", "seconds", "calls", "messages", "bytes", "reductions"]


def check_performance(c, sp, summary):
    """summary.json performance: the per-phase table, a list of phase rows."""
    perf = summary.get("performance")
    if not c.check(isinstance(perf, list) and perf, sp, "performance must be a non-empty list of phases"):
        return
    names = []
    for i, row in enumerate(perf):
        w = f"{sp}: performance[{i}]"
        if not c.check(isinstance(row, dict) and sorted(row) == sorted(PERF_KEYS), w, f"keys must be exactly {PERF_KEYS}"):
            continue
        c.check(isinstance(row["phase"], str) and row["phase"].strip(), w, "phase must be a non-empty name")
        names.append(row["phase"])
        c.check(is_real(row["seconds"]) and row["seconds"] >= 0, w, f"seconds {row['seconds']!r} must be >= 0")
        for k in ["calls", "messages", "bytes", "reductions"]:
            c.check(is_int(row[k]) and row[k] >= 0, w, f"{k} {row[k]!r} must be a whole number >= 0")
    c.check(len(set(names)) == len(names), sp, "performance phase names must be unique")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_real(v):
    """A finite JSON number (an integer-looking one included)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_slurm(c, sp, summary):
    """The optional `slurm` object of a summary.json written inside a Slurm job."""
    if "slurm" not in summary:
        return
    sl = summary["slurm"]
    if not c.check(isinstance(sl, dict), sp, "slurm must be an object"):
        return
    extra = sorted(set(sl) - {"job_id", "restarts", "partition", "nodes", "array_job_id", "array_task_id"})
    c.check(not extra, sp, f"unexpected slurm key(s) {extra}")
    c.check(isinstance(sl.get("job_id"), str) and sl["job_id"], sp, f"slurm.job_id {sl.get('job_id')!r} must be a non-empty string")
    c.check(is_int(sl.get("restarts")) and sl["restarts"] >= 0, sp, f"slurm.restarts {sl.get('restarts')!r} must be a whole number >= 0")


def check_summary_poisson(c, sp, summary):
    """The keys and plain values of a poisson summary.json (linear_solves: check_linear_solves)."""
    missing = [k for k in POISSON_SUMMARY_KEYS if k not in summary]
    extra = sorted(set(summary) - set(POISSON_SUMMARY_KEYS) - {"slurm"})
    c.check(not missing, sp, f"missing key(s) {missing}")
    check_performance(c, sp, summary)
    c.check(not extra, sp, f"unexpected key(s) {extra} for model poisson (not in format 1.0)")
    c.check(summary.get("status") == "completed", sp, f"status is {summary.get('status')!r}, expected 'completed' (message: {summary.get('message')!r})")
    c.check(isinstance(summary.get("message"), str), sp, f"message {summary.get('message')!r} must be a string")
    c.check(summary.get("restart_from", 0) is None, sp, f"restart_from {summary.get('restart_from')!r} must be null (model poisson does not restart)")
    c.check(summary.get("checkpoints_written") == 1 and is_int(summary.get("checkpoints_written")), sp, f"checkpoints_written {summary.get('checkpoints_written')!r}, expected 1")
    ws = summary.get("wall_seconds")
    c.check(is_real(ws) and ws >= 0, sp, f"wall_seconds {ws!r} must be a number >= 0")
    tk = summary.get("timings")
    tkeys = ["setup", "solve", "output", "total"]
    if c.check(isinstance(tk, dict) and sorted(tk) == sorted(tkeys), sp, f"timings must have exactly {tkeys}, has {sorted(tk) if isinstance(tk, dict) else tk!r}"):
        for k in tkeys:
            c.check(is_real(tk[k]) and tk[k] >= 0, sp, f"timings.{k} {tk[k]!r} must be a number >= 0")
        c.check(tk["total"] == ws, sp, f"timings.total {tk['total']!r} != wall_seconds {ws!r}")
    ck = summary.get("communication")
    if c.check(isinstance(ck, dict) and all(k in ck for k in ["messages", "bytes", "reductions"]), sp, "communication must have messages, bytes, reductions"):
        for k in ["messages", "bytes", "reductions"]:
            c.check(is_int(ck[k]) and ck[k] >= 0, sp, f"communication.{k} {ck[k]!r} must be a whole number >= 0")
    c.check(isinstance(summary.get("linear_solves"), list), sp, "linear_solves must be a list")


def case_solver(case):
    return case.get("numerics", {}).get("solver", {})


def heat_implicit(case):
    """True for a heat case with an implicit time scheme (one linear solve per step)."""
    scheme = case.get("numerics", {}).get("time_scheme", "explicit") if isinstance(case, dict) else "explicit"
    return case.get("case", {}).get("model") == "heat" and scheme in ("backward_euler", "crank_nicolson")


HEAT_SOLVE_KEYS = ["name", "scheme", "solves", "iterations_total", "iterations_max", "not_converged", "seconds", "last"]


def check_heat_solves(c, sp, summary, case):
    """linear_solves of an implicit heat run: one entry totalling the per-step solves."""
    ls = summary.get("linear_solves")
    if not c.check(isinstance(ls, list) and len(ls) == 1, sp, f"linear_solves must hold exactly one entry for implicit heat, has {ls!r}"):
        return
    e = ls[0]
    w = f"{sp}: linear_solves[0]"
    if not c.check(isinstance(e, dict) and sorted(e) == sorted(HEAT_SOLVE_KEYS), w, f"keys must be exactly {HEAT_SOLVE_KEYS}"):
        return
    c.check(e["name"] == "temperature", w, f"name {e['name']!r} must be 'temperature'")
    c.check(e["scheme"] == case.get("numerics", {}).get("time_scheme"), w, f"scheme {e['scheme']!r} differs from the case's numerics.time_scheme")
    if check_solve_totals(c, w, e, summary, 1):
        last = e["last"]
        missing = [k for k in REPORT_KEYS if k not in last]
        c.check(not missing, f"{w}.last", f"missing key(s) {missing}")
        c.check(last.get("reason") in REASONS, f"{w}.last", f"reason {last.get('reason')!r} is not one of {REASONS}")


def check_solve_totals(c, w, e, summary, per_step):
    """The totals of a time-stepping model's linear_solves entry `e` (`per_step` solves per
    step of this run). True when `last` is a report to check (an object), False otherwise."""
    for k in ["solves", "iterations_total", "iterations_max", "not_converged"]:
        c.check(is_int(e[k]) and e[k] >= 0, w, f"{k} {e[k]!r} must be a whole number >= 0")
    c.check(is_real(e["seconds"]) and e["seconds"] >= 0, w, f"seconds {e['seconds']!r} must be a finite number >= 0")
    steps = summary.get("steps_this_run")
    if is_int(e["solves"]) and is_int(steps):
        c.check(e["solves"] == per_step * steps, w, f"{e['solves']} solves for {steps} steps ({per_step} per step)")
    if all(is_int(e[k]) for k in ["solves", "iterations_total", "iterations_max"]):
        c.check(e["iterations_max"] <= e["iterations_total"] <= e["iterations_max"] * max(e["solves"], 1), w, "iterations_total must lie between iterations_max and solves x iterations_max")
    if is_int(e["solves"]) and is_int(e["not_converged"]):
        c.check(e["not_converged"] <= e["solves"], w, f"not_converged {e['not_converged']} exceeds solves {e['solves']}")
    last = e["last"]
    if e["solves"] == 0:
        c.check(last is None, w, "last must be null when no solve ran")
        return False
    return c.check(isinstance(last, dict), w, "last must be the report of the latest solve")


def singular(case):
    """True when the case's linear operator has no dirichlet face: heat and poisson have
    `dirichlet` faces; the pressure of model incompressible is fixed on `outlet` faces."""
    fixed = "outlet" if case.get("case", {}).get("model") == "incompressible" else "dirichlet"
    faces = case.get("boundary", {})
    return not any(isinstance(f, dict) and f.get("type") == fixed for f in faces.values())


def check_report(c, w, rep, case, mon_row):
    """One linear_solves[].report against docs/FORMAT.md and the case's [numerics.solver]."""
    if not c.check(isinstance(rep, dict), w, f"must be an object, is {type(rep).__name__}"):
        return
    missing = [k for k in REPORT_KEYS if k not in rep]
    extra = sorted(set(rep) - set(REPORT_KEYS))
    c.check(not missing, w, f"missing key(s) {missing}")
    c.check(not extra, w, f"unexpected key(s) {extra} (not in format 1.0)")
    opts = case_solver(case)
    method, precond, reason = rep.get("method"), rep.get("precond"), rep.get("reason")
    if c.check(method in METHODS, w, f"method {method!r} is not one of {METHODS}") and "method" in opts:
        c.check(method == opts["method"], w, f"method {method!r} differs from the case's numerics.solver.method {opts['method']!r}")
    if c.check(precond in PRECONDS, w, f"precond {precond!r} is not one of {PRECONDS}") and "preconditioner" in opts:
        c.check(precond == opts["preconditioner"], w, f"precond {precond!r} differs from the case's numerics.solver.preconditioner {opts['preconditioner']!r}")
    c.check(reason in REASONS, w, f"reason {reason!r} is not one of {REASONS}")
    c.check(reason != "diverged_nan", w, "reason diverged_nan in a completed run (its status must be 'diverged')")
    for k in ["iterations", "reductions", "messages", "bytes"]:
        if k in rep:
            c.check(is_int(rep[k]) and rep[k] >= 0, w, f"{k} {rep[k]!r} must be a whole number >= 0")
    for k in ["rhs_norm", "final_residual", "seconds"]:
        if k in rep:
            c.check(is_real(rep[k]) and rep[k] >= 0, w, f"{k} {rep[k]!r} must be a finite number >= 0")
    if "projected_mean" in rep:
        pm = rep["projected_mean"]
        if c.check(is_real(pm), w, f"projected_mean {pm!r} must be a finite number"):
            # Only a singular operator (no dirichlet face) has a mean to remove.
            if not singular(case):
                c.check(pm == 0.0, w, f"projected_mean {pm!r} must be 0: the case has a dirichlet face (not singular)")
    hist = rep.get("history")
    if not c.check(isinstance(hist, list) and len(hist) >= 1, w, f"history must be a non-empty list (the initial residual first), is {hist!r}"):
        return
    bad = [i for i, h in enumerate(hist) if not (is_real(h) and h >= 0)]
    if not c.check(not bad, w, f"history entries {bad[:5]} are not finite numbers >= 0"):
        return
    it, rhs, fin = rep.get("iterations"), rep.get("rhs_norm"), rep.get("final_residual")
    if not (is_int(it) and is_real(rhs) and is_real(fin)):
        return
    if reason in ("breakdown", "indefinite"):
        c.check(it <= len(hist) - 1, w, f"iterations {it} > len(history) - 1 = {len(hist) - 1}")
    else:
        c.check(it == len(hist) - 1, w, f"iterations {it} != len(history) - 1 = {len(hist) - 1}")
    rel = fin / rhs if rhs > 0 else fin
    if rhs > 0:
        c.check(abs(rel - hist[-1]) <= 1e-12 * max(abs(hist[-1]), 1e-300), w,
                f"final_residual / rhs_norm = {rel!r} differs from the last history entry {hist[-1]!r} (relative tolerance 1e-12)")
    else:
        c.check(fin == hist[-1], w, f"rhs_norm is 0: final_residual {fin!r} must equal the last history entry {hist[-1]!r}")
    init = case.get("initial", {}).get("phi")
    try:
        zero_guess = init is not None and float(init) == 0.0
    except (TypeError, ValueError):
        zero_guess = False
    if zero_guess and rhs > 0:
        c.check(abs(hist[0] - 1.0) <= 1e-12, w, f"history[0] = {hist[0]!r}: from the zero initial guess (initial.phi = {init!r}) the initial relative residual is 1")
    # Why it stopped, against the case's tolerances (the solver's own test, same float operations).
    rtol, atol, maxit = opts.get("rtol"), opts.get("atol"), opts.get("max_iterations")
    if is_real(rtol) and is_real(atol) and is_int(maxit):
        c.check(it <= maxit, w, f"iterations {it} exceed numerics.solver.max_iterations {maxit}")
        if reason == "converged_atol":
            c.check(fin <= atol, w, f"reason converged_atol but final_residual {fin!r} > atol {atol!r}")
        elif reason == "converged_rtol":
            c.check(fin <= rtol * rhs and fin > atol, w, f"reason converged_rtol but final_residual {fin!r} is not in (atol {atol!r}, rtol * rhs_norm = {rtol * rhs!r}]")
        elif reason == "max_iterations":
            c.check(it == maxit, w, f"reason max_iterations but iterations {it} != numerics.solver.max_iterations {maxit}")
            c.check(fin > max(rtol * rhs, atol), w, f"reason max_iterations but final_residual {fin!r} meets the tolerance max(rtol * rhs_norm, atol) = {max(rtol * rhs, atol)!r}")
    # monitor.csv's row is this solve.
    if mon_row is not None:
        c.check(mon_row["iterations"] == it, w, f"iterations {it} but monitor.csv says {mon_row['iterations']!r}")
        c.check(mon_row["relative_residual"] == rel, w, f"final_residual / rhs_norm = {rel!r} but monitor.csv relative_residual is {mon_row['relative_residual']!r}")


def check_levels(c, w, levels, out):
    """linear_solves[].multigrid_levels: finest (the mesh) first, coarser after."""
    if not c.check(isinstance(levels, list) and len(levels) >= 1, w, f"must be a non-empty list, is {levels!r}"):
        return 0
    prev = None
    for i, lv in enumerate(levels):
        lw = f"{w}[{i}]"
        if not c.check(isinstance(lv, dict) and sorted(lv) == ["cells", "gathered"], lw, f"must be an object with exactly cells, gathered; is {lv!r}"):
            return len(levels)
        cells, g = lv["cells"], lv["gathered"]
        if not c.check(isinstance(cells, list) and len(cells) == out.dims and all(is_int(n) and n >= 1 for n in cells), lw, f"cells {cells!r} must be {out.dims} whole numbers >= 1 (x first)"):
            return len(levels)
        c.check(isinstance(g, bool), lw, f"gathered {g!r} must be true or false")
        if prev is None:
            c.check(cells == out.cells, lw, f"finest level cells {cells} != /mesh cells {out.cells}")
            if out.nranks == 1:
                c.check(g is False, lw, "a 1-rank run gathers nothing (gathered means held whole by every rank of a multi-rank run)")
        else:
            pc, pg = prev
            c.check(all(a <= b for a, b in zip(cells, pc)), lw, f"cells {cells} are finer than the previous level's {pc} along some axis")
            c.check(not (pg and not g), lw, "a level below a gathered level must be gathered too")
            if cells == pc:
                c.check(g and not pg, lw, f"same cells {cells} as the previous level: only the gathered copy of a distributed level may repeat it")
        prev = (cells, g)
    if out.nranks > 1:
        c.check(prev[1] is True, f"{w}[{len(levels) - 1}]", "the coarsest level (solved directly) must be gathered on a multi-rank run")
    else:
        c.check(all(lv.get("gathered") is False for lv in levels if isinstance(lv, dict)), w, "a 1-rank run gathers no level")
    return len(levels)


def check_linear_solves(c, sp, summary, case, out, mon_row):
    ls = summary.get("linear_solves")
    if not isinstance(ls, list):
        return ""
    if not c.check(len(ls) == 1, sp, f"linear_solves has {len(ls)} entries, model poisson makes exactly one solve"):
        return ""
    e = ls[0]
    w = f"{sp}: linear_solves[0]"
    if not c.check(isinstance(e, dict) and sorted(e) == ["multigrid_levels", "name", "report"], w, f"must be an object with exactly name, report, multigrid_levels; has {sorted(e) if isinstance(e, dict) else e!r}"):
        return ""
    c.check(e["name"] == "phi", w, f"name {e['name']!r}, expected 'phi'")
    check_report(c, f"{w}.report", e["report"], case, mon_row)
    nlev = check_levels(c, f"{w}.multigrid_levels", e["multigrid_levels"], out)
    tk = summary.get("timings")
    rep = e["report"]
    if isinstance(tk, dict) and isinstance(rep, dict) and is_real(tk.get("solve")) and is_real(rep.get("seconds")):
        c.check(tk["solve"] >= rep["seconds"], sp, f"timings.solve {tk['solve']!r} (max over ranks) < the report's seconds {rep['seconds']!r}")
    if isinstance(rep, dict):
        return f", 1 linear solve ({rep.get('method')}+{rep.get('precond')} {rep.get('reason')} in {rep.get('iterations')} iterations, {nlev} multigrid level(s))"
    return ""


def check_monitor_poisson(c, mp, rows, case, out, op):
    """monitor.csv of a poisson run: one row, step 1, time 0; its norms and probes agree with output.h5.

    Returns (number of data rows, {"iterations", "relative_residual"} of the row or None)."""
    mon = case.get("monitor", {})
    norms = list(mon.get("norms", []))
    probes = list(mon.get("probes", []))
    header = ["step", "time", "iterations", "relative_residual"] + [f"phi_{n}" for n in norms] + [f"probe{i}_phi" for i in range(len(probes))]
    c.check(rows[0] == header, f"{mp}:1", f"header {rows[0]} != expected {header}")
    data = rows[1:]
    if not c.check(len(data) == 1, mp, f"{len(data)} data row(s), model poisson writes exactly one (step 1)"):
        return len(data), None
    r = data[0]
    lw = f"{mp}:2"
    if not c.check(len(r) == len(header), lw, f"{len(r)} fields, header has {len(header)}"):
        return 1, None
    if not c.check(re.fullmatch(r"\d+", r[0]) is not None, lw, f"step {r[0]!r} is not an integer"):
        return 1, None
    try:
        vals = [float(x) for x in r[1:]]
    except ValueError:
        c.fail(lw, "non-numeric value")
        return 1, None
    c.check(all(math.isfinite(v) for v in vals), lw, "non-finite value")
    step, t, its, rr = int(r[0]), vals[0], vals[1], vals[2]
    c.check(step == 1, lw, f"step {step}, expected 1 (the one linear solve)")
    c.check(t == 0.0, lw, f"time {t!r}, expected 0")
    c.check(its >= 0 and float(its).is_integer(), lw, f"iterations {r[2]!r} must be a whole number >= 0")
    c.check(rr >= 0, lw, f"relative_residual {rr!r} must be >= 0")
    # Norms and probes of the written field.
    phi_path = out.snapshots[0][2].get("phi") if out.snapshots else None
    if rows[0] == header and phi_path is not None:
        v = read_field(op, phi_path)
        if v.shape == tuple(out.cells[::-1]) and np.all(np.isfinite(v)):
            vol = float(np.prod(out.spacing))
            scale = float(np.abs(v).max()) or 1.0
            want = {"l2": math.sqrt(float(np.sum(v * v)) * vol), "max": float(v.max()), "min": float(v.min()),
                    "mean": float(v.sum()) / v.size, "integral": float(v.sum()) * vol}
            tol = {"l2": 1e-10 * want["l2"], "max": 0.0, "min": 0.0, "mean": 1e-10 * scale,
                   "integral": 1e-10 * scale * vol * v.size}
            for k, n in enumerate(norms):
                got = vals[3 + k]
                if n in want:
                    c.check(abs(got - want[n]) <= tol[n], lw, f"phi_{n} {got!r} != {want[n]!r} computed from output.h5")
            for i, p in enumerate(probes):
                idx = [min(max(int(math.floor((p[a] - out.lower[a]) / out.spacing[a])), 0), out.cells[a] - 1) for a in range(out.dims)]
                want_p = float(v[tuple(reversed(idx))])
                got = vals[3 + len(norms) + i]
                c.check(got == want_p, lw, f"probe{i}_phi {got!r} != {want_p!r}, the value of cell {idx} in output.h5")
    return 1, {"iterations": int(its) if float(its).is_integer() else its, "relative_residual": rr}


def detect_model(h5path, summary, case_toml):
    """output.h5's root `model` attribute, else summary.json's `model`, else case.toml's [case] model."""
    try:
        with h5py.File(h5path, "r") as f:
            m = f.attrs.get("model")
            if isinstance(m, bytes):
                m = m.decode("utf-8", "replace")
            if isinstance(m, str):
                return m
    except Exception:  # noqa: BLE001 - reported when the file is checked
        pass
    m = summary.get("model")
    if isinstance(m, str):
        return m
    return (case_toml.get("case") or {}).get("model", "heat")


# ----------------------------------------------------------------- incompressible

FLOW_TIMINGS = ["momentum", "projection", "pressure_solve", "halo", "boundary", "monitor", "output", "total"]
FLOW_SOLVE_KEYS = ["name", "solves", "iterations_total", "iterations_max", "not_converged", "seconds", "last"]
# The second linear_solves entry of an incompressible run with numerics.viscous = "crank_nicolson".
VISCOUS_SOLVE_KEYS = ["name", "method", "rtol", "solves", "iterations_total", "iterations_max", "not_converged", "seconds"]
AXES = ["x", "y", "z"]


def flow_probe_fields(d):
    """The monitor.csv columns of one probe of model incompressible: probe<i>_<these>."""
    return [f"velocity_{a}" for a in AXES[:d]] + ["pressure"]


def check_summary_flow(c, sp, summary, heat_keys, restart_step):
    """The keys and plain values of an incompressible summary.json (the heat keys plus cfl and
    kinetic_energy, other timings; linear_solves and the monitor values: check_flow_solves)."""
    keys = heat_keys + ["cfl", "kinetic_energy"]
    missing = [k for k in keys if k not in summary]
    extra = sorted(set(summary) - set(keys))
    c.check(not missing, sp, f"missing key(s) {missing}")
    c.check(not extra, sp, f"unexpected key(s) {extra} for model incompressible (not in format 1.0)")
    check_performance(c, sp, summary)
    c.check(summary.get("status") == "completed", sp, f"status is {summary.get('status')!r}, expected 'completed' (message: {summary.get('message')!r})")
    c.check(isinstance(summary.get("message"), str), sp, f"message {summary.get('message')!r} must be a string")
    for k in ["steps", "steps_this_run", "checkpoints_written", "snapshots"]:
        if k in summary:
            c.check(is_int(summary[k]) and summary[k] >= 0, sp, f"{k} {summary[k]!r} must be a whole number >= 0")
    steps, this_run = summary.get("steps"), summary.get("steps_this_run")
    if is_int(steps) and is_int(this_run):
        first = restart_step or 0
        c.check(this_run == steps - first, sp, f"steps_this_run {this_run} != steps {steps} - the start step {first}")
    for k, positive in [("dt", True), ("cfl", False), ("kinetic_energy", False), ("final_time", False), ("wall_seconds", False)]:
        if k in summary:
            v = summary[k]
            c.check(is_real(v) and (v > 0 if positive else v >= 0), sp, f"{k} {v!r} must be a finite number {'>' if positive else '>='} 0")
    cups, ws, cells = summary.get("cell_updates_per_second"), summary.get("wall_seconds"), summary.get("cells")
    if is_int(this_run) and is_real(ws) and ws > 0 and isinstance(cells, list) and all(is_int(n) for n in cells):
        want = this_run * math.prod(cells) / ws
        c.check(is_real(cups) and abs(cups - want) <= 1e-12 * want, sp, f"cell_updates_per_second {cups!r} != steps_this_run x cells / wall_seconds = {want!r}")
    tk = summary.get("timings")
    if c.check(isinstance(tk, dict) and sorted(tk) == sorted(FLOW_TIMINGS), sp, f"timings must have exactly {FLOW_TIMINGS}, has {sorted(tk) if isinstance(tk, dict) else tk!r}"):
        for k in FLOW_TIMINGS:
            c.check(is_real(tk[k]) and tk[k] >= 0, sp, f"timings.{k} {tk[k]!r} must be a number >= 0")
    ck = summary.get("communication")
    if c.check(isinstance(ck, dict) and all(k in ck for k in ["messages", "bytes", "reductions"]), sp, "communication must have messages, bytes, reductions"):
        for k in ["messages", "bytes", "reductions"]:
            c.check(is_int(ck[k]) and ck[k] >= 0, sp, f"communication.{k} {ck[k]!r} must be a whole number >= 0")
    c.check(isinstance(summary.get("linear_solves"), list), sp, "linear_solves must be a list")


def flow_row_check(c, case, header):
    """The per-row checks of an incompressible monitor.csv (for check_monitor_rows)."""
    col = {k: header.index(k) - 1 for k in header[1:]}  # index into the row's values
    fixed = case.get("numerics", {}).get("dt")
    end = case.get("control", {}).get("end_time")

    def check(lw, vals):
        c.check(all(math.isfinite(v) for v in vals), lw, "non-finite value")
        for k in FLOW_MONITOR:
            c.check(vals[col[k]] >= 0, lw, f"{k} {vals[col[k]]!r} must be >= 0")
        its = vals[col["pressure_iterations"]]
        c.check(math.isfinite(its) and float(its).is_integer(), lw, f"pressure_iterations {its!r} must be a whole number")
        t, dt = vals[col["time"]], vals[col["dt"]]
        if is_real(fixed) and fixed > 0:
            # numerics.dt fixes the step; only a step landing on end_time is shorter.
            c.check(dt == fixed or (t == end and 0 < dt < fixed), lw, f"dt {dt!r} != numerics.dt {fixed!r} (only the step landing on end_time {end!r} may be shorter)")
    return check


def cell_of(out, point):
    """The 0-based cell (x first) that contains `point` (clamped into the mesh)."""
    return [min(max(int(math.floor((point[a] - out.lower[a]) / out.spacing[a])), 0), out.cells[a] - 1) for a in range(out.dims)]


def interior(shape, d, periodic, axes):
    """Mask of the cells that are not the first or last one along a non-periodic axis in `axes`."""
    m = np.ones(shape, dtype=bool)
    for a in axes:
        if not periodic[a]:
            sl = [slice(None)] * d
            sl[d - 1 - a] = 0
            m[tuple(sl)] = False
            sl[d - 1 - a] = -1
            m[tuple(sl)] = False
    return m


def first_bad(mask_bad):
    """The cell (x first) of the first True of `mask_bad`."""
    return list(reversed([int(i) for i in np.argwhere(mask_bad)[0]]))


def check_flow_fields(c, ckpath, cpaths, op, paths, step, out):
    """Snapshot fields of output.h5 at a checkpoint's step, against the checkpoint's face
    velocities: velocity_<a> is the mean of the cell's two faces along a (not checked in the
    last cell of a non-periodic axis, whose high face the checkpoint does not hold); the
    vorticity is the mean of the MAC differences on the four edges around the cell (checked
    away from non-periodic boundaries, whose edges use boundary values)."""
    d, per, h = out.dims, out.periodic, out.spacing
    w = f"{op}:/snapshots/{step:08d}"
    faces = {}
    for a in range(d):
        name = f"velocity_{AXES[a]}_face"
        if name in cpaths:
            f = read_field(ckpath, cpaths[name])
            if f.shape == tuple(out.cells[::-1]) and np.all(np.isfinite(f)):
                faces[a] = f
    for a in range(d):
        fld = f"velocity_{AXES[a]}"
        if fld not in paths or a not in faces:
            continue
        f = faces[a]
        hi = np.roll(f, -1, axis=d - 1 - a)
        mean = (f + hi) * 0.5
        v = read_field(op, paths[fld])
        if v.shape != mean.shape:
            continue
        valid = np.ones(v.shape, dtype=bool)
        if not per[a]:
            sl = [slice(None)] * d
            sl[d - 1 - a] = -1
            valid[tuple(sl)] = False
        bad = valid & ~(np.abs(v - mean) <= 1e-15 * (np.abs(f) + np.abs(hi)))
        if np.any(bad):
            cell = first_bad(bad)
            idx = tuple(reversed(cell))
            c.fail(f"{w}/{fld}", f"{int(bad.sum())} cell(s) are not the mean of their two faces in {ckpath} ({fld}_face), first cell {cell}: {v[idx]!r} vs {mean[idx]!r}")
    vort = [n for n in ("vorticity", "vorticity_x", "vorticity_y", "vorticity_z") if n in paths]
    if not vort or len(faces) != d:
        return
    scale = 4.0 * max(float(np.abs(f).max()) for f in faces.values()) / float(min(h)) or 1.0

    def diff(f, a):  # f[i] - f[i-1] along axis a (x first)
        return f - np.roll(f, 1, axis=d - 1 - a)

    def component(n):
        """Cell means of the vorticity component along axis n, and the cells where they are checked."""
        p, q = (n + 1) % 3, (n + 2) % 3
        e = diff(faces[q], p) / h[p] - diff(faces[p], q) / h[q]
        ep = np.roll(e, -1, axis=d - 1 - p)
        cell = 0.25 * (e + ep + np.roll(e, -1, axis=d - 1 - q) + np.roll(ep, -1, axis=d - 1 - q))
        return cell, interior(cell.shape, d, per, [p, q])

    comps = {2: component(2)} if d == 2 else {n: component(n) for n in range(3)}
    for name in vort:
        if name == "vorticity" and d == 2:
            want, valid = comps[2]
        elif name == "vorticity":
            want = np.sqrt(sum(comps[n][0] ** 2 for n in range(3)))
            valid = comps[0][1] & comps[1][1] & comps[2][1]
        else:
            want, valid = comps[AXES.index(name[-1])]
        v = read_field(op, paths[name])
        if v.shape != want.shape:
            continue
        bad = valid & ~(np.abs(v - want) <= 1e-12 * scale)
        if np.any(bad):
            cell = first_bad(bad)
            idx = tuple(reversed(cell))
            c.fail(f"{w}/{name}", f"{int(bad.sum())} interior cell(s) differ from the mean of the four edge vorticities computed from {ckpath}, first cell {cell}: {v[idx]!r} vs {want[idx]!r} (tolerance {1e-12 * scale:.3e})")


def check_flow_pressure(c, op, out, case):
    """With no outlet the pressure has zero mean (not checked at step 0: the initial condition)."""
    if not singular(case):
        return
    for s, _, paths in out.snapshots:
        if s == 0 or "pressure" not in paths:
            continue
        p = read_field(op, paths["pressure"])
        if p.size and np.all(np.isfinite(p)):
            mean, big = float(np.mean(p)), float(np.abs(p).max())
            c.check(abs(mean) <= 1e-10 * big, f"{op}:/snapshots/{s:08d}/pressure", f"mean {mean!r} is not 0 (max |p| {big!r}): with no outlet the pressure has zero mean")


def check_velocity_bounds(c, w, dt, cfl, max_velocity, maxes, spacing, what):
    """max_velocity and cfl bound what the velocities `maxes` ({axis: max |u_axis|}) imply."""
    speed = math.sqrt(sum(m * m for m in maxes.values()))
    c.check(max_velocity >= speed * (1 - 1e-12), w, f"max_velocity {max_velocity!r} < |(max |u_d|)| = {speed!r} of the {what}")
    # cfl is the largest local Courant number, dt * max over cells of sum_d |u_d| / h_d: at
    # least what any one face gives.
    courant = dt * max(m / float(spacing[a]) for a, m in maxes.items())
    c.check(cfl >= courant * (1 - 1e-12), w, f"cfl {cfl!r} < dt * max_d(max |u_d| / h_d) = {courant!r} of the {what}")


def check_flow_monitor_h5(c, mp, table, header, case, out, op, ck_files):
    """monitor.csv rows of snapshot steps against output.h5 (probes exactly, kinetic energy to
    round-off, max_velocity and cfl at least what the fields show) and checkpoints (face maxima)."""
    d = out.dims
    probes = case.get("monitor", {}).get("probes", [])
    vol = float(np.prod(out.spacing))
    for s, _, paths in out.snapshots:
        if s not in table:
            continue
        vals = table[s]

        def col(name):
            return vals[header.index(name) - 1]
        w = f"{mp}: step {s}"
        fields = {}
        for q in flow_probe_fields(d):
            if q in paths:
                v = read_field(op, paths[q])
                if v.shape == tuple(out.cells[::-1]) and np.all(np.isfinite(v)):
                    fields[q] = v
        for i, pt in enumerate(probes):
            if not (isinstance(pt, list) and len(pt) == d):
                c.fail(w, f"probe {i} {pt!r} is not a point of {d} coordinates")
                continue
            cell = cell_of(out, pt)
            for q, v in fields.items():
                want = float(v[tuple(reversed(cell))])
                got = col(f"probe{i}_{q}")
                c.check(got == want, w, f"probe{i}_{q} {got!r} != {want!r}, the value of cell {cell} in output.h5")
        vel = {a: fields[f"velocity_{AXES[a]}"] for a in range(d) if f"velocity_{AXES[a]}" in fields}
        if len(vel) == d:
            ke = 0.5 * sum(float(np.sum(v * v)) for v in vel.values()) * vol
            got = col("kinetic_energy")
            c.check(abs(got - ke) <= 1e-10 * max(ke, 1e-300), w, f"kinetic_energy {got!r} != 1/2 sum |u_C|^2 * cell volume = {ke!r} of output.h5")
        if vel:
            check_velocity_bounds(c, w, col("dt"), col("cfl"), col("max_velocity"), {a: float(np.abs(v).max()) for a, v in vel.items()},
                                  out.spacing, "cell-centred velocity of output.h5")
    for s, (p, ck) in ck_files.items():
        if s not in table or not ck.snapshots:
            continue
        vals = table[s]
        cpaths = ck.snapshots[0][2]
        maxes = {}
        for a in range(d):
            name = f"velocity_{AXES[a]}_face"
            if name in cpaths:
                f = read_field(p, cpaths[name])
                if np.all(np.isfinite(f)):
                    maxes[a] = float(np.abs(f).max())
        if maxes:
            i = {k: header.index(k) - 1 for k in ("dt", "cfl", "max_velocity")}
            check_velocity_bounds(c, f"{mp}: step {s}", vals[i["dt"]], vals[i["cfl"]], vals[i["max_velocity"]], maxes, out.spacing, f"face velocities of {p}")
        if ck.state:
            c.check(ck.state[2] == vals[header.index("dt") - 1], p, f"/state dt {ck.state[2]!r} != monitor.csv dt {vals[header.index('dt') - 1]!r} of step {s} (the last step's size)")


def check_flow_solves(c, sp, summary, case, table, header, restart_step):
    """linear_solves of an incompressible run (three pressure solves per step, or one with
    numerics.projection = "final_stage"; the latest
    solve's report; with the Crank–Nicolson viscous term a second entry, one viscous solve per
    component and stage) and the summary's last-step values, against monitor.csv (`table`,
    or None when it could not be read)."""
    ls = summary.get("linear_solves")
    if not isinstance(ls, list):
        return ""
    cn = case.get("numerics", {}).get("viscous") == "crank_nicolson"
    want = 2 if cn else 1
    if not c.check(len(ls) == want, sp, f"linear_solves has {len(ls)} entries, expected {want} (pressure{', viscous' if cn else ''}: numerics.viscous = {case.get('numerics', {}).get('viscous')!r})"):
        return ""
    if cn:
        v, vw = ls[1], f"{sp}: linear_solves[1]"
        if c.check(isinstance(v, dict) and sorted(v) == sorted(VISCOUS_SOLVE_KEYS), vw, f"keys must be exactly {VISCOUS_SOLVE_KEYS}, are {sorted(v) if isinstance(v, dict) else v!r}"):
            c.check(v["name"] == "viscous", vw, f"name {v['name']!r}, expected 'viscous'")
            c.check(isinstance(v["method"], str) and v["method"], vw, f"method {v['method']!r} must be a non-empty string")
            c.check(is_real(v["rtol"]) and 0 < v["rtol"] < 1, vw, f"rtol {v['rtol']!r} must be in (0, 1)")
            c.check(v["rtol"] == case.get("numerics", {}).get("viscous_rtol"), vw, f"rtol {v['rtol']!r} != the case's numerics.viscous_rtol")
            check_solve_totals(c, vw, dict(v, last=None if v["solves"] == 0 else {}), summary, 3 * len(case.get("mesh", {}).get("cells", [])))
    e = ls[0]
    w = f"{sp}: linear_solves[0]"
    if not c.check(isinstance(e, dict) and sorted(e) == sorted(FLOW_SOLVE_KEYS), w, f"keys must be exactly {FLOW_SOLVE_KEYS}, are {sorted(e) if isinstance(e, dict) else e!r}"):
        return ""
    c.check(e["name"] == "pressure", w, f"name {e['name']!r}, expected 'pressure'")
    # numerics.projection: a pressure solve per Runge–Kutta stage, or one per step.
    projection = case.get("numerics", {}).get("projection")
    c.check(projection in ("every_stage", "final_stage"), sp, f"case numerics.projection {projection!r} must be every_stage or final_stage")
    last = e["last"] if check_solve_totals(c, w, e, summary, 1 if projection == "final_stage" else 3) else None
    if last is not None:
        check_report(c, f"{w}.last", last, case, None)
        tk = summary.get("timings")
        if isinstance(tk, dict) and is_real(tk.get("pressure_solve")) and is_real(last.get("seconds")):
            c.check(tk["pressure_solve"] >= last["seconds"], sp, f"timings.pressure_solve {tk['pressure_solve']!r} (max over ranks) < the last report's seconds {last['seconds']!r}")
    if table is None:
        return ""
    ix = {k: header.index(k) - 1 for k in header[1:]}
    first = restart_step or 0
    steps, this_run = summary.get("steps"), summary.get("steps_this_run")
    rows = {s: v for s, v in table.items() if s > first}
    its = [rows[s][ix["pressure_iterations"]] for s in sorted(rows)]
    if its and is_int(this_run) and len(rows) == this_run:
        if is_int(e["iterations_total"]):
            c.check(sum(its) == e["iterations_total"], w, f"iterations_total {e['iterations_total']} != {sum(its):g}, the sum of monitor.csv pressure_iterations over this run's steps")
        if is_int(e["iterations_max"]):
            c.check(max(its) / 3 <= e["iterations_max"] <= max(its), w, f"iterations_max {e['iterations_max']} does not fit monitor.csv: the largest step total of three solves is {max(its):g}")
    lr = table.get(steps) if is_int(steps) else None
    if lr is None:
        return ""
    mw = f"{sp} vs monitor.csv step {steps}"
    for k in ["dt", "cfl", "kinetic_energy"]:
        if k in summary:
            c.check(summary[k] == lr[ix[k]], mw, f"{k} {summary[k]!r} != the last row's {lr[ix[k]]!r}")
    if isinstance(last, dict) and all(is_real(last.get(k)) for k in ["final_residual", "rhs_norm"]) and is_int(last.get("iterations")):
        rel = last["final_residual"] / last["rhs_norm"] if last["rhs_norm"] > 0 else last["final_residual"]
        c.check(lr[ix["pressure_residual"]] >= rel * (1 - 1e-12), mw, f"pressure_residual {lr[ix['pressure_residual']]!r} < the last solve's final_residual / rhs_norm {rel!r} (it is the largest of the step's solves)")
        c.check(lr[ix["pressure_iterations"]] >= last["iterations"], mw, f"pressure_iterations {lr[ix['pressure_iterations']]:g} < the last solve's iterations {last['iterations']}")
    if isinstance(last, dict):
        return f", {e['solves']} pressure solve(s) ({last.get('method')}+{last.get('precond')}, {e['iterations_total']} iterations)"
    return ""


# ----------------------------------------------------------------- monitor.csv of time-stepping models

def check_monitor_rows(c, mp, rows, header, steps, restart_from, restart_step, out, row_check):
    """monitor.csv of a time-stepping model (heat, incompressible): `header`, then one row
    per step, in step order, ending at the summary's last step; `row_check(where, values)`
    adds the model's checks of one row (values: the columns after `step`, as floats).

    Returns (number of data rows, {step: values} of the rows that parsed)."""
    c.check(rows[0] == header, f"{mp}:1", f"header {rows[0]} != expected {header}")
    data = rows[1:]
    nrows = len(data)
    prev_step = prev_time = None
    table = {}
    for ln, r in enumerate(data, start=2):
        lw = f"{mp}:{ln}"
        if not c.check(len(r) == len(header), lw, f"{len(r)} fields, header has {len(header)}"):
            continue
        if not c.check(re.fullmatch(r"\d+", r[0]) is not None, lw, f"step {r[0]!r} is not an integer"):
            continue
        try:
            vals = [float(x) for x in r[1:]]
        except ValueError:
            c.fail(lw, "non-numeric value")
            continue
        s, t, dt = int(r[0]), vals[0], vals[1]
        if prev_step is not None:
            c.check(s == prev_step + 1, lw, f"step {s} does not follow step {prev_step} (one row per step)")
            c.check(t > prev_time, lw, f"time {t} does not increase")
        c.check(dt > 0, lw, f"dt {dt} must be > 0")
        row_check(lw, vals)
        prev_step, prev_time = s, t
        table[s] = vals
    if data and isinstance(steps, int) and prev_step is not None:
        first_row = int(data[0][0]) if data[0] and data[0][0].isdigit() else None
        c.check(prev_step == steps, mp, f"last row is step {prev_step}, summary steps is {steps}")
        if restart_from is None:
            c.check(first_row == 1 and nrows == steps, mp, f"{nrows} rows starting at step {first_row}, expected one per step 1..{steps}")
        else:
            c.check(first_row in (1, (restart_step or 0) + 1), mp, f"first row is step {first_row}, expected 1 or the restart step + 1")
    elif isinstance(steps, int) and steps > 0:
        c.fail(mp, "no data rows")
    for s, t, _ in out.snapshots:
        if s in table:
            c.check(abs(table[s][0] - t) <= 1e-9 * max(abs(t), 1e-300), mp, f"time at step {s} is {table[s][0]!r}, snapshot time is {t!r}")
    return nrows, table


# ----------------------------------------------------------------- RUN_DIR

def expected_steps(first, last, every, extra=()):
    s = {first, last} | set(extra)
    if every > 0:
        s |= {k for k in range(((first // every) + 1) * every, last + 1, every)}
    return sorted(x for x in s if first <= x <= last)


def check_run_dir(run_dir):
    c = Checker()
    rd = run_dir.rstrip("/") or "/"
    if not os.path.isdir(rd):
        c.fail(rd, "not a directory")
        return c, None

    # ---- debris
    for dp, _, fns in os.walk(rd):
        for fn in fns:
            if fn.endswith(".tmp"):
                c.fail(os.path.join(dp, fn), "temporary file left behind (an interrupted atomic write)")
            if fn == ".tessera-write-test":
                c.fail(os.path.join(dp, fn), "write probe left behind")

    # ---- summary.json
    sp = os.path.join(rd, "summary.json")
    summary = {}
    try:
        with open(sp) as fh:
            summary = json.load(fh)
    except (OSError, ValueError) as e:
        c.fail(sp, f"cannot read: {e}")
    if not isinstance(summary, dict):
        c.fail(sp, f"must hold a JSON object, holds {type(summary).__name__}")
        summary = {}

    # ---- case.toml
    cp = os.path.join(rd, "case.toml")
    case_text = None
    case_toml = {}
    try:
        with open(cp, encoding="utf-8") as fh:
            case_text = fh.read()
        case_toml = tomllib.loads(case_text)
    except (OSError, ValueError) as e:
        c.fail(cp, f"cannot read as TOML: {e}")

    # ---- the model: output.h5's root `model`, else summary.json's, else case.toml's.
    model = detect_model(os.path.join(rd, "output.h5"), summary, case_toml)
    if model not in MODEL_FIELDS:
        c.fail(rd, f"model {model!r} (output.h5 / summary.json / case.toml) is not one of {sorted(MODEL_FIELDS)}; checking it as heat")
    poisson = model == "poisson"
    flow = model == "incompressible"
    steps = summary.get("steps")
    restart_from = summary.get("restart_from")
    restart_step = None
    if restart_from:
        m = re.search(r"step_(\d{8})\.h5$", restart_from)
        restart_step = int(m.group(1)) if m else None

    keys = ["status", "message", "case", "model", "steps", "steps_this_run", "final_time", "dt", "wall_seconds", "ranks",
            "process_grid", "cells", "cell_updates_per_second", "restart_from", "last_checkpoint", "checkpoints_written",
            "snapshots", "linear_solves", "timings", "communication", "performance", "format_version"]
    if summary and poisson:
        check_summary_poisson(c, sp, summary)
    elif summary and flow:
        check_summary_flow(c, sp, summary, keys, restart_step)
    elif summary:
        missing = [k for k in keys if k not in summary]
        c.check(not missing, sp, f"missing key(s) {missing}")
        check_performance(c, sp, summary)
        c.check(summary.get("status") == "completed", sp, f"status is {summary.get('status')!r}, expected 'completed' (message: {summary.get('message')!r})")
        tk = summary.get("timings", {})
        c.check(isinstance(tk, dict) and all(k in tk for k in ["compute", "halo", "boundary", "monitor", "output", "total"]), sp, "timings must have compute, halo, boundary, monitor, output, total")
        ck = summary.get("communication", {})
        c.check(isinstance(ck, dict) and all(k in ck for k in ["messages", "bytes", "reductions"]), sp, "communication must have messages, bytes, reductions")
        c.check(isinstance(summary.get("linear_solves"), list), sp, "linear_solves must be a list")
        if heat_implicit(case_toml):
            check_heat_solves(c, sp, summary, case_toml)
        else:
            c.check(summary.get("linear_solves") == [], sp, f"linear_solves must be empty for explicit model {model!r} (no linear solve)")
    if summary:
        check_slurm(c, sp, summary)

    # ---- output.h5
    op = os.path.join(rd, "output.h5")
    out = check_h5(c, op, "output", model_hint=model)
    if out is None:
        return c, None
    case = out.case or {}
    if case_text is not None and out.case_text is not None:
        c.check(out.case_text == case_text, f"{op}:/@case", "differs from case.toml (the resolved case of the run)")
    output = case.get("output", {})
    every = int(output.get("every", 0))
    ck_every = int(output.get("checkpoint_every", 0))
    snap_steps = [s for s, _, _ in out.snapshots]
    if poisson:
        # A steady solve: one snapshot, step 1 (the one linear solve), time 0.
        c.check([(s, t) for s, t, _ in out.snapshots] == [(1, 0.0)], f"{op}:/snapshots",
                f"snapshots (step, time) {[(s, t) for s, t, _ in out.snapshots]}, expected exactly [(1, 0.0)] for model poisson")
        if summary:
            c.check(steps == 1 and not isinstance(steps, bool), sp, f"steps = {steps!r}, expected 1 for model poisson")
            c.check(isinstance(summary.get("final_time"), float) and summary.get("final_time") == 0.0, sp, f"final_time {summary.get('final_time')!r}, expected 0.0 for model poisson")
            c.check(summary.get("snapshots") == len(snap_steps), sp, f"snapshots = {summary.get('snapshots')} but output.h5 holds {len(snap_steps)}")
    elif out.snapshots and isinstance(steps, int):
        last_step, last_time, _ = out.snapshots[-1]
        c.check(last_step == steps, sp, f"steps = {steps} but the last snapshot of output.h5 is step {last_step}")
        c.check(summary.get("final_time") == last_time, sp, f"final_time {summary.get('final_time')!r} != last snapshot time {last_time!r}")
        first = snap_steps[0]
        if restart_from is None:
            c.check(first == 0, f"{op}:/snapshots", f"first snapshot is step {first}, expected 0 (no restart)")
        want = expected_steps(first, steps, every, [restart_step] if restart_step is not None else [])
        c.check(snap_steps == want, f"{op}:/snapshots", f"snapshot steps {snap_steps} != expected {want} (first, every {every}, last)")
        c.check(summary.get("snapshots") == len(snap_steps), sp, f"snapshots = {summary.get('snapshots')} but output.h5 holds {len(snap_steps)}")
    if summary:
        c.check(summary.get("format_version") == "1.0", sp, f"format_version {summary.get('format_version')!r}")
        c.check(summary.get("model") == case.get("case", {}).get("model"), sp, "model differs from the case")
        c.check(summary.get("case") == case.get("case", {}).get("name"), sp, "case differs from the case name")
        c.check(summary.get("cells") == out.cells, sp, f"cells {summary.get('cells')} != /mesh cells {out.cells}")
        c.check(summary.get("ranks") == out.nranks, sp, f"ranks {summary.get('ranks')} but output.h5 /decomposition has {out.nranks} block(s)")
        c.check(summary.get("process_grid") == out.process_grid, sp, f"process_grid {summary.get('process_grid')} != output.h5 {out.process_grid}")

    # ---- checkpoints
    ckdir = os.path.join(rd, "checkpoints")
    ck_steps = []
    ck_files = {}  # step -> (path, H5Info) of the valid checkpoints
    if c.check(os.path.isdir(ckdir), ckdir, "missing directory"):
        for fn in sorted(os.listdir(ckdir)):
            p = os.path.join(ckdir, fn)
            m = re.fullmatch(r"step_(\d{8})\.h5", fn)
            if not m:
                if not fn.endswith(".tmp"):
                    c.fail(p, "unexpected file in checkpoints/ (expected step_NNNNNNNN.h5)")
                continue
            cs = int(m.group(1))
            ck = check_h5(c, p, "checkpoint", model_hint=model)
            if ck is None:
                continue
            ck_steps.append(cs)
            ck_files[cs] = (p, ck)
            if ck.state:
                c.check(ck.state[0] == cs, p, f"/state step {ck.state[0]} differs from the file name")
            c.check(ck.cells == out.cells and np.array_equal(ck.lower, out.lower) and np.array_equal(ck.upper, out.upper), p, "mesh differs from output.h5")
            if isinstance(steps, int):
                c.check(cs <= steps, p, f"checkpoint step {cs} is beyond the run's last step {steps} (left from an abandoned trajectory)")
            # Same step in output.h5: same time and bit-identical fields (incompressible:
            # the snapshot fields are computed from the checkpoint's faces).
            for s, t, paths in out.snapshots:
                if s == cs and ck.snapshots:
                    _, ct, cpaths = ck.snapshots[0]
                    c.check(ct == t, p, f"time {ct!r} differs from output.h5 snapshot {s}'s {t!r}")
                    if flow:
                        check_flow_fields(c, p, cpaths, op, paths, s, out)
                        continue
                    for fld in set(paths) & set(cpaths):
                        a, b = read_field(op, paths[fld]), read_field(p, cpaths[fld])
                        c.check(a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64)), p, f"{fld} differs from output.h5 snapshot {s}")
        if isinstance(steps, int) and summary.get("status") == "completed":
            c.check(steps in ck_steps, ckdir, f"no checkpoint of the final step {steps}")
            lc = summary.get("last_checkpoint")
            c.check(isinstance(lc, str) and os.path.basename(lc) == f"step_{steps:08d}.h5", sp, f"last_checkpoint {lc!r} is not the final step's checkpoint")
            if out.snapshots:
                first = restart_step if restart_step is not None else 0
                want = [s for s in expected_steps(first, steps, ck_every) if s > first]
                if ck_every == 0:
                    want = [steps]
                got = [s for s in ck_steps if s > first]
                if restart_from is None:
                    c.check(got == want and ck_steps == got, ckdir, f"checkpoint steps {ck_steps} != expected {want} (every {ck_every}, and the last step)")
                else:
                    c.check(all(s in ck_steps for s in want), ckdir, f"checkpoint steps {ck_steps} miss some of {want}")

    if flow:
        check_flow_pressure(c, op, out, case)
        if isinstance(steps, int) and summary.get("status") == "completed":
            written = [s for s in ck_steps if s > (restart_step or 0)]
            c.check(summary.get("checkpoints_written") == len(written), sp, f"checkpoints_written {summary.get('checkpoints_written')!r}, but checkpoints/ holds {len(written)} after the start step: {written}")
            if steps in ck_files and ck_files[steps][1].state:
                sdt = ck_files[steps][1].state[2]
                c.check(summary.get("dt") == sdt, sp, f"dt {summary.get('dt')!r} != /state dt {sdt!r} of the final checkpoint (both the last step's size)")

    # ---- output.xdmf
    ngrids = check_xdmf(c, rd, out)

    # ---- monitor.csv
    mp = os.path.join(rd, "monitor.csv")
    nrows = 0
    try:
        with open(mp, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as e:
        c.fail(mp, f"cannot read: {e}")
        rows = []
    mon_row = None
    flow_table = None
    # model incompressible: its own monitors, then each probe's velocity and pressure (no norms).
    probes = case.get("monitor", {}).get("probes", [])
    flow_header = ["step", "time", "dt"] + FLOW_MONITOR + [f"probe{i}_{q}" for i in range(len(probes)) for q in flow_probe_fields(out.dims)]
    if rows and poisson:
        nrows, mon_row = check_monitor_poisson(c, mp, rows, case, out, op)
    elif rows and flow:
        header = flow_header
        row_check = flow_row_check(c, case, header)
        nrows, table = check_monitor_rows(c, mp, rows, header, steps, restart_from, restart_step, out, row_check)
        if rows[0] == header:
            flow_table = table
            check_flow_monitor_h5(c, mp, table, header, case, out, op, ck_files)
    elif rows:
        mon = case.get("monitor", {})
        header = ["step", "time", "dt"] + [f"temperature_{n}" for n in mon.get("norms", [])] + [f"probe{i}_temperature" for i in range(len(mon.get("probes", [])))] + ["change_rate"]
        implicit = heat_implicit(case)
        if implicit:
            header += ["solver_iterations", "solver_residual"]

        def heat_row(lw, vals):
            if implicit:
                its, res = vals[-2], vals[-1]
                c.check(its >= 0 and its == int(its), lw, f"solver_iterations {its} must be a whole number >= 0")
                c.check(res >= 0, lw, f"solver_residual {res} must be >= 0")
        nrows, _ = check_monitor_rows(c, mp, rows, header, steps, restart_from, restart_step, out, heat_row)
    else:
        c.fail(mp, "empty")

    # ---- summary.json linear_solves (poisson)
    solve = ""
    if poisson and summary:
        solve = check_linear_solves(c, sp, summary, case, out, mon_row)
    if flow and summary:
        solve = check_flow_solves(c, sp, summary, case, flow_table, flow_header, restart_step)

    summ = (f"{'x'.join(map(str, out.cells))} {out.dims}D, {out.nranks} rank(s) "
            f"({'x'.join(map(str, out.process_grid or []))}), {len(out.snapshots)} snapshot(s) "
            f"(steps {snap_steps[0] if snap_steps else '-'}..{snap_steps[-1] if snap_steps else '-'}), "
            f"{len(ck_steps)} checkpoint(s), {ngrids} XDMF grid(s), {nrows} monitor row(s){solve}")
    return c, f"model {model}, {summ}"


def compare(dir_a, dir_b):
    c = Checker()
    pa, pb = os.path.join(dir_a, "output.h5"), os.path.join(dir_b, "output.h5")
    try:
        fa, fb = h5py.File(pa, "r"), h5py.File(pb, "r")
    except OSError as e:
        c.fail(f"{pa} / {pb}", f"cannot open: {e}")
        return c, ""
    with fa, fb:
        for k in ("cells", "lower", "upper", "spacing", "periodic"):
            c.check(np.array_equal(fa["mesh"].attrs[k], fb["mesh"].attrs[k]), "/mesh", f"{k} differs: {fa['mesh'].attrs[k]} vs {fb['mesh'].attrs[k]}")
        sa, sb = sorted(fa["snapshots"]), sorted(fb["snapshots"])
        c.check(sa == sb, "/snapshots", f"different snapshot steps: {sa} vs {sb}")
        nfields = 0
        for name in sorted(set(sa) & set(sb)):
            ga, gb = fa["snapshots"][name], fb["snapshots"][name]
            ta, tb = ga.attrs["time"][0], gb.attrs["time"][0]
            c.check(ta == tb, f"/snapshots/{name}", f"time {ta!r} vs {tb!r}")
            c.check(sorted(ga) == sorted(gb), f"/snapshots/{name}", f"fields {sorted(ga)} vs {sorted(gb)}")
            for fld in sorted(set(ga) & set(gb)):
                a, b = ga[fld][()], gb[fld][()]
                w = f"/snapshots/{name}/{fld}"
                if not c.check(a.shape == b.shape, w, f"shape {a.shape} vs {b.shape}"):
                    continue
                diff = a.view(np.uint64) != b.view(np.uint64)
                if np.any(diff):
                    idx = tuple(int(i) for i in np.argwhere(diff)[0])
                    c.fail(w, f"not bit-identical: {int(diff.sum())} value(s) differ, first at index {idx} ({a[idx]!r} vs {b[idx]!r}), max |diff| {np.nanmax(np.abs(a - b)):.3e}")
                nfields += 1
        last = sa[-1] if sa else None
    # The final checkpoints hold the state to continue from: they must agree too.
    if last is not None:
        ca = os.path.join(dir_a, "checkpoints", f"step_{last}.h5")
        cb = os.path.join(dir_b, "checkpoints", f"step_{last}.h5")
        try:
            with h5py.File(ca, "r") as xa, h5py.File(cb, "r") as xb:
                for k in ("step", "time", "dt"):
                    c.check(np.array_equal(xa["state"].attrs[k], xb["state"].attrs[k]), f"{ca} vs {cb}", f"/state {k} differs")
                m = xa.attrs.get("model")
                m = m.decode("utf-8", "replace") if isinstance(m, bytes) else m
                for fld in checkpoint_fields(m, int(xa.attrs["dims"][0])):
                    g = f"snapshots/{last}/{fld}"
                    c.check(np.array_equal(xa[g][()].view(np.uint64), xb[g][()].view(np.uint64)), f"{ca} vs {cb}", f"{g} not bit-identical")
        except (OSError, KeyError) as e:
            c.fail(f"{ca} vs {cb}", f"cannot compare final checkpoints: {e}")
    return c, f"{len(sa)} snapshot(s), {nfields} field dataset(s) and the final checkpoint bit-identical"


def report(c, ok_line):
    if c.errors:
        for e in c.errors[:MAX_REPORTED]:
            print(f"FAIL {e}")
        if len(c.errors) > MAX_REPORTED:
            print(f"FAIL ... and {len(c.errors) - MAX_REPORTED} more violation(s)")
        print(f"check_format: {len(c.errors)} violation(s)")
        return 1
    print(ok_line)
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "--compare":
        c, s = compare(argv[2], argv[3])
        return report(c, f"OK compare {argv[2]} == {argv[3]}: {s}")
    if len(argv) == 2 and not argv[1].startswith("-"):
        c, s = check_run_dir(argv[1])
        return report(c, f"OK {argv[1]}: format 1.0, {s}")
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
