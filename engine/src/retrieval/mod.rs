//! k-nearest-neighbour search by cosine similarity, every sample querying all others.
//!
//! Input: L2-normalised vectors (so the dot product is the cosine). Output: [`Neighbours`], for
//! each query its k best rows, best first, itself excluded, ties broken by the smaller row index.
//! Retrieval never knows where the vectors came from.

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
