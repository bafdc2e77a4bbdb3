//! The plan: a manifest turned into a DAG of stages, each identified by a content key.
//!
//! ```text
//! dataset ──► [captions (generated)] ──► vectors (one per part) ──► fuse ──► knn ──► metrics
//!                                                                        └─► [knn exact ──► metrics]
//! ```
//! A run searching with faiss has its own `knn` stage (keyed by the index string, parameters and
//! faiss version, never sharing an entry with exact results); with `compare_exact` its run also
//! has the exact `knn` and `metrics` of the same vectors — the very stages an exact run of those
//! vectors has, so they are computed once for both.
//! A stage's key is a digest of everything that determines its output: the content digests of its
//! input files and its upstream keys and options, never file names or timestamps. Runs that share a
//! stage (the same vectors, the same fusion) share its key, so it appears once and runs once. The
//! `dataset`, generated `captions`, encoded vectors, `knn` and `metrics` outputs are kept in the
//! cache; fusion is cheap to rebuild from its parts and is only built when a `knn` output is
//! missing.
//!
//! `embedlab plan` prints this DAG with what is cached — and, like `dvc status`, it must tell the
//! truth: it derives every key exactly as the executor does.

mod codec;
mod execute;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use execute::{ExactOutput, Executor, RunOutput, Timing};

use crate::cache::{Lookup, Store};
use crate::captions::{self, generate};
use crate::dataset::{Dataset, LoadOptions, Source};
use crate::digest::{Digest, Hasher};
use crate::embed::encode;
use crate::embed::precomputed::ids_path_for;
use crate::error::Error;
use crate::manifest::schema::{Encoder, Part, Run};
use crate::manifest::{Captions, DatasetFormat, Manifest, Modality, Search};
use crate::models::{ModelStore, ResolvedModel};
use crate::plugin::{EncoderHandle, Plugin, SearchPath};

/// Cache folders of the stored stages.
pub const DATASET: &str = "dataset";
pub const KNN: &str = "knn";
pub const METRICS: &str = "metrics";

/// The dataset stage: where samples come from and its key.
#[derive(Clone, Debug)]
pub struct DatasetStage {
    pub key: Digest,
    pub source: Source,
    pub options: LoadOptions,
    /// Annotation files with their content digests (provenance).
    pub inputs: Vec<(PathBuf, Digest)>,
    /// The dataset's image files as image parts key them; computed only when a part encodes
    /// images.
    pub images: Option<Digest>,
    /// The dataset, when planning had to read it from its files (to sign its images) and the
    /// cache did not have it yet: the executor stores and uses it instead of reading them again.
    pub loaded: Option<Arc<Dataset>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StageKind {
    /// Vectors computed elsewhere, matched to samples by id.
    Precomputed {
        npy: PathBuf,
        ids: PathBuf,
        digest: Digest,
    },
    /// Captions a `[captioners.NAME]` model generates for the dataset's images.
    Captions {
        captioner: String,
    },
    /// Vectors from an encoder plugin; generated captions come from its dependency.
    Encode {
        encoder: String,
        input: Modality,
        captions: Option<(Captions, u64)>,
    },
    /// Weighted concatenation of the part vectors (`deps`), normalised.
    Fuse {
        normalize_parts: bool,
        weights: Vec<f64>,
    },
    Knn {
        k: usize,
        backend: KnnBackend,
    },
    Metrics {
        cutoffs: Vec<usize>,
    },
}

/// How a `knn` stage searches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnnBackend {
    Exact,
    /// faiss with an index-factory string and canonical `ParameterSpace` settings.
    Faiss {
        index: String,
        parameters: String,
    },
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub key: Digest,
    pub kind: StageKind,
    pub deps: Vec<usize>,
}

impl Stage {
    /// The cache folder of a stored stage; `None` for stages rebuilt in memory or read from
    /// the user's files.
    pub fn cache_folder(&self) -> Option<&'static str> {
        match self.kind {
            StageKind::Encode { .. } => Some(encode::STAGE),
            StageKind::Captions { .. } => Some(generate::STAGE),
            StageKind::Knn { .. } => Some(KNN),
            StageKind::Metrics { .. } => Some(METRICS),
            _ => None,
        }
    }
}

