//! ViT image encoders from Hugging Face folders (`config.json` with `model_type: "vit"`,
//! `model.safetensors`, `preprocessor_config.json`), through `candle_transformers::models::vit`.
//!
//! Output: the CLS token of the last hidden state after the final layer norm (what
//! `ViTForImageClassification` feeds its classifier; `hidden_size` values). Checkpoints of
//! `ViTModel` (tensors under `embeddings.`, `encoder.`, `layernorm.`) and of
//! `ViTForImageClassification` (the same under `vit.`) both load; the pooler and classifier are
//! not used. The input size must be the config's `image_size` (no position interpolation).

use std::path::Path;

use candle_core::{Device, IndexOp, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::vit;
use serde::Deserialize;

use crate::error::Error;
use crate::family::{self, Family, Model};
use crate::files::{load_safetensors, read_json};
use crate::vision::{ImageEncoder, Preprocess, VisionModel};

/// The ViT trunk: embeddings, encoder, final layer norm.
pub struct ViT {
    embeddings: vit::Embeddings,
    encoder: vit::Encoder,
    layernorm: LayerNorm,
}

impl ViT {
    pub fn load(vb: VarBuilder, cfg: &vit::Config) -> candle_core::Result<ViT> {
        // ViTForImageClassification nests the trunk under `vit.`.
        let vb = if vb.contains_tensor("vit.embeddings.cls_token") {
            vb.pp("vit")
        } else {
            vb
        };
        Ok(ViT {
            embeddings: vit::Embeddings::new(cfg, false, vb.pp("embeddings"))?,
            encoder: vit::Encoder::new(cfg, vb.pp("encoder"))?,
            layernorm: candle_nn::layer_norm(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb.pp("layernorm"),
            )?,
        })
    }
}

impl VisionModel for ViT {
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = self.embeddings.forward(pixels, None, false)?;
        let hidden = self.encoder.forward(&hidden)?;
        self.layernorm.forward(&hidden.i((.., 0, ..))?)
    }
}

/// The ViT family.
pub(crate) const FAMILY: Family = Family {
    name: "vit",
    marker: "config.json with model_type \"vit\"",
    detect: is_vit,
    load: load_encoder,
};

fn is_vit(dir: &Path) -> bool {
    family::config_model_type(dir).as_deref() == Some("vit")
}

/// Plugin options of this family.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// Images per forward pass. Default 32.
    batch_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch_size: 32 }
    }
}

fn load_encoder(dir: &Path, options: family::Options) -> Result<Box<dyn Model>, Error> {
    Ok(Box::new(load_image_encoder(dir, options)?))
}

/// Loads a ViT folder as an image encoder.
pub fn load_image_encoder(
    dir: &Path,
    options: family::Options,
) -> Result<ImageEncoder<ViT>, Error> {
    let options: Options = family::parse_options(options)?;
    if options.batch_size == 0 {
        return Err(Error::Option {
            name: "batch_size",
            message: "must be at least 1".into(),
        });
    }
    let cfg: vit::Config = read_json(&dir.join("config.json"))?;
    let preprocess = Preprocess::from_hf_config(&dir.join("preprocessor_config.json"))?;
    let device = Device::Cpu;
    let weights_path = dir.join("model.safetensors");
    let weights = load_safetensors(&weights_path, &device)?;
    let model = ViT::load(weights.vb, &cfg).map_err(|source| Error::Weights {
        path: weights_path,
        source,
    })?;
    Ok(ImageEncoder {
        model,
        preprocess,
        dim: cfg.hidden_size,
        parameters: weights.parameters,
        weights_digest: weights.digest,
        batch_size: options.batch_size,
        device,
    })
}
