//! The bad-input corpus: one table of broken manifests, datasets, vectors, images and plugins,
//! each run through the real binary. Every case must end with one clear line that names what is
//! wrong and where, the documented exit status (2: the experiment stops, 1: a run fails, 0: a bad
//! image is skipped and counted), no panic, and a cache that is still valid.
//!
//! Run with `-- --nocapture` to print each case's line (the table in the issue's closing note).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{
    embedlab, fixture_models, fixture_plugin_dir, fixture_variant_dir, png, stderr, write_npy,
};
use serde_json::Value;

/// How a case must end.
#[derive(Clone, Copy)]
enum Outcome {
    /// Exit 2 with exactly one `error:` line.
    Stops,
    /// Exit 1: the run is reported failed in exactly one `warning: run "…" failed:` line, and
    /// no `error:` line.
    RunFails,
    /// Exit 0: this many images are skipped, counted (results.json, or the ids `embed` wrote)
    /// and named in exactly one warning line.
    Skips(usize),
}

impl Outcome {
    fn exit_code(self) -> i32 {
        match self {
            Outcome::Stops => 2,
            Outcome::RunFails => 1,
            Outcome::Skips(_) => 0,
        }
    }
}

/// Which plugin folder the command is given.
#[derive(Clone, Copy)]
enum Plugins {
    /// The working fixture plugin.
    Fixture,
    /// The fixture built with this cargo feature (a broken variant).
    Variant(&'static str),
    /// `plugins/` inside the case's folder (whatever the case wrote there).
    Local,
}

/// What the case runs.
#[derive(Clone, Copy)]
enum Command {
    /// `embedlab run exp.toml --cache-dir cache`.
    Run,
    /// `embedlab embed --plugin fixture_plugin --model ok --images img --out out.npy`.
    EmbedImages,
}

struct Case {
    category: &'static str,
    input: &'static str,
    /// Breaks the working experiment that the case's folder starts with.
    build: fn(&Path),
    plugins: Plugins,
    command: Command,
    outcome: Outcome,
    /// What the message line must contain: the file, line, key, sample or plugin at fault, and
    /// what is wrong with it.
    names: &'static [&'static str],
}

const N: usize = 6;

/// The manifest's tables before the runs: N samples in three label sets, k = 2.
const HEAD: &str = r#"[experiment]
name = "bad"

[dataset]
format = "jsonl"
path = "samples.jsonl"
images = "img"

[retrieval]
k = 2

[metrics]
bootstrap = 10
permutations = 10
"#;

const VECTORS_RUN: &str = r#"
[[runs]]
name = "vec"
parts = [{ precomputed = "v.npy" }]
"#;

/// A caption run of the fixture plugin's model `MODEL`.
const ENCODER_RUN: &str = r#"
[encoders.stats]
plugin = "fixture_plugin"
model = "MODEL"

[[runs]]
name = "enc"
parts = [{ encoder = "stats" }]
"#;

const IMAGE_RUN: &str = r#"
[encoders.stats]
plugin = "fixture_plugin"
model = "ok"

[[runs]]
name = "pixels"
parts = [{ encoder = "stats", input = "image" }]
"#;

const COCO_DATASET: &str = r#"[dataset]
format = "coco"
captions = ["captions.json"]
instances = ["instances.json"]
images = "img"
"#;

/// Every fixture model a case may name.
const MODELS: &[&str] = &["ok", "panic", "nan", "dim-zero", "wrong-count"];

fn write(dir: &Path, file: &str, bytes: impl AsRef<[u8]>) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Replaces the one occurrence of `from` in `file`.
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}:\n{text}");
    write(dir, file, text.replace(from, to));
}

fn manifest(dir: &Path, text: &str) {
    write(dir, "exp.toml", text);
}

fn encoder_manifest(dir: &Path, model: &str) {
    manifest(
        dir,
        &format!("{HEAD}{}", ENCODER_RUN.replace("MODEL", model)),
    );
}

fn image_manifest(dir: &Path) {
    manifest(dir, &format!("{HEAD}{IMAGE_RUN}"));
}

fn sample_line(i: usize) -> String {
    let label = ["a", "b", "c"][i / 2];
    serde_json::json!({
        "id": format!("s{i}"),
        "image": format!("s{i}.png"),
        "captions": [format!("picture number {i}")],
        "labels": [label],
    })
    .to_string()
}

