//! `tessera post` end to end: every operation against analytic fields written in the
//! on-disk format by 1..4 ranks (so chunks follow rank blocks), pieces, passes, the
//! cache, the memory bound, bad input, and real mpirun output.
mod common;

use common::{scratch, tessera_on, EXE};
use decomp::comm::{Comm, ThreadComm};
use decomp::h5read::H5Reader;
use decomp::io::H5File;
use decomp::{BlockLayout, Field, Grid};
use postproc::{run_pipeline, PostOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

type Func = dyn Fn([f64; 3], f64) -> f64 + Sync;

/// HDF5 files opened in this process would be inherited, with their locks, by a child
/// spawned meanwhile (the descriptors are not close-on-exec), and the child would then
/// keep another test's file locked. So children are spawned only while no test holds
/// an HDF5 file open in-process.
static HDF5_IN_PROCESS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn output_of(c: &mut Command) -> std::process::Output {
    let child = {
        let _g = HDF5_IN_PROCESS.write().unwrap_or_else(|e| e.into_inner());
        c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("start")
    };
    child.wait_with_output().expect("wait")
}

/// Writes RUN_DIR/output.h5 with `fields` evaluated at cell centres for each time,
/// from `ranks` in-process ranks through the solver's own collective writer (chunks =
/// rank blocks).
fn analytic_run(dir: &Path, cells: &[usize], upper: &[f64], periodic: &[bool], ranks: usize, times: &[f64], fields: &[(&str, &Func)]) {
    std::fs::create_dir_all(dir).unwrap();
    let d = cells.len();
    let lower = vec![0.0; d];
    let grid = Grid::new(cells, &lower, upper, periodic);
    let path = dir.join("output.h5");
    let _g = HDF5_IN_PROCESS.read().unwrap_or_else(|e| e.into_inner());
    ThreadComm::run(ranks, |c| {
        let layout = BlockLayout::auto(&grid, c.size(), 1).unwrap();
        let h = H5File::create(c, &path).unwrap();
        h.set_attr_str(c, "/", "format", "tessera").unwrap();
        h.set_attr_str(c, "/", "format_version", "1.0").unwrap();
        h.set_attr_str(c, "/", "kind", "output").unwrap();
        h.set_attr_str(c, "/", "model", "heat").unwrap();
        h.set_attr_u64(c, "/", "dims", &[d as u64]).unwrap();
        h.create_group(c, "mesh").unwrap();
        h.set_attr_u64(c, "/mesh", "cells", &cells.iter().map(|&v| v as u64).collect::<Vec<_>>()).unwrap();
        h.set_attr_f64(c, "/mesh", "lower", &lower).unwrap();
        h.set_attr_f64(c, "/mesh", "upper", upper).unwrap();
        h.set_attr_f64(c, "/mesh", "spacing", &grid.spacing()[..d]).unwrap();
        h.set_attr_u64(c, "/mesh", "periodic", &periodic.iter().map(|&p| p as u64).collect::<Vec<_>>()).unwrap();
        h.create_group(c, "snapshots").unwrap();
        for (k, &t) in times.iter().enumerate() {
            let g = format!("/snapshots/{:08}", 10 * k);
            h.create_group(c, &g).unwrap();
            h.set_attr_u64(c, &g, "step", &[10 * k as u64]).unwrap();
            h.set_attr_f64(c, &g, "time", &[t]).unwrap();
            for (name, f) in fields {
                let mut field = Field::zeros(layout.blocks[c.rank()], d, 1);
                field.fill_with(|i, j, kk| {
                    let p = [grid.centre(0, i), grid.centre(1, j), if d == 3 { grid.centre(2, kk) } else { 0.0 }];
                    f(p, t)
                });
                h.write_field(c, &format!("{g}/{name}"), &layout, &field).unwrap();
            }
        }
        h.close(c).unwrap();
    });
}

fn post(run: &Path, pipeline: &str, out: &Path, memory: usize) -> postproc::PostReport {
    let pfile = out.with_extension("toml");
    std::fs::write(&pfile, pipeline).unwrap();
    let opts = PostOptions { out: Some(out.to_path_buf()), memory_bytes: memory, progress: false, ..Default::default() };
    let _g = HDF5_IN_PROCESS.read().unwrap_or_else(|e| e.into_inner());
    run_pipeline(run, &pfile, &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn scalars(out: &Path, name: &str) -> serde_json::Map<String, Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap()).unwrap();
    v["values"].as_object().unwrap().clone()
}

fn val(m: &serde_json::Map<String, Value>, k: &str) -> f64 {
    m[k].as_f64().unwrap_or_else(|| panic!("{k} = {}", m[k]))
}

// Round-off bound for the checks below: values are O(1), spacings 1/20..1/8, so a
// difference quotient loses ~ 1e-16 / h per term; 1e-11 leaves two orders of margin.
const ROUND_OFF: f64 = 1e-11;

#[test]
fn operators_are_exact_on_fields_they_must_be_exact_for_on_1_to_4_rank_files() {
    let root = scratch("post", "ops2d");
    let u: &Func = &|p, _| -p[1];
    let v: &Func = &|p, _| p[0];
    let f: &Func = &|p, _| p[0] * p[0] + 3.0 * p[0] * p[1] - p[1] * p[1];
    let pipeline = r#"
[[derive]]
name = "w"
expr = "vorticity(u, v)"

[[output]]
name = "checks"
kind = "scalars"
values = { vort = "linf(w - 2)", ddx = "linf(ddx(f) - (2*x + 3*y))", ddy = "linf(ddy(f) - (3*x - 2*y))", lap = "linf(laplacian(f))", div = "linf(divergence(u, v))", d2x = "linf(d2dx2(f) - 2)", cross = "linf(ddy(ddx(f)) - 3)", grad = "linf(grad_mag(f) - hypot(2*x + 3*y, 3*x - 2*y))", mean_x = "mean(x)", area = "integral(x*0 + 1)", l2f = "l2(f)", maxr = "max(magnitude(u, v))", minf = "min(f)", sumf = "sum(f)", rmsf = "rms(f)" }
"#;
    let (nx, ny) = (24usize, 20usize);
    let (hx, hy) = (1.2 / nx as f64, 1.0 / ny as f64);
    let centres = |n: usize, h: f64| (0..n).map(move |i| (i as f64 + 0.5) * h);
    let pts: Vec<[f64; 2]> = centres(ny, hy).flat_map(|y| centres(nx, hx).map(move |x| [x, y])).collect();
    let fv: Vec<f64> = pts.iter().map(|p| f([p[0], p[1], 0.0], 0.0)).collect();
    let mut first: Option<serde_json::Map<String, Value>> = None;
    for ranks in 1..=4 {
        let run = root.join(format!("r{ranks}"));
        analytic_run(&run, &[nx, ny], &[1.2, 1.0], &[false, false], ranks, &[0.0], &[("u", u), ("v", v), ("f", f)]);
        let out = root.join(format!("out{ranks}"));
        post(&run, pipeline, &out, 1 << 30);
        let m = scalars(&out, "checks");
        for k in ["vort", "ddx", "ddy", "lap", "div", "d2x", "cross", "grad"] {
            assert!(val(&m, k) < ROUND_OFF, "{ranks} ranks: {k} error {}", val(&m, k));
        }
        assert!((val(&m, "mean_x") - 0.6).abs() < 1e-14);
        assert!((val(&m, "area") - 1.2).abs() < 1e-13);
        let l2: f64 = (fv.iter().map(|x| x * x).sum::<f64>() * hx * hy).sqrt();
        assert!((val(&m, "l2f") - l2).abs() < 1e-12 * l2);
        let maxr = pts.iter().map(|p| p[0].hypot(p[1])).fold(0.0, f64::max);
        assert!((val(&m, "maxr") - maxr).abs() < 1e-14);
        assert_eq!(val(&m, "minf"), fv.iter().copied().fold(f64::INFINITY, f64::min));
        let sum: f64 = fv.iter().sum();
        assert!((val(&m, "sumf") - sum).abs() < 1e-12 * sum.abs().max(1.0));
        assert!((val(&m, "rmsf") - (fv.iter().map(|x| x * x).sum::<f64>() / fv.len() as f64).sqrt()).abs() < 1e-13);
        // The same numbers, bit for bit, whatever the rank count that wrote the file.
        match &first {
            None => first = Some(m),
            Some(f1) => assert_eq!(*f1, m, "{ranks} ranks differ from 1"),
        }
    }
}

#[test]
fn three_d_operators_nested_derivatives_and_vorticity() {
    let root = scratch("post", "ops3d");
    let u: &Func = &|p, _| -p[1];
    let v: &Func = &|p, _| p[0];
    let w: &Func = &|_, _| 0.0;
    let f: &Func = &|p, _| p[0] * p[1] * p[2] + p[2] * p[2];
    let pipeline = r#"
[[output]]
name = "checks"
kind = "scalars"
values = { wmag = "linf(vorticity(u, v, w) - 2)", wz = "linf(vorticity_z(u, v, w) - 2)", wx = "linf(vorticity_x(u, v, w))", ddz = "linf(ddz(f) - (x*y + 2*z))", zz = "linf(ddz(ddz(f)) - 2)", d2z = "linf(d2dz2(f) - 2)", xy = "linf(ddx(ddy(f)) - z)", div = "linf(divergence(u, v, w))" }
"#;
    let mut first = None;
    for ranks in [1, 3] {
        let run = root.join(format!("r{ranks}"));
        analytic_run(&run, &[10, 9, 40], &[1.0, 0.9, 2.0], &[false; 3], ranks, &[0.0], &[("u", u), ("v", v), ("w", w), ("f", f)]);
        // A small memory bound cuts the z range into several pieces.
        let out = root.join(format!("out{ranks}"));
        let rep = post(&run, pipeline, &out, 1);
        assert!(rep.pieces > 1, "{} pieces", rep.pieces);
        let m = scalars(&out, "checks");
        for (k, v) in &m {
            assert!(v.as_f64().unwrap() < ROUND_OFF, "{ranks} ranks: {k} = {v}");
        }
        match &first {
            None => first = Some(m),
            Some(f1) => assert_eq!(*f1, m),
        }
    }
}

#[test]
fn periodic_axes_wrap_and_pieces_do_not_change_a_bit() {
    let root = scratch("post", "periodic");
    const TAU: f64 = 2.0 * std::f64::consts::PI;
    let f: &Func = &|p, _| (TAU * p[0]).sin() * (TAU * p[1]).cos();
    let run = root.join("run");
    analytic_run(&run, &[32, 48], &[1.0, 1.0], &[true, true], 3, &[0.0, 1.0], &[("f", f)]);
    // Central differences of sin/cos on a periodic mesh are exactly sin(k h)/h times
    // the derivative's shape, at every cell, including the wrapped ones.
    let pipeline = r#"
[[output]]
name = "checks"
kind = "scalars"
values = { dx = "linf(ddx(f) - sin(2*pi*dx)/dx*cos(2*pi*x)*cos(2*pi*y))", dy = "linf(ddy(f) + sin(2*pi*dy)/dy*sin(2*pi*x)*sin(2*pi*y))", yy = "linf(d2dy2(f) - 2*(cos(2*pi*dy) - 1)/dy^2*f)" }

[[output]]
name = "table"
kind = "table"
columns = ["step", "max(ddy(ddy(f)))", "l2(ddx(f))", "mean(abs(f))"]

[[output]]
name = "line"
kind = "line"
field = "ddy(f)"
from = [0.0, 0.0]
to = [1.0, 1.0]
points = 33
"#;
    let one = post(&run, pipeline, &root.join("whole"), 1 << 30);
    let many = post(&run, pipeline, &root.join("pieces"), 1);
    assert_eq!(one.pieces, 2, "one piece per snapshot");
    assert!(many.pieces >= 6, "{} pieces", many.pieces);
    let m = scalars(&root.join("whole"), "checks");
    for (k, v) in &m {
        assert!(v.as_f64().unwrap() < 1e-12 / (1.0 / 48.0), "{k} = {v}");
    }
    for f in ["checks.json", "table.csv", "line.csv"] {
        let a = std::fs::read(root.join("whole").join(f)).unwrap();
        let b = std::fs::read(root.join("pieces").join(f)).unwrap();
        assert!(a == b, "{f} differs between one piece and many");
    }
    // post.json's summary of the table gives the last row's step as a whole number,
    // as table.csv does.
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("whole").join("post.json")).unwrap()).unwrap();
    let table = j["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "table").unwrap();
    let step = &table["summary"]["last"]["step"];
    assert!(step.is_u64(), "post.json table.last.step = {step}");
}

