//! Reproducible global sums and dot products: exact accumulation, one rounding.
//!
//! Floating-point addition is not associative, so a sum computed on 1 rank and on 4
//! ranks (or in another order, or with another partition) differs in the last bits, and
//! Krylov iterates drift apart. [`ExactSum`] instead accumulates the *exact* value of a
//! sum of `f64`s in a fixed-point superaccumulator (Kulisch style) that spans the whole
//! `f64` range, and rounds once, to nearest with ties to even, in [`ExactSum::to_f64`].
//! The result is the correctly rounded exact sum: independent of order, partition and
//! rank count, bit for bit.
//!
//! [`exact_allreduce`] combines the accumulators of all ranks in one integer
//! `allreduce_u64`; integer sums are exact in any order, so every backend and every
//! rank count agrees. [`dot_exact`] rounds each product `a[i] * b[i]` (deterministic)
//! and sums the products exactly.
//!
//! Representation: the value is `sum(limbs[i] * 2^(32 i - 1074))`, `limbs` being `i64`
//! with carries deferred. A finite `f64` is a 53-bit integer `m` times `2^(p - 1074)`
//! with `0 <= p <= 2045`; it is added as two pieces, the low `32 - p % 32` bits of `m`
//! (shifted, `< 2^32`) into limb `p / 32` and the rest (`< 2^53`) into the next limb,
//! so about a thousand additions fit before carries must be propagated
//! ([`ExactSum`] does this itself). Non-finite addends are counted apart. Long slices
//! are first tallied into one 128-bit bucket per sign and exponent (one integer add per
//! value, about as fast as reading the data), and the buckets added to the limbs once.
//!
//! Semantics (IEEE 754 round to nearest on the exact sum):
//! - NaN if any addend is NaN or if both `+inf` and `-inf` occur; else `+inf` / `-inf`
//!   if an infinite addend occurs; NaN results are the canonical `f64::NAN`.
//! - A finite exact sum rounds to `+-inf` only if it is beyond `f64::MAX` after
//!   rounding. So, unlike left-to-right IEEE addition, `MAX + MAX - MAX` is `MAX`.
//! - An exact zero is `-0.0` if there is at least one addend and all addends are
//!   `-0.0`, else `+0.0` (as sequential IEEE addition gives; the empty sum is `+0.0`).
use crate::comm::{Comm, ReduceOp};

/// Number of limbs. Values touch limbs `0..=64` (`p / 32 + 1 <= 64`); three more hold
/// carries, so the top limb has weight `2^1070` and stays tiny (`< 2^18` for any
/// count of addends below `2^64`), which [`exact_allreduce`] relies on.
const LIMBS: usize = 68;
/// Bits of weight per limb.
const LIMB_BITS: u32 = 32;
/// Additions into a limb set with limbs in `[-2^31, 2^31]` before one may overflow
/// `i64`: each addition changes a limb by less than `2^53`, `2^31 + 1023 (2^53 - 1)
/// < 2^63`.
const ROOM: u32 = 1023;
/// Slices at least this long go through a [`Table`] (its setup and flush cost about
/// as much as adding this many values one by one).
const TABLE_MIN: usize = 2048;
/// Values tallied into one [`Table`] before it is flushed: the per-bucket count in
/// bits 96.. must stay below 2^32.
const TABLE_MAX: usize = u32::MAX as usize;
/// One count in a [`Table`] bucket.
const TALLY: u128 = 1 << 96;
/// `u64` words per accumulator in [`exact_allreduce`]: limbs, then `nan`, `pos_inf`,
/// `neg_inf`, `count`, and whether any addend was not `-0.0`.
const WORDS: usize = LIMBS + 5;
/// Accumulators reduced from a stack buffer (no allocation) by [`exact_allreduce`].
const STACK_SUMS: usize = 4;

const FRAC_MASK: u64 = (1 << 52) - 1;
const IMPLICIT_BIT: u64 = 1 << 52;
const NEG_ZERO_BITS: u64 = 1 << 63;

type Limbs = [i64; LIMBS];

/// For long slices, one bucket per sign and biased exponent (the top 12 bits of an
/// `f64`), each a 128-bit integer `[low, high]` holding the sum of the 53-bit mantissas
/// `frac | 2^52` of the values tallied there (< 2^85) plus their count times 2^96. A
/// value costs one add with carry, no shift and no branch; subnormals and zeros (which
/// have no implicit bit) and infinities and NaN (which must not be summed) are told
/// apart at the flush, by the count. 64 KiB, on the stack of [`ExactSum::add_slice`].
type Table = [[u64; 2]; 4096];

