//! Ranking metrics of retrieved neighbours, exactly as DESIGN.md defines them.
//!
//! Input: [`Neighbours`] and each row's label-set id. A neighbour is relevant when its label set
//! equals the query's. For every query and every cutoff `c ≤ k` the eight metrics are computed on
//! the first `c` hit flags; the reported value is the mean over queries.
//!
//! `R`, the number of relevant samples besides the query, is at least 1 after the singleton filter.
//! Should a manifest lower `min_label_set_count` to 1, a query with `R = 0` scores 0 on every
//! metric (its recall, MAP and NDCG are undefined; 0 keeps the mean over all queries honest).

pub mod article;
pub mod significance;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::retrieval::Neighbours;

/// The eight metrics, in the order results and reports list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Mrr,
    Ndcg,
    NdcgList,
    Map,
    MapList,
    Precision,
    Recall,
    HitRate,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::Mrr,
        Metric::Ndcg,
        Metric::NdcgList,
        Metric::Map,
        Metric::MapList,
        Metric::Precision,
        Metric::Recall,
        Metric::HitRate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Mrr => "mrr",
            Metric::Ndcg => "ndcg",
            Metric::NdcgList => "ndcg_list",
            Metric::Map => "map",
            Metric::MapList => "map_list",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::HitRate => "hit_rate",
        }
    }

    /// The results.json key, e.g. `mrr@10`.
    pub fn key(self, cutoff: usize) -> String {
        format!("{}@{cutoff}", self.name())
    }

    /// The metric and cutoff of a key such as `mrr@10`.
    pub fn parse_key(key: &str) -> Option<(Metric, usize)> {
        let (name, cutoff) = key.split_once('@')?;
        let metric = Metric::ALL.into_iter().find(|m| m.name() == name)?;
        Some((metric, cutoff.parse().ok()?))
    }

    /// Whether the metric needs only the k hit flags (not R): what `embedlab score` and the
    /// study's scorer compute.
    pub fn from_flags_alone(self) -> bool {
        matches!(
            self,
            Metric::Mrr | Metric::MapList | Metric::NdcgList | Metric::Precision | Metric::HitRate
        )
    }
}

/// The eight metric values of one query at one cutoff, indexed like [`Metric::ALL`].
pub type Scores = [f64; 8];

/// Scores one query from its hit flags (rank order) at cutoff `flags.len()`, given `relevant`,
/// the number of relevant samples in the corpus other than the query.
pub fn score_query(flags: &[bool], relevant: usize) -> Scores {
    let k = flags.len();
    let hits = flags.iter().filter(|&&f| f).count();
    if hits == 0 || relevant == 0 {
        return [0.0; 8];
    }
    let mut first_hit = 0;
    let mut precision_sum = 0.0;
    let mut dcg = 0.0;
    let mut seen = 0;
    for (i, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
        let rank = i + 1;
        seen += 1;
        if first_hit == 0 {
            first_hit = rank;
        }
        precision_sum += seen as f64 / rank as f64;
        dcg += discount(rank);
    }
    let ideal_count = k.min(relevant);
    let idcg: f64 = (1..=ideal_count).map(discount).sum();
    let list_idcg: f64 = (1..=hits).map(discount).sum();
    let mut scores = [0.0; 8];
    scores[0] = 1.0 / first_hit as f64;
    scores[1] = dcg / idcg;
    scores[2] = dcg / list_idcg;
    scores[3] = precision_sum / ideal_count as f64;
    scores[4] = precision_sum / hits as f64;
    scores[5] = hits as f64 / k as f64;
    scores[6] = hits as f64 / relevant as f64;
    scores[7] = 1.0;
    scores
}

fn discount(rank: usize) -> f64 {
    1.0 / (rank as f64 + 1.0).log2()
}

/// Per-query and mean metrics of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub cutoffs: Vec<usize>,
    /// Per query, per cutoff, the eight scores: `per_query[q][c]`.
    pub per_query: Vec<Vec<Scores>>,
    /// Mean over queries, keyed like results.json (`mrr@10`, ...).
    pub means: BTreeMap<String, f64>,
}

impl Evaluation {
    pub fn mean(&self, metric: Metric, cutoff: usize) -> Option<f64> {
        self.means.get(&metric.key(cutoff)).copied()
    }

    /// One metric's per-query values at `cutoff`, in query order (`None`: not evaluated there).
    pub fn series(&self, metric: Metric, cutoff: usize) -> Option<Vec<f64>> {
        let c = self.cutoffs.iter().position(|&x| x == cutoff)?;
        let m = Metric::ALL.iter().position(|&x| x == metric)?;
        Some(self.per_query.iter().map(|q| q[c][m]).collect())
    }
}

/// Hit flags of every query, row-major like `neighbours.indices`.
pub fn hit_flags(neighbours: &Neighbours, label_set_ids: &[u32]) -> Vec<bool> {
    neighbours
        .indices
        .iter()
        .enumerate()
        .map(|(slot, &row)| label_set_ids[slot / neighbours.k] == label_set_ids[row as usize])
        .collect()
}

