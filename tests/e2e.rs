//! End-to-end tests of the `embedlab` binary: real files in, results.json and reports out.
//!
//! The expected metrics are computed here independently, in f64 from DESIGN.md's definitions
//! (brute-force neighbours, no shared code with the engine), and must match to 1e-5.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{Xorshift, embedlab, stderr, write_npy};

struct Case {
    dir: tempfile::TempDir,
    labels: Vec<usize>,
    text: Vec<Vec<f32>>,
    image: Vec<Vec<f32>>,
}

/// 300 samples in 25 label sets; the vectors are label prototypes plus noise. The last 20 samples
/// copy the vectors of the first 20 under another label set, so exact ties occur and the tie rule
/// (smaller row first) decides hits. The vectors files list the samples in reverse order, so
/// matching by id is exercised too.
fn generated_case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let n = 300;
    let mut labels: Vec<usize> = (0..n)
        .map(|i| {
            if i < 50 {
                i % 25
            } else {
                (rng.next() % 25) as usize
            }
        })
        .collect();
    let vector = |rng: &mut Xorshift, label: usize, dim: usize, noise: f64| -> Vec<f32> {
        (0..dim)
            .map(|j| {
                let prototype = if (label * 7 + j * 3).is_multiple_of(5) {
                    1.0
                } else {
                    0.0
                };
                (prototype + noise * (rng.unit() - 0.5)) as f32
            })
            .collect()
    };
    let mut text: Vec<Vec<f32>> = labels
        .iter()
        .map(|&l| vector(&mut rng, l, 16, 1.6))
        .collect();
    let mut image: Vec<Vec<f32>> = labels
        .iter()
        .map(|&l| vector(&mut rng, l, 8, 2.4))
        .collect();
    for i in 0..20 {
        text[n - 20 + i] = text[i].clone();
        image[n - 20 + i] = image[i].clone();
        labels[n - 20 + i] = (labels[i] + 1) % 25;
    }
    let mut jsonl = String::new();
    for (i, l) in labels.iter().enumerate() {
        let names = [format!("obj{}", l % 5), format!("thing{}", l / 5)];
        jsonl.push_str(&serde_json::json!({ "id": format!("s{i}"), "labels": names, "captions": ["a caption"] }).to_string());
        jsonl.push('\n');
    }
    std::fs::write(dir.path().join("samples.jsonl"), jsonl).unwrap();
    for (name, rows) in [("text", &text), ("image", &image)] {
        let reversed: Vec<Vec<f32>> = rows.iter().rev().cloned().collect();
        write_npy(&dir.path().join(format!("{name}.npy")), &reversed);
        let ids: String = (0..n).rev().map(|i| format!("s{i}\n")).collect();
        std::fs::write(dir.path().join(format!("{name}.ids.txt")), ids).unwrap();
    }
    std::fs::write(dir.path().join("exp.toml"), MANIFEST).unwrap();
    Case {
        dir,
        labels,
        text,
        image,
    }
}

const MANIFEST: &str = r#"
[experiment]
name = "e2e"
seed = 1

[dataset]
format = "jsonl"
name = "<b>generated</b>"
path = "samples.jsonl"

[retrieval]
k = 10

[metrics]
cutoffs = [3, 10]

[[runs]]
name = "text"
parts = [{ precomputed = "text.npy" }]

[[runs]]
name = "text+image"
parts = [{ precomputed = "text.npy" }, { precomputed = "image.npy", weight = 0.5 }]
"#;

fn normalized(v: &[f64]) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn fused(parts: &[(&[f32], f64)]) -> Vec<f64> {
    let mut out = Vec::new();
    for (v, w) in parts {
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        out.extend(normalized(&v).iter().map(|x| x * w));
    }
    normalized(&out)
}

