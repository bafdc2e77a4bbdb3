//! k-nearest-neighbour search by cosine similarity, every sample querying all others.
//!
//! Input: L2-normalised vectors (so the dot product is the cosine). Output: [`Neighbours`], for
//! each query its k best rows, best first, itself excluded, ties broken by the smaller row index.
//! Retrieval never knows where the vectors came from.
//!
//! Backends: [`exact`] (blocked GEMM, the reference) and, with the cargo feature `faiss`,
//! `faiss` (approximate search through faiss's index factory, e.g. `HNSW32`). Both keep the same
//! contract; an approximate list may simply hold other rows than the exact one, which [`recall`]
//! measures.

pub mod bench;
pub mod exact;
#[cfg(feature = "faiss")]
pub mod faiss;

pub use exact::{ExactOptions, search};

/// The faiss library version the `faiss` feature builds (faiss-sys 0.7's bundled sources; a test
/// of `faiss.rs` checks Cargo.lock). Part of every faiss cache key.
pub const FAISS_VERSION: &str = "1.12.0";

/// What a rebuild needs for `backend = "faiss"`; said wherever a build without the feature meets it.
pub const FAISS_MISSING: &str = "this embedlab was built without the `faiss` feature (approximate \
     search); rebuild with it, e.g. `cargo build --release -p embedlab --features faiss` (builds \
     faiss from source: needs cmake, a C++ compiler and a BLAS + LAPACK, e.g. `apt-get install \
     cmake libopenblas-dev liblapack-dev`)";

/// For each of `n` queries, its `k` nearest rows and their scores, row-major (`n × k`).
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    pub n: usize,
    pub k: usize,
    /// Row indices of the neighbours; query `q` owns `indices[q*k .. (q+1)*k]`.
    pub indices: Vec<u32>,
    /// Cosine similarities, aligned with `indices`.
    pub scores: Vec<f32>,
}

impl Neighbours {
    pub fn of(&self, query: usize) -> &[u32] {
        &self.indices[query * self.k..(query + 1) * self.k]
    }

    pub fn scores_of(&self, query: usize) -> &[f32] {
        &self.scores[query * self.k..(query + 1) * self.k]
    }
}

/// Mean over queries of the share of the exact neighbours an approximate search found:
/// `|ann(q) ∩ exact(q)| / k`, averaged over the `n` queries (1.0: the same sets; order is ignored).
///
/// A row tied in score with the exact list's last entry but not in it counts as a miss, so on
/// tied data even a correct search may score a little below 1.
///
/// # Panics
/// When the two disagree on `n` or `k` (they must come from the same vectors and `k`).
pub fn recall(ann: &Neighbours, exact: &Neighbours) -> f64 {
    assert_eq!(
        (ann.n, ann.k),
        (exact.n, exact.k),
        "recall compares neighbour lists of the same shape"
    );
    if ann.n == 0 || ann.k == 0 {
        return 1.0;
    }
    let (mut found, mut wanted) = (Vec::with_capacity(ann.k), Vec::with_capacity(ann.k));
    let mut sum = 0.0;
    for query in 0..ann.n {
        found.clear();
        found.extend_from_slice(ann.of(query));
        found.sort_unstable();
        wanted.clear();
        wanted.extend_from_slice(exact.of(query));
        wanted.sort_unstable();
        sum += common(&found, &wanted) as f64 / ann.k as f64;
    }
    sum / ann.n as f64
}

/// How many values two sorted lists share (each list holds distinct rows).
fn common(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut shared) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    shared
}

/// faiss `ParameterSpace` settings written `name=value,name=value` (e.g. `efSearch=128` or
/// `nprobe=16`), parsed; spaces around names and values are ignored, the empty string is none.
/// The message of an error names the offending item.
pub fn parse_parameters(text: &str) -> Result<Vec<(String, f64)>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|item| {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("\"{}\" is not name=value", item.trim()))?;
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "\"{}\": expected a parameter name such as efSearch",
                    item.trim()
                ));
            }
            match value.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok((name.to_string(), v)),
                _ => Err(format!("\"{}\": the value is not a number", item.trim())),
            }
        })
        .collect()
}

/// Parsed parameters written back in one canonical form (`efSearch=128,nprobe=16`), so that
/// spellings that mean the same thing share a cache key.
pub fn canonical_parameters(parameters: &[(String, f64)]) -> String {
    let items: Vec<String> = parameters.iter().map(|(n, v)| format!("{n}={v}")).collect();
    items.join(",")
}

/// What a faiss search reported beyond its neighbours (kept with cached results).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaissFacts {
    /// Seconds to build the index: create, train where the index needs it, add every row.
    pub build_s: f64,
    /// Seconds searching every row's neighbours in the built index.
    pub search_s: f64,
    /// The OpenMP threads faiss ran with (its default: `OMP_NUM_THREADS`, else the CPUs).
    pub threads: usize,
    /// The faiss library version, e.g. `1.12.0`.
    pub version: String,
}

