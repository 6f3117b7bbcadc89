//! The run directory: output.h5 snapshots, output.xdmf, monitor.csv, summary.json
//! and checkpoints, in the layout of DESIGN.md and docs/FORMAT.md.
use crate::case::Case;
use crate::error::{Result, RunError};
use decomp::io::H5File;
use decomp::{BlockLayout, Comm, Field};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the on-disk format written by this build (docs/FORMAT.md).
pub const FORMAT_VERSION: &str = "1.0";

/// Name of the snapshot group of `step`.
pub fn snapshot_group(step: u64) -> String {
    format!("/snapshots/{step:08}")
}

/// Writes `text` to `path` through a temporary file and a rename, so a reader never
/// sees a half-written file.
pub fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Rank 0 writes `bytes` to `path` atomically; every rank returns the same result.
/// Use this for every rank-0 file, so a failed write (disk full, permissions) stops all
/// ranks together instead of leaving the others waiting in the next collective.
pub fn write_on_rank0(comm: &dyn Comm, path: &Path, bytes: impl FnOnce() -> Vec<u8>) -> Result<()> {
    let res = if comm.rank() == 0 { write_atomic(path, &bytes()).map_err(|e| format!("{}: {e}", path.display())) } else { Ok(()) };
    decomp::comm::agree(comm, res, |m| m).map_err(RunError::Failed)
}

/// The Slurm job a run belongs to, for summary.json: `None` outside Slurm, else
/// `job_id`, `restarts` (times the job was requeued: `SLURM_RESTART_COUNT`), and
/// `array_job_id`/`array_task_id`, `partition`, `nodes` when Slurm sets them. `var`
/// reads an environment variable (`std::env::var(..).ok()`, or a map in tests).
pub fn slurm_info(var: impl Fn(&str) -> Option<String>) -> Option<serde_json::Value> {
    let job_id = var("SLURM_JOB_ID").filter(|v| !v.is_empty())?;
    let restarts: u64 = var("SLURM_RESTART_COUNT").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let mut m = serde_json::Map::new();
    m.insert("job_id".into(), job_id.into());
    m.insert("restarts".into(), restarts.into());
    for (key, env) in [
        ("array_job_id", "SLURM_ARRAY_JOB_ID"),
        ("array_task_id", "SLURM_ARRAY_TASK_ID"),
        ("partition", "SLURM_JOB_PARTITION"),
        ("nodes", "SLURM_JOB_NODELIST"),
    ] {
        if let Some(v) = var(env).filter(|v| !v.is_empty()) {
            m.insert(key.into(), v.into());
        }
    }
    Some(serde_json::Value::Object(m))
}

/// The text of summary.json: `summary`, plus a `slurm` object when the run is part of
/// a Slurm job ([`slurm_info`]).
pub fn summary_bytes(mut summary: serde_json::Value) -> Vec<u8> {
    if let (Some(info), Some(m)) = (slurm_info(|k| std::env::var(k).ok()), summary.as_object_mut()) {
        m.insert("slurm".into(), info);
    }
    serde_json::to_string_pretty(&summary).expect("json serialises").into_bytes()
}

