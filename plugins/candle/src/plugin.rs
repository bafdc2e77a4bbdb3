//! The embedlab plugin `candle` (`libembedlab_candle.so`): [`SentenceTransformer`] behind the
//! `embedlab-plugin` SDK.
//!
//! Config: `{"model": id, "model_dir": "/abs/dir", "options": {"batch_size": 64}}`. The model id
//! is informational (the engine resolved it to `model_dir`); any sentence-transformers folder of a
//! BERT-family or MPNet model loads, and [`Candle::models`] lists the two that are tested against
//! the Python library. `options` are [`Options`]; an unknown key is a config error.

use embedlab_plugin::{
    Config, Description, Encoder, Modality, ModelInfo, Plugin, PluginError, serde_json,
};

use crate::error::Error;
use crate::sentence::{Options, SentenceTransformer};

/// The plugin.
pub struct Candle;

/// Its encoder: a loaded model and the description made at load.
pub struct CandleEncoder {
    model: SentenceTransformer,
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
        ]
    }

    fn create(config: &str) -> Result<CandleEncoder, PluginError> {
        let config = Config::parse(config)?;
        let Some(dir) = config.model_dir else {
            return Err(PluginError::bad_config(format!(
                "model {:?}: `model_dir` is required (a sentence-transformers folder)",
                config.model
            )));
        };
        let options: Options = serde_json::from_value(serde_json::Value::Object(config.options))
            .map_err(|e| {
                PluginError::bad_config(format!("model {:?}: options: {e}", config.model))
            })?;
        let model = SentenceTransformer::load(&dir, &options).map_err(|err| {
            let message = format!("model {:?}: {err}", config.model);
            match err {
                Error::Option { .. } | Error::Unsupported { .. } => {
                    PluginError::bad_config(message)
                }
                _ => PluginError::model_unavailable(message),
            }
        })?;
        Ok(CandleEncoder { model })
    }
}

impl Encoder for CandleEncoder {
    fn describe(&self) -> Description {
        Description {
            modalities: vec![Modality::Text],
            dim: self.model.dim(),
            parameters: self.model.parameters(),
            weights_digest: self.model.weights_digest().to_owned(),
        }
    }

    fn encode_texts(&mut self, texts: &[&str], out: &mut [f32]) -> Result<(), PluginError> {
        self.model.encode_into(texts, out).map_err(|err| match err {
            Error::Tokenize(_) => PluginError::bad_input(err.to_string()),
            _ => PluginError::internal(err.to_string()),
        })
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
