//! Image preprocessing against PIL and transformers, with the numbers of
//! `tests/make_preprocess_reference.py` (`tests/fixtures/preprocess/`).
//!
//! - resize: our [`resize_rgb8`] on PNG patches of real photos must give PIL's bytes exactly;
//! - pipeline: [`Preprocess::from_hf_config`] + `apply` must give transformers' CLIP processor
//!   values;
//! - photos: the whole COCO sample photos, decoded here (zune-jpeg) rather than by PIL
//!   (libjpeg-turbo), resized and cropped; prints how many values differ from PIL's and by how much
//!   (skipped when `../shared/data/coco-sample/images` is absent).

use std::path::{Path, PathBuf};

use candle_core::Device;
use embedlab_candle::vision::{Preprocess, Resample, Resize, Size, resize_rgb8};
use embedlab_plugin::Image;

mod common;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    resize: Vec<ResizeCase>,
    photos: Vec<PhotoCase>,
    pipeline: Vec<PipelineCase>,
}

#[derive(Deserialize)]
struct ResizeCase {
    patch: String,
    width: usize,
    height: usize,
    filter: Resample,
    rgb: String,
}

#[derive(Deserialize)]
struct PhotoCase {
    photo: String,
    decoded_sha256: String,
    edge: u32,
    crop: u32,
    rgb: String,
}

#[derive(Deserialize)]
struct PipelineCase {
    patch: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(fixtures().join("preprocess.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn decode(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

#[test]
fn resize_is_bit_exact_with_pil() {
    let fixture = fixture();
    assert_eq!(fixture.resize.len(), 18);
    for case in &fixture.resize {
        let patch = decode(&fixtures().join(&case.patch));
        let size = (patch.width() as usize, patch.height() as usize);
        let ours = resize_rgb8(patch.as_raw(), size, (case.width, case.height), case.filter);
        let pil = unhex(&case.rgb);
        let differing = ours.iter().zip(&pil).filter(|(a, b)| a != b).count();
        assert_eq!(
            (ours.len(), differing),
            (pil.len(), 0),
            "{} {:?} -> {}x{}",
            case.patch,
            case.filter,
            case.width,
            case.height
        );
    }
}

#[test]
fn hf_pipeline_matches_transformers() {
    let preprocess =
        Preprocess::from_hf_config(&fixtures().join("preprocessor_config.json")).unwrap();
    assert_eq!(preprocess.resize, Some(Resize::ShortestEdge(33)));
    for case in fixture().pipeline {
        let patch = decode(&fixtures().join(&case.patch));
        let image = Image {
            width: patch.width(),
            height: patch.height(),
            rgb: patch.as_raw(),
        };
        let tensor = preprocess.apply(&[image], &Device::Cpu).unwrap();
        assert_eq!(tensor.dims()[1..], case.shape[..], "{}", case.patch);
        let ours = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = ours
            .iter()
            .zip(&case.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{}: max difference {worst}", case.patch);
    }
}

#[test]
fn real_photos_close_to_pil() {
    let Some(dir) = common::coco_photos() else {
        return;
    };
    let (mut total, mut differing, mut worst) = (0usize, 0usize, 0u8);
    for case in fixture().photos {
        let photo = decode(&dir.join(&case.photo));
        let decoded_as_pil = sha256_hex(photo.as_raw()) == case.decoded_sha256;
        let preprocess = Preprocess {
            resize: Some(Resize::ShortestEdge(case.edge)),
            resample: Resample::Bicubic,
            center_crop: Some(Size {
                height: case.crop,
                width: case.crop,
            }),
            crop_rule: Default::default(),
            rescale: None,
            normalize: None,
        };
        let image = Image {
            width: photo.width(),
            height: photo.height(),
            rgb: photo.as_raw(),
        };
        let ours = preprocess.resize_and_crop(&image).unwrap().rgb;
        let pil = unhex(&case.rgb);
        assert_eq!(ours.len(), pil.len(), "{}", case.photo);
        let diffs: Vec<u8> = ours.iter().zip(&pil).map(|(a, b)| a.abs_diff(*b)).collect();
        let here = diffs.iter().filter(|&&d| d > 0).count();
        let max = diffs.iter().copied().max().unwrap_or(0);
        println!(
            "{}: decoded bytes {} PIL's; {here} of {} values differ after resize+crop (max {max})",
            case.photo,
            if decoded_as_pil {
                "equal"
            } else {
                "differ from"
            },
            pil.len()
        );
        if decoded_as_pil {
            assert_eq!(here, 0, "{}: same input, different resize", case.photo);
        }
        total += pil.len();
        differing += here;
        worst = worst.max(max);
    }
    println!("all photos: {differing} of {total} values differ from PIL (max {worst})");
    // Decoders may differ by a unit here and there (IDCT, chroma upsampling); more than that
    // would be a resampling bug.
    assert!(
        worst <= 3 && differing * 20 < total,
        "{differing} of {total}, max {worst}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
