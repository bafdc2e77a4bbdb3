//! The library's error type: each stage's error, plus the run it happened in.

use std::path::PathBuf;

use crate::cache::CacheError;
use crate::captions::NoCaptions;
use crate::dataset::DatasetError;
use crate::embed::EmbedError;
use crate::manifest::ManifestError;
use crate::retrieval::RetrievalError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Captions(#[from] NoCaptions),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("sample {id}: {source}")]
    WithSample { id: String, source: EmbedError },
    #[error(transparent)]
    Retrieval(#[from] RetrievalError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An input file (dataset, vectors) that could not be read to key its stage.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Report { path: PathBuf, message: String },
    /// An `[encoders.NAME]` or `[captioners.NAME]` that could not be set up.
    #[error("{role} \"{name}\": {message}")]
    Encoder {
        role: &'static str,
        name: String,
        message: String,
    },
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    /// Something this build cannot do yet, said plainly.
    #[error("{0}")]
    Unsupported(String),
    /// Every query ranks k other samples, so the dataset must keep more than k.
    #[error(
        "{}: retrieval.k = {k} needs at least {} samples, but dataset \"{dataset}\" keeps {kept} of {loaded} after filtering{}",
        manifest.display(),
        k + 1,
        parenthesised(dropped)
    )]
    TooFewSamples {
        manifest: PathBuf,
        k: usize,
        dataset: String,
        kept: usize,
        loaded: usize,
        /// Why the others were dropped ([`crate::dataset::DatasetStats::dropped_summary`]).
        dropped: String,
    },
    #[error("run \"{run}\": {source}")]
    InRun { run: String, source: Box<Error> },
    /// Ctrl-C (or SIGTERM) stopped long work after it stored a chunk.
    #[error(
        "interrupted {at}; what was finished is cached, so the same command resumes from there"
    )]
    Interrupted {
        /// Where the work stopped, e.g. "after 3 of 12 chunks of encoding".
        at: String,
    },
}

impl Error {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this is (or wraps) an interruption, which stops the whole experiment.
    pub fn is_interrupted(&self) -> bool {
        match self {
            Error::Interrupted { .. } => true,
            Error::InRun { source, .. } => source.is_interrupted(),
            _ => false,
        }
    }

    pub fn in_run(self, run: &str) -> Error {
        Error::InRun {
            run: run.to_string(),
            source: Box::new(self),
        }
    }
}

/// ` (text)`, or nothing for empty text.
fn parenthesised(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}
