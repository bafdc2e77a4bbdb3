//! CLIP (transformers' `CLIPModel`): a ViT image tower and a causal text transformer, each with a
//! linear projection into the shared embedding space.
//!
//! Port of transformers' `modeling_clip.py`
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/clip/modeling_clip.py>).
//! `candle_transformers::models::clip` is not used because its activation is fixed to
//! quick-GELU (OpenCLIP's LAION models use exact GELU) and its text pooling is always the legacy
//! argmax. Tensor names are those of a transformers checkpoint (`vision_model.*`,
//! `text_model.*`, `visual_projection`, `text_projection`); other layouts (OpenCLIP, BLIP's
//! vision tower) are renamed onto these names before loading, so there is one model.
//!
//! Inputs: pixels (N, 3, image_size, image_size), already normalised; token ids (N, L) with the
//! row's pooling position. Outputs: projected features (N, projection_dim), not normalised.

use candle_core::{D, IndexOp, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// `config.json` of a transformers CLIP checkpoint. Missing keys take transformers' defaults
/// (those of `openai/clip-vit-base-patch32`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    #[serde(default)]
    pub text_config: ClipTextConfig,
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    #[serde(default = "defaults::projection_dim")]
    pub projection_dim: usize,
}

/// `text_config` of `config.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Also the tokenizer's truncation length (CLIP's context length, 77).
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// 2 in checkpoints saved before transformers PR #24773: then the pooled token is the one with
    /// the largest id (what CLIP's `<|endoftext|>` is), otherwise the first `eos_token_id`.
    pub eos_token_id: u32,
}

/// `vision_config` of `config.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// CLIP normalises the embeddings before the encoder (`pre_layrnorm`); BLIP does not.
    #[serde(skip)]
    pub pre_layernorm: bool,
    /// CLIP's patch convolution has no bias; BLIP's has one.
    #[serde(skip)]
    pub patch_bias: bool,
}

mod defaults {
    pub fn projection_dim() -> usize {
        512
    }
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            pre_layernorm: true,
            patch_bias: false,
        }
    }
}

/// The MLP activations CLIP-family checkpoints use (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI's CLIP.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact (erf) GELU: OpenCLIP's LAION models, BLIP.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
}

impl Module for Activation {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Activation::Gelu => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
        }
    }
}

/// Where a text's features are read from (transformers' `CLIPTextTransformer.forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPooling {
    /// The token with the largest id (legacy configs with `eos_token_id == 2`; OpenCLIP).
    Argmax,
    /// The first occurrence of this id (position 0 when absent, as torch's argmax of all zeros).
    FirstEos(u32),
}

impl TextPooling {
    /// The pooled position in `ids` (one unpadded row).
    pub fn position(self, ids: &[u32]) -> usize {
        match self {
            // First maximum, as torch's argmax.
            TextPooling::Argmax => {
                ids.iter()
                    .enumerate()
                    .fold(
                        (0, 0),
                        |best, (i, &id)| if id > best.1 { (i, id) } else { best },
                    )
                    .0
            }
            TextPooling::FirstEos(eos) => ids.iter().position(|&id| id == eos).unwrap_or(0),
        }
    }

    /// The pooling a transformers text config asks for.
    pub fn from_config(cfg: &ClipTextConfig) -> Self {
        if cfg.eos_token_id == 2 {
            TextPooling::Argmax
        } else {
            TextPooling::FirstEos(cfg.eos_token_id)
        }
    }
}

/// Multi-head self-attention with separate q/k/v projections (`CLIPAttention`).
#[derive(Debug, Clone)]
struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    scale: f64,
}

impl ClipAttention {
    fn load(vb: VarBuilder, hidden: usize, num_heads: usize) -> Result<Self> {
        if num_heads == 0 || !hidden.is_multiple_of(num_heads) {
            candle_core::bail!("hidden size {hidden} is not a multiple of {num_heads} heads");
        }
        let linear = |name| candle_nn::linear(hidden, hidden, vb.pp(name));
        Ok(Self {
            q_proj: linear("q_proj")?,
            k_proj: linear("k_proj")?,
            v_proj: linear("v_proj")?,
            out_proj: linear("out_proj")?,
            num_heads,
            scale: ((hidden / num_heads) as f64).powf(-0.5),
        })
    }