/// Tallies `x` into its bucket.
#[inline(always)]
fn tally(table: &mut Table, x: f64) {
    let bits = x.to_bits();
    let bucket = &mut table[(bits >> 52) as usize];
    // Spelled out as two words: as a `u128 +=` LLVM splits the addend into two
    // 128-bit additions, a longer chain through the bucket.
    let (low, carry) = bucket[0].overflowing_add((bits & FRAC_MASK) | IMPLICIT_BIT);
    bucket[0] = low;
    bucket[1] += carry as u64 + (TALLY >> 64) as u64;
}

/// Products tallied per block in [`ExactSum::add_products`]: multiplying a block into
/// a buffer first keeps the loads of `a` and `b` off the buckets' dependency chains
/// (about 1.5x faster on 4M values out of cache).
const PRODUCT_BLOCK: usize = 256;

/// The exact sum of any number of `f64`s; see the [module docs](self).
#[derive(Clone)]
pub struct ExactSum {
    limbs: Limbs,
    /// Additions left before the limbs must be normalised.
    room: u32,
    /// Number of addends.
    count: u64,
    /// Zero iff every addend so far was `-0.0` (OR of `bits ^ NEG_ZERO_BITS`).
    not_neg_zero: u64,
    /// Nonzero iff a NaN was added (a lower bound on their number).
    nan: u64,
    /// Number of `+inf` added.
    pos_inf: u64,
    /// Number of `-inf` added.
    neg_inf: u64,
}

impl Default for ExactSum {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ExactSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactSum").field("value", &self.to_f64()).field("count", &self.count).finish()
    }
}

/// Adds finite `bits` to `limbs` (at most [`ROOM`] times between normalisations);
/// returns false, adding nothing, if `bits` is infinite or NaN.
#[inline(always)]
fn deposit(limbs: &mut Limbs, bits: u64) -> bool {
    let e = ((bits >> 52) & 0x7ff) as usize;
    if e == 0x7ff {
        return false;
    }
    // m * 2^(p - 1074): subnormals (e = 0) have p = 0 and no implicit bit.
    let normal = (e != 0) as u64;
    let m = (bits & FRAC_MASK) | (normal << 52);
    let p = e + (1 - normal as usize) - 1;
    let (k, s) = (p >> 5, (p & 31) as u32);
    let lo = ((m << s) & 0xffff_ffff) as i64;
    let hi = (m >> (LIMB_BITS - s)) as i64;
    // Two's complement negation by the sign mask: (v ^ -1) + 1 = -v.
    let neg = -((bits >> 63) as i64);
    limbs[k] += (lo ^ neg) - neg;
    limbs[k + 1] += (hi ^ neg) - neg;
    true
}

/// Propagates carries so that every limb but the top one is in `[-2^31, 2^31)`;
/// the value is unchanged.
fn normalize(limbs: &mut Limbs) {
    let mut carry = 0i64;
    for l in &mut limbs[..LIMBS - 1] {
        let v = *l + carry;
        carry = (v + (1 << 31)) >> LIMB_BITS;
        *l = v - (carry << LIMB_BITS);
    }
    limbs[LIMBS - 1] += carry;
}

impl ExactSum {
    /// An empty sum (`+0.0`).
    pub fn new() -> Self {
        ExactSum { limbs: [0; LIMBS], room: ROOM, count: 0, not_neg_zero: 0, nan: 0, pos_inf: 0, neg_inf: 0 }
    }

    /// The exact sum of `xs`.
    pub fn of(xs: &[f64]) -> Self {
        let mut s = Self::new();
        s.add_slice(xs);
        s
    }

    /// Number of values added (over all ranks after [`exact_allreduce`]).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds `x` exactly.
    #[inline]
    pub fn add(&mut self, x: f64) {
        if self.room == 0 {
            self.normalize();
        }
        self.room -= 1;
        self.count += 1;
        let bits = x.to_bits();
        self.not_neg_zero |= bits ^ NEG_ZERO_BITS;
        if !deposit(&mut self.limbs, bits) {
            self.add_non_finite(x);
        }
    }

    /// Adds every value of `xs` exactly: about 1 ns per value from a few thousand
    /// values on (a 64 KiB table on the stack), about 3 ns below.
    pub fn add_slice(&mut self, xs: &[f64]) {
        if xs.len() < TABLE_MIN {
            xs.iter().for_each(|&x| self.add(x));
            return;
        }
        let mut table = [[0; 2]; 4096];
        for chunk in xs.chunks(TABLE_MAX) {
            chunk.iter().for_each(|&x| tally(&mut table, x));
            self.flush(&mut table, chunk.len());
        }
    }

