//! Image-level labels: `ImageID,Source,LabelName,Confidence` rows into each image's classes.
//!
//! A row with `Confidence` 1 (written `1` or `1.0`) says the image shows the class; 0 says it was
//! verified absent. Several files (splits) are merged: an image's classes are the union of its
//! positive rows over all files. Each batch holds only the row's fields as text and the confidence
//! as a number (no row index, no per-row objects); batches stream through [`Fold`], and memory holds
//! one entry per distinct image, not one per row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use polars::prelude::*;

use crate::{Classes, Error, lines, scan};

/// The header line of an image-level labels file.
pub const LABELS_HEADER: &str = "ImageID,Source,LabelName,Confidence";

const COLUMNS: [&str; 4] = ["ImageID", "Source", "LabelName", "Confidence"];

/// Every image of the labels files with its positive classes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageLabels {
    /// Image ids, in first-seen order across the files in the order given.
    pub images: Vec<String>,
    /// For each image, its positive classes (indices into [`Classes`]) in first-seen order, each
    /// once; empty for an image with only negative rows.
    pub classes: Vec<Vec<u32>>,
    /// Rows read, of any confidence.
    pub rows: u64,
}

/// Reads and merges image-level labels files; `on_rows` hears how many rows each batch held (for
/// progress). Every `LabelName` must be listed in `classes`.
pub fn read_labels(
    paths: &[PathBuf],
    classes: &Classes,
    on_rows: impl Fn(u64) + Send + Sync + 'static,
) -> Result<ImageLabels, Error> {
    let on_rows = Arc::new(on_rows);
    let fold = Arc::new(Mutex::new(Fold {
        classes: classes.clone(),
        index: HashMap::new(),
        labels: ImageLabels::default(),
        problem: None,
    }));
    for path in paths {
        read_file(path, &fold, on_rows.clone())?;
    }
    let fold = Arc::try_unwrap(fold)
        .ok()
        .expect("the scans have finished")
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(fold.labels)
}

/// What the batches of all files fold into.
struct Fold {
    classes: Classes,
    /// Image id → index into `labels.images`.
    index: HashMap<Box<str>, u32>,
    labels: ImageLabels,
    /// The first bad row met; the scan stops there.
    problem: Option<Problem>,
}

enum Problem {
    /// A row with a missing field or a non-numeric confidence.
    Malformed,
    UnknownLabel(String),
}

impl Fold {
    /// Folds one batch in; returns whether to stop (a bad row).
    fn batch(&mut self, frame: &DataFrame) -> PolarsResult<bool> {
        let ids = frame.column("ImageID")?.str()?;
        let labels = frame.column("LabelName")?.str()?;
        let confidences = frame.column("Confidence")?.f64()?;
        self.labels.rows += frame.height() as u64;
        let rows = ids.iter().zip(labels.iter()).zip(confidences.iter());
        for ((id, label), confidence) in rows {
            let (Some(id), Some(label), Some(confidence)) =
                (scan::present(id), scan::present(label), confidence)
            else {
                self.problem = Some(Problem::Malformed);
                return Ok(true);
            };
            let Some(class) = self.classes.index_of(label) else {
                self.problem = Some(Problem::UnknownLabel(label.to_string()));
                return Ok(true);
            };
            let image = self.image(id);
            let of_image = &mut self.labels.classes[image];
            if confidence == 1.0 && !of_image.contains(&class) {
                of_image.push(class);
            }
        }
        Ok(false)
    }

    fn image(&mut self, id: &str) -> usize {
        if let Some(&image) = self.index.get(id) {
            return image as usize;
        }
        let image = self.labels.images.len();
        self.index.insert(id.into(), image as u32);
        self.labels.images.push(id.to_string());
        self.labels.classes.push(Vec::new());
        image
    }
}

fn read_file(
    path: &Path,
    fold: &Arc<Mutex<Fold>>,
    on_rows: Arc<impl Fn(u64) + Send + Sync + 'static>,
) -> Result<(), Error> {
    match lines::first_line(path)? {
        Some(header) if header == LABELS_HEADER => {}
        found => {
            let found = found.map_or("an empty file".to_string(), |h| format!("`{h}`"));
            let message = format!("expected the header `{LABELS_HEADER}`, found {found}");
            return Err(Error::row(path, 1, message));
        }
    }
    let sink = {
        let fold = fold.clone();
        move |frame: DataFrame| {
            on_rows(frame.height() as u64);
            fold.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .batch(&frame)
        }
    };
    let scanned = scan::strings(path, true, &COLUMNS)?
        .select([
            col("ImageID"),
            col("LabelName"),
            // Non-strict: a non-numeric confidence becomes null, a row we then blame by line.
            col("Confidence").cast(DataType::Float64),
            // Unused, but read: without it polars would not check rows for extra fields.
            col("Source"),
        ])
        .sink_batches(PlanCallback::new(sink), true, None)
        .and_then(|frame| frame.collect_with_engine(Engine::Streaming));
    let problem = fold
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .problem
        .take();
    match (problem, scanned) {
        (Some(Problem::UnknownLabel(id)), _) => Err(unknown_label(path, fold, id)?),
        (Some(Problem::Malformed), _) => Err(blame_row(path)?.unwrap_or_else(|| Error::Scan {
            path: path.to_path_buf(),
            message: "a row lacks its ImageID, LabelName or a numeric Confidence".to_string(),
        })),
        (None, Err(err)) => Err(blame_row(path)?.unwrap_or_else(|| Error::scan(path, &err))),
        (None, Ok(_)) => Ok(()),
    }
}