#[test]
fn lines_and_probes_interpolate_linear_fields_exactly() {
    let root = scratch("post", "lines");
    let f: &Func = &|p, t| 2.0 * p[0] + 3.0 * p[1] - 1.0 + t;
    let run = root.join("run");
    analytic_run(&run, &[24, 16], &[1.2, 1.0], &[false, false], 3, &[0.0, 0.5, 1.0], &[("f", f)]);
    let pipeline = r#"
[[output]]
name = "diag"
kind = "line"
field = "f"
from = [0.0, 0.0]
to = [1.2, 1.0]
points = 31

[[output]]
name = "top"
kind = "line"
field = "f"
from = [0.0, 1.0]
to = [1.2, 1.0]
points = 7
walls = { yhi = 2.0 }
snapshots = "first"

[[output]]
name = "probes"
kind = "probe"
fields = ["f", "2*f"]
points = [[0.0, 0.0], [0.61, 0.33], [1.2, 1.0]]
"#;
    let rep = post(&run, pipeline, &root.join("out"), 1 << 30);
    // The line profiles read only the rows they touch.
    let text = std::fs::read_to_string(root.join("out/diag.csv")).unwrap();
    let mut n = 0;
    for line in text.lines().skip(1) {
        let c: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let (t, x, y, value) = (c[1], c[3], c[4], c[5]);
        assert!((value - (2.0 * x + 3.0 * y - 1.0 + t)).abs() < 1e-12, "{line}");
        n += 1;
    }
    assert_eq!(n, 31);
    // With a wall value the half cell next to the wall interpolates towards it.
    let top = std::fs::read_to_string(root.join("out/top.csv")).unwrap();
    for line in top.lines().skip(1) {
        let v: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
        assert_eq!(v, 2.0, "{line}");
    }
    let probes = std::fs::read_to_string(root.join("out/probes.csv")).unwrap();
    let mut lines = probes.lines();
    assert_eq!(lines.next().unwrap(), "step,time,probe0_f,probe0_2*f,probe1_f,probe1_2*f,probe2_f,probe2_2*f");
    for line in lines {
        let c: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let t = c[1];
        for (k, p) in [[0.0, 0.0], [0.61, 0.33], [1.2, 1.0]].iter().enumerate() {
            let exact = 2.0 * p[0] + 3.0 * p[1] - 1.0 + t;
            assert!((c[2 + 2 * k] - exact).abs() < 1e-12 && (c[3 + 2 * k] - 2.0 * exact).abs() < 1e-12, "{line}");
        }
    }
    assert!(rep.outputs.iter().all(|o| !o.2));
}