    /// Adds `a[i] * b[i]` for every `i`, each product rounded as IEEE `*` does and the
    /// products summed exactly. Panics if the lengths differ.
    pub fn add_products(&mut self, a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "add_products: slices of different lengths");
        if a.len() < TABLE_MIN {
            a.iter().zip(b).for_each(|(x, y)| self.add(x * y));
            return;
        }
        let mut table = [[0; 2]; 4096];
        let mut products = [0.0; PRODUCT_BLOCK];
        for (ca, cb) in a.chunks(TABLE_MAX).zip(b.chunks(TABLE_MAX)) {
            for (ba, bb) in ca.chunks(PRODUCT_BLOCK).zip(cb.chunks(PRODUCT_BLOCK)) {
                let products = &mut products[..ba.len()];
                products.iter_mut().zip(ba.iter().zip(bb)).for_each(|(p, (x, y))| *p = x * y);
                products.iter().for_each(|&p| tally(&mut table, p));
            }
            self.flush(&mut table, ca.len());
        }
    }

    /// Adds the exact value of `other`.
    pub fn merge(&mut self, other: &ExactSum) {
        let mut o = other.limbs;
        normalize(&mut o);
        // A normalised limb set changes each limb by at most 2^31 < 2^53: one addition.
        if self.room == 0 {
            self.normalize();
        }
        self.room -= 1;
        for (a, b) in self.limbs.iter_mut().zip(o) {
            *a += b;
        }
        self.count += other.count;
        self.not_neg_zero |= other.not_neg_zero;
        self.nan += other.nan;
        self.pos_inf += other.pos_inf;
        self.neg_inf += other.neg_inf;
    }

    /// The exact sum rounded to nearest, ties to even (see the [module docs](self) for
    /// infinities, NaN and signed zero).
    pub fn to_f64(&self) -> f64 {
        if self.nan > 0 || (self.pos_inf > 0 && self.neg_inf > 0) {
            return f64::NAN;
        }
        if self.pos_inf > 0 {
            return f64::INFINITY;
        }
        if self.neg_inf > 0 {
            return f64::NEG_INFINITY;
        }
        let (negative, digits) = match magnitude(&self.limbs, false) {
            Some(d) => (false, d),
            None => (true, magnitude(&self.limbs, true).expect("the negated sum is non-negative")),
        };
        let Some(t) = digits.iter().rposition(|&d| d != 0) else {
            return if self.count > 0 && self.not_neg_zero == 0 { -0.0 } else { 0.0 };
        };
        let sign = (negative as u64) << 63;
        // Bit positions in units of 2^-1074 (position 0 is the subnormal unit).
        let msb = 32 * t as i64 + 31 - digits[t].leading_zeros() as i64;
        if msb > 1023 + 1074 {
            return f64::from_bits(sign | f64::INFINITY.to_bits());
        }
        // Keep bits sh..=msb (53 of them, or all bits >= 0 for the small values that
        // are exactly representable). Then `(sh << 52) + m` is the IEEE encoding: for
        // sh > 0 the leading bit of `m` lifts the biased exponent from sh to sh + 1,
        // and a rounding carry out of `m` moves on into the exponent (up to inf).
        let sh = (msb - 52).max(0);
        // A window of the three top digits (>= 65 significant bits) starting at `base`.
        let digit = |i: i64| if i >= 0 { digits[i as usize] as u128 } else { 0 };
        let ti = t as i64;
        let window = digit(ti) << 64 | digit(ti - 1) << 32 | digit(ti - 2);
        let base = 32 * (ti - 2);
        let below_window = digits[..t.saturating_sub(2)].iter().any(|&d| d != 0);
        let ls = (sh - base) as u32; // 1 <= ls <= 64: msb >= 32 t
        let m = (window >> ls) as u64;
        let rest = window & ((1u128 << ls) - 1);
        let half = 1u128 << (ls - 1);
        let round_up = rest > half || (rest == half && (below_window || m & 1 == 1));
        let bits = ((sh as u64) << 52) + m + round_up as u64;
        f64::from_bits(sign | bits)
    }

    fn normalize(&mut self) {
        normalize(&mut self.limbs);
        self.room = ROOM;
    }

    #[cold]
    fn add_non_finite(&mut self, x: f64) {
        if x.is_nan() {
            self.nan += 1;
        } else if x > 0.0 {
            self.pos_inf += 1;
        } else {
            self.neg_inf += 1;
        }
    }

    /// Adds the `n` values tallied in `table` and clears it.
    fn flush(&mut self, table: &mut Table, n: usize) {
        self.count += n as u64;
        for (idx, slot) in table.iter_mut().enumerate() {
            let [low, high] = std::mem::take(slot);
            let v = (high as u128) << 64 | low as u128;
            if v == 0 {
                continue;
            }
            let (negative, e) = (idx >> 11 == 1, idx & 0x7ff);
            // The tally added the implicit bit to every value; subnormals, zeros,
            // infinities and NaN have none.
            let count = v >> 96;
            let sum = (v & (TALLY - 1)) - if e == 0 || e == 0x7ff { count << 52 } else { 0 };
            if e == 0x7ff {
                // Infinities have fraction 0, NaN do not.
                match (sum != 0, negative) {
                    (true, _) => self.nan += 1,
                    (false, false) => self.pos_inf += count as u64,
                    (false, true) => self.neg_inf += count as u64,
                }
            } else if sum != 0 {
                self.add_wide(negative, e.max(1) - 1, sum);
            }
            if !(negative && e == 0 && sum == 0) {
                self.not_neg_zero = 1;
            }
        }
    }

    /// Adds `+-v 2^(p - 1074)` with `v < 2^85`, `p <= 2045`: four limbs.
    fn add_wide(&mut self, negative: bool, p: usize, v: u128) {
        if self.room == 0 {
            self.normalize();
        }
        // Each of the four limbs changes by less than 2^32: one addition of the budget.
        self.room -= 1;
        let (k, w) = (p >> 5, v << (p & 31));
        for (j, l) in self.limbs[k..k + 4].iter_mut().enumerate() {
            let c = (w >> (32 * j)) as i64 & 0xffff_ffff;
            *l += if negative { -c } else { c };
        }
    }
}

