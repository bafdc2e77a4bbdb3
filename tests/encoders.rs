//! End-to-end tests of encoder parts: the real loader, a real plugin (the fixture plugin, which
//! encodes a text as `[chars, vowels, words, 1] × scale`), cached and resumable encoding.

mod common;

use std::path::Path;

use common::{embedlab, fixture_models, fixture_plugin_dir, stderr, write_text_dataset};
use serde_json::Value;

/// 2,500 samples (ten 256-row chunks) with captions of varied length, labels by length band.
fn write_dataset(dir: &Path) {
    write_text_dataset(dir, 2500);
    fixture_models(dir, &["ok"]);
}

fn manifest(model: &str) -> String {
    format!(
        r#"
[experiment]
name = "enc"

[dataset]
format = "jsonl"
path = "samples.jsonl"

[encoders.stats]
plugin = "fixture_plugin"
model = "{model}"
scale = 0.5

[[runs]]
name = "stats_{{captions}}"
parts = [{{ encoder = "stats" }}]
sweep = {{ captions = ["concat", "first"] }}
"#
    )
}

fn run(dir: &Path, plugins: &Path) -> std::process::Output {
    embedlab(
        dir,
        &["run", "exp.toml", "--plugin-dir", plugins.to_str().unwrap()],
    )
}

fn results(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("reports/enc/results.json")).unwrap()).unwrap()
}

#[test]
fn encoder_runs_are_cached_and_resume_from_their_chunks() {
    let plugins = fixture_plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_dataset(dir);
    std::fs::write(dir.join("exp.toml"), manifest("ok")).unwrap();

    let first = run(dir, &plugins);
    assert!(first.status.success(), "{}", stderr(&first));
    let r1 = results(dir);
    let concat = &r1["runs"][0];
    assert_eq!(concat["name"], "stats_concat");
    assert_eq!(concat["encoders"][0]["plugin"], "fixture_plugin");
    assert_eq!(concat["encoders"][0]["dim"], 4);
    assert_eq!(concat["encoders"][0]["captions"], "concat");
    assert!(
        concat["encoders"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_ne!(
        r1["runs"][0]["metrics"], r1["runs"][1]["metrics"],
        "caption sources differ"
    );

    let second = run(dir, &plugins);
    assert!(second.status.success(), "{}", stderr(&second));
    for run in results(dir)["runs"].as_array().unwrap() {
        assert_eq!(run["cache"]["misses"], 0, "{}", run["name"]);
    }

    // Simulate a run killed mid-encoding: its last chunk and the completion entry are missing,
    // and nothing downstream exists.
    let cache = dir.join(".embedlab/cache");
    for stage in ["knn", "metrics"] {
        std::fs::remove_dir_all(cache.join(stage)).unwrap();
    }
    let embed = cache.join("embed");
    let entries: Vec<_> = std::fs::read_dir(&embed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let complete: Vec<_> = entries
        .iter()
        .filter(|p| p.is_file() && p.extension().is_none())
        .collect();
    assert_eq!(complete.len(), 2, "one entry per caption source");
    for entry in complete {
        std::fs::remove_file(entry).unwrap();
        let chunks = entry.with_file_name(format!(
            "{}.chunks",
            entry.file_name().unwrap().to_string_lossy()
        ));
        std::fs::remove_file(chunks.join("000009")).unwrap();
    }
    let resumed = run(dir, &plugins);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(
        stderr(&resumed)
            .matches("resumed, 9 of 10 chunks were already encoded")
            .count(),
        2,
        "{}",
        stderr(&resumed)
    );
    let r3 = results(dir);
    for i in 0..2 {
        assert_eq!(r1["runs"][i]["metrics"], r3["runs"][i]["metrics"]);
    }
}

#[test]
fn a_failing_or_panicking_encoder_fails_its_runs_only() {
    let plugins = fixture_plugin_dir();
    for (model, message) in [("fail-encode", "bad input"), ("panic", "panic")] {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write_dataset(dir);
        fixture_models(dir, &[model]);
        let text = manifest(model).replace(
            "[[runs]]",
            "[[runs]]\nname = \"precomputed\"\nparts = [{ precomputed = \"v.npy\" }]\n\n[[runs]]",
        );
        std::fs::write(dir.join("exp.toml"), text).unwrap();
        let out = run(dir, &plugins);
        assert_eq!(out.status.code(), Some(1), "{model}: {}", stderr(&out));
        let r = results(dir);
        let failed = r["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 3, "{model}: {failed:?}");
        let errors: Vec<&str> = failed
            .iter()
            .map(|f| f["error"].as_str().unwrap())
            .collect();
        assert!(
            errors.iter().filter(|e| e.contains(message)).count() >= 2,
            "{model}: {errors:?}"
        );
    }
}

#[test]
fn embed_writes_npy_and_ids_from_a_text_file() {
    let plugins = fixture_plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_dataset(dir);
    std::fs::write(dir.join("texts.txt"), "a cat\nsits on the mat today\n").unwrap();
    let out = embedlab(
        dir,
        &[
            "embed",
            "--plugin",
            "fixture_plugin",
            "--model",
            "ok",
            "--texts",
            "texts.txt",
            "--out",
            "v.npy",
            "--plugin-dir",
            plugins.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(dir.join("v.npy")).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    assert!(header.contains("'shape': (2, 4)"), "{header}");
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // [chars, vowels, words, 1] of "a cat" and "sits on the mat today".
    assert_eq!(values, [5.0, 2.0, 2.0, 1.0, 21.0, 6.0, 5.0, 1.0]);
    assert_eq!(
        std::fs::read_to_string(dir.join("v.ids.txt")).unwrap(),
        "1\n2\n"
    );
}

#[test]
fn plugins_list_shows_the_fixture() {
    let plugins = fixture_plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let out = embedlab(
        dir.path(),
        &["plugins", "list", "--plugin-dir", plugins.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("fixture_plugin 0.1.0 (ABI 1.1)"),
        "{listing}"
    );
    assert!(listing.contains("fail-encode"), "{listing}");
}

#[test]
fn a_plugin_path_in_a_manifest_loads_only_with_allow_plugin_path() {
    let plugins = fixture_plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_dataset(dir);
    // The library sits beside the manifest, outside every plugin folder.
    let library = "libembedlab_fixture_plugin.so";
    std::fs::create_dir(dir.join("lib")).unwrap();
    std::fs::copy(plugins.join(library), dir.join("lib").join(library)).unwrap();
    let text = manifest("ok").replace(
        "plugin = \"fixture_plugin\"",
        "plugin = \"lib/libembedlab_fixture_plugin.so\"",
    );
    std::fs::write(dir.join("exp.toml"), text).unwrap();

    let refused = embedlab(dir, &["run", "exp.toml"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: exp.toml:10:10: encoders.stats.plugin: \"lib/libembedlab_fixture_plugin.so\" is a file path")
            && err.contains("--allow-plugin-path"),
        "{err}"
    );
    assert!(!dir.join("reports").exists(), "nothing ran");

    let allowed = embedlab(dir, &["run", "exp.toml", "--allow-plugin-path"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let r = results(dir);
    assert_eq!(r["runs"][0]["encoders"][0]["plugin"], "fixture_plugin");
}
