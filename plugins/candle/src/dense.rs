//! Fused dense layers on the CPU: `act(x · W + b)`, plus a residual when asked, in one op.
//!
//! candle's `Linear` followed by an activation and a residual sum is four ops, each writing a new
//! tensor: the product, the bias, the activation, the sum. Every one of those outputs is a fresh
//! allocation (candle zeroes its matmul output with `calloc`, which jemalloc serves with pages
//! handed back to the kernel, so a page fault per 4 KiB written), and every one reads and writes
//! the whole activation again. [`Dense`] cuts the rows into blocks, runs faer's single-threaded
//! product on each block in parallel, and applies bias, activation and residual to the block
//! right after its product, while it is in cache, into a buffer allocated once ([`output_buffer`]).
//!
//! Used by the transformer layers ([`crate::transformer`]) and, as 1×1 convolutions over
//! channels-last images, by the mobile CNNs ([`crate::vision::conv`]).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::activation::Activation;
use crate::simd::vectorized;

/// Output values per parallel task at least: large enough that scheduling costs nothing next to
/// the arithmetic.
pub const MIN_VALUES_PER_TASK: usize = 1 << 14;

/// Rows per parallel block of a product at least (see [`rows_per_block`]).
const MIN_ROWS_PER_BLOCK: usize = 256;

/// Rows per parallel block of a product with `out_dim` columns: enough rows that packing the
/// weights once per block costs little next to the product, few enough that the block stays in
/// cache.
pub fn rows_per_block(out_dim: usize) -> usize {
    MIN_ROWS_PER_BLOCK.max(MIN_VALUES_PER_TASK.div_ceil(out_dim))
}

/// A zeroed output buffer of `len` values, allocated without `calloc` and zeroed in parallel.
/// jemalloc serves a large `calloc` by handing the pages back to the kernel (`MADV_DONTNEED`) to
/// get them zeroed, so an op paid a page fault per 4 KiB written; a plain allocation reuses freed
/// pages as they are. (A sequential `resize` would be turned back into `calloc` by LLVM, and it
/// left the other threads idle.)
pub fn output_buffer(len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.par_extend(rayon::iter::repeat_n(0.0, len));
    out
}

/// The contiguous f32 data of a tensor's storage.
pub fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 input expected");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous input expected");
    };
    Ok(&data[start..end])
}

/// `dst = act(lhs × rhs + bias) (+ residual)`, `dst` being `rows × out`, `lhs` `rows × depth`
/// and `residual` like `dst`, row-major. The sums and the activation run on the block the product
/// has just written, while it is in cache.
pub fn product(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: MatRef<'_, f32>,
    (bias, act): (&[f32], Activation),
    residual: Option<&[f32]>,
) {
    let (depth, out) = (rhs.nrows(), rhs.ncols());
    let rows = dst.len() / out;
    let lhs = MatRef::from_row_major_slice(lhs, rows, depth);
    matmul(
        MatMut::from_row_major_slice_mut(dst, rows, out),
        Accum::Replace,
        lhs,
        rhs,
        1.0f32,
        Par::Seq,
    );
    vectorized(
        #[inline(always)]
        || {
            for (i, d) in dst.chunks_exact_mut(out).enumerate() {
                d.iter_mut().zip(bias).for_each(|(d, &b)| *d += b);
                act.apply_all(d);
                if let Some(residual) = residual {
                    let r = &residual[i * out..][..out];
                    d.iter_mut().zip(r).for_each(|(d, &r)| *d += r);
                }
            }
        },
    )
}

/// `nn.Linear` with its activation, and optionally a residual added after the activation:
/// `(…, in)` → `(…, out)`, f32, any leading dimensions.
pub struct Dense {
    in_dim: usize,
    out_dim: usize,
    /// `(in, out)` row-major: the product's right-hand side.
    weight: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
}

impl Dense {
    /// From PyTorch's `(out, in)` weight and `(out)` bias.
    pub fn new(weight: &Tensor, bias: &Tensor, act: Activation) -> Result<Dense> {
        let (out_dim, in_dim) = weight.dims2()?;
        if bias.dims() != [out_dim] {
            candle_core::bail!(
                "dense layer: bias {:?} for weight {:?}",
                bias.dims(),
                weight.dims()
            );
        }
        Ok(Dense {
            in_dim,
            out_dim,
            weight: weight.t()?.flatten_all()?.to_vec1()?,
            bias: bias.to_vec1()?,
            act,
        })
    }

