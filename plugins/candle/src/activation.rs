//! The exact (erf) GELU of transformers' `"gelu"`, computed fast on the CPU.
//!
//! candle's `gelu_erf` evaluates a scalar `erf` per element on one thread; in MiniLM and MPNet
//! that made the activation of the feed-forward layers (4 × hidden values per token) a tenth of
//! the whole forward pass. Here `erf` is a rational approximation that needs only multiplies,
//! adds and one divide (so the compiler vectorises it), evaluated in parallel chunks.
//!
//! The approximation is the minimax rational function on [-4, 4] (erf is ±1 to f32 precision
//! beyond) used by vectorised math libraries such as Eigen; its error is a few f32 ulps, far below
//! the parity tolerance against PyTorch.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x · Φ(x)` elementwise, as `Tensor::gelu_erf` but vectorised and parallel for contiguous f32
/// tensors (others fall back to candle's own op).
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if xs.dtype() == candle_core::DType::F32 && xs.is_contiguous() {
        xs.apply_op1_no_bwd(&GeluErf)
    } else {
        xs.gelu_erf()
    }
}

/// Elements per parallel task: large enough that scheduling costs nothing next to the arithmetic.
const CHUNK: usize = 1 << 14;

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-fast"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("gelu-erf-fast: f32 input expected")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu-erf-fast: contiguous input expected")
        };
        let input = &values[start..end];
        let mut output = vec![0.0f32; input.len()];
        output
            .par_chunks_mut(CHUNK)
            .zip(input.par_chunks(CHUNK))
            .for_each(|(out, x)| {
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = gelu(x);
                }
            });
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf(x) for f32, branch-free: x·P(x²)/Q(x²) on x clamped to [-4, 4].
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_5e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_4e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().fold(0.0, |acc, &c| acc * x2 + c);
    let q = Q.iter().fold(0.0, |acc, &c| acc * x2 + c);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// erf by its Maclaurin series in f64 (converges fast for |x| ≤ 3), independent of both
    /// implementations under test.
    fn erf_series(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_matches_its_series_to_f32_precision() {
        for i in -3000..=3000 {
            let x = i as f64 / 1000.0;
            let (ours, reference) = (erf(x as f32) as f64, erf_series(x));
            assert!(
                (ours - reference).abs() < 4e-7,
                "erf({x}) = {ours}, not {reference}"
            );
        }
        assert_eq!(erf(9.0), 1.0);
        assert_eq!(erf(-f32::MAX), -1.0);
    }

    #[test]
    fn gelu_agrees_with_candles_exact_op() -> Result<()> {
        let values: Vec<f32> = (0..70_000)
            .map(|i| (i as f32 - 35_000.0) / 3000.0)
            .collect();
        let xs = Tensor::from_vec(values, (7, 10_000), &Device::Cpu)?;
        let ours = gelu_erf(&xs)?.flatten_all()?.to_vec1::<f32>()?;
        let theirs = xs.gelu_erf()?.flatten_all()?.to_vec1::<f32>()?;
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            // A few f32 ulps of the result (of 1 where it is small: far in the negative tail
            // candle's erf rounds to -1 and gives 0, ours leaves up to ~5e-7).
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "element {i}: {a} vs {b}"
            );
        }
        // A non-contiguous view takes candle's path and gives the same values.
        let transposed = xs.t()?;
        let (ours, theirs) = (gelu_erf(&transposed)?, transposed.gelu_erf()?);
        let diff = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
