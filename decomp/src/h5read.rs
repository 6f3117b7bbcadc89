//! Serial HDF5 access for tools that read run output on one process (`tessera post`):
//! metadata, hyperslab reads of field datasets straight into a caller's buffer, and a
//! small writer for derived results. Only this crate names the HDF5 crate; every call
//! runs under the HDF5 library lock, so these types may be used from any thread (HDF5
//! itself serialises them: keep I/O on its own thread and spread computation).
use crate::error::{Error, Result};
use hdf5::types::VarLenUnicode;
use hdf5_sys::h5d::H5Dread;
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sselect_hyperslab};
use hdf5_sys::h5t::H5T_NATIVE_DOUBLE;
use std::path::{Path, PathBuf};

/// A read-only HDF5 file.
pub struct H5Reader {
    file: hdf5::File,
    path: PathBuf,
}

/// Closes a raw dataspace id on drop.
struct Space(hdf5_sys::h5i::hid_t);
impl Drop for Space {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: the id came from H5Screate_simple / H5Dget_space.
            unsafe { H5Sclose(self.0) };
        }
    }
}

impl H5Reader {
    /// Opens `path` read-only. A missing file, or one that is not HDF5 (truncated,
    /// corrupt), is an error naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(path, "no such file"));
        }
        let file = hdf5::sync::sync(|| hdf5::File::open(path))
            .map_err(|e| Error::io(path, format!("not a readable HDF5 file (truncated or corrupt?): {e}")))?;
        Ok(H5Reader { file, path: path.to_path_buf() })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::io(&self.path, what)
    }

    /// True when the link `name` exists (a group or dataset, absolute path).
    pub fn exists(&self, name: &str) -> bool {
        hdf5::sync::sync(|| {
            let mut cur = String::new();
            for part in name.trim_matches('/').split('/') {
                cur.push('/');
                cur.push_str(part);
                if !self.file.link_exists(&cur) {
                    return false;
                }
            }
            true
        })
    }

    fn attr(&self, obj: &str, name: &str) -> Result<hdf5::Attribute> {
        let found = match self.file.group(obj) {
            Ok(g) => g.attr(name),
            Err(_) => match self.file.dataset(obj) {
                Ok(d) => d.attr(name),
                Err(_) => return Err(self.err(format!("no group or dataset {obj}"))),
            },
        };
        found.map_err(|_| self.err(format!("{obj} has no attribute `{name}`")))
    }

    /// A string attribute of group or dataset `obj`.
    pub fn attr_str(&self, obj: &str, name: &str) -> Result<String> {
        hdf5::sync::sync(|| {
            let a = self.attr(obj, name)?;
            a.read_scalar::<VarLenUnicode>()
                .map(|s| s.to_string())
                .map_err(|e| self.err(format!("attribute {obj}/{name} is not a string: {e}")))
        })
    }

    /// A float attribute (any shape, read flat) of `obj`.
    pub fn attr_f64(&self, obj: &str, name: &str) -> Result<Vec<f64>> {
        hdf5::sync::sync(|| {
            let a = self.attr(obj, name)?;
            a.read_raw::<f64>().map_err(|e| self.err(format!("attribute {obj}/{name} is not numeric: {e}")))
        })
    }

    /// An integer attribute (any shape, read flat) of `obj`.
    pub fn attr_u64(&self, obj: &str, name: &str) -> Result<Vec<u64>> {
        hdf5::sync::sync(|| {
            let a = self.attr(obj, name)?;
            a.read_raw::<u64>().map_err(|e| self.err(format!("attribute {obj}/{name} is not an integer: {e}")))
        })
    }

    /// Names of the members of group `name`, sorted.
    pub fn members(&self, name: &str) -> Result<Vec<String>> {
        hdf5::sync::sync(|| {
            let g = self.file.group(name).map_err(|_| self.err(format!("no group {name}")))?;
            let mut v = g.member_names().map_err(|e| self.err(e))?;
            v.sort();
            Ok(v)
        })
    }

    fn dataset(&self, name: &str) -> Result<hdf5::Dataset> {
        self.file.dataset(name).map_err(|_| self.err(format!("no dataset {name}")))
    }

    /// Shape of dataset `name` (slowest axis first).
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        hdf5::sync::sync(|| Ok(self.dataset(name)?.shape()))
    }

    /// Chunk shape of dataset `name`, or `None` for a contiguous dataset.
    pub fn chunk(&self, name: &str) -> Result<Option<Vec<usize>>> {
        hdf5::sync::sync(|| Ok(self.dataset(name)?.chunk()))
    }

    /// A whole float dataset, flat (small datasets: coordinates, tables).
    pub fn read_all_f64(&self, name: &str) -> Result<Vec<f64>> {
        hdf5::sync::sync(|| self.dataset(name)?.read_raw::<f64>().map_err(|e| self.err(format!("reading {name}: {e}"))))
    }

    /// A whole integer dataset, flat.
    pub fn read_all_u64(&self, name: &str) -> Result<Vec<u64>> {
        hdf5::sync::sync(|| self.dataset(name)?.read_raw::<u64>().map_err(|e| self.err(format!("reading {name}: {e}"))))
    }

    /// Reads the hyperslab `start .. start + count` (dataset order, slowest axis first)
    /// of float dataset `name` into `out`, C order, with no intermediate copy. HDF5
    /// reads only the chunks the slab touches.
    pub fn read_slab(&self, name: &str, start: &[usize], count: &[usize], out: &mut [f64]) -> Result<()> {
        hdf5::sync::sync(|| {
            let ds = self.dataset(name)?;
            let shape = ds.shape();
            if shape.len() != start.len() || shape.len() != count.len() {
                return Err(self.err(format!("dataset {name} has rank {}, asked for a rank-{} slab", shape.len(), start.len())));
            }
            for a in 0..shape.len() {
                if start[a] + count[a] > shape[a] {
                    return Err(self.err(format!("dataset {name} has shape {shape:?}; slab {start:?} + {count:?} is outside it")));
                }
            }
            let n: usize = count.iter().product();
            if out.len() != n {
                return Err(self.err(format!("slab of {n} values into a buffer of {}", out.len())));
            }
            if n == 0 {
                return Ok(());
            }
            let s: Vec<u64> = start.iter().map(|&v| v as u64).collect();
            let c: Vec<u64> = count.iter().map(|&v| v as u64).collect();
            // SAFETY: plain HDF5 calls; ids are checked and closed by `Space`; the memory
            // space has exactly `out.len()` elements of native double.
            unsafe {
                let fspace = Space(hdf5_sys::h5d::H5Dget_space(ds.id()));
                let mspace = Space(H5Screate_simple(c.len() as i32, c.as_ptr(), std::ptr::null()));
                if fspace.0 < 0
                    || mspace.0 < 0
                    || H5Sselect_hyperslab(
                        fspace.0,
                        H5S_seloper_t::H5S_SELECT_SET,
                        s.as_ptr(),
                        std::ptr::null(),
                        c.as_ptr(),
                        std::ptr::null(),
                    ) < 0
                {
                    return Err(self.err(format!("cannot select a slab of {name}")));
                }
                if H5Dread(ds.id(), *H5T_NATIVE_DOUBLE, mspace.0, fspace.0, H5P_DEFAULT, out.as_mut_ptr().cast()) < 0 {
                    return Err(self.err(format!("reading {name} failed (truncated or corrupt file?)")));
                }
            }
            Ok(())
        })
    }
}

