//! Parity of the CLIP, OpenCLIP and BLIP loaders with their reference implementations, on the
//! tiny randomly initialised checkpoints `make_clip_blip_reference.py` saved in the real layouts
//! under `fixtures/{clip,openclip,blip}/` (transformers `CLIPModel` and
//! `BlipForImageTextRetrieval`, open_clip's `CLIP`).
//!
//! For each family:
//! - forward only: the reference's own preprocessed pixels through our image tower, and the
//!   reference's token ids through our text tower (a model bug shows here);
//! - tokenizer: our tokenisation of every caption equals the reference's ids;
//! - end to end, through the plugin API the engine uses (`Candle::create`, `encode_images`,
//!   `encode_texts`): raw JPEGs decoded with the `image` crate -> our preprocessing -> forward
//!   (a preprocessing drift shows here and not above); the preprocessed pixels are compared
//!   with the reference's first, so a drift there is named as such.
//!
//! Every item must reach cosine ≥ 0.9999 against its reference. The JPEGs are read from
//! `../shared/data/coco-sample/images` relative to the repo root; without them the end-to-end
//! image checks print "skipped: ..." and pass.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::cosine;
use embedlab_candle::{Candle, ImageTextModel, ImageTextOptions};
use embedlab_plugin::{Encoder, Image, Modality, Plugin, Status};
use serde::Deserialize;

const MIN_COSINE: f64 = 0.9999;

#[derive(Deserialize)]
struct Reference {
    pixel_shape: [usize; 3],
    images: Vec<RefImage>,
    texts: Vec<RefText>,
}

#[derive(Deserialize)]
struct RefImage {
    file: String,
    pixels: Vec<f32>,
    features: Vec<f32>,
}

/// BLIP's extra: the normalised class tokens (what an image-only checkpoint embeds).
#[derive(Deserialize)]
struct BlipExtra {
    vision_cls_features: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct RefText {
    text: String,
    ids: Vec<u32>,
    features: Vec<f32>,
}

fn fixture_dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(family)
}

fn reference(family: &str) -> Reference {
    let path = fixture_dir(family).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(family: &str) -> ImageTextModel {
    let dir = fixture_dir(family);
    let options = ImageTextOptions::default();
    let loaded = match family {
        "clip" => ImageTextModel::load_clip(&dir, &options),
        "openclip" => ImageTextModel::load_openclip(&dir, &options),
        "blip" => ImageTextModel::load_blip(&dir, &options),
        other => panic!("no family {other}"),
    };
    loaded.unwrap_or_else(|e| panic!("{family}: {e}"))
}

/// The lowest cosine between the rows of `ours` and `want`, after checking their shapes.
fn worst_cosine(label: &str, ours: &[f32], want: &[&[f32]]) -> f64 {
    let dim = want[0].len();
    assert_eq!(ours.len(), want.len() * dim, "{label}: output size");
    let worst = ours
        .chunks_exact(dim)
        .zip(want)
        .map(|(a, b)| cosine(a, b))
        .fold(f64::INFINITY, f64::min);
    println!(
        "{label}: min cosine {worst:.9} (1 - cos = {:.1e}) over {} items",
        1.0 - worst,
        want.len()
    );
    assert!(
        worst >= MIN_COSINE,
        "{label}: cosine {worst} < {MIN_COSINE}"
    );
    worst
}

fn forward_only(family: &str) {
    let reference = reference(family);
    let model = load(family);
    let [c, h, w] = reference.pixel_shape;
    let pixels: Vec<f32> = reference
        .images
        .iter()
        .flat_map(|i| i.pixels.clone())
        .collect();
    let pixels = Tensor::from_vec(pixels, (reference.images.len(), c, h, w), &Device::Cpu).unwrap();
    let ours = model.image_features(&pixels).unwrap();
    let want: Vec<&[f32]> = reference
        .images
        .iter()
        .map(|i| i.features.as_slice())
        .collect();
    worst_cosine(&format!("{family} image forward"), &ours, &want);

    let rows: Vec<&[u32]> = reference.texts.iter().map(|t| t.ids.as_slice()).collect();
    let ours = model.text_features(&rows).unwrap();
    let want: Vec<&[f32]> = reference
        .texts
        .iter()
        .map(|t| t.features.as_slice())
        .collect();
    worst_cosine(&format!("{family} text forward"), &ours, &want);
}

fn tokenizer_agrees(family: &str) {
    let reference = reference(family);
    let model = load(family);
    for text in &reference.texts {
        let ours = model.tokenize(&text.text).unwrap();
        assert_eq!(ours, text.ids, "{family}: tokens of {:?}", text.text);
    }
    println!(
        "{family}: {} captions tokenised identically",
        reference.texts.len()
    );
}

/// The fixture's images as the plugin receives them.
fn as_images(decoded: &[(u32, u32, Vec<u8>)]) -> Vec<Image<'_>> {
    decoded
        .iter()
        .map(|(width, height, rgb)| Image {
            width: *width,
            height: *height,
            rgb,
        })
        .collect()
}

