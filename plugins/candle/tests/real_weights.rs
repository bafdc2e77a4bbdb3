//! Checks against the real all-MiniLM-L6-v2 and all-mpnet-base-v2 checkpoints.
//!
//! They run when `EMBEDLAB_TEST_MODELS` names a folder holding `all-MiniLM-L6-v2/` and
//! `all-mpnet-base-v2/` (or the model store's `sentence-transformers--all-MiniLM-L6-v2/` ...);
//! otherwise each test prints "skipped: ..." and passes. Parity with the Python library lives in `parity.rs`; these are sanity checks that
//! need no reference numbers.

mod common;

use common::{cosine, model_dir};
use embedlab_candle::{Candle, Options, SentenceTransformer};
use embedlab_plugin::{Encoder, Modality, Plugin};

const MINILM: &str = "all-MiniLM-L6-v2";
const MPNET: &str = "all-mpnet-base-v2";

fn load(name: &str, batch_size: usize) -> Option<SentenceTransformer> {
    let dir = model_dir(name)?;
    Some(SentenceTransformer::load(&dir, &Options { batch_size }).expect("model loads"))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const TEXTS: [&str; 10] = [
    "A man is riding a brown horse along the beach at sunset.",
    "Two small dogs are playing with a red ball in the park.",
    "A plate of pasta with tomato sauce sits on a wooden table.",
    "A woman holds an umbrella while walking down a rainy street.",
    "Several surfers wait for waves far out in the ocean.",
    "A red double decker bus drives past a tall clock tower.",
    "A cat sleeps.",
    "Children fly colourful kites on a windy hill near the sea.",
    "   A giraffe eats leaves from the top of a tree in the zoo.  ",
    "",
];

fn check_model(name: &str, dim: usize) {
    let Some(model) = load(name, 3) else { return };
    assert_eq!(model.dim(), dim);
    assert!(model.parameters() > 20_000_000, "{}", model.parameters());

    let batched = model.encode(&TEXTS).unwrap();
    assert_eq!(batched.len(), TEXTS.len() * dim);
    for (i, row) in batched.chunks_exact(dim).enumerate() {
        let norm = dot(row, row).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{name} row {i}: norm {norm}");
    }

    // Batch-size and order invariance: each text alone, in reverse order.
    for (i, text) in TEXTS.iter().enumerate().rev() {
        let single = model.encode(&[text]).unwrap();
        let cos = cosine(&single, &batched[i * dim..(i + 1) * dim]);
        assert!(
            cos >= 0.99999,
            "{name} text {i}: cosine {cos} alone vs batched"
        );
    }
}

#[test]
fn minilm_unit_rows_and_batch_invariance() {
    check_model(MINILM, 384);
}

#[test]
fn mpnet_unit_rows_and_batch_invariance() {
    check_model(MPNET, 768);
}

fn check_semantics(name: &str) {
    let Some(model) = load(name, 64) else { return };
    let texts = [
        "A man is playing a guitar on stage.",
        "A musician performs with his guitar in front of an audience.",
        "The quarterly report shows falling interest rates.",
    ];
    let v = model.encode(&texts).unwrap();
    let d = model.dim();
    let (a, b, c) = (&v[..d], &v[d..2 * d], &v[2 * d..]);
    let paraphrase = cosine(a, b);
    let unrelated = cosine(a, c);
    assert!(
        paraphrase > unrelated + 0.3,
        "{name}: paraphrase {paraphrase} vs unrelated {unrelated}"
    );
    // Unmasked padding to 128 tokens pushes unrelated pairs to ~0.85.
    assert!(unrelated < 0.4, "{name}: unrelated pair at {unrelated}");
}

#[test]
fn minilm_paraphrase_beats_unrelated() {
    check_semantics(MINILM);
}

#[test]
fn mpnet_paraphrase_beats_unrelated() {
    check_semantics(MPNET);
}

/// Truncation is at `max_seq_length` (256 for MiniLM, 384 for MPNet), not at the 128 that
/// `tokenizer.json` declares: words past token 128 change the vector, words past the limit do not.
fn check_truncation(name: &str, max_seq_length: usize) {
    let Some(model) = load(name, 64) else { return };
    let words = |n: usize| {
        (0..n)
            .map(|i| ["river", "stone", "bright", "window", "garden"][i % 5])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let medium = words(200);
    let medium_more = format!("{medium} elephant");
    let long = words(max_seq_length + 50);
    let long_more = format!("{long} elephant");
    let v = model
        .encode(&[&medium, &medium_more, &long, &long_more])
        .unwrap();
    let d = model.dim();
    let rows: Vec<&[f32]> = v.chunks_exact(d).collect();
    assert!(
        cosine(rows[0], rows[1]) < 0.99999,
        "{name}: text was cut before 200 tokens"
    );
    let tail = cosine(rows[2], rows[3]);
    assert!(
        tail > 0.99999,
        "{name}: words past the limit changed it ({tail})"
    );
}

#[test]
fn minilm_truncates_at_max_seq_length() {
    check_truncation(MINILM, 256);
}

#[test]
fn mpnet_truncates_at_max_seq_length() {
    check_truncation(MPNET, 384);
}

/// The plugin face: create from the engine's config JSON, describe (dim, parameters, the pinned
/// sha256 of model.safetensors), encode into the host's buffer.
fn check_plugin(name: &str, dim: usize, parameters: u64, sha256: &str) {
    let Some(dir) = model_dir(name) else { return };
    let config = serde_json::json!({
        "model": format!("sentence-transformers/{name}"),
        "model_dir": dir,
        "options": {"batch_size": 4},
    });
    let mut encoder = Candle::create(&config.to_string()).expect("plugin creates the encoder");
    let description = encoder.describe();
    assert_eq!(description.modalities, vec![Modality::Text]);
    assert_eq!(description.dim, dim);
    assert_eq!(description.parameters, parameters);
    assert_eq!(description.weights_digest, format!("sha256:{sha256}"));

    let mut out = vec![f32::NAN; TEXTS.len() * dim];
    encoder.encode_texts(&TEXTS, &mut out).unwrap();
    let direct = SentenceTransformer::load(&dir, &Options::default())
        .unwrap()
        .encode(&TEXTS)
        .unwrap();
    for (i, (a, b)) in out
        .chunks_exact(dim)
        .zip(direct.chunks_exact(dim))
        .enumerate()
    {
        let cos = cosine(a, b);
        assert!(
            cos >= 0.99999,
            "{name} text {i}: plugin vs library cosine {cos}"
        );
    }
}

#[test]
fn minilm_plugin_describes_and_encodes() {
    check_plugin(
        MINILM,
        384,
        22_713_216,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    );
}

#[test]
fn mpnet_plugin_describes_and_encodes() {
    check_plugin(
        MPNET,
        768,
        109_486_464,
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    );
}