/// Checks what every backend relies on: the shape, `1 <= k < n`, u32 row indices, finite values.
pub(crate) fn check_input(vectors: &crate::embed::Vectors, k: usize) -> Result<(), RetrievalError> {
    let crate::embed::Vectors { n, dim, ref data } = *vectors;
    if data.len() != n * dim {
        return Err(RetrievalError::Shape {
            n,
            dim,
            len: data.len(),
        });
    }
    if k == 0 || k >= n {
        return Err(RetrievalError::InvalidK { k, n });
    }
    if u32::try_from(n - 1).is_err() {
        return Err(RetrievalError::TooManyRows { n });
    }
    match (0..n).find(|&row| !vectors.row(row).iter().all(|v| v.is_finite())) {
        Some(row) => Err(RetrievalError::NonFinite { row }),
        None => Ok(()),
    }
}

/// Why a search could not run. Each message names the offending values.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error(
        "k = {k} neighbours requested among n = {n} vectors; need 1 <= k < n (a query never lists itself)"
    )]
    InvalidK { k: usize, n: usize },

    #[error(
        "block sizes must be at least 1 (query_block = {query_block}, corpus_block = {corpus_block})"
    )]
    ZeroBlock {
        query_block: usize,
        corpus_block: usize,
    },

    /// `Vectors::data` disagrees with `n × dim`.
    #[error("vectors claim {n} rows of {dim} values but hold {len} values")]
    Shape { n: usize, dim: usize, len: usize },

    /// Neighbour lists store row indices as `u32`.
    #[error("{n} vectors exceed the u32 row indices of neighbour lists")]
    TooManyRows { n: usize },

    /// A NaN or infinity would make the order of scores meaningless.
    #[error("vector row {row} holds a non-finite value")]
    NonFinite { row: usize },

    /// faiss refused the index factory string (or failed building or searching that index).
    #[error("faiss index \"{index}\": {message}")]
    Faiss { index: String, message: String },

    /// faiss refused a `ParameterSpace` setting, or the settings do not parse.
    #[error("faiss parameters \"{parameters}\": {message}")]
    FaissParameters { parameters: String, message: String },

    /// The approximate search returned fewer than k other rows for a query.
    #[error(
        "faiss index \"{index}\" found only {found} of the k = {k} neighbours of query row {query}; \
         let it search more of the index (a larger efSearch or nprobe in retrieval.parameters)"
    )]
    TooFewNeighbours {
        index: String,
        query: usize,
        found: usize,
        k: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(k: usize, rows: &[&[u32]]) -> Neighbours {
        Neighbours {
            n: rows.len(),
            k,
            indices: rows.iter().flat_map(|r| r.iter().copied()).collect(),
            scores: vec![0.0; rows.len() * k],
        }
    }

    #[test]
    fn recall_counts_shared_rows_whatever_their_order() {
        let exact = lists(3, &[&[1, 2, 3], &[0, 2, 3], &[5, 4, 0]]);
        assert_eq!(recall(&exact, &exact), 1.0);
        // Same sets in another order: still all found.
        let shuffled = lists(3, &[&[3, 1, 2], &[2, 3, 0], &[0, 5, 4]]);
        assert_eq!(recall(&shuffled, &exact), 1.0);
        // 2 of 3, 1 of 3, 0 of 3 found: (2/3 + 1/3 + 0) / 3.
        let ann = lists(3, &[&[1, 2, 9], &[0, 7, 8], &[6, 7, 8]]);
        assert!((recall(&ann, &exact) - 1.0 / 3.0).abs() < 1e-15);
        let one = lists(1, &[&[4], &[2]]);
        assert_eq!(recall(&lists(1, &[&[4], &[3]]), &one), 0.5);
    }

    #[test]
    #[should_panic(expected = "same shape")]
    fn recall_refuses_lists_of_another_shape() {
        recall(&lists(2, &[&[1, 2]]), &lists(1, &[&[1], &[0]]));
    }

    #[test]
    fn parameters_parse_into_names_and_numbers() {
        assert_eq!(parse_parameters("").unwrap(), []);
        assert_eq!(parse_parameters("  ").unwrap(), []);
        let parsed = parse_parameters("efSearch=128, nprobe = 16").unwrap();
        assert_eq!(
            parsed,
            [
                ("efSearch".to_string(), 128.0),
                ("nprobe".to_string(), 16.0)
            ]
        );
        assert_eq!(canonical_parameters(&parsed), "efSearch=128,nprobe=16");
        let err = parse_parameters("efSearch").unwrap_err();
        assert!(err.contains("\"efSearch\" is not name=value"), "{err}");
        let err = parse_parameters("efSearch=many").unwrap_err();
        assert!(
            err.contains("\"efSearch=many\": the value is not a number"),
            "{err}"
        );
        let err = parse_parameters("efSearch=1,=2").unwrap_err();
        assert!(err.contains("expected a parameter name"), "{err}");
        assert!(parse_parameters("nprobe=inf").is_err());
    }
}
