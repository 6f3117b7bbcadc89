//! Cartesian block decomposition of a [`Grid`] over ranks.
use crate::error::{Error, Result};
use crate::grid::{Grid, IndexBox};

/// How a grid is split into one block per rank on a Cartesian process grid.
///
/// Ranks are numbered with x fastest: `rank = cx + px * (cy + py * cz)`.
/// Each axis is split as evenly as possible: block sizes differ by at most one cell,
/// the larger blocks first.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockLayout {
    /// The global grid.
    pub grid: Grid,
    /// Processes per axis (x, y, z); `procs[2] == 1` in 2D.
    pub procs: [usize; 3],
    /// One block per rank, in rank order.
    pub blocks: Vec<IndexBox>,
}

/// First index of part `i` when `n` cells are split into `p` parts.
#[inline]
pub fn split_start(n: usize, p: usize, i: usize) -> usize {
    i * (n / p) + i.min(n % p)
}

impl BlockLayout {
    /// The layout for a fixed process grid. Fails when a block would be thinner than
    /// `min_width` cells along some axis, or when `procs` has the wrong dimension.
    pub fn new(grid: &Grid, procs: &[usize], min_width: usize) -> Result<Self> {
        if procs.len() != grid.dims {
            return Err(Error::Layout(format!("process grid {:?} has {} entries but the mesh is {}D", procs, procs.len(), grid.dims)));
        }
        let mut p = [1usize; 3];
        for a in 0..grid.dims {
            if procs[a] == 0 {
                return Err(Error::Layout("process counts must be at least 1".into()));
            }
            p[a] = procs[a];
            if grid.cells[a] / p[a] < min_width.max(1) {
                return Err(Error::Layout(format!(
                    "{} cells along {} cannot be split over {} ranks with blocks of at least {} cell(s)",
                    grid.cells[a],
                    ["x", "y", "z"][a],
                    p[a],
                    min_width.max(1)
                )));
            }
        }
        let mut blocks = Vec::with_capacity(p.iter().product());
        for cz in 0..p[2] {
            for cy in 0..p[1] {
                for cx in 0..p[0] {
                    let c = [cx, cy, cz];
                    let mut b = IndexBox { lo: [0; 3], hi: [1; 3] };
                    for a in 0..3 {
                        b.lo[a] = split_start(grid.cells[a], p[a], c[a]);
                        b.hi[a] = split_start(grid.cells[a], p[a], c[a] + 1);
                    }
                    blocks.push(b);
                }
            }
        }
        Ok(BlockLayout { grid: grid.clone(), procs: p, blocks })
    }

    /// The layout over `nranks` that minimises the number of halo cells exchanged
    /// (ties: smaller largest block, then splits along the slowest axes first so
    /// x-rows stay contiguous).
    pub fn auto(grid: &Grid, nranks: usize, min_width: usize) -> Result<Self> {
        // (halo cells, largest block, tie-break) and the process grid.
        type Key = (usize, usize, [usize; 3]);
        let mut best: Option<(Key, [usize; 3])> = None;
        for px in 1..=nranks {
            if nranks % px != 0 {
                continue;
            }
            let rest = nranks / px;
            for py in 1..=rest {
                if rest % py != 0 {
                    continue;
                }
                let pz = rest / py;
                if grid.dims == 2 && pz != 1 {
                    continue;
                }
                let p = [px, py, pz];
                if (0..grid.dims).any(|a| grid.cells[a] / p[a] < min_width.max(1)) {
                    continue;
                }
                let halo = Self::interface_cells(grid, p);
                let maxblock: usize = (0..3).map(|a| grid.cells[a].div_ceil(p[a])).product();
                // Prefer splitting z, then y: reverse the order so larger pz wins ties.
                let tie = [usize::MAX - pz, usize::MAX - py, usize::MAX - px];
                let key = (halo, maxblock, tie);
                if best.as_ref().is_none_or(|(k, _)| key < *k) {
                    best = Some((key, p));
                }
            }
        }
        match best {
            Some((_, p)) => Self::new(grid, &p[..grid.dims], min_width),
            None => Err(Error::Layout(format!(
                "a {:?} mesh cannot be split over {} ranks with blocks of at least {} cell(s)",
                &grid.cells[..grid.dims],
                nranks,
                min_width.max(1)
            ))),
        }
    }

    /// Cells on internal (and periodic) interfaces for process grid `p`, counted once
    /// per side: the total halo traffic of one exchange of width 1.
    fn interface_cells(grid: &Grid, p: [usize; 3]) -> usize {
        let mut total = 0;
        for (a, &pa) in p.iter().enumerate().take(grid.dims) {
            let cuts = if grid.periodic[a] && pa > 1 { pa } else { pa - 1 };
            let face: usize = (0..3).filter(|&b| b != a).map(|b| grid.cells[b]).product();
            total += 2 * cuts * face;
        }
        total
    }

    /// Number of ranks.
    pub fn nranks(&self) -> usize {
        self.blocks.len()
    }

    /// Process-grid coordinates of `rank`.
    pub fn coords(&self, rank: usize) -> [usize; 3] {
        let p = self.procs;
        [rank % p[0], (rank / p[0]) % p[1], rank / (p[0] * p[1])]
    }

