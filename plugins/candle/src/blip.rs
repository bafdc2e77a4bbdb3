//! BLIP (transformers' `BlipForImageTextRetrieval`, and the vision tower of the captioning and
//! VQA checkpoints): image features from the ViT's post-normalised class token, text features
//! from the BERT text encoder in unimodal mode (no cross-attention), each through its
//! `vision_proj` / `text_proj` when the checkpoint has one.
//!
//! Port of transformers' `modeling_blip.py` (`BlipVisionModel`, `BlipForImageTextRetrieval`
//! with `use_itm_head=False`) and `modeling_blip_text.py`
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/blip/modeling_blip.py>).
//! `candle_transformers::models::blip` is not used: its vision model can only be built together
//! with the captioning decoder. Instead the BLIP vision tensors are renamed onto
//! [`ClipVisionTransformer`] (the same ViT but for a fused q/k/v, a patch bias and no pre-norm),
//! and the text encoder is `candle_transformers`' BERT, which BLIP's unimodal text encoder equals
//! without token-type embeddings (zeros are supplied).

use candle_core::{DType, Device, IndexOp, Module, Tensor};

type CResult<T> = candle_core::Result<T>;
use candle_nn::Linear;
use candle_transformers::models::bert::{self, BertModel};
use serde::Deserialize;

use crate::checkpoint::{Checkpoint, split_qkv};
use crate::clip::{Activation, ClipVisionConfig, ClipVisionTransformer, pad_rows};
use crate::error::Error;

/// `config.json` of a BLIP checkpoint (`model_type: "blip"`).
#[derive(Debug, Clone, Deserialize)]
pub struct BlipConfig {
    #[serde(default)]
    pub vision_config: BlipVisionConfig,
    #[serde(default)]
    pub text_config: BlipTextConfig,
    /// Width of `vision_proj` / `text_proj` (retrieval checkpoints).
    #[serde(default = "defaults::image_text_hidden_size")]
    pub image_text_hidden_size: usize,
}

/// `vision_config`, with `BlipVisionConfig`'s defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

/// `text_config`, with `BlipTextConfig`'s defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the image tokens the captioning decoder cross-attends to.
    pub encoder_hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// `[DEC]`: the first token of every caption.
    pub bos_token_id: u32,
    /// `[SEP]`: ends a caption.
    pub sep_token_id: u32,
}

mod defaults {
    pub fn image_text_hidden_size() -> usize {
        256
    }
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            bos_token_id: 30522,
            sep_token_id: 102,
        }
    }
}

impl BlipVisionConfig {
    /// The same tower in [`ClipVisionTransformer`]'s terms.
    pub(crate) fn to_clip(&self) -> ClipVisionConfig {
        ClipVisionConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_channels: 3,
            image_size: self.image_size,
            patch_size: self.patch_size,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            pre_layernorm: false,
            patch_bias: true,
        }
    }
}

impl BlipTextConfig {
    /// The text encoder in `candle_transformers`' BERT terms.
    fn to_bert(&self) -> bert::Config {
        bert::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act: bert::HiddenAct::Gelu,
            hidden_dropout_prob: 0.0,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: 1,
            initializer_range: 0.02,
            layer_norm_eps: self.layer_norm_eps,
            pad_token_id: self.pad_token_id as usize,
            position_embedding_type: bert::PositionEmbeddingType::Absolute,
            use_cache: false,
            classifier_dropout: None,
            model_type: None,
        }
    }
}

/// A loaded BLIP checkpoint: the vision tower, and for retrieval checkpoints the projections
/// and the text encoder.
pub struct BlipModel {
    vision_model: ClipVisionTransformer,
    vision_proj: Option<Linear>,
    text: Option<BlipText>,
    dim: usize,
}

/// The unimodal text side of a retrieval checkpoint.
struct BlipText {
    encoder: BertModel,
    text_proj: Linear,
    pad_id: u32,
}