#[test]
fn time_statistics_fluctuations_and_time_reductions() {
    let root = scratch("post", "time");
    let times = [0.0, 0.3, 0.7, 1.1, 1.6];
    let g: &Func = &|p, t| t.sin() * p[0] + t + p[1];
    let run = root.join("run");
    analytic_run(&run, &[20, 18], &[1.0, 1.0], &[false, false], 2, &times, &[("g", g)]);
    let pipeline = r#"
[[derive]]
name = "fluct"
expr = "g - time_mean(g)"

[[output]]
name = "stats"
kind = "time_statistics"
fields = ["g", "ddx(g)"]
statistics = ["mean", "rms", "min", "max"]

[[output]]
name = "fl"
kind = "table"
columns = ["step", "time", "max(abs(fluct))", "max(fluct/time_rms(g))"]

[[output]]
name = "q"
kind = "scalars"
values = { gmax = "tmax(max(g))", gmean = "tmean(mean(g))", last = "tlast(time)", first = "tfirst(step)" }
"#;
    let rep = post(&run, pipeline, &root.join("out"), 1 << 30);
    assert_eq!(rep.passes, 2, "the fluctuation needs the mean first");
    let n = times.len() as f64;
    let ms = times.iter().map(|t| t.sin()).sum::<f64>() / n;
    let mt = times.iter().sum::<f64>() / n;
    let (mean, rms, dmean) = {
        let _g = HDF5_IN_PROCESS.read().unwrap_or_else(|e| e.into_inner());
        let r = H5Reader::open(&root.join("out/stats.h5")).unwrap();
        (r.read_all_f64("/g_mean").unwrap(), r.read_all_f64("/g_rms").unwrap(), r.read_all_f64("/ddx_g_mean").unwrap())
    };
    let (nx, h) = (20, 1.0 / 20.0);
    for (k, (m, s)) in mean.iter().zip(&rms).enumerate() {
        let (x, y) = ((k % nx) as f64 * h + h / 2.0, (k / nx) as f64 / 18.0 + 0.5 / 18.0);
        let vals: Vec<f64> = times.iter().map(|t| t.sin() * x + t + y).collect();
        let exact_rms = (vals.iter().map(|v| (v - (ms * x + mt + y)).powi(2)).sum::<f64>() / n).sqrt();
        assert!((m - (ms * x + mt + y)).abs() < 1e-13, "mean at {k}");
        assert!((s - exact_rms).abs() < 1e-13, "rms at {k}: {s} vs {exact_rms}");
        assert!((dmean[k] - ms).abs() < 1e-12, "time mean of ddx(g) at {k}");
    }
    assert!(root.join("out/stats.xdmf").exists() && root.join("out/stats_g_mean.png").exists());
    // max |g - mean g| at snapshot k is max over x of |(sin t_k - ms) x + t_k - mt|.
    let fl = std::fs::read_to_string(root.join("out/fl.csv")).unwrap();
    for (line, t) in fl.lines().skip(1).zip(times) {
        let c: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let exact = (0..nx).map(|i| ((t.sin() - ms) * (i as f64 + 0.5) * h + t - mt).abs()).fold(0.0, f64::max);
        assert!((c[2] - exact).abs() < 1e-13, "{line}");
    }
    let q = scalars(&root.join("out"), "q");
    assert_eq!(val(&q, "last"), 1.6);
    assert_eq!(val(&q, "first"), 0.0);
    let gmax = times.iter().map(|t| t.sin().max(0.0) * 0.975 + t + 17.5 / 18.0).fold(f64::MIN, f64::max);
    assert!((val(&q, "gmax") - gmax).abs() < 1e-12, "{} vs {gmax}", val(&q, "gmax"));
}

