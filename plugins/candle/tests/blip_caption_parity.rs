//! Parity of BLIP captioning with transformers' `BlipForConditionalGeneration.generate`, on the
//! tiny randomly initialised checkpoint `make_blip_caption_reference.py` saved under
//! `fixtures/blip_caption/`.
//!
//! - generation alone: the reference's own preprocessed pixels through our model, for every case
//!   (greedy, greedy after a prompt, beam search, beam search with a prompt and `min_length`, the
//!   default length): the token ids must equal the reference's exactly, and the decoded texts too;
//! - end to end, through the plugin API the engine uses (`Candle::create`, `generate_captions`,
//!   two images per batch): raw JPEGs decoded with the `image` crate -> our preprocessing
//!   (compared with the reference's pixels first, so that a drift there is named as such) ->
//!   captions, whose texts must equal the reference's.
//!
//! The JPEGs are read from `../shared/data/coco-sample/images` relative to the repo root; without
//! them the end-to-end checks print "skipped: ..." and pass.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use embedlab_candle::Candle;
use embedlab_candle::blip_caption::{BlipCaptioner, Caption, CaptionOptions};
use embedlab_candle::family;
use embedlab_plugin::{Encoder, Modality, Plugin, Status};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    pixel_shape: [usize; 3],
    images: Vec<RefImage>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct RefImage {
    file: String,
    pixels: Vec<f32>,
}

#[derive(Deserialize)]
struct Case {
    options: serde_json::Map<String, serde_json::Value>,
    outputs: Vec<RefCaption>,
}

#[derive(Deserialize)]
struct RefCaption {
    ids: Vec<u32>,
    text: String,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip_caption")
}

fn reference() -> Reference {
    let path = fixture_dir().join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(case: &Case) -> BlipCaptioner {
    let options: CaptionOptions =
        serde_json::from_value(serde_json::Value::Object(case.options.clone())).unwrap();
    BlipCaptioner::load(&fixture_dir(), &options).unwrap_or_else(|e| panic!("{e}"))
}

/// Every caption equals the reference's, ids and text.
fn assert_same(label: &str, ours: &[Caption], want: &[RefCaption], files: &[&str]) {
    assert_eq!(ours.len(), want.len(), "{label}: number of captions");
    for ((ours, want), file) in ours.iter().zip(want).zip(files) {
        assert_eq!(ours.ids, want.ids, "{label}, {file}: token ids");
        assert_eq!(ours.text, want.text, "{label}, {file}: text");
    }
    println!(
        "{label}: {} captions identical, e.g. {:?}",
        ours.len(),
        ours[0].text
    );
}

#[test]
fn captions_of_reference_pixels_match_transformers_token_for_token() {
    let reference = reference();
    let [c, h, w] = reference.pixel_shape;
    let pixels: Vec<f32> = reference
        .images
        .iter()
        .flat_map(|i| i.pixels.clone())
        .collect();
    let pixels = Tensor::from_vec(pixels, (reference.images.len(), c, h, w), &Device::Cpu).unwrap();
    let files: Vec<&str> = reference.images.iter().map(|i| i.file.as_str()).collect();
    for case in &reference.cases {
        let model = load(case);
        let label = format!("{:?}", case.options);
        let start = std::time::Instant::now();
        let captions = model.caption_pixels(&pixels).unwrap();
        println!(
            "{label}: {:.1} ms for {} images",
            start.elapsed().as_secs_f64() * 1e3,
            files.len()
        );
        assert_same(&label, &captions, &case.outputs, &files);
    }
}

#[test]
fn captions_of_jpegs_match_transformers_through_the_plugin() {
    let reference = reference();
    let dir = fixture_dir();
    assert_eq!(family::detect(&dir).name, "blip_caption");
    let Some(root) = common::coco_photos() else {
        return;
    };
    let decoded: Vec<image::RgbImage> = reference
        .images
        .iter()
        .map(|i| {
            let path = root.join(&i.file);
            let image = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            image.to_rgb8()
        })
        .collect();
    let images = common::as_images(&decoded);

    // The preprocessing alone first, so that a drift there is reported as such. The `image`
    // crate decodes JPEGs slightly differently from PIL (a level or two on ~1% of pixels).
    let pixels = load(&reference.cases[0])
        .preprocess()
        .apply(&images, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want: Vec<f32> = reference
        .images
        .iter()
        .flat_map(|i| i.pixels.clone())
        .collect();
    common::assert_preprocessing_close("blip_caption", &pixels, &want);

    for case in &reference.cases {
        let mut options = case.options.clone();
        // Two images per batch, so that batching is exercised too.
        options.insert("batch_size".into(), 2.into());
        let config = serde_json::json!({"model": "tiny-blip-caption", "model_dir": dir,
                                        "options": options});
        let mut encoder = Candle::create(&config.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
        let description = encoder.describe();
        assert_eq!(description.modalities, [Modality::Image]);
        let texts = encoder.generate_captions(&images).unwrap();
        let label = format!("{:?} end to end", case.options);
        let want: Vec<&str> = case.outputs.iter().map(|o| o.text.as_str()).collect();
        assert_eq!(texts, want, "{label}");
        println!("{label}: {} captions identical", texts.len());
    }
}

#[test]
fn models_without_a_decoder_do_not_caption() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip");
    let config = serde_json::json!({"model": "tiny-blip", "model_dir": dir});
    let mut encoder = Candle::create(&config.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
    let err = encoder.generate_captions(&[]).unwrap_err();
    assert_eq!(err.status, Status::UNSUPPORTED, "{}", err.message);
    assert!(err.message.contains("captions"), "{}", err.message);
}

#[test]
fn options_are_checked_at_load() {
    let dir = fixture_dir();
    for (options, wanted) in [
        (serde_json::json!({"beams": 3}), "beams"),
        (serde_json::json!({"num_beams": 0}), "num_beams"),
        (serde_json::json!({"max_length": 1}), "max_length"),
        (
            serde_json::json!({"prompt": "a picture of", "max_length": 4}),
            "max_length",
        ),
    ] {
        let config = serde_json::json!({"model": "tiny-blip-caption", "model_dir": dir,
                                        "options": options});
        let err = match Candle::create(&config.to_string()) {
            Ok(_) => panic!("{wanted}: loaded"),
            Err(err) => err,
        };
        assert_eq!(err.status, Status::BAD_CONFIG, "{}", err.message);
        let err = err.message;
        println!("{err}");
        assert!(err.contains(wanted), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
