//! `results.json`: the contract other tools read (DESIGN.md). Keys are only ever added.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dataset::DatasetStats;
use crate::digest::Digest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub experiment: String,
    pub description: String,
    pub runs: Vec<RunResult>,
    /// Runs that could not finish, with the reason; the others still report.
    pub failed: Vec<FailedRun>,
    pub provenance: Provenance,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub name: String,
    pub dataset: String,
    pub n_samples: usize,
    pub k: usize,
    /// Mean over queries, e.g. `mrr@10`; every metric at every cutoff.
    pub metrics: BTreeMap<String, f64>,
    pub encoders: Vec<EncoderInfo>,
    /// How the parts were combined.
    pub fusion: Fusion,
    pub timing: TimingInfo,
    pub cache: CacheInfo,
    /// Per-query neighbours and scores, relative to results.json.
    pub per_query: Option<PathBuf>,
    /// Samples left out of this run because an image part could not read their image
    /// (`n_samples` counts the samples that were evaluated).
    #[serde(default)]
    pub skipped_images: Vec<SkippedImage>,
}

/// A sample an image part could not use, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedImage {
    pub id: String,
    /// The image file as the dataset names it (empty when the sample has none).
    pub path: String,
    pub reason: String,
}

/// One part's vectors: the plugin, model id and weights digest (`sha256:...`) of an encoder part;
/// for a precomputed part `plugin = "precomputed"`, the file as `model` and its content digest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncoderInfo {
    pub plugin: String,
    pub model: String,
    pub digest: String,
    /// Plugin version, for encoder parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    /// The caption source (`concat`, `random@seed`, ...) of a caption part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captions: Option<String>,
    pub dim: usize,
    pub weight: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fusion {
    pub normalize_parts: bool,
    pub dim: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimingInfo {
    /// Seconds to build the run's vectors (load or encode, fuse) when they were computed.
    pub embed_s: f64,
    pub knn_s: f64,
    /// Samples per second through the vector and k-NN stages.
    pub items_per_s: f64,
    /// Peak resident memory of the embedlab process so far, in MiB.
    pub peak_rss_mb: f64,
    pub metrics_s: f64,
    /// This invocation's wall time for the run, cache loads included.
    pub wall_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheInfo {
    pub hits: usize,
    pub misses: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailedRun {
    pub name: String,
    pub error: String,
}

/// How every figure was obtained.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub engine: String,
    pub manifest: PathBuf,
    pub manifest_digest: Digest,
    pub date: String,
    pub seed: u64,
    pub dataset: DatasetProvenance,
    pub k: usize,
    pub cutoffs: Vec<usize>,
    pub backend: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetProvenance {
    pub name: String,
    pub format: String,
    pub fingerprint: Digest,
    pub files: Vec<InputFile>,
    pub min_label_set_count: usize,
    /// The outlier rule's width in standard deviations, where set (oiv7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_std: Option<f64>,
    pub limit: Option<usize>,
    pub seed: u64,
    pub n_samples: usize,
    pub stats: DatasetStats,
    /// Digest of the image files' paths, sizes and mtimes, when a run encodes images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Digest>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub digest: Digest,
}
