//! Where the real weights are, for the tests that need them.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;

/// The folder of `name` (`all-MiniLM-L6-v2`) under `$EMBEDLAB_TEST_MODELS`, either as
/// `<root>/all-MiniLM-L6-v2` or as the model store spells it,
/// `<root>/sentence-transformers--all-MiniLM-L6-v2`. `None`, after printing "skipped: ...", when
/// the variable is unset or neither folder holds a `model.safetensors`.
pub fn model_dir(name: &str) -> Option<PathBuf> {
    let Some(root) = std::env::var_os("EMBEDLAB_TEST_MODELS") else {
        println!("skipped: EMBEDLAB_TEST_MODELS is not set");
        return None;
    };
    let root = PathBuf::from(root);
    let candidates = [
        root.join(name),
        root.join(format!("sentence-transformers--{name}")),
    ];
    let found = candidates
        .iter()
        .find(|dir| dir.join("model.safetensors").is_file());
    if found.is_none() {
        println!(
            "skipped: no model.safetensors in {} or {}",
            candidates[0].display(),
            candidates[1].display()
        );
    }
    found.cloned()
}

/// Cosine similarity, accumulated in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum()
    };
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

/// The COCO sample photos beside the checkout (`../shared/data/coco-sample/images` from the repo
/// root); `None`, after printing "skipped: ...", where they are absent.
pub fn coco_photos() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/coco-sample/images");
    if dir.is_dir() {
        return Some(dir);
    }
    println!("skipped: {} is absent", dir.display());
    None
}

/// Decoded images in the form the plugin ABI takes.
pub fn as_images(decoded: &[image::RgbImage]) -> Vec<embedlab_plugin::Image<'_>> {
    decoded
        .iter()
        .map(|d| embedlab_plugin::Image {
            width: d.width(),
            height: d.height(),
            rgb: d.as_raw(),
        })
        .collect()
}

/// Checks our preprocessed pixels against the reference's, CLIP-normalised. The resize is
/// PIL-exact, but the `image` crate decodes JPEGs slightly differently from PIL's libjpeg-turbo
/// (about 1% of pixels by a few levels), so a few values may differ by a level or two after
/// resizing; a wrong size, crop or filter moves most values, and further.
pub fn assert_preprocessing_close(what: &str, pixels: &[f32], want: &[f32]) {
    assert_eq!(pixels.len(), want.len(), "{what}: preprocessed size");
    let diffs: Vec<f32> = pixels
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max_diff = diffs.iter().copied().fold(0f32, f32::max);
    let off = diffs.iter().filter(|d| **d > 1e-5).count();
    let off_fraction = off as f64 / want.len() as f64;
    println!(
        "{what} preprocessing: max |diff| {max_diff:.2e}, {:.2}% of values differ",
        100.0 * off_fraction
    );
    let level = 1.0 / 255.0 / 0.2613; // about one u8 step after CLIP's normalisation
    assert!(
        max_diff <= 2.0 * level && off_fraction < 0.05,
        "{what}: preprocessing differs by up to {max_diff} on {off} values"
    );
}
