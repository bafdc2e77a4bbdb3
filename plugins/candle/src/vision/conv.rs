//! Convolutions of mobile CNNs (EfficientNet-Lite) on the CPU, channels last.
//!
//! Activations are `(N, H, W, C)` f32 tensors (NHWC), not candle's usual NCHW, because every op
//! of an inverted-residual network is then a loop over contiguous channels:
//! - a 1×1 convolution is one matrix product `(N·H·W, C_in) × (C_in, C_out)` for the whole batch
//!   ([`pointwise`], a [`Dense`] layer): no im2col, and the late 7×7 layers are no longer 32
//!   tiny products;
//! - a depthwise convolution multiplies a channel vector of the input by a channel vector of the
//!   kernel per tap ([`Depthwise`]), which the compiler vectorises whatever the stride;
//! - bias, ReLU6 and the residual sum are fused into the convolutions instead of three more
//!   tensors allocated and written.
//!
//! Only the network's input is NCHW (as [`super::Preprocess`] makes it); [`InputConv`] reads it
//! and writes NHWC. Padding is TensorFlow's "SAME" ([`same_padding`]), applied by skipping the
//! taps that fall outside the image rather than by copying a padded tensor.

use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use faer::MatRef;
use rayon::prelude::*;

pub use crate::activation::Activation;
use crate::activation::with_activation;
use crate::dense::{
    Dense, MIN_VALUES_PER_TASK, contiguous_f32, output_buffer, product, rows_per_block,
};
use crate::simd::vectorized;

/// TF "same" padding along one axis: `(before, after)` so that the output is `ceil(size / stride)`.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// The kernel taps `0..k` of output position `o` that land inside `0..size` once the input is
/// padded by `before` (the others read zeros, so they are skipped).
fn valid_taps(
    o: usize,
    stride: usize,
    before: usize,
    size: usize,
    kernel: usize,
) -> std::ops::Range<usize> {
    let start = o * stride;
    before.saturating_sub(start)..(size + before - start).min(kernel)
}

/// Channels per register block: four SSE vectors of accumulators stay in registers across all
/// the taps of a pixel, instead of a load and a store of the output per tap.
const BLOCK: usize = 16;

/// `acc[j] += weights[j] · inputs[j]`: one tap over a block of `L` channels. `L` is [`BLOCK`] for
/// full blocks (the accumulators stay in registers across a pixel's taps) or 1 for a remainder.
#[inline(always)]
fn multiply_add<const L: usize>(acc: &mut [f32; L], weights: &[f32; L], inputs: &[f32; L]) {
    for j in 0..L {
        acc[j] += weights[j] * inputs[j];
    }
}

/// Writes `act(acc)` to `out`.
#[inline(always)]
fn store<const L: usize>(out: &mut [f32], acc: [f32; L], act: impl Fn(f32) -> f32) {
    for (o, a) in out.iter_mut().zip(acc) {
        *o = act(a);
    }
}

/// The `L` values of `data` from `start`, as an array (one bounds check).
#[inline(always)]
fn block<const L: usize>(data: &[f32], start: usize) -> &[f32; L] {
    data[start..]
        .first_chunk()
        .expect("a block of channels lies inside its tensor")
}

/// Depthwise k×k convolution (one kernel per channel) with "same" padding, bias and activation,
/// `(N, H, W, C)` → `(N, ⌈H/s⌉, ⌈W/s⌉, C)`.
pub struct Depthwise {
    kernel: usize,
    stride: usize,
    /// `(k, k, C)` row-major: the channel vector of each tap.
    weights: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
}