/// Evaluates every query at each cutoff (each `1 ≤ c ≤ k`, checked by the manifest).
pub fn evaluate(neighbours: &Neighbours, label_set_ids: &[u32], cutoffs: &[usize]) -> Evaluation {
    let relevant = relevant_counts(label_set_ids);
    let flags = hit_flags(neighbours, label_set_ids);
    let per_query: Vec<Vec<Scores>> = flags
        .par_chunks(neighbours.k)
        .enumerate()
        .map(|(q, row)| {
            let r = relevant[label_set_ids[q] as usize];
            cutoffs.iter().map(|&c| score_query(&row[..c], r)).collect()
        })
        .collect();
    let means = mean_scores(&per_query, cutoffs);
    Evaluation {
        cutoffs: cutoffs.to_vec(),
        per_query,
        means,
    }
}

/// For each label-set id, how many other samples share it (its size minus the query itself).
fn relevant_counts(label_set_ids: &[u32]) -> Vec<usize> {
    let len = label_set_ids.iter().max().map_or(0, |&m| m as usize + 1);
    let mut counts = vec![0usize; len];
    for &id in label_set_ids {
        counts[id as usize] += 1;
    }
    counts.iter().map(|c| c.saturating_sub(1)).collect()
}

fn mean_scores(per_query: &[Vec<Scores>], cutoffs: &[usize]) -> BTreeMap<String, f64> {
    let n = per_query.len().max(1) as f64;
    let mut means = BTreeMap::new();
    for (ci, &cutoff) in cutoffs.iter().enumerate() {
        for (mi, metric) in Metric::ALL.iter().enumerate() {
            let sum: f64 = per_query.iter().map(|q| q[ci][mi]).sum();
            means.insert(metric.key(cutoff), sum / n);
        }
    }
    means
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn flags(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '1').collect()
    }

    fn assert_scores(got: Scores, want: [f64; 8]) {
        for (m, (g, w)) in Metric::ALL.iter().zip(got.iter().zip(want)) {
            assert!(close(*g, w), "{}: got {g}, want {w}", m.name());
        }
    }

    #[test]
    fn worked_example_with_many_relevant() {
        // Hits at ranks 2 and 4 of k = 5, R = 10.
        // MAP sum = 1/2 + 2/4 = 1.0; DCG = 1/log2(3) + 1/log2(5).
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg5: f64 = (1..=5).map(|r| 1.0 / ((r + 1) as f64).log2()).sum();
        let idcg2 = 1.0 + 1.0 / 3f64.log2();
        assert_scores(
            score_query(&flags("01010"), 10),
            [
                0.5,
                dcg / idcg5,
                dcg / idcg2,
                1.0 / 5.0,
                1.0 / 2.0,
                0.4,
                0.2,
                1.0,
            ],
        );
    }

    #[test]
    fn fewer_relevant_than_k_caps_the_ideal() {
        // R = 2 < k = 4: hits at ranks 1 and 3. MAP = (1/1 + 2/3) / min(4, 2).
        let dcg = 1.0 + 0.5;
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert_scores(
            score_query(&flags("1010"), 2),
            [
                1.0,
                dcg / idcg,
                dcg / idcg,
                (1.0 + 2.0 / 3.0) / 2.0,
                (1.0 + 2.0 / 3.0) / 2.0,
                0.5,
                1.0,
                1.0,
            ],
        );
    }

    #[test]
    fn no_hits_scores_zero() {
        assert_scores(score_query(&flags("0000"), 3), [0.0; 8]);
    }

    #[test]
    fn list_variants_differ_from_corpus_variants() {
        // One hit at rank 3, R = 5, k = 3: MAP divides by min(k, R) = 3, map_list by h = 1.
        let s = score_query(&flags("001"), 5);
        assert!(close(s[3], (1.0 / 3.0) / 3.0));
        assert!(close(s[4], 1.0 / 3.0));
        assert!(close(s[2], 0.5 / 1.0)); // DCG = 1/log2(4) = 0.5; list IDCG = 1
    }

    #[test]
    fn evaluate_averages_queries_and_cutoffs() {
        // Four samples, label sets A A B B; each query's neighbours given directly.
        let labels = [0, 0, 1, 1];
        let neighbours = Neighbours {
            n: 4,
            k: 2,
            indices: vec![1, 2, 2, 0, 3, 0, 0, 2],
            scores: vec![0.0; 8],
        };
        let eval = evaluate(&neighbours, &labels, &[1, 2]);
        // Hit flags: q0 [1,0], q1 [0,1], q2 [1,0], q3 [0,1]; R = 1 each.
        assert!(close(eval.mean(Metric::HitRate, 1).unwrap(), 0.5));
        assert!(close(
            eval.mean(Metric::Mrr, 2).unwrap(),
            (1.0 + 0.5 + 1.0 + 0.5) / 4.0
        ));
        assert!(close(eval.mean(Metric::Recall, 2).unwrap(), 1.0));
        assert!(close(eval.mean(Metric::Precision, 2).unwrap(), 0.5));
        assert_eq!(eval.means.len(), 16);
    }
}
