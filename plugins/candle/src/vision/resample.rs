//! PIL's `Image.resize` on RGB8 images, reproduced step for step so that the result is the same
//! bytes PIL gives for the same input pixels.
//!
//! Reference: Pillow `src/libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`, `ImagingResampleInner`) and
//! `src/libImaging/Geometry.c` (`ImagingScaleAffine`, which `Image.resize` uses for NEAREST).
//! What matters for exactness:
//! - when downsampling, the filter's support is widened by the scale (antialiasing);
//! - weights are computed in f64, normalised to sum 1, then turned into 22-bit fixed point;
//! - the two passes run one after the other, the first one's output rounded and clamped to u8;
//!   horizontal first unless the height shrinks much more than the width (recent Pillow; read
//!   in Pillow 13.0's source); a pass whose size does not change is skipped.

use serde::{Deserialize, Serialize};

use crate::simd::vectorized;

/// A resampling filter, named as PIL names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    Nearest,
    Bilinear,
    Bicubic,
}

/// Fixed-point precision of PIL's 8-bit resampling (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

impl Resample {
    /// The filter with PIL's integer code, as `preprocessor_config.json` writes `resample`
    /// (0 nearest, 2 bilinear, 3 bicubic; the others are not implemented).
    pub fn from_pil_code(code: u64) -> Option<Resample> {
        match code {
            0 => Some(Resample::Nearest),
            2 => Some(Resample::Bilinear),
            3 => Some(Resample::Bicubic),
            _ => None,
        }
    }

