//! The manifest's TOML schema, exactly as users write it.
//!
//! Every table denies unknown keys (typos must not pass silently), except `[encoders.NAME]` and
//! `[captioners.NAME]`, whose extra keys are options for their plugin. Paths are kept as written; `resolve` turns them
//! into absolute paths against the manifest's folder.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub experiment: Experiment,
    pub dataset: DatasetTable,
    #[serde(default)]
    pub retrieval: Retrieval,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub encoders: BTreeMap<String, Encoder>,
    /// Models that write a caption for each image, for `captions = { generate = "NAME" }`; the
    /// same keys as an encoder (`plugin`, `model`, plugin options such as `num_beams`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captioners: BTreeMap<String, Encoder>,
    pub runs: Vec<Run>,
    /// Published numbers to compare with (`[[reference]]`); `embedlab run --check` fails when
    /// one differs by more than its tolerance.
    #[serde(default, rename = "reference", skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
}

/// A number from elsewhere (a paper's table) that a run should reproduce.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// The run's name (after sweep expansion).
    pub run: String,
    /// A metric key, e.g. `mrr@10`.
    pub metric: String,
    pub value: f64,
    /// Where the number comes from ("Table 2 of ...").
    #[serde(default)]
    pub source: String,
    /// The largest |ours − value| that still counts as reproduced.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Compare with the study's scoring or the exact one; defaults to `article` when
    /// `[metrics] article_compatible = true`, else `exact`.
    pub scoring: Option<Scoring>,
}

fn default_tolerance() -> f64 {
    0.001
}

/// Which scorer a number comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// The study's: torchmetrics 0.11.4's unstable sort scrambles each query's tied items.
    Article,
    /// DESIGN.md's definitions on the retrieval order.
    Exact,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (subsampling, `random` captions) unless a table sets its own.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    Coco,
    Jsonl,
    /// Open Images V7 image-level labels + Localized Narratives.
    Oiv7,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetTable {
    pub format: DatasetFormat,
    /// Display name in reports; defaults to the annotation file's stem.
    pub name: Option<String>,
    /// `jsonl`: the samples file.
    pub path: Option<PathBuf>,
    /// `coco`: `captions_*.json` files (several splits are merged).
    #[serde(default)]
    pub captions: Vec<PathBuf>,
    /// `coco`: `instances_*.json` files.
    #[serde(default)]
    pub instances: Vec<PathBuf>,
    /// `oiv7`: image-level labels CSVs, one path or a list (several splits are merged).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub labels: Vec<PathBuf>,
    /// `oiv7`: the class descriptions CSV (label id → display name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<PathBuf>,
    /// `oiv7`: Localized Narratives JSONL files, one path or a list (the captions, in file order).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub narratives: Vec<PathBuf>,
    /// Folder that image paths are relative to (`oiv7`: the folder of `<ImageID>.jpg`).
    pub images: Option<PathBuf>,
    #[serde(default = "default_min_label_set_count")]
    pub min_label_set_count: usize,
    /// `oiv7`: keep only label sets whose frequency is within mean ± this many (sample) standard
    /// deviations of the label-set frequencies, e.g. 3.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_std: Option<f64>,
    /// Keep a seeded, label-set-stratified subsample of this many samples.
    pub limit: Option<usize>,
    /// Seed of the subsample; defaults to `experiment.seed`.
    pub seed: Option<u64>,
    /// Fail an image part at the first missing or unreadable image, instead of leaving that
    /// sample out of the run (and listing it in the report).
    #[serde(default)]
    pub strict: bool,
}

fn default_min_label_set_count() -> usize {
    2
}

/// A path or a list of paths (the serialised form is always the list).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<PathBuf>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a path or a list of paths")
        }
        fn visit_str<E>(self, v: &str) -> Result<Vec<PathBuf>, E> {
            Ok(vec![PathBuf::from(v)])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut paths = Vec::new();
            while let Some(path) = seq.next_element()? {
                paths.push(path);
            }
            Ok(paths)
        }
    }
    d.deserialize_any(Visitor)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Blocked f32 GEMM with per-row top-k: the reference.
    #[default]
    Exact,
    /// Approximate search through faiss (cargo feature `faiss`).
    Faiss,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retrieval {
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub backend: Backend,
    /// Queries scored per GEMM block (memory ≈ block × N × 4 bytes per thread).
    #[serde(default = "default_query_block")]
    pub query_block: usize,
    /// `backend = "faiss"`: the faiss index-factory string (default `HNSW32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// `backend = "faiss"`: faiss `ParameterSpace` settings, `name=value` separated by commas
    /// (`efSearch=128`, `nprobe=16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
    /// `backend = "faiss"`: also search exactly and report how the approximate neighbours and
    /// metrics differ (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_exact: Option<bool>,
}

impl Default for Retrieval {
    fn default() -> Self {
        Retrieval {
            k: default_k(),
            backend: Backend::Exact,
            query_block: default_query_block(),
            index: None,
            parameters: None,
            compare_exact: None,
        }
    }
}