impl BlipModel {
    /// Loads a checkpoint whose tensors are still in BLIP's names (renames them first).
    pub fn load(checkpoint: &mut Checkpoint, cfg: &BlipConfig) -> Result<Self, Error> {
        let hidden = cfg.text_config.hidden_size;
        checkpoint.rename(|name, t| rename_vision(name, t, hidden))?;
        let vb = checkpoint.var_builder();
        let load = || -> CResult<Self> {
            let vision = cfg.vision_config.to_clip();
            let vision_model = ClipVisionTransformer::load(vb.pp("vision_model"), &vision)?;
            let proj_dim = cfg.image_text_hidden_size;
            if !vb.contains_tensor("vision_proj.weight") {
                // Captioning / VQA checkpoints: the post-normalised class token itself.
                return Ok(Self {
                    vision_model,
                    vision_proj: None,
                    text: None,
                    dim: vision.hidden_size,
                });
            }
            let vision_proj =
                candle_nn::linear(vision.hidden_size, proj_dim, vb.pp("vision_proj"))?;
            let text = BlipText {
                encoder: BertModel::load(vb.pp("text_encoder"), &cfg.text_config.to_bert())?,
                text_proj: candle_nn::linear(hidden, proj_dim, vb.pp("text_proj"))?,
                pad_id: cfg.text_config.pad_token_id,
            };
            Ok(Self {
                vision_model,
                vision_proj: Some(vision_proj),
                text: Some(text),
                dim: proj_dim,
            })
        };
        load().map_err(|e| checkpoint.error(e))
    }

    /// Width of the features.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the checkpoint can embed texts (retrieval checkpoints).
    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// (N, dim), not normalised: `vision_proj` of the post-normalised class token, or the token.
    pub fn image_features(&self, pixels: &Tensor) -> CResult<Tensor> {
        let cls = self.vision_model.forward(pixels)?;
        match &self.vision_proj {
            Some(proj) => proj.forward(&cls),
            None => Ok(cls),
        }
    }

    /// (N, dim), not normalised: `text_proj` of the text encoder's `[CLS]` state, for unpadded
    /// token rows (each starting with `[CLS]`).
    pub fn text_features(&self, rows: &[&[u32]]) -> CResult<Tensor> {
        let Some(text) = &self.text else {
            candle_core::bail!("this BLIP checkpoint has no text projection");
        };
        let device = text.text_proj.weight().device();
        let (ids, mask) = pad_rows(rows, text.pad_id, device)?;
        let types = ids.zeros_like()?;
        let states = text.encoder.forward(&ids, &types, Some(&mask))?;
        text.text_proj.forward(&states.i((.., 0))?)
    }
}

/// BLIP's vision names onto [`ClipVisionTransformer`]'s, and the zero token-type table BERT
/// expects; everything else keeps its name.
pub(crate) fn rename_vision(
    name: &str,
    t: Tensor,
    text_hidden: usize,
) -> CResult<Vec<(String, Tensor)>> {
    if name == "text_encoder.embeddings.word_embeddings.weight" {
        let types = Tensor::zeros((1, text_hidden), DType::F32, &Device::Cpu)?;
        return Ok(vec![
            (name.to_owned(), t),
            (
                "text_encoder.embeddings.token_type_embeddings.weight".into(),
                types,
            ),
        ]);
    }
    let renamed = match name {
        // (1, 1, H) and (1, positions, H) parameters in BLIP; a vector and a table in CLIP.
        "vision_model.embeddings.class_embedding" => t.flatten_all()?,
        "vision_model.embeddings.position_embedding" => {
            let name = "vision_model.embeddings.position_embedding.weight";
            return Ok(vec![(name.into(), t.squeeze(0)?)]);
        }
        _ => {
            if let Some(layer) = name.strip_suffix(".self_attn.qkv.weight") {
                return split_qkv(&format!("{layer}.self_attn"), "weight", &t);
            }
            if let Some(layer) = name.strip_suffix(".self_attn.qkv.bias") {
                return split_qkv(&format!("{layer}.self_attn"), "bias", &t);
            }
            if let Some(layer) = name.strip_suffix(".self_attn.projection.weight") {
                return Ok(vec![(format!("{layer}.self_attn.out_proj.weight"), t)]);
            }
            if let Some(layer) = name.strip_suffix(".self_attn.projection.bias") {
                return Ok(vec![(format!("{layer}.self_attn.out_proj.bias"), t)]);
            }
            t
        }
    };
    Ok(vec![(name.to_owned(), renamed)])
}
