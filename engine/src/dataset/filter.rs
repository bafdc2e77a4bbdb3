//! The rules every dataset shares, applied to a loader's candidates in this order:
//!
//! 1. where the source requires captions (Open Images with Localized Narratives), samples without
//!    any caption are dropped (`dropped_uncaptioned`);
//! 2. samples with an empty label set are dropped (`dropped_unlabelled`);
//! 3. label sets with fewer than `min_label_set_count` samples are dropped (`dropped_rare`);
//! 4. if `outlier_std` is set, label sets whose frequency lies outside mean ± outlier_std × std of
//!    the label-set frequencies are dropped (`dropped_outliers`), see [`drop_outliers`];
//! 5. if `limit` is below the remaining count, a seeded, label-set-stratified subsample of `limit`
//!    samples is kept (`dropped_by_limit`), see [`allocate`].
//!
//! The rules look only at label sets and whether a sample has captions, so [`select`] takes just
//! those and returns the kept indices: a loader can decide what to keep before it reads what is
//! costly (Open Images reads narrative texts only for the kept images). [`apply`] is the same on
//! whole samples.
//!
//! Invariants: output samples keep their input order; every kept label set has at least
//! `min_label_set_count` samples (so each query has a relevant item); the same input, rules and
//! seed always select the same samples, on every platform and version (all choices come from
//! [`SplitMix64`] keyed by the seed and the label set, and the outlier test is exact in integers
//! up to one float comparison).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::{DatasetError, DatasetStats, LabelSet, Sample};
use crate::rng::SplitMix64;

/// The filtering part of the load options.
pub(super) struct Rules {
    pub min_label_set_count: usize,
    pub outlier_std: Option<f64>,
    pub limit: Option<usize>,
    pub seed: u64,
}

impl Rules {
    /// Rejects rules that cannot be met whatever the data.
    pub fn check(&self) -> Result<(), DatasetError> {
        if let Some(k) = self.outlier_std
            && !(k.is_finite() && k > 0.0)
        {
            return Err(DatasetError::Options(format!(
                "outlier_std must be a positive number (got {k})"
            )));
        }
        match self.limit {
            Some(0) => Err(DatasetError::Options(
                "limit must be at least 1".to_string(),
            )),
            Some(limit) if limit < self.min_label_set_count => Err(DatasetError::Options(format!(
                "limit {limit} is smaller than min_label_set_count {} (no label set could be kept)",
                self.min_label_set_count
            ))),
            _ => Ok(()),
        }
    }

    /// A label set needs at least this many samples; 0 means the same as 1.
    fn min_count(&self) -> usize {
        self.min_label_set_count.max(1)
    }
}

/// Applies the rules to whole samples (no caption rule); `stats.loaded` is the input count.
pub(super) fn apply(samples: Vec<Sample>, rules: &Rules) -> (Vec<Sample>, DatasetStats) {
    let (kept, stats) = {
        let labels: Vec<&LabelSet> = samples.iter().map(|s| &s.labels).collect();
        select(&labels, None, rules)
    };
    let mut keep = vec![false; samples.len()];
    kept.into_iter().for_each(|i| keep[i] = true);
    let kept = samples
        .into_iter()
        .zip(keep)
        .filter_map(|(s, keep)| keep.then_some(s))
        .collect();
    (kept, stats)
}

/// Applies the rules to candidates given by their label sets and, where the source requires
/// captions, whether each has any. Returns the kept indices, ascending, and what was dropped.
pub(super) fn select(
    labels: &[&LabelSet],
    captioned: Option<&[bool]>,
    rules: &Rules,
) -> (Vec<usize>, DatasetStats) {
    let mut stats = DatasetStats {
        loaded: labels.len(),
        ..DatasetStats::default()
    };
    let mut kept: Vec<usize> = (0..labels.len()).collect();
    if let Some(captioned) = captioned {
        stats.dropped_uncaptioned = retain(&mut kept, |i| captioned[i]);
    }
    stats.dropped_unlabelled = retain(&mut kept, |i| !labels[i].is_empty());
    stats.dropped_rare = drop_rare(&mut kept, labels, rules.min_count());
    if let Some(k) = rules.outlier_std {
        stats.dropped_outliers = drop_outliers(&mut kept, labels, k);
    }
    if let Some(limit) = rules.limit
        && limit < kept.len()
    {
        let before = kept.len();
        kept = subsample(&kept, labels, limit, rules);
        stats.dropped_by_limit = before - kept.len();
    }
    stats.label_sets = count_label_sets(&kept, labels).len();
    (kept, stats)
}

