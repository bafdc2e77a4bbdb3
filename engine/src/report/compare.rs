//! Paired significance tests between runs, from their per-query scores.
//!
//! Runs of one experiment share their queries; runs that left out unreadable images, or runs of
//! different experiments on the same dataset, are compared on the queries both evaluated (matched
//! by sample id).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::results::{PairTest, Significance};
use crate::dataset::Dataset;
use crate::error::Error;
use crate::metrics::significance::paired_randomisation;
use crate::metrics::{Evaluation, Metric};

/// One run's per-query values of some metrics, with the sample id of each query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryScores {
    pub ids: Vec<String>,
    /// Metric key (`mrr@10`) → one value per query, in `ids` order.
    pub values: BTreeMap<String, Vec<f64>>,
}

impl QueryScores {
    /// The values of `keys` from an evaluation of `dataset`'s samples.
    pub fn of(dataset: &Dataset, evaluation: &Evaluation, keys: &[String]) -> QueryScores {
        let values = keys
            .iter()
            .filter_map(|key| {
                let (metric, cutoff) = Metric::parse_key(key)?;
                Some((key.clone(), evaluation.series(metric, cutoff)?))
            })
            .collect();
        QueryScores {
            ids: dataset.samples.iter().map(|s| s.id.to_string()).collect(),
            values,
        }
    }

    /// The values of `keys` from a per-query file (`per_query/RUN.jsonl`).
    pub fn read(path: &Path, keys: &[String]) -> Result<QueryScores, Error> {
        #[derive(Deserialize)]
        struct Line {
            query: String,
            metrics: BTreeMap<String, f64>,
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut scores = QueryScores::default();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let parsed: Line = serde_json::from_str(line).map_err(|e| Error::Report {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })?;
            scores.ids.push(parsed.query);
            for key in keys {
                let value = parsed
                    .metrics
                    .get(key)
                    .copied()
                    .ok_or_else(|| Error::Report {
                        path: path.to_path_buf(),
                        message: format!("line {}: no \"{key}\" in its metrics", i + 1),
                    })?;
                scores.values.entry(key.clone()).or_default().push(value);
            }
        }
        Ok(scores)
    }

    /// The paired values of `key` on the queries both runs evaluated.
    fn paired(&self, other: &QueryScores, key: &str) -> Option<(Vec<f64>, Vec<f64>)> {
        let (a, b) = (self.values.get(key)?, other.values.get(key)?);
        if self.ids == other.ids {
            return Some((a.clone(), b.clone()));
        }
        let row: HashMap<&str, usize> = other
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        Some(
            self.ids
                .iter()
                .zip(a)
                .filter_map(|(id, &x)| row.get(id.as_str()).map(|&j| (x, b[j])))
                .unzip(),
        )
    }
}

/// Settings of the randomisation tests.
#[derive(Clone, Copy, Debug)]
pub struct TestSettings {
    pub permutations: usize,
    pub seed: u64,
    pub alpha: f64,
}

/// Tests every pair of `runs` (name, scores) on each metric in `keys`; `None` with fewer than two
/// runs.
pub fn pairwise(
    runs: &[(&str, &QueryScores)],
    keys: &[String],
    settings: TestSettings,
) -> Option<Significance> {
    if runs.len() < 2 {
        return None;
    }
    let mut pairs = Vec::new();
    for (i, (a, a_scores)) in runs.iter().enumerate() {
        for (b, b_scores) in &runs[i + 1..] {
            for key in keys {
                let Some((x, y)) = a_scores.paired(b_scores, key) else {
                    continue;
                };
                let test = paired_randomisation(&x, &y, settings.permutations, settings.seed);
                pairs.push(PairTest {
                    a: a.to_string(),
                    b: b.to_string(),
                    metric: key.clone(),
                    difference: test.difference,
                    p_value: test.p_value,
                    queries: x.len(),
                    exact: test.exact,
                });
            }
        }
    }
    Some(Significance {
        metrics: keys.to_vec(),
        permutations: settings.permutations,
        seed: settings.seed,
        alpha: settings.alpha,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(ids: &[&str], mrr: &[f64]) -> QueryScores {
        QueryScores {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            values: BTreeMap::from([("mrr@10".to_string(), mrr.to_vec())]),
        }
    }

    #[test]
    fn pairs_match_queries_by_id() {
        // b evaluated the queries in another order and lacks "z": only x and y pair up.
        let a = scores(&["x", "y", "z"], &[1.0, 0.5, 0.0]);
        let b = scores(&["y", "x"], &[0.25, 0.5]);
        assert_eq!(
            a.paired(&b, "mrr@10"),
            Some((vec![1.0, 0.5], vec![0.5, 0.25]))
        );
        let settings = TestSettings {
            permutations: 1000,
            seed: 1,
            alpha: 0.05,
        };
        let sig = pairwise(&[("a", &a), ("b", &b)], &["mrr@10".to_string()], settings).unwrap();
        let test = &sig.pairs[0];
        assert_eq!((test.queries, test.difference), (2, 0.375));
        // Differences 0.5 and 0.25: both sign patterns of equal sign reach 0.75, so p = 2 / 4.
        assert_eq!((test.p_value, test.exact), (0.5, true));
        assert!(pairwise(&[("a", &a)], &["mrr@10".to_string()], settings).is_none());
    }

    #[test]
    fn reads_per_query_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        std::fs::write(
            &path,
            "{\"query\":\"7\",\"metrics\":{\"mrr@10\":0.5,\"map@10\":1.0}}\n{\"query\":\"9\",\"metrics\":{\"mrr@10\":1.0}}\n",
        )
        .unwrap();
        let got = QueryScores::read(&path, &["mrr@10".to_string()]).unwrap();
        assert_eq!(got, scores(&["7", "9"], &[0.5, 1.0]));
        let err = QueryScores::read(&path, &["map@10".to_string()]).unwrap_err();
        assert!(err.to_string().contains("line 2: no \"map@10\""), "{err}");
    }
}