#[test]
fn the_cache_reads_nothing_for_an_unchanged_pipeline_and_only_the_new_part_after_an_addition() {
    let root = scratch("post", "cache");
    let u: &Func = &|p, t| p[0] * t;
    let v: &Func = &|p, _| p[1];
    let run = root.join("run");
    analytic_run(&run, &[16, 16], &[1.0, 1.0], &[false, false], 2, &[0.0, 1.0, 2.0], &[("u", u), ("v", v)]);
    let base = "[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"time\", \"max(u)\", \"mean(v)\"]\n";
    let out = root.join("out");
    let first = post(&run, base, &out, 1 << 30);
    assert_eq!(first.field_reads, 6);
    let again = post(&run, base, &out, 1 << 30);
    assert_eq!(again.field_reads, 0, "an unchanged pipeline reads no field");
    assert!(again.outputs[0].2, "served from the cache");
    let more = format!("{base}\n[[output]]\nname = \"b\"\nkind = \"scalars\"\nvalues = {{ m = \"max(u)\" }}\n");
    let third = post(&run, &more, &out, 1 << 30);
    assert_eq!(third.field_reads, 1, "only the new output's one field at the last snapshot");
    assert!(third.outputs[0].2 && !third.outputs[1].2);
    // A changed expression is a new key.
    let changed = base.replace("max(u)", "min(u)");
    assert_eq!(post(&run, &changed, &out, 1 << 30).field_reads, 6);
    // So is any other change to the output's table.
    let plotted = changed.replace("columns", "plot = true\ncolumns");
    assert_eq!(post(&run, &plotted, &out, 1 << 30).field_reads, 6);
    assert!(out.join("a.png").exists());
    // A deleted result file is recomputed.
    std::fs::remove_file(out.join("a.csv")).unwrap();
    assert_eq!(post(&run, &plotted, &out, 1 << 30).field_reads, 6);
}