impl Depthwise {
    /// `weight` is PyTorch's `(C, 1, k, k)`, `bias` `(C)`.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        act: Activation,
    ) -> candle_core::Result<Depthwise> {
        let (c, one, k, k2) = weight.dims4()?;
        if one != 1 || k != k2 {
            candle_core::bail!(
                "depthwise weight {:?}: expected (C, 1, k, k)",
                weight.dims()
            );
        }
        Ok(Depthwise {
            kernel: k,
            stride,
            weights: weight.reshape((c, k * k))?.t()?.flatten_all()?.to_vec1()?,
            bias: bias.to_vec1()?,
            act,
        })
    }

    /// One output row `oy` of one image (`input` is that image, `(H, W, C)`).
    /// `act` is the layer's activation. (Inlined, like everything it calls, into the
    /// [`vectorized`] closure.)
    #[inline(always)]
    fn row(
        &self,
        input: &[f32],
        dims: (usize, usize, usize),
        oy: usize,
        out: &mut [f32],
        act: impl Fn(f32) -> f32,
    ) {
        match self.kernel {
            3 => self.row_with::<3>(input, dims, oy, out, act),
            5 => self.row_with::<5>(input, dims, oy, out, act),
            _ => self.row_with::<0>(input, dims, oy, out, act),
        }
    }

    /// [`Depthwise::row`], with the kernel size `K` known at compile time (0: not), so that the
    /// window of a pixel away from the borders is a fixed, unrolled run of taps with constant
    /// offsets; pixels on the borders skip the taps that fall into the padding.
    #[inline(always)]
    fn row_with<const K: usize>(
        &self,
        input: &[f32],
        (h, w, c): (usize, usize, usize),
        oy: usize,
        out: &mut [f32],
        act: impl Fn(f32) -> f32,
    ) {
        let (k, s) = (self.kernel, self.stride);
        let (top, _) = same_padding(h, k, s);
        let (left, _) = same_padding(w, k, s);
        let rows = valid_taps(oy, s, top, h, k);
        for (ox, pixel) in out.chunks_exact_mut(c).enumerate() {
            let columns = valid_taps(ox, s, left, w, k);
            let interior = K == k && rows.len() == k && columns.len() == k;
            // The input offset of tap (0, 0), were it inside the image (negative on the top and
            // left borders, where only the offsets of taps inside are used).
            let origin = ((oy * s) as isize - top as isize) * (w * c) as isize
                + ((ox * s) as isize - left as isize) * c as isize;
            let blocks = c / BLOCK * BLOCK;
            let (full, rest) = pixel.split_at_mut(blocks);
            for (b, out) in full.chunks_exact_mut(BLOCK).enumerate() {
                let c0 = b * BLOCK;
                let mut acc = *block(&self.bias, c0);
                if interior {
                    let input = &input[origin as usize + c0..];
                    window::<K, BLOCK>(&mut acc, input, (w * c, c), &self.weights[c0..]);
                } else {
                    self.border(&mut acc, input, (w, c), origin, (&rows, &columns), c0);
                }
                store(out, acc, &act);
            }
            for (j, out) in rest.chunks_exact_mut(1).enumerate() {
                let c0 = blocks + j;
                let mut acc: [f32; 1] = *block(&self.bias, c0);
                self.border(&mut acc, input, (w, c), origin, (&rows, &columns), c0);
                store(out, acc, &act);
            }
        }
    }

    /// The taps `rows × columns` of a window that crosses the image's border (or of any window,
    /// slower than [`window`]) over one block of `L` channels from `c0`; `origin` is the input
    /// offset of tap (0, 0) at channel 0 (negative when that tap lies above or left of the image).
    #[inline(always)]
    fn border<const L: usize>(
        &self,
        acc: &mut [f32; L],
        input: &[f32],
        (w, c): (usize, usize),
        origin: isize,
        (rows, columns): (&Range<usize>, &Range<usize>),
        c0: usize,
    ) {
        let k = self.kernel;
        for ky in rows.clone() {
            for kx in columns.clone() {
                let x = (origin + ((ky * w + kx) * c) as isize) as usize + c0;
                multiply_add(
                    acc,
                    block(&self.weights, (ky * k + kx) * c + c0),
                    block(input, x),
                );
            }
        }
    }
}

/// The K×K taps of a depthwise window that lies inside the image, over one block of `L`
/// channels: `input` starts at the window's top-left pixel (at the block's first channel),
/// `weights` at the block's first channel; `row` and `pixel` are the input's strides.
#[inline(always)]
fn window<const K: usize, const L: usize>(
    acc: &mut [f32; L],
    input: &[f32],
    (row, pixel): (usize, usize),
    weights: &[f32],
) {
    for ky in 0..K {
        for kx in 0..K {
            let inputs = block(input, ky * row + kx * pixel);
            multiply_add(acc, block(weights, (ky * K + kx) * pixel), inputs);
        }
    }
}

impl CustomOp1 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, h, w, c) = layout.shape().dims4()?;
        let input = contiguous_f32(storage, layout, self.name())?;
        if self.bias.len() != c {
            candle_core::bail!(
                "depthwise convolution: {c} channels, weights for {}",
                self.bias.len()
            );
        }
        let s = self.stride;
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        let mut out = output_buffer(n * oh * ow * c);
        let rows_per_task = MIN_VALUES_PER_TASK.div_ceil(ow * c);
        out.par_chunks_mut(ow * c * rows_per_task)
            .enumerate()
            .for_each(|(task, rows)| {
                for (i, row) in rows.chunks_exact_mut(ow * c).enumerate() {
                    let (image, oy) = (
                        (task * rows_per_task + i) / oh,
                        (task * rows_per_task + i) % oh,
                    );
                    let image = &input[image * h * w * c..][..h * w * c];
                    vectorized(
                        #[inline(always)]
                        || {
                            with_activation!(self.act, |act| self.row(
                                image,
                                (h, w, c),
                                oy,
                                row,
                                act
                            ))
                        },
                    );
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c))))
    }
}