/// A run's own choice of search, over `[retrieval]`'s (`k` and `query_block` stay the
/// experiment's): `retrieval = { backend = "faiss", index = "IVF256,Flat" }`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunRetrieval {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_exact: Option<bool>,
}

impl Retrieval {
    /// The search this table chooses for every run, as a run's own `retrieval` table would.
    pub fn choice(&self) -> RunRetrieval {
        RunRetrieval {
            backend: Some(self.backend),
            index: self.index.clone(),
            parameters: self.parameters.clone(),
            compare_exact: self.compare_exact,
        }
    }
}

fn default_k() -> usize {
    10
}

fn default_query_block() -> usize {
    1024
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Cutoffs to report, each ≤ `retrieval.k`; defaults to `[retrieval.k]`.
    #[serde(default)]
    pub cutoffs: Vec<usize>,
    /// Write per-query neighbours, scores and hit flags next to results.json.
    #[serde(default = "yes")]
    pub per_query: bool,
    /// Also score as the study did (torchmetrics 0.11.4 on torch 2.0.0, whose unstable sort
    /// scrambled each query's tied items), beside the exact numbers.
    #[serde(default)]
    pub article_compatible: bool,
    /// Bootstrap resamples of the queries per confidence interval (0: no intervals).
    #[serde(default = "default_resamples")]
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Random sign patterns per paired randomisation test (tests with few queries enumerate
    /// every pattern instead).
    #[serde(default = "default_resamples")]
    pub permutations: usize,
    /// Metrics tested between every pair of runs; defaults to `["mrr@K"]` (K = retrieval.k).
    #[serde(default)]
    pub significance: Vec<String>,
    /// Differences with a p-value below this are significant.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

impl Default for Metrics {
    // Written out: a derived default would turn per-query output off when `[metrics]` is absent.
    fn default() -> Self {
        Metrics {
            cutoffs: Vec::new(),
            per_query: yes(),
            article_compatible: false,
            bootstrap: default_resamples(),
            confidence: default_confidence(),
            permutations: default_resamples(),
            significance: Vec::new(),
            alpha: default_alpha(),
        }
    }
}

fn default_resamples() -> usize {
    1000
}

fn default_confidence() -> f64 {
    0.95
}

fn default_alpha() -> f64 {
    0.05
}

fn yes() -> bool {
    true
}

/// An encoder declared once and referenced by runs; every other key (`batch_size`, ...) is an
/// option for its plugin.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Encoder {
    pub plugin: String,
    pub model: String,
    #[serde(flatten)]
    pub options: BTreeMap<String, toml::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptionSource {
    /// All human captions joined with a space, in file order.
    Concat,
    /// One human caption per sample, chosen by seed.
    Random,
    /// The first human caption.
    First,
}

/// A run's or part's `captions`: a human caption source (`"concat"`, `"random"`, `"first"`) or
/// the captions a `[captioners.NAME]` model generates for the images (`{ generate = "NAME" }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Captions {
    Human(CaptionSource),
    Generated { generate: String },
}

impl<'de> Deserialize<'de> for Captions {
    // Written out: serde's untagged enums answer a typo with "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Captions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""concat", "random", "first" or { generate = "NAME" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Captions, E> {
                let named = serde::de::value::StrDeserializer::<E>::new(v);
                CaptionSource::deserialize(named).map(Captions::Human)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Captions, A::Error> {
                let mut generate = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "generate" => generate = Some(map.next_value::<String>()?),
                        other => return Err(serde::de::Error::unknown_field(other, &["generate"])),
                    }
                }
                let generate =
                    generate.ok_or_else(|| serde::de::Error::missing_field("generate"))?;
                Ok(Captions::Generated { generate })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl From<CaptionSource> for Captions {
    fn from(source: CaptionSource) -> Captions {
        Captions::Human(source)
    }
}

/// What an encoder part embeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// The sample's caption text, from the part's (or run's) caption source.
    #[default]
    #[serde(alias = "text")]
    Captions,
    Image,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub name: String,
    /// The experiment family reports group the run under; derived from its parts when absent.
    pub family: Option<String>,
    /// Caption source for the run's caption parts (a part's own `captions` wins).
    pub captions: Option<Captions>,
    /// Seed of `random` captions; defaults to `experiment.seed`.
    pub caption_seed: Option<u64>,
    /// L2-normalise each part before weighting and concatenation (false: the article's raw `++`).
    #[serde(default = "yes")]
    pub normalize_parts: bool,
    pub parts: Vec<Part>,
    /// The run's own search backend and index, over `[retrieval]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RunRetrieval>,
    /// Sweep: key path inside this run → values; the run expands into the cross product.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// A float32 `.npy` of vectors computed elsewhere.
    pub precomputed: Option<PathBuf>,
    /// Its ids file; defaults to the sibling `<stem>.ids.txt`.
    pub ids: Option<PathBuf>,
    /// Name of an `[encoders.NAME]` table.
    pub encoder: Option<String>,
    /// What the encoder embeds (default: captions).
    pub input: Option<Modality>,
    /// Caption source of this part; defaults to the run's `captions`, then `concat`.
    pub captions: Option<Captions>,
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}
