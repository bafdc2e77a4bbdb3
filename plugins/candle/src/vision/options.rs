//! What image classifiers (EfficientNet-Lite, ViT) return, and the plugin options they share.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::family;

/// What a classifier network returns per image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// The representation before the classifier (pooled features, or the [CLS] token).
    #[default]
    Features,
    /// The classifier's logits.
    Logits,
}

/// Plugin options of the classifier families: `{"batch_size": 32, "output": "features"}`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierOptions {
    /// Images per forward pass. Default 32.
    pub batch_size: usize,
    /// `None`: the model's own default.
    pub output: Option<Output>,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        ClassifierOptions {
            batch_size: 32,
            output: None,
        }
    }
}

impl ClassifierOptions {
    /// Parses and checks the plugin's `options` (unknown keys and a zero batch are errors).
    pub fn parse(options: family::Options) -> Result<ClassifierOptions, Error> {
        let options: ClassifierOptions = family::parse_options(options)?;
        if options.batch_size == 0 {
            return Err(Error::Option {
                name: "batch_size",
                message: "must be at least 1".into(),
            });
        }
        Ok(options)
    }
}
