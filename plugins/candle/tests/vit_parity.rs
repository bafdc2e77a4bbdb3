//! ViT against transformers on a tiny random model of the real architecture
//! (`tests/make_vit_reference.py`, `tests/fixtures/vit/`): the forward pass on the reference's
//! pixels, and end to end from the COCO photos through the plugin's own preprocessing (skipped
//! when `../shared/data/coco-sample/images` is absent).

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::{as_images, coco_photos, cosine};
use embedlab_candle::Candle;
use embedlab_candle::vit::load_image_encoder;
use embedlab_plugin::{Encoder, Modality, Plugin, serde_json};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    images: Vec<ImageCase>,
}

#[derive(Deserialize)]
struct ImageCase {
    file: String,
    pixels_shape: Vec<usize>,
    pixels: Vec<f32>,
    features: Vec<f32>,
    logits: Vec<f32>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit")
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn options(output: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::json!({ "output": output, "batch_size": 3 })
        .as_object()
        .unwrap()
        .clone()
}

fn assert_close(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}");
    let cos = cosine(ours, theirs);
    assert!(cos >= 0.9999, "{what}: cosine {cos}");
}

#[test]
fn forward_matches_transformers_on_its_pixels() {
    let reference = reference();
    for (output, pick) in [("features", 0), ("logits", 1)] {
        let encoder = load_image_encoder(&fixture_dir(), options(output)).unwrap();
        for case in &reference.images {
            let mut shape = vec![1];
            shape.extend(&case.pixels_shape);
            let pixels = Tensor::from_vec(case.pixels.clone(), shape, &Device::Cpu).unwrap();
            let ours = encoder.forward(&pixels).unwrap();
            let theirs = [&case.features, &case.logits][pick];
            assert_close(&format!("{} {output}", case.file), &ours, theirs);
        }
    }
}

#[test]
fn the_plugin_matches_transformers_from_the_jpeg() {
    let Some(images) = coco_photos() else { return };
    let reference = reference();
    let decoded: Vec<image::RgbImage> = reference
        .images
        .iter()
        .map(|case| image::open(images.join(&case.file)).unwrap().into_rgb8())
        .collect();
    let inputs = as_images(&decoded);
    let config = serde_json::json!({
        "model": "tiny-vit",
        "model_dir": fixture_dir(),
        "options": {"batch_size": 3},
    });
    let mut encoder = Candle::create(&config.to_string()).unwrap();
    let description = encoder.describe();
    assert_eq!(description.modalities, [Modality::Image]);
    assert_eq!(description.dim, 32);
    let mut out = vec![0.0; inputs.len() * 32];
    encoder.encode_images(&inputs, &mut out).unwrap();
    for (case, ours) in reference.images.iter().zip(out.chunks_exact(32)) {
        assert_close(&case.file, ours, &case.features);
    }
}

#[test]
fn logits_of_a_headless_checkpoint_and_unknown_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_image_encoder(&fixture_dir(), options("pooled"))
        .err()
        .expect("an unknown output is refused");
    assert!(err.to_string().contains("pooled"), "{err}");
    // A `ViTModel` checkpoint: the same tensors without the `vit.` prefix and no classifier.
    let weights =
        candle_core::safetensors::load(fixture_dir().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let body: std::collections::HashMap<String, Tensor> = weights
        .into_iter()
        .filter_map(|(name, t)| name.strip_prefix("vit.").map(|n| (n.to_string(), t)))
        .collect();
    candle_core::safetensors::save(&body, dir.path().join("model.safetensors")).unwrap();
    for file in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture_dir().join(file), dir.path().join(file)).unwrap();
    }
    let headless = load_image_encoder(dir.path(), options("features")).unwrap();
    let full = load_image_encoder(&fixture_dir(), options("features")).unwrap();
    let case = &reference().images[0];
    let pixels = Tensor::from_vec(case.pixels.clone(), (1, 3, 32, 32), &Device::Cpu).unwrap();
    assert_eq!(
        headless.forward(&pixels).unwrap(),
        full.forward(&pixels).unwrap()
    );
    let err = load_image_encoder(dir.path(), options("logits"))
        .err()
        .expect("no classifier, no logits");
    assert!(
        err.to_string().contains("classification checkpoint"),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
