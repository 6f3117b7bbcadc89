//! Running a kernel with wider vectors where the CPU has them.
//!
//! The crate is compiled for the x86-64 baseline (SSE2), so a binary runs on any
//! x86-64 machine. [`avx`] runs a closure compiled with AVX enabled when the CPU
//! reports it at run time: the compiler vectorises the same loops four doubles wide
//! instead of two. Element-wise IEEE operations do not depend on the vector width
//! and Rust never contracts a multiply and an add into an FMA, so the results are
//! bitwise the same on either path.

/// Runs `f`, compiled with AVX when the CPU has it. Mark the closure
/// `#[inline(always)]` so its body (and the `#[inline(always)]` kernels it calls)
/// is compiled inside the AVX function.
#[inline(always)]
pub fn avx<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU supports AVX (checked just above).
            return unsafe { run(f) };
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_paths_give_the_same_bits() {
        let a: Vec<f64> = (0..1001).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..1001).map(|i| (i as f64 * 0.11).cos()).collect();
        let kernel = |x: &[f64], y: &[f64]| -> Vec<f64> { x.iter().zip(y).map(|(p, q)| 0.3 * p + q * (p - 1.7) / 3.1).collect() };
        let wide = super::avx(
            #[inline(always)]
            || kernel(&a, &b),
        );
        let plain = kernel(&a, &b);
        assert!(wide.iter().zip(&plain).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}