/// Writes the root attributes, `/mesh` and `/decomposition` of a new file.
pub fn write_header(h5: &H5File, comm: &dyn Comm, case: &Case, layout: &BlockLayout, kind: &str) -> Result<()> {
    let g = &layout.grid;
    let d = g.dims;
    h5.set_attr_str(comm, "/", "format", "tessera")?;
    h5.set_attr_str(comm, "/", "format_version", FORMAT_VERSION)?;
    h5.set_attr_str(comm, "/", "kind", kind)?;
    h5.set_attr_str(comm, "/", "model", &case.model)?;
    h5.set_attr_u64(comm, "/", "dims", &[d as u64])?;
    h5.set_attr_str(comm, "/", "case", &case.resolved)?;
    h5.create_group(comm, "mesh")?;
    let cells: Vec<u64> = g.cells[..d].iter().map(|&c| c as u64).collect();
    h5.set_attr_u64(comm, "/mesh", "cells", &cells)?;
    h5.set_attr_f64(comm, "/mesh", "lower", &g.lower[..d])?;
    h5.set_attr_f64(comm, "/mesh", "upper", &g.upper[..d])?;
    h5.set_attr_f64(comm, "/mesh", "spacing", &g.spacing()[..d])?;
    let periodic: Vec<u64> = g.periodic[..d].iter().map(|&p| p as u64).collect();
    h5.set_attr_u64(comm, "/mesh", "periodic", &periodic)?;
    for (a, name) in ["x", "y", "z"].iter().enumerate().take(d) {
        let c: Vec<f64> = (0..g.cells[a]).map(|i| g.centre(a, i)).collect();
        h5.write_vec_f64(comm, &format!("/mesh/{name}"), &c)?;
    }
    h5.create_group(comm, "decomposition")?;
    let mut rows = Vec::with_capacity(layout.nranks() * 2 * d);
    for b in &layout.blocks {
        rows.extend(b.lo[..d].iter().map(|&x| x as u64));
        rows.extend(b.shape()[..d].iter().map(|&x| x as u64));
    }
    h5.write_table_u64(comm, "/decomposition/blocks", layout.nranks(), 2 * d, &rows)?;
    let pg: Vec<u64> = layout.procs[..d].iter().map(|&p| p as u64).collect();
    h5.set_attr_u64(comm, "/decomposition", "process_grid", &pg)?;
    h5.create_group(comm, "snapshots")?;
    Ok(())
}

/// Writes one snapshot group with `fields` into an open file.
pub fn write_snapshot(h5: &H5File, comm: &dyn Comm, layout: &BlockLayout, step: u64, time: f64, fields: &[(&str, &Field)]) -> Result<()> {
    let grp = snapshot_group(step);
    h5.create_group(comm, &grp)?;
    h5.set_attr_u64(comm, &grp, "step", &[step])?;
    h5.set_attr_f64(comm, &grp, "time", &[time])?;
    for (name, f) in fields {
        h5.write_field(comm, &format!("{grp}/{name}"), layout, f)?;
    }
    Ok(())
}

/// The XDMF 3 file that lets ParaView/VisIt open every snapshot as a time series.
///
/// A 2D mesh is described as a 3D mesh one cell thick (thickness min(dx, dy)):
/// VTK's XDMF reader places a `2DCoRectMesh` in the y-z plane, while a single layer
/// of cells lands in the x-y plane with the right bounds. The datasets stay 2D.
pub fn xdmf(layout: &BlockLayout, h5_name: &str, snapshots: &[(u64, f64)], fields: &[String]) -> String {
    let g = &layout.grid;
    let h = g.spacing();
    let grids: Vec<decomp::xdmf::XdmfGrid> = snapshots
        .iter()
        .map(|(step, time)| decomp::xdmf::XdmfGrid {
            name: format!("step_{step:08}"),
            time: *time,
            fields: fields.iter().map(|f| (f.clone(), format!("{}/{f}", snapshot_group(*step)))).collect(),
        })
        .collect();
    decomp::xdmf::document(g.dims, &g.cells, &g.lower, &h, h5_name, &grids)
}

/// Rank 0's monitor.csv writer: one row per step. A write error is kept and reported
/// by the next (collective) [`Monitor::flush`], so all ranks stop at the same point.
pub struct Monitor {
    out: Option<std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
    error: Option<String>,
    /// Reused line buffer (no allocation per step).
    line: String,
}

