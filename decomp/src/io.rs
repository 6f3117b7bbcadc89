//! Partitioned field I/O: one HDF5 file written collectively by every rank.
//!
//! With the MPI backend the file is opened through MPI-IO and each rank writes its
//! own block with a collective transfer (no gather). With the in-process backends
//! (threads, serial) rank 0 gathers the blocks and writes them, so tests exercise
//! the same file layout without MPI. The layout is documented in `docs/FORMAT.md`.
use crate::comm::{agree, Comm};
use crate::error::{Error, Result};
use crate::field::Field;
use crate::grid::IndexBox;
use crate::layout::BlockLayout;
use hdf5::types::VarLenUnicode;
use hdf5_sys::h5d::{H5Dread, H5Dwrite};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::{H5FD_mpio_xfer_t, H5Pclose, H5Pcreate, H5Pset_dxpl_mpio};
use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sselect_hyperslab};
use hdf5_sys::h5t::H5T_NATIVE_DOUBLE;
use std::path::{Path, PathBuf};

/// An HDF5 file shared by all ranks of a communicator.
pub struct H5File {
    /// Open on every rank (MPI-IO) or only on rank 0 (gather mode).
    file: Option<hdf5::File>,
    path: PathBuf,
    /// Every rank accesses the file itself (MPI-IO, or read-only opens).
    parallel: bool,
    /// Opened through MPI-IO: transfers are collective.
    mpio: bool,
}

/// Converts an HDF5 error into ours, naming the file.
fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// RAII wrapper for raw HDF5 identifiers we create ourselves.
struct RawId(hid_t, unsafe extern "C" fn(hid_t) -> hdf5_sys::h5::herr_t);
impl Drop for RawId {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: the id was returned by the matching H5*create call.
            unsafe { (self.1)(self.0) };
        }
    }
}

/// Largest chunk, in bytes: HDF5 refuses chunks of 4 GiB or more, and chunks much
/// larger than this only cost memory in readers.
pub const MAX_CHUNK_BYTES: usize = 256 << 20;

/// Chunk shape of a field dataset, (z, y, x) trimmed to the grid's rank: the largest
/// rank block, halved along its longest axis while it exceeds [`MAX_CHUNK_BYTES`].
pub fn chunk_shape(layout: &BlockLayout) -> Vec<usize> {
    let dims = layout.grid.dims;
    let m = |a: usize| layout.blocks.iter().map(|b| b.shape()[a]).max().unwrap_or(1);
    let mut chunk: Vec<usize> = [m(2), m(1), m(0)][3 - dims..].to_vec();
    while chunk.iter().product::<usize>() * 8 > MAX_CHUNK_BYTES {
        let (i, _) = chunk.iter().enumerate().max_by_key(|(i, c)| (**c, usize::MAX - i)).expect("non-empty");
        chunk[i] = chunk[i].div_ceil(2);
    }
    chunk
}

/// Hyperslab of `block` in a dataset of the grid's shape, in (z, y, x) order,
/// trimmed to the dataset's rank (2 or 3).
fn file_slab(block: &IndexBox, dims: usize) -> (Vec<u64>, Vec<u64>) {
    let s = block.shape();
    let start = [block.lo[2] as u64, block.lo[1] as u64, block.lo[0] as u64];
    let count = [s[2] as u64, s[1] as u64, s[0] as u64];
    (start[3 - dims..].to_vec(), count[3 - dims..].to_vec())
}

impl H5File {
    fn open_with(comm: &dyn Comm, path: &Path, mode: Mode) -> Result<Self> {
        let mpio = comm.mpi_raw().is_some() && comm.size() > 1;
        let parallel = mpio;
        let res = if parallel || comm.rank() == 0 || mode == Mode::Read {
            let mut b = hdf5::File::with_options();
            if let (true, Some(raw)) = (parallel, comm.mpi_raw()) {
                b.with_fapl(|p| p.mpio(raw, None).all_coll_metadata_ops(true).coll_metadata_write(true));
            }
            let r = match mode {
                Mode::Create => b.create(path),
                Mode::Read => b.open(path),
                Mode::ReadWrite => b.open_rw(path),
            };
            r.map(Some).map_err(|e| Error::io(path, describe_open_error(path, &e, mode)))
        } else {
            Ok(None)
        };
        let file = agree(comm, res, |m| Error::io(path, m))?;
        // Every rank opens for reading; only rank 0 writes in gather mode.
        let parallel = parallel || mode == Mode::Read;
        Ok(H5File { file, path: path.to_path_buf(), parallel, mpio })
    }

