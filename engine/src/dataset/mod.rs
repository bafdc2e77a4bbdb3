//! Datasets: annotation files in, a list of labelled [`Sample`]s out.
//!
//! Loaders (`coco`, `jsonl`) read their format into raw samples; this module then applies the rules
//! every dataset shares (DESIGN.md, `filter.rs`): empty label sets are dropped, label sets rarer
//! than `min_label_set_count` are dropped, and an optional seeded, label-set-stratified subsample is
//! taken. `oiv7` (Open Images V7, behind the `oiv7` cargo feature) applies the same rules itself,
//! between reading labels and reading narrative texts, plus its caption and outlier rules. The
//! result carries a fingerprint (annotation file digests + rules + selected ids) that reports print
//! and cache keys build on.
//!
//! Entry point: [`load`] with a [`Source`] (which files, all paths absolute) and [`LoadOptions`].
//! Errors are [`DatasetError`]s whose one-line messages name the file, line and sample.
//! [`parse_coco`] and [`parse_jsonl`] are the loaders on bytes already in memory (the fuzz targets'
//! entry points).
//!
//! Invariant: sample order is deterministic (file order), and row `i` of every vector matrix
//! downstream is `samples[i]`.

mod coco;
mod error;
mod filter;
mod jsonl;
#[cfg(feature = "oiv7")]
mod oiv7;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::progress::{Progress, Verbosity};

pub use coco::parse_coco;
pub use error::DatasetError;
pub use jsonl::parse_jsonl;

/// Where a dataset's annotation files are. Paths are absolute (the manifest layer resolves them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// COCO captions and instances files, several splits merged in the order given (captions
    /// files first). `captions` may be empty (a label-only dataset); `images` is the folder the
    /// images' `file_name`s are relative to.
    Coco {
        captions: Vec<PathBuf>,
        instances: Vec<PathBuf>,
        images: Option<PathBuf>,
    },
    /// One JSONL file; image paths are relative to `images`, else to the file's folder.
    Jsonl {
        path: PathBuf,
        images: Option<PathBuf>,
    },
    /// Open Images V7: image-level labels CSVs (several splits merged, in the order given), the
    /// class descriptions CSV, Localized Narratives JSONL files (their captions, in file order;
    /// may be empty: a label-only dataset) and the folder of `<ImageID>.jpg` images.
    Oiv7 {
        labels: Vec<PathBuf>,
        classes: PathBuf,
        narratives: Vec<PathBuf>,
        images: Option<PathBuf>,
    },
}

impl Source {
    /// The format's name as manifests write it.
    pub fn format(&self) -> &'static str {
        match self {
            Source::Coco { .. } => "coco",
            Source::Jsonl { .. } => "jsonl",
            Source::Oiv7 { .. } => "oiv7",
        }
    }
}

/// Why an oiv7 dataset cannot load in a build without the `oiv7` feature (one line, with the fix).
pub const OIV7_MISSING: &str = "this embedlab was built without the `oiv7` feature (Open Images \
     V7 datasets); rebuild with default features, e.g. `cargo build --release -p embedlab`";

/// How to filter what a [`Source`] holds.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// The dataset's display name.
    pub name: String,
    /// Label sets with fewer samples are dropped (default 2: every query needs a relevant item).
    pub min_label_set_count: usize,
    /// Keep only label sets whose frequency is within mean ± this many standard deviations of the
    /// label-set frequencies (oiv7).
    pub outlier_std: Option<f64>,
    /// Keep a seeded, label-set-stratified subsample of this many samples.
    pub limit: Option<usize>,
    /// Seed of the subsample.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            name: String::new(),
            min_label_set_count: 2,
            outlier_std: None,
            limit: None,
            seed: 0,
        }
    }
}

/// What a loader hands to the shared rules: samples in file order and the digests of the files
/// read, in order.
struct Loaded {
    samples: Vec<Sample>,
    digests: Vec<Digest>,
}

/// Reads `source`, applies the shared rules (see the module doc) and fingerprints the result.
pub fn load(source: &Source, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    load_with_progress(source, opts, &Progress::new(Verbosity::Quiet))
}

