//! The crate's errors: one line each, naming the file and, where a row is at fault, its line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A row that breaks the format (wrong field count, empty id, non-numeric confidence, ...).
    #[error("{path}:{line}: {message}")]
    Row {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A labels row whose `LabelName` the class descriptions do not list.
    #[error("{path}:{line}: unknown label id {id} (not in {classes})")]
    UnknownLabel {
        path: PathBuf,
        line: u64,
        id: String,
        classes: PathBuf,
    },
    /// Polars failed in a way no single line explains.
    #[error("{path}: {message}")]
    Scan { path: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn row(path: &std::path::Path, line: u64, message: impl Into<String>) -> Error {
        Error::Row {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// A polars error, on one line.
    pub(crate) fn scan(path: &std::path::Path, err: &polars::error::PolarsError) -> Error {
        let message = err
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Error::Scan {
            path: path.to_path_buf(),
            message,
        }
    }
}