/// Where the chunks of an unfiltered, chunked, little-endian float64 dataset lie in
/// the file: their values can then be read with plain positioned reads, from any
/// number of threads at once, outside the HDF5 library's lock.
#[derive(Clone, Debug)]
pub struct RawChunks {
    /// Dataset shape (slowest axis first).
    pub shape: Vec<usize>,
    /// Chunk shape (every chunk is stored whole, edge chunks too).
    pub chunk: Vec<usize>,
    /// Each chunk's first element (dataset coordinates) and byte address in the file.
    pub chunks: Vec<(Vec<usize>, u64)>,
}

impl H5Reader {
    /// The raw chunk layout of dataset `name`, or `None` when its values cannot be read
    /// byte for byte (contiguous, filtered, another type or byte order, a chunk not
    /// written): then use [`H5Reader::read_slab`].
    pub fn raw_chunks(&self, name: &str) -> Result<Option<RawChunks>> {
        if !cfg!(target_endian = "little") {
            return Ok(None);
        }
        hdf5::sync::sync(|| {
            let ds = self.dataset(name)?;
            let Some(chunk) = ds.chunk() else { return Ok(None) };
            let shape = ds.shape();
            // SAFETY: plain HDF5 queries on a valid dataset id; ids are closed here.
            unsafe {
                use hdf5_sys::h5t::{H5T_class_t, H5T_order_t, H5Tclose, H5Tget_class, H5Tget_order, H5Tget_size};
                let t = hdf5_sys::h5d::H5Dget_type(ds.id());
                let plain = t >= 0
                    && H5Tget_class(t) == H5T_class_t::H5T_FLOAT
                    && H5Tget_size(t) == 8
                    && H5Tget_order(t) == H5T_order_t::H5T_ORDER_LE;
                if t >= 0 {
                    H5Tclose(t);
                }
                let pl = hdf5_sys::h5d::H5Dget_create_plist(ds.id());
                let filters = if pl >= 0 { hdf5_sys::h5p::H5Pget_nfilters(pl) } else { -1 };
                if pl >= 0 {
                    hdf5_sys::h5p::H5Pclose(pl);
                }
                if !plain || filters != 0 {
                    return Ok(None);
                }
                let space = Space(hdf5_sys::h5d::H5Dget_space(ds.id()));
                let mut n: u64 = 0;
                if space.0 < 0 || hdf5_sys::h5d::H5Dget_num_chunks(ds.id(), space.0, &mut n) < 0 {
                    return Ok(None);
                }
                let expected: usize = shape.iter().zip(&chunk).map(|(s, c)| s.div_ceil(*c)).product();
                if n as usize != expected {
                    return Ok(None);
                }
                let mut chunks = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let mut off = vec![0u64; shape.len()];
                    let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
                    if hdf5_sys::h5d::H5Dget_chunk_info(ds.id(), space.0, i, off.as_mut_ptr(), &mut mask, &mut addr, &mut size) < 0
                        || addr == hdf5_sys::h5::HADDR_UNDEF
                        || mask != 0
                        || size as usize != chunk.iter().product::<usize>() * 8
                    {
                        return Ok(None);
                    }
                    chunks.push((off.iter().map(|&o| o as usize).collect(), addr));
                }
                Ok(Some(RawChunks { shape, chunk, chunks }))
            }
        })
    }
}