/// Keeps the indices `keep` accepts; returns how many it dropped.
fn retain(kept: &mut Vec<usize>, keep: impl Fn(usize) -> bool) -> usize {
    let before = kept.len();
    kept.retain(|&i| keep(i));
    before - kept.len()
}

fn count_label_sets<'a>(kept: &[usize], labels: &[&'a LabelSet]) -> HashMap<&'a LabelSet, usize> {
    let mut counts = HashMap::new();
    for &i in kept {
        *counts.entry(labels[i]).or_insert(0) += 1;
    }
    counts
}

fn drop_rare(kept: &mut Vec<usize>, labels: &[&LabelSet], min: usize) -> usize {
    let counts = count_label_sets(kept, labels);
    retain(kept, |i| counts[labels[i]] >= min)
}

/// Drops the label sets whose frequency f is not within mean ± k × std of the frequencies of the
/// label sets still kept (population: one frequency per label set, n of them; std is the sample
/// standard deviation, with n − 1). With fewer than two label sets nothing is dropped (no spread).
///
/// Exact and order-free: with S1 = Σf and S2 = Σf², the test |f − S1/n| ≤ k·std is evaluated as
/// (n·f − S1)² ≤ k² · n · (n·S2 − S1²) / (n − 1), both sides from integer sums.
fn drop_outliers(kept: &mut Vec<usize>, labels: &[&LabelSet], k: f64) -> usize {
    let counts = count_label_sets(kept, labels);
    let n = counts.len() as i128;
    if n < 2 {
        return 0;
    }
    let s1: i128 = counts.values().map(|&f| f as i128).sum();
    let s2: i128 = counts.values().map(|&f| (f as i128).pow(2)).sum();
    let bound = k * k * (n * (n * s2 - s1 * s1)) as f64 / (n - 1) as f64;
    let typical = |f: usize| (((n * f as i128 - s1).pow(2)) as f64) <= bound;
    retain(kept, |i| typical(counts[labels[i]]))
}

/// Keeps `limit` of the `kept` indices (fewer only where [`allocate`] says it must), stratified by
/// label set: each label set's quota comes from `allocate`; which of its samples are kept comes
/// from a shuffle by `SplitMix64::keyed(seed, label set)`. Ascending order is kept.
fn subsample(kept: &[usize], labels: &[&LabelSet], limit: usize, rules: &Rules) -> Vec<usize> {
    let mut groups: BTreeMap<&LabelSet, Vec<usize>> = BTreeMap::new();
    for &index in kept {
        groups.entry(labels[index]).or_default().push(index);
    }
    let keys: Vec<String> = groups.keys().map(|labels| labels.to_string()).collect();
    let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    let quotas = allocate(&sizes, &keys, limit, rules.min_count(), rules.seed);

    let mut selected = Vec::with_capacity(limit);
    for ((key, mut members), quota) in keys.iter().zip(groups.into_values()).zip(quotas) {
        SplitMix64::keyed(rules.seed, key).shuffle(&mut members);
        selected.extend_from_slice(&members[..quota]);
    }
    selected.sort_unstable();
    selected
}