impl Monitor {
    /// Creates monitor.csv with `columns` (rank 0 only), or reopens it for appending
    /// after a restart, keeping rows up to `keep_through` step.
    pub fn open(comm: &dyn Comm, path: &Path, columns: &[String], keep_through: Option<u64>) -> Result<Self> {
        let res = if comm.rank() == 0 {
            (|| -> std::io::Result<_> {
                let mut kept = String::new();
                let header = columns.join(",");
                if let (Some(last), Ok(old)) = (keep_through, std::fs::read_to_string(path)) {
                    if old.lines().next() != Some(header.as_str()) {
                        // The restarted run records other columns (e.g. other norms):
                        // keep the old file whole beside the new one, never mix them.
                        let aside = path.with_file_name(format!("monitor.before_step_{last:08}.csv"));
                        std::fs::rename(path, &aside)?;
                        eprintln!("note: monitor columns changed; the earlier rows are kept in {}", aside.display());
                    }
                }
                if let (Some(last), Ok(old)) = (keep_through, std::fs::read_to_string(path)) {
                    for (i, line) in old.lines().enumerate() {
                        let step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
                        if i == 0 || step.is_some_and(|s| s <= last) {
                            kept.push_str(line);
                            kept.push('\n');
                        }
                    }
                }
                if kept.is_empty() {
                    kept = header + "\n";
                }
                write_atomic(path, kept.as_bytes())?;
                let f = std::fs::OpenOptions::new().append(true).open(path)?;
                Ok(Some(std::io::BufWriter::new(f)))
            })()
            .map_err(|e| format!("{}: cannot write monitor: {e}", path.display()))
        } else {
            Ok(None)
        };
        let out = decomp::comm::agree(comm, res, |m| m).map_err(RunError::Failed)?;
        Ok(Monitor { out, path: path.to_path_buf(), error: None, line: String::with_capacity(32 * columns.len()) })
    }

    /// Appends one row (rank 0; a no-op elsewhere).
    pub fn row(&mut self, values: &[f64], step: u64) {
        if let (Some(out), None) = (&mut self.out, &self.error) {
            use std::fmt::Write as _;
            let line = &mut self.line;
            line.clear();
            let _ = write!(line, "{step}");
            for v in values {
                // Shortest representation that reads back to the same double.
                let _ = write!(line, ",{v:e}");
            }
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()) {
                self.error = Some(format!("{}: {e}", self.path.display()));
            }
        }
    }

    /// Flushes buffered rows to disk. Collective: every rank learns of a write error.
    pub fn flush(&mut self, comm: &dyn Comm) -> Result<()> {
        if let (Some(out), None) = (&mut self.out, &self.error) {
            if let Err(e) = out.flush() {
                self.error = Some(format!("{}: {e}", self.path.display()));
            }
        }
        let res = match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        };
        decomp::comm::agree(comm, res, |m| m).map_err(RunError::Failed)
    }
}

/// Path of the checkpoint of `step` in `run_dir`.
pub fn checkpoint_path(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step_{step:08}.h5"))
}

/// Writes a checkpoint atomically: to `step_N.h5.tmp`, closed on every rank, then
/// renamed by rank 0.
pub fn write_checkpoint(
    comm: &dyn Comm,
    case: &Case,
    layout: &BlockLayout,
    run_dir: &Path,
    step: u64,
    time: f64,
    dt: f64,
    fields: &[(&str, &Field)],
) -> Result<PathBuf> {
    let path = checkpoint_path(run_dir, step);
    let tmp = path.with_extension("h5.tmp");
    let h5 = H5File::create(comm, &tmp)?;
    write_header(&h5, comm, case, layout, "checkpoint")?;
    write_snapshot(&h5, comm, layout, step, time, fields)?;
    h5.create_group(comm, "state")?;
    h5.set_attr_u64(comm, "/state", "step", &[step])?;
    h5.set_attr_f64(comm, "/state", "time", &[time])?;
    h5.set_attr_f64(comm, "/state", "dt", &[dt])?;
    h5.close(comm)?;
    let res = if comm.rank() == 0 { std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display())) } else { Ok(()) };
    decomp::comm::agree(comm, res, |m| m).map_err(RunError::Failed)?;
    Ok(path)
}

/// Checks that an existing RUN_DIR/output.h5 belongs to this case (same mesh and
/// domain) before a restart in place touches anything. Collective.
pub fn check_existing_output(comm: &dyn Comm, layout: &BlockLayout, path: &Path) -> Result<()> {
    let old = H5File::open(comm, path)?;
    // Another mesh means another run's output, which a restart must neither mix into
    // its own nor delete.
    let d = layout.grid.dims;
    let cells: Vec<u64> = layout.grid.cells[..d].iter().map(|&c| c as u64).collect();
    let same = old.attr_u64(comm, "/mesh", "cells").ok() == Some(cells.clone())
        && old.attr_f64(comm, "/mesh", "lower").ok().as_deref() == Some(&layout.grid.lower[..d])
        && old.attr_f64(comm, "/mesh", "upper").ok().as_deref() == Some(&layout.grid.upper[..d]);
    if !same {
        return Err(RunError::Usage(format!(
            "{} holds the output of a run on another mesh than this case's {cells:?} cells; \
             restart into another directory with --out (nothing was changed)",
            path.display()
        )));
    }
    old.close(comm)?;
    Ok(())
}