    /// (B, T, H) -> (B, heads, T, H / heads).
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, h) = xs.dims3()?;
        xs.reshape((b, t, self.num_heads, h / self.num_heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `mask` is added to the attention scores (broadcast to (B, heads, T, T)).
    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, h) = xs.dims3()?;
        let q = self.split_heads(&(self.q_proj.forward(xs)? * self.scale)?)?;
        let k = self.split_heads(&self.k_proj.forward(xs)?)?;
        let v = self.split_heads(&self.v_proj.forward(xs)?)?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        self.out_proj.forward(&out)
    }
}

/// `CLIPMLP`: fc1 -> activation -> fc2.
#[derive(Debug, Clone)]
struct ClipMlp {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl ClipMlp {
    fn load(vb: VarBuilder, hidden: usize, intermediate: usize, act: Activation) -> Result<Self> {
        Ok(Self {
            fc1: candle_nn::linear(hidden, intermediate, vb.pp("fc1"))?,
            fc2: candle_nn::linear(intermediate, hidden, vb.pp("fc2"))?,
            activation: act,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.fc2
            .forward(&self.activation.forward(&self.fc1.forward(xs)?)?)
    }
}

/// The shape of one tower's transformer, shared by the text and vision configs.
#[derive(Debug, Clone, Copy)]
struct EncoderShape {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    activation: Activation,
    eps: f64,
}

/// `CLIPEncoderLayer`: pre-norm attention and MLP blocks with residuals.
#[derive(Debug, Clone)]
struct ClipEncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: ClipAttention,
    layer_norm2: LayerNorm,
    mlp: ClipMlp,
}

impl ClipEncoderLayer {
    fn load(vb: VarBuilder, s: &EncoderShape) -> Result<Self> {
        Ok(Self {
            layer_norm1: candle_nn::layer_norm(s.hidden, s.eps, vb.pp("layer_norm1"))?,
            self_attn: ClipAttention::load(vb.pp("self_attn"), s.hidden, s.heads)?,
            layer_norm2: candle_nn::layer_norm(s.hidden, s.eps, vb.pp("layer_norm2"))?,
            mlp: ClipMlp::load(vb.pp("mlp"), s.hidden, s.intermediate, s.activation)?,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let attended = self
            .self_attn
            .forward(&self.layer_norm1.forward(xs)?, mask)?;
        let xs = (xs + attended)?;
        let mlp = self.mlp.forward(&self.layer_norm2.forward(&xs)?)?;
        xs + mlp
    }
}

/// `CLIPEncoder`: the stack of layers.
#[derive(Debug, Clone)]
struct ClipEncoder {
    layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    fn load(vb: VarBuilder, s: &EncoderShape) -> Result<Self> {
        let vb = vb.pp("layers");
        let layers = (0..s.layers)
            .map(|i| ClipEncoderLayer::load(vb.pp(i), s))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.layers
            .iter()
            .try_fold(xs.clone(), |xs, layer| layer.forward(&xs, mask))
    }
}

/// `CLIPVisionTransformer` (with the BLIP variant's options): patches + class token + positions
/// -> [pre-norm] -> encoder -> post-norm of the class token.
#[derive(Debug, Clone)]
pub struct ClipVisionTransformer {
    patch_embedding: Conv2d,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: Option<LayerNorm>,
    encoder: ClipEncoder,
    post_layernorm: LayerNorm,
}

impl ClipVisionTransformer {
    /// Loads `vision_model.*` (pass `vb.pp("vision_model")`).
    pub fn load(vb: VarBuilder, c: &ClipVisionConfig) -> Result<Self> {
        if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
            candle_core::bail!(
                "image size {} is not a multiple of patch size {}",
                c.image_size,
                c.patch_size
            );
        }
        let emb = vb.pp("embeddings");
        let conv = Conv2dConfig {
            stride: c.patch_size,
            ..Default::default()
        };
        let patch_vb = emb.pp("patch_embedding");
        let patch_embedding = if c.patch_bias {
            candle_nn::conv2d(c.num_channels, c.hidden_size, c.patch_size, conv, patch_vb)?
        } else {
            candle_nn::conv2d_no_bias(c.num_channels, c.hidden_size, c.patch_size, conv, patch_vb)?
        };
        let positions = (c.image_size / c.patch_size).pow(2) + 1;
        let pre_layrnorm = if c.pre_layernorm {
            Some(candle_nn::layer_norm(
                c.hidden_size,
                c.layer_norm_eps,
                vb.pp("pre_layrnorm"),
            )?)
        } else {
            None
        };
        let shape = EncoderShape {
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            activation: c.hidden_act,
            eps: c.layer_norm_eps,
        };
        Ok(Self {
            patch_embedding,
            class_embedding: emb.get(c.hidden_size, "class_embedding")?,
            position_embedding: emb
                .pp("position_embedding")
                .get((positions, c.hidden_size), "weight")?,
            pre_layrnorm,
            encoder: ClipEncoder::load(vb.pp("encoder"), &shape)?,
            post_layernorm: candle_nn::layer_norm(
                c.hidden_size,
                c.layer_norm_eps,
                vb.pp("post_layernorm"),
            )?,
        })
    }

    /// Pooled output (N, hidden): the post-normalised class token.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let xs = self.encode(pixels)?;
        // LayerNorm is per token, so normalising only the class token equals BLIP's
        // normalise-all-then-take-the-class-token.
        self.post_layernorm.forward(&xs.i((.., 0, ..))?)
    }

