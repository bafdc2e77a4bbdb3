//! EfficientNet-Lite0 with the real weights against the PyTorch reference
//! (`tests/make_efficientnet_reference.py` → `tests/fixtures/efficientnet_lite0.json`), end to end
//! from the JPEG: decode here, preprocess as the store entry's `preprocessor_config.json` says,
//! forward.
//!
//! Runs when `EMBEDLAB_TEST_MODELS` holds `efficientnet-lite0/` (as `embedlab models fetch
//! efficientnet-lite0` installs it) and `../shared/data/coco-sample/images` exists; otherwise
//! prints "skipped: ..." and passes.

mod common;

use std::path::{Path, PathBuf};

use common::{as_images, coco_photos, cosine, model_dir};
use embedlab_candle::Candle;
use embedlab_candle::efficientnet_lite::load_image_encoder;
use embedlab_plugin::{Encoder, Modality, Plugin, serde_json};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    images: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    photo: String,
    top5: Vec<usize>,
    logits: Vec<f32>,
    features: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet_lite0.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The model folder and the decoded reference photos, or `None` (skipped).
fn inputs() -> Option<(PathBuf, Vec<image::RgbImage>, Fixture)> {
    let dir = model_dir("efficientnet-lite0")?;
    let photos = coco_photos()?;
    let fixture = fixture();
    let decoded = fixture
        .images
        .iter()
        .map(|r| image::open(photos.join(&r.photo)).unwrap().to_rgb8())
        .collect();
    Some((dir, decoded, fixture))
}

fn options(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    json.as_object().unwrap().clone()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap()
}

#[test]
fn features_match_the_reference() {
    let Some((dir, decoded, fixture)) = inputs() else {
        return;
    };
    // Batch 4 over 6 images: a full and a partial batch.
    let encoder = load_image_encoder(&dir, options(serde_json::json!({"batch_size": 4}))).unwrap();
    let features = encoder.encode(&as_images(&decoded)).unwrap();
    for (row, reference) in features.chunks_exact(1280).zip(&fixture.images) {
        let cos = cosine(row, &reference.features);
        println!("{}: features cosine {cos:.7}", reference.photo);
        assert!(cos >= 0.9999, "{}: features cosine {cos}", reference.photo);
    }
}

#[test]
fn logits_give_the_reference_classes() {
    let Some((dir, decoded, fixture)) = inputs() else {
        return;
    };
    let encoder =
        load_image_encoder(&dir, options(serde_json::json!({"output": "logits"}))).unwrap();
    let logits = encoder.encode(&as_images(&decoded)).unwrap();
    for (row, reference) in logits.chunks_exact(1000).zip(&fixture.images) {
        let cos = cosine(row, &reference.logits);
        println!(
            "{}: top-1 {} (reference {}), logits cosine {cos:.7}",
            reference.photo,
            argmax(row),
            reference.top5[0]
        );
        assert_eq!(argmax(row), reference.top5[0], "{}", reference.photo);
        assert!(cos >= 0.9999, "{}: logits cosine {cos}", reference.photo);
    }
}

#[test]
fn plugin_detects_the_family_and_encodes_images() {
    let Some((dir, decoded, fixture)) = inputs() else {
        return;
    };
    let config = serde_json::json!({"model": "efficientnet-lite0", "model_dir": dir, "options": {"batch_size": 2}});
    let mut encoder = Candle::create(&config.to_string()).unwrap();
    let description = encoder.describe();
    assert_eq!(description.modalities, [Modality::Image]);
    assert_eq!(description.dim, 1280);
    assert_eq!(description.parameters, 4_652_008);
    assert!(description.weights_digest.starts_with("sha256:"));
    let images = as_images(&decoded[..3]);
    let mut out = vec![0f32; 3 * 1280];
    encoder.encode_images(&images, &mut out).unwrap();
    let cos = cosine(&out[1280..2560], &fixture.images[1].features);
    assert!(cos >= 0.9999, "{cos}");
    let err = encoder
        .encode_texts(&["a cat"], &mut [0f32; 1280])
        .unwrap_err();
    assert!(
        err.message.contains("does not encode texts"),
        "{}",
        err.message
    );
}
