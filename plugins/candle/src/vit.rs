//! Vision Transformers (ViT) in Hugging Face's layout, e.g. google/vit-base-patch16-224, through
//! `candle_transformers::models::vit`.
//!
//! A folder holds `config.json` (`model_type: "vit"`), `model.safetensors` and
//! `preprocessor_config.json` (ViTImageProcessor). Both `ViTModel` checkpoints (tensor names at
//! the root) and `ViTForImageClassification` ones (`vit.` prefix plus `classifier`) load.
//!
//! Output: the [CLS] token after the final layer norm (`last_hidden_state[:, 0]`, the usual image
//! embedding, `hidden_size`-d) or, for classification checkpoints, the classifier's logits.

use std::path::Path;

use candle_core::{Device, IndexOp, Tensor};
use candle_nn::{LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::vit;
use serde::Deserialize;

use crate::error::Error;
use crate::family::{self, Family, Model};
use crate::files::{load_safetensors, read_json, unsupported};
use crate::vision::{ClassifierOptions, ImageEncoder, Output, Preprocess, VisionModel};

/// The parts of `config.json` beyond candle's [`vit::Config`].
#[derive(Debug, Deserialize)]
struct Labels {
    #[serde(default)]
    id2label: std::collections::BTreeMap<String, String>,
}

/// A loaded ViT.
pub struct Vit {
    embeddings: vit::Embeddings,
    encoder: vit::Encoder,
    layernorm: LayerNorm,
    classifier: Option<Linear>,
    output: Output,
}

impl Vit {
    /// Loads the network from `vb` (checkpoint names, with or without the `vit.` prefix).
    pub fn load(
        vb: VarBuilder,
        config: &vit::Config,
        classes: usize,
        output: Output,
    ) -> candle_core::Result<Vit> {
        let classification = vb.contains_tensor("vit.embeddings.cls_token");
        let body = if classification {
            vb.pp("vit")
        } else {
            vb.clone()
        };
        let classifier = match output {
            Output::Logits if classification => Some(candle_nn::linear(
                config.hidden_size,
                classes,
                vb.pp("classifier"),
            )?),
            Output::Logits => candle_core::bail!(
                "output = \"logits\" needs a classification checkpoint (`vit.` and `classifier` tensors)"
            ),
            Output::Features => None,
        };
        Ok(Vit {
            embeddings: vit::Embeddings::new(config, false, body.pp("embeddings"))?,
            encoder: vit::Encoder::new(config, body.pp("encoder"))?,
            layernorm: candle_nn::layer_norm(
                config.hidden_size,
                config.layer_norm_eps,
                body.pp("layernorm"),
            )?,
            classifier,
            output,
        })
    }
}

impl VisionModel for Vit {
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = self.embeddings.forward(pixels, None, false)?;
        let hidden = self.encoder.forward(&hidden)?;
        let cls = hidden.i((.., 0, ..))?.apply(&self.layernorm)?;
        match (&self.classifier, self.output) {
            (Some(classifier), Output::Logits) => classifier.forward(&cls),
            _ => Ok(cls),
        }
    }
}

/// The ViT family: `config.json` with `model_type: "vit"`.
pub(crate) const FAMILY: Family = Family {
    name: "vit",
    marker: "config.json with model_type \"vit\"",
    detect: is_vit,
    load: load_encoder,
};

fn is_vit(dir: &Path) -> bool {
    family::config_model_type(dir).as_deref() == Some("vit")
}

/// Loads the folder as an image encoder.
pub fn load_encoder(dir: &Path, options: family::Options) -> Result<Box<dyn Model>, Error> {
    Ok(Box::new(load_image_encoder(dir, options)?))
}

/// [`load_encoder`] with the concrete type (tests call it directly).
pub fn load_image_encoder(
    dir: &Path,
    options: family::Options,
) -> Result<ImageEncoder<Vit>, Error> {
    let options = ClassifierOptions::parse(options)?;
    let output = options.output.unwrap_or_default();
    let config_path = dir.join("config.json");
    let config: vit::Config = read_json(&config_path)?;
    let classes = read_json::<Labels>(&config_path)?.id2label.len();
    if config.num_channels != 3 {
        return Err(unsupported(
            &config_path,
            format!("num_channels {} (RGB images have 3)", config.num_channels),
        ));
    }
    let preprocess = Preprocess::from_hf_config(&dir.join("preprocessor_config.json"))?;
    let device = Device::Cpu;
    let weights_path = dir.join("model.safetensors");
    let weights = load_safetensors(&weights_path, &device)?;
    let model =
        Vit::load(weights.vb, &config, classes, output).map_err(|source| Error::Weights {
            path: weights_path.clone(),
            source,
        })?;
    let dim = match output {
        Output::Features => config.hidden_size,
        Output::Logits => classes,
    };
    Ok(ImageEncoder {
        model,
        preprocess,
        dim,
        parameters: weights.parameters,
        weights_digest: weights.digest,
        batch_size: options.batch_size,
        device,
    })
}
