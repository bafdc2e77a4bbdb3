//! Running a plan: each stage's output comes from memory, then the cache, then computation.
//!
//! Work is demand-driven from the end of each run: if a run's `metrics` and `knn` are cached,
//! its vectors are never loaded. Outputs computed here are stored before they are used, so a
//! killed run keeps everything it finished. Within one process each stage runs at most once.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::codec::{KnnRecord, decode_knn, encode_knn};
use super::{DATASET, EncoderSetups, KNN, KnnBackend, METRICS, Plan, RunPlan, StageKind};
use crate::cache::{Claim, Lookup, Store};
use crate::captions::{self, generate::Generated};
use crate::dataset::{self, Dataset, SampleId};
use crate::digest::Digest;
use crate::embed::encode::{EncoderFacts, SkippedRow};
use crate::embed::fusion::{FusionPart, fuse};
use crate::embed::{EmbedError, Vectors};
use crate::embed::{encode, precomputed};
use crate::error::Error;
use crate::manifest::{Captions, Manifest, Modality};
use crate::metrics::{self, Evaluation};
use crate::plugin::EncoderHandle;
use crate::progress::Progress;
use crate::report::results::{SkippedImage, StageResources};
use crate::retrieval::{self, FaissFacts, Neighbours};

/// How long a run's stages took when they were computed (cached stages report their original
/// times, so a warm rerun still says what the work costs).
#[derive(Clone, Debug, Default)]
pub struct Timing {
    pub embed_s: f64,
    pub knn_s: f64,
    pub metrics_s: f64,
    /// Wall time of this run in this invocation, cache loads included.
    pub wall_s: f64,
}

/// Everything the report needs about one finished run.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The samples the run evaluated: the dataset, less any whose image could not be read.
    pub dataset: Arc<Dataset>,
    /// The samples left out, and why.
    pub skipped_images: Vec<SkippedImage>,
    pub neighbours: Arc<Neighbours>,
    pub evaluation: Arc<Evaluation>,
    pub timing: Timing,
    /// Each part's dimension, in part order.
    pub part_dims: Vec<usize>,
    /// What each encoder part's encoder said of itself, in part order (default for precomputed
    /// parts).
    pub part_facts: Vec<EncoderFacts>,
    /// What each stage of the run cost when it was computed.
    pub stages: Vec<StageResources>,
    /// Stage outputs reused (from the cache or earlier in this invocation).
    pub hits: usize,
    /// Stage outputs computed.
    pub misses: usize,
    /// What the faiss search reported, for a run searching with faiss.
    pub faiss: Option<FaissFacts>,
    /// The exact search an approximate run is compared with (`compare_exact`).
    pub exact: Option<ExactOutput>,
}

/// The exact search (neighbours, and the seconds it took when computed) and metrics of an
/// approximate run's vectors.
#[derive(Clone, Debug)]
pub struct ExactOutput {
    pub knn: Arc<KnnRecord>,
    pub evaluation: Arc<Evaluation>,
}

pub struct Executor<'a> {
    manifest: &'a Manifest,
    plan: &'a Plan,
    store: &'a Store,
    progress: &'a Progress,
    dataset: Option<Arc<Dataset>>,
    /// Whether the dataset was computed in this invocation and no run has counted it yet.
    dataset_uncounted_miss: bool,
    vectors: HashMap<usize, Arc<Vectors>>,
    knn: HashMap<usize, Arc<KnnRecord>>,
    metrics: HashMap<usize, (Arc<Evaluation>, f64)>,
    /// Encoders created so far, by manifest name.
    encoders: HashMap<String, EncoderHandle>,
    /// Captioners created so far, by manifest name.
    captioners: HashMap<String, EncoderHandle>,
    /// Generated captions, by stage index.
    generated: HashMap<usize, Arc<Generated>>,
    /// Rows each image part (by stage index) could not read.
    skipped_rows: HashMap<usize, Vec<SkippedRow>>,
    /// What each encoder part cost when its output was computed, by stage index.
    encode_costs: HashMap<usize, PartCost>,
    /// k-NN stages computed (not reused) by this invocation.
    knn_computed: BTreeSet<usize>,
    /// Seconds spent encoding in this invocation (to keep it out of fusion's time).
    encoding_spent_s: f64,
}

