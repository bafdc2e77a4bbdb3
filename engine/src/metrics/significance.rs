//! How sure a reported difference is: bootstrap confidence intervals of a mean over queries, and a
//! paired randomisation test between two runs scored on the same queries.
//!
//! Both resample queries, the unit the metrics average over. Both are seeded with the experiment
//! seed through [`SplitMix64`], so a report is byte-for-byte reproducible, and every run of an
//! experiment is resampled with the same draws (a paired bootstrap: intervals of two runs move
//! together where their queries do).
//!
//! The randomisation test is the sign-flip test IR evaluations use (Smucker, Allan & Carterette,
//! CIKM 2007): under the null hypothesis that two runs are exchangeable, each query's difference
//! is as likely to have either sign. With few queries every sign pattern is enumerated, which
//! makes the p-value exact; otherwise `permutations` random patterns estimate it, counting the
//! observed pattern itself so that p is never 0.

use rayon::prelude::*;

use crate::rng::SplitMix64;

/// A two-sided percentile interval.
pub type Interval = (f64, f64);

/// Percentile bootstrap intervals of the means of several per-query series that share queries
/// (`series[m][q]`): every resample draws one set of queries for all series.
///
/// With `resamples` draws the interval at `confidence` c is the pair of order statistics
/// `sorted[⌊(1−c)/2 · B⌋]` and `sorted[⌈(1+c)/2 · B⌉ − 1]` (for B = 1,000 and 95 %: the 26th and
/// the 975th smallest of the resampled means).
pub fn bootstrap_intervals(
    series: &[Vec<f64>],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Vec<Interval> {
    let n = series.first().map_or(0, Vec::len);
    if n == 0 || resamples == 0 {
        return series.iter().map(|s| (mean(s), mean(s))).collect();
    }
    let draws: Vec<Vec<f64>> = (0..resamples)
        .into_par_iter()
        .map(|b| {
            let mut rng = SplitMix64::keyed(seed, &format!("bootstrap {b}"));
            let picks: Vec<usize> = (0..n).map(|_| rng.below(n as u64) as usize).collect();
            series
                .iter()
                .map(|s| picks.iter().map(|&q| s[q]).sum::<f64>() / n as f64)
                .collect()
        })
        .collect();
    (0..series.len())
        .map(|m| {
            let mut means: Vec<f64> = draws.iter().map(|d| d[m]).collect();
            means.sort_by(f64::total_cmp);
            percentile_interval(&means, confidence)
        })
        .collect()
}

fn percentile_interval(sorted: &[f64], confidence: f64) -> Interval {
    let b = sorted.len() as f64;
    let tail = (1.0 - confidence) / 2.0;
    // The nudges keep 0.05 · 1000, which is 49.999… in floating point, at 50.
    let lo = ((tail * b + 1e-9).floor() as usize).min(sorted.len() - 1);
    let hi = (((1.0 - tail) * b - 1e-9).ceil() as usize)
        .clamp(1, sorted.len())
        .saturating_sub(1);
    (sorted[lo], sorted[hi])
}

/// The result of a paired randomisation test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedTest {
    /// Mean of `a − b` over queries.
    pub difference: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether every sign pattern was enumerated (the p-value is exact).
    pub exact: bool,
}

/// Sign-flip randomisation test of `mean(a) = mean(b)` for per-query scores of two runs on the same
/// queries (same order). Exact when `2^n ≤ permutations`.
pub fn paired_randomisation(a: &[f64], b: &[f64], permutations: usize, seed: u64) -> PairedTest {
    assert_eq!(a.len(), b.len(), "paired series cover the same queries");
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = diffs.len();
    let observed = diffs.iter().sum::<f64>();
    let difference = if n == 0 { 0.0 } else { observed / n as f64 };
    // Sums that differ from the observed one only by rounding count as "as extreme".
    let threshold = observed.abs() - 1e-9 * diffs.iter().map(|d| d.abs()).sum::<f64>();
    if n < 64 && (1u64 << n) <= permutations as u64 {
        let extreme = (0..1u64 << n)
            .filter(|&signs| signed_sum(&diffs, signs).abs() >= threshold)
            .count();
        return PairedTest {
            difference,
            p_value: extreme as f64 / (1u64 << n) as f64,
            exact: true,
        };
    }
    let extreme: usize = (0..permutations)
        .into_par_iter()
        .filter(|&p| {
            let mut rng = SplitMix64::keyed(seed, &format!("permutation {p}"));
            random_signed_sum(&diffs, &mut rng).abs() >= threshold
        })
        .count();
    PairedTest {
        difference,
        p_value: (extreme + 1) as f64 / (permutations + 1) as f64,
        exact: false,
    }
}

/// Σ ± d_q with the sign of query q from bit q of `signs` (set = minus).
fn signed_sum(diffs: &[f64], signs: u64) -> f64 {
    diffs
        .iter()
        .enumerate()
        .map(|(q, d)| if signs >> q & 1 == 1 { -d } else { *d })
        .sum()
}