    /// Every token, post-normalised (N, 1 + patches, hidden): what BLIP's text decoder attends to
    /// (`BlipVisionModel`'s `last_hidden_state`).
    pub fn last_hidden_state(&self, pixels: &Tensor) -> Result<Tensor> {
        self.post_layernorm.forward(&self.encode(pixels)?)
    }

    /// The encoder's output, before the post-norm.
    fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        let n = pixels.dim(0)?;
        let patches = self
            .patch_embedding
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let hidden = patches.dim(D::Minus1)?;
        let class = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .repeat((n, 1, 1))?;
        let mut xs =
            Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.position_embedding)?;
        if let Some(norm) = &self.pre_layrnorm {
            xs = norm.forward(&xs)?;
        }
        self.encoder.forward(&xs, None)
    }
}

/// `CLIPTextTransformer`: token + position embeddings -> causal encoder -> final norm, read at
/// each row's pooling position.
#[derive(Debug, Clone)]
pub struct ClipTextTransformer {
    token_embedding: Embedding,
    position_embedding: Tensor,
    encoder: ClipEncoder,
    final_layer_norm: LayerNorm,
}

impl ClipTextTransformer {
    /// Loads `text_model.*` (pass `vb.pp("text_model")`).
    pub fn load(vb: VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let emb = vb.pp("embeddings");
        let shape = EncoderShape {
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            activation: c.hidden_act,
            eps: c.layer_norm_eps,
        };
        Ok(Self {
            token_embedding: candle_nn::embedding(
                c.vocab_size,
                c.hidden_size,
                emb.pp("token_embedding"),
            )?,
            position_embedding: emb
                .pp("position_embedding")
                .get((c.max_position_embeddings, c.hidden_size), "weight")?,
            encoder: ClipEncoder::load(vb.pp("encoder"), &shape)?,
            final_layer_norm: candle_nn::layer_norm(
                c.hidden_size,
                c.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
        })
    }

    /// Pooled output (N, hidden) of `ids` (N, L, u32) read at `positions[i]` for row i. Padding
    /// after the pooled token needs no mask: the causal mask already hides it.
    pub fn forward(&self, ids: &Tensor, positions: &[usize]) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let xs = self
            .token_embedding
            .forward(ids)?
            .broadcast_add(&self.position_embedding.narrow(0, 0, len)?)?;
        let mask = causal_mask(len, xs.device())?;
        let xs = self.encoder.forward(&xs, Some(&mask))?;
        let xs = self.final_layer_norm.forward(&xs)?;
        let rows = positions
            .iter()
            .enumerate()
            .map(|(row, &pos)| xs.i((row, pos)))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }
}