/// What an encoder part cost, and whether this invocation computed it.
#[derive(Clone, Debug, Default)]
struct PartCost {
    encode_s: f64,
    peak_rss_mb: f64,
    encoder: EncoderFacts,
    computed: bool,
}

impl PartCost {
    fn of(meta: &encode::EncodedMeta, computed: bool) -> PartCost {
        PartCost {
            encode_s: meta.encode_s,
            peak_rss_mb: meta.peak_rss_mb,
            encoder: meta.encoder.clone(),
            computed,
        }
    }
}

#[derive(Default)]
struct Tally {
    hits: usize,
    misses: usize,
}

impl Tally {
    fn count(&mut self, reused: bool) {
        if reused {
            self.hits += 1
        } else {
            self.misses += 1
        }
    }
}

impl<'a> Executor<'a> {
    pub fn new(
        manifest: &'a Manifest,
        plan: &'a Plan,
        store: &'a Store,
        progress: &'a Progress,
    ) -> Self {
        Executor {
            manifest,
            plan,
            store,
            progress,
            dataset: None,
            dataset_uncounted_miss: false,
            vectors: HashMap::new(),
            knn: HashMap::new(),
            metrics: HashMap::new(),
            encoders: HashMap::new(),
            captioners: HashMap::new(),
            generated: HashMap::new(),
            skipped_rows: HashMap::new(),
            encode_costs: HashMap::new(),
            knn_computed: BTreeSet::new(),
            encoding_spent_s: 0.0,
        }
    }

    /// The loaded dataset (from memory, the cache, or the annotation files).
    pub fn dataset(&mut self) -> Result<Arc<Dataset>, Error> {
        match &self.dataset {
            Some(ds) => Ok(ds.clone()),
            None => self.load_dataset(),
        }
    }

    /// Runs one run's stages that are not available yet.
    pub fn run(&mut self, run: &RunPlan) -> Result<RunOutput, Error> {
        let output = self.run_stages(run);
        self.report_corrupt();
        output
    }

    fn run_stages(&mut self, run: &RunPlan) -> Result<RunOutput, Error> {
        let started = Instant::now();
        let mut tally = Tally::default();
        let full = self.dataset_counted(&mut tally)?;
        let knn = self.knn(run.knn, run.fuse, &run.name, &full, &mut tally)?;
        let dataset = match knn.skipped.is_empty() {
            true => full.clone(),
            false => Arc::new(full.without(&knn.skipped.iter().map(|s| s.id.as_str()).collect())),
        };
        let metrics_reused = self.metrics.contains_key(&run.metrics);
        let (evaluation, metrics_s) = self.evaluation(run.metrics, &dataset, &knn, &mut tally)?;
        let exact = match run.exact {
            Some(stages) => {
                let record = self.knn(stages.knn, run.fuse, &run.name, &full, &mut tally)?;
                let (evaluation, _) =
                    self.evaluation(stages.metrics, &dataset, &record, &mut tally)?;
                Some((stages.knn, record, evaluation))
            }
            None => None,
        };
        let costs = self.part_costs(run)?;
        let timing = Timing {
            embed_s: knn.embed_s + costs.iter().flatten().map(|c| c.encode_s).sum::<f64>(),
            knn_s: knn.knn_s,
            metrics_s,
            wall_s: started.elapsed().as_secs_f64(),
        };
        let n = dataset.samples.len();
        let mut stages: Vec<StageResources> = run
            .parts
            .iter()
            .zip(&costs)
            .filter_map(|(&part, cost)| Some(self.encode_resources(part, cost.as_ref()?, n)))
            .collect();
        let knn_reused = !self.knn_computed.contains(&run.knn);
        stages.push(StageResources::timed("fuse", n, knn.embed_s, knn_reused));
        stages.push(StageResources {
            peak_rss_mb: knn.peak_rss_mb,
            ..StageResources::timed("knn", n, knn.knn_s, knn_reused)
        });
        if let Some((index, record, _)) = &exact {
            stages.push(StageResources {
                peak_rss_mb: record.peak_rss_mb,
                ..StageResources::timed(
                    "knn exact (comparison)",
                    n,
                    record.knn_s,
                    !self.knn_computed.contains(index),
                )
            });
        }
        stages.push(StageResources::timed(
            "metrics",
            n,
            metrics_s,
            metrics_reused || metrics_s == 0.0,
        ));
        Ok(RunOutput {
            dataset,
            skipped_images: knn.skipped.clone(),
            neighbours: Arc::new(knn.neighbours.clone()),
            evaluation,
            timing,
            part_dims: self.part_dims(run)?,
            part_facts: costs
                .into_iter()
                .map(|c| c.map(|c| c.encoder).unwrap_or_default())
                .collect(),
            stages,
            hits: tally.hits,
            misses: tally.misses,
            faiss: knn.faiss.clone(),
            exact: exact.map(|(_, knn, evaluation)| ExactOutput { knn, evaluation }),
        })
    }

