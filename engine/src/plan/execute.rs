//! Running a plan: each stage's output comes from memory, then the cache, then computation.
//!
//! Work is demand-driven from the end of each run: if a run's `metrics` and `knn` are cached,
//! its vectors are never loaded. Outputs computed here are stored before they are used, so a
//! killed run keeps everything it finished. Within one process each stage runs at most once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::codec::{KnnRecord, decode_knn, encode_knn};
use super::{DATASET, KNN, METRICS, Plan, RunPlan, StageKind};
use crate::cache::{Lookup, Store};
use crate::dataset::{self, Dataset, SampleId};
use crate::digest::Digest;
use crate::embed::fusion::{FusionPart, fuse};
use crate::embed::precomputed;
use crate::embed::{EmbedError, Vectors};
use crate::error::Error;
use crate::manifest::Manifest;
use crate::metrics::{self, Evaluation};
use crate::progress::Progress;
use crate::retrieval::{self, Neighbours};

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
    pub neighbours: Arc<Neighbours>,
    pub evaluation: Arc<Evaluation>,
    pub timing: Timing,
    /// Stage outputs reused (from the cache or earlier in this invocation).
    pub hits: usize,
    /// Stage outputs computed.
    pub misses: usize,
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
        let started = Instant::now();
        let mut tally = Tally::default();
        let dataset = self.dataset_counted(&mut tally)?;
        let knn = self.knn(run, &dataset, &mut tally)?;
        let (evaluation, metrics_s) = self.evaluation(run, &dataset, &knn, &mut tally)?;
        let timing = Timing {
            embed_s: knn.embed_s,
            knn_s: knn.knn_s,
            metrics_s,
            wall_s: started.elapsed().as_secs_f64(),
        };
        Ok(RunOutput {
            neighbours: Arc::new(knn.neighbours.clone()),
            evaluation,
            timing,
            hits: tally.hits,
            misses: tally.misses,
        })
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
        let ds = match self.load_json::<Dataset>(DATASET, &stage.key)? {
            Some(ds) => ds,
            None => {
                self.progress
                    .info(&format!("loading dataset {}", stage.options.name));
                let ds = dataset::load(&stage.source, &stage.options)?;
                self.store.put(
                    DATASET,
                    &stage.key,
                    &serde_json::to_vec(&ds).expect("serialises"),
                )?;
                self.dataset_uncounted_miss = true;
                ds
            }
        };
        let ds = Arc::new(ds);
        self.dataset = Some(ds.clone());
        Ok(ds)
    }

    fn knn(
        &mut self,
        run: &RunPlan,
        ds: &Dataset,
        tally: &mut Tally,
    ) -> Result<Arc<KnnRecord>, Error> {
        let stage = &self.plan.stages[run.knn];
        if let Some(record) = self.knn.get(&run.knn) {
            tally.count(true);
            return Ok(record.clone());
        }
        let cached = match self.store.get(KNN, &stage.key)? {
            Lookup::Hit(bytes) => decode_knn(&bytes),
            Lookup::Miss => None,
            Lookup::Corrupt(path) => {
                self.progress.warn(&format!(
                    "{}: corrupt cache entry, recomputing",
                    path.display()
                ));
                None
            }
        };
        let record = match cached {
            Some(record) => {
                tally.count(true);
                record
            }
            None => {
                tally.count(false);
                let started = Instant::now();
                let vectors = self.fused(run.fuse, ds)?;
                let embed_s = started.elapsed().as_secs_f64();
                let started = Instant::now();
                let neighbours = self.search(&vectors, &run.name)?;
                let record = KnnRecord {
                    neighbours,
                    embed_s,
                    knn_s: started.elapsed().as_secs_f64(),
                };
                self.store.put(KNN, &stage.key, &encode_knn(&record))?;
                record
            }
        };
        let record = Arc::new(record);
        self.knn.insert(run.knn, record.clone());
        Ok(record)
    }

    fn search(&self, vectors: &Vectors, run: &str) -> Result<Neighbours, Error> {
        let options = retrieval::ExactOptions {
            k: self.manifest.retrieval.k,
            query_block: self.manifest.retrieval.query_block,
            ..Default::default()
        };
        let bar = self.progress.bar(vectors.n as u64, "knn");
        bar.set_message(format!("knn {run}"));
        let neighbours = retrieval::search(vectors, &options, &|done| bar.inc(done as u64))?;
        bar.finish_and_clear();
        Ok(neighbours)
    }

    fn evaluation(
        &mut self,
        run: &RunPlan,
        ds: &Dataset,
        knn: &KnnRecord,
        tally: &mut Tally,
    ) -> Result<(Arc<Evaluation>, f64), Error> {
        if let Some(found) = self.metrics.get(&run.metrics) {
            tally.count(true);
            return Ok(found.clone());
        }
        let key = self.plan.stages[run.metrics].key;
        let found = match self.load_json::<Evaluation>(METRICS, &key)? {
            Some(evaluation) => {
                tally.count(true);
                (Arc::new(evaluation), 0.0)
            }
            None => {
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
        self.metrics.insert(run.metrics, found.clone());
        Ok(found)
    }

    /// The fused vectors of a `fuse` stage, building its parts as needed.
    fn fused(&mut self, index: usize, ds: &Dataset) -> Result<Arc<Vectors>, Error> {
        if let Some(v) = self.vectors.get(&index) {
            return Ok(v.clone());
        }
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
            .map(|&p| self.part(p, ds))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs: Vec<FusionPart> = parts
            .iter()
            .zip(weights)
            .map(|(v, &w)| FusionPart {
                vectors: v,
                weight: w as f32,
            })
            .collect();
        let fused = fuse(&inputs, *normalize_parts).map_err(|e| name_row(e, ds))?;
        let fused = Arc::new(fused);
        self.vectors.insert(index, fused.clone());
        Ok(fused)
    }

    fn part(&mut self, index: usize, ds: &Dataset) -> Result<Arc<Vectors>, Error> {
        if let Some(v) = self.vectors.get(&index) {
            return Ok(v.clone());
        }
        let vectors = match &self.plan.stages[index].kind {
            StageKind::Precomputed { npy, ids, .. } => {
                self.progress.detail(&format!("loading {}", npy.display()));
                precomputed::load(npy, ids, &sample_ids(ds))?
            }
            StageKind::Encode { encoder, .. } => {
                return Err(Error::Unsupported(format!(
                    "part `{encoder}`: this build has no encoder plugins yet; compute the vectors \
                     elsewhere and use a `precomputed` part"
                )));
            }
            other => unreachable!("part() is called with vector stages only, not {other:?}"),
        };
        let vectors = Arc::new(vectors);
        self.vectors.insert(index, vectors.clone());
        Ok(vectors)
    }

    /// A JSON stage output from the cache; a corrupt or unreadable entry is reported and missed.
    fn load_json<T: DeserializeOwned>(
        &self,
        folder: &str,
        key: &Digest,
    ) -> Result<Option<T>, Error> {
        match self.store.get(folder, key)? {
            Lookup::Hit(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Lookup::Miss => Ok(None),
            Lookup::Corrupt(path) => {
                self.progress.warn(&format!(
                    "{}: corrupt cache entry, recomputing",
                    path.display()
                ));
                Ok(None)
            }
        }
    }
}

/// Fusion reports rows by index; users know samples by id.
fn name_row(error: EmbedError, ds: &Dataset) -> Error {
    match error {
        EmbedError::ZeroVector { row } | EmbedError::NonFiniteVector { row } => Error::WithSample {
            id: ds.samples[row].id.to_string(),
            source: error,
        },
        other => other.into(),
    }
}

fn sample_ids(ds: &Dataset) -> Vec<SampleId> {
    ds.samples.iter().map(|s| s.id.clone()).collect()
}