    /// Half-width of the filter at scale 1.
    fn support(self) -> f64 {
        match self {
            Resample::Nearest => 0.5,
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Nearest => f64::from(u8::from(x < 0.5)),
            Resample::Bilinear => (1.0 - x).max(0.0),
            Resample::Bicubic => {
                // Keys' cubic with a = -0.5, PIL's choice.
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Resizes the row-major RGB8 image `src` (`width × height`) to `out_width × out_height` exactly
/// as PIL's `Image.resize((out_width, out_height), filter)` does. All sizes must be non-zero and
/// `src.len() == width × height × 3`.
pub fn resize_rgb8(
    src: &[u8],
    (width, height): (usize, usize),
    (out_width, out_height): (usize, usize),
    filter: Resample,
) -> Vec<u8> {
    debug_assert_eq!(src.len(), width * height * 3);
    if (width, height) == (out_width, out_height) {
        return src.to_vec();
    }
    if filter == Resample::Nearest {
        return nearest(src, (width, height), (out_width, out_height));
    }
    let horizontal = Coefficients::new(width, out_width, filter);
    let vertical = Coefficients::new(height, out_height, filter);
    if vertical_first((width, height), (out_width, out_height)) {
        let rows = if out_height == height {
            src.to_vec()
        } else {
            vertical.apply_columns(src, width * 3, 0)
        };
        return if out_width == width {
            rows
        } else {
            horizontal.apply_rows(&rows, width * 3, out_height)
        };
    }
    let row = width * 3;
    if out_height == height {
        return horizontal.apply_rows(src, row, height);
    }
    // Only the rows the vertical pass reads are resampled horizontally.
    let first = vertical.bounds[0].0;
    let (last_start, last_len) = vertical.bounds[out_height - 1];
    let rows = &src[first * row..(last_start + last_len) * row];
    let (rows, row) = if out_width == width {
        (rows.to_vec(), row)
    } else {
        let count = last_start + last_len - first;
        (horizontal.apply_rows(rows, row, count), out_width * 3)
    };
    vertical.apply_columns(&rows, row, first)
}

/// Recent Pillow (13.0 here) runs the vertical pass first when the height shrinks by more than twice
/// as many pixels as the width does; the order changes the u8 rounding between the passes.
fn vertical_first(
    (width, height): (usize, usize),
    (out_width, out_height): (usize, usize),
) -> bool {
    let shrink_y = height as i64 - out_height as i64;
    let shrink_x = width as i64 - out_width as i64;
    shrink_y > 0 && shrink_y > shrink_x * 2
}

/// Per output position: the first input index and how many inputs it reads, and fixed-point
/// weights (`size` per output, zero-padded).
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    size: usize,
}

impl Coefficients {
    /// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size → out_size`.
    fn new(in_size: usize, out_size: usize, filter: Resample) -> Coefficients {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter.support() * filter_scale;
        let size = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * size];
        // PIL multiplies by the reciprocal (not divides by the scale): it rounds differently.
        let reciprocal = 1.0 / filter_scale;
        let mut k = vec![0f64; size];
        for (xx, fixed) in weights.chunks_exact_mut(size).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // `(int)` in C truncates toward zero; negative starts are clamped to 0 anyway.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = max.saturating_sub(min).min(size);
            let mut total = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(count) {
                *w = filter.weight(((x + min) as f64 - center + 0.5) * reciprocal);
                total += *w;
            }
            for (w, f) in k.iter().zip(fixed.iter_mut()).take(count) {
                let w = if total != 0.0 { w / total } else { *w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                *f = if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                };
            }
            bounds.push((min, count));
        }
        Coefficients {
            bounds,
            weights,
            size,
        }
    }

    /// The horizontal pass over `rows` rows of `row` bytes each.
    fn apply_rows(&self, src: &[u8], row: usize, rows: usize) -> Vec<u8> {
        let out_width = self.bounds.len();
        let mut out = vec![0u8; rows * out_width * 3];
        vectorized(
            #[inline(always)]
            || {
                for (src_row, out_row) in src
                    .chunks_exact(row)
                    .zip(out.chunks_exact_mut(out_width * 3))
                {
                    for (xx, pixel) in out_row.chunks_exact_mut(3).enumerate() {
                        let (min, count) = self.bounds[xx];
                        let k = &self.weights[xx * self.size..][..count];
                        let taps = src_row[min * 3..][..count * 3].chunks_exact(3);
                        let mut sums = [ROUNDING; 3];
                        for (rgb, &w) in taps.zip(k) {
                            for (sum, &v) in sums.iter_mut().zip(rgb) {
                                *sum += i32::from(v) * w;
                            }
                        }
                        for (value, sum) in pixel.iter_mut().zip(sums) {
                            *value = clip8(sum);
                        }
                    }
                }
            },
        );
        out
    }

    /// The vertical pass: `src` holds rows starting at input row `first`, `row` bytes each.
    /// Each output row sums whole input rows, so the loop runs along the row (vectorised).
    fn apply_columns(&self, src: &[u8], row: usize, first: usize) -> Vec<u8> {
        let mut out = vec![0u8; self.bounds.len() * row];
        let mut sums = vec![0i32; row];
        vectorized(
            #[inline(always)]
            || {
                for (yy, out_row) in out.chunks_exact_mut(row).enumerate() {
                    let (min, count) = self.bounds[yy];
                    let k = &self.weights[yy * self.size..][..count];
                    sums.fill(ROUNDING);
                    for (y, &w) in k.iter().enumerate() {
                        let src_row = &src[(min - first + y) * row..][..row];
                        for (sum, &v) in sums.iter_mut().zip(src_row) {
                            *sum += i32::from(v) * w;
                        }
                    }
                    for (value, &sum) in out_row.iter_mut().zip(&sums) {
                        *value = clip8(sum);
                    }
                }
            },
        );
        out
    }
}

/// PIL's rounding half, where its sums start (`ss0 = 1 << (PRECISION_BITS - 1)`).
const ROUNDING: i32 = 1 << (PRECISION_BITS - 1);

/// PIL's `clip8`: drop the fraction bits of a sum that started at [`ROUNDING`], clamp to
/// 0..=255. The sums are `int` in PIL: 22 fraction bits leave room for 255 × the weights.
#[inline(always)]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's nearest-neighbour resize (`ImagingScaleAffine`): source coordinates accumulated in f64
/// from the centre of the first output pixel, as PIL accumulates them.
fn nearest(
    src: &[u8],
    (width, height): (usize, usize),
    (out_width, out_height): (usize, usize),
) -> Vec<u8> {
    let positions = |in_size: usize, out_size: usize| -> Vec<usize> {
        let step = in_size as f64 / out_size as f64;
        let mut at = step * 0.5;
        (0..out_size)
            .map(|_| {
                let index = (at as usize).min(in_size - 1);
                at += step;
                index
            })
            .collect()
    };
    let xs = positions(width, out_width);
    let mut out = Vec::with_capacity(out_width * out_height * 3);
    for y in positions(height, out_height) {
        let src_row = &src[y * width * 3..][..width * 3];
        for &x in &xs {
            out.extend_from_slice(&src_row[x * 3..x * 3 + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let src: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8).collect();
        for filter in [Resample::Nearest, Resample::Bilinear, Resample::Bicubic] {
            assert_eq!(resize_rgb8(&src, (2, 3), (2, 3), filter), src);
        }
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let src = vec![77u8; 13 * 7 * 3];
        for filter in [Resample::Nearest, Resample::Bilinear, Resample::Bicubic] {
            for size in [(5, 3), (29, 17), (13, 2), (1, 1)] {
                let out = resize_rgb8(&src, (13, 7), size, filter);
                assert_eq!(out.len(), size.0 * size.1 * 3);
                assert!(out.iter().all(|&v| v == 77), "{filter:?} {size:?}");
            }
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (n, m) in [(640, 224), (224, 640), (7, 3), (3, 7)] {
            let c = Coefficients::new(n, m, Resample::Bicubic);
            for (i, &(_, count)) in c.bounds.iter().enumerate() {
                let sum: i64 = c.weights[i * c.size..][..count]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= count as i64,
                    "{n}->{m} {i}"
                );
            }
        }
    }

    #[test]
    fn pil_codes() {
        assert_eq!(Resample::from_pil_code(3), Some(Resample::Bicubic));
        assert_eq!(Resample::from_pil_code(2), Some(Resample::Bilinear));
        assert_eq!(Resample::from_pil_code(0), Some(Resample::Nearest));
        assert_eq!(Resample::from_pil_code(1), None);
    }
}
