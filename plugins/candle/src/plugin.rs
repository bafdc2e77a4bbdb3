//! The embedlab plugin `candle` (`libembedlab_candle.so`): every model family of this crate
//! behind the `embedlab-plugin` SDK.
//!
//! Config: `{"model": id, "model_dir": "/abs/dir", "options": {...}}`. The model id is
//! informational (the engine resolved it to `model_dir`); the folder's family is detected from its
//! files ([`crate::family::detect`]) and `options` are that family's (`{"batch_size": 64}` for
//! sentence-transformers; an unknown key is a config error). [`Candle::models`] lists the models
//! that are tested against their Python references.

use embedlab_plugin::{Config, Description, Encoder, Image, ModelInfo, Plugin, PluginError};

use crate::error::Error;
use crate::family::{self, Model};

/// The plugin.
pub struct Candle;

/// Its encoder: a loaded model of some family and the description made at load.
pub struct CandleEncoder {
    model: Box<dyn Model>,
    description: Description,
}

impl Plugin for Candle {
    const NAME: &'static str = "candle";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    type Encoder = CandleEncoder;

    fn models() -> Vec<ModelInfo> {
        vec![
            ModelInfo::new(
                "sentence-transformers/all-MiniLM-L6-v2",
                "MiniLM-L6 (BERT), 384-d, mean pooling, normalised; 22.7M parameters",
            ),
            ModelInfo::new(
                "sentence-transformers/all-mpnet-base-v2",
                "MPNet-base, 768-d, mean pooling, normalised; 109M parameters",
            ),
            ModelInfo::new(
                "openai/clip-vit-base-patch32",
                "CLIP ViT-B/32 (transformers layout), texts and images, 512-d, normalised; \
                 parity-tested on tiny random CLIP models",
            ),
            ModelInfo::new(
                "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                "OpenCLIP ViT-B-32 (open_clip layout), texts and images, 512-d, normalised; \
                 parity-tested on tiny random open_clip models",
            ),
            ModelInfo::new(
                "Salesforce/blip-itm-base-coco",
                "BLIP retrieval (ITC features), texts and images, 256-d, normalised; \
                 parity-tested on tiny random BLIP models",
            ),
            ModelInfo::new(
                "Salesforce/blip-image-captioning-base",
                "BLIP captioning (ViT-B), captions (greedy or beam search, optional prompt) and \
                 images, 768-d class token, normalised; parity-tested on tiny random BLIP models",
            ),
            ModelInfo::new(
                "Salesforce/blip-image-captioning-large",
                "BLIP captioning (ViT-L), captions (greedy or beam search, optional prompt) and \
                 images, 1024-d class token, normalised; parity-tested on tiny random BLIP models",
            ),
            ModelInfo::new(
                "google/vit-base-patch16-224",
                "ViT-B/16 (transformers layout), images: 768-d [CLS] features or ImageNet logits; \
                 parity-tested on tiny random ViT models",
            ),
            ModelInfo::new(
                "efficientnet-lite0",
                "EfficientNet-Lite0 (ImageNet-1k), images: 1280-d pooled features or 1000 logits; 4.7M parameters",
            ),
        ]
    }

    fn create(config: &str) -> Result<CandleEncoder, PluginError> {
        let config = Config::parse(config)?;
        let Some(dir) = config.model_dir else {
            return Err(PluginError::bad_config(format!(
                "model {:?}: `model_dir` is required (the model's folder)",
                config.model
            )));
        };
        let family = family::detect(&dir);
        let model = (family.load)(&dir, config.options).map_err(|err| {
            let message = format!("model {:?}: {err}", config.model);
            match err {
                Error::Option { .. } | Error::Options(_) | Error::Unsupported { .. } => {
                    PluginError::bad_config(message)
                }
                _ => PluginError::model_unavailable(message),
            }
        })?;
        let description = model.describe();
        Ok(CandleEncoder { model, description })
    }
}

impl Encoder for CandleEncoder {
    fn describe(&self) -> Description {
        self.description.clone()
    }

    fn encode_texts(&mut self, texts: &[&str], out: &mut [f32]) -> Result<(), PluginError> {
        self.model.encode_texts(texts, out).map_err(encode_error)
    }

    fn encode_images(&mut self, images: &[Image<'_>], out: &mut [f32]) -> Result<(), PluginError> {
        self.model.encode_images(images, out).map_err(encode_error)
    }

    fn generate_captions(&mut self, images: &[Image<'_>]) -> Result<Vec<String>, PluginError> {
        self.model.generate_captions(images).map_err(encode_error)
    }
}

fn encode_error(err: Error) -> PluginError {
    match err {
        Error::Tokenize(_) | Error::BadImage { .. } => PluginError::bad_input(err.to_string()),
        Error::Modality(_) | Error::NoCaptions => PluginError::unsupported(err.to_string()),
        _ => PluginError::internal(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedlab_plugin::Status;

    fn create_error(config: &str) -> PluginError {
        match Candle::create(config) {
            Ok(_) => panic!("{config} loaded"),
            Err(err) => err,
        }
    }

    #[test]
    fn missing_model_dir_is_a_config_error() {
        let err = create_error(r#"{"model": "m"}"#);
        assert_eq!(err.status, Status::BAD_CONFIG);
        assert!(err.message.contains("model_dir"), "{}", err.message);
    }

    #[test]
    fn unknown_or_invalid_options_are_config_errors() {
        let err = create_error(r#"{"model": "m", "model_dir": "/x", "options": {"batch": 3}}"#);
        assert_eq!(err.status, Status::BAD_CONFIG);
        assert!(err.message.contains("batch"), "{}", err.message);
        let err =
            create_error(r#"{"model": "m", "model_dir": "/x", "options": {"batch_size": 0}}"#);
        assert_eq!(err.status, Status::BAD_CONFIG);
    }

    #[test]
    fn a_missing_folder_is_unavailable_and_named() {
        let err = create_error(r#"{"model": "m", "model_dir": "/nonexistent/embedlab/model"}"#);
        assert_eq!(err.status, Status::MODEL_UNAVAILABLE);
        assert!(
            err.message
                .contains("/nonexistent/embedlab/model/modules.json"),
            "{}",
            err.message
        );
    }
}
