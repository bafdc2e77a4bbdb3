//! The activations the fused CPU ops apply ([`Activation`]), among them the exact (erf) GELU of
//! transformers' `"gelu"`, computed fast.
//!
//! candle's `gelu_erf` evaluates a scalar `erf` per element on one thread; in MiniLM and MPNet
//! that made the activation of the feed-forward layers (4 × hidden values per token) a tenth of
//! the whole forward pass. Here `erf` is a rational approximation that needs only multiplies,
//! adds and one divide, so the compiler vectorises it inside the dense layer's loop.
//!
//! The approximation is the minimax rational function on [-4, 4] (erf is ±1 to f32 precision
//! beyond) used by vectorised math libraries such as Eigen; its error is a few f32 ulps, far below
//! the parity tolerance against PyTorch.

/// What follows a layer's bias: applied elementwise inside the fused ops ([`crate::dense`],
/// [`crate::vision::conv`]), so it costs no pass of its own over the activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x · Φ(x)`, transformers' `"gelu"`.
    GeluErf,
    /// GELU's tanh approximation, transformers' `"gelu_new"` (candle's `gelu`).
    GeluTanh,
}

/// Evaluates `body` with `f` bound to `activation` as a closure of its own type, once per
/// variant, so that a loop in `body` is compiled (and vectorised) for each activation instead of
/// testing the variant on every element.
macro_rules! with_activation {
    ($activation:expr, |$f:ident| $body:expr) => {
        match $activation {
            Activation::Identity => {
                let $f = |x: f32| x;
                $body
            }
            Activation::Relu => {
                let $f = |x: f32| Activation::Relu.apply(x);
                $body
            }
            Activation::Relu6 => {
                let $f = |x: f32| Activation::Relu6.apply(x);
                $body
            }
            Activation::GeluErf => {
                let $f = |x: f32| Activation::GeluErf.apply(x);
                $body
            }
            Activation::GeluTanh => {
                let $f = |x: f32| Activation::GeluTanh.apply(x);
                $body
            }
        }
    };
}
pub(crate) use with_activation;

impl Activation {
    /// `v = act(v)` for every value.
    #[inline(always)]
    pub fn apply_all(self, values: &mut [f32]) {
        with_activation!(self, |act| values.iter_mut().for_each(|v| *v = act(*v)))
    }

    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            // Compares rather than `f32::clamp`'s NaN rules, so that it vectorises to max/min.
            Activation::Relu6 => {
                let x = if x > 0.0 { x } else { 0.0 };
                if x < 6.0 { x } else { 6.0 }
            }
            Activation::GeluErf => gelu(x),
            Activation::GeluTanh => {
                let inner = (2.0 / std::f32::consts::PI).sqrt() * (x + 0.044_715 * x * x * x);
                0.5 * x * (1.0 + inner.tanh())
            }
        }
    }
}

/// The activation as candle's own ops: the reference the fused ops are tested against.
#[cfg(test)]
pub fn with_candle(
    act: Activation,
    xs: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    match act {
        Activation::Identity => Ok(xs.clone()),
        Activation::Relu => xs.relu(),
        Activation::Relu6 => xs.clamp(0f32, 6f32),
        Activation::GeluErf => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
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
    use candle_core::{Device, Tensor};

    use super::*;

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
    fn gelu_agrees_with_candles_exact_op() -> candle_core::Result<()> {
        let values: Vec<f32> = (0..70_000)
            .map(|i| (i as f32 - 35_000.0) / 3000.0)
            .collect();
        let xs = Tensor::from_vec(values.clone(), values.len(), &Device::Cpu)?;
        let theirs = xs.gelu_erf()?.to_vec1::<f32>()?;
        for (i, (&x, b)) in values.iter().zip(&theirs).enumerate() {
            let a = Activation::GeluErf.apply(x);
            // A few f32 ulps of the result (of 1 where it is small: far in the negative tail
            // candle's erf rounds to -1 and gives 0, ours leaves up to ~5e-7).
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "element {i}: {a} vs {b}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_others_agree_with_candles_ops() -> candle_core::Result<()> {
        let values: Vec<f32> = (0..2_000).map(|i| (i as f32 - 1_000.0) / 100.0).collect();
        let xs = Tensor::from_vec(values.clone(), values.len(), &Device::Cpu)?;
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::Relu6,
            Activation::GeluTanh,
        ] {
            for (&x, b) in values.iter().zip(with_candle(act, &xs)?.to_vec1::<f32>()?) {
                let a = act.apply(x);
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{act:?}({x}): {a} vs {b}"
                );
            }
        }
        Ok(())
    }
}