/// The stages of one run.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub name: String,
    pub parts: Vec<usize>,
    pub fuse: usize,
    pub knn: usize,
    pub metrics: usize,
    /// With an approximate `knn` and `compare_exact`: the exact `knn` and `metrics` stages of the
    /// same vectors, to compare with.
    pub exact: Option<ExactStages>,
    /// Human-readable part descriptions, for reports.
    pub part_labels: Vec<String>,
}

/// The exact search (and its metrics) an approximate run is compared with.
#[derive(Clone, Copy, Debug)]
pub struct ExactStages {
    pub knn: usize,
    pub metrics: usize,
}

#[derive(Debug)]
pub struct Plan {
    pub dataset: DatasetStage,
    pub stages: Vec<Stage>,
    pub runs: Vec<RunPlan>,
    /// The manifest's encoders, loaded and resolved.
    pub encoders: EncoderSetups,
    /// The manifest's captioners, likewise.
    pub captioners: EncoderSetups,
    /// Runs that cannot be planned (an input file is missing or unreadable), with the reason.
    pub broken: Vec<(String, Error)>,
}

impl Plan {
    /// Derives every stage and key from the manifest, reading only input files' contents (and,
    /// for encoders, loading their plugins and resolving their models; for image parts, the
    /// dataset's samples, from `store` when it has them).
    pub fn build(manifest: &Manifest, env: &Environment, store: &Store) -> Result<Plan, Error> {
        let mut dataset = dataset_stage(manifest)?;
        if manifest.uses_images() {
            let cached = match store.get(DATASET, &dataset.key)? {
                Lookup::Hit(bytes) => serde_json::from_slice::<Dataset>(&bytes).ok(),
                _ => None,
            };
            let samples = match cached {
                Some(ds) => Arc::new(ds),
                None => {
                    let ds = Arc::new(crate::dataset::load(&dataset.source, &dataset.options)?);
                    dataset.loaded = Some(ds.clone());
                    ds
                }
            };
            let root = manifest.dataset.images.as_deref();
            dataset.images = Some(images_signature(&samples, root));
        }
        let encoders = EncoderSetups::prepare("encoder", &manifest.encoders, env);
        let captioners = EncoderSetups::prepare("captioner", &manifest.captioners, env);
        let setups = Setups {
            encoders: &encoders,
            captioners: &captioners,
        };
        let mut builder = Builder {
            stages: Vec::new(),
            index: HashMap::new(),
        };
        let mut runs = Vec::new();
        let mut broken = Vec::new();
        for run in &manifest.runs {
            match builder.run(manifest, &dataset, run, &setups) {
                Ok(run_plan) => runs.push(run_plan),
                Err(e) => broken.push((run.name.clone(), e)),
            }
        }
        Ok(Plan {
            dataset,
            stages: builder.stages,
            runs,
            encoders,
            captioners,
            broken,
        })
    }

    /// Every cache entry the plan reads or writes: `(stage folder, key)`.
    pub fn cache_entries(&self) -> Vec<(&'static str, Digest)> {
        let stored = self
            .stages
            .iter()
            .filter_map(|s| Some((s.cache_folder()?, s.key)));
        std::iter::once((DATASET, self.dataset.key))
            .chain(stored)
            .collect()
    }

