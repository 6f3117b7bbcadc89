//! Structured cell-centred grids and index boxes.

/// A uniform structured grid of `cells` in 2D or 3D over `[lower, upper]`.
///
/// Axis order is always x, y, z; a 2D grid has `cells[2] == 1` and `dims == 2`.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// 2 or 3.
    pub dims: usize,
    /// Cells per axis (x, y, z); `cells[2] == 1` in 2D.
    pub cells: [usize; 3],
    /// Lower corner.
    pub lower: [f64; 3],
    /// Upper corner.
    pub upper: [f64; 3],
    /// Periodicity per axis.
    pub periodic: [bool; 3],
}

impl Grid {
    /// A 2D or 3D grid; `cells.len()` gives the dimension.
    pub fn new(cells: &[usize], lower: &[f64], upper: &[f64], periodic: &[bool]) -> Self {
        let dims = cells.len();
        assert!(dims == 2 || dims == 3, "grid must be 2D or 3D");
        let mut g = Grid { dims, cells: [1; 3], lower: [0.0; 3], upper: [1.0; 3], periodic: [false; 3] };
        for a in 0..dims {
            g.cells[a] = cells[a];
            g.lower[a] = lower[a];
            g.upper[a] = upper[a];
            g.periodic[a] = periodic.get(a).copied().unwrap_or(false);
        }
        g
    }

    /// Cell width along each axis (1.0 for the unused z axis of a 2D grid).
    pub fn spacing(&self) -> [f64; 3] {
        let mut h = [1.0; 3];
        for (a, h) in h.iter_mut().enumerate().take(self.dims) {
            *h = (self.upper[a] - self.lower[a]) / self.cells[a] as f64;
        }
        h
    }

    /// Coordinate of the centre of cell `i` along `axis`.
    #[inline]
    pub fn centre(&self, axis: usize, i: usize) -> f64 {
        if axis >= self.dims {
            return 0.0;
        }
        let h = (self.upper[axis] - self.lower[axis]) / self.cells[axis] as f64;
        self.lower[axis] + (i as f64 + 0.5) * h
    }

    /// Total number of cells.
    pub fn total_cells(&self) -> usize {
        self.cells.iter().product()
    }

    /// The box of all cells.
    pub fn index_box(&self) -> IndexBox {
        IndexBox { lo: [0; 3], hi: self.cells }
    }
}

/// Calls `f([i, j, k])` for every cell of the layer `layer` along `axis` of a box of
/// `extent` cells: the other two axes `b = axis + 1`, `c = axis + 2` (mod 3) run with
/// `c` outer and `b` inner (the order face values are stored in).
pub fn for_each_in_layer(extent: [usize; 3], axis: usize, layer: usize, mut f: impl FnMut([usize; 3])) {
    let (b, c) = ((axis + 1) % 3, (axis + 2) % 3);
    for jc in 0..extent[c] {
        for jb in 0..extent[b] {
            let mut l = [0usize; 3];
            l[axis] = layer;
            l[b] = jb;
            l[c] = jc;
            f(l);
        }
    }
}

/// A half-open box of cell indices `[lo, hi)` per axis (x, y, z).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexBox {
    /// First index per axis.
    pub lo: [usize; 3],
    /// One past the last index per axis.
    pub hi: [usize; 3],
}

impl IndexBox {
    /// Extent per axis.
    pub fn shape(&self) -> [usize; 3] {
        [self.hi[0] - self.lo[0], self.hi[1] - self.lo[1], self.hi[2] - self.lo[2]]
    }

    /// Number of cells.
    pub fn count(&self) -> usize {
        self.shape().iter().product()
    }

    /// True when the box holds no cell.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Intersection of two boxes (possibly empty).
    pub fn intersect(&self, other: &IndexBox) -> IndexBox {
        let mut r = *self;
        for a in 0..3 {
            r.lo[a] = self.lo[a].max(other.lo[a]);
            r.hi[a] = self.hi[a].min(other.hi[a]).max(r.lo[a]);
        }
        r
    }

    /// True when `[i, j, k]` lies inside.
    pub fn contains(&self, p: [usize; 3]) -> bool {
        (0..3).all(|a| p[a] >= self.lo[a] && p[a] < self.hi[a])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_and_centres() {
        let g = Grid::new(&[4, 2], &[0.0, -1.0], &[1.0, 1.0], &[true, false]);
        assert_eq!(g.dims, 2);
        assert_eq!(g.spacing()[..2], [0.25, 1.0]);
        assert_eq!(g.centre(0, 0), 0.125);
        assert_eq!(g.centre(1, 1), 0.5);
        assert_eq!(g.centre(2, 0), 0.0);
        assert_eq!(g.total_cells(), 8);
        assert!(g.periodic[0] && !g.periodic[1]);
    }

    #[test]
    fn box_intersection() {
        let a = IndexBox { lo: [0, 0, 0], hi: [4, 4, 1] };
        let b = IndexBox { lo: [2, 3, 0], hi: [6, 8, 1] };
        let c = a.intersect(&b);
        assert_eq!(c, IndexBox { lo: [2, 3, 0], hi: [4, 4, 1] });
        assert_eq!(c.count(), 2);
        let d = a.intersect(&IndexBox { lo: [5, 0, 0], hi: [6, 1, 1] });
        assert!(d.is_empty());
        assert!(a.contains([3, 3, 0]) && !a.contains([4, 0, 0]));
    }
}
