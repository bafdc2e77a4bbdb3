//! The post-LayerNorm encoder layer that BERT ([`crate::bert`]) and MPNet ([`crate::mpnet`]) share.
//!
//! transformers' `BertLayer` and `MPNetLayer` compute the same thing: multi-head self-attention
//! with an additive bias, a residual and LayerNorm, then a feed-forward block (dense, GELU, dense)
//! with a residual and LayerNorm. They differ only in the tensor names of the attention block
//! ([`AttentionNames`]) and in what the bias holds (MPNet adds its relative position bias to the
//! padding mask). Dropout is an identity at inference and is left out.
//!
//! Speed: every linear layer is a fused [`Dense`] op: query, key and value are one product (the
//! attention's 1/√head_size folded into the query weights), the feed-forward activation
//! ([`Activation::GeluErf`], vectorised) and both residual sums are applied as each block of the
//! product is written, and no output is zeroed through `calloc`.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder, layer_norm};
use candle_transformers::models::bert::HiddenAct;

use crate::activation::Activation;
use crate::dense::Dense;

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
    /// Query, key and value side by side: `(…, hidden)` → `(…, 3 · hidden)`.
    query_key_value: Dense,
    output: Dense,
    attention_norm: LayerNorm,
    /// Includes the activation.
    intermediate: Dense,
    feed_forward_output: Dense,
    output_norm: LayerNorm,
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
        let linear = |vb: VarBuilder, (d_in, d_out), act| Dense::load(d_in, d_out, vb, act);
        let square = (hidden, hidden);
        let identity = Activation::Identity;
        // The attention scores' 1/√head_size, folded into the query projection.
        let scale = 1.0 / ((hidden / heads) as f32).sqrt();
        let query_key_value = Dense::concatenated(&[
            linear(attention.pp(names.query), square, identity)?.scaled(scale),
            linear(attention.pp(names.key), square, identity)?,
            linear(attention.pp(names.value), square, identity)?,
        ])?;
        Ok(Self {
            query_key_value,
            output: linear(attention.pp(names.output), square, identity)?,
            attention_norm: layer_norm(hidden, eps, attention.pp(names.layer_norm))?,
            intermediate: linear(
                vb.pp("intermediate.dense"),
                (hidden, intermediate),
                activation(dims.hidden_act),
            )?,
            feed_forward_output: linear(vb.pp("output.dense"), (intermediate, hidden), identity)?,
            output_norm: layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
            heads,
            head_size: hidden / heads,
        })
    }

    /// `hidden_states`: (batch, seq, hidden); `attention_bias`: added to the attention scores,
    /// broadcastable to (batch, heads, seq, seq).
    pub fn forward(&self, hidden_states: &Tensor, attention_bias: &Tensor) -> Result<Tensor> {
        let attended = self.attention(hidden_states, attention_bias)?;
        let attended = self.attention_norm.forward(&attended)?;
        let expanded = self.intermediate.forward(&attended, None)?;
        let projected = (self.feed_forward_output).forward(&expanded, Some(&attended))?;
        self.output_norm.forward(&projected)
    }

    /// Self-attention plus the residual `hidden_states` (before the LayerNorm).
    fn attention(&self, hidden_states: &Tensor, attention_bias: &Tensor) -> Result<Tensor> {
        let (batch, seq, _) = hidden_states.dims3()?;
        let qkv = self.query_key_value.forward(hidden_states, None)?;
        let [q, k, v] = self.split_heads(&qkv)?;
        let scores = q.matmul(&k.t()?)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(attention_bias)?)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, seq, ()))?;
        self.output.forward(&context, Some(hidden_states))
    }

    /// (batch, seq, 3 · hidden) -> query, key and value, each (batch, heads, seq, head_size)
    /// and contiguous, from one copy.
    fn split_heads(&self, qkv: &Tensor) -> Result<[Tensor; 3]> {
        let (batch, seq, _) = qkv.dims3()?;
        let heads = qkv
            .reshape((batch, seq, 3, self.heads, self.head_size))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        Ok([heads.get(0)?, heads.get(1)?, heads.get(2)?])
    }
}

/// The fused activation for a config's `hidden_act`.
fn activation(act: HiddenAct) -> Activation {
    match act {
        // transformers' "gelu" is the exact (erf) form.
        HiddenAct::Gelu => Activation::GeluErf,
        HiddenAct::GeluApproximate => Activation::GeluTanh,
        HiddenAct::Relu => Activation::Relu,
    }
}

/// `get_extended_attention_mask`: (batch, seq) of 1/0 -> (batch, 1, 1, seq) of 0 / dtype minimum.
pub fn extended_attention_mask(attention_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let mask = attention_mask.to_dtype(dtype)?.unsqueeze(1)?.unsqueeze(1)?;
    let inverted = (1.0 - mask)?;
    inverted.affine(f64::from(f32::MIN), 0.0)
}
