//! The reader of a RUN_DIR: `output.h5` metadata (docs/FORMAT.md) without reading any
//! field, and counted hyperslab reads of field rows.
use decomp::h5read::{read_raw_rows, H5Reader, RawChunks};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The format major version this reader understands.
pub const FORMAT_MAJOR: &str = "1";

/// One snapshot group.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Step number.
    pub step: u64,
    /// Simulated time.
    pub time: f64,
    /// Field datasets it holds, sorted.
    pub fields: Vec<String>,
}

/// Metadata of a run's output.h5.
pub struct Run {
    /// The RUN_DIR.
    pub dir: PathBuf,
    /// Its output.h5.
    pub file: PathBuf,
    /// The case's model.
    pub model: String,
    /// 2 or 3.
    pub dims: usize,
    /// Cells per axis, x first (unused axes 1).
    pub cells: [usize; 3],
    /// Lower corner (unused axes 0).
    pub lower: [f64; 3],
    /// Cell spacing per axis (unused axes 1).
    pub spacing: [f64; 3],
    /// Periodic axes.
    pub periodic: [bool; 3],
    /// Snapshots in step order.
    pub snapshots: Vec<Snapshot>,
    /// Rows (along the slowest axis) of the HDF5 chunks: reads are aligned to them.
    pub chunk_rows: usize,
    /// Identity of the file's contents for cache keys: size, modification time and the
    /// snapshot list.
    pub identity: String,
    reader: H5Reader,
    /// The same file for positioned reads of raw chunks, outside the HDF5 lock.
    raw_file: Option<std::fs::File>,
    /// Raw chunk layout of each dataset read so far (`None`: read through HDF5). The
    /// file is read-only here, so one query per dataset, not one per read (a query
    /// opens the dataset under the HDF5 library's lock, which every read would share).
    raw_layouts: Mutex<HashMap<String, Option<Arc<RawChunks>>>>,
    reads: AtomicU64,
    bytes: AtomicU64,
}

/// Errors of opening a run: the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// Not a RUN_DIR, or not one this build can read (exit 2).
    #[error("{0}")]
    Bad(String),
    /// The file is unreadable or corrupt (exit 3).
    #[error("{0}")]
    Io(String),
}