/// The base-2^32 digits of the value of `limbs` (negated if `negate`), or None if
/// that value is negative.
fn magnitude(limbs: &Limbs, negate: bool) -> Option<[u32; LIMBS + 1]> {
    let mut digits = [0u32; LIMBS + 1];
    let mut carry = 0i128;
    for (d, &l) in digits.iter_mut().zip(limbs) {
        let v = if negate { -(l as i128) } else { l as i128 } + carry;
        *d = v as u32; // v mod 2^32
        carry = v >> LIMB_BITS;
    }
    if carry < 0 {
        return None;
    }
    // |limbs| < 2^63, so the final carry is below 2^32 and fills one more digit.
    digits[LIMBS] = carry as u32;
    debug_assert!(carry >> LIMB_BITS == 0);
    Some(digits)
}

/// Replaces every `sums[i]` on every rank by the exact sum of `sums[i]` over all ranks
/// (read it with [`ExactSum::to_f64`]): one `allreduce_u64` for all of them, and the
/// same bits on every rank for any rank count. Allocates nothing for up to 4 sums.
///
/// Each limb is normalised into `[-2^31, 2^31)` and sent offset by `2^31`, so the
/// unsigned per-limb total over `R` ranks is below `R 2^32`: exact (no wrap-around) for
/// up to `2^31` ranks, whatever the backend's overflow behaviour.
///
/// ```
/// use decomp::comm::SerialComm;
/// use decomp::reduce::{dot_exact, exact_allreduce, ExactSum};
///
/// let comm = SerialComm::new();
/// let (r, z) = ([1e100, 1.0, -1e100], [1.0, 3.0, 1.0]);
/// // Both of a CG step's scalars in one reduction.
/// let mut sums = [ExactSum::of(&r), dot_exact(&r, &z)];
/// exact_allreduce(&comm, &mut sums);
/// assert_eq!((sums[0].to_f64(), sums[1].to_f64()), (1.0, 3.0));
/// ```
pub fn exact_allreduce(comm: &dyn Comm, sums: &mut [ExactSum]) {
    let mut stack = [0u64; STACK_SUMS * WORDS];
    let mut heap = Vec::new();
    let buf = if sums.len() <= STACK_SUMS {
        &mut stack[..sums.len() * WORDS]
    } else {
        heap.resize(sums.len() * WORDS, 0);
        &mut heap[..]
    };
    for (s, w) in sums.iter_mut().zip(buf.chunks_exact_mut(WORDS)) {
        s.normalize();
        for (w, &l) in w.iter_mut().zip(&s.limbs) {
            assert!((-(1 << 31)..1 << 31).contains(&l), "exact_allreduce: limb out of range");
            *w = (l + (1 << 31)) as u64;
        }
        w[LIMBS..].copy_from_slice(&[s.nan, s.pos_inf, s.neg_inf, s.count, (s.not_neg_zero != 0) as u64]);
    }
    comm.allreduce_u64(buf, ReduceOp::Sum);
    let offset = (comm.size() as u64) << 31;
    for (s, w) in sums.iter_mut().zip(buf.chunks_exact(WORDS)) {
        for (l, &w) in s.limbs.iter_mut().zip(w) {
            *l = w.wrapping_sub(offset) as i64;
        }
        s.normalize();
        [s.nan, s.pos_inf, s.neg_inf, s.count, s.not_neg_zero] = w[LIMBS..].try_into().expect("WORDS = LIMBS + 5");
    }
}

