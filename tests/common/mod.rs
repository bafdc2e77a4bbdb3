//! What the end-to-end tests share: running the binary, and building the fixture plugin.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "embedlab-fixture-plugin"])
        .current_dir(&workspace)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the fixture plugin failed");
    target.join("debug")
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