    fn encode_resources(&self, part: usize, cost: &PartCost, n: usize) -> StageResources {
        let label = match &self.plan.stages[part].kind {
            StageKind::Encode {
                encoder, captions, ..
            } => match captions {
                Some((Captions::Human(source), _)) => {
                    format!("encode {encoder} ({} captions)", captions::name(*source))
                }
                Some((Captions::Generated { generate }, _)) => {
                    format!("encode {encoder} (captions by {generate})")
                }
                None => format!("encode {encoder} (images)"),
            },
            other => unreachable!("encoder costs belong to encode stages, not {other:?}"),
        };
        StageResources {
            peak_rss_mb: cost.peak_rss_mb,
            parameters: Some(cost.encoder.parameters),
            device: Some(cost.encoder.device.clone()).filter(|d| !d.is_empty()),
            ..StageResources::timed(&label, n, cost.encode_s, !cost.computed)
        }
    }

    fn dataset_counted(&mut self, tally: &mut Tally) -> Result<Arc<Dataset>, Error> {
        let ds = match &self.dataset {
            Some(ds) => ds.clone(),
            None => self.load_dataset()?,
        };
        // A dataset computed in this invocation is one miss, owned by the first run that uses it.
        tally.count(!std::mem::take(&mut self.dataset_uncounted_miss));
        Ok(ds)
    }

    fn load_dataset(&mut self) -> Result<Arc<Dataset>, Error> {
        let stage = &self.plan.dataset;
        let found = self.claim(DATASET, &stage.key, "the dataset", || {
            self.load_json::<Dataset>(DATASET, &stage.key)
        })?;
        let ds = match found {
            Claim::Found(ds) => Arc::new(ds),
            Claim::Mine(_computing) => {
                let ds = match &stage.loaded {
                    Some(ds) => ds.clone(),
                    None => {
                        self.progress
                            .info(&format!("loading dataset {}", stage.options.name));
                        Arc::new(dataset::load_with_progress(
                            &stage.source,
                            &stage.options,
                            self.progress,
                        )?)
                    }
                };
                self.store.put(
                    DATASET,
                    &stage.key,
                    &serde_json::to_vec(&*ds).expect("serialises"),
                )?;
                self.dataset_uncounted_miss = true;
                ds
            }
        };
        self.dataset = Some(ds.clone());
        self.report_corrupt();
        Ok(ds)
    }

