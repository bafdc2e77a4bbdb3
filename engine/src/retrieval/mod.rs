//! k-nearest-neighbour search by cosine similarity, every sample querying all others.
//!
//! Input: L2-normalised vectors (so the dot product is the cosine). Output: [`Neighbours`], for
//! each query its k best rows, best first, itself excluded, ties broken by the smaller row index.
//! Retrieval never knows where the vectors came from.

pub mod bench;
pub mod exact;

pub use exact::{ExactOptions, search};

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
}
