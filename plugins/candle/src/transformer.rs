//! The post-LayerNorm encoder layer that BERT ([`crate::bert`]) and MPNet ([`crate::mpnet`]) share.
//!
//! transformers' `BertLayer` and `MPNetLayer` compute the same thing: multi-head self-attention
//! with an additive bias, a residual and LayerNorm, then a feed-forward block (dense, GELU, dense)
//! with a residual and LayerNorm. They differ only in the tensor names of the attention block
//! ([`AttentionNames`]) and in what the bias holds (MPNet adds its relative position bias to the
//! padding mask). Dropout is an identity at inference and is left out.
//!
//! Speed: the activation is [`crate::activation::gelu_erf`] (vectorised, parallel), and every
//! linear layer keeps its weight transposed in memory, so candle's matmul reads it contiguously.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder, layer_norm};
use candle_transformers::models::bert::HiddenAct;

/// The sizes and activation of one layer, from the model's `config.json`.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: HiddenAct,
}

/// Where a checkpoint keeps the attention block's tensors, under `layer.N.attention`.
pub struct AttentionNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub output: &'static str,
    pub layer_norm: &'static str,
}

/// A post-LN encoder layer, loaded from `layer.N`.
pub struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    feed_forward_output: Linear,
    output_norm: LayerNorm,
    hidden_act: HiddenAct,
    heads: usize,
    head_size: usize,
}

impl Layer {
    pub fn load(vb: VarBuilder, dims: &Dims, names: &AttentionNames) -> Result<Self> {
        let Dims {
            hidden_size: hidden,
            num_attention_heads: heads,
            intermediate_size: intermediate,
            layer_norm_eps: eps,
            ..
        } = *dims;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            );
        }
        let attention = vb.pp("attention");
        Ok(Self {
            query: linear(hidden, hidden, attention.pp(names.query))?,
            key: linear(hidden, hidden, attention.pp(names.key))?,
            value: linear(hidden, hidden, attention.pp(names.value))?,
            output: linear(hidden, hidden, attention.pp(names.output))?,
            attention_norm: layer_norm(hidden, eps, attention.pp(names.layer_norm))?,
            intermediate: linear(hidden, intermediate, vb.pp("intermediate.dense"))?,
            feed_forward_output: linear(intermediate, hidden, vb.pp("output.dense"))?,
            output_norm: layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
            hidden_act: dims.hidden_act,
            heads,
            head_size: hidden / heads,
        })
    }

    /// `hidden_states`: (batch, seq, hidden); `attention_bias`: added to the attention scores,
    /// broadcastable to (batch, heads, seq, seq).
    pub fn forward(&self, hidden_states: &Tensor, attention_bias: &Tensor) -> Result<Tensor> {
        let attended = self.attention(hidden_states, attention_bias)?;
        let attended = self.attention_norm.forward(&(attended + hidden_states)?)?;
        let expanded = activation(self.hidden_act, &self.intermediate.forward(&attended)?)?;
        let projected = self.feed_forward_output.forward(&expanded)?;
        self.output_norm.forward(&(projected + attended)?)
    }

    fn attention(&self, hidden_states: &Tensor, attention_bias: &Tensor) -> Result<Tensor> {
        let (batch, seq, _) = hidden_states.dims3()?;
        let q = self.split_heads(&self.query.forward(hidden_states)?)?;
        let k = self.split_heads(&self.key.forward(hidden_states)?)?;
        let v = self.split_heads(&self.value.forward(hidden_states)?)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_size as f64).sqrt())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(attention_bias)?)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, seq, ()))?;
        self.output.forward(&context)
    }

    /// (batch, seq, hidden) -> (batch, heads, seq, head_size), contiguous.
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, seq, _) = xs.dims3()?;
        xs.reshape((batch, seq, self.heads, self.head_size))?
            .transpose(1, 2)?
            .contiguous()
    }
}

/// `nn.Linear(in_dim, out_dim)` from `weight` (out_dim, in_dim) and `bias`.
///
/// The weight is kept as a transposed view of a contiguous (in_dim, out_dim) copy: candle's
/// `Linear` multiplies by `weight.t()`, which is then row-major, and gemm runs MPNet's 3072 -> 768
/// output projection ~1.5x faster that way. Same products up to float rounding; the copy is made
/// once at load.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = vb.get(out_dim, "bias")?;
    Ok(Linear::new(weight.t()?.contiguous()?.t()?, Some(bias)))
}

fn activation(act: HiddenAct, xs: &Tensor) -> Result<Tensor> {
    match act {
        // transformers' "gelu" is the exact (erf) form.
        HiddenAct::Gelu => crate::activation::gelu_erf(xs),
        HiddenAct::GeluApproximate => xs.gelu(),
        HiddenAct::Relu => xs.relu(),
    }
}

/// `get_extended_attention_mask`: (batch, seq) of 1/0 -> (batch, 1, 1, seq) of 0 / dtype minimum.
pub fn extended_attention_mask(attention_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let mask = attention_mask.to_dtype(dtype)?.unsqueeze(1)?.unsqueeze(1)?;
    let inverted = (1.0 - mask)?;
    inverted.affine(f64::from(f32::MIN), 0.0)
}