/// What is wrong with a row, if anything.
fn check_row(fields: &[String]) -> Option<String> {
    let [id, _, label, confidence] = fields else {
        return Some(format!(
            "expected 4 fields ({LABELS_HEADER}), found {}",
            fields.len()
        ));
    };
    if id.is_empty() {
        return Some("empty ImageID".to_string());
    }
    if label.is_empty() {
        return Some("empty LabelName".to_string());
    }
    if confidence.trim().parse::<f64>().is_err() {
        return Some(format!("Confidence `{confidence}` is not a number"));
    }
    None
}

fn blame_row(path: &Path) -> Result<Option<Error>, Error> {
    let found = lines::find_line(path, 1, |_, fields| check_row(fields))?;
    Ok(found.map(|(line, message)| Error::row(path, line, message)))
}

fn unknown_label(path: &Path, fold: &Arc<Mutex<Fold>>, id: String) -> Result<Error, Error> {
    let classes = fold
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .classes
        .path()
        .to_path_buf();
    let found = lines::find_line(path, 1, |_, fields| {
        (fields.get(2) == Some(&id)).then(String::new)
    })?;
    Ok(Error::UnknownLabel {
        path: path.to_path_buf(),
        line: found.map_or(0, |(line, _)| line),
        id,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_classes;

    const CLASSES: &str = "LabelName,DisplayName\n/m/01,Cat\n/m/02,Dog\n/m/03,\"Car, toy\"\n";

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let files = Files {
                dir: tempfile::tempdir().unwrap(),
            };
            files.write("classes.csv", CLASSES);
            files
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        fn read(&self, labels: &[PathBuf]) -> Result<ImageLabels, Error> {
            let classes = read_classes(&self.dir.path().join("classes.csv")).unwrap();
            read_labels(labels, &classes, |_| {})
        }
    }

    fn header(rows: &str) -> String {
        format!("{LABELS_HEADER}\n{rows}")
    }

    #[test]
    fn keeps_positive_rows_and_images_with_only_negatives() {
        let files = Files::new();
        let path = files.write(
            "labels.csv",
            &header(
                "b1,verification,/m/02,1\nb1,crowdsource-verified,/m/01,0\na2,verification,/m/01,0\n\
                 b1,verification,/m/03,1.0\nc3,verification,/m/01,1\nb1,verification,/m/02,1\n",
            ),
        );
        let labels = files.read(&[path]).unwrap();
        assert_eq!(labels.images, ["b1", "a2", "c3"]);
        assert_eq!(labels.classes, [vec![1, 2], vec![], vec![0]]);
        assert_eq!(labels.rows, 6);
    }

    #[test]
    fn several_files_merge_in_order() {
        let files = Files::new();
        let a = files.write("a.csv", &header("x,verification,/m/01,1\n"));
        let b = files.write(
            "b.csv",
            &header("y,verification,/m/02,1\nx,verification,/m/03,1\n"),
        );
        let labels = files.read(&[a, b]).unwrap();
        assert_eq!(labels.images, ["x", "y"]);
        assert_eq!(labels.classes, [vec![0, 2], vec![1]]);
    }

    #[test]
    fn malformed_rows_name_the_file_and_line() {
        let cases = [
            (
                header("a,v,/m/01,1\na,v,/m/02\n"),
                "labels.csv:3: expected 4 fields",
            ),
            (
                header("a,v,/m/01,1\na,v,/m/02,1,9\n"),
                "labels.csv:3: expected 4 fields",
            ),
            (
                header("a,v,/m/01,yes\n"),
                "labels.csv:2: Confidence `yes` is not a number",
            ),
            (
                header("a,v,/m/01,1\n,v,/m/02,1\n"),
                "labels.csv:3: empty ImageID",
            ),
            (
                "ImageID,LabelName,Confidence\na,/m/01,1\n".to_string(),
                "labels.csv:1: expected the header `ImageID,Source,LabelName,Confidence`, found `ImageID,LabelName,Confidence`",
            ),
            (String::new(), "labels.csv:1: expected the header"),
        ];
        for (text, want) in cases {
            let files = Files::new();
            let path = files.write("labels.csv", &text);
            let err = files.read(&[path]).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn unknown_label_ids_are_named_with_their_line() {
        let files = Files::new();
        let path = files.write(
            "labels.csv",
            &header("a,v,/m/01,1\nb,v,/m/01,0\nb,v,/m/0zz,0\n"),
        );
        let err = files.read(&[path]).unwrap_err().to_string();
        assert!(
            err.contains("labels.csv:4: unknown label id /m/0zz (not in ")
                && err.ends_with("classes.csv)"),
            "{err}"
        );
    }

    #[test]
    fn progress_hears_every_row() {
        let files = Files::new();
        let rows: String = (0..1000)
            .map(|i| format!("i{i},v,/m/0{},1\n", i % 3 + 1))
            .collect();
        let path = files.write("labels.csv", &header(&rows));
        let classes = read_classes(&files.dir.path().join("classes.csv")).unwrap();
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = seen.clone();
        let labels = read_labels(&[path], &classes, move |n| {
            counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(labels.images.len(), 1000);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1000);
    }
}