/// Reads rows `first .. first + n` along the slowest axis of a dataset laid out as
/// `raw` in `file` into `out` (C order), with positioned reads of the chunk parts the
/// rows cover, in parallel. A short read (a truncated file) is an error.
pub fn read_raw_rows(file: &std::fs::File, raw: &RawChunks, first: usize, n: usize, out: &mut [f64]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let d = raw.shape.len();
    let row: usize = raw.shape[1..].iter().product();
    let crow: usize = raw.chunk[1..].iter().product();
    let full_rows = raw.chunk[1..] == raw.shape[1..];
    if out.len() != n * row {
        return Err(std::io::Error::other("buffer does not match the rows"));
    }
    // The parts to read: (chunk, first row inside it, rows).
    let mut parts = Vec::new();
    for (off, addr) in &raw.chunks {
        let (c0, c1) = (off[0], off[0] + raw.chunk[0]);
        let (a, b) = (c0.max(first), c1.min(first + n).min(raw.shape[0]));
        if a < b {
            parts.push((off, *addr, a - c0, b - a));
        }
    }
    let bytes = |v: &mut [f64]| -> &mut [u8] {
        // SAFETY: f64 has no invalid bit patterns; the byte view covers exactly `v`.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
    };
    if full_rows {
        // Chunks span whole rows: each part is one contiguous run of bytes, read
        // straight into its place in `out`.
        let mut slices: Vec<(u64, &mut [f64])> = Vec::new();
        let mut rest: &mut [f64] = out;
        let mut cursor = first;
        let mut sorted = parts.clone();
        sorted.sort_by_key(|p| p.0[0] + p.2);
        for (off, addr, r0, rows) in sorted {
            let start = off[0] + r0;
            let (_, tail) = rest.split_at_mut((start - cursor) * row);
            let (head, tail) = tail.split_at_mut(rows * row);
            slices.push((addr + (r0 * crow * 8) as u64, head));
            rest = tail;
            cursor = start + rows;
        }
        use rayon::prelude::*;
        return slices.into_par_iter().try_for_each(|(at, dst)| file.read_exact_at(bytes(dst), at));
    }
    // Chunks split the rows: read each part, then scatter its lines.
    let line = raw.chunk[d - 1];
    for (off, addr, r0, rows) in parts {
        let mut tmp = vec![0.0f64; rows * crow];
        file.read_exact_at(bytes(&mut tmp), addr + (r0 * crow * 8) as u64)?;
        let inner: Vec<usize> = raw.chunk[1..d - 1].to_vec();
        let lines_per_row = crow / line;
        for rr in 0..rows {
            for l in 0..lines_per_row {
                // Coordinates of this line inside the chunk's row (3D: the y index).
                let mut coord = Vec::with_capacity(d - 1);
                let mut rem = l;
                for &c in inner.iter().rev() {
                    coord.push(rem % c);
                    rem /= c;
                }
                coord.reverse();
                let mut idx = 0;
                let mut inside = true;
                for (a, &c) in coord.iter().enumerate() {
                    let g = off[a + 1] + c;
                    inside &= g < raw.shape[a + 1];
                    idx = idx * raw.shape[a + 1] + g.min(raw.shape[a + 1] - 1);
                }
                let x0 = off[d - 1];
                if !inside || x0 >= raw.shape[d - 1] {
                    continue;
                }
                let w = line.min(raw.shape[d - 1] - x0);
                let dst = (off[0] + r0 + rr - first) * row + idx * raw.shape[d - 1] + x0;
                let src = rr * crow + l * line;
                out[dst..dst + w].copy_from_slice(&tmp[src..src + w]);
            }
        }
    }
    Ok(())
}