/// (1, 1, L, L): 0 on and below the diagonal, -inf above.
fn causal_mask(len: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (1, 1, len, len), device)
}

/// `CLIPModel` without the logit scale: both towers and their projections.
#[derive(Debug, Clone)]
pub struct ClipModel {
    pub vision_model: ClipVisionTransformer,
    pub text_model: ClipTextTransformer,
    visual_projection: Linear,
    text_projection: Linear,
    pooling: TextPooling,
    projection_dim: usize,
}

impl ClipModel {
    /// Loads a transformers checkpoint (`pooling` is usually [`TextPooling::from_config`]).
    pub fn load(vb: VarBuilder, c: &ClipConfig, pooling: TextPooling) -> Result<Self> {
        let vision = &c.vision_config;
        let text = &c.text_config;
        Ok(Self {
            vision_model: ClipVisionTransformer::load(vb.pp("vision_model"), vision)?,
            text_model: ClipTextTransformer::load(vb.pp("text_model"), text)?,
            visual_projection: candle_nn::linear_no_bias(
                vision.hidden_size,
                c.projection_dim,
                vb.pp("visual_projection"),
            )?,
            text_projection: candle_nn::linear_no_bias(
                text.hidden_size,
                c.projection_dim,
                vb.pp("text_projection"),
            )?,
            pooling,
            projection_dim: c.projection_dim,
        })
    }

    /// Width of the features.
    pub fn projection_dim(&self) -> usize {
        self.projection_dim
    }

    /// `get_image_features`: (N, projection_dim), not normalised.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        self.visual_projection
            .forward(&self.vision_model.forward(pixels)?)
    }

    /// `get_text_features` of unpadded token rows (each already truncated to the context
    /// length): (N, projection_dim), not normalised.
    pub fn text_features(&self, rows: &[&[u32]]) -> Result<Tensor> {
        let device = self.text_projection.weight().device();
        let (ids, _) = pad_rows(rows, 0, device)?;
        let positions: Vec<usize> = rows.iter().map(|r| self.pooling.position(r)).collect();
        self.text_projection
            .forward(&self.text_model.forward(&ids, &positions)?)
    }
}

/// Pads rows to the longest with `pad` into (N, L) u32 ids and an (N, L) u32 attention mask.
pub fn pad_rows(
    rows: &[&[u32]],
    pad: u32,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for row in rows {
        ids.extend_from_slice(row);
        ids.extend(std::iter::repeat_n(pad, len - row.len()));
        mask.extend(std::iter::repeat_n(1u32, row.len()));
        mask.extend(std::iter::repeat_n(0u32, len - row.len()));
    }
    let shape = (rows.len(), len);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_follows_transformers() {
        assert_eq!(TextPooling::Argmax.position(&[5, 9, 3, 9]), 1);
        assert_eq!(TextPooling::FirstEos(7).position(&[1, 7, 2, 7]), 1);
        assert_eq!(TextPooling::FirstEos(7).position(&[1, 2]), 0);
        let legacy = ClipTextConfig {
            eos_token_id: 2,
            ..Default::default()
        };
        assert_eq!(TextPooling::from_config(&legacy), TextPooling::Argmax);
        assert_eq!(
            TextPooling::from_config(&ClipTextConfig::default()),
            TextPooling::FirstEos(49407)
        );
    }

    #[test]
    fn config_defaults_and_activations() {
        let cfg: ClipConfig = serde_json::from_str(
            r#"{"text_config": {"hidden_size": 64}, "vision_config": {"hidden_act": "gelu"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.text_config.hidden_size, 64);
        assert_eq!(cfg.text_config.max_position_embeddings, 77);
        assert_eq!(cfg.vision_config.hidden_act, Activation::Gelu);
        assert!(cfg.vision_config.pre_layernorm && !cfg.vision_config.patch_bias);
        assert_eq!(cfg.projection_dim, 512);
        let bad = serde_json::from_str::<ClipConfig>(r#"{"text_config": {"hidden_act": "relu"}}"#);
        assert!(bad.unwrap_err().to_string().contains("relu"));
    }
}