    /// The DAG as `embedlab plan` prints it.
    pub fn describe(&self, manifest: &Manifest, store: &Store) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "experiment {} (manifest {})",
            manifest.experiment.name,
            manifest.digest.short()
        );
        let _ = writeln!(out, "cache      {}", store.root().display());
        let ds = &self.dataset;
        let _ = writeln!(
            out,
            "\n  {:>4} {:<8} {:<40} {:<9} {}",
            "",
            "dataset",
            dataset_label(ds),
            mark(store.contains(DATASET, &ds.key)),
            ds.key.short()
        );
        for (i, stage) in self.stages.iter().enumerate() {
            let status = match stage.cache_folder() {
                Some(folder) => mark(store.contains(folder, &stage.key)),
                None if matches!(stage.kind, StageKind::Fuse { .. }) => "in memory",
                None => "input",
            };
            let _ = writeln!(
                out,
                "  {:>4} {:<8} {:<40} {:<9} {}",
                format!("[{}]", i + 1),
                kind_name(&stage.kind),
                self.stage_label(stage),
                status,
                stage.key.short()
            );
        }
        let _ = writeln!(out, "\nruns");
        for run in &self.runs {
            let _ = writeln!(out, "  {:<32} → [{}]", run.name, run.metrics + 1);
        }
        for (name, error) in &self.broken {
            let _ = writeln!(out, "  {name:<32} ✗ {error}");
        }
        out
    }

    fn stage_label(&self, stage: &Stage) -> String {
        let deps: Vec<String> = stage.deps.iter().map(|d| format!("[{}]", d + 1)).collect();
        match &stage.kind {
            StageKind::Precomputed { npy, .. } => file_name(npy),
            StageKind::Captions { captioner } => format!("{captioner} (generated from images)"),
            StageKind::Encode {
                encoder, captions, ..
            } => match captions {
                Some((Captions::Human(source), _)) => {
                    format!("{encoder} ({} captions)", captions::name(*source))
                }
                Some((Captions::Generated { .. }, _)) => {
                    format!("{encoder} (captions of {})", deps.join(" "))
                }
                None => format!("{encoder} (images)"),
            },
            StageKind::Fuse {
                normalize_parts,
                weights,
            } => {
                let terms: Vec<String> = deps
                    .iter()
                    .zip(weights)
                    .map(|(d, w)| weighted(d, *w))
                    .collect();
                let raw = if *normalize_parts { "" } else { " (raw parts)" };
                format!("{}{raw}", terms.join(" ++ "))
            }
            StageKind::Knn {
                k,
                backend: KnnBackend::Exact,
            } => format!("exact k={k} ← {}", deps.join(" ")),
            StageKind::Knn {
                k,
                backend: KnnBackend::Faiss { index, parameters },
            } => {
                let set = match parameters.as_str() {
                    "" => String::new(),
                    p => format!(" {p}"),
                };
                format!("faiss {index}{set} k={k} ← {}", deps.join(" "))
            }
            StageKind::Metrics { cutoffs } => {
                let at: Vec<String> = cutoffs.iter().map(|c| format!("@{c}")).collect();
                format!("{} ← {}", at.join(" "), deps.join(" "))
            }
        }
    }
}

fn weighted(dep: &str, weight: f64) -> String {
    if weight == 1.0 {
        dep.to_string()
    } else {
        format!("{weight}×{dep}")
    }
}

fn mark(cached: bool) -> &'static str {
    if cached { "cached" } else { "missing" }
}