/// A new HDF5 file written by one process: groups, attributes and float datasets.
/// Created under a temporary name and renamed on [`H5Writer::finish`], so a file with
/// the final name is always complete.
pub struct H5Writer {
    file: Option<hdf5::File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl H5Writer {
    /// Starts `path` (written as `path.tmp` until [`finish`](Self::finish)).
    pub fn create(path: &Path) -> Result<Self> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = hdf5::sync::sync(|| hdf5::File::create(&tmp)).map_err(|e| Error::io(path, format!("cannot create: {e}")))?;
        Ok(H5Writer { file: Some(file), tmp, path: path.to_path_buf() })
    }

    fn f(&self) -> &hdf5::File {
        self.file.as_ref().expect("open until finish")
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::io(&self.path, e)
    }

    /// Creates group `name` and its parents.
    pub fn group(&self, name: &str) -> Result<()> {
        hdf5::sync::sync(|| {
            let mut cur = String::new();
            for part in name.trim_matches('/').split('/') {
                cur.push('/');
                cur.push_str(part);
                if !self.f().link_exists(&cur) {
                    self.f().create_group(&cur).map_err(|e| self.err(e))?;
                }
            }
            Ok(())
        })
    }

    /// A string attribute on group `obj`.
    pub fn attr_str(&self, obj: &str, name: &str, value: &str) -> Result<()> {
        hdf5::sync::sync(|| {
            let v: VarLenUnicode = value.parse().map_err(|e| self.err(format!("{e:?}")))?;
            let g = self.f().group(obj).map_err(|e| self.err(e))?;
            g.new_attr::<VarLenUnicode>().create(name).and_then(|a| a.write_scalar(&v)).map_err(|e| self.err(e))
        })
    }

    /// A 1D float attribute on group `obj`.
    pub fn attr_f64(&self, obj: &str, name: &str, value: &[f64]) -> Result<()> {
        hdf5::sync::sync(|| {
            let g = self.f().group(obj).map_err(|e| self.err(e))?;
            g.new_attr::<f64>().shape([value.len()]).create(name).and_then(|a| a.write(value)).map_err(|e| self.err(e))
        })
    }

    /// A 1D integer attribute on group `obj`.
    pub fn attr_u64(&self, obj: &str, name: &str, value: &[u64]) -> Result<()> {
        hdf5::sync::sync(|| {
            let g = self.f().group(obj).map_err(|e| self.err(e))?;
            g.new_attr::<u64>().shape([value.len()]).create(name).and_then(|a| a.write(value)).map_err(|e| self.err(e))
        })
    }

    /// A float dataset `name` of `shape` (slowest axis first) holding `data` in C order.
    pub fn dataset_f64(&self, name: &str, shape: &[usize], data: &[f64]) -> Result<()> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(self.err(format!("dataset {name}: {} values for shape {shape:?}", data.len())));
        }
        hdf5::sync::sync(|| {
            let a = ndarray::ArrayViewD::from_shape(ndarray::IxDyn(shape), data).map_err(|e| self.err(e))?;
            self.f().new_dataset_builder().with_data(a).create(name).map_err(|e| self.err(format!("dataset {name}: {e}")))?;
            Ok(())
        })
    }

    /// Closes the file and renames it to its final name.
    pub fn finish(mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            hdf5::sync::sync(|| f.close()).map_err(|e| self.err(e))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| self.err(format!("cannot rename into place: {e}")))
    }
}