/// Rebuilds RUN_DIR/output.h5 for a restart in place: a new file with this run's
/// header (case, decomposition) receives every snapshot up to `last_step` from the old
/// one (read on the new layout), then replaces it by rename. Returns the snapshots
/// kept as (step, time). The old file stays intact until the new one is complete.
pub fn rebuild_output(comm: &dyn Comm, case: &Case, layout: &BlockLayout, path: &Path, last_step: u64) -> Result<Vec<(u64, f64)>> {
    let tmp = path.with_extension("h5.tmp");
    let old = H5File::open(comm, path)?;
    let new = H5File::create(comm, &tmp)?;
    write_header(&new, comm, case, layout, "output")?;
    let mut kept = Vec::new();
    let (dims, block) = (layout.grid.dims, layout.blocks[comm.rank()]);
    for name in old.members(comm, "/snapshots")? {
        let Ok(step) = name.parse::<u64>() else { continue };
        if step > last_step {
            continue;
        }
        let grp = snapshot_group(step);
        let time = old.attr_f64(comm, &grp, "time")?[0];
        let mut fields = Vec::new();
        for f in old.members(comm, &grp)? {
            let mut field = Field::zeros(block, dims, 0);
            old.read_field(comm, &format!("{grp}/{f}"), &mut field)?;
            fields.push((f, field));
        }
        let refs: Vec<(&str, &Field)> = fields.iter().map(|(n, f)| (n.as_str(), f)).collect();
        write_snapshot(&new, comm, layout, step, time, &refs)?;
        kept.push((step, time));
    }
    new.close(comm)?;
    old.close(comm)?;
    let res = if comm.rank() == 0 { std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display())) } else { Ok(()) };
    decomp::comm::agree(comm, res, |m| m).map_err(RunError::Failed)?;
    Ok(kept)
}

/// Removes checkpoints later than `step` from RUN_DIR: after a restart from an earlier
/// checkpoint they belong to the abandoned continuation, not to this run.
pub fn remove_checkpoints_after(comm: &dyn Comm, run_dir: &Path, step: u64) -> Result<()> {
    let res = if comm.rank() == 0 {
        (|| -> std::io::Result<()> {
            for e in std::fs::read_dir(run_dir.join("checkpoints"))? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let s = name.strip_prefix("step_").and_then(|r| r.strip_suffix(".h5")).and_then(|n| n.parse::<u64>().ok());
                if s.is_some_and(|s| s > step) {
                    std::fs::remove_file(e.path())?;
                }
            }
            Ok(())
        })()
        .map_err(|e| format!("{}: {e}", run_dir.display()))
    } else {
        Ok(())
    };
    decomp::comm::agree(comm, res, |m| m).map_err(RunError::Failed)
}

/// State read back from a checkpoint.
pub struct Restart {
    /// Step of the checkpoint.
    pub step: u64,
    /// Time of the checkpoint.
    pub time: f64,
}

