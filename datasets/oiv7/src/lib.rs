//! Readers of the Open Images V7 label files, built on polars lazy CSV scans.
//!
//! The official files are large (the train image-level labels CSV holds tens of millions of
//! rows), so they are never read whole: polars scans them in streaming batches, only the columns
//! used are parsed, and each batch is folded at once into compact plain-Rust structures. Polars
//! stays inside this crate — its API speaks only `String`s, indices and [`Error`]s — so the engine
//! builds without it when its `oiv7` feature is off.
//!
//! - [`read_classes`]: `oidv7-class-descriptions.csv` (`LabelName,DisplayName`, with or without
//!   that header) into [`Classes`].
//! - [`read_labels`]: image-level labels CSVs (`ImageID,Source,LabelName,Confidence`) into
//!   [`ImageLabels`]: every image in first-seen order with its positive (`Confidence` = 1)
//!   classes; images with only negative rows are kept with no classes, so callers can count them.
//!
//! Errors name `file:line`. Polars reports neither lines nor which row broke a rule, so when a
//! scan meets a bad row it stops, and a plain line-by-line pass over the file finds the first
//! offending line and says what is wrong with it (that pass runs only on the error path).
//!
//! ```no_run
//! let classes = embedlab_oiv7::read_classes("oidv7-class-descriptions.csv".as_ref())?;
//! let files = ["oidv7-val-annotations-human-imagelabels.csv".into()];
//! let labels = embedlab_oiv7::read_labels(&files, &classes, |_rows| {})?;
//! for (image, of_image) in labels.images.iter().zip(&labels.classes) {
//!     let names: Vec<&str> = of_image.iter().map(|&c| classes.display_name(c)).collect();
//!     println!("{image}: {names:?}");
//! }
//! # Ok::<(), embedlab_oiv7::Error>(())
//! ```

mod classes;
mod error;
mod labels;
mod lines;
mod scan;

pub use classes::{CLASSES_HEADER, Classes, read_classes};
pub use error::Error;
pub use labels::{ImageLabels, LABELS_HEADER, read_labels};