    /// Rank at process-grid coordinates `c`.
    pub fn rank_at(&self, c: [usize; 3]) -> usize {
        c[0] + self.procs[0] * (c[1] + self.procs[1] * c[2])
    }

    /// The rank at offset `d` (each component -1, 0 or 1) from `rank`, wrapping periodic
    /// axes; `None` past a non-periodic boundary.
    pub fn neighbour(&self, rank: usize, d: [i32; 3]) -> Option<usize> {
        let c = self.coords(rank);
        let mut n = [0usize; 3];
        for a in 0..3 {
            let p = self.procs[a] as i64;
            let mut x = c[a] as i64 + d[a] as i64;
            if x < 0 || x >= p {
                if !self.grid.periodic[a] || d[a] == 0 {
                    return None;
                }
                x = x.rem_euclid(p);
            }
            n[a] = x as usize;
        }
        Some(self.rank_at(n))
    }

    /// Does `rank`'s block touch the physical (non-periodic) boundary on side `side`
    /// (0 = low, 1 = high) of `axis`?
    pub fn on_boundary(&self, rank: usize, axis: usize, side: usize) -> bool {
        if self.grid.periodic[axis] || axis >= self.grid.dims {
            return false;
        }
        let c = self.coords(rank)[axis];
        if side == 0 {
            c == 0
        } else {
            c + 1 == self.procs[axis]
        }
    }

    /// Per-rank statistics for reports: (cells, halo cells of width `ghost`).
    pub fn rank_stats(&self, rank: usize, ghost: usize) -> (usize, usize) {
        let b = self.blocks[rank];
        let s = b.shape();
        let mut halo = 0;
        for a in 0..self.grid.dims {
            for side in [-1i32, 1] {
                let mut d = [0; 3];
                d[a] = side;
                if self.neighbour(rank, d).is_some() {
                    let face: usize = (0..3).filter(|&x| x != a).map(|x| s[x]).product();
                    halo += face * ghost;
                }
            }
        }
        (b.count(), halo)
    }

    /// Load imbalance: largest block over the average block.
    pub fn imbalance(&self) -> f64 {
        let max = self.blocks.iter().map(|b| b.count()).max().unwrap_or(0) as f64;
        let avg = self.grid.total_cells() as f64 / self.nranks() as f64;
        max / avg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uneven_split_within_one_cell() {
        let g = Grid::new(&[10, 7], &[0.0, 0.0], &[1.0, 1.0], &[false, false]);
        let l = BlockLayout::new(&g, &[3, 2], 1).unwrap();
        let xs: Vec<usize> = (0..3).map(|r| l.blocks[r].shape()[0]).collect();
        assert_eq!(xs, vec![4, 3, 3]);
        assert_eq!(l.blocks[3].lo[1], 4);
        // Blocks tile the grid exactly.
        let total: usize = l.blocks.iter().map(|b| b.count()).sum();
        assert_eq!(total, 70);
        for i in 0..10 {
            for j in 0..7 {
                let owners = l.blocks.iter().filter(|b| b.contains([i, j, 0])).count();
                assert_eq!(owners, 1);
            }
        }
    }

    #[test]
    fn auto_minimises_interfaces() {
        // A long thin domain is cut across its long axis.
        let g = Grid::new(&[400, 20], &[0.0; 2], &[1.0; 2], &[false; 2]);
        assert_eq!(BlockLayout::auto(&g, 4, 1).unwrap().procs, [4, 1, 1]);
        let g = Grid::new(&[64, 64], &[0.0; 2], &[1.0; 2], &[false; 2]);
        assert_eq!(BlockLayout::auto(&g, 4, 1).unwrap().procs, [2, 2, 1]);
        let g = Grid::new(&[32, 32, 32], &[0.0; 3], &[1.0; 3], &[false; 3]);
        assert_eq!(BlockLayout::auto(&g, 8, 1).unwrap().procs, [2, 2, 2]);
        // Ties go to the slowest axis.
        let g = Grid::new(&[64, 64], &[0.0; 2], &[1.0; 2], &[false; 2]);
        assert_eq!(BlockLayout::auto(&g, 2, 1).unwrap().procs, [1, 2, 1]);
        // Impossible splits are errors, not panics.
        let g = Grid::new(&[2, 2], &[0.0; 2], &[1.0; 2], &[false; 2]);
        assert!(BlockLayout::auto(&g, 7, 1).is_err());
    }

    #[test]
    fn neighbours_wrap_on_periodic_axes() {
        let g = Grid::new(&[8, 8], &[0.0; 2], &[1.0; 2], &[true, false]);
        let l = BlockLayout::new(&g, &[2, 2], 1).unwrap();
        assert_eq!(l.neighbour(0, [-1, 0, 0]), Some(1));
        assert_eq!(l.neighbour(0, [0, -1, 0]), None);
        assert_eq!(l.neighbour(0, [1, 1, 0]), Some(3));
        assert_eq!(l.neighbour(1, [1, 1, 0]), Some(2));
        assert!(l.on_boundary(0, 1, 0) && !l.on_boundary(0, 0, 0));
        assert_eq!(l.imbalance(), 1.0);
    }
}
