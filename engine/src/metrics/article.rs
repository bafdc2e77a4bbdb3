//! The study's scorer, reproduced: flag-only metrics on the order torchmetrics 0.11.4 saw.
//!
//! The study passed the hit flags of all N queries (k each, laid out query by query) to
//! torchmetrics' retrieval metrics with `indexes` = the query number. torchmetrics first sorts all
//! N·k entries by index with `torch.sort`, which on torch 2.0.0's CPU is libstdc++'s `std::sort`:
//! an unstable introsort. Every entry keeps its query, but within a query the k flags come out
//! permuted, and MRR, MAP and NDCG were computed on that order. To report numbers comparable with
//! the study's, [`unstable_sort_order`] replays the introsort's steps exactly (written from the
//! algorithm's description: median-of-three pivot moved to the front, unguarded partition, a depth
//! limit of 2·⌊log₂ n⌋ falling back to heapsort, then insertion sort with a threshold of 16);
//! precision and hit rate do not depend on order.
//!
//! The same module reads the hit-matrix files `embedlab score` takes: one query per line, k
//! characters `0`/`1` in retrieval order.

use std::collections::BTreeMap;

use super::{Metric, score_query};

/// Ranges this short are left to the final insertion sort.
const THRESHOLD: usize = 16;

/// The order libstdc++'s `std::sort` leaves `keys` in when it compares keys alone:
/// `order[i]` is the input index of the entry at output position `i`.
pub fn unstable_sort_order(keys: &[u32]) -> Vec<usize> {
    let mut entries: Vec<(u32, usize)> = keys.iter().copied().zip(0..).collect();
    let n = entries.len();
    if n > 1 {
        introsort_loop(&mut entries, 0, n, 2 * n.ilog2() as usize);
        final_insertion_sort(&mut entries);
    }
    entries.into_iter().map(|(_, index)| index).collect()
}

type Entry = (u32, usize);

fn less(a: &Entry, b: &Entry) -> bool {
    a.0 < b.0
}

/// Partitions `[first, last)` until every piece is at most [`THRESHOLD`] long, recursing into the
/// right piece and looping on the left one.
fn introsort_loop(v: &mut [Entry], first: usize, mut last: usize, mut depth_limit: usize) {
    while last - first > THRESHOLD {
        if depth_limit == 0 {
            heap_sort(&mut v[first..last]);
            return;
        }
        depth_limit -= 1;
        let cut = partition_around_median(v, first, last);
        introsort_loop(v, cut, last, depth_limit);
        last = cut;
    }
}

/// Moves the median of `first + 1`, the middle and `last − 1` to `first`, then partitions
/// `[first + 1, last)` around it; returns the cut.
fn partition_around_median(v: &mut [Entry], first: usize, last: usize) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1);
    unguarded_partition(v, first + 1, last, first)
}

