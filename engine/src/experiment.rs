//! One experiment end to end: plan, run what is not cached, write the report.
//!
//! A run that fails (a missing vectors file, an encoder this build lacks) is reported and the
//! others go on; the dataset failing stops everything, since every run needs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cache::Store;
use crate::captions::{self, generate};
use crate::dataset::Dataset;
use crate::embed::encode::EncoderFacts;
use crate::error::Error;
use crate::manifest::{CaptionSource, Captions, DatasetFormat, Manifest, Modality, Search};
use crate::metrics::significance::bootstrap_intervals;
use crate::metrics::{Evaluation, Metric, article};
use crate::plan::{Environment, Executor, KnnBackend, Plan, RunOutput, RunPlan, StageKind};
use crate::progress::Progress;
use crate::report::compare::{self, QueryScores, TestSettings};
use crate::report::results::{
    CacheInfo, CaptionerInfo, DatasetProvenance, EncoderInfo, FailedRun, Fusion, InputFile,
    LabelSetScore, Provenance, ReferenceCheck, Results, RetrievalInfo, RunResult, StatisticsInfo,
    TimingInfo,
};
use crate::report::{self, Written, family};
use crate::retrieval::Neighbours;

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
    check_enough_samples(manifest, &dataset)?;
    let dir = settings.out_dir.join(&manifest.experiment.name);
    let mut runs = Vec::new();
    let mut scores = Vec::new();
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
        crate::interrupt::check(|| format!("before run \"{}\"", run_plan.name))?;
        let outcome = executor
            .run(run_plan)
            .and_then(|output| finish_run(manifest, &plan, run_plan, &output, &dir));
        match outcome {
            Ok((result, run_scores)) => {
                progress.info(&run_line(&result, manifest.retrieval.k));
                runs.push(result);
                scores.push(run_scores);
            }
            Err(e) if e.is_interrupted() => return Err(e),
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
    let named: Vec<(&str, &QueryScores)> =
        runs.iter().map(|r| r.name.as_str()).zip(&scores).collect();
    let significance = compare::pairwise(
        &named,
        &manifest.metrics.significance,
        test_settings(manifest),
    );
    let references = check_references(manifest, &runs);
    let results = Results {
        experiment: manifest.experiment.name.clone(),
        description: manifest.experiment.description.clone(),
        runs,
        failed,
        provenance,
        significance,
        references,
    };
    let written = report::write(&dir, &results)?;
    Ok(Summary { written, results })
}

/// Every run would fail its search when the dataset keeps no more than k samples: stop at once,
/// naming the key and why the samples went.
fn check_enough_samples(manifest: &Manifest, dataset: &Dataset) -> Result<(), Error> {
    let k = manifest.retrieval.k;
    if dataset.samples.len() > k {
        return Ok(());
    }
    Err(Error::TooFewSamples {
        manifest: manifest.path.clone(),
        k,
        dataset: dataset.name.clone(),
        kept: dataset.samples.len(),
        loaded: dataset.stats.loaded,
        dropped: dataset.stats.dropped_summary(),
    })
}

fn run_line(result: &RunResult, k: usize) -> String {
    let recall = (result.retrieval.as_ref())
        .and_then(|r| r.recall_vs_exact)
        .map(|r| format!("  recall vs exact {r:.4}"))
        .unwrap_or_default();
    let get = |m: &str| {
        result
            .metrics
            .get(&format!("{m}@{k}"))
            .copied()
            .unwrap_or(0.0)
    };
    format!(
        "run {:<28} mrr@{k} {:.4}  map_list@{k} {:.4}  hit_rate@{k} {:.4}{recall}  (cache {}/{} hits)",
        result.name,
        get("mrr"),
        get("map_list"),
        get("hit_rate"),
        result.cache.hits,
        result.cache.hits + result.cache.misses
    )
}

fn test_settings(manifest: &Manifest) -> TestSettings {
    TestSettings {
        permutations: manifest.metrics.permutations,
        seed: manifest.experiment.seed,
        alpha: manifest.metrics.alpha,
    }
}