/// [`load`], showing progress bars where reading takes long (oiv7's gigabyte files).
pub fn load_with_progress(
    source: &Source,
    opts: &LoadOptions,
    progress: &Progress,
) -> Result<Dataset, DatasetError> {
    let rules = filter::Rules {
        min_label_set_count: opts.min_label_set_count,
        outlier_std: opts.outlier_std,
        limit: opts.limit,
        seed: opts.seed,
    };
    rules.check()?;
    let loaded = match source {
        Source::Coco { instances, .. } if instances.is_empty() => {
            return Err(DatasetError::Options(
                "a coco dataset needs at least one instances file (labels come from it)".into(),
            ));
        }
        Source::Coco {
            captions,
            instances,
            images,
        } => coco::read(captions, instances, images.as_deref())?,
        Source::Jsonl { path, images } => jsonl::read(path, images.as_deref())?,
        // It applies the rules itself, between reading labels and reading narrative texts.
        Source::Oiv7 { .. } => return load_oiv7(source, opts, &rules, progress),
    };
    let (samples, stats) = filter::apply(loaded.samples, &rules);
    let fingerprint = fingerprint(source, &loaded.digests, opts, &samples);
    Ok(Dataset {
        name: opts.name.clone(),
        samples,
        fingerprint,
        stats,
    })
}

#[cfg(feature = "oiv7")]
fn load_oiv7(
    source: &Source,
    opts: &LoadOptions,
    rules: &filter::Rules,
    progress: &Progress,
) -> Result<Dataset, DatasetError> {
    let Source::Oiv7 {
        labels,
        classes,
        narratives,
        images,
    } = source
    else {
        unreachable!("load passes only oiv7 sources here")
    };
    let loaded = oiv7::read(
        labels,
        classes,
        narratives,
        images.as_deref(),
        rules,
        progress,
    )?;
    let fingerprint = fingerprint(source, &loaded.digests, opts, &loaded.samples);
    Ok(Dataset {
        name: opts.name.clone(),
        samples: loaded.samples,
        fingerprint,
        stats: loaded.stats,
    })
}

#[cfg(not(feature = "oiv7"))]
fn load_oiv7(
    _: &Source,
    _: &LoadOptions,
    _: &filter::Rules,
    _: &Progress,
) -> Result<Dataset, DatasetError> {
    Err(DatasetError::Options(OIV7_MISSING.to_string()))
}

/// Digest of everything that determines the samples: format, annotation file contents, rules and
/// the selected ids. The seed only counts when a limit is set (otherwise it selects nothing); the
/// outlier rule and oiv7's file roles only where used, so other datasets keep their fingerprints.
fn fingerprint(
    source: &Source,
    files: &[Digest],
    opts: &LoadOptions,
    samples: &[Sample],
) -> Digest {
    let mut hasher = Hasher::new("dataset");
    hasher.str(source.format()).u64(files.len() as u64);
    for digest in files {
        hasher.digest(digest);
    }
    if let Source::Oiv7 {
        labels, narratives, ..
    } = source
    {
        // Which digests are labels, classes and narratives.
        hasher.u64(labels.len() as u64).u64(narratives.len() as u64);
    }
    hasher.u64(opts.min_label_set_count as u64);
    if let Some(k) = opts.outlier_std {
        hasher.str("outlier_std").f64(k);
    }
    match opts.limit {
        Some(limit) => hasher.bool(true).u64(limit as u64).u64(opts.seed),
        None => hasher.bool(false),
    };
    hasher.u64(samples.len() as u64);
    for sample in samples {
        hasher.str(&sample.id.0);
    }
    hasher.finish()
}

/// A sample's id as the dataset writes it (COCO: the image id; JSONL: the `id` field).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SampleId(pub String);

impl fmt::Display for SampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sorted, de-duplicated set of label names. Two samples are relevant to each other exactly when
/// their label sets are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelSet(Vec<String>);

impl LabelSet {
    pub fn new(labels: impl IntoIterator<Item = String>) -> LabelSet {
        let mut labels: Vec<String> = labels.into_iter().collect();
        labels.sort();
        labels.dedup();
        LabelSet(labels)
    }

    pub fn labels(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("+"))
    }
}

