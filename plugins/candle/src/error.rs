//! The crate's error type: every variant that comes from a file names it.

use std::path::PathBuf;

/// What went wrong loading a model folder or encoding texts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file did not parse or did not have the expected shape.
    #[error("{path}: {source}", path = path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// `tokenizer.json` could not be loaded or configured.
    #[error("{path}: {source}", path = path.display())]
    Tokenizer {
        path: PathBuf,
        source: tokenizers::Error,
    },
    /// `model.safetensors` could not be read, or lacked a tensor the model needs.
    #[error("{path}: {source}", path = path.display())]
    Weights {
        path: PathBuf,
        source: candle_core::Error,
    },
    /// The folder declares something this crate does not implement (a model type, a module, a
    /// pooling mode).
    #[error("{path}: {message}", path = path.display())]
    Unsupported { path: PathBuf, message: String },
    /// The `options` object did not parse (an unknown key, a wrong type).
    #[error("options: {0}")]
    Options(String),
    /// The model does not take this kind of input.
    #[error("this model does not encode {0}")]
    Modality(&'static str),
    /// The model does not write captions.
    #[error("this model does not generate captions")]
    NoCaptions,
    /// An option had an invalid value.
    #[error("option {name}: {message}")]
    Option { name: &'static str, message: String },
    /// The output buffer does not hold exactly `texts × dim` values.
    #[error("output buffer holds {actual} values, expected {expected}")]
    OutputSize { expected: usize, actual: usize },
    /// An input image was rejected (inconsistent or empty) or could not be preprocessed.
    #[error("image {index}: {message}")]
    BadImage { index: usize, message: String },
    /// Tokenizing an input text failed.
    #[error("tokenizing input: {0}")]
    Tokenize(#[source] tokenizers::Error),
    /// The forward pass failed.
    #[error("inference: {0}")]
    Inference(#[from] candle_core::Error),
}
