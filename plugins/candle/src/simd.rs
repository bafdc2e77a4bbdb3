//! Hot loops compiled for the CPU's wider vector units, chosen at run time.
//!
//! The plugin is built for the baseline x86-64 target (SSE2), so the compiler vectorises our
//! own loops (the dense layers' epilogue, the depthwise convolution, image resampling) four
//! floats at a time. [`vectorized`] runs a closure inside a function compiled with AVX2 and FMA
//! when the CPU has them (pulp's dispatch, the same faer and gemm use for their kernels), so the
//! same loops run eight floats at a time; elsewhere it simply calls the closure. The results do
//! not change: Rust never fuses a multiply and an add unless asked to, whatever the target.
//!
//! Only code inlined into that function gets the wider instructions: mark the closure itself
//! `#[inline(always)]` (`vectorized(#[inline(always)] || …)`), and the functions it calls too.

/// `f()`, compiled with AVX2 and FMA where the CPU has them.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(f);
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_what_the_closure_gives() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.37 - 100.0).collect();
        let plain: Vec<f32> = values.iter().map(|v| v * 1.5 + 2.0).collect();
        let wide = vectorized(
            #[inline(always)]
            || values.iter().map(|v| v * 1.5 + 2.0).collect::<Vec<f32>>(),
        );
        assert_eq!(plain, wide);
    }
}