    /// `nn.Linear(in_dim, out_dim)` from `weight` and `bias` under `vb`, then `act`.
    pub fn load(in_dim: usize, out_dim: usize, vb: VarBuilder, act: Activation) -> Result<Dense> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        Dense::new(&weight, &vb.get(out_dim, "bias")?, act)
    }

    /// This layer with its output multiplied by `factor` (weights and bias scaled once, here).
    pub fn scaled(mut self, factor: f32) -> Dense {
        self.weight.iter_mut().for_each(|w| *w *= factor);
        self.bias.iter_mut().for_each(|b| *b *= factor);
        self
    }

    /// Several layers over the same input as one, their outputs side by side (`[a | b | …]`):
    /// one product instead of several, e.g. an attention block's query, key and value.
    pub fn concatenated(layers: &[Dense]) -> Result<Dense> {
        let Some(first) = layers.first() else {
            candle_core::bail!("dense layer: nothing to concatenate");
        };
        if layers
            .iter()
            .any(|l| l.in_dim != first.in_dim || l.act != first.act)
        {
            candle_core::bail!("dense layer: concatenated layers differ in input or activation");
        }
        let out_dim = layers.iter().map(|l| l.out_dim).sum();
        let mut weight = Vec::with_capacity(first.in_dim * out_dim);
        for row in 0..first.in_dim {
            for l in layers {
                weight.extend_from_slice(&l.weight[row * l.out_dim..][..l.out_dim]);
            }
        }
        Ok(Dense {
            in_dim: first.in_dim,
            out_dim,
            weight,
            bias: layers.iter().flat_map(|l| l.bias.iter().copied()).collect(),
            act: first.act,
        })
    }

    /// `act(x · W + b)`, plus `residual` (the output's shape) if given.
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let x = x.contiguous()?;
        match residual {
            None => x.apply_op1_no_bwd(self),
            Some(residual) => x.apply_op2_no_bwd(&residual.contiguous()?, &WithResidual(self)),
        }
    }

    /// The output for `input` (`rows × in`), plus `residual` (`rows × out`) if any.
    fn run(&self, input: &[f32], residual: Option<&[f32]>) -> Vec<f32> {
        let (in_dim, out_dim) = (self.in_dim, self.out_dim);
        let rows = input.len() / in_dim;
        let block = rows_per_block(out_dim);
        let weight = MatRef::from_row_major_slice(&self.weight, in_dim, out_dim);
        let mut out = output_buffer(rows * out_dim);
        out.par_chunks_mut(block * out_dim)
            .enumerate()
            .for_each(|(i, dst)| {
                let residual = residual.map(|r| &r[i * block * out_dim..][..dst.len()]);
                let input = &input[i * block * in_dim..][..dst.len() / out_dim * in_dim];
                product(dst, input, weight, (&self.bias, self.act), residual);
            });
        out
    }

    /// The output shape for an input layout, checking its last dimension.
    fn output_shape(&self, layout: &Layout) -> Result<Shape> {
        let dims = layout.shape().dims();
        match dims.split_last() {
            Some((&last, leading)) if last == self.in_dim => {
                Ok(Shape::from([leading, &[self.out_dim]].concat()))
            }
            _ => candle_core::bail!(
                "dense layer: input {dims:?}, weights for {} features",
                self.in_dim
            ),
        }
    }
}

impl CustomOp1 for Dense {
    fn name(&self) -> &'static str {
        "dense-fused"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = self.output_shape(layout)?;
        let input = contiguous_f32(storage, layout, self.name())?;
        Ok((CpuStorage::F32(self.run(input, None)), shape))
    }
}

/// [`Dense`] plus a residual, as a two-input op.
struct WithResidual<'a>(&'a Dense);