#[test]
fn time_statistics_fold_batches_of_snapshots_bit_for_bit() {
    // 400 rows: with a memory bound that holds a whole snapshot, the executor folds
    // all 7 snapshots in one pass over the accumulators (thin pieces); a bound of 96
    // rows of a snapshot allows at most 3 per batch (on 2 threads: pieces of at least
    // a block per thread), which does not divide the 7 snapshots (batches of 2, 2 and
    // 3); a bound of 1 byte no batching at all. Every number must be the same to the bit, and agree with the
    // two-pass statistics computed here.
    let root = scratch("post", "fold");
    let times = [0.0, 0.3, 0.7, 1.1, 1.6, 2.0, 2.5];
    let g: &Func = &|p, t| t.sin() * p[0] + t + p[1];
    let h: &Func = &|p, t| (2.0 * t).cos() * p[1] * p[1] - p[0];
    let run = root.join("run");
    analytic_run(&run, &[24, 400], &[1.0, 1.0], &[false, false], 2, &times, &[("g", g), ("h", h)]);
    // Sources only (accumulated straight from the read buffers), beside per-snapshot
    // reductions and samples in the same batches.
    let direct = r#"
[[output]]
name = "stats"
kind = "time_statistics"
fields = ["g", "h"]
statistics = ["mean", "rms", "min", "max"]
plot = false

[[output]]
name = "tab"
kind = "table"
columns = ["step", "time", "max(g)", "mean(h)", "l2(g*h)"]

[[output]]
name = "probe"
kind = "probe"
fields = ["h"]
points = [[0.3, 0.2], [0.7, 0.9]]
plot = false
"#;
    // Computed fields, and a second pass that reads the first one's time mean.
    let computed = r#"
[[derive]]
name = "dg"
expr = "ddy(g)"

[[derive]]
name = "gh"
expr = "g*h"

[[derive]]
name = "fl"
expr = "g - time_mean(g)"

[[output]]
name = "stats"
kind = "time_statistics"
fields = ["dg", "gh", "fl"]
statistics = ["mean", "rms"]
plot = false
"#;
    let read = |out: &Path, names: &[&str]| -> Vec<Vec<f64>> {
        let _g = HDF5_IN_PROCESS.read().unwrap_or_else(|e| e.into_inner());
        let r = H5Reader::open(&out.join("stats.h5")).unwrap();
        names.iter().map(|n| r.read_all_f64(&format!("/{n}")).unwrap()).collect()
    };
    let direct_names = ["g_mean", "g_rms", "g_min", "g_max", "h_mean", "h_rms", "h_min", "h_max"];
    let computed_names = ["dg_mean", "dg_rms", "gh_mean", "gh_rms", "fl_mean", "fl_rms"];
    let bits = |v: &[Vec<f64>]| -> Vec<Vec<u64>> { v.iter().map(|d| d.iter().map(|x| x.to_bits()).collect()).collect() };
    let mut first: Option<(Vec<Vec<u64>>, String, String, Vec<Vec<u64>>)> = None;
    // 96 rows of the sources g and h: 24 values x 8 bytes x (3 x 2 + 1) each.
    for (k, memory) in [1usize << 30, 96 * 1344 + 1000, 1].into_iter().enumerate() {
        let out = root.join(format!("direct{k}"));
        let rep = post(&run, direct, &out, memory);
        if k == 0 && std::thread::available_parallelism().map_or(1, |n| n.get()) <= 12 {
            // Batched: more pieces than snapshots although one piece fits a snapshot.
            assert!(rep.pieces > times.len(), "{} pieces", rep.pieces);
        }
        let d = read(&out, &direct_names);
        let tab = std::fs::read_to_string(out.join("tab.csv")).unwrap();
        let probe = std::fs::read_to_string(out.join("probe.csv")).unwrap();
        let out = root.join(format!("computed{k}"));
        let rep = post(&run, computed, &out, memory);
        assert_eq!(rep.passes, 2, "the fluctuation needs the mean first");
        let c = read(&out, &computed_names);
        if k == 0 {
            // Against two-pass statistics of the analytic values.
            let n = times.len() as f64;
            let (nx, ny) = (24, 400);
            for cell in 0..nx * ny {
                let (x, y) = ((cell % nx) as f64 / nx as f64 + 0.5 / nx as f64, (cell / nx) as f64 / ny as f64 + 0.5 / ny as f64);
                for (f, base) in [(g, 0), (h, 4)] {
                    let vals: Vec<f64> = times.iter().map(|&t| f([x, y, 0.0], t)).collect();
                    let mean = vals.iter().sum::<f64>() / n;
                    let rms = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                    assert!((d[base][cell] - mean).abs() < 1e-13, "{}: {} vs {mean}", direct_names[base], d[base][cell]);
                    assert!((d[base + 1][cell] - rms).abs() < 1e-13, "{}: {} vs {rms}", direct_names[base + 1], d[base + 1][cell]);
                    // (The writer's cell centres may differ from these in the last bit.)
                    assert!((d[base + 2][cell] - vals.iter().copied().fold(f64::INFINITY, f64::min)).abs() < 1e-14);
                    assert!((d[base + 3][cell] - vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)).abs() < 1e-14);
                }
                let gh: Vec<f64> = times.iter().map(|&t| g([x, y, 0.0], t) * h([x, y, 0.0], t)).collect();
                let mean = gh.iter().sum::<f64>() / n;
                let rms = (gh.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                assert!((c[2][cell] - mean).abs() < 1e-13 && (c[3][cell] - rms).abs() < 1e-13, "g*h at {cell}");
                // ddy(g) = 1 (exact differences of a linear function), no fluctuation.
                assert!((c[0][cell] - 1.0).abs() < 1e-11 && c[1][cell] < 1e-11, "ddy(g) at {cell}: {} {}", c[0][cell], c[1][cell]);
                // The fluctuation about the time mean: mean 0, the same rms as g.
                assert!(c[4][cell].abs() < 1e-13 && (c[5][cell] - d[1][cell]).abs() < 1e-13, "fluctuation at {cell}");
            }
        }
        let now = (bits(&d), tab, probe, bits(&c));
        match &first {
            None => first = Some(now),
            Some(f) => assert!(*f == now, "memory bound {memory}: results differ from the batched run"),
        }
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let o = output_of(Command::new(EXE).args(args));
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn peak_memory_stays_flat_as_the_snapshot_count_doubles() {
    let root = scratch("post", "memory");
    let g: &Func = &|p, t| (p[0] * t).sin() + p[1];
    let pipeline = root.join("p.toml");
    std::fs::write(
        &pipeline,
        "[[output]]\nname = \"s\"\nkind = \"time_statistics\"\nfields = [\"g\", \"g*g\"]\nstatistics = [\"mean\", \"rms\"]\n",
    )
    .unwrap();
    let mut peaks = Vec::new();
    for n in [8, 16] {
        let run = root.join(format!("run{n}"));
        let times: Vec<f64> = (0..n).map(|k| k as f64 * 0.1).collect();
        analytic_run(&run, &[384, 384], &[1.0, 1.0], &[false, false], 2, &times, &[("g", g)]);
        let out = run.join("post");
        let (code, so, se) = cli(&["post", run.to_str().unwrap(), pipeline.to_str().unwrap(), "--quiet", "--memory", "4"]);
        assert_eq!(code, 0, "{so}{se}");
        let j: Value = serde_json::from_str(&std::fs::read_to_string(out.join("post.json")).unwrap()).unwrap();
        peaks.push(j["peak_rss_mib"].as_f64().unwrap());
    }
    // One snapshot field is 1.1 MiB; keeping every snapshot would add 8 fields (9 MiB)
    // or more. Allow 2 MiB of allocator noise.
    assert!(peaks[1] - peaks[0] < 2.0, "peak RSS {:.1} MiB with 8 snapshots, {:.1} MiB with 16", peaks[0], peaks[1]);
}

#[test]
fn bad_input_is_exit_2_with_file_line_and_column() {
    let root = scratch("post", "bad");
    let f: &Func = &|p, _| p[0];
    let run = root.join("run");
    analytic_run(&run, &[8, 8], &[1.0, 1.0], &[false, false], 1, &[0.0], &[("temperature", f)]);
    let cases: &[(&str, &str)] = &[
        ("[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"max(temprature)\"]\n", "4:17: unknown name `temprature`"),
        ("[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"maxx(temperature)\"]\n", "did you mean `max`"),
        ("[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"temperature\"]\n", "is a field"),
        ("[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"max(temperature, 1, 2)\"]\n", "max() takes"),
        ("[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"max(temperature\"]\n", "4:28: in expression"),
        ("[[output]]\nname = \"a\"\nkind = \"line\"\nfield = \"temperature\"\nfrom = [0, 0]\nto = [2, 1]\n", "outside the domain"),
        ("[[output]]\nname = \"a\"\nkind = \"scalars\"\nvalues = { m = \"tmax(temperature)\" }\n", "tmax() reduces one number per snapshot"),
        ("[[output]]\nname = \"a\"\nkind = \"scalars\"\nvalues = { m = \"max(ddz(temperature))\" }\n", "along z in a 2D run"),
        ("[source]\nfields = [\"temperature\", \"pressure\"]\n[[output]]\nname = \"a\"\nkind = \"scalars\"\nvalues = { m = \"max(x)\" }\n", "2:27: source.fields: the run has no field `pressure`"),
        ("[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"max(x)\"]\nsnapshots = [5, 9]\n", "selects no snapshot"),
        ("[[output]]\nname = \"a\"\nkind = \"map\"\nfeld = \"x\"\n", "4:1: output `a`: unknown key `feld`"),
        ("[[derive]]\nname = \"b\"\nexpr = \"c + 1\"\n[[derive]]\nname = \"c\"\nexpr = \"x\"\n[[output]]\nname = \"a\"\nkind = \"scalars\"\nvalues = { m = \"max(b)\" }\n", "derived further down"),
        ("[[output]]\nname = \"a\"\nkind = \"line\"\nfield = \"temperature\"\nfrom = [0, 0]\nto = [1, 1]\nreference = { file = \"nope.csv\" }\n", "nope.csv"),
        ("[[output]]\nname = \"a\"\nkind = \"probe\"\nfields = [\"temperature\"]\npoints = [[0.5, 0.5, 0.5]]\n", "a point of 3 coordinates in a 2D run"),
    ];
    for (k, (text, want)) in cases.iter().enumerate() {
        let p = root.join(format!("bad{k}.toml"));
        std::fs::write(&p, text).unwrap();
        let (code, so, se) = cli(&["post", run.to_str().unwrap(), p.to_str().unwrap(), "--quiet"]);
        assert_eq!(code, 2, "case {k}: {so}{se}");
        assert!(se.contains(want), "case {k}: wanted {want:?} in\n{se}");
        let name = p.to_str().unwrap();
        assert!(se.contains(&format!("{name}:")) || want.contains("nope"), "case {k}: no file:line:col in\n{se}");
        assert!(!se.contains("panicked"), "{se}");
    }
    // A missing run is exit 2; a truncated output.h5 exit 3, and what was written
    // before stays.
    let good = root.join("good.toml");
    std::fs::write(&good, "[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"max(temperature)\"]\n").unwrap();
    let (code, _, se) = cli(&["post", root.join("nope").to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(code, 2, "{se}");
    assert!(se.contains("no such run directory"), "{se}");
    let (code, _, se) = cli(&["post", run.to_str().unwrap(), good.to_str().unwrap(), "-q"]);
    assert_eq!(code, 0, "{se}");
    let before = std::fs::read(run.join("post/a.csv")).unwrap();
    let bytes = std::fs::read(run.join("output.h5")).unwrap();
    std::fs::write(run.join("output.h5"), &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, se) = cli(&["post", run.to_str().unwrap(), good.to_str().unwrap(), "-q", "--no-cache"]);
    assert!(code == 3 || code == 2, "truncated file: exit {code}: {se}");
    assert!(se.contains("output.h5"), "{se}");
    assert_eq!(std::fs::read(run.join("post/a.csv")).unwrap(), before, "an earlier result stays intact");
}

fn heat_case(dir: &Path) -> PathBuf {
    let case = dir.join("heat.toml");
    std::fs::write(
        &case,
        r#"[case]
name = "heat"
model = "heat"
[mesh]
cells = [40, 36]
lower = [0.0, 0.0]
upper = [1.0, 1.0]
[physics]
diffusivity = 0.1
[boundary]
xlo = { type = "dirichlet", value = "0" }
xhi = { type = "dirichlet", value = "0" }
ylo = { type = "dirichlet", value = "0" }
yhi = { type = "neumann", gradient = "0" }
[initial]
temperature = "sin(pi*x)*sin(pi*y)"
[control]
max_steps = 60
[output]
every = 20
"#,
    )
    .unwrap();
    case
}

#[test]
fn the_same_results_from_runs_on_1_and_3_mpi_ranks() {
    let root = scratch("post", "mpi");
    let case = heat_case(&root);
    let pipeline = root.join("p.toml");
    std::fs::write(
        &pipeline,
        "[[derive]]\nname = \"g\"\nexpr = \"grad_mag(temperature)\"\n[[output]]\nname = \"t\"\nkind = \"table\"\ncolumns = [\"step\", \"time\", \"max(g)\", \"l2(laplacian(temperature))\"]\n[[output]]\nname = \"l\"\nkind = \"line\"\nfield = \"g\"\nfrom = [0.1, 0.2]\nto = [0.9, 0.7]\n[[output]]\nname = \"m\"\nkind = \"time_statistics\"\nfields = [\"temperature\"]\n",
    )
    .unwrap();
    let mut texts = Vec::new();
    for ranks in [1, 3] {
        let out = root.join(format!("run{ranks}"));
        let o = output_of(tessera_on(ranks).arg("run").arg(&case).arg("--out").arg(&out).arg("--quiet"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = output_of(tessera_on(0).args(["post", out.to_str().unwrap(), pipeline.to_str().unwrap(), "-q"]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mean = {
            let _g = HDF5_IN_PROCESS.read().unwrap_or_else(|e| e.into_inner());
            H5Reader::open(&out.join("post/m.h5")).unwrap().read_all_f64("/temperature_mean").unwrap()
        };
        texts.push((std::fs::read(out.join("post/t.csv")).unwrap(), std::fs::read(out.join("post/l.csv")).unwrap(), mean));
    }
    assert!(texts[0] == texts[1], "post results differ between 1-rank and 3-rank runs");
    let t = String::from_utf8(texts[0].0.clone()).unwrap();
    assert_eq!(t.lines().count(), 5, "{t}");
}

#[test]
fn graph_export_shows_shared_nodes_once() {
    let root = scratch("post", "graph");
    let u: &Func = &|p, _| p[0];
    let v: &Func = &|p, _| p[1];
    let run = root.join("run");
    analytic_run(&run, &[8, 8], &[1.0, 1.0], &[false, false], 1, &[0.0], &[("u", u), ("v", v)]);
    let p = root.join("p.toml");
    std::fs::write(&p, "[[derive]]\nname = \"unused\"\nexpr = \"u*v*7\"\n[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"max(abs(vorticity(u, v)))\", \"mean(vorticity(u, v))\", \"l2(ddx(v) - ddy(u))\"]\n").unwrap();
    let dot = root.join("plan.dot");
    let (code, so, se) = cli(&["post", run.to_str().unwrap(), p.to_str().unwrap(), "-q", "--graph", dot.to_str().unwrap()]);
    assert_eq!(code, 0, "{se}");
    let d = std::fs::read_to_string(&dot).unwrap();
    assert_eq!(d.matches("label=\"read u").count(), 1, "{d}");
    assert_eq!(d.matches("label=\"d/dx").count(), 1, "vorticity written three ways is one stencil: {d}");
    assert!(!d.contains("label=\"7"), "the unused derive is culled: {d}");
    assert!(so.contains("culled"), "{so}");
}

#[test]
fn spectra_slices_maps_and_derived_field_files() {
    let root = scratch("post", "files");
    const TAU: f64 = 2.0 * std::f64::consts::PI;
    // A pure sine of wavenumber 3 along periodic x: all power (A²/2 = 0.5) in bin 3.
    let f: &Func = &|p, t| (TAU * 3.0 * p[0]).sin() + t * p[2];
    let g: &Func = &|p, _| p[0] + 2.0 * p[1] - p[2];
    let run = root.join("run");
    analytic_run(&run, &[32, 12, 10], &[1.0, 1.0, 1.0], &[true, false, false], 2, &[0.0, 1.0], &[("f", f), ("g", g)]);
    let pipeline = r#"
[[output]]
name = "spec"
kind = "spectrum"
field = "f - t*z"
axis = "x"

[[output]]
name = "cut"
kind = "slice"
fields = ["g", "2*g"]
axis = "z"
at = 0.5

[[output]]
name = "picture"
kind = "map"
field = "g"
axis = "y"
at = 0.25

[[output]]
name = "derived"
kind = "field"
fields = { gy = "ddy(g)", h = "g*g" }
"#;
    let out = root.join("out");
    post(&run, pipeline, &out, 1 << 30);
    let spec = std::fs::read_to_string(out.join("spec.csv")).unwrap();
    for line in spec.lines().skip(1) {
        let c: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let want = if c[0] == 3.0 { 0.5 } else { 0.0 };
        assert!((c[2] - want).abs() < 1e-12, "{line}");
        assert!((c[1] - TAU * c[0]).abs() < 1e-12, "wavenumber 2 pi k / L: {line}");
    }
    assert!(out.join("spec.png").exists() && out.join("picture.png").exists() && out.join("cut.png").exists());
    let _g = HDF5_IN_PROCESS.read().unwrap_or_else(|e| e.into_inner());
    // z = 0.5 lies on the face between planes 4 and 5: the slice is their mean, exact
    // for a linear field.
    let cut = H5Reader::open(&out.join("cut.h5")).unwrap();
    let plane = cut.read_all_f64("/snapshots/00000010/g").unwrap();
    assert_eq!(cut.shape("/snapshots/00000010/g").unwrap(), vec![12, 32]);
    for (k, v) in plane.iter().enumerate() {
        let (x, y) = (((k % 32) as f64 + 0.5) / 32.0, ((k / 32) as f64 + 0.5) / 12.0);
        assert!((v - (x + 2.0 * y - 0.5)).abs() < 1e-13, "{k}: {v}");
    }
    let d = H5Reader::open(&out.join("derived.h5")).unwrap();
    assert_eq!(d.attr_str("/", "format").unwrap(), "tessera");
    assert_eq!(d.members("/snapshots").unwrap(), vec!["00000000", "00000010"]);
    let gy = d.read_all_f64("/snapshots/00000010/gy").unwrap();
    assert!(gy.len() == 32 * 12 * 10 && gy.iter().all(|v| (v - 2.0).abs() < 1e-12), "ddy of a linear field is exact");
    assert_eq!(d.read_all_f64("/mesh/x").unwrap().len(), 32);
    let x = std::fs::read_to_string(out.join("derived.xdmf")).unwrap();
    assert!(x.contains("derived.h5:/snapshots/00000010/h") && x.matches("<Grid Name=\"step_").count() == 2, "{x}");
}
