//! Approximate k-nearest-neighbour search of every row against all others, through faiss.
//!
//! Input: a [`Vectors`] matrix of `n` L2-normalised rows and [`FaissOptions`]: `k`, a faiss
//! index-factory string (`HNSW32`, `IVF1024,Flat`, `Flat`, ...) and optional `ParameterSpace`
//! settings (`efSearch=128`, `nprobe=16`). Output: [`FaissSearch`], the [`Neighbours`] (the same
//! contract as [`super::exact`]) and what building and searching the index cost.
//!
//! How: the factory builds an inner-product index of the rows' dimension; the parameters are set
//! right away (so construction settings such as `efConstruction` apply too); an index that needs
//! training (`is_trained` false: IVF, PQ) is trained on all rows; every row is added, its id being
//! its row. Then every row queries the index for `k + 1` results, in blocks of
//! [`QUERY_BLOCK`] queries (faiss parallelises each block over queries with OpenMP, at its default
//! thread count, recorded in [`FaissSearch::threads`]).
//!
//! Invariants (the contract of [`crate::retrieval`]):
//! - a row never lists itself: its own id is dropped from its `k + 1` results, or, when the index
//!   did not return it (an approximate search may miss it; a tied duplicate may displace it),
//!   the worst of the `k + 1` is;
//! - each list is ordered by score descending, ties broken by the smaller row index: faiss's
//!   results are re-sorted by `(score desc, row asc)`; and when a tie straddles the k-th place
//!   (the last of faiss's results scores as the k-th other row), faiss chose which of the tied
//!   rows to return — not necessarily the smaller ones — so that query asks again for twice as
//!   many results, until the tie is inside them. `Flat` thus gives exactly the exact backend's
//!   lists whenever the two compute the same scores (exact ties included);
//! - scores are faiss's inner products (`f32`, its own summation order: they may differ from the
//!   exact backend's in the last bits, and so may the order of near-ties);
//! - a query for which faiss returns fewer than `k` other rows (ids of -1: an IVF probing too few
//!   lists, say) is an error naming the row, never a short list.
//!
//! Determinism: `Flat` and IVF are deterministic; HNSW inserts in parallel, so with more than one
//! OpenMP thread two builds of the same rows differ (measured on 2 threads, random unit vectors:
//! 98 % of the lists identical at n = 4,000, d = 32, but 48 % at n = 20,000, d = 64, recall
//! 0.872 vs 0.873); with `OMP_NUM_THREADS=1` the builds were identical. The plan caches the first
//! result under its key, so a report stays reproducible from its cache.
//!
//! No `unsafe`: the faiss crate's safe API covers everything used here.

use std::time::Instant;

use faiss::index::IndexImpl;
use faiss::index::autotune::ParameterSpace;
use faiss::{Index, MetricType};

use super::{FAISS_VERSION, FaissFacts, Neighbours, RetrievalError, check_input, parse_parameters};
use crate::embed::Vectors;

/// Queries per faiss search call: large enough for OpenMP to share out, small enough for
/// progress to move.
pub const QUERY_BLOCK: usize = 4096;

/// How to search.
#[derive(Clone, Debug, PartialEq)]
pub struct FaissOptions {
    /// Neighbours per query; `1 <= k < n`.
    pub k: usize,
    /// A faiss index-factory string, e.g. `HNSW32`, `IVF1024,Flat`, `Flat`.
    pub index: String,
    /// faiss `ParameterSpace` settings, `name=value` separated by commas (`efSearch=128`); may be
    /// empty.
    pub parameters: String,
}

impl FaissOptions {
    /// `HNSW32`, faiss's defaults, the given `k`.
    pub fn hnsw32(k: usize) -> FaissOptions {
        FaissOptions {
            k,
            index: "HNSW32".into(),
            parameters: String::new(),
        }
    }
}

/// A finished search: the neighbours and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct FaissSearch {
    pub neighbours: Neighbours,
    /// Build and search times, threads, library version.
    pub facts: FaissFacts,
}