/// A full k×k convolution over the NCHW network input with "same" padding, bias and activation,
/// written NHWC: `(N, C_in, H, W)` → `(N, ⌈H/s⌉, ⌈W/s⌉, C_out)`. Meant for the stem (3 input
/// channels): each block of output pixels gathers its k·k·C_in input values (im2col, into a
/// buffer that stays in cache) and takes one product with the `(k·k·C_in, C_out)` weights, as
/// [`Dense`] does.
pub struct InputConv {
    kernel: usize,
    stride: usize,
    c_in: usize,
    c_out: usize,
    /// `(k, k, C_in, C_out)` row-major: the product's right-hand side.
    weights: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
}

impl InputConv {
    /// `weight` is PyTorch's `(C_out, C_in, k, k)`, `bias` `(C_out)`.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        act: Activation,
    ) -> candle_core::Result<InputConv> {
        let (c_out, c_in, k, k2) = weight.dims4()?;
        if k != k2 {
            candle_core::bail!(
                "convolution weight {:?}: square kernels only",
                weight.dims()
            );
        }
        Ok(InputConv {
            kernel: k,
            stride,
            c_in,
            c_out,
            weights: weight.permute((2, 3, 1, 0))?.flatten_all()?.to_vec1()?,
            bias: bias.to_vec1()?,
            act,
        })
    }

    /// The input values under output pixel `(oy, ox)` of one image (`input`, `(C_in, H, W)`), in
    /// the weights' `(k, k, C_in)` order, zeros for the padding.
    fn patch(
        &self,
        input: &[f32],
        (h, w): (usize, usize),
        (oy, ox): (usize, usize),
        out: &mut [f32],
    ) {
        let (k, s) = (self.kernel, self.stride);
        let (top, _) = same_padding(h, k, s);
        let (left, _) = same_padding(w, k, s);
        out.fill(0.0);
        for ky in valid_taps(oy, s, top, h, k) {
            let iy = oy * s + ky - top;
            for kx in valid_taps(ox, s, left, w, k) {
                let ix = ox * s + kx - left;
                let taps = &mut out[(ky * k + kx) * self.c_in..][..self.c_in];
                for (ci, v) in taps.iter_mut().enumerate() {
                    *v = input[(ci * h + iy) * w + ix];
                }
            }
        }
    }
}

impl CustomOp1 for InputConv {
    fn name(&self) -> &'static str {
        "input-conv-nchw-to-nhwc"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let input = contiguous_f32(storage, layout, self.name())?;
        if c != self.c_in {
            candle_core::bail!("input convolution: {c} channels, weights for {}", self.c_in);
        }
        let s = self.stride;
        let (oh, ow, c_out) = (h.div_ceil(s), w.div_ceil(s), self.c_out);
        let depth = self.kernel * self.kernel * c;
        let weights = MatRef::from_row_major_slice(&self.weights, depth, c_out);
        let block = rows_per_block(c_out);
        let mut out = output_buffer(n * oh * ow * c_out);
        out.par_chunks_mut(block * c_out).enumerate().for_each_init(
            Vec::new,
            |patches, (i, dst)| {
                let rows = dst.len() / c_out;
                patches.resize(rows * depth, 0.0);
                for (r, patch) in patches.chunks_exact_mut(depth).enumerate() {
                    let pixel = i * block + r;
                    let image = &input[pixel / (oh * ow) * c * h * w..][..c * h * w];
                    self.patch(image, (h, w), (pixel / ow % oh, pixel % ow), patch);
                }
                let patches = &patches[..rows * depth];
                product(dst, patches, weights, (&self.bias, self.act), None);
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c_out))))
    }
}

