//! One experiment end to end: plan, run what is not cached, write the report.
//!
//! A run that fails (a missing vectors file, an encoder this build lacks) is reported and the
//! others go on; the dataset failing stops everything, since every run needs it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cache::Store;
use crate::captions::{self, generate};
use crate::dataset::Dataset;
use crate::error::Error;
use crate::manifest::{CaptionSource, Captions, DatasetFormat, Manifest};
use crate::plan::{Environment, Executor, Plan, RunOutput, RunPlan, StageKind};
use crate::progress::Progress;
use crate::report::results::{
    CacheInfo, CaptionerInfo, DatasetProvenance, EncoderInfo, FailedRun, Fusion, InputFile,
    Provenance, Results, RunResult, TimingInfo,
};
use crate::report::{self, Written};

/// Where outputs go, and where plugins and models come from.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reports are written to `out_dir/<experiment name>/`.
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// `--plugin-dir` folders, searched before `EMBEDLAB_PLUGIN_PATH` and the binary's folder.
    pub plugin_dirs: Vec<PathBuf>,
    /// The model store (default: the user cache folder, or `EMBEDLAB_MODEL_STORE`).
    pub model_store: Option<PathBuf>,
}

impl Settings {
    /// The plugins and models of these settings; `fetch` allows downloading models.
    pub fn environment(&self, fetch: bool) -> Result<Environment, Error> {
        Environment::new(&self.plugin_dirs, self.model_store.as_deref(), fetch)
    }

    /// The default cache folder: `.embedlab/cache` beside the manifest.
    pub fn default_cache_dir(manifest: &Path) -> PathBuf {
        manifest
            .parent()
            .unwrap_or(Path::new("."))
            .join(".embedlab")
            .join("cache")
    }
}

/// What `run` produced.
#[derive(Debug)]
pub struct Summary {
    pub written: Written,
    pub results: Results,
}