    /// The output of `knn` stage `index` (searching the vectors of `fuse` stage `fuse`, for run
    /// `run`): from memory, the cache, or searched now.
    fn knn(
        &mut self,
        index: usize,
        fuse: usize,
        run: &str,
        ds: &Dataset,
        tally: &mut Tally,
    ) -> Result<Arc<KnnRecord>, Error> {
        let stage = &self.plan.stages[index];
        if let Some(record) = self.knn.get(&index) {
            tally.count(true);
            return Ok(record.clone());
        }
        let key = stage.key;
        let found = self.claim(KNN, &key, &format!("the k-NN search of run {run}"), || {
            Ok(match self.store.get(KNN, &key)? {
                Lookup::Hit(bytes) => decode_knn(&bytes),
                _ => None,
            })
        })?;
        let record = match found {
            Claim::Found(record) => {
                tally.count(true);
                record
            }
            Claim::Mine(_computing) => {
                tally.count(false);
                self.knn_computed.insert(index);
                let started = Instant::now();
                let encoding_before = self.encoding_spent_s;
                let (vectors, skipped) = self.fused(fuse, ds, tally)?;
                let encoding = self.encoding_spent_s - encoding_before;
                let embed_s = started.elapsed().as_secs_f64() - encoding;
                crate::resources::reset_peak_rss();
                let started = Instant::now();
                let (neighbours, faiss) = self.search(index, &vectors, run)?;
                let record = KnnRecord {
                    neighbours,
                    embed_s,
                    knn_s: started.elapsed().as_secs_f64(),
                    peak_rss_mb: crate::resources::peak_rss_mb(),
                    skipped,
                    faiss,
                };
                self.store.put(KNN, &key, &encode_knn(&record))?;
                record
            }
        };
        let record = Arc::new(record);
        self.knn.insert(index, record.clone());
        Ok(record)
    }

    /// Searches `vectors` as `knn` stage `index` says; a faiss search also reports its facts.
    fn search(
        &self,
        index: usize,
        vectors: &Vectors,
        run: &str,
    ) -> Result<(Neighbours, Option<FaissFacts>), Error> {
        let StageKind::Knn { k, backend } = &self.plan.stages[index].kind else {
            unreachable!("search() is called with knn stages only")
        };
        let bar = self.progress.bar(vectors.n as u64, "knn");
        let tick = |done: usize| bar.inc(done as u64);
        let found = match backend {
            KnnBackend::Exact => {
                bar.set_message(format!("knn {run}"));
                let options = retrieval::ExactOptions {
                    k: *k,
                    query_block: self.manifest.retrieval.query_block,
                    ..Default::default()
                };
                (retrieval::search(vectors, &options, &tick)?, None)
            }
            KnnBackend::Faiss { index, parameters } => {
                bar.set_message(format!("knn {run} (faiss {index})"));
                let (neighbours, facts) = faiss_search(vectors, *k, index, parameters, &tick)?;
                (neighbours, Some(facts))
            }
        };
        bar.finish_and_clear();
        Ok(found)
    }

    /// The evaluation of `metrics` stage `index` on `knn`'s neighbours, and the seconds it took
    /// (0 when reused).
    fn evaluation(
        &mut self,
        index: usize,
        ds: &Dataset,
        knn: &KnnRecord,
        tally: &mut Tally,
    ) -> Result<(Arc<Evaluation>, f64), Error> {
        if let Some(found) = self.metrics.get(&index) {
            tally.count(true);
            return Ok(found.clone());
        }
        let key = self.plan.stages[index].key;
        let found = self.claim(METRICS, &key, "metrics", || {
            self.load_json::<Evaluation>(METRICS, &key)
        })?;
        let found = match found {
            Claim::Found(evaluation) => {
                tally.count(true);
                (Arc::new(evaluation), 0.0)
            }
            Claim::Mine(_computing) => {
                tally.count(false);
                let started = Instant::now();
                let evaluation =
                    metrics::evaluate(&knn.neighbours, &ds.label_set_ids(), &self.manifest.cutoffs);
                let seconds = started.elapsed().as_secs_f64();
                self.store.put(
                    METRICS,
                    &key,
                    &serde_json::to_vec(&evaluation).expect("serialises"),
                )?;
                (Arc::new(evaluation), seconds)
            }
        };
        self.metrics.insert(index, found.clone());
        Ok(found)
    }