/// `v.npy` row `i`: nonzero, finite, close within a label set.
fn vector(i: usize) -> Vec<f32> {
    vec![
        1.0 + (i / 2) as f32,
        0.5 + 0.1 * i as f32,
        2.0 - (i / 2) as f32,
    ]
}

/// The working experiment every case starts from, with the fixture models and images it needs.
fn write_base(dir: &Path) {
    let lines: Vec<String> = (0..N).map(sample_line).collect();
    write(dir, "samples.jsonl", lines.join("\n") + "\n");
    for i in 0..N {
        let img = image::RgbImage::from_fn(4 + i as u32, 3, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 60) as u8, (i * 30) as u8])
        });
        write(dir, &format!("img/s{i}.png"), png(&img));
    }
    write_npy(&dir.join("v.npy"), &(0..N).map(vector).collect::<Vec<_>>());
    let ids: Vec<String> = (0..N).map(|i| format!("s{i}\n")).collect();
    write(dir, "v.ids.txt", ids.concat());
    fixture_models(dir, MODELS);
    manifest(dir, &format!("{HEAD}{VECTORS_RUN}"));
}

/// A COCO pair over the same samples (image ids 1..=N, one category per label set).
fn write_coco(dir: &Path) {
    let images: Vec<Value> = (0..N)
        .map(|i| serde_json::json!({ "id": i + 1, "file_name": format!("s{i}.png") }))
        .collect();
    let captions: Vec<Value> = (0..N)
        .map(|i| serde_json::json!({ "id": 100 + i, "image_id": i + 1, "caption": format!("picture {i}") }))
        .collect();
    let instances: Vec<Value> = (0..N)
        .map(|i| serde_json::json!({ "id": 200 + i, "image_id": i + 1, "category_id": 1 + i / 2 }))
        .collect();
    let categories: Vec<Value> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(c, name)| serde_json::json!({ "id": c + 1, "name": name }))
        .collect();
    let captions = serde_json::json!({ "images": images, "annotations": captions });
    let instances =
        serde_json::json!({ "images": images, "annotations": instances, "categories": categories });
    write(
        dir,
        "captions.json",
        serde_json::to_string_pretty(&captions).unwrap(),
    );
    write(
        dir,
        "instances.json",
        serde_json::to_string_pretty(&instances).unwrap(),
    );
    let head = HEAD.replace(
        "[dataset]\nformat = \"jsonl\"\npath = \"samples.jsonl\"\nimages = \"img\"\n",
        COCO_DATASET,
    );
    manifest(dir, &format!("{head}{VECTORS_RUN}"));
}

/// `v.npy` holding `shape` elements of `descr` (each `element` bytes long, all `fill`).
fn write_raw_npy(dir: &Path, descr: &str, shape: &str, count: usize, element: &[u8]) {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + dict.len() + 1;
    let header = format!("{dict}{}\n", " ".repeat((64 - total % 64) % 64));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for _ in 0..count {
        bytes.extend_from_slice(element);
    }
    write(dir, "v.npy", bytes);
}

/// `v.npy` with row `row` replaced.
fn write_vectors_with_row(dir: &Path, row: usize, values: Vec<f32>) {
    let mut rows: Vec<Vec<f32>> = (0..N).map(vector).collect();
    rows[row] = values;
    write_npy(&dir.join("v.npy"), &rows);
}