/// Each `[[reference]]` beside our value (article-compatible or exact, as it asks).
fn check_references(manifest: &Manifest, runs: &[RunResult]) -> Vec<ReferenceCheck> {
    use crate::manifest::schema::Scoring;
    manifest
        .references
        .iter()
        .map(|reference| {
            let scoring = reference
                .scoring
                .unwrap_or(if manifest.metrics.article_compatible {
                    Scoring::Article
                } else {
                    Scoring::Exact
                });
            let ours = runs.iter().find(|r| r.name == reference.run).and_then(|r| {
                match scoring {
                    Scoring::Article => r.article_compatible.get(&reference.metric),
                    Scoring::Exact => r.metrics.get(&reference.metric),
                }
                .copied()
            });
            let difference = ours.map(|v| v - reference.value);
            ReferenceCheck {
                run: reference.run.clone(),
                metric: reference.metric.clone(),
                scoring: match scoring {
                    Scoring::Article => "article",
                    Scoring::Exact => "exact",
                }
                .to_string(),
                reference: reference.value,
                ours,
                difference,
                tolerance: reference.tolerance,
                source: reference.source.clone(),
                within: difference.is_some_and(|d| d.abs() <= reference.tolerance),
            }
        })
        .collect()
}

fn finish_run(
    manifest: &Manifest,
    plan: &Plan,
    run: &RunPlan,
    output: &RunOutput,
    dir: &Path,
) -> Result<(RunResult, QueryScores), Error> {
    let dataset = &output.dataset;
    let per_query = if manifest.metrics.per_query {
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
    let encoders = encoders(plan, run, output)?;
    let declared = manifest.runs.iter().find(|r| r.name == run.name);
    let family = match declared.and_then(|r| r.family.clone()) {
        Some(family) => family,
        None => family::classify(&encoders).to_string(),
    };
    let n = dataset.samples.len();
    let computed_s = output.timing.embed_s + output.timing.knn_s;
    let StageKind::Fuse {
        normalize_parts, ..
    } = plan.stages[run.fuse].kind
    else {
        unreachable!("a run's fuse stage is a Fuse")
    };
    let scores = QueryScores::of(dataset, &output.evaluation, &manifest.metrics.significance);
    let label_set_ids = dataset.label_set_ids();
    let result = RunResult {
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
            peak_rss_mb: crate::resources::peak_rss_mb(),
            metrics_s: output.timing.metrics_s,
            wall_s: output.timing.wall_s,
        },
        cache: CacheInfo {
            hits: output.hits,
            misses: output.misses,
        },
        per_query,
        skipped_images: output.skipped_images.clone(),
        family,
        intervals: intervals(manifest, &output.evaluation),
        article_compatible: if manifest.metrics.article_compatible {
            article_scores(&output.neighbours, &label_set_ids, &manifest.cutoffs)
        } else {
            BTreeMap::new()
        },
        label_sets: label_set_scores(dataset, &output.evaluation, manifest.retrieval.k),
        stages: output.stages.clone(),
        retrieval: Some(retrieval_info(plan, run, output)),
    };
    Ok((result, scores))
}

/// The run's search as results.json describes it; an approximate one beside the exact search of
/// the same vectors, when compared.
fn retrieval_info(plan: &Plan, run: &RunPlan, output: &RunOutput) -> RetrievalInfo {
    let StageKind::Knn { backend, .. } = &plan.stages[run.knn].kind else {
        unreachable!("a run's knn stage is a Knn")
    };
    let KnnBackend::Faiss { index, parameters } = backend else {
        return RetrievalInfo {
            backend: "exact".into(),
            seconds: output.timing.knn_s,
            ..RetrievalInfo::default()
        };
    };
    let facts = output.faiss.clone().unwrap_or_default();
    let mut info = RetrievalInfo {
        backend: "faiss".into(),
        index: Some(index.clone()),
        parameters: Some(parameters.clone()),
        seconds: facts.search_s,
        build_s: Some(facts.build_s),
        threads: Some(facts.threads),
        faiss_version: Some(facts.version),
        ..RetrievalInfo::default()
    };
    if let Some(exact) = &output.exact {
        info.recall_vs_exact = Some(crate::retrieval::recall(
            &output.neighbours,
            &exact.knn.neighbours,
        ));
        info.exact_seconds = Some(exact.knn.knn_s);
        info.exact_metrics = exact.evaluation.means.clone();
        info.metric_differences = (output.evaluation.means.iter())
            .filter_map(|(key, ours)| Some((key.clone(), ours - exact.evaluation.means.get(key)?)))
            .collect();
    }
    info
}

/// Bootstrap intervals of every metric at every cutoff, all from the same resamples.
fn intervals(manifest: &Manifest, evaluation: &Evaluation) -> BTreeMap<String, [f64; 2]> {
    if manifest.metrics.bootstrap == 0 {
        return BTreeMap::new();
    }
    let mut keys = Vec::new();
    let mut series = Vec::new();
    for &cutoff in &evaluation.cutoffs {
        for metric in Metric::ALL {
            keys.push(metric.key(cutoff));
            series.push(
                evaluation
                    .series(metric, cutoff)
                    .expect("an evaluated cutoff"),
            );
        }
    }
    let found = bootstrap_intervals(
        &series,
        manifest.metrics.bootstrap,
        manifest.metrics.confidence,
        manifest.experiment.seed,
    );
    keys.into_iter()
        .zip(found)
        .map(|(k, (lo, hi))| (k, [lo, hi]))
        .collect()
}