impl Run {
    /// Opens `dir/output.h5`, reading only metadata.
    pub fn open(dir: &Path) -> Result<Run, RunDirError> {
        if !dir.is_dir() {
            return Err(RunDirError::Bad(format!("{}: no such run directory (run a case first: tessera run CASE.toml)", dir.display())));
        }
        let file = dir.join("output.h5");
        if !file.exists() {
            return Err(RunDirError::Bad(format!(
                "{}: no output.h5 in this directory: not a RUN_DIR, or the run never wrote a snapshot",
                dir.display()
            )));
        }
        let reader = H5Reader::open(&file).map_err(|e| RunDirError::Io(e.to_string()))?;
        let bad = |m: String| RunDirError::Bad(format!("{}: {m}", file.display()));
        let io = |e: decomp::Error| RunDirError::Io(e.to_string());
        let format = reader.attr_str("/", "format").map_err(|_| bad("not a tessera output file (no root attribute `format`)".into()))?;
        if format != "tessera" {
            return Err(bad(format!("root attribute format = {format:?}, expected \"tessera\"")));
        }
        let version = reader.attr_str("/", "format_version").map_err(io)?;
        if version.split('.').next() != Some(FORMAT_MAJOR) {
            return Err(bad(format!("format_version {version}: this build reads {FORMAT_MAJOR}.x")));
        }
        let model = reader.attr_str("/", "model").unwrap_or_default();
        let dims = *reader.attr_u64("/", "dims").map_err(io)?.first().unwrap_or(&0) as usize;
        if !(2..=3).contains(&dims) {
            return Err(bad(format!("dims = {dims}, expected 2 or 3")));
        }
        let c = reader.attr_u64("/mesh", "cells").map_err(io)?;
        let lo = reader.attr_f64("/mesh", "lower").map_err(io)?;
        let sp = reader.attr_f64("/mesh", "spacing").map_err(io)?;
        let per = reader.attr_u64("/mesh", "periodic").unwrap_or_else(|_| vec![0; dims]);
        if c.len() != dims || lo.len() != dims || sp.len() != dims || per.len() != dims {
            return Err(bad("/mesh attributes do not match dims".into()));
        }
        let mut cells = [1usize; 3];
        let mut lower = [0.0; 3];
        let mut spacing = [1.0; 3];
        let mut periodic = [false; 3];
        for a in 0..dims {
            cells[a] = c[a] as usize;
            lower[a] = lo[a];
            spacing[a] = sp[a];
            periodic[a] = per[a] != 0;
        }
        let mut snapshots = Vec::new();
        for name in reader.members("/snapshots").map_err(io)? {
            let g = format!("/snapshots/{name}");
            let step = *reader.attr_u64(&g, "step").map_err(io)?.first().unwrap_or(&0);
            let time = *reader.attr_f64(&g, "time").map_err(io)?.first().unwrap_or(&0.0);
            let fields = reader.members(&g).map_err(io)?;
            snapshots.push(Snapshot { step, time, fields });
        }
        snapshots.sort_by_key(|s| s.step);
        let chunk_rows = snapshots
            .iter()
            .find_map(|s| s.fields.first().map(|f| format!("/snapshots/{:08}/{f}", s.step)))
            .and_then(|d| reader.chunk(&d).ok().flatten())
            .and_then(|c| c.first().copied())
            .unwrap_or(cells[dims - 1])
            .max(1);
        let meta = std::fs::metadata(&file).map_err(|e| RunDirError::Io(format!("{}: {e}", file.display())))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
        let steps: Vec<String> = snapshots.iter().map(|s| s.step.to_string()).collect();
        let identity = format!("{}:{}:{}:{}", file.display(), meta.len(), mtime, steps.join(","));
        let raw_file = std::fs::File::open(&file).ok();
        Ok(Run {
            dir: dir.to_path_buf(),
            file,
            model,
            dims,
            cells,
            lower,
            spacing,
            periodic,
            snapshots,
            chunk_rows,
            identity,
            raw_file,
            raw_layouts: Mutex::new(HashMap::new()),
            reader,
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// The slowest axis (rows of pieces run along it): y in 2D, z in 3D.
    pub fn slow_axis(&self) -> usize {
        self.dims - 1
    }

    /// Values in one row-plane of a field: nx in 2D, nx * ny in 3D.
    pub fn row_len(&self) -> usize {
        if self.dims == 2 {
            self.cells[0]
        } else {
            self.cells[0] * self.cells[1]
        }
    }

    /// Number of rows along the slowest axis.
    pub fn rows(&self) -> usize {
        self.cells[self.dims - 1]
    }

    /// Cell-centre coordinate of cell `i` along `axis`.
    pub fn centre(&self, axis: usize, i: usize) -> f64 {
        self.lower[axis] + (i as f64 + 0.5) * self.spacing[axis]
    }

    /// The x-y extent of the mesh, [x_lo, x_hi, y_lo, y_hi] (cell faces): for maps.
    pub fn extent_xy(&self) -> [f64; 4] {
        let hi = |a: usize| self.lower[a] + self.cells[a] as f64 * self.spacing[a];
        [self.lower[0], hi(0), self.lower[1], hi(1)]
    }

    /// Cell volume (area in 2D).
    pub fn cell_volume(&self) -> f64 {
        self.spacing[..self.dims].iter().product()
    }

    /// Reads rows `first .. first + n` (along the slowest axis) of `field` at `step`
    /// into `out` (`n * row_len` values).
    pub fn read_rows(&self, step: u64, field: &str, first: usize, n: usize, out: &mut [f64]) -> Result<(), String> {
        let name = format!("/snapshots/{step:08}/{field}");
        // Plain chunks are read with positioned reads in parallel; anything else
        // (filters, another type) through HDF5.
        if let (Some(f), Some(raw)) = (&self.raw_file, self.raw_layout(&name)) {
            if raw.shape.len() == self.dims && raw.shape[0] == self.rows() {
                read_raw_rows(f, &raw, first, n, out)
                    .map_err(|e| format!("{}: reading {name}: {e} (truncated or corrupt file?)", self.file.display()))?;
                self.reads.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add((out.len() * 8) as u64, Ordering::Relaxed);
                return Ok(());
            }
        }
        let (start, count): (Vec<usize>, Vec<usize>) = if self.dims == 2 {
            (vec![first, 0], vec![n, self.cells[0]])
        } else {
            (vec![first, 0, 0], vec![n, self.cells[1], self.cells[0]])
        };
        self.reader.read_slab(&name, &start, &count, out).map_err(|e| e.to_string())?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add((out.len() * 8) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The raw chunk layout of dataset `name`, queried once.
    fn raw_layout(&self, name: &str) -> Option<Arc<RawChunks>> {
        let lock = || self.raw_layouts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = lock().get(name) {
            return v.clone();
        }
        // Queried outside our lock (the query takes HDF5's); a race queries twice.
        let v = self.reader.raw_chunks(name).ok().flatten().map(Arc::new);
        lock().insert(name.to_string(), v.clone());
        v
    }

    /// Field reads (hyperslab reads) done so far, and their bytes.
    pub fn read_counts(&self) -> (u64, u64) {
        (self.reads.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    /// Field names present in every snapshot.
    pub fn common_fields(&self) -> Vec<String> {
        let mut it = self.snapshots.iter();
        let Some(first) = it.next() else { return Vec::new() };
        let mut f = first.fields.clone();
        for s in it {
            f.retain(|n| s.fields.contains(n));
        }
        f
    }
}