/// A PNG of a few hundred bytes whose header declares `width × height` pixels: a decompression
/// bomb's header (a real bomb's data would inflate to width × height × 3 bytes).
fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(&image::RgbImage::new(1, 1));
    // Signature (8 bytes), then IHDR: length (4), type (4), width (4), height (4), ..., CRC.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn cases() -> Vec<Case> {
    use Command::*;
    use Outcome::*;
    use Plugins::*;
    vec![
        // Manifests.
        Case {
            category: "manifest",
            input: "TOML syntax error (`k =` without a value)",
            build: |d| edit(d, "exp.toml", "k = 2", "k ="),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["exp.toml:10:4:", "string values must be quoted"],
        },
        Case {
            category: "manifest",
            input: "unknown key `kk` in [retrieval]",
            build: |d| edit(d, "exp.toml", "k = 2", "kk = 2"),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["exp.toml:10:1:", "unknown field `kk`", "did you mean `k`?"],
        },
        Case {
            category: "manifest",
            input: "wrong type: `k = \"two\"`",
            build: |d| edit(d, "exp.toml", "k = 2", "k = \"two\""),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "exp.toml:10:5:",
                "invalid type: string \"two\", expected usize",
            ],
        },
        Case {
            category: "manifest",
            input: "no [dataset] table",
            build: |d| {
                edit(
                    d,
                    "exp.toml",
                    "[dataset]\nformat = \"jsonl\"\npath = \"samples.jsonl\"\nimages = \"img\"\n",
                    "",
                )
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["exp.toml:1:1:", "missing field `dataset`"],
        },
        Case {
            category: "manifest",
            input: "manifest file does not exist",
            build: |d| std::fs::remove_file(d.join("exp.toml")).unwrap(),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["exp.toml: cannot read manifest: No such file"],
        },
        Case {
            category: "manifest",
            input: "encoder of an unknown plugin (`plugin = \"nosuch\"`)",
            build: |d| {
                encoder_manifest(d, "ok");
                edit(d, "exp.toml", "\"fixture_plugin\"", "\"nosuch\"");
            },
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["run \"enc\"", "encoder \"stats\"", "no plugin named nosuch"],
        },
        Case {
            category: "manifest",
            input: "run part names an undeclared encoder",
            build: |d| {
                encoder_manifest(d, "ok");
                edit(
                    d,
                    "exp.toml",
                    "{ encoder = \"stats\" }",
                    "{ encoder = \"stat\" }",
                );
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "exp.toml:",
                "runs[0].parts[0].encoder: no [encoders.stat] table",
                "did you mean \"stats\"?",
            ],
        },
        Case {
            category: "manifest",
            input: "k = 0",
            build: |d| edit(d, "exp.toml", "k = 2", "k = 0"),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["exp.toml:10:5: retrieval.k: must be at least 1"],
        },
        Case {
            category: "manifest",
            input: "k = N = 6 (not smaller than the samples left after filtering)",
            build: |d| edit(d, "exp.toml", "k = 2", "k = 6"),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "exp.toml: retrieval.k = 6 needs at least 7 samples",
                "dataset \"samples\" keeps 6 of 6",
            ],
        },
        Case {
            category: "manifest",
            input: "negative part weight",
            build: |d| {
                edit(
                    d,
                    "exp.toml",
                    "precomputed = \"v.npy\"",
                    "precomputed = \"v.npy\", weight = -0.5",
                )
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "exp.toml:",
                "runs[0].parts[0].weight: must be > 0 (got -0.5)",
            ],
        },
        Case {
            category: "manifest",
            input: "two runs named \"vec\"",
            build: |d| manifest(d, &format!("{HEAD}{VECTORS_RUN}{VECTORS_RUN}")),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["exp.toml:21:8: runs[1].name: duplicate run name \"vec\""],
        },
        Case {
            category: "manifest",
            input: "experiment name escaping the report folder (`name = \"../escape\"`)",
            build: |d| edit(d, "exp.toml", "name = \"bad\"", "name = \"../escape\""),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["exp.toml:2:8: experiment.name:", "report folder"],
        },
        // Datasets.
        Case {
            category: "dataset",
            input: "JSONL line truncated mid-object",
            build: |d| {
                let text = std::fs::read_to_string(d.join("samples.jsonl")).unwrap();
                let cut = text.find("\"labels\":[\"b\"]").unwrap();
                write(d, "samples.jsonl", &text[..cut]);
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["samples.jsonl:3:", "EOF while parsing"],
        },
        Case {
            category: "dataset",
            input: "COCO captions file truncated",
            build: |d| {
                write_coco(d);
                let text = std::fs::read_to_string(d.join("captions.json")).unwrap();
                write(d, "captions.json", &text[..text.len() / 2]);
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["captions.json:", "EOF while parsing"],
        },
        Case {
            category: "dataset",
            input: "wrong type: `\"labels\": \"b\"` (a string, not a list)",
            build: |d| {
                edit(
                    d,
                    "samples.jsonl",
                    "\"labels\":[\"b\"]}\n{\"captions\":[\"picture number 3\"]",
                    "\"labels\":\"b\"}\n{\"captions\":[\"picture number 3\"]",
                )
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "samples.jsonl:3:",
                "sample s2",
                "invalid type: string \"b\"",
            ],
        },
        Case {
            category: "dataset",
            input: "wrong type: id is a list",
            build: |d| edit(d, "samples.jsonl", "\"id\":\"s4\"", "\"id\":[4]"),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "samples.jsonl:5:",
                "invalid type: sequence, expected a string or integer id",
            ],
        },
        Case {
            category: "dataset",
            input: "duplicate sample id",
            build: |d| edit(d, "samples.jsonl", "\"id\":\"s3\"", "\"id\":\"s1\""),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["samples.jsonl:4: sample s1: duplicate id (first on line 2)"],
        },
        Case {
            category: "dataset",
            input: "COCO caption of an image id not in images[]",
            build: |d| {
                write_coco(d);
                edit(
                    d,
                    "captions.json",
                    "\"image_id\": 4\n",
                    "\"image_id\": 99\n",
                );
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "captions.json: annotation 103 (annotations[3])",
                "image_id 99 has no entry",
            ],
        },
        Case {
            category: "dataset",
            input: "every label set empty (`\"labels\": []`)",
            build: |d| {
                let lines: Vec<String> = (0..N)
                    .map(|i| {
                        format!("{{\"id\": \"s{i}\", \"captions\": [\"x\"], \"labels\": []}}\n")
                    })
                    .collect();
                write(d, "samples.jsonl", lines.concat());
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &[
                "exp.toml: retrieval.k = 2",
                "dataset \"samples\" keeps 0 of 6",
                "(6 without labels)",
            ],
        },
        Case {
            category: "dataset",
            input: "empty label name (`\"labels\": [\"\"]`)",
            build: |d| {
                edit(
                    d,
                    "samples.jsonl",
                    "\"labels\":[\"c\"]}\n{\"captions\":[\"picture number 5\"]",
                    "\"labels\":[\"\"]}\n{\"captions\":[\"picture number 5\"]",
                )
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["samples.jsonl:5: sample s4: empty label name"],
        },
        Case {
            category: "dataset",
            input: "non-UTF-8 byte in a JSONL caption",
            build: |d| {
                let text = std::fs::read(d.join("samples.jsonl")).unwrap();
                let at = text.windows(9).position(|w| w == b"number 2\"").unwrap();
                let mut bytes = text.clone();
                bytes[at + 1] = 0xFF;
                write(d, "samples.jsonl", bytes);
            },
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["samples.jsonl:3: not valid UTF-8 (column"],
        },
        Case {
            category: "dataset",
            input: "dataset file missing",
            build: |d| std::fs::remove_file(d.join("samples.jsonl")).unwrap(),
            plugins: Fixture,
            command: Run,
            outcome: Stops,
            names: &["samples.jsonl: cannot read: No such file"],
        },
        Case {
            category: "dataset",
            input: "image is not an image (text bytes in s2.png)",
            build: |d| {
                image_manifest(d);
                write(d, "img/s2.png", "this is not a picture");
            },
            plugins: Fixture,
            command: Run,
            outcome: Skips(1),
            names: &["s2.png", "not a decodable image"],
        },
        Case {
            category: "dataset",
            input: "zero-byte image",
            build: |d| {
                image_manifest(d);
                write(d, "img/s3.png", "");
            },
            plugins: Fixture,
            command: Run,
            outcome: Skips(1),
            names: &["s3.png", "empty file (0 bytes)"],
        },
        Case {
            category: "dataset",
            input: "truncated PNG",
            build: |d| {
                image_manifest(d);
                let bytes = std::fs::read(d.join("img/s1.png")).unwrap();
                write(d, "img/s1.png", &bytes[..bytes.len() / 2]);
            },
            plugins: Fixture,
            command: Run,
            outcome: Skips(1),
            names: &["s1.png", "not a decodable image"],
        },
        Case {
            category: "dataset",
            input: "image file missing",
            build: |d| {
                image_manifest(d);
                std::fs::remove_file(d.join("img/s5.png")).unwrap();
            },
            plugins: Fixture,
            command: Run,
            outcome: Skips(1),
            names: &["s5.png", "file not found"],
        },
        Case {
            category: "dataset",
            input: "decompression bomb: PNG header declaring 60000×60000 (run)",
            build: |d| {
                image_manifest(d);
                write(d, "img/s4.png", bomb_png(60_000, 60_000));
            },
            plugins: Fixture,
            command: Run,
            outcome: Skips(1),
            names: &["s4.png", "60000×60000", "limit"],
        },
        Case {
            category: "dataset",
            input: "decompression bomb: PNG header declaring 60000×60000 (`embed --images`)",
            build: |d| write(d, "img/s4.png", bomb_png(60_000, 60_000)),
            plugins: Fixture,
            command: EmbedImages,
            outcome: Skips(1),
            names: &["s4.png", "60000×60000", "limit"],
        },
        // Precomputed vectors.
        Case {
            category: "vectors",
            input: "dtype float64 (`<f8`)",
            build: |d| write_raw_npy(d, "<f8", "(6, 3)", 18, &1.0f64.to_le_bytes()),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["run \"vec\"", "v.npy: dtype '<f8' is not float32"],
        },
        Case {
            category: "vectors",
            input: "dtype int32 (`<i4`)",
            build: |d| write_raw_npy(d, "<i4", "(6, 3)", 18, &1i32.to_le_bytes()),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["run \"vec\"", "v.npy: dtype '<i4' is not float32"],
        },
        Case {
            category: "vectors",
            input: "1-D array",
            build: |d| write_raw_npy(d, "<f4", "(18,)", 18, &1.0f32.to_le_bytes()),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &[
                "run \"vec\"",
                "v.npy: expected a 2-D array of shape (N, D), found shape (18,)",
            ],
        },
        Case {
            category: "vectors",
            input: "3-D array",
            build: |d| write_raw_npy(d, "<f4", "(6, 3, 1)", 18, &1.0f32.to_le_bytes()),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["run \"vec\"", "found shape (6, 3, 1)"],
        },
        Case {
            category: "vectors",
            input: "7 ids for 6 rows",
            build: |d| {
                let ids: Vec<String> = (0..N + 1).map(|i| format!("s{i}\n")).collect();
                write(d, "v.ids.txt", ids.concat());
            },
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["v.ids.txt: 7 ids but", "v.npy has 6 rows"],
        },
        Case {
            category: "vectors",
            input: "data shorter than the header's shape",
            build: |d| {
                let bytes = std::fs::read(d.join("v.npy")).unwrap();
                write(d, "v.npy", &bytes[..bytes.len() - 8]);
            },
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["v.npy: truncated data: shape (6, 3)"],
        },
        Case {
            category: "vectors",
            input: "NaN in row 3",
            build: |d| write_vectors_with_row(d, 3, vec![1.0, f32::NAN, 0.0]),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["v.npy: row 3 (sample \"s3\") contains NaN or infinity"],
        },
        Case {
            category: "vectors",
            input: "+Inf in row 1",
            build: |d| write_vectors_with_row(d, 1, vec![f32::INFINITY, 1.0, 0.0]),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["v.npy: row 1 (sample \"s1\") contains NaN or infinity"],
        },
        Case {
            category: "vectors",
            input: "all-zero row 4",
            build: |d| write_vectors_with_row(d, 4, vec![0.0; 3]),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["v.npy: row 4 (sample \"s4\") is all zeros"],
        },
        Case {
            category: "vectors",
            input: "vectors file missing",
            build: |d| std::fs::remove_file(d.join("v.npy")).unwrap(),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["run \"vec\"", "v.npy: cannot read: No such file"],
        },
        Case {
            category: "vectors",
            input: "not a .npy file (text in v.npy)",
            build: |d| write(d, "v.npy", "0.1, 0.2, 0.3\n"),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["run \"vec\"", "v.npy: not a .npy file"],
        },
        Case {
            category: "vectors",
            input: "a dataset sample without a row",
            build: |d| {
                let ids: Vec<String> = (0..N).map(|i| format!("t{i}\n")).collect();
                write(d, "v.ids.txt", ids.concat());
            },
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &["v.npy: no row for dataset sample \"s0\"", "v.ids.txt"],
        },
        // Plugins.
        Case {
            category: "plugin",
            input: "not a library (text in libembedlab_textfile.so)",
            build: |d| {
                encoder_manifest(d, "ok");
                edit(d, "exp.toml", "\"fixture_plugin\"", "\"textfile\"");
                write(
                    d,
                    "plugins/libembedlab_textfile.so",
                    "not a shared object\n",
                );
            },
            plugins: Local,
            command: Run,
            outcome: RunFails,
            names: &[
                "encoder \"stats\"",
                "not a plugin:",
                "libembedlab_textfile.so failed to load",
            ],
        },
        Case {
            category: "plugin",
            input: "wrong ABI (the fixture built reporting ABI 2.0)",
            build: |d| encoder_manifest(d, "ok"),
            plugins: Variant("abi-v2"),
            command: Run,
            outcome: RunFails,
            names: &[
                "encoder \"stats\"",
                "libembedlab_fixture_plugin.so speaks ABI 2.0",
            ],
        },
        Case {
            category: "plugin",
            input: "missing entry symbol (the fixture built exporting nothing)",
            build: |d| encoder_manifest(d, "ok"),
            plugins: Variant("no-symbol"),
            command: Run,
            outcome: RunFails,
            names: &[
                "encoder \"stats\"",
                "libembedlab_fixture_plugin.so lacks the embedlab_plugin_v1 symbol",
            ],
        },
        Case {
            category: "plugin",
            input: "function table too short for its ABI",
            build: |d| encoder_manifest(d, "ok"),
            plugins: Variant("short-table"),
            command: Run,
            outcome: RunFails,
            names: &["encoder \"stats\"", "function table is 16 bytes"],
        },
        Case {
            category: "plugin",
            input: "model fails to load (`fail-create`)",
            build: |d| {
                encoder_manifest(d, "fail-create");
                fixture_models(d, &["fail-create"]);
            },
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &[
                "run \"enc\" failed: encoder \"stats\": plugin fixture_plugin",
                "create failed",
                "fixture model fail-create never loads",
            ],
        },
        Case {
            category: "plugin",
            input: "encoder panics (`panic`)",
            build: |d| encoder_manifest(d, "panic"),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &[
                "run \"enc\" failed: encoder \"stats\": plugin fixture_plugin",
                "panicked during encode texts",
                "(at plugins/fixture/src/lib.rs:",
            ],
        },
        Case {
            category: "plugin",
            input: "encoder returns NaN (`nan`)",
            build: |d| encoder_manifest(d, "nan"),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &[
                "run \"enc\" failed: encoder \"stats\": plugin fixture_plugin",
                "model \"nan\" returned NaN or infinity (encode texts, input 0",
            ],
        },
        Case {
            category: "plugin",
            input: "encoder describes dim 0 (`dim-zero`)",
            build: |d| encoder_manifest(d, "dim-zero"),
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &[
                "run \"enc\" failed: encoder \"stats\": plugin fixture_plugin",
                "create failed",
                "describes itself with dim 0",
            ],
        },
        Case {
            category: "plugin",
            input: "captioner returns one caption too many (`wrong-count`)",
            build: |d| {
                let text = format!(
                    "{HEAD}\n[captioners.cap]\nplugin = \"fixture_plugin\"\nmodel = \"wrong-count\"\n{}",
                    ENCODER_RUN.replace("MODEL", "ok").replace(
                        "name = \"enc\"\n",
                        "name = \"enc\"\ncaptions = { generate = \"cap\" }\n"
                    )
                );
                manifest(d, &text);
            },
            plugins: Fixture,
            command: Run,
            outcome: RunFails,
            names: &[
                "run \"enc\" failed: captioner \"cap\": plugin fixture_plugin",
                "generate captions failed",
                "generated 7 captions for 6 images",
            ],
        },
    ]
}

/// The plugin folders of the cases, each fixture build made once.
#[derive(Default)]
struct Builds(HashMap<Option<&'static str>, PathBuf>);

impl Builds {
    /// The folder `plugins` names; `Local` is `dir/plugins`.
    fn folder(&mut self, plugins: Plugins, dir: &Path) -> PathBuf {
        match plugins {
            Plugins::Fixture => self.0.entry(None).or_insert_with(fixture_plugin_dir),
            Plugins::Variant(feature) => {
                (self.0.entry(Some(feature))).or_insert_with(|| fixture_variant_dir(feature))
            }
            Plugins::Local => return dir.join("plugins"),
        }
        .clone()
    }
}

fn execute(case: &Case, dir: &Path, plugins: &Path) -> Output {
    let plugins = plugins.to_str().unwrap();
    match case.command {
        Command::Run => embedlab(
            dir,
            &[
                "run",
                "exp.toml",
                "--cache-dir",
                "cache",
                "--plugin-dir",
                plugins,
            ],
        ),
        Command::EmbedImages => embedlab(
            dir,
            &[
                "embed",
                "--plugin",
                "fixture_plugin",
                "--model",
                "ok",
                "--images",
                "img",
                "--out",
                "out.npy",
                "--plugin-dir",
                plugins,
            ],
        ),
    }
}

/// The cache is valid: `embedlab cache verify` finds every entry intact and no half-written
/// file. (A case that stops before the cache is opened leaves no folder.)
fn check_cache_valid(dir: &Path) -> Result<(), String> {
    if !dir.join("cache").exists() {
        return Ok(());
    }
    let out = embedlab(dir, &["cache", "verify", "--cache-dir", "cache"]);
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    if !out.status.success() || !report.contains("all intact") || report.contains("temporary") {
        return Err(format!("cache verify: {report}"));
    }
    Ok(())
}

/// The one line that reports the case, checked against its outcome.
fn message_line(case: &Case, out: &Output, dir: &Path) -> Result<String, String> {
    let err = stderr(out);
    let lines = |pattern: &dyn Fn(&str) -> bool| -> Vec<String> {
        err.lines()
            .filter(|l| pattern(l))
            .map(str::to_string)
            .collect()
    };
    let errors = lines(&|l| l.starts_with("error:"));
    let failures = lines(&|l| l.starts_with("warning: run \"") && l.contains("\" failed: "));
    let found = match case.outcome {
        Outcome::Stops => errors.clone(),
        Outcome::RunFails => failures,
        Outcome::Skips(_) => lines(&|l| l.starts_with("warning:")),
    };
    let code = case.outcome.exit_code();
    if out.status.code() != Some(code) {
        return Err(format!("exit {:?}, expected {code}", out.status.code()));
    }
    if !matches!(case.outcome, Outcome::Stops) && !errors.is_empty() {
        return Err(format!("unexpected error lines {errors:?}"));
    }
    let [line] = found.as_slice() else {
        return Err(format!(
            "expected exactly one message line, found {found:?}"
        ));
    };
    if let Outcome::Skips(n) = case.outcome {
        check_skips(case, dir, n)?;
    }
    Ok(line.clone())
}

/// The skipped images are counted where the command records its output.
fn check_skips(case: &Case, dir: &Path, n: usize) -> Result<(), String> {
    match case.command {
        Command::Run => {
            let path = dir.join("reports/bad/results.json");
            let results: Value = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| format!("no readable {}", path.display()))?;
            let run = &results["runs"][0];
            let skipped = run["skipped_images"].as_array().map_or(0, Vec::len);
            if skipped != n || run["n_samples"] != N - n {
                return Err(format!(
                    "results.json: {skipped} skipped, n_samples {}",
                    run["n_samples"]
                ));
            }
        }
        Command::EmbedImages => {
            let ids =
                std::fs::read_to_string(dir.join("out.ids.txt")).map_err(|e| e.to_string())?;
            if ids.lines().count() != N - n {
                return Err(format!("out.ids.txt holds {} ids", ids.lines().count()));
            }
        }
    }
    Ok(())
}

fn check(case: &Case, builds: &mut Builds) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_base(dir);
    (case.build)(dir);
    let plugins = builds.folder(case.plugins, dir);
    let out = execute(case, dir, &plugins);
    let everything = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let check = || -> Result<String, String> {
        if everything.contains("panicked at") || everything.contains("RUST_BACKTRACE") {
            return Err("a panic was printed".into());
        }
        let line = message_line(case, &out, dir)?;
        let parts: Vec<&str> = line.split(": ").collect();
        if parts.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("the line repeats itself: {line}"));
        }
        if let Some(missing) = case.names.iter().find(|n| !line.contains(*n)) {
            return Err(format!("the line lacks {missing:?}: {line}"));
        }
        check_cache_valid(dir)?;
        Ok(line)
    };
    check().map_err(|e| format!("{e}\n--- stderr:\n{everything}"))
}

#[test]
fn every_bad_input_gets_one_clear_line_and_the_documented_exit() {
    let cases = cases();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let mut builds = Builds::default();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        match check(case, &mut builds) {
            Ok(line) => eprintln!(
                "| {} | {} | {} | {} | `{line}` |",
                i + 1,
                case.category,
                case.input,
                case.outcome.exit_code()
            ),
            Err(e) => failures.push(format!("case {} ({}): {e}", i + 1, case.input)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
