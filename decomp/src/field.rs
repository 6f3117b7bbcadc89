//! Cell-centred fields on one rank's block, with ghost layers.
use crate::grid::IndexBox;
use ndarray::{s, Array3, ArrayView3, ArrayViewMut3};

/// A scalar field on one block, stored as an `ndarray::Array3` in (z, y, x) order
/// (x fastest) with `ghost[a]` extra layers on both sides of axis `a`.
/// A 2D field has one z layer and no ghost along z. Large fields live on transparent
/// huge pages where the kernel offers them ([`zeroed_storage`]).
#[derive(Debug)]
pub struct Field {
    /// Storage including ghosts, shape `[nz + 2gz, ny + 2gy, nx + 2gx]`.
    pub data: Array3<f64>,
    /// The block of global cells this field holds (its interior).
    pub block: IndexBox,
    /// Ghost width per axis (x, y, z).
    pub ghost: [usize; 3],
}

impl Field {
    /// A zero field on `block` with ghost width `g` on every axis in use (`dims` 2 or 3).
    pub fn zeros(block: IndexBox, dims: usize, g: usize) -> Self {
        let ghost = [g, g, if dims == 3 { g } else { 0 }];
        let n = block.shape();
        let shape = (n[2] + 2 * ghost[2], n[1] + 2 * ghost[1], n[0] + 2 * ghost[0]);
        let data = Array3::from_shape_vec(shape, zeroed_storage(shape.0 * shape.1 * shape.2)).expect("length matches shape");
        Field { data, block, ghost }
    }

    /// Interior extent (x, y, z).
    #[inline]
    pub fn shape(&self) -> [usize; 3] {
        self.block.shape()
    }

    /// Storage extent including ghosts (x, y, z).
    #[inline]
    pub fn padded_shape(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[2], s[1], s[0]]
    }

    /// Storage strides (x, y, z) in elements: 1, row length, plane size.
    #[inline]
    pub fn strides(&self) -> [usize; 3] {
        let p = self.padded_shape();
        [1, p[0], p[0] * p[1]]
    }

    /// Flat storage index of interior cell `(i, j, k)` (local, 0-based, no ghosts).
    #[inline]
    pub fn idx(&self, i: usize, j: usize, k: usize) -> usize {
        let p = self.padded_shape();
        ((k + self.ghost[2]) * p[1] + j + self.ghost[1]) * p[0] + i + self.ghost[0]
    }

    /// Interior values as a (z, y, x) view.
    pub fn interior(&self) -> ArrayView3<'_, f64> {
        let (g, n) = (self.ghost, self.shape());
        self.data.slice(s![g[2]..g[2] + n[2], g[1]..g[1] + n[1], g[0]..g[0] + n[0]])
    }

    /// Interior values as a mutable (z, y, x) view.
    pub fn interior_mut(&mut self) -> ArrayViewMut3<'_, f64> {
        let (g, n) = (self.ghost, self.shape());
        self.data.slice_mut(s![g[2]..g[2] + n[2], g[1]..g[1] + n[1], g[0]..g[0] + n[0]])
    }

    /// Interior copied into a contiguous (z, y, x) array.
    pub fn interior_owned(&self) -> Array3<f64> {
        self.interior().to_owned()
    }

    /// Fills the interior from `f(i, j, k)` with global cell indices.
    pub fn fill_with(&mut self, mut f: impl FnMut(usize, usize, usize) -> f64) {
        let lo = self.block.lo;
        for ((k, j, i), v) in self.interior_mut().indexed_iter_mut() {
            *v = f(lo[0] + i, lo[1] + j, lo[2] + k);
        }
    }

    /// Storage as a flat slice.
    #[inline]
    pub fn as_slice(&self) -> &[f64] {
        self.data.as_slice().expect("field storage is contiguous")
    }

    /// Storage as a flat mutable slice.
    #[inline]
    pub fn as_slice_mut(&mut self) -> &mut [f64] {
        self.data.as_slice_mut().expect("field storage is contiguous")
    }
}

impl Clone for Field {
    /// A copy in storage of its own from [`zeroed_storage`] (a derived clone would
    /// touch every page while copying, before it could be advised).
    fn clone(&self) -> Self {
        let mut data = Array3::from_shape_vec(self.data.raw_dim(), zeroed_storage(self.data.len())).expect("length matches shape");
        data.assign(&self.data);
        Field { data, block: self.block, ghost: self.ghost }
    }
}

/// Storage of at least this many bytes is advised onto huge pages.
const ADVISE_FROM: usize = 4 << 20;

/// `len` zeros, for field-sized arrays. Storage of 4 MiB or more is advised onto
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`) before anything touches it, so
/// its first-touch faults map 2 MiB pages: stencil sweeps read several planes far
/// apart in several fields at once, and with 4 KiB pages those reads miss the TLB
/// (the 3D multigrid solve is about 20 % faster, docs/BENCHMARKS.md). Where the
/// kernel has THP disabled, or off Linux, this is a plain zeroed vector.
pub fn zeroed_storage(len: usize) -> Vec<f64> {
    let mut v = vec![0.0; len];
    if len * std::mem::size_of::<f64>() >= ADVISE_FROM {
        advise_huge(&mut v);
    }
    v
}

#[cfg(target_os = "linux")]
fn advise_huge(v: &mut [f64]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if hi > lo {
        // SAFETY: [lo, hi) lies inside `v`'s allocation, which this function borrows
        // mutably; MADV_HUGEPAGE changes how pages are backed, never their contents.
        // A refusal (THP compiled out or disabled) leaves ordinary pages: ignored.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: &mut [f64]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexing_matches_views() {
        let b = IndexBox { lo: [2, 3, 0], hi: [5, 5, 1] };
        let mut f = Field::zeros(b, 2, 2);
        assert_eq!(f.padded_shape(), [7, 6, 1]);
        f.fill_with(|i, j, _| (10 * i + j) as f64);
        let idx = f.idx(1, 1, 0);
        assert_eq!(f.as_slice()[idx], 34.0);
        assert_eq!(f.interior()[[0, 1, 1]], 34.0);
        assert_eq!(f.interior_owned().shape(), &[1, 2, 3]);
    }

    #[test]
    fn large_fields_start_zero_and_clone_into_storage_of_their_own() {
        // 130^3 values (17 MiB): past ADVISE_FROM, so the storage is advised.
        let b = IndexBox { lo: [0, 0, 0], hi: [128, 128, 128] };
        let mut f = Field::zeros(b, 3, 1);
        assert!(f.as_slice().len() * 8 >= ADVISE_FROM);
        assert!(f.as_slice().iter().all(|&v| v == 0.0));
        f.fill_with(|i, j, k| (i + 131 * j + 17161 * k) as f64);
        let g = f.clone();
        assert_eq!(g.data, f.data);
        assert_eq!((g.block, g.ghost), (f.block, f.ghost));
        assert_ne!(g.as_slice().as_ptr(), f.as_slice().as_ptr());
        f.as_slice_mut()[0] = -1.0;
        assert_eq!(g.as_slice()[0], 0.0);
    }
}