fn kind_name(kind: &StageKind) -> &'static str {
    match kind {
        StageKind::Captions { .. } => "captions",
        StageKind::Precomputed { .. } | StageKind::Encode { .. } => "vectors",
        StageKind::Fuse { .. } => "fuse",
        StageKind::Knn { .. } => "knn",
        StageKind::Metrics { .. } => "metrics",
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn dataset_label(ds: &DatasetStage) -> String {
    let files: Vec<String> = ds.inputs.iter().map(|(p, _)| file_name(p)).collect();
    let limit = ds
        .options
        .limit
        .map(|l| format!(", limit {l}"))
        .unwrap_or_default();
    format!("{} ({}{limit})", ds.options.name, files.join(", "))
}

fn digest_file(path: &Path) -> Result<Digest, Error> {
    Digest::of_file(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn dataset_stage(m: &Manifest) -> Result<DatasetStage, Error> {
    let d = &m.dataset;
    let (source, files, format) = match d.format {
        DatasetFormat::Jsonl => {
            let path = d.path.clone().expect("validated: jsonl has a path");
            let source = Source::Jsonl {
                path: path.clone(),
                images: d.images.clone(),
            };
            (source, vec![path], "jsonl")
        }
        DatasetFormat::Coco => {
            let source = Source::Coco {
                captions: d.captions.clone(),
                instances: d.instances.clone(),
                images: d.images.clone(),
            };
            (
                source,
                [d.captions.clone(), d.instances.clone()].concat(),
                "coco",
            )
        }
        DatasetFormat::Oiv7 => {
            let classes = d.classes.clone().expect("validated: oiv7 has classes");
            let source = Source::Oiv7 {
                labels: d.labels.clone(),
                classes: classes.clone(),
                narratives: d.narratives.clone(),
                images: d.images.clone(),
            };
            let files = [d.labels.clone(), vec![classes], d.narratives.clone()].concat();
            (source, files, "oiv7")
        }
    };
    let name = d
        .name
        .clone()
        .unwrap_or_else(|| default_dataset_name(&files[0]));
    let options = LoadOptions {
        name,
        min_label_set_count: d.min_label_set_count,
        outlier_std: d.outlier_std,
        limit: d.limit,
        seed: m.dataset_seed(),
    };
    let inputs = files
        .into_iter()
        .map(|p| digest_file(&p).map(|digest| (p, digest)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut h = Hasher::new("dataset-v1");
    h.str(format)
        .str(&options.name)
        .u64(options.min_label_set_count as u64);
    h.u64(options.limit.map_or(0, |l| l as u64 + 1))
        .u64(options.seed);
    h.str(
        &d.images
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    for (_, digest) in &inputs {
        h.digest(digest);
    }
    // Only where set or meaningful, so that other datasets keep their keys.
    if let Some(k) = options.outlier_std {
        h.str("outlier_std").f64(k);
    }
    if let Source::Oiv7 {
        labels, narratives, ..
    } = &source
    {
        // Which of the digests are labels, classes and narratives.
        h.u64(labels.len() as u64).u64(narratives.len() as u64);
    }
    Ok(DatasetStage {
        key: h.finish(),
        source,
        options,
        inputs,
        images: None,
        loaded: None,
    })
}

/// What decides the image files' bytes, cheaply: each sample's image path (relative to the
/// images folder) with its size and modification time, or that it is missing. Like `dvc status`,
/// this trusts size + mtime instead of reading every image at each plan; an image edited in place
/// within the same second and size would go unnoticed.
fn images_signature(ds: &Dataset, root: Option<&Path>) -> Digest {
    let mut h = Hasher::new("images-v1");
    h.u64(ds.samples.len() as u64);
    for sample in &ds.samples {
        h.str(&sample.id.0);
        let Some(path) = &sample.image else {
            h.str("");
            continue;
        };
        let shown = root.and_then(|r| path.strip_prefix(r).ok()).unwrap_or(path);
        h.str(&shown.to_string_lossy());
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as u64);
                h.bool(true).u64(meta.len()).u64(mtime)
            }
            Err(_) => h.bool(false),
        };
    }
    h.finish()
}

fn default_dataset_name(first_file: &Path) -> String {
    first_file
        .file_stem()
        .map_or_else(|| "dataset".into(), |s| s.to_string_lossy().into_owned())
}

struct Builder {
    stages: Vec<Stage>,
    index: HashMap<Digest, usize>,
}

impl Builder {
    /// Adds a stage unless one with the same key exists; returns its index either way.
    fn add(&mut self, key: Digest, kind: StageKind, deps: Vec<usize>) -> usize {
        *self.index.entry(key).or_insert_with(|| {
            self.stages.push(Stage { key, kind, deps });
            self.stages.len() - 1
        })
    }

    fn run(
        &mut self,
        m: &Manifest,
        ds: &DatasetStage,
        run: &Run,
        setups: &Setups,
    ) -> Result<RunPlan, Error> {
        let mut parts = Vec::new();
        let mut part_labels = Vec::new();
        for part in &run.parts {
            let (key, kind, captions) = part_stage(m, ds, run, part, setups)?;
            let deps = match captions {
                Some((key, kind)) => vec![self.add(key, kind, Vec::new())],
                None => Vec::new(),
            };
            let index = self.add(key, kind, deps);
            part_labels.push(weighted(&part_label(&self.stages[index].kind), part.weight));
            parts.push(index);
        }
        let weights: Vec<f64> = run.parts.iter().map(|p| p.weight).collect();
        let mut h = Hasher::new("fuse-v1");
        h.bool(run.normalize_parts);
        for (&p, w) in parts.iter().zip(&weights) {
            h.digest(&self.stages[p].key).f64(*w);
        }
        let fuse_kind = StageKind::Fuse {
            normalize_parts: run.normalize_parts,
            weights,
        };
        let fuse = self.add(h.finish(), fuse_kind, parts.clone());

        let k = m.retrieval.k;
        let fuse_key = self.stages[fuse].key;
        let exact_key = Hasher::new("knn-exact-v1")
            .digest(&fuse_key)
            .u64(k as u64)
            .finish();
        let exact_kind = StageKind::Knn {
            k,
            backend: KnnBackend::Exact,
        };
        let (knn, compare_exact) = match m.search(run) {
            Search::Exact => (self.add(exact_key, exact_kind.clone(), vec![fuse]), false),
            Search::Faiss {
                index,
                parameters,
                compare_exact,
            } => {
                let mut h = Hasher::new("knn-faiss-v1");
                h.digest(&fuse_key).u64(k as u64).str(&index);
                h.str(&parameters).str(crate::retrieval::FAISS_VERSION);
                let kind = StageKind::Knn {
                    k,
                    backend: KnnBackend::Faiss { index, parameters },
                };
                (self.add(h.finish(), kind, vec![fuse]), compare_exact)
            }
        };
        let metrics = self.metrics(m, ds, knn);
        let exact = compare_exact.then(|| {
            let knn = self.add(exact_key, exact_kind, vec![fuse]);
            ExactStages {
                knn,
                metrics: self.metrics(m, ds, knn),
            }
        });
        Ok(RunPlan {
            name: run.name.clone(),
            parts,
            fuse,
            knn,
            metrics,
            exact,
            part_labels,
        })
    }

    /// The metrics stage of a `knn` stage.
    fn metrics(&mut self, m: &Manifest, ds: &DatasetStage, knn: usize) -> usize {
        let mut h = Hasher::new("metrics-v1");
        h.digest(&self.stages[knn].key).digest(&ds.key);
        m.cutoffs.iter().for_each(|&c| {
            h.u64(c as u64);
        });
        let kind = StageKind::Metrics {
            cutoffs: m.cutoffs.clone(),
        };
        self.add(h.finish(), kind, vec![knn])
    }
}

fn part_label(kind: &StageKind) -> String {
    match kind {
        StageKind::Precomputed { npy, .. } => file_name(npy),
        StageKind::Encode { encoder, .. } => encoder.clone(),
        _ => String::new(),
    }
}

/// The encoders and captioners a plan's stages are made with.
struct Setups<'a> {
    encoders: &'a EncoderSetups,
    captioners: &'a EncoderSetups,
}

/// A part's stage (key and kind) and, for generated captions, the captions stage it needs.
type PartStage = (Digest, StageKind, Option<(Digest, StageKind)>);

fn part_stage(
    m: &Manifest,
    ds: &DatasetStage,
    run: &Run,
    part: &Part,
    setups: &Setups,
) -> Result<PartStage, Error> {
    if let Some(npy) = &part.precomputed {
        let ids = part.ids.clone().unwrap_or_else(|| ids_path_for(npy));
        let digest = digest_file(npy)?;
        let key = Hasher::new("precomputed-v1")
            .digest(&ds.key)
            .digest(&digest)
            .digest(&digest_file(&ids)?)
            .finish();
        return Ok((
            key,
            StageKind::Precomputed {
                npy: npy.clone(),
                ids,
                digest,
            },
            None,
        ));
    }
    let name = part
        .encoder
        .clone()
        .expect("validated: a part has precomputed or encoder");
    let setup = setups.encoders.get(&name)?;
    let input = part.input.unwrap_or_default();
    let captions = (input == Modality::Captions).then(|| m.caption_source(run, part));
    let generated = match &captions {
        Some((Captions::Generated { generate }, _)) => {
            Some(captions_stage(m, ds, generate, setups.captioners)?)
        }
        _ => None,
    };
    let mut h = Hasher::new("encode-v1");
    h.digest(&ds.key)
        .str(setup.plugin.name())
        .str(setup.plugin.version());
    h.str(&setup.model.id)
        .str(&setup.model.weights_digest)
        .str(&setup.options.to_string());
    h.u64(encode::CHUNK_ROWS as u64);
    match (&captions, &generated) {
        // The captions' content is their stage's key, whatever the captioner is called.
        (_, Some((key, _))) => h.str("generated captions").digest(key),
        _ => h.str(&format!("{input:?}{captions:?}")),
    };
    if input == Modality::Image {
        h.digest(&images_signed(ds)).bool(m.dataset.strict);
    }
    let kind = StageKind::Encode {
        encoder: name,
        input,
        captions,
    };
    Ok((h.finish(), kind, generated))
}

/// The generated-captions stage of captioner `name`: keyed by the image set, the plugin, the
/// model's digest and the captioner's options — not by the dataset's annotations, so captions
/// carry over to any dataset of the same images.
fn captions_stage(
    m: &Manifest,
    ds: &DatasetStage,
    name: &str,
    captioners: &EncoderSetups,
) -> Result<(Digest, StageKind), Error> {
    let setup = captioners.get(name)?;
    let mut h = Hasher::new("captions-v1");
    h.digest(&images_signed(ds)).bool(m.dataset.strict);
    h.str(setup.plugin.name()).str(setup.plugin.version());
    h.str(&setup.model.id)
        .str(&setup.model.weights_digest)
        .str(&setup.options.to_string());
    h.u64(generate::CHUNK_ROWS as u64);
    let kind = StageKind::Captions {
        captioner: name.to_string(),
    };
    Ok((h.finish(), kind))
}

fn images_signed(ds: &DatasetStage) -> Digest {
    ds.images
        .expect("signed in Plan::build when a part encodes images or captions them")
}

/// Where plugins and models come from while planning.
pub struct Environment {
    pub plugins: SearchPath,
    pub models: ModelStore,
    /// Fetch models that are not in the store (`run`); `plan` only looks.
    pub fetch: bool,
}

impl Environment {
    /// Plugins from `plugin_dirs` (then the default search path), models from `model_store`
    /// (or the default store); `fetch` allows downloading models.
    pub fn new(
        plugin_dirs: &[PathBuf],
        model_store: Option<&Path>,
        fetch: bool,
    ) -> Result<Environment, Error> {
        Ok(Environment {
            plugins: SearchPath::new(plugin_dirs),
            models: ModelStore::open(model_store)?,
            fetch,
        })
    }
}

/// A manifest encoder made concrete: its loaded plugin, its verified model files, its options.
#[derive(Debug)]
pub struct EncoderSetup {
    pub plugin: Plugin,
    pub model: ResolvedModel,
    pub options: serde_json::Value,
}

impl EncoderSetup {
    /// A new encoder from the plugin, given `{"model", "model_dir", "options"}`.
    pub fn create(&self) -> Result<EncoderHandle, Error> {
        let config = serde_json::json!({
            "model": self.model.id,
            "model_dir": self.model.dir,
            "options": self.options,
        });
        Ok(self.plugin.create(&config)?)
    }
}

/// Every manifest encoder (or captioner), set up once; a failure is kept (as its message) and
/// fails only the runs that use it.
#[derive(Debug, Default)]
pub struct EncoderSetups {
    /// "encoder" or "captioner", for messages.
    role: &'static str,
    setups: BTreeMap<String, Result<EncoderSetup, String>>,
}

impl EncoderSetups {
    fn prepare(
        role: &'static str,
        tables: &BTreeMap<String, Encoder>,
        env: &Environment,
    ) -> EncoderSetups {
        let setups = tables
            .iter()
            .map(|(name, e)| (name.clone(), setup(e, env).map_err(|e| e.to_string())));
        EncoderSetups {
            role,
            setups: setups.collect(),
        }
    }

    /// "encoder" or "captioner".
    pub fn role(&self) -> &'static str {
        self.role
    }

    pub fn get(&self, name: &str) -> Result<&EncoderSetup, Error> {
        match &self.setups[name] {
            Ok(setup) => Ok(setup),
            Err(message) => Err(Error::Encoder {
                role: self.role,
                name: name.to_string(),
                message: message.clone(),
            }),
        }
    }
}

fn setup(encoder: &Encoder, env: &Environment) -> Result<EncoderSetup, Error> {
    // A path got through the manifest only with --allow-plugin-path; it is absolute by now.
    let plugin = match crate::plugin::is_path(&encoder.plugin) {
        true => Plugin::load(Path::new(&encoder.plugin))?,
        false => crate::plugin::find(&encoder.plugin, &env.plugins)?,
    };
    let model = if env.fetch {
        env.models.resolve(&encoder.model)?
    } else {
        env.models.installed(&encoder.model)?.ok_or_else(|| {
            Error::Unsupported(format!(
                "model {} is not in the store yet (`embedlab models fetch {}`, or `embedlab run` fetches it)",
                encoder.model, encoder.model
            ))
        })?
    };
    let options = serde_json::to_value(&encoder.options).expect("TOML values convert to JSON");
    Ok(EncoderSetup {
        plugin,
        model,
        options,
    })
}
