//! Parity with the Python sentence-transformers library: `fixtures/reference.json` (made by
//! `make_reference.py`) carries 24 COCO texts and the vectors `SentenceTransformer.encode` gave
//! for them with both models. Every text must reach cosine ≥ 0.9999 against its reference.
//!
//! Needs the real weights under `EMBEDLAB_TEST_MODELS` (see `common::model_dir`); otherwise the
//! test prints "skipped: ..." and passes.

mod common;

use std::path::Path;

use common::{cosine, model_dir};
use embedlab_candle::{Options, SentenceTransformer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    texts: Vec<FixtureText>,
    models: std::collections::BTreeMap<String, FixtureModel>,
}

#[derive(Deserialize)]
struct FixtureText {
    text: String,
}

#[derive(Deserialize)]
struct FixtureModel {
    dim: usize,
    vectors: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(model_id: &str, expected_dim: usize) {
    let fixture = fixture();
    let reference = &fixture.models[model_id];
    assert_eq!(reference.dim, expected_dim);
    assert_eq!(reference.vectors.len(), fixture.texts.len());
    let Some(dir) = model_dir(model_id.rsplit('/').next().unwrap()) else {
        return;
    };

    let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
    // A batch size that splits the texts unevenly, so several padded lengths are exercised.
    let model = SentenceTransformer::load(&dir, &Options { batch_size: 7 }).unwrap();
    assert_eq!(model.dim(), reference.dim);
    let ours = model.encode(&texts).unwrap();

    let mut worst = (f64::INFINITY, 0);
    let mut max_abs = 0f32;
    for (i, (row, want)) in ours
        .chunks_exact(model.dim())
        .zip(&reference.vectors)
        .enumerate()
    {
        let cos = cosine(row, want);
        if cos < worst.0 {
            worst = (cos, i);
        }
        for (a, b) in row.iter().zip(want) {
            max_abs = max_abs.max((a - b).abs());
        }
    }
    println!(
        "{model_id}: worst cosine {:.7} (text {}), max |diff| {max_abs:.2e}",
        worst.0, worst.1
    );
    assert!(
        worst.0 >= 0.9999,
        "{model_id}: text {} {:?} at cosine {}",
        worst.1,
        texts[worst.1],
        worst.0
    );
}

#[test]
fn minilm_matches_sentence_transformers() {
    check("sentence-transformers/all-MiniLM-L6-v2", 384);
}

#[test]
fn mpnet_matches_sentence_transformers() {
    check("sentence-transformers/all-mpnet-base-v2", 768);
}