/// The flag-only metrics at each cutoff as the study's scorer computed them.
fn article_scores(
    neighbours: &Neighbours,
    label_set_ids: &[u32],
    cutoffs: &[usize],
) -> BTreeMap<String, f64> {
    let flags = crate::metrics::hit_flags(neighbours, label_set_ids);
    let mut scores = BTreeMap::new();
    for &cutoff in cutoffs {
        let hits = article::HitMatrix {
            flags: flags
                .chunks(neighbours.k)
                .flat_map(|row| row[..cutoff].iter().copied())
                .collect(),
            k: cutoff,
        };
        scores.extend(article::article_metrics(&hits));
    }
    scores
}

/// How many label sets the per-label-set scores cover: the most frequent ones.
const LABEL_SETS_SHOWN: usize = 8;

/// Mean MRR at k of the dataset's most frequent label sets (ties: by name).
fn label_set_scores(dataset: &Dataset, evaluation: &Evaluation, k: usize) -> Vec<LabelSetScore> {
    let Some(c) = evaluation.cutoffs.iter().position(|&x| x == k) else {
        return Vec::new();
    };
    let mut groups: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (sample, scores) in dataset.samples.iter().zip(&evaluation.per_query) {
        let group = groups.entry(sample.labels.to_string()).or_default();
        group.0 += 1;
        group.1 += scores[c][0];
    }
    let mut sets: Vec<LabelSetScore> = groups
        .into_iter()
        .map(|(labels, (queries, sum))| LabelSetScore {
            labels,
            queries,
            mrr: sum / queries as f64,
        })
        .collect();
    sets.sort_by(|a, b| {
        b.queries
            .cmp(&a.queries)
            .then_with(|| a.labels.cmp(&b.labels))
    });
    sets.truncate(LABEL_SETS_SHOWN);
    sets
}

fn encoders(plan: &Plan, run: &RunPlan, output: &RunOutput) -> Result<Vec<EncoderInfo>, Error> {
    let StageKind::Fuse { weights, .. } = &plan.stages[run.fuse].kind else {
        unreachable!("a run's fuse stage is a Fuse")
    };
    let dims = output.part_dims.iter().zip(&output.part_facts);
    let info = |(&p, (&weight, (&dim, facts))): (&usize, (&f64, (&usize, &EncoderFacts)))| -> Result<EncoderInfo, Error> {
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
                input: None,
                modalities: Vec::new(),
                parameters: None,
                dim,
                weight,
            },
            StageKind::Encode {
                encoder,
                input,
                captions: source,
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
                    input: Some(match input {
                        Modality::Captions => "captions".to_string(),
                        Modality::Image => "image".to_string(),
                    }),
                    modalities: facts.modalities.clone(),
                    parameters: Some(facts.parameters).filter(|&p| p > 0),
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
        engine: format!(
            "embedlab {} ({} build)",
            env!("CARGO_PKG_VERSION"),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        ),
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
        backend: backends(manifest),
        captioners: Vec::new(),
        statistics: Some(StatisticsInfo {
            bootstrap: manifest.metrics.bootstrap,
            confidence: manifest.metrics.confidence,
            permutations: manifest.metrics.permutations,
            seed: manifest.experiment.seed,
        }),
    }
}

/// The search backends the runs use, e.g. `exact (blocked f32 GEMM)` or, with faiss runs,
/// `exact (blocked f32 GEMM); faiss 1.12.0 (HNSW32, Flat)`.
fn backends(manifest: &Manifest) -> String {
    let mut exact = false;
    let mut indexes: Vec<String> = Vec::new();
    for run in &manifest.runs {
        match manifest.search(run) {
            Search::Exact => exact = true,
            Search::Faiss {
                index,
                parameters,
                compare_exact,
            } => {
                exact |= compare_exact;
                let described = match parameters.as_str() {
                    "" => index,
                    p => format!("{index} {p}"),
                };
                if !indexes.contains(&described) {
                    indexes.push(described);
                }
            }
        }
    }
    let mut parts = Vec::new();
    if exact {
        parts.push("exact (blocked f32 GEMM)".to_string());
    }
    if !indexes.is_empty() {
        parts.push(format!(
            "faiss {} ({})",
            crate::retrieval::FAISS_VERSION,
            indexes.join(", ")
        ));
    }
    parts.join("; ")
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