    /// Each part's dimension, from headers and cache records (no vectors are loaded for this).
    fn part_dims(&self, run: &RunPlan) -> Result<Vec<usize>, Error> {
        let dim = |part: usize| -> Result<usize, Error> {
            let stage = &self.plan.stages[part];
            Ok(match &stage.kind {
                StageKind::Precomputed { npy, .. } => crate::embed::npy::read_shape(npy)?.1,
                _ => encode::load_meta(self.store, &stage.key)?.map_or(0, |m| m.dim),
            })
        };
        run.parts.iter().map(|&p| dim(p)).collect()
    }

    /// What each of a run's encoder parts cost when it was computed (read from its cache entry
    /// when this invocation did not compute it); `None` for precomputed parts.
    fn part_costs(&mut self, run: &RunPlan) -> Result<Vec<Option<PartCost>>, Error> {
        let mut costs = Vec::with_capacity(run.parts.len());
        for &part in &run.parts {
            if !matches!(self.plan.stages[part].kind, StageKind::Encode { .. }) {
                costs.push(None);
                continue;
            }
            if !self.encode_costs.contains_key(&part) {
                let meta = encode::load_meta(self.store, &self.plan.stages[part].key)?;
                let cost = meta.map_or_else(PartCost::default, |m| PartCost::of(&m, false));
                self.encode_costs.insert(part, cost);
            }
            costs.push(Some(self.encode_costs[&part].clone()));
        }
        Ok(costs)
    }

    /// The fused vectors of a `fuse` stage, building its parts as needed, and the samples left
    /// out because an image part could not read their image (their rows are dropped from every
    /// part before fusing).
    fn fused(
        &mut self,
        index: usize,
        ds: &Dataset,
        tally: &mut Tally,
    ) -> Result<(Arc<Vectors>, Vec<SkippedImage>), Error> {
        let stage = self.plan.stages[index].clone();
        let StageKind::Fuse {
            normalize_parts,
            weights,
        } = &stage.kind
        else {
            unreachable!("fused() is called with fuse stages only")
        };
        let parts = stage
            .deps
            .iter()
            .map(|&p| self.part(p, ds, tally))
            .collect::<Result<Vec<_>, _>>()?;
        let skipped = self.skipped_in(&stage.deps, ds);
        if let Some(v) = self.vectors.get(&index) {
            return Ok((v.clone(), skipped));
        }
        let dropped: BTreeSet<&str> = skipped.iter().map(|s| s.id.as_str()).collect();
        let kept: Vec<usize> = (0..ds.samples.len())
            .filter(|&row| !dropped.contains(ds.samples[row].id.0.as_str()))
            .collect();
        let parts: Vec<Arc<Vectors>> = match dropped.is_empty() {
            true => parts,
            false => parts.iter().map(|v| Arc::new(v.select(&kept))).collect(),
        };
        let inputs: Vec<FusionPart> = parts
            .iter()
            .zip(weights)
            .map(|(v, &w)| FusionPart {
                vectors: v,
                weight: w as f32,
            })
            .collect();
        let fused = fuse(&inputs, *normalize_parts).map_err(|e| name_row(e, ds, &kept))?;
        let fused = Arc::new(fused);
        self.vectors.insert(index, fused.clone());
        Ok((fused, skipped))
    }