/// One retrievable item: an image with its captions and labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub id: SampleId,
    pub labels: LabelSet,
    /// Human captions in file order (may be empty).
    pub captions: Vec<String>,
    /// Absolute path of the image file, where the dataset has one.
    pub image: Option<PathBuf>,
}

/// A loaded, filtered dataset.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dataset {
    /// Display name (manifest `dataset.name`, or derived from the files).
    pub name: String,
    pub samples: Vec<Sample>,
    /// Digest of the annotation files' contents and the selected ids, in order.
    pub fingerprint: Digest,
    pub stats: DatasetStats,
}

/// What loading and filtering did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    /// Samples read from the files.
    pub loaded: usize,
    /// Dropped because they have no caption, where the source requires captions (oiv7 with
    /// narratives: images without any narrative).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_uncaptioned: usize,
    /// Dropped because their label set was empty (COCO: images without instances).
    pub dropped_unlabelled: usize,
    /// Dropped because their label set occurs fewer than `min_label_set_count` times.
    pub dropped_rare: usize,
    /// Dropped because their label set's frequency is an outlier (`outlier_std`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_outliers: usize,
    /// Left out by `limit` subsampling.
    pub dropped_by_limit: usize,
    /// Distinct label sets among the kept samples.
    pub label_sets: usize,
    /// Narratives read for images that the labels files do not list (oiv7), ignored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ignored_narratives: usize,
}

impl DatasetStats {
    /// Why samples were dropped, nonzero counts only, e.g. `6 without labels, 2 in rare label
    /// sets` (empty when none were).
    pub fn dropped_summary(&self) -> String {
        let reasons = [
            (self.dropped_uncaptioned, "without captions"),
            (self.dropped_unlabelled, "without labels"),
            (
                self.dropped_rare,
                "in rare label sets (min_label_set_count)",
            ),
            (self.dropped_outliers, "in outlier label sets (outlier_std)"),
            (self.dropped_by_limit, "by the limit"),
        ];
        let counted: Vec<String> = (reasons.iter())
            .filter(|(count, _)| *count > 0)
            .map(|(count, why)| format!("{count} {why}"))
            .collect();
        counted.join(", ")
    }
}

/// Zero counts of the newer fields stay out of results.json, so datasets without those rules
/// serialise as before.
fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl Dataset {
    /// The same dataset without the samples in `ids`; its fingerprint says which were left out.
    pub fn without(&self, ids: &std::collections::BTreeSet<&str>) -> Dataset {
        let mut hasher = Hasher::new("dataset-without");
        hasher.digest(&self.fingerprint);
        ids.iter().for_each(|id| {
            hasher.str(id);
        });
        Dataset {
            name: self.name.clone(),
            samples: (self.samples.iter())
                .filter(|s| !ids.contains(s.id.0.as_str()))
                .cloned()
                .collect(),
            fingerprint: hasher.finish(),
            stats: self.stats.clone(),
        }
    }

    /// Each sample's label set as a dense integer id (equal ids ⇔ equal label sets), in row order.
    pub fn label_set_ids(&self) -> Vec<u32> {
        let mut ids: HashMap<&LabelSet, u32> = HashMap::new();
        self.samples
            .iter()
            .map(|s| {
                let next = ids.len() as u32;
                *ids.entry(&s.labels).or_insert(next)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_counts_the_seed_only_with_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let lines: Vec<String> = (0..40)
            .map(|i| format!("{{\"id\": {i}, \"labels\": [\"l{}\"]}}", i % 4))
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let source = Source::Jsonl { path, images: None };
        let run = |limit: Option<usize>, seed: u64| {
            let opts = LoadOptions {
                name: "d".into(),
                limit,
                seed,
                ..LoadOptions::default()
            };
            load(&source, &opts).unwrap()
        };
        assert_eq!(run(None, 1).fingerprint, run(None, 2).fingerprint);
        let (a, b) = (run(Some(20), 1), run(Some(20), 2));
        assert_eq!(a.samples.len(), 20);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint, run(Some(20), 1).fingerprint);
        assert_ne!(run(None, 1).fingerprint, run(Some(40), 1).fingerprint);
    }
}
