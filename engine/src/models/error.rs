//! What can go wrong finding, fetching or verifying a model: one line, naming the model and file.

use std::path::PathBuf;

use super::SourceKind;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "model store: no cache folder (neither XDG_CACHE_HOME nor HOME is set); pass a store folder or set EMBEDLAB_MODEL_STORE"
    )]
    NoStoreDir,
    #[error("model {id}: invalid id: {reason}")]
    InvalidId { id: String, reason: String },
    #[error(
        "model {id}: not a known model, a local folder or a store entry{hint} (known: {known})"
    )]
    Unknown {
        id: String,
        /// Why the hub was not asked, when it was not.
        hint: String,
        known: String,
    },
    #[error("model {id}: not installed in {} (`embedlab models fetch {id}`)", store.display())]
    NotInstalled { id: String, store: PathBuf },
    /// A hub-only model that is neither in the store nor fetchable now.
    #[error(
        "model {id}: weights not available here: not in the model store, and fetching from the hub failed ({cause}); fetch them with `embedlab models fetch {id}` where the hub is reachable and copy the folder to {}, or set the encoder's `model` to a local folder holding the checkpoint",
        entry.display()
    )]
    NotAvailable {
        id: String,
        entry: PathBuf,
        cause: String,
    },
    #[error("model {id}: {file}: sha256 mismatch: expected {expected}, got {actual}")]
    Mismatch {
        id: String,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("model {id}: {file}: missing from {origin}")]
    MissingFile {
        id: String,
        file: String,
        origin: String,
    },
    #[error("model {id}: {}: {source}", path.display())]
    Io {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model {id}: {archive}: {message}")]
    Archive {
        id: String,
        archive: String,
        message: String,
    },
    #[error("model {id}: {file}: {message}")]
    Convert {
        id: String,
        file: String,
        message: String,
    },
    #[error("model {id}: hub: {message}")]
    Hub { id: String, message: String },
    #[error("model {id}: pip: {message}")]
    Pip { id: String, message: String },
    #[error("model {id}: no weights file (model.safetensors, pytorch_model.bin, ...) in {}", dir.display())]
    NoWeights { id: String, dir: PathBuf },
    #[error("model {id}: store entry {} is damaged: {reason}", dir.display())]
    Damaged {
        id: String,
        dir: PathBuf,
        reason: String,
    },
    #[error("model {id}: {}: no pinned digests to verify against", dir.display())]
    Unpinned { id: String, dir: PathBuf },
    #[error("model {id}: cannot be fetched: {}", summary(id, failures))]
    AllSourcesFailed {
        id: String,
        failures: Vec<(SourceKind, ModelError)>,
    },
}

impl ModelError {
    pub(crate) fn io(id: &str, path: &std::path::Path, source: std::io::Error) -> ModelError {
        ModelError::Io {
            id: id.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `hub: <why>; pip: <why>`, each without the repeated `model <id>: ` prefix.
fn summary(id: &str, failures: &[(SourceKind, ModelError)]) -> String {
    let prefix = format!("model {id}: ");
    let parts: Vec<String> = failures
        .iter()
        .map(|(kind, error)| {
            let message = error.to_string();
            let message = message.strip_prefix(&prefix).unwrap_or(&message);
            let kind_prefix = format!("{kind}: ");
            let message = message.strip_prefix(&kind_prefix).unwrap_or(message);
            format!("{kind}: {message}")
        })
        .collect();
    parts.join("; ")
}

/// One line: newlines and runs of whitespace of a foreign message folded into single spaces.
pub(crate) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