    /// The samples any of `parts` could not read an image for, in row order, each once.
    fn skipped_in(&self, parts: &[usize], ds: &Dataset) -> Vec<SkippedImage> {
        let mut rows: Vec<&SkippedRow> = parts
            .iter()
            .filter_map(|p| self.skipped_rows.get(p))
            .flatten()
            .collect();
        rows.sort_by_key(|s| s.row);
        rows.dedup_by_key(|s| s.row);
        rows.into_iter()
            .map(|s| {
                let sample = &ds.samples[s.row];
                SkippedImage {
                    id: sample.id.to_string(),
                    path: sample
                        .image
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    reason: s.reason.to_string(),
                }
            })
            .collect()
    }

    fn part(
        &mut self,
        index: usize,
        ds: &Dataset,
        tally: &mut Tally,
    ) -> Result<Arc<Vectors>, Error> {
        if let Some(v) = self.vectors.get(&index) {
            return Ok(v.clone());
        }
        let vectors = match &self.plan.stages[index].kind {
            StageKind::Precomputed { npy, ids, .. } => {
                self.progress.detail(&format!("loading {}", npy.display()));
                precomputed::load(npy, ids, &sample_ids(ds))?
            }
            StageKind::Encode {
                encoder,
                input,
                captions,
            } => {
                let (encoder, input, captions) = (encoder.clone(), *input, captions.clone());
                self.encoded(index, &encoder, input, captions, ds, tally)?
            }
            other => unreachable!("part() is called with vector stages only, not {other:?}"),
        };
        let vectors = Arc::new(vectors);
        self.vectors.insert(index, vectors.clone());
        Ok(vectors)
    }

    /// An encoder part's vectors: from the cache, or encoded now (resuming stored chunks).
    fn encoded(
        &mut self,
        index: usize,
        encoder: &str,
        input: Modality,
        captions: Option<(Captions, u64)>,
        ds: &Dataset,
        tally: &mut Tally,
    ) -> Result<Vectors, Error> {
        // Samples without a generated caption are left out, like unreadable images.
        let generated = match &captions {
            Some((Captions::Generated { .. }, _)) => {
                let dep = self.plan.stages[index].deps[0];
                Some(self.generated_captions(dep, ds, tally)?)
            }
            _ => None,
        };
        let uncaptioned = generated.as_ref().map(|g| g.skipped()).unwrap_or_default();
        let key = self.plan.stages[index].key;
        let store = self.store;
        let what = format!("the vectors of encoder {encoder}");
        let found = self.claim(encode::STAGE, &key, &what, || encode::load(store, &key))?;
        let _computing = match found {
            Claim::Mine(lock) => lock,
            Claim::Found(found) => {
                tally.count(true);
                self.encode_costs
                    .insert(index, PartCost::of(&found.meta, false));
                let skipped = [found.meta.skipped, uncaptioned].concat();
                self.skipped_rows.insert(index, skipped);
                return Ok(found.vectors);
            }
        };
        tally.count(false);
        let (store, progress) = (self.store, self.progress);
        let strict = self.manifest.dataset.strict;
        let bar = progress.bar(ds.samples.len() as u64, "encode");
        let tick = |rows: usize| bar.inc(rows as u64);
        let encoded = match captions.filter(|_| input == Modality::Captions) {
            Some((Captions::Human(source), seed)) => {
                let texts = captions::texts(&ds.samples, source, seed)?;
                bar.set_message(format!("{encoder} {}", captions::name(source)));
                encode::encode_texts(store, &key, self.encoder(encoder)?, &texts, &tick)
            }
            Some((Captions::Generated { generate }, _)) => {
                let texts = generated.expect("loaded above").texts();
                bar.set_message(format!("{encoder} captions of {generate}"));
                encode::encode_texts(store, &key, self.encoder(encoder)?, &texts, &tick)
            }
            None => {
                let paths: Vec<_> = ds.samples.iter().map(|s| s.image.clone()).collect();
                bar.set_message(format!("{encoder} images"));
                let handle = self.encoder(encoder)?;
                encode::encode_images(store, &key, handle, &paths, strict, &tick)
            }
        }
        .map_err(|e| in_table("encoder", encoder, e))?;
        bar.finish_and_clear();
        if let Some(summary) = encode::skips_summary(&encoded.meta.skipped, &images(ds)) {
            self.progress.warn(&format!(
                "{encoder}: {summary}; those samples are left out (listed in the report)"
            ));
        }
        self.skipped_rows
            .insert(index, [encoded.meta.skipped.clone(), uncaptioned].concat());
        if encoded.reused_chunks > 0 {
            self.progress.info(&format!(
                "{encoder}: resumed, {} of {} chunks were already encoded",
                encoded.reused_chunks, encoded.meta.chunks
            ));
        }
        self.encoding_spent_s += encoded.meta.encode_s;
        self.encode_costs
            .insert(index, PartCost::of(&encoded.meta, true));
        Ok(encoded.vectors)
    }