impl Drop for H5Writer {
    fn drop(&mut self) {
        // Not finished: leave nothing that looks complete behind.
        if let Some(f) = self.file.take() {
            let _ = hdf5::sync::sync(|| f.close());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_slabs_and_attributes() {
        let dir = std::env::temp_dir().join(format!("decomp-h5read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.h5");
        let w = H5Writer::create(&path).unwrap();
        assert!(!path.exists(), "not renamed before finish");
        w.group("/a/b").unwrap();
        w.attr_str("/", "format", "tessera").unwrap();
        w.attr_f64("/a", "time", &[1.5]).unwrap();
        w.attr_u64("/a/b", "cells", &[4, 3]).unwrap();
        let data: Vec<f64> = (0..12).map(|v| v as f64).collect();
        w.dataset_f64("/a/b/f", &[3, 4], &data).unwrap();
        w.finish().unwrap();

        let r = H5Reader::open(&path).unwrap();
        assert_eq!(r.attr_str("/", "format").unwrap(), "tessera");
        assert_eq!(r.attr_f64("/a", "time").unwrap(), vec![1.5]);
        assert_eq!(r.attr_u64("/a/b", "cells").unwrap(), vec![4, 3]);
        assert_eq!(r.members("/a").unwrap(), vec!["b".to_string()]);
        assert!(r.exists("/a/b/f") && !r.exists("/a/c/f"));
        assert_eq!(r.shape("/a/b/f").unwrap(), vec![3, 4]);
        let mut out = vec![0.0; 4];
        r.read_slab("/a/b/f", &[1, 1], &[2, 2], &mut out).unwrap();
        assert_eq!(out, vec![5.0, 6.0, 9.0, 10.0]);
        assert!(r.read_slab("/a/b/f", &[2, 0], &[2, 4], &mut [0.0; 8]).is_err());
        assert!(r.attr_str("/a", "nope").unwrap_err().to_string().contains("nope"));

        // A truncated file is an error, not a crash.
        let bytes = std::fs::read(&path).unwrap();
        let bad = dir.join("bad.h5");
        std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
        let opened = H5Reader::open(&bad);
        if let Ok(r) = opened {
            assert!(r.read_slab("/a/b/f", &[0, 0], &[3, 4], &mut [0.0; 12]).is_err());
        }
        assert!(H5Reader::open(&dir.join("missing.h5")).err().expect("missing file").to_string().contains("no such file"));
    }

    #[test]
    fn raw_chunk_reads_equal_hdf5_reads() {
        use crate::comm::{Comm, ThreadComm};
        use crate::io::H5File;
        use crate::{BlockLayout, Field, Grid};
        let dir = std::env::temp_dir().join(format!("decomp-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 2D split along y only (chunks of whole rows) and along both axes, and 3D.
        for (k, (cells, ranks)) in
            [(vec![13usize, 11], 2usize), (vec![13, 11], 4), (vec![7, 6, 9], 3), (vec![7, 6, 9], 4)].into_iter().enumerate()
        {
            let path = dir.join(format!("r{k}.h5"));
            let d = cells.len();
            let grid = Grid::new(&cells, &vec![0.0; d], &vec![1.0; d], &vec![false; d]);
            ThreadComm::run(ranks, |c| {
                let layout = BlockLayout::auto(&grid, c.size(), 1).unwrap();
                let h = H5File::create(c, &path).unwrap();
                let mut f = Field::zeros(layout.blocks[c.rank()], d, 1);
                f.fill_with(|i, j, kk| (i + 100 * j + 10000 * kk) as f64);
                h.write_field(c, "/f", &layout, &f).unwrap();
                h.close(c).unwrap();
            });
            let r = H5Reader::open(&path).unwrap();
            let raw = r.raw_chunks("/f").unwrap().expect("plain chunked dataset");
            let file = std::fs::File::open(&path).unwrap();
            let rows = cells[d - 1];
            let row: usize = cells[..d - 1].iter().product();
            for (first, n) in [(0, rows), (1, 3), (rows - 2, 2), (3, 1)] {
                let mut a = vec![0.0; n * row];
                let mut b = vec![0.0; n * row];
                read_raw_rows(&file, &raw, first, n, &mut a).unwrap();
                let mut start = vec![0; d];
                start[0] = first;
                let mut count: Vec<usize> = r.shape("/f").unwrap();
                count[0] = n;
                r.read_slab("/f", &start, &count, &mut b).unwrap();
                assert_eq!(a, b, "case {k} rows {first}+{n}");
            }
        }
    }

    #[test]
    fn unfinished_writer_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("decomp-h5write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("u.h5");
        {
            let w = H5Writer::create(&path).unwrap();
            w.group("/g").unwrap();
        }
        assert!(!path.exists());
        assert!(!dir.join("u.h5.tmp").exists());
    }
}
