//! End-to-end tests of image parts: real PNG files decoded by the engine, encoded by a real
//! plugin (the fixture plugin: `[width, height, mean red, mean green] × scale`), bad images
//! skipped and named, `strict` stopping at the first one.

mod common;

use std::path::Path;

use common::{embedlab, fixture_models, fixture_plugin_dir, png, stderr};
use embedlab::embed::{Vectors, npy};
use image::RgbImage;
use serde_json::Value;

const SCALE: f32 = 0.5;

/// The image of sample `i`: its size and colour follow from `i`, its colour mostly from its label.
fn picture(i: usize) -> RgbImage {
    let (w, h) = (8 + (i % 5) as u32, 6 + (i % 3) as u32);
    let label = (i % 4) as u8;
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            label * 60 + (x as u8 * 3 + i as u8) % 17,
            200 - label * 40 + (y as u8 * 5) % 11,
            i as u8,
        ])
    })
}

/// What the fixture plugin computes for an image, worked out here independently.
fn expected_vector(img: &RgbImage) -> Vec<f32> {
    let pixels = (img.width() * img.height()) as f32;
    let mean = |c: usize| img.pixels().map(|p| u64::from(p.0[c])).sum::<u64>() as f32 / pixels;
    [img.width() as f32, img.height() as f32, mean(0), mean(1)]
        .iter()
        .map(|v| v * SCALE)
        .collect()
}

/// Which samples have a bad image, and how it is bad.
enum Bad {
    Missing,
    Empty,
    Garbage,
    NoImage,
}

fn bad(i: usize) -> Option<Bad> {
    match i {
        3 => Some(Bad::Missing),
        7 => Some(Bad::Empty),
        11 => Some(Bad::Garbage),
        15 => Some(Bad::NoImage),
        _ => None,
    }
}

const N: usize = 40;

/// `samples.jsonl` (every sample, images under `img/`), and for the reference experiment
/// `good.jsonl` (the readable ones) with `expected.npy`, the vectors the plugin must produce.
fn write_inputs(dir: &Path) {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    fixture_models(dir, &["ok"]);
    let (mut all, mut good, mut ids, mut rows) =
        (String::new(), String::new(), String::new(), vec![]);
    for i in 0..N {
        let id = format!("s{i}");
        let file = format!("{i:03}.png");
        let line = |with_image: bool| {
            let mut v = serde_json::json!({"id": id, "labels": [format!("c{}", i % 4)], "captions": [format!("picture {i}")]});
            if with_image {
                v["image"] = file.clone().into();
            }
            v.to_string() + "\n"
        };
        all.push_str(&line(!matches!(bad(i), Some(Bad::NoImage))));
        let img = picture(i);
        match bad(i) {
            Some(Bad::Missing) | Some(Bad::NoImage) => {}
            Some(Bad::Empty) => std::fs::write(dir.join("img").join(&file), b"").unwrap(),
            Some(Bad::Garbage) => {
                std::fs::write(dir.join("img").join(&file), b"\x89PNG\r\n\x1a\nnot really").unwrap()
            }
            None => {
                std::fs::write(dir.join("img").join(&file), png(&img)).unwrap();
                good.push_str(&line(true));
                ids.push_str(&format!("{id}\n"));
                rows.extend(expected_vector(&img));
            }
        }
    }
    std::fs::write(dir.join("samples.jsonl"), all).unwrap();
    std::fs::write(dir.join("good.jsonl"), good).unwrap();
    std::fs::write(dir.join("expected.ids.txt"), ids).unwrap();
    let vectors = Vectors {
        n: rows.len() / 4,
        dim: 4,
        data: rows,
    };
    npy::write_f32(&dir.join("expected.npy"), &vectors).unwrap();
}

const MANIFEST: &str = r#"
[experiment]
name = "img"

[dataset]
format = "jsonl"
path = "samples.jsonl"
images = "img"

[encoders.stats]
plugin = "fixture_plugin"
model = "ok"
scale = 0.5

[[runs]]
name = "pixels"
parts = [{ encoder = "stats", input = "image" }]

[[runs]]
name = "pixels_and_captions"
parts = [{ encoder = "stats", input = "image" }, { encoder = "stats", captions = "first" }]

[[runs]]
name = "captions"
parts = [{ encoder = "stats", captions = "first" }]
"#;

const REFERENCE: &str = r#"
[experiment]
name = "ref"

[dataset]
format = "jsonl"
path = "good.jsonl"

[[runs]]
name = "pixels"
parts = [{ precomputed = "expected.npy" }]
"#;

fn run(dir: &Path, manifest: &str, extra: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("exp.toml"), manifest).unwrap();
    let plugins = fixture_plugin_dir();
    let mut args = vec!["run", "exp.toml", "--plugin-dir", plugins.to_str().unwrap()];
    args.extend(extra);
    embedlab(dir, &args)
}

fn results(dir: &Path, experiment: &str) -> Value {
    let path = dir.join(format!("reports/{experiment}/results.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn by_name<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no run {name} in {results}"))
}