    /// The captions of a `captions` stage: from memory, the cache, or generated now (resuming
    /// stored chunks).
    fn generated_captions(
        &mut self,
        index: usize,
        ds: &Dataset,
        tally: &mut Tally,
    ) -> Result<Arc<Generated>, Error> {
        if let Some(found) = self.generated.get(&index) {
            tally.count(true);
            return Ok(found.clone());
        }
        let stage = &self.plan.stages[index];
        let StageKind::Captions { captioner } = &stage.kind else {
            unreachable!("generated captions come from a captions stage")
        };
        let (key, captioner) = (stage.key, captioner.clone());
        let store = self.store;
        let what = format!("the captions of {captioner}");
        let found = self.claim(captions::generate::STAGE, &key, &what, || {
            captions::generate::load(store, &key, &ds.samples)
        })?;
        let generated = match found {
            Claim::Found(found) => {
                tally.count(true);
                found
            }
            Claim::Mine(_computing) => {
                tally.count(false);
                let (store, progress) = (self.store, self.progress);
                let strict = self.manifest.dataset.strict;
                let bar = progress.bar(ds.samples.len() as u64, "caption");
                bar.set_message(format!("{captioner} captions"));
                let tick = |rows: usize| bar.inc(rows as u64);
                let handle = self.captioner(&captioner)?;
                let generated =
                    captions::generate::generate(store, &key, handle, &ds.samples, strict, &tick)
                        .map_err(|e| in_table("captioner", &captioner, e))?;
                bar.finish_and_clear();
                if generated.reused_chunks > 0 {
                    self.progress.info(&format!(
                        "{captioner}: resumed, {} chunks were already captioned",
                        generated.reused_chunks
                    ));
                }
                if let Some(summary) = encode::skips_summary(&generated.skipped(), &images(ds)) {
                    self.progress.warn(&format!(
                        "{captioner}: {summary}; those samples are left out of runs using its captions"
                    ));
                }
                self.encoding_spent_s += generated.generate_s;
                generated
            }
        };
        let generated = Arc::new(generated);
        self.generated.insert(index, generated.clone());
        Ok(generated)
    }

    /// The captioner named in the manifest, created on first use.
    fn captioner(&mut self, name: &str) -> Result<&mut EncoderHandle, Error> {
        created(
            &mut self.captioners,
            &self.plan.captioners,
            name,
            self.progress,
        )
    }

    /// The encoder named in the manifest, created on first use.
    fn encoder(&mut self, name: &str) -> Result<&mut EncoderHandle, Error> {
        created(&mut self.encoders, &self.plan.encoders, name, self.progress)
    }

    /// A JSON stage output from the cache; a corrupt or unreadable entry is missed (the store
    /// remembers a corrupt one for [`Executor::report_corrupt`]).
    fn load_json<T: DeserializeOwned>(
        &self,
        folder: &str,
        key: &Digest,
    ) -> Result<Option<T>, Error> {
        Ok(match self.store.get(folder, key)? {
            Lookup::Hit(bytes) => serde_json::from_slice(&bytes).ok(),
            _ => None,
        })
    }