fn random_signed_sum(diffs: &[f64], rng: &mut SplitMix64) -> f64 {
    diffs
        .chunks(64)
        .map(|chunk| signed_sum(chunk, rng.next_u64()))
        .sum()
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_a_constant_is_that_constant() {
        let got = bootstrap_intervals(&[vec![0.25; 40]], 1000, 0.95, 1);
        assert_eq!(got, vec![(0.25, 0.25)]);
    }

    #[test]
    fn interval_of_two_queries_spans_the_possible_means() {
        // Resampling {0, 1} gives means 0, ½, 1 with probabilities ¼, ½, ¼: the 26th smallest of
        // 1,000 draws is 0 and the 975th is 1 unless fewer than 26 draws were 0 or 1 (p < 1e-60).
        let got = bootstrap_intervals(&[vec![0.0, 1.0]], 1000, 0.95, 7);
        assert_eq!(got, vec![(0.0, 1.0)]);
    }

    #[test]
    fn interval_order_statistics_are_the_documented_ones() {
        let sorted: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(percentile_interval(&sorted, 0.95), (25.0, 974.0));
        assert_eq!(percentile_interval(&sorted, 0.90), (50.0, 949.0));
        assert_eq!(percentile_interval(&[3.0], 0.95), (3.0, 3.0));
    }

    #[test]
    fn interval_covers_the_mean_and_matches_the_normal_approximation() {
        // 400 Bernoulli(0.3) queries: mean 0.3, standard error sqrt(0.21/400) ≈ 0.0229, so the
        // 95 % interval is about 0.3 ± 0.045.
        let values: Vec<f64> = (0..400).map(|q| f64::from(q % 10 < 3)).collect();
        let (lo, hi) = bootstrap_intervals(&[values], 1000, 0.95, 42)[0];
        assert!(lo < 0.3 && 0.3 < hi);
        assert!((hi - lo - 2.0 * 1.96 * 0.0229).abs() < 0.015, "{lo}..{hi}");
    }

    #[test]
    fn intervals_are_seeded_and_shared_across_series() {
        let a: Vec<f64> = (0..50).map(|q| (q % 7) as f64 / 7.0).collect();
        let both = bootstrap_intervals(&[a.clone(), a.clone()], 500, 0.95, 3);
        assert_eq!(both[0], both[1]);
        assert_eq!(
            bootstrap_intervals(std::slice::from_ref(&a), 500, 0.95, 3)[0],
            both[0]
        );
        assert_ne!(bootstrap_intervals(&[a], 500, 0.95, 4)[0], both[0]);
    }

    #[test]
    fn exact_test_by_hand() {
        // Differences 1, 2, 3: of the 8 sign patterns only +++ and −−− reach |sum| = 6.
        let test = paired_randomisation(&[1.0, 2.0, 3.0], &[0.0; 3], 1000, 0);
        assert!(test.exact);
        assert_eq!(test.difference, 2.0);
        assert_eq!(test.p_value, 2.0 / 8.0);
        // Differences 1, −1, 2 (observed sum 2): the eight signed sums ±1 ±1 ±2 are
        // 4, 2, 2, 0, 0, −2, −2, −4, and |s| ≥ 2 for six of them.
        let test = paired_randomisation(&[1.0, 0.0, 2.0], &[0.0, 1.0, 0.0], 1000, 0);
        assert_eq!(test.p_value, 6.0 / 8.0);
    }

    #[test]
    fn identical_runs_are_not_different() {
        let a: Vec<f64> = (0..500).map(|q| (q % 3) as f64).collect();
        let test = paired_randomisation(&a, &a, 1000, 9);
        assert_eq!(test.difference, 0.0);
        assert_eq!(test.p_value, 1.0);
    }

    #[test]
    fn a_consistent_difference_is_significant() {
        // Every one of 200 queries is 0.1 better: only the all-plus and all-minus patterns are as
        // extreme, so no random pattern is, and p = 1 / (permutations + 1).
        let a = vec![0.6; 200];
        let b = vec![0.5; 200];
        let test = paired_randomisation(&a, &b, 1000, 5);
        assert!(!test.exact);
        assert!((test.difference - 0.1).abs() < 1e-12);
        assert_eq!(test.p_value, 1.0 / 1001.0);
    }

    #[test]
    fn noise_without_a_shift_is_not_significant() {
        // Differences alternate +1, −1: the observed sum is 0, so every pattern is as extreme.
        let a: Vec<f64> = (0..300).map(|q| (q % 2) as f64).collect();
        let b: Vec<f64> = (0..300).map(|q| ((q + 1) % 2) as f64).collect();
        assert_eq!(paired_randomisation(&a, &b, 1000, 5).p_value, 1.0);
    }
}