    /// Creates (truncates) `path` collectively.
    pub fn create(comm: &dyn Comm, path: &Path) -> Result<Self> {
        Self::open_with(comm, path, Mode::Create)
    }

    /// Opens an existing `path` for appending, collectively.
    pub fn open_rw(comm: &dyn Comm, path: &Path) -> Result<Self> {
        Self::open_with(comm, path, Mode::ReadWrite)
    }

    /// Deletes the link `name` (e.g. a snapshot group), collectively.
    pub fn unlink(&self, comm: &dyn Comm, name: &str) -> Result<()> {
        self.meta(comm, |f| f.unlink(name))?;
        Ok(())
    }

    /// Closes the file on every rank and agrees that it closed cleanly.
    pub fn close(self, comm: &dyn Comm) -> Result<()> {
        let path = self.path.clone();
        let res = match self.file {
            Some(f) => f.close().map_err(|e| Error::io(&path, e)),
            None => Ok(()),
        };
        agree(comm, res, |m| Error::io(&path, m))
    }

    /// Opens `path` read-only on every rank.
    pub fn open(comm: &dyn Comm, path: &Path) -> Result<Self> {
        Self::open_with(comm, path, Mode::Read)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file on ranks that hold it open.
    pub fn handle(&self) -> Option<&hdf5::File> {
        self.file.as_ref()
    }

    /// Runs `f` on the file on every rank that writes metadata, then agrees on success.
    fn meta<T>(&self, comm: &dyn Comm, f: impl FnOnce(&hdf5::File) -> hdf5::Result<T>) -> Result<Option<T>> {
        let res = match &self.file {
            Some(file) => f(file).map(Some).map_err(h5err(&self.path)),
            None => Ok(None),
        };
        agree(comm, res, |m| Error::io(&self.path, m))
    }

    /// Creates group `name` (and its parents).
    pub fn create_group(&self, comm: &dyn Comm, name: &str) -> Result<()> {
        self.meta(comm, |f| {
            let mut cur = String::new();
            for part in name.trim_matches('/').split('/') {
                cur.push('/');
                cur.push_str(part);
                if !f.link_exists(&cur) {
                    f.create_group(&cur)?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Sets a string attribute on object `obj` ("/" for the root).
    pub fn set_attr_str(&self, comm: &dyn Comm, obj: &str, name: &str, value: &str) -> Result<()> {
        self.meta(comm, |f| {
            let v: VarLenUnicode = value.parse().map_err(|e| hdf5::Error::from(format!("{e:?}")))?;
            let loc = f.group(obj)?;
            loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&v)
        })?;
        Ok(())
    }

    /// Sets a 1D float attribute on object `obj`.
    pub fn set_attr_f64(&self, comm: &dyn Comm, obj: &str, name: &str, value: &[f64]) -> Result<()> {
        self.meta(comm, |f| f.group(obj)?.new_attr::<f64>().shape([value.len()]).create(name)?.write(value))?;
        Ok(())
    }

    /// Sets a 1D integer attribute on object `obj`.
    pub fn set_attr_u64(&self, comm: &dyn Comm, obj: &str, name: &str, value: &[u64]) -> Result<()> {
        self.meta(comm, |f| f.group(obj)?.new_attr::<u64>().shape([value.len()]).create(name)?.write(value))?;
        Ok(())
    }

    /// Writes a small 2D integer table (e.g. the decomposition blocks) as a dataset.
    pub fn write_table_u64(&self, comm: &dyn Comm, name: &str, rows: usize, cols: usize, data: &[u64]) -> Result<()> {
        self.meta(comm, |f| {
            let a = ndarray::ArrayView2::from_shape((rows, cols), data).map_err(|e| hdf5::Error::from(e.to_string()))?;
            f.new_dataset_builder().with_data(a).create(name)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Writes a small 1D float dataset (e.g. coordinates).
    pub fn write_vec_f64(&self, comm: &dyn Comm, name: &str, data: &[f64]) -> Result<()> {
        self.meta(comm, |f| {
            f.new_dataset_builder().with_data(data).create(name)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Reads a string attribute on every rank.
    pub fn attr_str(&self, comm: &dyn Comm, obj: &str, name: &str) -> Result<String> {
        let r = self.meta(comm, |f| Ok(f.group(obj)?.attr(name)?.read_scalar::<VarLenUnicode>()?.to_string()))?;
        r.ok_or_else(|| Error::io(&self.path, "file not open on this rank"))
    }

    /// Reads a 1D float attribute on every rank.
    pub fn attr_f64(&self, comm: &dyn Comm, obj: &str, name: &str) -> Result<Vec<f64>> {
        let r = self.meta(comm, |f| f.group(obj)?.attr(name)?.read_raw::<f64>())?;
        r.ok_or_else(|| Error::io(&self.path, "file not open on this rank"))
    }

    /// Reads a 1D integer attribute on every rank.
    pub fn attr_u64(&self, comm: &dyn Comm, obj: &str, name: &str) -> Result<Vec<u64>> {
        let r = self.meta(comm, |f| f.group(obj)?.attr(name)?.read_raw::<u64>())?;
        r.ok_or_else(|| Error::io(&self.path, "file not open on this rank"))
    }

    /// Names of the members of group `name`, sorted.
    pub fn members(&self, comm: &dyn Comm, name: &str) -> Result<Vec<String>> {
        let r = self.meta(comm, |f| {
            let mut v = f.group(name)?.member_names()?;
            v.sort();
            Ok(v)
        })?;
        r.ok_or_else(|| Error::io(&self.path, "file not open on this rank"))
    }

    /// Writes `field` (this rank's block of `layout`) into a new dataset `name` of the
    /// grid's global shape `[ny, nx]` or `[nz, ny, nx]`, chunked by the largest rank
    /// block. Collective.
    pub fn write_field(&self, comm: &dyn Comm, name: &str, layout: &BlockLayout, field: &Field) -> Result<()> {
        let dims = layout.grid.dims;
        let c = layout.grid.cells;
        let shape: Vec<usize> = [c[2], c[1], c[0]][3 - dims..].to_vec();
        let chunk = chunk_shape(layout);
        self.meta(comm, |f| {
            f.new_dataset::<f64>().shape(shape.clone()).chunk(chunk.clone()).create(name)?;
            Ok(())
        })?;
        if self.parallel || comm.size() == 1 {
            // Every rank (or the only one) writes its block straight from the field.
            let res = self.transfer(name, &field.block, dims, field, true);
            agree(comm, res, |m| Error::io(&self.path, m))
        } else {
            let interior = field.interior_owned();
            let gathered = comm.gather_f64(0, interior.as_slice().expect("owned interior is contiguous"));
            let res = match (&self.file, gathered) {
                (Some(_), Some(parts)) => parts.iter().enumerate().try_for_each(|(r, part)| {
                    let block = layout.blocks[r];
                    let mut tmp = Field::zeros(block, dims, 0);
                    tmp.as_slice_mut().copy_from_slice(part);
                    self.transfer(name, &block, dims, &tmp, false)
                }),
                _ => Ok(()),
            };
            agree(comm, res, |m| Error::io(&self.path, m))
        }
    }

    /// Reads this rank's block of dataset `name` into the interior of `field`.
    /// The dataset is checked on every rank and the ranks agree before the collective
    /// read, so a file that does not fit (another mesh) is an error on all ranks, never a
    /// rank left waiting inside a collective transfer.
    /// The dataset's own rank (2 or 3) decides how the block is read; a 2D dataset
    /// needs a block with z range [0, 1).
    pub fn read_field(&self, comm: &dyn Comm, name: &str, field: &mut Field) -> Result<()> {
        let block = field.block;
        let check = hdf5::sync::sync(|| {
            let ds = self.open_dataset(name)?;
            let dims = ds.ndim();
            self.selection(&ds, &block, dims, false).map(|_| ())
        });
        agree(comm, check, |m| Error::io(&self.path, m))?;
        let res = self.transfer_read(name, &block, field);
        agree(comm, res, |m| Error::io(&self.path, m))
    }

    /// Memory dataspace selecting the interior of `field` inside its padded storage.
    fn memspace(field: &Field) -> Result<RawId> {
        let p = field.padded_shape();
        let (g, n) = (field.ghost, field.shape());
        let dims = [p[2] as u64, p[1] as u64, p[0] as u64];
        let start = [g[2] as u64, g[1] as u64, g[0] as u64];
        let count = [n[2] as u64, n[1] as u64, n[0] as u64];
        // SAFETY: plain HDF5 calls on arrays of the stated rank.
        unsafe {
            let id = RawId(H5Screate_simple(3, dims.as_ptr(), std::ptr::null()), H5Sclose);
            if id.0 < 0
                || H5Sselect_hyperslab(
                    id.0,
                    H5S_seloper_t::H5S_SELECT_SET,
                    start.as_ptr(),
                    std::ptr::null(),
                    count.as_ptr(),
                    std::ptr::null(),
                ) < 0
            {
                return Err(Error::Comm("cannot build HDF5 memory selection".into()));
            }
            Ok(id)
        }
    }

    fn open_dataset(&self, name: &str) -> Result<hdf5::Dataset> {
        let f = self.file.as_ref().ok_or_else(|| Error::io(&self.path, "file not open on this rank"))?;
        f.dataset(name).map_err(|e| Error::io(&self.path, format!("dataset {name}: {e}")))
    }

    /// File dataspace of `ds` with `block` selected, and a transfer property list.
    fn selection(&self, ds: &hdf5::Dataset, block: &IndexBox, dims: usize, collective: bool) -> Result<(RawId, RawId)> {
        let (start, count) = file_slab(block, dims);
        let shape = ds.shape();
        if shape.len() != dims {
            return Err(Error::io(&self.path, format!("dataset {} is {}D, expected {dims}D", ds.name(), shape.len())));
        }
        for (a, (&s, &c)) in start.iter().zip(&count).enumerate() {
            if (s + c) as usize > shape[a] {
                return Err(Error::io(&self.path, format!("dataset {} has shape {:?}, too small for this mesh", ds.name(), shape)));
            }
        }
        // SAFETY: ids come from HDF5 and are closed by RawId.
        unsafe {
            let fspace = RawId(hdf5_sys::h5d::H5Dget_space(ds.id()), H5Sclose);
            let ok = fspace.0 >= 0
                && H5Sselect_hyperslab(
                    fspace.0,
                    H5S_seloper_t::H5S_SELECT_SET,
                    start.as_ptr(),
                    std::ptr::null(),
                    count.as_ptr(),
                    std::ptr::null(),
                ) >= 0;
            let dxpl = RawId(H5Pcreate(*hdf5::globals::H5P_DATASET_XFER), H5Pclose);
            let ok = ok && dxpl.0 >= 0 && (!collective || H5Pset_dxpl_mpio(dxpl.0, H5FD_mpio_xfer_t::H5FD_MPIO_COLLECTIVE) >= 0);
            if !ok {
                return Err(Error::io(&self.path, "cannot build HDF5 file selection"));
            }
            Ok((fspace, dxpl))
        }
    }

    /// Writes `field`'s interior into `block` of dataset `name`. The whole body runs
    /// under the HDF5 library lock: HDF5 is not thread-safe, and our raw calls must
    /// not interleave with other threads' calls (in-process ranks, parallel tests).
    fn transfer(&self, name: &str, block: &IndexBox, dims: usize, field: &Field, collective: bool) -> Result<()> {
        hdf5::sync::sync(|| {
            let ds = self.open_dataset(name)?;
            let (fspace, dxpl) = self.selection(&ds, block, dims, collective && self.mpio)?;
            let mspace = Self::memspace(field)?;
            // SAFETY: memory selection matches the field's storage; ids are valid.
            let rc = unsafe { H5Dwrite(ds.id(), *H5T_NATIVE_DOUBLE, mspace.0, fspace.0, dxpl.0, field.as_slice().as_ptr().cast()) };
            if rc < 0 {
                return Err(Error::io(&self.path, format!("writing {name} failed")));
            }
            Ok(())
        })
    }

    /// Reads `block` of dataset `name` into `field`'s interior (under the library lock).
    fn transfer_read(&self, name: &str, block: &IndexBox, field: &mut Field) -> Result<()> {
        hdf5::sync::sync(|| {
            let ds = self.open_dataset(name)?;
            let dims = ds.ndim();
            if dims == 2 && (block.lo[2], block.hi[2]) != (0, 1) {
                return Err(Error::io(&self.path, format!("dataset {name} is 2D but the mesh is 3D")));
            }
            let (fspace, dxpl) = self.selection(&ds, block, dims, self.mpio)?;
            let mspace = Self::memspace(field)?;
            // SAFETY: memory selection matches the field's storage; ids are valid.
            let rc = unsafe { H5Dread(ds.id(), *H5T_NATIVE_DOUBLE, mspace.0, fspace.0, dxpl.0, field.as_slice_mut().as_mut_ptr().cast()) };
            if rc < 0 {
                return Err(Error::io(&self.path, format!("reading {name} failed")));
            }
            Ok(())
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Read,
    ReadWrite,
}

fn describe_open_error(path: &Path, e: &hdf5::Error, mode: Mode) -> String {
    match mode {
        Mode::Create => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            match parent {
                Some(p) if !p.is_dir() => format!("cannot create file: directory {} does not exist", p.display()),
                _ => format!("cannot create file: {e}"),
            }
        }
        _ if !path.exists() => "no such file".to_string(),
        _ => format!("not a readable HDF5 file ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::{SerialComm, ThreadComm};
    use crate::grid::Grid;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("decomp-io-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("f.h5")
    }

    #[test]
    fn gather_write_then_read_on_other_rank_count() {
        let path = temp("rt");
        let grid = Grid::new(&[9, 7, 5], &[0.0; 3], &[1.0; 3], &[false; 3]);
        let value = |i: usize, j: usize, k: usize| (i + 10 * j + 100 * k) as f64;
        ThreadComm::run(3, |c| {
            let l = BlockLayout::auto(&grid, 3, 1).unwrap();
            let mut f = Field::zeros(l.blocks[c.rank()], 3, 1);
            f.fill_with(value);
            let h = H5File::create(c, &path).unwrap();
            h.create_group(c, "snapshots/00000001").unwrap();
            h.set_attr_f64(c, "/snapshots/00000001", "time", &[0.5]).unwrap();
            h.write_field(c, "snapshots/00000001/u", &l, &f).unwrap();
        });
        ThreadComm::run(2, |c| {
            let l = BlockLayout::auto(&grid, 2, 1).unwrap();
            let h = H5File::open(c, &path).unwrap();
            assert_eq!(h.attr_f64(c, "/snapshots/00000001", "time").unwrap(), vec![0.5]);
            let mut f = Field::zeros(l.blocks[c.rank()], 3, 2);
            h.read_field(c, "snapshots/00000001/u", &mut f).unwrap();
            let lo = f.block.lo;
            for ((k, j, i), v) in f.interior().indexed_iter() {
                assert_eq!(*v, value(lo[0] + i, lo[1] + j, lo[2] + k));
            }
        });
        let c = SerialComm::new();
        let h = H5File::open(&c, &path).unwrap();
        let ds = h.handle().unwrap().dataset("snapshots/00000001/u").unwrap();
        assert_eq!(ds.shape(), vec![5, 7, 9]);
        assert_eq!(ds.chunk(), Some(vec![5, 7, 3]));
        assert!(h.read_field(&c, "snapshots/00000001/missing", &mut Field::zeros(grid.index_box(), 3, 0)).is_err());
    }

    #[test]
    fn blocks_one_cell_thick_in_z_read_as_3d() {
        // Ghost-free fields of blocks with a single z layer (5 ranks along z) must be
        // read from a 3D dataset, not mistaken for 2D.
        let path = temp("thin");
        let grid = Grid::new(&[4, 3, 5], &[0.0; 3], &[1.0; 3], &[false; 3]);
        let value = |i: usize, j: usize, k: usize| (i + 10 * j + 100 * k) as f64;
        let c = SerialComm::new();
        let l1 = BlockLayout::new(&grid, &[1, 1, 1], 1).unwrap();
        let mut f = Field::zeros(l1.blocks[0], 3, 1);
        f.fill_with(value);
        let h = H5File::create(&c, &path).unwrap();
        h.write_field(&c, "u", &l1, &f).unwrap();
        h.close(&c).unwrap();
        ThreadComm::run(5, |c| {
            let l = BlockLayout::new(&grid, &[1, 1, 5], 1).unwrap();
            let h = H5File::open(c, &path).unwrap();
            let mut f = Field::zeros(l.blocks[c.rank()], 3, 0);
            h.read_field(c, "u", &mut f).unwrap();
            let lo = f.block.lo;
            for ((k, j, i), v) in f.interior().indexed_iter() {
                assert_eq!(*v, value(lo[0] + i, lo[1] + j, lo[2] + k));
            }
        });
    }

    #[test]
    fn chunks_are_rank_blocks_capped_below_hdf5_limit() {
        let g = Grid::new(&[64, 48], &[0.0; 2], &[1.0; 2], &[false; 2]);
        assert_eq!(chunk_shape(&BlockLayout::new(&g, &[2, 3], 1).unwrap()), vec![16, 32]);
        // One rank on 1024^3 would be an 8 GiB chunk: halved until <= 256 MiB.
        let g = Grid::new(&[1024, 1024, 1024], &[0.0; 3], &[1.0; 3], &[false; 3]);
        let c = chunk_shape(&BlockLayout::new(&g, &[1, 1, 1], 1).unwrap());
        assert!(c.iter().product::<usize>() * 8 <= MAX_CHUNK_BYTES, "{c:?}");
        assert_eq!(c, vec![256, 256, 512]);
    }

    #[test]
    fn reading_another_mesh_fails_on_every_rank() {
        let path = temp("other-mesh");
        let small = Grid::new(&[6, 4], &[0.0; 2], &[1.0; 2], &[false; 2]);
        let c = SerialComm::new();
        let l = BlockLayout::new(&small, &[1, 1], 1).unwrap();
        let h = H5File::create(&c, &path).unwrap();
        h.write_field(&c, "u", &l, &Field::zeros(l.blocks[0], 2, 1)).unwrap();
        h.close(&c).unwrap();
        // A larger mesh: only the last rank's block falls outside the dataset, yet every
        // rank must return the error (no rank may go on into the collective read).
        let big = Grid::new(&[6, 8], &[0.0; 2], &[1.0; 2], &[false; 2]);
        let res = ThreadComm::run(2, |c| {
            let l = BlockLayout::new(&big, &[1, 2], 1).unwrap();
            let h = H5File::open(c, &path).unwrap();
            let mut f = Field::zeros(l.blocks[c.rank()], 2, 0);
            h.read_field(c, "u", &mut f).map_err(|e| e.to_string())
        });
        for r in res {
            assert!(r.unwrap_err().contains("too small for this mesh"));
        }
    }

    #[test]
    fn clear_errors_for_missing_directory_and_file() {
        let c = SerialComm::new();
        let e = H5File::create(&c, Path::new("/nonexistent-dir-xyz/out.h5")).err().unwrap().to_string();
        assert!(e.contains("/nonexistent-dir-xyz") && e.contains("does not exist"), "{e}");
        let e = H5File::open(&c, Path::new("/nonexistent-file.h5")).err().unwrap().to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