/// Metric means at cutoff `k` of an exact search by f64 cosine, ties to the smaller row.
fn reference_metrics(vectors: &[Vec<f64>], labels: &[usize], k: usize) -> HashMap<String, f64> {
    let n = vectors.len();
    let neighbours: Vec<Vec<usize>> = (0..n)
        .map(|q| {
            let mut others: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != q)
                .map(|j| {
                    (
                        vectors[q].iter().zip(&vectors[j]).map(|(a, b)| a * b).sum(),
                        j,
                    )
                })
                .collect();
            others.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
            others[..k].iter().map(|&(_, j)| j).collect()
        })
        .collect();
    common::definition_metrics(&neighbours, labels, k)
}

fn run_named<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .expect("run present")
}

fn assert_metrics_match(run: &Value, expected: &HashMap<String, f64>) {
    for (key, want) in expected {
        let got = run["metrics"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(
            (got - want).abs() < 1e-5,
            "{} {key}: got {got}, want {want}",
            run["name"]
        );
    }
}

fn results(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("reports/e2e/results.json")).unwrap()).unwrap()
}

#[test]
fn run_matches_an_independent_implementation_and_reruns_from_cache() {
    let case = generated_case();
    let dir = case.dir.path();
    let out = embedlab(dir, &["run", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let r = results(dir);
    // Label ids in the JSONL are pairs (obj, thing) derived from the same label number.
    let text: Vec<Vec<f64>> = case.text.iter().map(|v| fused(&[(v, 1.0)])).collect();
    let both: Vec<Vec<f64>> = case
        .text
        .iter()
        .zip(&case.image)
        .map(|(t, i)| fused(&[(t, 1.0), (i, 0.5)]))
        .collect();
    for k in [3, 10] {
        assert_metrics_match(
            run_named(&r, "text"),
            &reference_metrics(&text, &case.labels, k),
        );
        assert_metrics_match(
            run_named(&r, "text+image"),
            &reference_metrics(&both, &case.labels, k),
        );
    }
    let fused_run = run_named(&r, "text+image");
    assert_eq!(fused_run["n_samples"], 300);
    assert_eq!(fused_run["k"], 10);
    assert_eq!(fused_run["encoders"].as_array().unwrap().len(), 2);
    assert_eq!(fused_run["encoders"][1]["dim"], 8);
    assert!(
        fused_run["encoders"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );
    assert!(fused_run["cache"]["misses"].as_u64().unwrap() > 0);
    for key in ["embed_s", "knn_s", "items_per_s", "peak_rss_mb"] {
        assert!(fused_run["timing"][key].is_number(), "timing.{key}");
    }

    let html = std::fs::read_to_string(dir.join("reports/e2e/report.html")).unwrap();
    assert!(
        html.contains("&lt;b&gt;generated&lt;"),
        "dataset name escaped"
    );
    assert!(!html.contains("<b>generated</b>"));
    let md = std::fs::read_to_string(dir.join("reports/e2e/report.md")).unwrap();
    assert!(md.contains("| text+image |") || md.contains("| **text+image** |"));
    let per_query = std::fs::read_to_string(dir.join("reports/e2e/per_query/text.jsonl")).unwrap();
    let first: Value = serde_json::from_str(per_query.lines().next().unwrap()).unwrap();
    assert_eq!(first["query"], "s0");
    assert_eq!(first["neighbours"].as_array().unwrap().len(), 10);

    let again = embedlab(dir, &["run", "exp.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let r2 = results(dir);
    for run in r2["runs"].as_array().unwrap() {
        assert_eq!(
            run["cache"]["misses"], 0,
            "{} recomputed something",
            run["name"]
        );
        assert_eq!(run["cache"]["hits"], 3);
    }
    assert_eq!(r["runs"][0]["metrics"], r2["runs"][0]["metrics"]);
    let plan = embedlab(dir, &["plan", "exp.toml"]);
    let listing = String::from_utf8_lossy(&plan.stdout);
    assert!(!listing.contains("missing"), "{listing}");
    assert_eq!(
        listing.matches("text.npy").count(),
        1,
        "a shared stage appears once:\n{listing}"
    );
}

#[test]
fn set_flags_change_the_run_and_its_cache_keys() {
    let case = generated_case();
    let dir = case.dir.path();
    let out = embedlab(
        dir,
        &[
            "run",
            "exp.toml",
            "--set",
            "retrieval.k=5",
            "--set",
            "metrics.cutoffs=[5]",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = results(dir);
    assert!(r["runs"][0]["metrics"]["mrr@5"].is_number());
    assert_eq!(r["runs"][0]["cache"]["hits"], 0);
}

fn write_case(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn failure(files: &[(&str, &str)]) -> String {
    let dir = write_case(files);
    let out = embedlab(dir.path(), &["-q", "run", "exp.toml"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected a fatal error; stderr: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn bad_manifests_fail_with_one_located_line() {
    let typo = MANIFEST.replace("[retrieval]\nk = 10", "[retrieval]\nkay = 10");
    let err = failure(&[("exp.toml", &typo)]);
    assert!(err.contains("exp.toml:12:1: unknown field `kay`"), "{err}");
    let err = failure(&[("exp.toml", &MANIFEST.replace("k = 10", "k = \"ten\""))]);
    assert!(err.contains("exp.toml:12:5"), "{err}");
    let err = failure(&[("exp.toml", "[experiment\nname = 1")]);
    assert!(err.contains("exp.toml:1:"), "{err}");
}

#[test]
fn bad_datasets_name_the_file_and_line() {
    let manifest = MANIFEST.replace("text+image", "x");
    let err = failure(&[
        ("exp.toml", &manifest),
        (
            "samples.jsonl",
            "{\"id\": \"a\", \"labels\": [\"x\"]}\n{\"id\": \"a\", \"labels\": [\"x\"]}\n",
        ),
    ]);
    assert!(err.contains("samples.jsonl:2"), "{err}");
    assert!(err.contains("\"a\"") || err.contains(" a"), "{err}");
    let err = failure(&[
        ("exp.toml", &manifest),
        ("samples.jsonl", "{\"id\": \"a\", \"labels\": [\"x\"]\n"),
    ]);
    assert!(err.contains("samples.jsonl:1"), "{err}");
    let err = failure(&[("exp.toml", &manifest)]);
    assert!(err.contains("samples.jsonl"), "{err}");
}

#[test]
fn a_run_with_missing_vectors_fails_alone() {
    let case = generated_case();
    let dir = case.dir.path();
    let manifest = format!(
        "{MANIFEST}\n[[runs]]\nname = \"ghost\"\nparts = [{{ precomputed = \"ghost.npy\" }}]\n"
    );
    std::fs::write(dir.join("exp.toml"), manifest).unwrap();
    let out = embedlab(dir, &["run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = results(dir);
    assert_eq!(r["runs"].as_array().unwrap().len(), 2);
    assert_eq!(r["failed"][0]["name"], "ghost");
    assert!(
        r["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ghost.npy")
    );
}

#[test]
fn the_coco_sample_runs_when_shared_data_is_present() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/coco-sample/annotations");
    if !root.exists() {
        eprintln!("skipped: {} is absent (shared test data)", root.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[experiment]\nname = \"coco\"\n[dataset]\nformat = \"coco\"\ncaptions = [\"{0}/captions.json\"]\ninstances = [\"{0}/instances.json\"]\n[[runs]]\nname = \"r\"\nparts = [{{ precomputed = \"v.npy\" }}]\n",
        root.display()
    );
    std::fs::write(dir.path().join("exp.toml"), manifest).unwrap();
    let captions = embedlab(dir.path(), &["captions", "exp.toml", "--source", "first"]);
    assert!(captions.status.success(), "{}", stderr(&captions));
    let lines: Vec<Value> = String::from_utf8_lossy(&captions.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 255 images have instances; 60 of them share their label set with another image.
    assert_eq!(lines.len(), 60);
    // Vectors: one-hot of the row's label set, so every neighbour list is perfect where R ≥ 1.
    let ids: Vec<String> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    write_spread_vectors(dir.path(), &ids);
    let out = embedlab(dir.path(), &["run", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("reports/coco/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r["runs"][0]["n_samples"], 60);
}

/// The shared COCO sample converted to the official Open Images V7 formats by
/// `experiments/oiv7/make_sample.py` must load exactly as the coco format loads the originals:
/// same samples, same order, same captions (narratives), same label sets.
#[test]
#[cfg(feature = "oiv7")]
fn the_coco_sample_as_oiv7_matches_the_coco_format() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let coco = workspace.join("../shared/data/coco-sample");
    if !coco.join("annotations").exists() {
        eprintln!("skipped: {} is absent (shared test data)", coco.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample");
    let converted = std::process::Command::new("python3")
        .arg(workspace.join("experiments/oiv7/make_sample.py"))
        .arg("--coco")
        .arg(&coco)
        .arg("--out")
        .arg(&sample)
        .output();
    match converted {
        Ok(out) => assert!(out.status.success(), "{}", stderr(&out)),
        Err(err) => {
            eprintln!("skipped: python3 cannot run ({err})");
            return;
        }
    }
    let runs = "[[runs]]\nname = \"r\"\nparts = [{ precomputed = \"v.npy\" }]\n";
    let oiv7 = format!(
        "[experiment]\nname = \"oi\"\n[dataset]\nformat = \"oiv7\"\nlabels = \"{0}/sample-annotations-human-imagelabels.csv\"\nclasses = \"{0}/oidv7-class-descriptions.csv\"\nnarratives = [\"{0}/sample_localized_narratives.jsonl\"]\nimages = \"{1}/images\"\n{runs}",
        sample.display(),
        coco.display()
    );
    let coco_manifest = format!(
        "[experiment]\nname = \"coco\"\n[dataset]\nformat = \"coco\"\ncaptions = [\"{0}/annotations/captions.json\"]\ninstances = [\"{0}/annotations/instances.json\"]\n{runs}",
        coco.display()
    );
    std::fs::write(dir.path().join("oi.toml"), oiv7).unwrap();
    std::fs::write(dir.path().join("coco.toml"), coco_manifest).unwrap();
    // (id, text) per sample; COCO ids are the integers the file stems (the ImageIDs) spell.
    let texts = |manifest: &str| -> Vec<(String, String)> {
        let out = embedlab(dir.path(), &["captions", manifest, "--source", "concat"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["text"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let from_oiv7 = texts("oi.toml");
    let from_coco = texts("coco.toml");
    assert_eq!(from_oiv7.len(), 60);
    assert_eq!(from_oiv7.len(), from_coco.len());
    for ((oi_id, oi_text), (coco_id, coco_text)) in from_oiv7.iter().zip(&from_coco) {
        assert_eq!(oi_id.trim_start_matches('0'), coco_id);
        assert!(oi_text == coco_text, "sample {oi_id}: captions differ");
    }
    let ids: Vec<String> = from_oiv7.into_iter().map(|(id, _)| id).collect();

    write_spread_vectors(dir.path(), &ids);
    let out = embedlab(dir.path(), &["run", "oi.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("reports/oi/results.json")).unwrap())
            .unwrap();
    assert_eq!(r["runs"][0]["n_samples"], 60);
    let dataset = &r["provenance"]["dataset"];
    assert_eq!(dataset["format"], "oiv7");
    // 3 files: labels, classes, narratives; the 3 COCO images without instances are unlabelled.
    assert_eq!(dataset["files"].as_array().unwrap().len(), 3);
    assert_eq!(dataset["stats"]["dropped_unlabelled"], 3);
    assert_eq!(dataset["stats"]["loaded"], 258);
}

/// `v.npy` + `v.ids.txt` in `dir`: one 64-d row per id, each nearly one-hot at a different column.
fn write_spread_vectors(dir: &Path, ids: &[String]) {
    let rows: Vec<Vec<f32>> = (0..ids.len())
        .map(|i| {
            (0..64)
                .map(|j| ((i * 31 + j) % 64 == 0) as u8 as f32 + 0.01)
                .collect()
        })
        .collect();
    write_npy(&dir.join("v.npy"), &rows);
    std::fs::write(dir.join("v.ids.txt"), ids.join("\n") + "\n").unwrap();
}
