//! Synthetic input for timing and testing the search: seeded random unit vectors.
//!
//! Output: a [`Vectors`] matrix of `n` rows drawn uniformly on the unit sphere of `dim` dimensions
//! (isotropic Gaussian samples, normalised). The same `(n, dim, seed)` always gives the same
//! matrix, on every platform, because the generator is the project's fixed SplitMix64.

use std::f64::consts::TAU;

use crate::embed::Vectors;
use crate::rng::SplitMix64;

/// `n` seeded random rows of unit L2 norm (rows of a zero-dimensional matrix stay empty).
pub fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vectors {
    let mut rng = SplitMix64::new(seed);
    let mut data = Vec::with_capacity(n * dim);
    let mut row = vec![0.0f64; dim];
    for _ in 0..n {
        for value in row.iter_mut() {
            *value = standard_normal(&mut rng);
        }
        // Normalise in f64 so each stored f32 row has unit norm to f32 precision.
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        data.extend(row.iter().map(|v| (v / norm) as f32));
    }
    Vectors { n, dim, data }
}

/// One standard normal sample by Box–Muller (the cosine branch; the sine one is not worth the
/// bookkeeping here).
fn standard_normal(rng: &mut SplitMix64) -> f64 {
    let u1 = unit_open_closed(rng);
    let u2 = unit_open_closed(rng);
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// A uniform `f64` in `(0, 1]`: never 0, so its logarithm is finite.
fn unit_open_closed(rng: &mut SplitMix64) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_unit_vectors_are_seeded_and_unit_norm() {
        let a = random_unit_vectors(50, 17, 9);
        assert_eq!((a.n, a.dim, a.data.len()), (50, 17, 50 * 17));
        assert_eq!(a, random_unit_vectors(50, 17, 9));
        assert_ne!(a, random_unit_vectors(50, 17, 10));
        for i in 0..a.n {
            let norm: f32 = a.row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6, "row {i} has norm {norm}");
        }
    }
}
