//! Cell-centred fields on one rank's block, with ghost layers.
use crate::grid::IndexBox;
use ndarray::{s, Array3, ArrayView3, ArrayViewMut3};

/// A scalar field on one block, stored as an `ndarray::Array3` in (z, y, x) order
/// (x fastest) with `ghost[a]` extra layers on both sides of axis `a`.
/// A 2D field has one z layer and no ghost along z.
#[derive(Clone, Debug)]
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
        let data = Array3::zeros((n[2] + 2 * ghost[2], n[1] + 2 * ghost[1], n[0] + 2 * ghost[0]));
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
}