pub fn run(
    manifest: &Manifest,
    settings: &Settings,
    progress: &Progress,
) -> Result<Summary, Error> {
    let store = Store::open(&settings.cache_dir)?;
    let plan = Plan::build(manifest, &settings.environment(true)?, &store)?;
    let mut executor = Executor::new(manifest, &plan, &store, progress);
    let dataset = executor.dataset()?;
    progress.info(&format!(
        "dataset {}: {} samples in {} label sets",
        dataset.name,
        dataset.samples.len(),
        dataset.stats.label_sets
    ));
    let dir = settings.out_dir.join(&manifest.experiment.name);
    let mut runs = Vec::new();
    let mut failed: Vec<FailedRun> = plan
        .broken
        .iter()
        .map(|(name, e)| {
            progress.warn(&format!("run \"{name}\" failed: {e}"));
            FailedRun {
                name: name.clone(),
                error: e.to_string(),
            }
        })
        .collect();
    for run_plan in &plan.runs {
        let outcome = executor
            .run(run_plan)
            .and_then(|output| finish_run(manifest, &plan, run_plan, &output, &dir));
        match outcome {
            Ok(result) => {
                progress.info(&run_line(&result, manifest.retrieval.k));
                runs.push(result);
            }
            Err(e) => {
                progress.warn(&format!("run \"{}\" failed: {e}", run_plan.name));
                failed.push(FailedRun {
                    name: run_plan.name.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    let mut provenance = provenance(manifest, &plan, &dataset);
    provenance.captioners = write_captions(&plan, &store, &dataset, &dir)?;
    let results = Results {
        experiment: manifest.experiment.name.clone(),
        description: manifest.experiment.description.clone(),
        runs,
        failed,
        provenance,
    };
    let written = report::write(&dir, &results)?;
    Ok(Summary { written, results })
}

fn run_line(result: &RunResult, k: usize) -> String {
    let get = |m: &str| {
        result
            .metrics
            .get(&format!("{m}@{k}"))
            .copied()
            .unwrap_or(0.0)
    };
    format!(
        "run {:<28} mrr@{k} {:.4}  map_list@{k} {:.4}  hit_rate@{k} {:.4}  (cache {}/{} hits)",
        result.name,
        get("mrr"),
        get("map_list"),
        get("hit_rate"),
        result.cache.hits,
        result.cache.hits + result.cache.misses
    )
}

fn finish_run(
    manifest: &Manifest,
    plan: &Plan,
    run: &RunPlan,
    output: &RunOutput,
    dir: &Path,
) -> Result<RunResult, Error> {
    let dataset = &output.dataset;
    let per_query = if manifest.per_query {
        let relative =
            PathBuf::from("per_query").join(format!("{}.jsonl", report::file_stem(&run.name)));
        report::write_per_query(
            &dir.join(&relative),
            dataset,
            &output.neighbours,
            &output.evaluation,
        )?;
        Some(relative)
    } else {
        None
    };
    let encoders = encoders(plan, run, &output.part_dims)?;
    let n = dataset.samples.len();
    let computed_s = output.timing.embed_s + output.timing.knn_s;
    let StageKind::Fuse {
        normalize_parts, ..
    } = plan.stages[run.fuse].kind
    else {
        unreachable!("a run's fuse stage is a Fuse")
    };
    Ok(RunResult {
        name: run.name.clone(),
        dataset: dataset.name.clone(),
        n_samples: n,
        k: manifest.retrieval.k,
        metrics: output.evaluation.means.clone(),
        fusion: Fusion {
            normalize_parts,
            dim: encoders.iter().map(|e| e.dim).sum(),
        },
        encoders,
        timing: TimingInfo {
            embed_s: output.timing.embed_s,
            knn_s: output.timing.knn_s,
            items_per_s: if computed_s > 0.0 {
                n as f64 / computed_s
            } else {
                0.0
            },
            peak_rss_mb: peak_rss_mb(),
            metrics_s: output.timing.metrics_s,
            wall_s: output.timing.wall_s,
        },
        cache: CacheInfo {
            hits: output.hits,
            misses: output.misses,
        },
        per_query,
        skipped_images: output.skipped_images.clone(),
    })
}

fn encoders(plan: &Plan, run: &RunPlan, dims: &[usize]) -> Result<Vec<EncoderInfo>, Error> {
    let StageKind::Fuse { weights, .. } = &plan.stages[run.fuse].kind else {
        unreachable!("a run's fuse stage is a Fuse")
    };
    let info = |(&p, (&weight, &dim)): (&usize, (&f64, &usize))| -> Result<EncoderInfo, Error> {
        Ok(match &plan.stages[p].kind {
            StageKind::Precomputed {
                npy: path, digest, ..
            } => EncoderInfo {
                plugin: "precomputed".into(),
                model: path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                digest: digest.to_string(),
                plugin_version: None,
                captions: None,
                dim,
                weight,
            },
            StageKind::Encode {
                encoder,
                captions: source,
                ..
            } => {
                let setup = plan.encoders.get(encoder)?;
                EncoderInfo {
                    plugin: setup.plugin.name().to_string(),
                    model: setup.model.id.clone(),
                    digest: setup.model.weights_digest.clone(),
                    plugin_version: Some(setup.plugin.version().to_string()),
                    captions: source.as_ref().map(|(s, seed)| match s {
                        Captions::Human(CaptionSource::Random) => format!("random (seed {seed})"),
                        Captions::Human(other) => captions::name(*other).to_string(),
                        Captions::Generated { generate } => format!("generated by {generate}"),
                    }),
                    dim,
                    weight,
                }
            }
            other => unreachable!("a part stage, not {other:?}"),
        })
    };
    run.parts
        .iter()
        .zip(weights.iter().zip(dims))
        .map(info)
        .collect()
}

/// Writes `captions/NAME.jsonl` for every captioner whose captions are in the cache (runs that
/// failed before captioning leave none), and describes each.
fn write_captions(
    plan: &Plan,
    store: &Store,
    dataset: &Dataset,
    dir: &Path,
) -> Result<Vec<CaptionerInfo>, Error> {
    let mut infos = Vec::new();
    for stage in &plan.stages {
        let StageKind::Captions { captioner } = &stage.kind else {
            continue;
        };
        let Some(generated) = generate::load(store, &stage.key, &dataset.samples)? else {
            continue;
        };
        let file = PathBuf::from("captions").join(format!("{captioner}.jsonl"));
        report::write_file(&dir.join(&file), &generated.to_jsonl())?;
        let setup = plan.captioners.get(captioner)?;
        let skipped = generated.skipped().len();
        infos.push(CaptionerInfo {
            name: captioner.clone(),
            plugin: setup.plugin.name().to_string(),
            plugin_version: setup.plugin.version().to_string(),
            model: setup.model.id.clone(),
            digest: setup.model.weights_digest.clone(),
            options: setup.options.clone(),
            file,
            captioned: generated.lines.len() - skipped,
            skipped,
        });
    }
    Ok(infos)
}

fn provenance(manifest: &Manifest, plan: &Plan, dataset: &Dataset) -> Provenance {
    let ds = &plan.dataset;
    Provenance {
        engine: format!("embedlab {}", env!("CARGO_PKG_VERSION")),
        manifest: manifest.path.clone(),
        manifest_digest: manifest.digest,
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        seed: manifest.experiment.seed,
        dataset: DatasetProvenance {
            name: dataset.name.clone(),
            format: match manifest.dataset.format {
                DatasetFormat::Coco => "coco".into(),
                DatasetFormat::Jsonl => "jsonl".into(),
                DatasetFormat::Oiv7 => "oiv7".into(),
            },
            fingerprint: dataset.fingerprint,
            files: ds
                .inputs
                .iter()
                .map(|(path, digest)| InputFile {
                    path: relative_to_manifest(manifest, path),
                    digest: *digest,
                })
                .collect(),
            min_label_set_count: ds.options.min_label_set_count,
            outlier_std: ds.options.outlier_std,
            limit: ds.options.limit,
            seed: ds.options.seed,
            n_samples: dataset.samples.len(),
            stats: dataset.stats.clone(),
            images: ds.images,
        },
        k: manifest.retrieval.k,
        cutoffs: manifest.cutoffs.clone(),
        backend: "exact (blocked f32 GEMM)".into(),
        captioners: Vec::new(),
    }
}

/// A path as the manifest's reader knows it: relative to the manifest's folder when inside it.
fn relative_to_manifest(manifest: &Manifest, path: &Path) -> PathBuf {
    let base = manifest
        .path
        .parent()
        .and_then(|p| std::path::absolute(p).ok());
    base.and_then(|b| path.strip_prefix(b).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`; 0 where unavailable).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