/// The decoded COCO images of the fixture, or `None` (after "skipped: ...") without the data.
fn decoded_images(reference: &Reference) -> Option<Vec<(u32, u32, Vec<u8>)>> {
    let root = common::coco_photos()?;
    let decoded = reference
        .images
        .iter()
        .map(|i| {
            let path = root.join(&i.file);
            let image = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rgb = image.to_rgb8();
            (rgb.width(), rgb.height(), rgb.into_raw())
        })
        .collect();
    Some(decoded)
}

fn end_to_end(family: &str) {
    let reference = reference(family);
    let dir = fixture_dir(family);
    let config = serde_json::json!({"model": format!("tiny-{family}"), "model_dir": dir});
    let mut encoder = Candle::create(&config.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
    let description = encoder.describe();
    assert_eq!(description.modalities, [Modality::Text, Modality::Image]);
    let dim = description.dim;
    assert_eq!(dim, reference.texts[0].features.len());
    assert!(description.weights_digest.starts_with("sha256:"));

    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    let mut out = vec![0f32; texts.len() * dim];
    encoder.encode_texts(&texts, &mut out).unwrap();
    let want: Vec<&[f32]> = reference
        .texts
        .iter()
        .map(|t| t.features.as_slice())
        .collect();
    worst_cosine(&format!("{family} texts end to end"), &out, &want);

    let Some(decoded) = decoded_images(&reference) else {
        return;
    };
    let images = as_images(&decoded);
    // The preprocessing alone first, so that a drift there is reported as such.
    let pixels = load(family)
        .preprocess()
        .apply(&images, &Device::Cpu)
        .unwrap();
    let pixels = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want: Vec<f32> = reference
        .images
        .iter()
        .flat_map(|i| i.pixels.clone())
        .collect();
    common::assert_preprocessing_close(family, &pixels, &want);

    let mut out = vec![0f32; images.len() * dim];
    encoder.encode_images(&images, &mut out).unwrap();
    let want: Vec<&[f32]> = reference
        .images
        .iter()
        .map(|i| i.features.as_slice())
        .collect();
    worst_cosine(&format!("{family} images end to end"), &out, &want);
}

#[test]
fn clip_forward_matches_transformers() {
    forward_only("clip");
}

#[test]
fn clip_tokenizer_matches_transformers() {
    tokenizer_agrees("clip");
}

#[test]
fn clip_end_to_end_matches_transformers() {
    end_to_end("clip");
}

#[test]
fn openclip_forward_matches_open_clip() {
    forward_only("openclip");
}

#[test]
fn openclip_tokenizer_matches_open_clip() {
    tokenizer_agrees("openclip");
}

#[test]
fn openclip_end_to_end_matches_open_clip() {
    end_to_end("openclip");
}

#[test]
fn blip_forward_matches_transformers() {
    forward_only("blip");
}

#[test]
fn blip_tokenizer_matches_transformers() {
    tokenizer_agrees("blip");
}

#[test]
fn blip_end_to_end_matches_transformers() {
    end_to_end("blip");
}

/// A copy of a fixture folder in a fresh temporary directory, changed by `edit`.
fn broken_copy(family: &str, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("embedlab-{family}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_dir(family)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    edit(&dir);
    dir
}

fn create_error(dir: &Path) -> (Status, String) {
    let config = serde_json::json!({"model": "broken", "model_dir": dir});
    match Candle::create(&config.to_string()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(err) => (err.status, err.message),
    }
}

#[test]
fn a_missing_weights_file_is_named_on_one_line() {
    for (family, weights) in [
        ("clip", "model.safetensors"),
        ("openclip", "open_clip_pytorch_model.bin"),
        ("blip", "model.safetensors"),
    ] {
        let dir = broken_copy(family, "noweights", |d| {
            std::fs::remove_file(d.join(weights)).unwrap()
        });
        let (status, message) = create_error(&dir);
        println!("{family}: {message}");
        assert_eq!(status, Status::MODEL_UNAVAILABLE, "{message}");
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains(weights), "{message}");
        assert!(!message.contains('\n'), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn an_unknown_model_type_is_named_on_one_line() {
    let dir = broken_copy("clip", "modeltype", |d| {
        let path = d.join("config.json");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace(r#""model_type": "clip""#, r#""model_type": "clap""#),
        )
        .unwrap();
    });
    let (status, message) = create_error(&dir);
    println!("{message}");
    assert_eq!(status, Status::BAD_CONFIG, "{message}");
    assert!(
        message.contains("config.json") && message.contains("clap"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_weights_file_is_named_on_one_line() {
    let dir = broken_copy("clip", "corrupt", |d| {
        std::fs::write(d.join("model.safetensors"), b"not safetensors").unwrap()
    });
    let (status, message) = create_error(&dir);
    println!("{message}");
    assert_eq!(status, Status::MODEL_UNAVAILABLE, "{message}");
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blip_without_projections_embeds_class_tokens_of_images_only() {
    // A captioning / VQA checkpoint has the vision tower but no `vision_proj` or text encoder.
    let dir = broken_copy("blip", "captioning", |d| {
        let path = d.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let kept: std::collections::HashMap<String, Tensor> = tensors
            .into_iter()
            .filter(|(name, _)| name.starts_with("vision_model."))
            .collect();
        candle_core::safetensors::save(&kept, &path).unwrap();
    });
    let config = serde_json::json!({"model": "tiny-blip-captioning", "model_dir": dir});
    let mut encoder = Candle::create(&config.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
    let description = encoder.describe();
    assert_eq!(description.modalities, [Modality::Image]);
    let mut out = vec![0f32; description.dim];
    let err = encoder.encode_texts(&["a cat"], &mut out).unwrap_err();
    assert_eq!(err.status, Status::UNSUPPORTED, "{}", err.message);

    let path = fixture_dir("blip").join("reference.json");
    let extra: BlipExtra = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let want: Vec<&[f32]> = extra
        .vision_cls_features
        .iter()
        .map(Vec::as_slice)
        .collect();
    assert_eq!(description.dim, want[0].len());
    let reference = reference("blip");
    if let Some(decoded) = decoded_images(&reference) {
        let images = as_images(&decoded);
        let mut out = vec![0f32; images.len() * description.dim];
        encoder.encode_images(&images, &mut out).unwrap();
        worst_cosine("blip class tokens end to end", &out, &want);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn normalize_false_keeps_the_projection_norms() {
    let dir = fixture_dir("clip");
    let config = serde_json::json!({"model": "tiny-clip", "model_dir": dir,
                                    "options": {"normalize": false, "batch_size": 2}});
    let mut encoder = Candle::create(&config.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
    let dim = encoder.describe().dim;
    let reference = reference("clip");
    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    let mut out = vec![0f32; texts.len() * dim];
    encoder.encode_texts(&texts, &mut out).unwrap();
    let norms: Vec<f32> = out
        .chunks_exact(dim)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    assert!(norms.iter().all(|n| (n - 1.0).abs() > 1e-3), "{norms:?}");
    // Same directions as the normalised reference, batch size 2 included.
    let want: Vec<&[f32]> = reference
        .texts
        .iter()
        .map(|t| t.features.as_slice())
        .collect();
    worst_cosine("clip unnormalised texts", &out, &want);
}