impl CustomOp2 for WithResidual<'_> {
    fn name(&self) -> &'static str {
        "dense-fused-residual"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = self.0.output_shape(layout)?;
        if residual_layout.shape() != &shape {
            candle_core::bail!(
                "dense layer: residual {:?} for output {:?}",
                residual_layout.dims(),
                shape.dims()
            );
        }
        let input = contiguous_f32(storage, layout, self.name())?;
        let residual = contiguous_f32(residual, residual_layout, self.name())?;
        Ok((CpuStorage::F32(self.0.run(input, Some(residual))), shape))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, IndexOp};

    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    /// candle's `Linear` then the activation as candle's own ops.
    fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
        let y = x.broadcast_matmul(&weight.t()?)?.broadcast_add(bias)?;
        crate::activation::with_candle(act, &y)
    }

    /// 3 × 250 rows: more than one parallel block, the last one partial.
    #[test]
    fn dense_matches_linear_then_activation_with_and_without_residual() -> Result<()> {
        let device = Device::Cpu;
        let (d_in, d_out) = (24, 70);
        let x = Tensor::randn(0f32, 1.0, (3, 250, d_in), &device)?;
        let weight = Tensor::randn(0f32, 0.5, (d_out, d_in), &device)?;
        let bias = Tensor::randn(0f32, 1.0, d_out, &device)?;
        let residual = Tensor::randn(0f32, 1.0, (3, 250, d_out), &device)?;
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::Relu6,
            Activation::GeluErf,
            Activation::GeluTanh,
        ] {
            let layer = Dense::new(&weight, &bias, act)?;
            let expected = reference(&x, &weight, &bias, act)?;
            let ours = layer.forward(&x, None)?;
            assert_eq!(ours.dims(), [3, 250, d_out]);
            assert!(max_diff(&ours, &expected)? < 1e-4, "{act:?}");
            let ours = layer.forward(&x, Some(&residual))?;
            let diff = max_diff(&ours, &(expected + &residual)?)?;
            assert!(diff < 1e-4, "{act:?} + residual: {diff}");
        }
        // A non-contiguous input is made contiguous first.
        let layer = Dense::new(&weight, &bias, Activation::Identity)?;
        let transposed = x.transpose(0, 1)?;
        let expected = reference(&transposed, &weight, &bias, Activation::Identity)?;
        assert!(max_diff(&layer.forward(&transposed, None)?, &expected)? < 1e-4);
        Ok(())
    }

    #[test]
    fn concatenated_layers_give_each_layers_output_side_by_side() -> Result<()> {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (5, 16), &device)?;
        let layers: Vec<(Tensor, Tensor)> = [8, 16, 4]
            .into_iter()
            .map(|d| {
                let w = Tensor::randn(0f32, 1.0, (d, 16), &device)?;
                Ok((w, Tensor::randn(0f32, 1.0, d, &device)?))
            })
            .collect::<Result<_>>()?;
        let dense: Vec<Dense> = (layers.iter())
            .map(|(w, b)| Dense::new(w, b, Activation::Identity))
            .collect::<Result<_>>()?;
        let all = Dense::concatenated(&dense)?.forward(&x, None)?;
        assert_eq!(all.dims(), [5, 28]);
        let mut at = 0;
        for (layer, (w, b)) in dense.iter().zip(&layers) {
            let d = w.dim(0)?;
            let part = all.i((.., at..at + d))?;
            assert!(max_diff(&part, &layer.forward(&x, None)?)? < 1e-5);
            assert!(max_diff(&part, &reference(&x, w, b, Activation::Identity)?)? < 1e-4);
            at += d;
        }
        Ok(())
    }

    #[test]
    fn a_scaled_layer_scales_its_output() -> Result<()> {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (7, 12), &device)?;
        let weight = Tensor::randn(0f32, 1.0, (9, 12), &device)?;
        let bias = Tensor::randn(0f32, 1.0, 9, &device)?;
        let layer = Dense::new(&weight, &bias, Activation::Identity)?;
        let expected = (layer.forward(&x, None)? * 0.125)?;
        let scaled = layer.scaled(0.125).forward(&x, None)?;
        assert!(max_diff(&scaled, &expected)? < 1e-5);
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() -> Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::zeros((6, 4), candle_core::DType::F32, &device)?;
        let bias = Tensor::zeros(6, candle_core::DType::F32, &device)?;
        let layer = Dense::new(&weight, &bias, Activation::Identity)?;
        let x = Tensor::zeros((2, 5), candle_core::DType::F32, &device)?;
        assert!(layer.forward(&x, None).is_err());
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &device)?;
        let wrong = Tensor::zeros((2, 5), candle_core::DType::F32, &device)?;
        assert!(layer.forward(&x, Some(&wrong)).is_err());
        assert!(Dense::new(&weight, &bias.narrow(0, 0, 5)?, Activation::Identity).is_err());
        Ok(())
    }
}
