//! Fusion: several parts' vectors of the same samples into one matrix for retrieval.
//!
//! Each part is optionally L2-normalised, scaled by its weight and the parts are concatenated
//! along the dimension; the concatenation is then always L2-normalised, because retrieval takes
//! the dot product as the cosine. Norms are computed in f64 and each output value is rounded to
//! f32 once. Row `i` of the output belongs to the same sample as row `i` of every part.

use rayon::prelude::*;

use super::{EmbedError, Vectors};

/// Matrices at least this large (in values) are processed by rayon, row by row.
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// One part of a fusion: its vectors and the weight of its (normalised) contribution.
#[derive(Clone, Copy, Debug)]
pub struct FusionPart<'a> {
    pub vectors: &'a Vectors,
    pub weight: f32,
}

/// Concatenates the parts row by row (each L2-normalised first when `normalize_parts`, then
/// scaled by its weight) and L2-normalises every fused row.
///
/// Errors name the part and row index; the caller maps rows to sample ids.
pub fn fuse(parts: &[FusionPart<'_>], normalize_parts: bool) -> Result<Vectors, EmbedError> {
    let first = parts.first().ok_or(EmbedError::NoParts)?;
    let n = first.vectors.n;
    for (part, p) in parts.iter().enumerate() {
        if p.vectors.n != n {
            return Err(EmbedError::PartRowCount {
                part,
                n: p.vectors.n,
                expected: n,
            });
        }
        if !p.weight.is_finite() || p.weight < 0.0 {
            return Err(EmbedError::InvalidWeight {
                part,
                weight: p.weight,
            });
        }
    }
    if parts.iter().all(|p| p.weight == 0.0) {
        return Err(EmbedError::AllWeightsZero);
    }
    let dim = parts.iter().map(|p| p.vectors.dim).sum();
    let mut data = vec![0.0; n * dim];
    try_rows(&mut data, n, dim, |row, out| {
        fuse_row(parts, normalize_parts, row, out)
    })?;
    Ok(Vectors { n, dim, data })
}

/// Writes fused row `row` into `out`.
fn fuse_row(
    parts: &[FusionPart<'_>],
    normalize_parts: bool,
    row: usize,
    out: &mut [f32],
) -> Result<(), EmbedError> {
    // Each part's factor before the final normalisation, and the fused row's squared norm.
    let mut scales = Vec::with_capacity(parts.len());
    let mut fused_squared = 0.0;
    for (part, p) in parts.iter().enumerate() {
        let squared = squared_norm(p.vectors.row(row));
        if !squared.is_finite() {
            return Err(EmbedError::NonFinitePartVector { part, row });
        }
        let scale = if normalize_parts {
            if squared == 0.0 {
                return Err(EmbedError::ZeroPartVector { part, row });
            }
            f64::from(p.weight) / squared.sqrt()
        } else {
            f64::from(p.weight)
        };
        fused_squared += scale * scale * squared;
        scales.push(scale);
    }
    let norm = checked_norm(fused_squared, row)?;
    let mut offset = 0;
    for (p, scale) in parts.iter().zip(scales) {
        let factor = scale / norm;
        let values = p.vectors.row(row);
        for (o, &x) in out[offset..offset + values.len()].iter_mut().zip(values) {
            *o = (f64::from(x) * factor) as f32;
        }
        offset += values.len();
    }
    Ok(())
}

fn squared_norm(values: &[f32]) -> f64 {
    values.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

/// The norm from a squared norm, unless it is zero or not finite.
fn checked_norm(squared: f64, row: usize) -> Result<f64, EmbedError> {
    if !squared.is_finite() {
        return Err(EmbedError::NonFiniteVector { row });
    }
    if squared == 0.0 {
        return Err(EmbedError::ZeroVector { row });
    }
    Ok(squared.sqrt())
}

/// Runs `f(row index, row)` over the `n` rows of `data`, in parallel when the matrix is large;
/// the error returned is always the one of the first failing row.
fn try_rows<F>(data: &mut [f32], n: usize, dim: usize, f: F) -> Result<(), EmbedError>
where
    F: Fn(usize, &mut [f32]) -> Result<(), EmbedError> + Sync,
{
    if dim == 0 {
        return (0..n).try_for_each(|row| f(row, &mut []));
    }
    if data.len() < PARALLEL_MIN_VALUES {
        return data
            .chunks_mut(dim)
            .enumerate()
            .try_for_each(|(row, values)| f(row, values));
    }
    let first_error = data
        .par_chunks_mut(dim)
        .enumerate()
        .filter_map(|(row, values)| f(row, values).err().map(|err| (row, err)))
        .min_by_key(|(row, _)| *row);
    match first_error {
        Some((_, err)) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(n: usize, dim: usize, data: &[f32]) -> Vectors {
        Vectors {
            n,
            dim,
            data: data.to_vec(),
        }
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn normalises_parts_weights_and_renormalises() {
        // [3, 4] → [0.6, 0.8]; [1, 0] × 0.5 → [0.5, 0]; [0.6, 0.8, 0.5, 0] / sqrt(1.25).
        let a = vectors(2, 2, &[3.0, 4.0, 0.0, 2.0]);
        let b = vectors(2, 2, &[1.0, 0.0, 0.0, -7.0]);
        let parts = [
            FusionPart {
                vectors: &a,
                weight: 1.0,
            },
            FusionPart {
                vectors: &b,
                weight: 0.5,
            },
        ];
        let fused = fuse(&parts, true).unwrap();
        assert_eq!((fused.n, fused.dim), (2, 4));
        let s = 1.25f64.sqrt();
        assert_close(fused.row(0), &[0.6 / s, 0.8 / s, 0.5 / s, 0.0]);
        // Row 1: [0, 1] and [0, -1] × 0.5 → [0, 1, 0, -0.5] / sqrt(1.25).
        assert_close(fused.row(1), &[0.0, 1.0 / s, 0.0, -0.5 / s]);
    }

    #[test]
    fn raw_concatenation_when_parts_are_not_normalised() {
        // [3, 4] and [1, 0] × 0.5 → [3, 4, 0.5, 0] / sqrt(25.25).
        let a = vectors(1, 2, &[3.0, 4.0]);
        let b = vectors(1, 2, &[1.0, 0.0]);
        let parts = [
            FusionPart {
                vectors: &a,
                weight: 1.0,
            },
            FusionPart {
                vectors: &b,
                weight: 0.5,
            },
        ];
        let fused = fuse(&parts, false).unwrap();
        let s = 25.25f64.sqrt();
        assert_close(&fused.data, &[3.0 / s, 4.0 / s, 0.5 / s, 0.0]);
    }

    #[test]
    fn parts_of_different_dims_and_a_zero_weight() {
        let a = vectors(1, 1, &[-2.0]);
        let b = vectors(1, 3, &[1.0, 1.0, 1.0]);
        let parts = [
            FusionPart {
                vectors: &a,
                weight: 2.0,
            },
            FusionPart {
                vectors: &b,
                weight: 0.0,
            },
        ];
        let fused = fuse(&parts, true).unwrap();
        assert_eq!(fused.data, vec![-1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn large_matrices_go_parallel_with_the_same_result() {
        let (n, dim) = (3000, 32);
        let data: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7919) % 101) as f32 - 50.0)
            .collect();
        let a = vectors(n, dim, &data);
        let fused = fuse(
            &[FusionPart {
                vectors: &a,
                weight: 1.0,
            }],
            false,
        )
        .unwrap();
        assert!(n * dim >= PARALLEL_MIN_VALUES);
        for row in [0, 1234, n - 1] {
            let norm = squared_norm(a.row(row)).sqrt();
            let want: Vec<f64> = a.row(row).iter().map(|&x| f64::from(x) / norm).collect();
            assert_close(fused.row(row), &want);
        }
    }

    #[test]
    fn reports_the_first_bad_row_in_parallel_too() {
        let (n, dim) = (3000, 32);
        let mut a = vectors(n, dim, &vec![1.0; n * dim]);
        for bad in [2999, 1700, 2500] {
            a.data[bad * dim..(bad + 1) * dim].fill(0.0);
        }
        let err = fuse(
            &[FusionPart {
                vectors: &a,
                weight: 1.0,
            }],
            true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fusion part 0: row 1700 is all zeros (cannot L2-normalise it)"
        );
    }

    #[test]
    fn errors() {
        let a = vectors(2, 2, &[3.0, 4.0, 0.0, 0.0]);
        let b = vectors(3, 1, &[1.0, 1.0, 1.0]);
        let c = vectors(2, 1, &[1.0, f32::INFINITY]);
        let d = vectors(2, 1, &[1.0, 0.0]);
        let e = vectors(2, 1, &[1.0, 2.0]);
        let part = |vectors, weight| FusionPart { vectors, weight };
        let cases: [(Vec<FusionPart<'_>>, bool, &str); 8] = [
            (vec![], true, "fusion needs at least one part"),
            (
                vec![part(&a, 1.0), part(&b, 1.0)],
                true,
                "fusion part 1 has 3 rows but part 0 has 2",
            ),
            (
                vec![part(&a, 1.0), part(&d, -1.0)],
                true,
                "fusion part 1: weight -1 must be finite and not negative",
            ),
            (
                vec![part(&a, f32::NAN)],
                true,
                "fusion part 0: weight NaN must be finite and not negative",
            ),
            (
                vec![part(&a, 0.0), part(&d, 0.0)],
                true,
                "fusion weights are all zero",
            ),
            (
                vec![part(&e, 1.0), part(&a, 1.0)],
                true,
                "fusion part 1: row 1 is all zeros (cannot L2-normalise it)",
            ),
            (
                vec![part(&e, 1.0), part(&c, 1.0)],
                false,
                "fusion part 1: row 1 contains NaN or infinity",
            ),
            (
                vec![part(&a, 1.0), part(&d, 1.0)],
                false,
                "row 1 is all zeros (cosine similarity is undefined)",
            ),
        ];
        for (parts, normalize_parts, want) in cases {
            assert_eq!(fuse(&parts, normalize_parts).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn zero_dims() {
        let a = vectors(0, 0, &[]);
        assert_eq!(
            fuse(
                &[FusionPart {
                    vectors: &a,
                    weight: 1.0
                }],
                true
            )
            .unwrap(),
            a
        );
        let b = vectors(2, 0, &[]);
        let err = fuse(
            &[FusionPart {
                vectors: &b,
                weight: 1.0,
            }],
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "row 0 is all zeros (cosine similarity is undefined)"
        );
    }
}