/// Finds, for every row of `vectors`, its `opts.k` nearest other rows by inner product, with
/// the faiss index `opts.index` describes.
///
/// `vectors` must be L2-normalised already for the scores to be cosines. `progress` is called
/// with the number of queries just finished, once per block of [`QUERY_BLOCK`] queries.
pub fn search(
    vectors: &Vectors,
    opts: &FaissOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<FaissSearch, RetrievalError> {
    check_input(vectors, opts.k)?;
    let started = Instant::now();
    let mut index = build(vectors.dim, &opts.index, &opts.parameters)?;
    let faiss_error = |e: faiss::error::Error| RetrievalError::Faiss {
        index: opts.index.clone(),
        message: message(&e),
    };
    if !index.is_trained() {
        index.train(&vectors.data).map_err(faiss_error)?;
    }
    index.add(&vectors.data).map_err(faiss_error)?;
    let build_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (n, dim, k) = (vectors.n, vectors.dim, opts.k);
    let mut indices = Vec::with_capacity(n * k);
    let mut scores = Vec::with_capacity(n * k);
    for first in (0..n).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(n - first);
        let queries = &vectors.data[first * dim..(first + rows) * dim];
        let found = index.search(queries, k + 1).map_err(faiss_error)?;
        for offset in 0..rows {
            let query = first + offset;
            let span = offset * (k + 1)..(offset + 1) * (k + 1);
            let mut results = Results::of(
                &found.labels[span.clone()],
                &found.distances[span],
                query,
                n,
            );
            // A tie straddling the k-th place: faiss returned some of the tied rows, not
            // necessarily the smaller ones, so ask for more until every tied row is in.
            while results.straddles(k) {
                let asked = (results.asked * 2).min(n);
                let row = &vectors.data[query * dim..(query + 1) * dim];
                let again = index.search(row, asked).map_err(faiss_error)?;
                results = Results::of(&again.labels, &again.distances, query, n);
            }
            if results.others.len() < k {
                return Err(RetrievalError::TooFewNeighbours {
                    index: opts.index.clone(),
                    query,
                    found: results.others.len(),
                    k,
                });
            }
            // `check_input` guarantees every row index fits in a u32.
            indices.extend(results.others[..k].iter().map(|&(row, _)| row as u32));
            scores.extend(results.others[..k].iter().map(|&(_, score)| score));
        }
        progress(rows);
    }
    Ok(FaissSearch {
        neighbours: Neighbours {
            n,
            k,
            indices,
            scores,
        },
        facts: FaissFacts {
            build_s,
            search_s: started.elapsed().as_secs_f64(),
            threads: openmp_threads(),
            version: FAISS_VERSION.to_string(),
        },
    })
}

/// One query's results from faiss: the other rows, sorted by (score desc, row asc), and what it
/// takes to tell whether rows tied with the k-th may be missing.
struct Results {
    others: Vec<(usize, f32)>,
    /// Results asked for; `returned` of them were real rows (faiss pads with -1).
    asked: usize,
    returned: usize,
    /// The lowest score returned (the query's own row included).
    lowest: f32,
    /// Rows in the index: asking for all of them leaves nothing out.
    n: usize,
}

impl Results {
    fn of(labels: &[faiss::Idx], distances: &[f32], query: usize, n: usize) -> Results {
        let real: Vec<(usize, f32)> = (labels.iter().zip(distances))
            .filter_map(|(label, &score)| Some((label.get()? as usize, score)))
            .filter(|&(row, _)| row < n)
            .collect();
        let lowest = real.iter().map(|&(_, s)| s).fold(f32::INFINITY, f32::min);
        let mut others: Vec<(usize, f32)> = real
            .iter()
            .copied()
            .filter(|&(row, _)| row != query)
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Results {
            others,
            asked: labels.len(),
            returned: real.len(),
            lowest,
            n,
        }
    }

    /// Whether rows the index would rank at the k-th place may have been left out: faiss
    /// filled every slot (so more rows may follow) and the last one ties with the k-th other
    /// row — or fewer than k others came back from full slots (ties with the query itself).
    fn straddles(&self, k: usize) -> bool {
        let full = self.returned == self.asked && self.asked < self.n;
        full && (self.others.len() < k || self.others[k - 1].1 == self.lowest)
    }
}