#[test]
fn unreadable_images_are_skipped_named_and_left_out_of_the_run_only() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_inputs(dir);

    let reference = run(dir, REFERENCE, &[]);
    assert!(reference.status.success(), "{}", stderr(&reference));
    let expected = by_name(&results(dir, "ref"), "pixels").clone();

    let out = run(dir, MANIFEST, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stats: 4 of 40 images could not be read"),
        "{}",
        stderr(&out)
    );
    let r = results(dir, "img");
    let pixels = by_name(&r, "pixels");
    assert_eq!(pixels["n_samples"], 36);
    assert_eq!(
        pixels["metrics"], expected["metrics"],
        "same vectors, same samples"
    );
    let skipped: Vec<(String, String)> = pixels["skipped_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ids: Vec<&str> = skipped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["s3", "s7", "s11", "s15"]);
    assert_eq!(skipped[0].1, "file not found");
    assert_eq!(skipped[1].1, "empty file (0 bytes)");
    assert!(
        skipped[2].1.starts_with("not a decodable image"),
        "{}",
        skipped[2].1
    );
    assert_eq!(skipped[3].1, "the dataset gives no image for this sample");
    assert!(
        pixels["skipped_images"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("img/003.png")
    );

    // A fused run loses the same samples; a caption-only run keeps every sample.
    assert_eq!(by_name(&r, "pixels_and_captions")["n_samples"], 36);
    assert_eq!(by_name(&r, "captions")["n_samples"], 40);
    assert!(
        by_name(&r, "captions")["skipped_images"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Per-query lines name only evaluated samples.
    let per_query =
        std::fs::read_to_string(dir.join("reports/img/per_query/pixels.jsonl")).unwrap();
    assert_eq!(per_query.lines().count(), 36);
    assert!(!per_query.contains("\"s3\""));

    let report = std::fs::read_to_string(dir.join("reports/img/report.md")).unwrap();
    assert!(
        report.contains("s11"),
        "the report names skipped samples:\n{report}"
    );

    // Warm rerun: everything cached, the skipped list still reported.
    let again = run(dir, MANIFEST, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    let r2 = results(dir, "img");
    let pixels2 = by_name(&r2, "pixels");
    assert_eq!(pixels2["cache"]["misses"], 0);
    assert_eq!(pixels2["skipped_images"], pixels["skipped_images"]);
    assert_eq!(pixels2["metrics"], pixels["metrics"]);
}

#[test]
fn strict_stops_an_image_run_at_the_first_bad_image() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_inputs(dir);
    let out = run(dir, MANIFEST, &["--set", "dataset.strict=true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = results(dir, "img");
    let failed = r["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{r}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains("img/003.png: file not found"), "{error}");
    assert!(error.contains("strict = true"), "{error}");
    assert_eq!(by_name(&r, "captions")["n_samples"], 40);
}

#[test]
fn replacing_an_image_re_encodes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_inputs(dir);
    assert!(run(dir, MANIFEST, &[]).status.success());
    let before = by_name(&results(dir, "img"), "pixels")["metrics"].clone();
    // Sample 0 takes the picture of sample 2 (a different label's colours).
    std::fs::write(dir.join("img/000.png"), png(&picture(2))).unwrap();
    let out = run(dir, MANIFEST, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = results(dir, "img");
    assert!(by_name(&r, "pixels")["cache"]["misses"].as_u64().unwrap() > 0);
    assert_ne!(by_name(&r, "pixels")["metrics"], before);
}

#[test]
fn embed_images_writes_a_vector_per_readable_image_named_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_inputs(dir); // for the `ok` model folder
    let folder = dir.join("photos");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let (a, b) = (picture(1), picture(6));
    std::fs::write(folder.join("a.png"), png(&a)).unwrap();
    std::fs::write(folder.join("sub/b.PNG"), png(&b)).unwrap();
    std::fs::write(folder.join("broken.jpg"), b"\xff\xd8\xff truncated").unwrap();
    std::fs::write(folder.join("notes.txt"), b"not an image").unwrap();
    let plugins = fixture_plugin_dir();
    let out = embedlab(
        dir,
        &[
            "embed",
            "--plugin",
            "fixture_plugin",
            "--model",
            "ok",
            "--images",
            "photos",
            "--out",
            "v.npy",
            "--plugin-dir",
            plugins.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("broken.jpg: not a decodable image"),
        "{}",
        stderr(&out)
    );
    let vectors = npy::read_f32(&dir.join("v.npy")).unwrap();
    assert_eq!((vectors.n, vectors.dim), (2, 4));
    // The fixture's scale option is not set by `embed`: scale 1.
    let unscaled =
        |img: &RgbImage| -> Vec<f32> { expected_vector(img).iter().map(|v| v / SCALE).collect() };
    assert_eq!(vectors.row(0), unscaled(&a).as_slice());
    assert_eq!(vectors.row(1), unscaled(&b).as_slice());
    assert_eq!(
        std::fs::read_to_string(dir.join("v.ids.txt")).unwrap(),
        "a.png\nsub/b.PNG\n"
    );
}