/// The exact sum of `a[i] * b[i]` (each product rounded as IEEE `*` does), to combine
/// over ranks with [`exact_allreduce`]. Panics if the lengths differ.
pub fn dot_exact(a: &[f64], b: &[f64]) -> ExactSum {
    let mut s = ExactSum::new();
    s.add_products(a, b);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::ThreadComm;

    /// splitmix64: a tiny deterministic generator for test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        /// Uniform in [-1, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
        /// Random sign, 53-bit mantissa and a binary exponent in `lo..=hi` (unbiased, of
        /// the lowest mantissa bit). Must stay in the finite range.
        fn value(&mut self, lo: i32, hi: i32) -> f64 {
            let m = (self.next() >> 11) as f64; // exact, < 2^53
            let e = lo + self.below((hi - lo + 1) as usize) as i32;
            let v = m * 2f64.powi(e.max(-1022)) * if e < -1022 { 2f64.powi(e + 1022) } else { 1.0 };
            if self.next() & 1 == 1 {
                -v
            } else {
                v
            }
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }
    }

    fn sum(xs: &[f64]) -> f64 {
        ExactSum::of(xs).to_f64()
    }

    /// An independent reference: the exact sum as an i128 multiple of `2^emin`, rounded
    /// by Rust's `i128 as f64` (round to nearest, ties to even) and scaled back. The
    /// scaling is exact unless the result overflows (then inf, as correct rounding
    /// gives) or the i128 is below 2^53 (then the conversion is exact). Every value
    /// must be a multiple of `2^emin` and the sum below 2^127 in those units.
    fn reference(xs: &[f64], emin: i32) -> f64 {
        let mut total = 0i128;
        for &x in xs {
            let bits = x.to_bits();
            let e = ((bits >> 52) & 0x7ff) as i32;
            let (m, exp) = if e == 0 { (bits & FRAC_MASK, -1074) } else { ((bits & FRAC_MASK) | 1 << 52, e - 1075) };
            if m == 0 {
                continue;
            }
            let (m, exp) = (m >> m.trailing_zeros(), exp + m.trailing_zeros() as i32);
            assert!(exp >= emin && exp - emin + (64 - m.leading_zeros() as i32) <= 123, "reference: {x:e} out of range for 2^{emin}");
            let v = (m as i128) << (exp - emin);
            total += if x < 0.0 { -v } else { v };
        }
        // Scale by 2^emin in two exact steps (2^emin itself may not be an f64).
        let (a, b) = (emin / 2, emin - emin / 2);
        (total as f64) * 2f64.powi(a) * 2f64.powi(b)
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn cancellation() {
        assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(sum(&[1.0, 1e308, -1e308, 2f64.powi(-1074)]), 1.0 + 0.0);
        assert_eq!(sum(&[f64::MAX, 2f64.powi(-1074), -f64::MAX]), 2f64.powi(-1074));
        // Many tiny values next to huge ones that cancel: 10^4 * 2^-60 exactly.
        let mut xs = vec![1e200, -1e200, 3.0e150];
        xs.extend(std::iter::repeat_n(2f64.powi(-60), 10_000));
        xs.push(-3.0e150);
        assert_eq!(sum(&xs), 10_000.0 * 2f64.powi(-60));
        // 0.1 ten times: the correctly rounded sum of the ten (inexact) doubles 0.1.
        let tenth = vec![0.1; 10];
        assert_eq!(sum(&tenth), reference(&tenth, -60));
        assert_eq!(sum(&tenth), 1.0);
    }

    #[test]
    fn subnormals() {
        let tiny = f64::from_bits(1);
        assert_eq!(sum(&[tiny, tiny, tiny]).to_bits(), 3);
        // Subnormal sums that cross into the normal range and back.
        let big_sub = f64::from_bits(FRAC_MASK); // largest subnormal
        assert_eq!(sum(&[big_sub, tiny]), f64::MIN_POSITIVE);
        assert_eq!(sum(&[big_sub, tiny, -tiny, -tiny]).to_bits(), FRAC_MASK - 1);
        assert_eq!(sum(&[f64::MIN_POSITIVE, -tiny]).to_bits(), FRAC_MASK);
        assert_eq!(sum(&[-tiny, -tiny]).to_bits(), (1 << 63) | 2);
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let xs: Vec<f64> = (0..1 + rng.below(8)).map(|_| rng.value(-1074, -1074 + 60)).collect();
            assert!(same(sum(&xs), reference(&xs, -1074)), "{xs:?}");
        }
    }

    #[test]
    fn near_max() {
        let max = f64::MAX;
        assert_eq!(sum(&[max, max, -max]), max);
        assert_eq!(sum(&[max, -max, max, -max, max]), max);
        assert_eq!(sum(&[max, max]), f64::INFINITY);
        assert_eq!(sum(&[-max, -max]), f64::NEG_INFINITY);
        let ulp = 2f64.powi(971); // ulp of MAX
        assert_eq!(sum(&[max, ulp / 4.0]), max);
        // Exactly half an ulp above MAX is a tie to the even 2^1024: overflow.
        assert_eq!(sum(&[max, ulp / 2.0]), f64::INFINITY);
        assert_eq!(sum(&[max, ulp / 2.0, -2f64.powi(-1074)]), max);
        assert_eq!(sum(&[max, max, max, -max, -max, -ulp]), max - ulp);
        let mut rng = Rng(8);
        for _ in 0..2000 {
            let xs: Vec<f64> = (0..1 + rng.below(8)).map(|_| rng.value(971 - 60, 971)).collect();
            assert!(same(sum(&xs), reference(&xs, 971 - 60)), "{xs:?}");
        }
    }

    #[test]
    fn signed_zero_and_non_finite() {
        assert!(same(sum(&[]), 0.0));
        assert!(same(sum(&[-0.0]), -0.0));
        assert!(same(sum(&[-0.0, -0.0]), -0.0));
        assert!(same(sum(&[-0.0, 0.0]), 0.0));
        assert!(same(sum(&[1.0, -1.0]), 0.0));
        assert!(same(sum(&[-1.0, 1.0, -0.0]), 0.0));
        assert!(same(sum(&vec![-0.0; 1000]), -0.0));
        let inf = f64::INFINITY;
        assert!(same(sum(&[1.0, inf, -1e308]), inf));
        assert!(same(sum(&[-inf, 1.0, -inf]), -inf));
        assert!(sum(&[inf, 1.0, -inf]).is_nan());
        assert!(sum(&[1.0, f64::NAN, 2.0]).is_nan());
        assert!(sum(&[inf, f64::NAN]).is_nan());
        // The same through the lane path and merge.
        let mut xs = vec![1.0; 1000];
        xs[517] = -inf;
        assert!(same(sum(&xs), -inf));
        let mut s = ExactSum::of(&xs);
        s.merge(&ExactSum::of(&[inf]));
        assert!(s.to_f64().is_nan());
        let mut s = ExactSum::of(&vec![-0.0; 700]);
        s.merge(&ExactSum::new());
        assert!(same(s.to_f64(), -0.0));
        s.merge(&ExactSum::of(&[0.0]));
        assert!(same(s.to_f64(), 0.0));
    }

    #[test]
    fn pairs_match_ieee_addition() {
        // For two addends IEEE a + b is the correctly rounded exact sum.
        let mut rng = Rng(1);
        let specials = [0.0, -0.0, f64::MIN_POSITIVE, f64::from_bits(1), f64::MAX, f64::INFINITY, -f64::INFINITY, f64::NAN];
        for i in 0..200_000 {
            let pick = |rng: &mut Rng| match rng.below(10) {
                0 => specials[rng.below(specials.len())],
                1 => f64::from_bits(rng.next()), // any bit pattern
                _ => rng.value(-1074, 971),
            };
            let a = pick(&mut rng);
            // Mostly nearby magnitudes, where rounding and cancellation happen.
            let b = if i % 2 == 0 { a * (1.0 + rng.unit() * 2f64.powi(-(rng.below(60) as i32))) } else { pick(&mut rng) };
            let b = if rng.next() & 1 == 1 { -b } else { b };
            assert!(same(sum(&[a, b]), a + b), "{a:e} + {b:e}: {} vs {}", sum(&[a, b]), a + b);
        }
    }

    #[test]
    fn correct_rounding_and_ties() {
        let two53 = 2f64.powi(53);
        assert_eq!(sum(&[two53, 1.0]), two53); // tie, even stays
        assert_eq!(sum(&[two53 + 2.0, 1.0]), two53 + 4.0); // tie, odd rounds up
        assert_eq!(sum(&[two53, 1.0, 2f64.powi(-1000)]), two53 + 2.0); // just above the tie
        assert_eq!(sum(&[two53, 1.0, -2f64.powi(-1000)]), two53); // just below
        assert_eq!(sum(&[-two53 - 2.0, -1.0]), -two53 - 4.0);
        assert_eq!(sum(&[1.0, 2f64.powi(-53)]), 1.0);
        assert_eq!(sum(&[1.0, 2f64.powi(-53), 2f64.powi(-1074)]), 1.0 + f64::EPSILON);
        let mut rng = Rng(2);
        for emin in [-1074, -1040, -700, -200, -60, 0, 300, 901] {
            for _ in 0..5000 {
                let xs: Vec<f64> = (0..1 + rng.below(12)).map(|_| rng.value(emin, emin + 70)).collect();
                assert!(same(sum(&xs), reference(&xs, emin)), "{xs:?}");
            }
        }
        // Ties built on purpose: a 53-bit value plus exactly half its ulp, split in parts.
        for _ in 0..5000 {
            let a = rng.value(0, 0).abs().max(two53 / 2.0 + 1.0);
            let xs = [a * 2.0, 0.5, 0.25, 0.25, -1.0, 1.0];
            assert!(same(sum(&xs), reference(&xs, -2)), "{xs:?}");
        }
    }

    #[test]
    fn long_sums_need_normalisation() {
        // Far more than ROOM addends per limb, through add, add_slice and merge.
        let mut rng = Rng(3);
        let xs: Vec<f64> = (0..100_000).map(|_| rng.value(-40, -20)).collect();
        let r = reference(&xs, -40);
        assert!(same(sum(&xs), r));
        let mut s = ExactSum::new();
        xs.iter().for_each(|&x| s.add(x));
        assert!(same(s.to_f64(), r));
        let mut m = ExactSum::new();
        for _ in 0..5000 {
            m.merge(&ExactSum::of(&[f64::MAX / 8.0]));
            m.merge(&ExactSum::of(&[-f64::MAX / 8.0]));
        }
        m.merge(&s);
        assert!(same(m.to_f64(), r));
        // Largest magnitudes, same sign, many times: the carry limbs.
        let big = vec![f64::MAX; 5000];
        let mut s = ExactSum::of(&big);
        s.merge(&ExactSum::of(&vec![-f64::MAX; 4999]));
        assert_eq!(s.to_f64(), f64::MAX);
    }

    /// One value at a time through `add` (the path of short slices).
    fn sum_one_by_one(xs: &[f64]) -> ExactSum {
        let mut s = ExactSum::new();
        xs.iter().for_each(|&x| s.add(x));
        s
    }

    #[test]
    fn table_path_matches_single_adds() {
        // Long slices go through the bucket table, `add` through the limbs directly.
        let mut rng = Rng(10);
        let specials = [0.0, -0.0, f64::from_bits(1), f64::from_bits(FRAC_MASK), f64::MIN_POSITIVE, f64::MAX, -f64::MAX];
        let non_finite = [f64::INFINITY, -f64::INFINITY, f64::NAN, -f64::NAN, f64::from_bits(0x7ff0_0000_0000_0001)];
        for trial in 0..60 {
            let n = TABLE_MIN + rng.below(3000);
            let mut xs: Vec<f64> = (0..n)
                .map(|_| match rng.below(8) {
                    0 => specials[rng.below(specials.len())],
                    1 => rng.value(-1074, -1074 + 60),
                    2 => rng.value(-1074, 971),
                    _ => rng.value(-30 - trial, 30),
                })
                .collect();
            for _ in 0..trial % 4 {
                let at = rng.below(n);
                xs[at] = non_finite[rng.below(non_finite.len())];
            }
            let (table, single) = (ExactSum::of(&xs), sum_one_by_one(&xs));
            assert!(same(table.to_f64(), single.to_f64()), "trial {trial}");
            assert_eq!(table.count(), n as u64);
            let products = dot_exact(&xs, &xs[..].iter().rev().copied().collect::<Vec<_>>());
            let single: Vec<f64> = xs.iter().zip(xs.iter().rev()).map(|(a, b)| a * b).collect();
            assert!(same(products.to_f64(), sum_one_by_one(&single).to_f64()), "trial {trial}");
        }
        // Signed zeros, infinities and NaN through the table only.
        let n = 3 * TABLE_MIN;
        assert!(same(sum(&vec![-0.0; n]), -0.0));
        let mut xs = vec![-0.0; n];
        xs[n / 2] = 0.0;
        assert!(same(sum(&xs), 0.0));
        xs[n / 2] = f64::from_bits(NEG_ZERO_BITS | 1);
        assert_eq!(sum(&xs).to_bits(), NEG_ZERO_BITS | 1);
        xs[7] = f64::INFINITY;
        assert!(same(sum(&xs), f64::INFINITY));
        xs[8] = -f64::INFINITY;
        assert!(sum(&xs).is_nan());
        xs[8] = f64::INFINITY;
        assert!(same(sum(&xs), f64::INFINITY));
        xs[9] = f64::NAN.copysign(1.0);
        assert!(sum(&xs).is_nan());
        // Subnormals only, beyond a single add's shifts, against the i128 reference.
        let xs: Vec<f64> = (0..5000).map(|_| rng.value(-1074, -1074 + 60)).collect();
        assert!(same(sum(&xs), reference(&xs, -1074)));
    }

    /// Random chunks of `xs` summed separately and merged in random order.
    fn chunked(xs: &[f64], rng: &mut Rng) -> f64 {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < xs.len() {
            let max = if rng.next() & 1 == 0 { 10 } else { 3000 };
            let len = 1 + rng.below(max);
            let end = (i + len).min(xs.len());
            parts.push(ExactSum::of(&xs[i..end]));
            i = end;
        }
        rng.shuffle(&mut parts);
        let mut total = ExactSum::new();
        parts.iter().for_each(|p| total.merge(p));
        total.to_f64()
    }

    #[test]
    fn order_and_partition_independent() {
        let mut rng = Rng(4);
        let mut xs: Vec<f64> = (0..50_000).map(|_| rng.unit() * 2f64.powi(rng.below(80) as i32 - 40)).collect();
        xs.extend([1e30, -1e30, 3e-300]);
        let r = sum(&xs);
        for _ in 0..10 {
            rng.shuffle(&mut xs);
            assert!(same(sum(&xs), r));
            assert!(same(chunked(&xs, &mut rng), r));
        }
        let naive: f64 = xs.iter().sum();
        assert!((naive - r).abs() <= 1e-6 * xs.iter().map(|x| x.abs()).sum::<f64>());
    }

    #[test]
    fn dot_product() {
        let mut rng = Rng(5);
        let a: Vec<f64> = (0..3000).map(|_| rng.unit()).collect();
        let b: Vec<f64> = (0..3000).map(|_| rng.unit() * 1e-3).collect();
        let products: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        let d = dot_exact(&a, &b).to_f64();
        assert!(same(d, sum(&products)));
        // Reversed order (a different summation order of the same products).
        let (ra, rb): (Vec<f64>, Vec<f64>) = a.iter().rev().zip(b.iter().rev()).map(|(x, y)| (*x, *y)).unzip();
        assert!(same(dot_exact(&ra, &rb).to_f64(), d));
    }

    #[test]
    fn dot_product_reference() {
        // Products of 26-bit mantissas are exact, so the reference is independent.
        let mut rng = Rng(6);
        let a: Vec<f64> = (0..5000).map(|_| (rng.next() >> 38) as f64 * if rng.next() & 1 == 0 { 1.0 } else { -1.0 }).collect();
        let b: Vec<f64> = (0..5000).map(|_| (rng.next() >> 38) as f64 * 2f64.powi(rng.below(40) as i32 - 20)).collect();
        let products: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        assert!(same(dot_exact(&a, &b).to_f64(), reference(&products, -20)));
    }

    /// `xs` split into `n` contiguous blocks at random cut points.
    fn partition(xs: &[f64], n: usize, rng: &mut Rng) -> Vec<std::ops::Range<usize>> {
        let mut cuts: Vec<usize> = (0..n - 1).map(|_| rng.below(xs.len() + 1)).collect();
        cuts.push(0);
        cuts.push(xs.len());
        cuts.sort();
        cuts.windows(2).map(|w| w[0]..w[1]).collect()
    }

    #[test]
    fn multi_rank() {
        let mut rng = Rng(9);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.unit() * 2f64.powi(rng.below(60) as i32 - 30)).collect();
        let ys: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
        let want = [sum(&xs), dot_exact(&xs, &ys).to_f64(), sum(&[-0.0]), f64::INFINITY, sum(&[1e300, 1e300, -1e300, -1e300, 1.0])];
        for ranks in 1..=4 {
            for trial in 0..3 {
                let parts = partition(&xs, ranks, &mut rng);
                let out = ThreadComm::run(ranks, |c| {
                    let r = parts[c.rank()].clone();
                    let big = [1e300, 1e300, -1e300, -1e300, 1.0];
                    let mut sums = [
                        ExactSum::of(&xs[r.clone()]),
                        dot_exact(&xs[r.clone()], &ys[r.clone()]),
                        if c.rank() == 0 { ExactSum::of(&[-0.0]) } else { ExactSum::new() },
                        if c.rank() + 1 == c.size() { ExactSum::of(&[f64::INFINITY, 1.0]) } else { ExactSum::of(&[2.0]) },
                        ExactSum::of(&big[c.rank()..if c.rank() + 1 == c.size() { 5 } else { c.rank() + 1 }]),
                    ];
                    let before = c.stats().reductions;
                    exact_allreduce(c, &mut sums);
                    assert_eq!(c.stats().reductions, before + 1);
                    // The reduced accumulators keep working: add the same on every rank.
                    let mut again = sums[0].clone();
                    again.add(1.0);
                    (sums.iter().map(ExactSum::to_f64).collect::<Vec<_>>(), sums[0].count(), again.to_f64())
                });
                for (vals, count, again) in out {
                    for (v, w) in vals.iter().zip(&want) {
                        assert!(same(*v, *w), "ranks {ranks} trial {trial}: {v:e} vs {w:e}");
                    }
                    assert_eq!(count, n as u64);
                    assert!(same(again, ExactSum::of(&[&xs[..], &[1.0]].concat()).to_f64()));
                }
            }
        }
    }

    #[test]
    fn many_sums_in_one_reduction() {
        // More accumulators than the stack buffer holds.
        let out = ThreadComm::run(3, |c| {
            let mut sums: Vec<ExactSum> = (0..9).map(|i| ExactSum::of(&[i as f64, -(c.rank() as f64) * 1e-300])).collect();
            exact_allreduce(c, &mut sums);
            (c.stats().reductions, sums.iter().map(ExactSum::to_f64).collect::<Vec<_>>())
        });
        for (reductions, vals) in out {
            assert_eq!(reductions, 1);
            // 3 i - 1e-300 - 2e-300: rounds to 3 i, except for i = 0 (IEEE pair sum).
            assert!(same(vals[0], -1e-300 + -2e-300));
            for (i, v) in vals.iter().enumerate().skip(1) {
                assert_eq!(*v, 3.0 * i as f64);
            }
        }
    }
}
