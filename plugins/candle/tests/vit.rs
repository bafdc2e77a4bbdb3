//! The ViT family against transformers on a tiny random ViT
//! (`tests/make_vit_reference.py` → `tests/fixtures/vit-tiny/`), from the PNG patches through the
//! folder's `preprocessor_config.json`.

#[allow(dead_code)] // model_dir: this test needs no real weights
mod common;

use std::path::Path;

use common::cosine;
use embedlab_candle::Candle;
use embedlab_plugin::{Encoder, Image, Modality, Plugin, serde_json};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    images: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    patch: String,
    cls: Vec<f32>,
}

#[test]
fn tiny_vit_matches_transformers() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = fixtures.join("vit-tiny");
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    let decoded: Vec<image::RgbImage> = fixture
        .images
        .iter()
        .map(|r| {
            image::open(fixtures.join("preprocess").join(&r.patch))
                .unwrap()
                .to_rgb8()
        })
        .collect();
    let images: Vec<Image> = decoded
        .iter()
        .map(|d| Image {
            width: d.width(),
            height: d.height(),
            rgb: d.as_raw(),
        })
        .collect();

    let config = serde_json::json!({"model": "vit-tiny", "model_dir": dir});
    let mut encoder = Candle::create(&config.to_string()).unwrap();
    let description = encoder.describe();
    assert_eq!(
        (description.modalities.as_slice(), description.dim),
        ([Modality::Image].as_slice(), 32)
    );
    let mut out = vec![0f32; images.len() * 32];
    encoder.encode_images(&images, &mut out).unwrap();
    for (row, reference) in out.chunks_exact(32).zip(&fixture.images) {
        let cos = cosine(row, &reference.cls);
        println!("{}: cosine {cos:.7}", reference.patch);
        assert!(cos >= 0.9999, "{}: cosine {cos}", reference.patch);
    }
}
