//! JSONL: one sample per line, the format for datasets that are neither COCO nor Open Images.
//!
//! Input: lines like `{"id": "139", "image": "val/139.jpg", "captions": ["..."], "labels": ["cat"]}`;
//! `image` and `captions` are optional, `id` is a string or an integer. Blank lines are skipped; a
//! UTF-8 byte order mark at the start is ignored.
//!
//! Output: samples in line order. Image paths resolve against the `images` folder if given, else
//! against the JSONL file's folder. Invariants checked, each error naming `file:line` and the id
//! where known: every line is UTF-8 JSON of that shape, with no unknown keys (typo protection);
//! ids are non-empty and unique; label names are non-empty.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::{DatasetError, LabelSet, Loaded, Sample, SampleId};
use crate::digest::Digest;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: RawId,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    captions: Vec<String>,
    labels: Vec<String>,
}

/// Just the id of a line that failed to parse, to name the sample in the error.
#[derive(Deserialize)]
struct IdOnly {
    id: RawId,
}

/// A JSON string or integer id, as a string.
struct RawId(String);

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawId, E> {
                Ok(RawId(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawId, E> {
                Ok(RawId(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawId, E> {
                Ok(RawId(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Reads `path`; `images` is the folder image paths are relative to (default: the file's folder).
pub(super) fn read(path: &Path, images: Option<&Path>) -> Result<Loaded, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Loaded {
        samples: parse_jsonl(&bytes, path, images)?,
        digests: vec![Digest::of_bytes(&bytes)],
    })
}

/// The raw samples of a JSONL file's `bytes`, in line order, before the shared rules: `path`
/// names the file in errors and image paths resolve against `images`, else its folder.
pub fn parse_jsonl(
    bytes: &[u8],
    path: &Path,
    images: Option<&Path>,
) -> Result<Vec<Sample>, DatasetError> {
    let base = match images {
        Some(folder) => folder.to_path_buf(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);

    let mut samples = Vec::new();
    let mut first_line: HashMap<SampleId, usize> = HashMap::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let sample = parse_line(path, number, raw, &base)?;
        match first_line.entry(sample.id.clone()) {
            Entry::Occupied(first) => {
                let message = format!("duplicate id (first on line {})", first.get());
                return Err(line_error(path, number, Some(sample.id), message));
            }
            Entry::Vacant(slot) => {
                slot.insert(number);
            }
        }
        samples.push(sample);
    }
    Ok(samples)
}

fn parse_line(path: &Path, number: usize, raw: &[u8], base: &Path) -> Result<Sample, DatasetError> {
    if let Err(err) = std::str::from_utf8(raw) {
        let message = format!("not valid UTF-8 (column {})", err.valid_up_to() + 1);
        return Err(line_error(path, number, None, message));
    }
    let line: Line = serde_json::from_slice(raw).map_err(|err| {
        let id = serde_json::from_slice::<IdOnly>(raw)
            .ok()
            .map(|l| SampleId(l.id.0));
        DatasetError::json(path, &err, number - 1, id)
    })?;
    let id = SampleId(line.id.0);
    if id.0.is_empty() {
        return Err(line_error(path, number, None, "empty id".to_string()));
    }
    if line.labels.iter().any(String::is_empty) {
        return Err(line_error(
            path,
            number,
            Some(id),
            "empty label name".to_string(),
        ));
    }
    let image = match line.image {
        Some(image) if image.is_empty() => {
            return Err(line_error(
                path,
                number,
                Some(id),
                "empty image path".to_string(),
            ));
        }
        Some(image) => Some(base.join(image)),
        None => None,
    };
    Ok(Sample {
        id,
        labels: LabelSet::new(line.labels),
        captions: line.captions,
        image,
    })
}

fn line_error(path: &Path, line: usize, id: Option<SampleId>, message: String) -> DatasetError {
    DatasetError::Sample {
        path: path.to_path_buf(),
        line: Some(line),
        id,
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::dataset::{Dataset, LoadOptions, Source, load};

    fn write(dir: &Path, text: &[u8]) -> PathBuf {
        let path = dir.join("d.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn opts(min: usize) -> LoadOptions {
        LoadOptions {
            name: "t".into(),
            min_label_set_count: min,
            limit: None,
            seed: 0,
            ..LoadOptions::default()
        }
    }

    fn load_text(text: &str, min: usize) -> (tempfile::TempDir, Result<Dataset, String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), text.as_bytes());
        let result = load(&Source::Jsonl { path, images: None }, &opts(min));
        (dir, result.map_err(|e| e.to_string()))
    }

    fn error_of(text: &str) -> String {
        load_text(text, 1).1.unwrap_err()
    }

    const GOOD: &str = r#"{"id": "a", "image": "img/a.jpg", "captions": ["a one", "a two"], "labels": ["dog", "cat", "dog"]}

{"id": 7, "labels": ["cat", "dog"]}
{"id": "c", "labels": []}
{"id": "d", "captions": ["d"], "labels": ["bird"]}
"#;

    #[test]
    fn reads_samples_in_line_order() {
        let (dir, d) = load_text(GOOD, 1);
        let d = d.unwrap();
        let ids: Vec<&str> = d.samples.iter().map(|s| s.id.0.as_str()).collect();
        assert_eq!(ids, ["a", "7", "d"]);
        assert_eq!(d.stats.loaded, 4);
        assert_eq!(d.stats.dropped_unlabelled, 1);
        assert_eq!(d.stats.label_sets, 2);
        let a = &d.samples[0];
        assert_eq!(a.labels.labels(), ["cat", "dog"]);
        assert_eq!(a.captions, ["a one", "a two"]);
        assert_eq!(
            a.image.as_deref(),
            Some(dir.path().join("img/a.jpg").as_path())
        );
        assert_eq!(d.samples[0].labels, d.samples[1].labels);
        assert!(d.samples[1].image.is_none() && d.samples[1].captions.is_empty());
    }

    #[test]
    fn singleton_label_sets_are_dropped() {
        let (_dir, d) = load_text(GOOD, 2);
        let d = d.unwrap();
        let ids: Vec<&str> = d.samples.iter().map(|s| s.id.0.as_str()).collect();
        assert_eq!(ids, ["a", "7"]);
        assert_eq!((d.stats.dropped_unlabelled, d.stats.dropped_rare), (1, 1));
    }

    #[test]
    fn images_folder_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let text = "\u{feff}{\"id\": \"a\", \"image\": \"x.jpg\", \"labels\": [\"l\"]}\r\n\r\n";
        let path = write(dir.path(), text.as_bytes());
        let images = dir.path().join("pictures");
        let source = Source::Jsonl {
            path,
            images: Some(images.clone()),
        };
        let d = load(&source, &opts(1)).unwrap();
        assert_eq!(d.samples.len(), 1);
        assert_eq!(
            d.samples[0].image.as_deref(),
            Some(images.join("x.jpg").as_path())
        );
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::Jsonl {
            path: dir.path().join("nope.jsonl"),
            images: None,
        };
        let err = load(&source, &opts(1)).unwrap_err().to_string();
        assert!(err.contains("nope.jsonl: cannot read: "), "{err}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = error_of(
            "{\"id\": \"a\", \"labels\": [\"x\"]}\n\n{\"id\": \"b\", \"labels\": [\"x\"]\n",
        );
        assert!(
            err.ends_with("d.jsonl:3:27: EOF while parsing an object"),
            "{err}"
        );
        let err = error_of("{\"id\": \"a\", \"labels\": [\"x\"]}\nnot json\n");
        assert!(err.contains("d.jsonl:2:2: expected "), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err =
            error_of("{\"id\": \"a\", \"labels\": [\"x\"]}\n{\"id\": 12, \"lables\": [\"x\"]}\n");
        assert!(err.contains("d.jsonl:2:"), "{err}");
        assert!(err.contains("sample 12: unknown field `lables`"), "{err}");
    }

    #[test]
    fn wrong_types_are_errors() {
        let err = error_of("{\"id\": \"a\", \"labels\": \"cat\"}\n");
        assert!(
            err.contains("d.jsonl:1:") && err.contains("sample a: invalid type: string"),
            "{err}"
        );
        let err = error_of("{\"id\": 1.5, \"labels\": [\"cat\"]}\n");
        assert!(
            err.contains("d.jsonl:1:") && err.contains("expected a string or integer id"),
            "{err}"
        );
        let err = error_of("{\"id\": \"q\", \"captions\": [1], \"labels\": [\"cat\"]}\n");
        assert!(
            err.contains("d.jsonl:1:") && err.contains("sample q: invalid type: integer"),
            "{err}"
        );
        let err = error_of("{\"id\": \"q\"}\n");
        assert!(
            err.contains("d.jsonl:1:") && err.contains("missing field `labels`"),
            "{err}"
        );
        let err = error_of("[1, 2]\n");
        assert!(err.contains("d.jsonl:1:"), "{err}");
    }

    #[test]
    fn duplicate_id_names_both_lines() {
        let err = error_of(
            "{\"id\": \"139\", \"labels\": [\"x\"]}\n{\"id\": \"2\", \"labels\": [\"x\"]}\n{\"id\": 139, \"labels\": [\"y\"]}\n",
        );
        assert!(
            err.ends_with("d.jsonl:3: sample 139: duplicate id (first on line 1)"),
            "{err}"
        );
    }

    #[test]
    fn empty_values_are_errors() {
        let err = error_of("{\"id\": \"\", \"labels\": [\"x\"]}\n");
        assert!(err.ends_with("d.jsonl:1: empty id"), "{err}");
        let err = error_of("{\"id\": \"a\", \"labels\": [\"x\", \"\"]}\n");
        assert!(
            err.ends_with("d.jsonl:1: sample a: empty label name"),
            "{err}"
        );
        let err = error_of("{\"id\": \"a\", \"image\": \"\", \"labels\": [\"x\"]}\n");
        assert!(
            err.ends_with("d.jsonl:1: sample a: empty image path"),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            b"{\"id\": \"a\", \"labels\": [\"x\"]}\n{\"id\": \"b\", \"labels\": [\"\xff\"]}\n";
        let path = write(dir.path(), text);
        let err = load(&Source::Jsonl { path, images: None }, &opts(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("d.jsonl:2: not valid UTF-8 (column 25)"),
            "{err}"
        );
    }

    const TEXT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/coco-val2017-text/coco_val2017_text.jsonl"
    );

    #[test]
    fn real_coco_val2017_text() {
        let path = PathBuf::from(TEXT);
        if !path.exists() {
            eprintln!("skipped: {} is absent", path.display());
            return;
        }
        let source = Source::Jsonl { path, images: None };
        let all = load(&source, &opts(1)).unwrap();
        assert_eq!(all.stats.loaded, 4952);
        assert_eq!(all.samples.len(), 4952);
        assert_eq!(all.samples[0].id.0, "139");
        assert_eq!(
            all.samples[0].captions[0],
            "A woman stands in the dining area at the table."
        );
        let common = load(&source, &opts(2)).unwrap();
        assert_eq!(common.samples.len(), 3170);
        assert_eq!(common.stats.label_sets, 440);
        assert_eq!(common.stats.dropped_rare, 4952 - 3170);
    }
}