    /// The cache entry `stage/key` as `lookup` reads it, or the right to compute it: while
    /// another process computes `what`, this one says so and waits for its result.
    fn claim<T>(
        &self,
        stage: &str,
        key: &Digest,
        what: &str,
        lookup: impl FnMut() -> Result<Option<T>, Error>,
    ) -> Result<Claim<T>, Error> {
        let waiting = || {
            self.progress.info(&format!(
                "waiting for another embedlab process computing {what} (cache entry {stage}/{})",
                key.short()
            ))
        };
        self.store.claim(stage, key, waiting, lookup)
    }

    /// Warns of every cache entry found corrupt so far: each was treated as missing and is
    /// recomputed (and overwritten) by this invocation.
    fn report_corrupt(&self) {
        for path in self.store.take_corrupt() {
            self.progress.warn(&format!(
                "{}: corrupt cache entry (checksum mismatch or truncated); recomputing it",
                path.display()
            ));
        }
    }
}

/// A faiss search of `vectors`: its neighbours and facts.
#[cfg(feature = "faiss")]
fn faiss_search(
    vectors: &Vectors,
    k: usize,
    index: &str,
    parameters: &str,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Neighbours, FaissFacts), Error> {
    let options = retrieval::faiss::FaissOptions {
        k,
        index: index.to_string(),
        parameters: parameters.to_string(),
    };
    let found = retrieval::faiss::search(vectors, &options, progress)?;
    Ok((found.neighbours, found.facts))
}

/// Without the feature a manifest cannot ask for faiss; a plan that does anyway fails plainly.
#[cfg(not(feature = "faiss"))]
fn faiss_search(
    _vectors: &Vectors,
    _k: usize,
    _index: &str,
    _parameters: &str,
    _progress: &(dyn Fn(usize) + Sync),
) -> Result<(Neighbours, FaissFacts), Error> {
    Err(Error::Unsupported(retrieval::FAISS_MISSING.to_string()))
}

/// The handle of `name` in `handles`, created from its setup on first use.
fn created<'h>(
    handles: &'h mut HashMap<String, EncoderHandle>,
    setups: &EncoderSetups,
    name: &str,
    progress: &Progress,
) -> Result<&'h mut EncoderHandle, Error> {
    if !handles.contains_key(name) {
        let setup = setups.get(name)?;
        progress.info(&format!(
            "loading {} {} ({} plugin)",
            setups.role(),
            setup.model.id,
            setup.plugin.name()
        ));
        let handle = setup
            .create()
            .map_err(|e| in_table(setups.role(), name, e))?;
        handles.insert(name.to_string(), handle);
    }
    Ok(handles.get_mut(name).expect("just inserted"))
}

/// A plugin's error while the manifest's encoder or captioner `name` runs, naming that table: the
/// plugin's own message names its library, not which table chose it.
fn in_table(role: &'static str, name: &str, error: Error) -> Error {
    match error {
        Error::Plugin(e) => Error::Encoder {
            role,
            name: name.to_string(),
            message: e.to_string(),
        },
        other => other,
    }
}

/// Fusion reports rows (of the `kept` samples) by index; users know samples by id.
fn name_row(error: EmbedError, ds: &Dataset, kept: &[usize]) -> Error {
    match error {
        EmbedError::ZeroVector { row } | EmbedError::NonFiniteVector { row } => Error::WithSample {
            id: ds.samples[kept[row]].id.to_string(),
            source: error,
        },
        other => other.into(),
    }
}

/// Each sample's image file, in row order.
fn images(ds: &Dataset) -> Vec<Option<&Path>> {
    ds.samples.iter().map(|s| s.image.as_deref()).collect()
}

fn sample_ids(ds: &Dataset) -> Vec<SampleId> {
    ds.samples.iter().map(|s| s.id.clone()).collect()
}
