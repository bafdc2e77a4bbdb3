//! Vectors for each run part, and their fusion into one matrix per run.
//!
//! A part's vectors come from a precomputed `.npy` ([`precomputed`]) or from an encoder plugin
//! ([`encode`]: texts, or images decoded by [`images`]).
//! Whatever their source, the output is a [`Vectors`] matrix whose row `i` belongs to dataset
//! sample `i`.

pub mod encode;
mod error;
pub mod fusion;
pub mod images;
pub mod npy;
pub mod precomputed;

pub use error::EmbedError;

/// A dense row-major `f32` matrix: `n` rows of `dim` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Vectors {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The given rows, in the order given.
    pub fn select(&self, rows: &[usize]) -> Vectors {
        Vectors {
            n: rows.len(),
            dim: self.dim,
            data: rows.iter().flat_map(|&r| self.row(r)).copied().collect(),
        }
    }
}