/// Checks an index-factory string and its parameters before any vectors exist (a manifest is
/// checked when it is read): faiss must accept both for some dimension among [`PROBE_DIMS`], so
/// that a typo fails at once. A string valid only for other dimensions (a `PQ` whose `M` divides
/// neither) still fails later, at search time, with faiss's message.
pub fn check(index: &str, parameters: &str) -> Result<(), RetrievalError> {
    let mut first_error = None;
    for dim in PROBE_DIMS {
        match build(dim, index, parameters) {
            Ok(_) => return Ok(()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("PROBE_DIMS is not empty"))
}

/// Dimensions [`check`] tries: 1536 = 2⁹·3 divides by every usual PQ `M` (8 … 256, 48, 96);
/// 2520 by 5, 7, 9 and 10.
const PROBE_DIMS: [usize; 2] = [1536, 2520];

/// An empty inner-product index from the factory, with the parameters set.
fn build(dim: usize, description: &str, parameters: &str) -> Result<IndexImpl, RetrievalError> {
    let settings =
        parse_parameters(parameters).map_err(|message| RetrievalError::FaissParameters {
            parameters: parameters.to_string(),
            message,
        })?;
    let dim = u32::try_from(dim).map_err(|_| RetrievalError::Faiss {
        index: description.to_string(),
        message: format!("{dim} dimensions are more than faiss takes"),
    })?;
    let index = faiss::index_factory(dim, description, MetricType::InnerProduct).map_err(|e| {
        RetrievalError::Faiss {
            index: description.to_string(),
            message: message(&e),
        }
    })?;
    if settings.is_empty() {
        return Ok(index);
    }
    let parameter_error = |e: faiss::error::Error| RetrievalError::FaissParameters {
        parameters: parameters.to_string(),
        message: message(&e),
    };
    let space = ParameterSpace::new().map_err(parameter_error)?;
    for (name, value) in &settings {
        space
            .set_index_parameter(&index, name, *value)
            .map_err(parameter_error)?;
    }
    Ok(index)
}

/// faiss's message on one line, without the C++ location it prefixes (`Error in <signature> at
/// <file>:<line>: `), which says nothing to a user.
fn message(error: &faiss::error::Error) -> String {
    let text = match error {
        faiss::error::Error::Native(native) => native.msg().to_string(),
        other => other.to_string(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.find(".cpp:").or_else(|| text.find(".h:")) {
        Some(at) => {
            let rest = &text[at..];
            match rest.find(": ") {
                Some(colon) => rest[colon + 2..].to_string(),
                None => text,
            }
        }
        None => text,
    }
}

/// The threads OpenMP gives faiss by default: `OMP_NUM_THREADS` (its first value) when set,
/// else the CPUs this process may use. Derived the way libgomp does, not queried from it (that
/// would take `unsafe` FFI).
pub fn openmp_threads() -> usize {
    std::env::var("OMP_NUM_THREADS")
        .ok()
        .and_then(|v| v.split(',').next()?.trim().parse().ok())
        .filter(|&t: &usize| t > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieval::bench::random_unit_vectors;
    use crate::retrieval::{ExactOptions, recall};
    use crate::rng::SplitMix64;

    fn faiss(vectors: &Vectors, k: usize, index: &str, parameters: &str) -> FaissSearch {
        let opts = FaissOptions {
            k,
            index: index.into(),
            parameters: parameters.into(),
        };
        search(vectors, &opts, &|_| {}).expect("valid search")
    }

    fn exact(vectors: &Vectors, k: usize) -> Neighbours {
        let opts = ExactOptions {
            k,
            ..ExactOptions::default()
        };
        crate::retrieval::search(vectors, &opts, &|_| {}).expect("valid search")
    }

    /// Every list: k distinct other rows, scores descending, equal scores in row order, each
    /// score the row's own dot product.
    fn check_contract(vectors: &Vectors, found: &Neighbours) {
        for query in 0..found.n {
            let (rows, scores) = (found.of(query), found.scores_of(query));
            for i in 0..found.k {
                assert_ne!(rows[i] as usize, query, "query {query} lists itself");
                assert!(!rows[..i].contains(&rows[i]), "query {query}: row twice");
                let dot: f32 = (vectors.row(query).iter())
                    .zip(vectors.row(rows[i] as usize))
                    .map(|(a, b)| a * b)
                    .sum();
                assert!((dot - scores[i]).abs() < 1e-5, "query {query} rank {i}");
                if i > 0 {
                    let ordered = scores[i - 1] > scores[i]
                        || (scores[i - 1] == scores[i] && rows[i - 1] < rows[i]);
                    assert!(
                        ordered,
                        "query {query}: ranks {} and {i} out of order",
                        i - 1
                    );
                }
            }
        }
    }

    #[test]
    fn flat_gives_the_exact_neighbours_on_random_unit_vectors() {
        for (case, (n, dim, k)) in [(700, 24, 10), (1500, 64, 1), (5000, 16, 25)]
            .into_iter()
            .enumerate()
        {
            let vectors = random_unit_vectors(n, dim, 40 + case as u64);
            let found = faiss(&vectors, k, "Flat", "");
            let reference = exact(&vectors, k);
            check_contract(&vectors, &found.neighbours);
            // The two sum the dot products in different orders, so a near-tie (scores within
            // 1e-5) may come out either way; everywhere else the rows are the same.
            for query in 0..n {
                let (ours, theirs) = (found.neighbours.of(query), reference.of(query));
                let scores = reference.scores_of(query);
                for i in 0..k {
                    let clear = (i == 0 || scores[i - 1] - scores[i] > 1e-5)
                        && (i + 1 == k || scores[i] - scores[i + 1] > 1e-5);
                    if clear {
                        assert_eq!(ours[i], theirs[i], "case {case} query {query} rank {i}");
                    }
                    let diff = found.neighbours.scores_of(query)[i] - scores[i];
                    assert!(diff.abs() < 1e-5, "case {case} query {query} rank {i}");
                }
            }
            assert!(recall(&found.neighbours, &reference) > 0.999, "case {case}");
            assert!(found.facts.threads >= 1 && found.facts.version == FAISS_VERSION);
        }
    }

    /// Rows drawn from a few patterns of multiples of 1/4: every dot product is exact in `f32`
    /// whatever the summation order, so both backends see the same ties, and `Flat` must break
    /// them as the exact backend does (the smaller row first), including at the k-th place.
    #[test]
    fn flat_breaks_exact_ties_like_the_exact_backend() {
        let (n, dim, patterns) = (300, 6, 7);
        let mut rng = SplitMix64::new(11);
        let pool: Vec<f32> = (0..patterns * dim)
            .map(|_| (rng.below(5) as f32 - 2.0) * 0.25)
            .collect();
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let pattern = rng.below(patterns as u64) as usize;
            data.extend_from_slice(&pool[pattern * dim..(pattern + 1) * dim]);
        }
        let vectors = Vectors { n, dim, data };
        for k in [1, 5, 40, 120] {
            let found = faiss(&vectors, k, "Flat", "");
            let reference = exact(&vectors, k);
            assert_eq!(found.neighbours, reference, "k {k}");
            assert_eq!(recall(&found.neighbours, &reference), 1.0);
        }
    }

    #[test]
    fn hnsw32_finds_most_exact_neighbours_and_keeps_the_contract() {
        let vectors = random_unit_vectors(4000, 32, 7);
        let k = 10;
        let reference = exact(&vectors, k);
        let found = faiss(&vectors, k, "HNSW32", "");
        check_contract(&vectors, &found.neighbours);
        let default = recall(&found.neighbours, &reference);
        assert!(default >= 0.9, "HNSW32 recall {default}");
        // A wider beam finds at least as much (up to HNSW's randomness, a small margin).
        let wide = faiss(&vectors, k, "HNSW32", "efSearch=256");
        let wider = recall(&wide.neighbours, &reference);
        assert!(
            wider >= default - 0.005 && wider > 0.98,
            "{default} → {wider}"
        );
        assert!(found.facts.build_s > 0.0 && found.facts.search_s > 0.0);
    }

    #[test]
    fn an_index_that_needs_training_is_trained() {
        let vectors = random_unit_vectors(3000, 16, 3);
        let reference = exact(&vectors, 5);
        // Probing every list of an IVF index is an exhaustive search.
        let found = faiss(&vectors, 5, "IVF16,Flat", "nprobe=16");
        check_contract(&vectors, &found.neighbours);
        assert!(recall(&found.neighbours, &reference) > 0.999);
    }

    #[test]
    fn a_bad_factory_string_names_itself_and_faiss_s_message() {
        let vectors = random_unit_vectors(50, 8, 1);
        let opts = FaissOptions {
            index: "HNSW3x".into(),
            ..FaissOptions::hnsw32(3)
        };
        let err = search(&vectors, &opts, &|_| {}).unwrap_err().to_string();
        assert!(err.starts_with("faiss index \"HNSW3x\": "), "{err}");
        assert!(err.contains("could not parse"), "{err}");
        assert!(!err.contains(".cpp") && err.lines().count() == 1, "{err}");
        let err = check("HNSW3x", "").unwrap_err().to_string();
        assert!(err.contains("\"HNSW3x\""), "{err}");
        check("HNSW32", "efSearch=64").unwrap();
        check("IVF1024,PQ64", "nprobe=8").unwrap();
    }

    #[test]
    fn a_parameter_the_index_lacks_is_an_error() {
        let err = check("HNSW32", "nprobe=8").unwrap_err().to_string();
        assert!(err.starts_with("faiss parameters \"nprobe=8\": "), "{err}");
        assert!(err.contains("nprobe"), "{err}");
        let err = check("HNSW32", "efSearch").unwrap_err().to_string();
        assert!(err.contains("is not name=value"), "{err}");
    }

    #[test]
    fn fewer_than_k_results_is_an_error_naming_the_query() {
        // 256 lists over 600 rows, probing one: most lists hold 2 or 3 rows, far fewer than 20.
        let vectors = random_unit_vectors(600, 8, 5);
        let opts = FaissOptions {
            k: 20,
            index: "IVF256,Flat".into(),
            parameters: "nprobe=1".into(),
        };
        let err = search(&vectors, &opts, &|_| {}).unwrap_err();
        let RetrievalError::TooFewNeighbours {
            query, found, k, ..
        } = err
        else {
            panic!("{err}")
        };
        assert!(found < k && k == 20 && query < 600);
        let message = err.to_string();
        assert!(
            message.contains(&format!("query row {query}")) && message.contains("nprobe"),
            "{message}"
        );
    }

    #[test]
    fn invalid_input_is_refused_before_faiss_sees_it() {
        let vectors = random_unit_vectors(6, 4, 1);
        let err = search(&vectors, &FaissOptions::hnsw32(6), &|_| {}).unwrap_err();
        assert!(
            matches!(err, RetrievalError::InvalidK { k: 6, n: 6 }),
            "{err}"
        );
    }

    #[test]
    fn progress_counts_every_query() {
        let vectors = random_unit_vectors(QUERY_BLOCK + 100, 4, 2);
        let done = std::sync::atomic::AtomicUsize::new(0);
        search(&vectors, &FaissOptions::hnsw32(2), &|q| {
            done.fetch_add(q, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(done.into_inner(), QUERY_BLOCK + 100);
    }

    /// The faiss-sys release [`FAISS_VERSION`] comes from: checked against Cargo.lock, so that a
    /// dependency bump cannot leave the version, and so the cache keys, stale.
    const FAISS_SYS: &str = "0.7.0";

    #[test]
    fn the_version_is_that_of_the_locked_faiss_sys() {
        let lock = include_str!("../../../Cargo.lock");
        let entry = format!("name = \"faiss-sys\"\nversion = \"{FAISS_SYS}\"");
        assert!(
            lock.contains(&entry),
            "Cargo.lock's faiss-sys is not {FAISS_SYS}: update FAISS_VERSION and FAISS_SYS"
        );
    }
}