/// How many samples to keep from each label set, given the label sets' `sizes` (each at least
/// `min`), their `keys` (display form, for the seeded tie order) and a `limit` below their total.
///
/// 1. Proportional quotas by largest remainder: each set gets `floor(size * limit / total)`, and
///    the samples still missing go one each to the sets with the largest remainders, ties broken
///    by a seeded order of the label sets.
/// 2. A quota below `min` becomes 0: such a label set would have a query without a relevant item.
/// 3. The deficit goes one sample at a time to a kept set (quota > 0) that has room, always the one
///    furthest below its proportional share of `limit` among the kept sets (seeded order on ties).
/// 4. If no kept set has room (the limit is small next to the number of label sets, or all kept
///    sets are full), dropped sets are revived at exactly `min` each, largest first (seeded order
///    on ties), as many as the deficit allows; then back to 3.
///
/// The quotas sum to exactly `limit` unless that is impossible with every kept quota at least
/// `min`, which can only happen when every kept set is full and the deficit is below `min` (for
/// example sizes [2, 2, 2], min 2, limit 5 gives 4). The sum never exceeds `limit`.
pub(super) fn allocate(
    sizes: &[usize],
    keys: &[String],
    limit: usize,
    min: usize,
    seed: u64,
) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    debug_assert!(limit < total && sizes.len() == keys.len());
    let ties: Vec<u64> = keys
        .iter()
        .map(|key| SplitMix64::keyed(seed, &format!("quota order\u{0}{key}")).next_u64())
        .collect();

    // 1. Largest remainder, exact in integers.
    let share = |i: usize| sizes[i] as u128 * limit as u128;
    let mut quotas: Vec<usize> = (0..sizes.len())
        .map(|i| (share(i) / total as u128) as usize)
        .collect();
    let mut by_remainder: Vec<usize> = (0..sizes.len()).collect();
    by_remainder.sort_by_key(|&i| Reverse((share(i) % total as u128, ties[i], Reverse(i))));
    let leftover = limit - quotas.iter().sum::<usize>();
    // Each set with a non-zero remainder has room for one more, and there are at least
    // `leftover` of them, so this hands out exactly `leftover`.
    for &i in by_remainder.iter().take(leftover) {
        quotas[i] += 1;
    }

    // 2. Too small to keep.
    for quota in quotas.iter_mut().filter(|q| **q < min) {
        *quota = 0;
    }

    // 3 and 4.
    let mut deficit = limit - quotas.iter().sum::<usize>();
    while deficit > 0 {
        deficit = top_up(&mut quotas, sizes, &ties, limit, deficit);
        if deficit == 0 {
            break;
        }
        let revived = revive(&mut quotas, sizes, &ties, min, deficit);
        if revived == 0 {
            break;
        }
        deficit -= revived;
    }
    quotas
}

/// Step 3 of [`allocate`]; returns the deficit left (non-zero only when no kept set has room).
fn top_up(
    quotas: &mut [usize],
    sizes: &[usize],
    ties: &[u64],
    limit: usize,
    mut deficit: usize,
) -> usize {
    let kept_total: i128 = (0..sizes.len())
        .filter(|&i| quotas[i] > 0)
        .map(|i| sizes[i] as i128)
        .sum();
    // How far a set lags its share `size * limit / kept_total`, scaled by kept_total.
    let lag =
        |i: usize, quota: usize| sizes[i] as i128 * limit as i128 - quota as i128 * kept_total;
    let mut heap: BinaryHeap<(i128, u64, Reverse<usize>)> = (0..sizes.len())
        .filter(|&i| quotas[i] > 0 && quotas[i] < sizes[i])
        .map(|i| (lag(i, quotas[i]), ties[i], Reverse(i)))
        .collect();
    while deficit > 0 {
        let Some((_, tie, Reverse(i))) = heap.pop() else {
            break;
        };
        quotas[i] += 1;
        deficit -= 1;
        if quotas[i] < sizes[i] {
            heap.push((lag(i, quotas[i]), tie, Reverse(i)));
        }
    }
    deficit
}