fn move_median_to_first(v: &mut [Entry], result: usize, a: usize, b: usize, c: usize) {
    let chosen = if less(&v[a], &v[b]) {
        if less(&v[b], &v[c]) {
            b
        } else if less(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if less(&v[a], &v[c]) {
        a
    } else if less(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(result, chosen);
}

/// Hoare-style partition with no bounds checks in the scans: the pivot (at `pivot`, outside the
/// range) and the median-of-three guarantee each scan stops inside `[first, last)`.
fn unguarded_partition(v: &mut [Entry], mut first: usize, mut last: usize, pivot: usize) -> usize {
    loop {
        while less(&v[first], &v[pivot]) {
            first += 1;
        }
        last -= 1;
        while less(&v[pivot], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn final_insertion_sort(v: &mut [Entry]) {
    if v.len() > THRESHOLD {
        insertion_sort(&mut v[..THRESHOLD]);
        // The first THRESHOLD entries hold the minimum, so the shifts below need no bound check.
        for i in THRESHOLD..v.len() {
            unguarded_linear_insert(v, i);
        }
    } else {
        insertion_sort(v);
    }
}

fn insertion_sort(v: &mut [Entry]) {
    for i in 1..v.len() {
        if less(&v[i], &v[0]) {
            v[..=i].rotate_right(1);
        } else {
            unguarded_linear_insert(v, i);
        }
    }
}

/// Shifts `v[i]` left past every larger entry (there is a smaller-or-equal one before it).
fn unguarded_linear_insert(v: &mut [Entry], mut i: usize) {
    let value = v[i];
    while less(&value, &v[i - 1]) {
        v[i] = v[i - 1];
        i -= 1;
    }
    v[i] = value;
}

/// Heapsort as libstdc++'s `partial_sort(first, last, last)`: make a max-heap, then pop it.
fn heap_sort(v: &mut [Entry]) {
    let len = v.len();
    if len < 2 {
        return;
    }
    for parent in (0..=(len - 2) / 2).rev() {
        let value = v[parent];
        adjust_heap(v, parent, len, value);
    }
    for last in (1..len).rev() {
        let value = v[last];
        v[last] = v[0];
        adjust_heap(&mut v[..last], 0, last, value);
    }
}

/// Moves the hole at `hole` down to a leaf along the larger children, then sifts `value` up from
/// there (the order of moves decides where equal keys end up, so it follows libstdc++'s).
fn adjust_heap(v: &mut [Entry], mut hole: usize, len: usize, value: Entry) {
    let top = hole;
    let mut child = hole;
    while child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if less(&v[child], &v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        hole = child;
    }
    if len.is_multiple_of(2) && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        hole = child - 1;
    }
    let mut parent = hole.wrapping_sub(1) / 2;
    while hole > top && less(&v[parent], &value) {
        v[hole] = v[parent];
        hole = parent;
        parent = hole.wrapping_sub(1) / 2;
    }
    v[hole] = value;
}

/// Hit flags of n queries × k (row-major, retrieval order) in the order the study's scorer saw
/// them: each query's k flags permuted as the unstable sort left them.
pub fn scrambled_flags(flags: &[bool], k: usize) -> Vec<bool> {
    let keys: Vec<u32> = (0..flags.len()).map(|i| (i / k) as u32).collect();
    unstable_sort_order(&keys)
        .into_iter()
        .map(|i| flags[i])
        .collect()
}

/// A hit matrix: `flags` row-major, `k` per query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitMatrix {
    pub flags: Vec<bool>,
    pub k: usize,
}

impl HitMatrix {
    pub fn n_queries(&self) -> usize {
        self.flags.len() / self.k
    }

    pub fn row(&self, q: usize) -> &[bool] {
        &self.flags[q * self.k..(q + 1) * self.k]
    }
}

/// A malformed hit-matrix file: the 1-based line (0 for the whole file) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct HitsError {
    pub line: usize,
    pub message: String,
}

/// Parses a hit matrix: one query per line, k characters `0`/`1` (k from the first line);
/// surrounding whitespace and blank lines at the end are ignored.
pub fn parse_hits(text: &str) -> Result<HitMatrix, HitsError> {
    let lines: Vec<&str> = text.trim_end().lines().map(str::trim).collect();
    let k = lines.first().map_or(0, |l| l.len());
    if k == 0 {
        return Err(HitsError {
            line: if lines.is_empty() { 0 } else { 1 },
            message: "no queries (expected one line of 0/1 hit flags per query)".into(),
        });
    }
    let mut flags = Vec::with_capacity(lines.len() * k);
    for (i, line) in lines.iter().enumerate() {
        let error = |message: String| HitsError {
            line: i + 1,
            message,
        };
        if let Some(bad) = line.chars().find(|c| !matches!(c, '0' | '1')) {
            return Err(error(format!("{bad:?} is not a hit flag (0 or 1)")));
        }
        if line.len() != k {
            return Err(error(format!(
                "expected {k} flags (as on line 1), found {}",
                line.len()
            )));
        }
        flags.extend(line.bytes().map(|b| b == b'1'));
    }
    Ok(HitMatrix { flags, k })
}

/// `mrr`, `map_list`, `ndcg_list`, `precision` and `hit_rate` at k on the matrix's own order,
/// mean over queries, keyed like results.json (`mrr@10`).
pub fn flag_metrics(hits: &HitMatrix) -> BTreeMap<String, f64> {
    let n = hits.n_queries();
    let mut sums = [0.0; 8];
    for q in 0..n {
        // The flag-only metrics never read R (the relevant count), so any R ≥ 1 gives them.
        let scores = score_query(hits.row(q), 1);
        sums.iter_mut().zip(scores).for_each(|(sum, s)| *sum += s);
    }
    Metric::ALL
        .iter()
        .zip(sums)
        .filter(|(metric, _)| metric.from_flags_alone())
        .map(|(metric, sum)| (metric.key(hits.k), sum / n.max(1) as f64))
        .collect()
}

/// The same metrics as the study's scorer computed them, on [`scrambled_flags`].
pub fn article_metrics(hits: &HitMatrix) -> BTreeMap<String, f64> {
    let scrambled = HitMatrix {
        flags: scrambled_flags(&hits.flags, hits.k),
        k: hits.k,
    };
    flag_metrics(&scrambled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fixtures() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/article-compat");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: {} is absent", dir.display());
            None
        }
    }

    fn fixture(n: usize) -> Option<(HitMatrix, serde_json::Value)> {
        let dir = fixtures()?;
        let hits = std::fs::read_to_string(dir.join(format!("hits_{n}.txt"))).unwrap();
        let expected = std::fs::read(dir.join(format!("expected_{n}.json"))).unwrap();
        Some((
            parse_hits(&hits).unwrap(),
            serde_json::from_slice(&expected).unwrap(),
        ))
    }

    #[test]
    fn matches_torchmetrics_0_11_4_on_torch_2_0_0() {
        for n in [50, 1000, 20000] {
            let Some((hits, expected)) = fixture(n) else {
                return;
            };
            assert_eq!(hits.n_queries(), n);
            let got = article_metrics(&hits);
            for (key, want) in expected["article_compatible"].as_object().unwrap() {
                let (g, w) = (got[key], want.as_f64().unwrap());
                assert!(
                    (g - w).abs() < 1e-6,
                    "N = {n}, {key}: ours {g}, torchmetrics {w}"
                );
            }
        }
    }

    #[test]
    fn the_scramble_changes_order_dependent_metrics_only() {
        let Some((hits, _)) = fixture(1000) else {
            return;
        };
        let (exact, article) = (flag_metrics(&hits), article_metrics(&hits));
        assert_ne!(exact["mrr@10"], article["mrr@10"]);
        assert_eq!(exact["precision@10"], article["precision@10"]);
        assert_eq!(exact["hit_rate@10"], article["hit_rate@10"]);
    }

    #[test]
    fn short_ranges_keep_their_order() {
        // At most 16 entries go straight to insertion sort, which is stable.
        assert_eq!(unstable_sort_order(&[3; 16]), (0..16).collect::<Vec<_>>());
        assert_eq!(unstable_sort_order(&[1, 0, 1, 0]), [1, 3, 0, 2]);
    }

    #[test]
    fn seventeen_equal_keys_by_hand() {
        // n = 17 > 16: one partition step. mid = 8; the median of positions 1, 8, 16 (equal
        // keys: no `less` holds, so the last branch picks the middle one) is swapped to the front.
        // Nothing is less than the pivot, so the partition of [1, 17) swaps at every step:
        // 1↔16, 2↔15, ..., 7↔10, 8↔9, and cuts at 9. Both pieces are ≤ 16 long, and the final
        // insertion sort moves nothing among equal keys.
        let got = unstable_sort_order(&[0; 17]);
        let mut expected: Vec<usize> = (0..17).collect();
        expected.swap(0, 8);
        for (a, b) in [
            (1, 16),
            (2, 15),
            (3, 14),
            (4, 13),
            (5, 12),
            (6, 11),
            (7, 10),
            (8, 9),
        ] {
            expected.swap(a, b);
        }
        assert_eq!(got, expected);
    }

    /// A tiny xorshift, so the property tests need no dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn assert_sorted_permutation(keys: &[u32], order: &[usize]) {
        let mut seen = vec![false; keys.len()];
        order.iter().for_each(|&i| seen[i] = true);
        assert!(seen.iter().all(|&s| s), "a permutation");
        assert!(order.windows(2).all(|w| keys[w[0]] <= keys[w[1]]), "sorted");
    }

    #[test]
    fn sorts_random_keys_and_is_a_permutation() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for n in [0, 1, 2, 17, 100, 1000, 5000] {
            for modulus in [1, 3, 1000] {
                let keys: Vec<u32> = (0..n)
                    .map(|_| (xorshift(&mut state) % modulus) as u32)
                    .collect();
                assert_sorted_permutation(&keys, &unstable_sort_order(&keys));
            }
        }
    }

    #[test]
    fn the_heapsort_fallback_sorts_too() {
        let mut state = 7;
        for n in [2, 3, 16, 17, 64, 999] {
            let keys: Vec<u32> = (0..n).map(|_| (xorshift(&mut state) % 50) as u32).collect();
            let mut entries: Vec<Entry> = keys.iter().copied().zip(0..).collect();
            introsort_loop(&mut entries, 0, n, 0);
            final_insertion_sort(&mut entries);
            let order: Vec<usize> = entries.iter().map(|e| e.1).collect();
            assert_sorted_permutation(&keys, &order);
        }
    }

    #[test]
    fn flag_metrics_by_hand() {
        // Hits at ranks 2 and 4 of 5: MRR 1/2, MAP (1/2 + 2/4) / 2, NDCG
        // (1/log2 3 + 1/log2 5) / (1 + 1/log2 3), precision 2/5.
        let hits = parse_hits("01010\n00000\n").unwrap();
        let m = flag_metrics(&hits);
        let ndcg = (1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        let close = |key: &str, want: f64| assert!((m[key] - want).abs() < 1e-12, "{key}");
        close("mrr@5", 0.25);
        close("map_list@5", 0.25);
        close("ndcg_list@5", ndcg / 2.0);
        close("precision@5", 0.2);
        close("hit_rate@5", 0.5);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let err = |text: &str| parse_hits(text).unwrap_err().to_string();
        assert_eq!(
            err("0101\n0110\n011\n"),
            "line 3: expected 4 flags (as on line 1), found 3"
        );
        assert_eq!(
            err("0101\n01x1\n"),
            "line 2: 'x' is not a hit flag (0 or 1)"
        );
        assert_eq!(
            err(""),
            "line 0: no queries (expected one line of 0/1 hit flags per query)"
        );
        assert_eq!(
            parse_hits(" 01\r\n10 \n\n").unwrap().flags,
            [false, true, true, false]
        );
    }
}
