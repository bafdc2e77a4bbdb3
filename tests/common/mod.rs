//! What the end-to-end tests share: running the binary, and building the fixture plugin.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A deterministic pseudo-random stream (xorshift), independent of the engine's generator.
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs the binary in `dir` with an environment isolated from the user's settings.
pub fn embedlab(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(args)
        .current_dir(dir)
        .env_remove("EMBEDLAB_CACHE_DIR")
        .env_remove("EMBEDLAB_PLUGIN_PATH")
        .env("EMBEDLAB_MODEL_STORE", dir.join("model-store"))
        .output()
        .expect("embedlab runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The folder holding `libembedlab_fixture_plugin.so`, built with the workspace's cargo.
pub fn fixture_plugin_dir() -> PathBuf {
    build_plugin("embedlab-fixture-plugin", None)
}

/// The folder holding the fixture plugin built with cargo feature `feature` (a broken variant:
/// `abi-v2`, `no-symbol`, ...), in `<target>/plugin-fixtures/<feature>` as the loader's unit tests
/// build it, so the two share the build.
pub fn fixture_variant_dir(feature: &str) -> PathBuf {
    build_plugin("embedlab-fixture-plugin", Some(feature))
}

/// The folder holding `libembedlab_candle.so` (test profile).
pub fn candle_plugin_dir() -> PathBuf {
    build_plugin("embedlab-candle", None)
}

/// Builds plugin crate `package` (with `feature`, into its own target folder) and returns the
/// folder holding its library.
fn build_plugin(package: &str, feature: Option<&str>) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    let target = match feature {
        None => target,
        Some(feature) => target.join("plugin-fixtures").join(feature),
    };
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "-p", package])
        .current_dir(&workspace);
    if let Some(feature) = feature {
        cargo.arg("--target-dir").arg(&target);
        cargo.args(["--features", feature]);
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building {package} ({feature:?}) failed");
    target.join("debug")
}

/// Writes `rows` as a float32 `.npy` (version 1.0, C order).
pub fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        rows[0].len()
    );
    let total = 10 + dict.len() + 1;
    let header = format!("{dict}{}\n", " ".repeat((64 - total % 64) % 64));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    rows.iter()
        .flatten()
        .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// `img` as PNG bytes.
pub fn png(img: &image::RgbImage) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// Local model folders for fixture models under `dir`: the fixture needs no weights, but every
/// model has a weights file.
pub fn fixture_models(dir: &Path, models: &[&str]) {
    for model in models {
        std::fs::create_dir_all(dir.join(model)).unwrap();
        std::fs::write(
            dir.join(model).join("model.safetensors"),
            b"fixture weights",
        )
        .unwrap();
    }
}

/// The eight metric means at cutoff `k` of the given neighbour lists (best first, query
/// excluded), straight from DESIGN.md's definitions.
pub fn definition_metrics(
    neighbours: &[Vec<usize>],
    labels: &[usize],
    k: usize,
) -> HashMap<String, f64> {
    let n = neighbours.len();
    let mut sums: HashMap<&str, f64> = HashMap::new();
    for (q, list) in neighbours.iter().enumerate() {
        let rel: Vec<f64> = list[..k]
            .iter()
            .map(|&j| (labels[j] == labels[q]) as u8 as f64)
            .collect();
        let r = labels
            .iter()
            .enumerate()
            .filter(|&(j, &l)| j != q && l == labels[q])
            .count() as f64;
        let h: f64 = rel.iter().sum();
        let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
        let dcg: f64 = rel.iter().enumerate().map(|(i, r)| r * gain(i)).sum();
        let ideal = (k as f64).min(r) as usize;
        let idcg: f64 = (0..ideal).map(gain).sum();
        let list_idcg: f64 = (0..h as usize).map(gain).sum();
        let mut ap = 0.0;
        let mut seen = 0.0;
        for (i, r) in rel.iter().enumerate() {
            if *r > 0.0 {
                seen += 1.0;
                ap += seen / (i + 1) as f64;
            }
        }
        let first = rel.iter().position(|&r| r > 0.0);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let values = [
            ("hit_rate", (h > 0.0) as u8 as f64),
            ("precision", h / k as f64),
            ("recall", ratio(h, r)),
            ("mrr", first.map_or(0.0, |i| 1.0 / (i + 1) as f64)),
            ("map", ratio(ap, ideal as f64)),
            ("map_list", ratio(ap, h)),
            ("ndcg", ratio(dcg, idcg)),
            ("ndcg_list", ratio(dcg, list_idcg)),
        ];
        for (name, v) in values {
            *sums.entry(name).or_default() += v;
        }
    }
    sums.into_iter()
        .map(|(name, s)| (format!("{name}@{k}"), s / n as f64))
        .collect()
}

/// The values of a 2-D little-endian `u32` `.npy` file (version 1.0, C order) and its shape.
pub fn read_u32_npy(path: &Path) -> (Vec<u32>, usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<u4'"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap();
    let dims: Vec<usize> = shape
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values: Vec<u32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values.len(), dims[0] * dims[1]);
    (values, dims[0], dims[1])
}

/// `samples.jsonl` in `dir`: `n` samples `t0..` with two captions of varied length each,
/// labelled by the first caption's length band.
pub fn write_text_dataset(dir: &Path, n: usize) {
    let words = [
        "a", "cat", "sits", "on", "the", "old", "red", "mat", "under", "sky",
    ];
    let mut jsonl = String::new();
    for i in 0..n {
        let len = 2 + i % 9;
        let caption: Vec<&str> = (0..len)
            .map(|j| words[(i * 7 + j * 3) % words.len()])
            .collect();
        let second: Vec<&str> = (0..(1 + i % 4))
            .map(|j| words[(i + j) % words.len()])
            .collect();
        let label = format!("band{}", len / 3);
        let line = serde_json::json!({ "id": format!("t{i}"), "labels": [label], "captions": [caption.join(" "), second.join(" ")] });
        jsonl.push_str(&line.to_string());
        jsonl.push('\n');
    }
    std::fs::write(dir.join("samples.jsonl"), jsonl).unwrap();
}
