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
    /// Paired randomisation tests between the runs (absent when fewer than two runs finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significance: Option<Significance>,
    /// The manifest's `[[reference]]` numbers beside ours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<ReferenceCheck>,
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
    /// The study's experiment family the run belongs to (from its parts, or the manifest's
    /// `family`).
    #[serde(default)]
    pub family: String,
    /// Bootstrap confidence interval `[low, high]` of every metric in `metrics`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intervals: BTreeMap<String, [f64; 2]>,
    /// `mrr`, `map_list`, `ndcg_list`, `precision` and `hit_rate` at each cutoff as the study's
    /// scorer computed them (`[metrics] article_compatible = true`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub article_compatible: BTreeMap<String, f64>,
    /// MRR at k of the dataset's most frequent label sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_sets: Vec<LabelSetScore>,
    /// What each stage cost when it was computed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageResources>,
    /// How the neighbours were searched and, for an approximate search, how they differ from the
    /// exact ones (absent from results written before backends could differ between runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalInfo>,
}

/// A run's search: the backend, its settings and cost, and (faiss with `compare_exact`) how its
/// neighbours and metrics differ from the exact search's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalInfo {
    /// `exact` or `faiss`.
    pub backend: String,
    /// faiss: the index-factory string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// faiss: the `ParameterSpace` settings, canonical (`efSearch=128`; empty: faiss's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
    /// Seconds searching (faiss: the queries alone, after the index was built).
    pub seconds: f64,
    /// faiss: seconds building the index (create, train where needed, add every row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_s: Option<f64>,
    /// faiss: the OpenMP threads it ran with (its default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// faiss: the library version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faiss_version: Option<String>,
    /// Mean over queries of |approximate ∩ exact neighbours| / k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_vs_exact: Option<f64>,
    /// Seconds the exact search of the same vectors took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_seconds: Option<f64>,
    /// Every metric of the exact search of the same vectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exact_metrics: BTreeMap<String, f64>,
    /// For every metric: this run's value − the exact search's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_differences: BTreeMap<String, f64>,
}

/// One label set's mean MRR at k over its queries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelSetScore {
    pub labels: String,
    pub queries: usize,
    pub mrr: f64,
}

/// One stage of a run: how long it took and how much memory it needed when it was computed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageResources {
    /// `encode NAME (...)`, `fuse`, `knn` or `metrics`.
    pub stage: String,
    pub items: usize,
    pub seconds: f64,
    pub items_per_s: f64,
    /// Peak resident memory of the process during the stage, MiB (0: not measured).
    pub peak_rss_mb: f64,
    /// The encoder's parameter count, for encode stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<u64>,
    /// Where the encoder ran (`cpu`, `cuda:0`), for encode stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Reused from the cache (or an earlier run) rather than computed by this invocation; the
    /// figures are those of the computation that produced it.
    pub cached: bool,
}

impl StageResources {
    /// A stage with its time and throughput; memory, parameters and device not known.
    pub fn timed(stage: &str, items: usize, seconds: f64, cached: bool) -> StageResources {
        StageResources {
            stage: stage.to_string(),
            items,
            seconds,
            items_per_s: if seconds > 0.0 {
                items as f64 / seconds
            } else {
                0.0
            },
            peak_rss_mb: 0.0,
            parameters: None,
            device: None,
            cached,
        }
    }
}

/// Paired randomisation tests of every pair of runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Significance {
    /// The metrics tested, e.g. `mrr@10`.
    pub metrics: Vec<String>,
    pub permutations: usize,
    pub seed: u64,
    /// Differences with p below this are called significant.
    pub alpha: f64,
    pub pairs: Vec<PairTest>,
}

/// One paired test: is `a` different from `b` on `metric`?
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairTest {
    pub a: String,
    pub b: String,
    pub metric: String,
    /// Mean over the shared queries of a − b.
    pub difference: f64,
    pub p_value: f64,
    /// Queries both runs evaluated (runs that left out unreadable images share fewer).
    pub queries: usize,
    /// Every sign pattern was enumerated (few queries): the p-value is exact.
    pub exact: bool,
}

/// A `[[reference]]` number and ours.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReferenceCheck {
    pub run: String,
    pub metric: String,
    /// `article` (the study's scorer) or `exact`.
    pub scoring: String,
    pub reference: f64,
    /// Our value; `None` when the run failed.
    pub ours: Option<f64>,
    pub difference: Option<f64>,
    pub tolerance: f64,
    pub source: String,
    /// Whether |difference| ≤ tolerance.
    pub within: bool,
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
    /// The caption source (`concat`, `random (seed 7)`, `generated by NAME`) of a caption part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captions: Option<String>,
    /// What an encoder part embeds: `captions` or `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The inputs its model takes (`text`, `image`; both for a jointly trained model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<u64>,
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
    /// The models that generated captions for runs of this experiment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captioners: Vec<CaptionerInfo>,
    /// How the confidence intervals and tests were computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<StatisticsInfo>,
}

/// The settings of the bootstrap intervals and the randomisation tests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatisticsInfo {
    /// Resamples of the queries per interval (0: no intervals).
    pub bootstrap: usize,
    pub confidence: f64,
    pub permutations: usize,
    pub seed: u64,
}

/// A `[captioners.NAME]` model and the captions file it wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaptionerInfo {
    pub name: String,
    pub plugin: String,
    pub plugin_version: String,
    pub model: String,
    /// Weights digest (`sha256:...`).
    pub digest: String,
    /// The plugin options it ran with (beams, maximum length, prompt, ...).
    pub options: serde_json::Value,
    /// The captions, one JSON line per sample, relative to results.json.
    pub file: PathBuf,
    pub captioned: usize,
    /// Samples whose image could not be read (no caption; runs using these captions leave them out).
    pub skipped: usize,
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