/// Reads a checkpoint's `fields` (by dataset name, into this rank's block, any layout).
/// Errors that come from the user's choice of file (missing, not a checkpoint, other
/// mesh, another model's state) exit with 2.
pub fn read_checkpoint(comm: &dyn Comm, case: &Case, path: &Path, fields: &mut [(&str, &mut Field)]) -> Result<Restart> {
    let h5 = H5File::open(comm, path).map_err(|e| RunError::Usage(format!("--restart: {e}")))?;
    let bad = |m: String| RunError::Usage(format!("--restart {}: {m}", path.display()));
    let format = h5.attr_str(comm, "/", "format").map_err(|_| bad("not a tessera file (no `format` attribute)".into()))?;
    let kind = h5.attr_str(comm, "/", "kind").unwrap_or_default();
    if format != "tessera" || kind != "checkpoint" {
        return Err(bad(format!("not a tessera checkpoint (format {format:?}, kind {kind:?})")));
    }
    let version = h5.attr_str(comm, "/", "format_version")?;
    if version.split('.').next() != FORMAT_VERSION.split('.').next() {
        return Err(bad(format!("format version {version} cannot be read by this build (reads {FORMAT_VERSION})")));
    }
    let cells = h5.attr_u64(comm, "/mesh", "cells")?;
    let want: Vec<u64> = case.grid.cells[..case.grid.dims].iter().map(|&c| c as u64).collect();
    if cells != want {
        return Err(bad(format!("checkpoint mesh has cells {cells:?} but the case has {want:?}")));
    }
    let lower = h5.attr_f64(comm, "/mesh", "lower")?;
    let upper = h5.attr_f64(comm, "/mesh", "upper")?;
    if lower != case.grid.lower[..case.grid.dims] || upper != case.grid.upper[..case.grid.dims] {
        return Err(bad(format!("checkpoint domain {lower:?}..{upper:?} differs from the case's")));
    }
    let step = h5.attr_u64(comm, "/state", "step")?[0];
    let time = h5.attr_f64(comm, "/state", "time")?[0];
    let have = h5.members(comm, &snapshot_group(step))?;
    if let Some((missing, _)) = fields.iter().find(|(n, _)| !have.iter().any(|h| h == n)) {
        return Err(bad(format!(
            "it holds {} but a {} run needs {missing} (a checkpoint of another model?)",
            if have.is_empty() { "no fields".to_string() } else { have.join(", ") },
            case.model
        )));
    }
    for (name, f) in fields.iter_mut() {
        h5.read_field(comm, &format!("{}/{name}", snapshot_group(step)), f)?;
    }
    h5.close(comm)?;
    Ok(Restart { step, time })
}

#[cfg(test)]
mod tests {
    use super::*;
    use decomp::Grid;

    #[test]
    fn xdmf_lists_snapshots_with_reversed_axes() {
        let g = Grid::new(&[4, 3], &[0.0, -1.0], &[1.0, 1.0], &[false, false]);
        let l = BlockLayout::new(&g, &[1, 1], 1).unwrap();
        let x = xdmf(&l, "output.h5", &[(0, 0.0), (10, 0.5)], &["temperature".into()]);
        // 2D is written as one layer of cells: nodes (z, y, x) = (2, 4, 5).
        assert!(x.contains("3DCoRectMesh\" Dimensions=\"2 4 5\""), "{x}");
        assert!(x.contains("Dimensions=\"1 3 4\" NumberType"), "{x}");
        assert!(x.contains(">0e0 -1e0 0e0<") && x.contains(">2.5e-1 6.666666666666666e-1 2.5e-1<"), "{x}");
        assert!(x.contains("output.h5:/snapshots/00000010/temperature"));
        assert!(x.contains("<Time Value=\"5e-1\"/>"));
        assert_eq!(x.matches("<Grid Name=\"step_").count(), 2);
    }

    #[test]
    fn rank0_write_failure_reaches_every_rank() {
        let results = decomp::comm::ThreadComm::run(3, |c| write_on_rank0(c, Path::new("/nonexistent-dir/x.json"), || b"{}".to_vec()));
        for r in results {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("/nonexistent-dir/x.json"), "{e}");
        }
    }

    #[test]
    fn slurm_info_records_the_job_and_its_restarts() {
        let env =
            |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(slurm_info(env(&[])), None);
        assert_eq!(slurm_info(env(&[("SLURM_JOB_ID", "")])), None);
        let first = slurm_info(env(&[("SLURM_JOB_ID", "42"), ("SLURM_JOB_PARTITION", "debug")])).unwrap();
        assert_eq!(first, serde_json::json!({ "job_id": "42", "restarts": 0, "partition": "debug" }));
        let again = slurm_info(env(&[("SLURM_JOB_ID", "43"), ("SLURM_RESTART_COUNT", "2"), ("SLURM_ARRAY_TASK_ID", "7")])).unwrap();
        assert_eq!(again["restarts"], 2);
        assert_eq!(again["array_task_id"], "7");
    }

    #[test]
    fn atomic_write_leaves_no_temp() {
        let d = std::env::temp_dir().join(format!("tessera-out-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("summary.json");
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
        assert!(!d.join("summary.json.tmp").exists());
    }
}
