//! Errors of the `embed` stage: reading `.npy` matrices and their id lists, matching rows to
//! samples, and fusing parts. Every message is one line that names where (file, line, sample id,
//! row or part).

use std::path::PathBuf;

use crate::dataset::SampleId;

/// What went wrong producing a run's vectors.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file does not start with `\x93NUMPY`.
    #[error("{path}: not a .npy file (missing the \\x93NUMPY magic bytes)")]
    NotNpy { path: PathBuf },

    #[error("{path}: unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")]
    UnsupportedVersion { path: PathBuf, major: u8, minor: u8 },

    #[error("{path}: malformed .npy header: {reason}")]
    MalformedHeader { path: PathBuf, reason: String },

    /// `descr` is the dtype as the header spells it (`<f8`, `>f4`, `|u1`, a structured list, ...).
    #[error("{path}: dtype '{descr}' {}", dtype_advice(.descr))]
    WrongDtype { path: PathBuf, descr: String },

    #[error("{path}: expected a 2-D array of shape (N, D), found shape {}", python_shape(.shape))]
    WrongDimensions { path: PathBuf, shape: Vec<usize> },

    /// Fewer data bytes after the header than the shape needs.
    #[error("{path}: truncated data: shape {} needs {expected} bytes of float32, found {actual}", python_shape(.shape))]
    Truncated {
        path: PathBuf,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },

    /// More data bytes after the header than the shape needs: the header and data disagree.
    #[error("{path}: {} unexpected bytes after the data of shape {}", .actual - .expected, python_shape(.shape))]
    TrailingBytes {
        path: PathBuf,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },

    #[error("{ids}: {n_ids} ids but {npy} has {n_rows} rows")]
    IdCount {
        npy: PathBuf,
        ids: PathBuf,
        n_ids: usize,
        n_rows: usize,
    },

    #[error("{path}:{line}: empty line (each line must be one sample id)")]
    EmptyId { path: PathBuf, line: usize },

    #[error("{path}:{line}: duplicate id \"{id}\" (first on line {first_line})")]
    DuplicateId {
        path: PathBuf,
        line: usize,
        first_line: usize,
        id: SampleId,
    },

    /// Dataset samples absent from the ids file; `first` is the first in dataset order.
    #[error(
        "{npy}: no row for dataset sample \"{first}\" ({missing} of {n_samples} samples missing from {ids})"
    )]
    MissingRows {
        npy: PathBuf,
        ids: PathBuf,
        first: SampleId,
        missing: usize,
        n_samples: usize,
    },

    /// `row` is the file's row, from 0 as numpy counts (`arr[row]`).
    #[error("{path}: row {row} (sample \"{id}\") contains NaN or infinity")]
    NonFiniteRow {
        path: PathBuf,
        row: usize,
        id: SampleId,
    },

    #[error("{path}: row {row} (sample \"{id}\") is all zeros (cosine similarity is undefined)")]
    ZeroRow {
        path: PathBuf,
        row: usize,
        id: SampleId,
    },

    #[error("fusion needs at least one part")]
    NoParts,

    #[error("fusion part {part} has {n} rows but part 0 has {expected}")]
    PartRowCount {
        part: usize,
        n: usize,
        expected: usize,
    },

    #[error("fusion part {part}: weight {weight} must be finite and not negative")]
    InvalidWeight { part: usize, weight: f32 },

    #[error("fusion weights are all zero")]
    AllWeightsZero,

    /// A part's row cannot be L2-normalised before fusion.
    #[error("fusion part {part}: row {row} is all zeros (cannot L2-normalise it)")]
    ZeroPartVector { part: usize, row: usize },

    #[error("fusion part {part}: row {row} contains NaN or infinity")]
    NonFinitePartVector { part: usize, row: usize },

    /// A row (after fusion, or given to `normalize_rows`) whose norm is zero.
    #[error("row {row} is all zeros (cosine similarity is undefined)")]
    ZeroVector { row: usize },

    /// A row (after fusion, or given to `normalize_rows`) containing NaN or infinity.
    #[error("row {row} contains NaN or infinity")]
    NonFiniteVector { row: usize },
}

/// The rest of a wrong-dtype message: what is wrong and the numpy line that fixes it.
fn dtype_advice(descr: &str) -> &'static str {
    match descr {
        ">f4" => "is big-endian float32; convert with arr.astype('<f4')",
        "=f4" => "is native-endian float32 on a big-endian machine; convert with arr.astype('<f4')",
        _ => "is not float32; convert with arr.astype(np.float32)",
    }
}

/// A shape as Python prints a tuple: `(5,)`, `(2, 3)`, `()`.
fn python_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_name_where() {
        let cases = [
            (
                EmbedError::WrongDtype {
                    path: "vectors/text.npy".into(),
                    descr: "<f8".into(),
                },
                "vectors/text.npy: dtype '<f8' is not float32; convert with arr.astype(np.float32)",
            ),
            (
                EmbedError::WrongDtype {
                    path: "v.npy".into(),
                    descr: ">f4".into(),
                },
                "v.npy: dtype '>f4' is big-endian float32; convert with arr.astype('<f4')",
            ),
            (
                EmbedError::DuplicateId {
                    path: "vectors/text.ids.txt".into(),
                    line: 17,
                    first_line: 3,
                    id: SampleId("139".into()),
                },
                "vectors/text.ids.txt:17: duplicate id \"139\" (first on line 3)",
            ),
            (
                EmbedError::WrongDimensions {
                    path: "v.npy".into(),
                    shape: vec![5],
                },
                "v.npy: expected a 2-D array of shape (N, D), found shape (5,)",
            ),
            (
                EmbedError::WrongDimensions {
                    path: "v.npy".into(),
                    shape: vec![2, 3, 4],
                },
                "v.npy: expected a 2-D array of shape (N, D), found shape (2, 3, 4)",
            ),
            (
                EmbedError::TrailingBytes {
                    path: "v.npy".into(),
                    shape: vec![2, 3],
                    expected: 24,
                    actual: 28,
                },
                "v.npy: 4 unexpected bytes after the data of shape (2, 3)",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }
}
