//! Datasets: annotation files in, a list of labelled [`Sample`]s out.
//!
//! Loaders (`coco`, `jsonl`) read their format into raw samples; this module then applies the rules
//! every dataset shares (DESIGN.md): empty label sets are dropped, label sets rarer than
//! `min_label_set_count` are dropped, and an optional seeded, label-set-stratified subsample is
//! taken. The result carries a fingerprint (annotation file digests + selected ids) that reports
//! print and cache keys build on.
//!
//! Invariant: sample order is deterministic (file order), and row `i` of every vector matrix
//! downstream is `samples[i]`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

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
    /// Dropped because their label set was empty (COCO: images without instances).
    pub dropped_unlabelled: usize,
    /// Dropped because their label set occurs fewer than `min_label_set_count` times.
    pub dropped_rare: usize,
    /// Left out by `limit` subsampling.
    pub dropped_by_limit: usize,
    /// Distinct label sets among the kept samples.
    pub label_sets: usize,
}

impl Dataset {
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