/// Step 4 of [`allocate`]; returns how many samples the revived sets add.
fn revive(
    quotas: &mut [usize],
    sizes: &[usize],
    ties: &[u64],
    min: usize,
    deficit: usize,
) -> usize {
    let mut dropped: Vec<usize> = (0..sizes.len())
        .filter(|&i| quotas[i] == 0 && sizes[i] >= min)
        .collect();
    dropped.sort_by_key(|&i| Reverse((sizes[i], ties[i], Reverse(i))));
    let count = (deficit / min).min(dropped.len());
    for &i in &dropped[..count] {
        quotas[i] = min;
    }
    count * min
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{LabelSet, Sample, SampleId};

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("set{i}")).collect()
    }

    fn sample(id: usize, labels: &[&str]) -> Sample {
        Sample {
            id: SampleId(id.to_string()),
            labels: LabelSet::new(labels.iter().map(|l| l.to_string())),
            captions: vec![],
            image: None,
        }
    }

    /// 600 samples in label sets of sizes 1..=30 plus a few unlabelled, interleaved.
    fn corpus() -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut id = 0;
        for round in 0..30 {
            for set in 0..40usize {
                let size = set % 30 + 1;
                if round < size {
                    let name = format!("l{set}");
                    samples.push(sample(
                        id,
                        &[name.as_str(), if set % 3 == 0 { "x" } else { "y" }],
                    ));
                    id += 1;
                }
            }
            if round % 10 == 0 {
                samples.push(sample(id, &[]));
                id += 1;
            }
        }
        samples
    }

    fn rules(min: usize, limit: Option<usize>, seed: u64) -> Rules {
        Rules {
            min_label_set_count: min,
            outlier_std: None,
            limit,
            seed,
        }
    }

    fn counts(samples: &[Sample]) -> HashMap<&LabelSet, usize> {
        let labels: Vec<&LabelSet> = samples.iter().map(|s| &s.labels).collect();
        count_label_sets(&(0..samples.len()).collect::<Vec<_>>(), &labels)
    }

    fn ids(samples: &[Sample]) -> Vec<usize> {
        samples.iter().map(|s| s.id.0.parse().unwrap()).collect()
    }

    #[test]
    fn drops_unlabelled_then_rare() {
        let samples = vec![
            sample(0, &["a"]),
            sample(1, &[]),
            sample(2, &["b"]),
            sample(3, &["a"]),
            sample(4, &["b", "a"]),
            sample(5, &["a", "b"]),
        ];
        let (kept, stats) = apply(samples, &rules(2, None, 0));
        assert_eq!(ids(&kept), [0, 3, 4, 5]);
        let want = DatasetStats {
            loaded: 6,
            dropped_unlabelled: 1,
            dropped_rare: 1,
            dropped_by_limit: 0,
            label_sets: 2,
            ..DatasetStats::default()
        };
        assert_eq!(stats, want);
    }

    #[test]
    fn caption_rule_comes_first_and_only_when_asked() {
        let a = LabelSet::new(["a".to_string()]);
        let none = LabelSet::new(Vec::<String>::new());
        let labels = [&a, &a, &none, &a, &none];
        let captioned = [true, false, false, true, true];
        let (kept, stats) = select(&labels, Some(&captioned), &rules(2, None, 0));
        assert_eq!(kept, [0, 3]);
        assert_eq!(
            (stats.dropped_uncaptioned, stats.dropped_unlabelled),
            (2, 1)
        );
        let (kept, stats) = select(&labels, None, &rules(2, None, 0));
        assert_eq!(kept, [0, 1, 3]);
        assert_eq!(stats.dropped_unlabelled, 2);
    }

    #[test]
    fn outliers_by_hand() {
        // Nine label sets of 2 samples and one of 20 (rare sets: one of 1, dropped before).
        // Frequencies [2 × 9, 20]: mean 3.8, sample variance (9·1.8² + 16.2²) / 9 = 32.4, std
        // 5.692. Within 1 std: |2 − 3.8| = 1.8 kept, |20 − 3.8| = 16.2 dropped. Within 3 std
        // (17.08) all are kept.
        let mut samples = Vec::new();
        for set in 0..9 {
            samples.push(sample(samples.len(), &[&format!("s{set}")]));
            samples.push(sample(samples.len(), &[&format!("s{set}")]));
        }
        for _ in 0..20 {
            samples.push(sample(samples.len(), &["big"]));
        }
        samples.push(sample(samples.len(), &["lonely"]));
        let with = |k: f64| Rules {
            outlier_std: Some(k),
            ..rules(2, None, 0)
        };
        let (kept, stats) = apply(samples.clone(), &with(1.0));
        assert_eq!(kept.len(), 18);
        assert_eq!((stats.dropped_rare, stats.dropped_outliers), (1, 20));
        assert!(kept.iter().all(|s| s.labels.labels()[0] != "big"));
        // 16.2 / 5.692 = 2.846 std: the boundary lies between 2.84 and 2.85.
        assert_eq!(apply(samples.clone(), &with(2.84)).1.dropped_outliers, 20);
        assert_eq!(apply(samples.clone(), &with(2.85)).1.dropped_outliers, 0);
        let (kept, stats) = apply(samples.clone(), &with(3.0));
        assert_eq!((kept.len(), stats.dropped_outliers), (38, 0));
        // Before the limit: the limit stratifies what the outlier rule kept.
        let (kept, stats) = apply(
            samples,
            &Rules {
                limit: Some(10),
                ..with(1.0)
            },
        );
        assert_eq!((kept.len(), stats.dropped_by_limit), (10, 8));
    }

    #[test]
    fn one_label_set_has_no_outliers() {
        let samples: Vec<Sample> = (0..5).map(|i| sample(i, &["a"])).collect();
        let rules = Rules {
            outlier_std: Some(0.1),
            ..rules(2, None, 0)
        };
        assert_eq!(apply(samples, &rules).1.dropped_outliers, 0);
    }

    #[test]
    fn limit_at_or_above_count_keeps_everything() {
        let samples = corpus();
        let (all, _) = apply(samples.clone(), &rules(2, None, 0));
        let (limited, stats) = apply(samples, &rules(2, Some(all.len()), 0));
        assert_eq!(ids(&all), ids(&limited));
        assert_eq!(stats.dropped_by_limit, 0);
    }

    #[test]
    fn subsample_is_exact_stratified_ordered_and_seeded() {
        let samples = corpus();
        let (common, base) = apply(samples.clone(), &rules(3, None, 0));
        for limit in [3, 7, 50, 101, 250, common.len() - 1] {
            let (kept, stats) = apply(samples.clone(), &rules(3, Some(limit), 9));
            assert_eq!(kept.len(), limit, "limit {limit}");
            assert_eq!(stats.dropped_by_limit, common.len() - limit);
            assert_eq!(
                (stats.dropped_unlabelled, stats.dropped_rare),
                (base.dropped_unlabelled, base.dropped_rare)
            );
            let counts = counts(&kept);
            assert_eq!(stats.label_sets, counts.len());
            assert!(
                counts.values().all(|&c| c >= 3),
                "limit {limit}: {counts:?}"
            );
            // Original order kept.
            let order = ids(&kept);
            assert!(order.windows(2).all(|w| w[0] < w[1]));
            // Deterministic.
            let (again, _) = apply(samples.clone(), &rules(3, Some(limit), 9));
            assert_eq!(order, ids(&again));
        }
        let (a, _) = apply(samples.clone(), &rules(3, Some(101), 1));
        let (b, _) = apply(samples.clone(), &rules(3, Some(101), 2));
        assert_ne!(ids(&a), ids(&b));
    }

    #[test]
    fn subsample_is_proportional() {
        // Two label sets, 300 and 100 samples: a limit of 40 keeps 30 and 10.
        let samples: Vec<Sample> = (0..400)
            .map(|i| sample(i, if i % 4 == 0 { &["b"] } else { &["a"] }))
            .collect();
        let (kept, _) = apply(samples, &rules(2, Some(40), 5));
        let counts = counts(&kept);
        assert_eq!(counts[&LabelSet::new(["a".to_string()])], 30);
        assert_eq!(counts[&LabelSet::new(["b".to_string()])], 10);
    }

    #[test]
    fn allocate_largest_remainder() {
        // Shares 5.5, 2.75, 1.75: floors 5, 2, 1; the two left go to the 0.75s, not the 0.5.
        assert_eq!(allocate(&[22, 11, 7], &keys(3), 10, 1, 0), [5, 3, 2]);
        // Equal remainders: the seeded order decides, and different seeds decide differently.
        let winners: std::collections::BTreeSet<Vec<usize>> = (0..20)
            .map(|seed| allocate(&[10, 10, 10], &keys(3), 10, 1, seed))
            .collect();
        assert!(winners.len() > 1, "{winners:?}");
        assert!(
            winners
                .iter()
                .all(|q| q.iter().sum::<usize>() == 10 && q.contains(&4))
        );
    }

    #[test]
    fn allocate_redistributes_below_min_quotas() {
        // Shares 8.0, 1.6, 0.4: the 2nd gets 2 (largest remainder) and is kept with min 2, the 3rd
        // gets 0.
        assert_eq!(allocate(&[40, 8, 2], &keys(3), 10, 2, 0), [8, 2, 0]);
        // With min 3 the 2nd is dropped too and its 2 go to the first.
        assert_eq!(allocate(&[40, 8, 2], &keys(3), 10, 3, 0), [10, 0, 0]);
    }

    #[test]
    fn allocate_revives_when_no_kept_set_has_room() {
        // 100 sets of 10, limit 10, min 2: every proportional quota is 0 or 1, so five sets are
        // revived at 2 each rather than one set taking all 10.
        let q = allocate(&[10; 100], &keys(100), 10, 2, 3);
        assert_eq!(q.iter().sum::<usize>(), 10);
        assert_eq!(q.iter().filter(|&&x| x > 0).count(), 5);
        assert!(q.iter().all(|&x| x == 0 || x == 2));
        // An odd limit: four sets of 2 and one sample more to one of them.
        let q = allocate(&[10; 100], &keys(100), 9, 2, 3);
        assert_eq!(q.iter().sum::<usize>(), 9);
        assert_eq!(q.iter().filter(|&&x| x > 0).count(), 4);
    }

    #[test]
    fn allocate_as_close_as_possible() {
        assert_eq!(
            allocate(&[2, 2, 2], &keys(3), 5, 2, 0)
                .iter()
                .sum::<usize>(),
            4
        );
    }

    #[test]
    fn allocate_never_exceeds_sizes_or_limit() {
        for seed in 0..200u64 {
            let mut rng = SplitMix64::new(seed);
            let n = 1 + rng.below(30) as usize;
            let min = 1 + rng.below(4) as usize;
            let sizes: Vec<usize> = (0..n).map(|_| min + rng.below(20) as usize).collect();
            let total: usize = sizes.iter().sum();
            if total == min {
                continue; // no limit is both below the total and at least min
            }
            let limit = min + rng.below((total - min) as u64) as usize;
            let q = allocate(&sizes, &keys(n), limit, min, seed);
            assert!(q.iter().sum::<usize>() <= limit);
            assert!(
                q.iter()
                    .zip(&sizes)
                    .all(|(&q, &s)| q <= s && (q == 0 || q >= min)),
                "{q:?} {sizes:?}"
            );
            // Exact whenever any set still has room or a set could still be revived at min.
            let short = limit - q.iter().sum::<usize>();
            if short > 0 {
                assert!(short < min, "seed {seed}: short {short}");
                assert!(q.iter().zip(&sizes).all(|(&q, &s)| q == 0 || q == s));
            }
        }
    }

    #[test]
    fn limit_below_min_count_is_an_error() {
        let err = rules(3, Some(2), 0).check().unwrap_err().to_string();
        assert_eq!(
            err,
            "dataset: limit 2 is smaller than min_label_set_count 3 (no label set could be kept)"
        );
        assert!(rules(3, Some(0), 0).check().is_err());
        assert!(rules(3, Some(3), 0).check().is_ok());
        assert!(rules(3, None, 0).check().is_ok());
        let negative = Rules {
            outlier_std: Some(-1.0),
            ..rules(2, None, 0)
        };
        assert_eq!(
            negative.check().unwrap_err().to_string(),
            "dataset: outlier_std must be a positive number (got -1)"
        );
    }
}
