//! Errors of the `dataset` stage. Every message is one line that names where, ripgrep style:
//! `path:line:col: message` for syntax and type errors, `path:line: sample 139: message` or
//! `path: sample 139: message` for a bad sample, `path: annotation 37: message` for a bad COCO
//! annotation.

use std::fmt;
use std::path::PathBuf;

use super::SampleId;

/// What went wrong loading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// An annotation file could not be read (missing, unreadable).
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Malformed JSON, a wrong type, a missing or (JSONL) unknown key. `line` is the file's line;
    /// `id` is the sample's id where it could still be read.
    #[error("{path}:{line}:{column}: {}{message}", SamplePrefix(.id.as_ref()))]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        id: Option<SampleId>,
        message: String,
    },

    /// A sample that parsed but breaks a rule (duplicate id, conflicting entries, bad UTF-8).
    #[error("{path}{}: {}{message}", LinePart(*.line), SamplePrefix(.id.as_ref()))]
    Sample {
        path: PathBuf,
        line: Option<usize>,
        id: Option<SampleId>,
        message: String,
    },

    /// A COCO annotation that refers to something absent. `index` is its position in
    /// `annotations[]`; `id` its `id` field where present.
    #[error("{path}: {}: {message}", AnnotationName(*.index, *.id))]
    Annotation {
        path: PathBuf,
        index: usize,
        id: Option<u64>,
        message: String,
    },

    /// An Open Images V7 CSV that breaks its format; the message names the file and line.
    #[cfg(feature = "oiv7")]
    #[error(transparent)]
    Oiv7(#[from] embedlab_oiv7::Error),

    /// Load options or a source that cannot work (`limit` below `min_label_set_count`, ...).
    #[error("dataset: {0}")]
    Options(String),
}

impl DatasetError {
    /// A serde_json error located in `path`; `line_offset` is added to serde_json's line (JSONL
    /// parses one line at a time and passes the line number minus one).
    pub(crate) fn json(
        path: &std::path::Path,
        err: &serde_json::Error,
        line_offset: usize,
        id: Option<SampleId>,
    ) -> DatasetError {
        DatasetError::Json {
            path: path.to_path_buf(),
            line: err.line() + line_offset,
            column: err.column(),
            id,
            message: json_message(err),
        }
    }
}

/// serde_json's message without its trailing " at line L column C" (we print the location first).
fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}

struct SamplePrefix<'a>(Option<&'a SampleId>);

impl fmt::Display for SamplePrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "sample {id}: "),
            None => Ok(()),
        }
    }
}

struct LinePart(Option<usize>);

impl fmt::Display for LinePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

struct AnnotationName(usize, Option<u64>);

impl fmt::Display for AnnotationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(id) => write!(f, "annotation {id} (annotations[{}])", self.0),
            None => write!(f, "annotations[{}]", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<SampleId> {
        Some(SampleId(s.to_string()))
    }

    #[test]
    fn messages_are_one_line_and_name_where() {
        let not_found = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let cases = [
            (
                DatasetError::Io {
                    path: "a/captions.json".into(),
                    source: not_found,
                },
                "a/captions.json: cannot read: No such file",
            ),
            (
                DatasetError::Json {
                    path: "d.jsonl".into(),
                    line: 7,
                    column: 12,
                    id: id("139"),
                    message: "unknown field `lables`".into(),
                },
                "d.jsonl:7:12: sample 139: unknown field `lables`",
            ),
            (
                DatasetError::Json {
                    path: "i.json".into(),
                    line: 1,
                    column: 5,
                    id: None,
                    message: "expected value".into(),
                },
                "i.json:1:5: expected value",
            ),
            (
                DatasetError::Sample {
                    path: "d.jsonl".into(),
                    line: Some(9),
                    id: id("139"),
                    message: "duplicate id (first on line 2)".into(),
                },
                "d.jsonl:9: sample 139: duplicate id (first on line 2)",
            ),
            (
                DatasetError::Sample {
                    path: "c.json".into(),
                    line: None,
                    id: id("139"),
                    message: "listed twice in images[]".into(),
                },
                "c.json: sample 139: listed twice in images[]",
            ),
            (
                DatasetError::Annotation {
                    path: "i.json".into(),
                    index: 4,
                    id: Some(37),
                    message: "image 9 has no entry in images[]".into(),
                },
                "i.json: annotation 37 (annotations[4]): image 9 has no entry in images[]",
            ),
            (
                DatasetError::Annotation {
                    path: "i.json".into(),
                    index: 4,
                    id: None,
                    message: "x".into(),
                },
                "i.json: annotations[4]: x",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn json_errors_put_the_location_first() {
        let err = serde_json::from_str::<serde_json::Value>("{\n  \"a\": tru }").unwrap_err();
        let e = DatasetError::json(std::path::Path::new("x.json"), &err, 0, None);
        let text = e.to_string();
        assert!(text.starts_with("x.json:2:"), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }
}