/// A 1×1 convolution with bias and activation on NHWC, `(N, H, W, C_in)` → `(N, H, W, C_out)`
/// (optionally plus a residual: the projection of an MBConv block), from PyTorch's
/// `(C_out, C_in, 1, 1)` weight: a dense layer over the channels of every pixel, one matrix
/// product `(N·H·W, C_in) × (C_in, C_out)` for the whole batch.
pub fn pointwise(weight: &Tensor, bias: &Tensor, act: Activation) -> candle_core::Result<Dense> {
    let (c_out, c_in, one, one2) = weight.dims4()?;
    if (one, one2) != (1, 1) {
        candle_core::bail!(
            "pointwise weight {:?}: expected a 1×1 kernel",
            weight.dims()
        );
    }
    Dense::new(&weight.reshape((c_out, c_in))?, bias, act)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn nhwc(x: &Tensor) -> candle_core::Result<Tensor> {
        x.permute((0, 2, 3, 1))?.contiguous()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    /// candle's convolution on explicitly padded NCHW input, plus bias, then ReLU6 if asked.
    fn reference(
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        (stride, groups, act): (usize, usize, Activation),
    ) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let k = weight.dim(2)?;
        let (t, b) = same_padding(h, k, stride);
        let (l, r) = same_padding(w, k, stride);
        let padded = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        let y = padded
            .conv2d(weight, 0, stride, 1, groups)?
            .broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
        crate::activation::with_candle(act, &y)
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(112, 3, 1), (1, 1));
        assert_eq!(same_padding(28, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
    }

    /// Shapes cover full channel blocks and a remainder, both strides, both kernel sizes, odd
    /// and even sizes, and images smaller than the kernel.
    #[test]
    fn depthwise_matches_grouped_conv2d() -> candle_core::Result<()> {
        let device = Device::Cpu;
        for (k, s, h, w, c) in [
            (3, 1, 7, 6, 3),
            (5, 2, 9, 8, 16),
            (3, 2, 8, 8, 21),
            (5, 1, 5, 4, 40),
            (5, 1, 3, 2, 32),
            (3, 1, 9, 10, 48),
        ] {
            for act in [Activation::Identity, Activation::Relu6] {
                let x = Tensor::randn(0f32, 3.0, (2, c, h, w), &device)?;
                let weight = Tensor::randn(0f32, 1.0, (c, 1, k, k), &device)?;
                let bias = Tensor::randn(0f32, 1.0, c, &device)?;
                let ours = nhwc(&x)?.apply_op1_no_bwd(&Depthwise::new(&weight, &bias, s, act)?)?;
                let expected = nhwc(&reference(&x, &weight, &bias, (s, c, act))?)?;
                assert_eq!(ours.dims(), expected.dims());
                let diff = max_diff(&ours, &expected)?;
                assert!(diff < 1e-4, "k{k} s{s} {h}x{w}x{c} {act:?}: {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn input_conv_matches_conv2d() -> candle_core::Result<()> {
        let device = Device::Cpu;
        for (k, s, h, w, c_out) in [(3, 2, 40, 37, 32), (3, 1, 5, 6, 20), (5, 2, 7, 7, 3)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &device)?;
            let weight = Tensor::randn(0f32, 1.0, (c_out, 3, k, k), &device)?;
            let bias = Tensor::randn(0f32, 1.0, c_out, &device)?;
            let op = InputConv::new(&weight, &bias, s, Activation::Relu6)?;
            let ours = x.apply_op1_no_bwd(&op)?;
            let expected = nhwc(&reference(&x, &weight, &bias, (s, 1, Activation::Relu6))?)?;
            assert_eq!(ours.dims(), expected.dims());
            let diff = max_diff(&ours, &expected)?;
            assert!(diff < 1e-4, "k{k} s{s} {h}x{w}→{c_out}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn pointwise_matches_conv2d_with_and_without_residual() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let (c_in, c_out) = (24, 40);
        // 3 × 13 × 17 pixels: more than one parallel block, the last one partial.
        let x = Tensor::randn(0f32, 1.0, (3, c_in, 13, 17), &device)?;
        let weight = Tensor::randn(0f32, 1.0, (c_out, c_in, 1, 1), &device)?;
        let bias = Tensor::randn(0f32, 1.0, c_out, &device)?;
        for act in [Activation::Identity, Activation::Relu6] {
            let op = pointwise(&weight, &bias, act)?;
            let expected = nhwc(&reference(&x, &weight, &bias, (1, 1, act))?)?;
            let diff = max_diff(&op.forward(&nhwc(&x)?, None)?, &expected)?;
            assert!(diff < 1e-4, "{act:?}: {diff}");
        }
        let residual = Tensor::randn(0f32, 1.0, (3, 13, 17, c_out), &device)?;
        for act in [Activation::Identity, Activation::Relu6] {
            let op = pointwise(&weight, &bias, act)?;
            let expected = nhwc(&reference(&x, &weight, &bias, (1, 1, act))?)?;
            let with_residual = op.forward(&nhwc(&x)?, Some(&residual))?;
            let diff = max_diff(&with_residual, &(expected + &residual)?)?;
            assert!(diff < 1e-4, "{act:?} + residual: {diff}");
        }
        let op = pointwise(&weight, &bias, Activation::Identity)?;
        let wrong = residual.narrow(3, 0, c_out - 1)?;
        assert!(op.forward(&nhwc(&x)?, Some(&wrong)).is_err());
        Ok(())
    }
}
