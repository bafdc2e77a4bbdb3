//! End-to-end tests of `backend = "faiss"` (cargo feature `faiss`): real faiss indexes on
//! precomputed vectors, through the binary.
//!
//! - `Flat` is an exhaustive search: on vectors whose dot products are exact in f32 (components
//!   of ±0.5, ties everywhere) it must give exactly the exact backend's neighbours, metrics and
//!   order, so recall 1 and every metric difference 0;
//! - HNSW is approximate: its run reports a recall against the exact neighbours, the exact
//!   metrics (the same stage an exact run of those vectors has) and the differences;
//! - an index string faiss rejects is one located line; a search that finds fewer than k fails
//!   its run, naming the query row.

use std::path::Path;

use serde_json::Value;

mod common;
use common::{Xorshift, embedlab, stderr, write_npy};

const LABEL_SETS: usize = 60;

/// Writes `samples.jsonl` (`n` samples in [`LABEL_SETS`] label sets) and two vector files:
/// `dyadic.npy`, each row four components of ±0.5 in 64 dimensions (three from its label set,
/// one at random), so every row has unit norm and every dot product is a multiple of 1/4, exact
/// in f32 in any summation order; and `noisy.npy`, a label prototype plus uniform noise in 48
/// dimensions.
fn write_data(dir: &Path, n: usize) {
    let mut rng = Xorshift(0x2545_F491_4F6C_DD1D);
    let labels: Vec<usize> = (0..n).map(|i| i % LABEL_SETS).collect();
    let mut jsonl = String::new();
    for (i, l) in labels.iter().enumerate() {
        let names = [format!("a{}", l % 6), format!("b{}", l / 6)];
        let line = serde_json::json!({ "id": format!("s{i}"), "labels": names });
        jsonl.push_str(&format!("{line}\n"));
    }
    std::fs::write(dir.join("samples.jsonl"), jsonl).unwrap();
    let ids: String = (0..n).map(|i| format!("s{i}\n")).collect();

    let dyadic: Vec<Vec<f32>> = labels
        .iter()
        .map(|&l| {
            let mut v = vec![0.0f32; 64];
            for c in 0..3 {
                let sign = if (l >> c) & 1 == 0 { 0.5 } else { -0.5 };
                v[(l * 5 + c * 21) % 64] = sign;
            }
            loop {
                let at = rng.below(64);
                if v[at] == 0.0 {
                    v[at] = if rng.below(2) == 0 { 0.5 } else { -0.5 };
                    break v;
                }
            }
        })
        .collect();
    let prototypes: Vec<Vec<f32>> = (0..LABEL_SETS)
        .map(|_| (0..48).map(|_| rng.unit() as f32 - 0.5).collect())
        .collect();
    let noisy: Vec<Vec<f32>> = labels
        .iter()
        .map(|&l| {
            (prototypes[l].iter())
                .map(|p| p + 0.9 * (rng.unit() as f32 - 0.5))
                .collect()
        })
        .collect();
    for (name, rows) in [("dyadic", &dyadic), ("noisy", &noisy)] {
        write_npy(&dir.join(format!("{name}.npy")), rows);
        std::fs::write(dir.join(format!("{name}.ids.txt")), &ids).unwrap();
    }
}

const MANIFEST: &str = r#"
[experiment]
name = "ann"
seed = 3

[dataset]
format = "jsonl"
path = "samples.jsonl"

[retrieval]
k = 10

[metrics]
cutoffs = [1, 10]
bootstrap = 0
permutations = 0

[[runs]]
name = "dyadic_exact"
parts = [{ precomputed = "dyadic.npy" }]

[[runs]]
name = "dyadic_flat"
parts = [{ precomputed = "dyadic.npy" }]
retrieval = { backend = "faiss", index = "Flat" }

[[runs]]
name = "noisy_exact"
parts = [{ precomputed = "noisy.npy" }]

[[runs]]
name = "noisy_hnsw"
parts = [{ precomputed = "noisy.npy" }]
retrieval = { backend = "faiss", index = "HNSW32" }
"#;

fn setup(manifest: &str, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), n);
    std::fs::write(dir.path().join("exp.toml"), manifest).unwrap();
    dir
}

fn results(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("reports/ann/results.json")).unwrap()).unwrap()
}

fn run<'a>(results: &'a Value, name: &str) -> &'a Value {
    (results["runs"].as_array().unwrap().iter())
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("run {name} present"))
}

/// The neighbour ids and scores of every query, from a run's per-query file.
fn per_query(dir: &Path, run: &str) -> Vec<(Value, Value)> {
    let text =
        std::fs::read_to_string(dir.join(format!("reports/ann/per_query/{run}.jsonl"))).unwrap();
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (v["neighbours"].clone(), v["scores"].clone())
        })
        .collect()
}

#[test]
fn faiss_flat_reproduces_the_exact_search_and_hnsw_reports_recall() {
    let case = setup(MANIFEST, 3000);
    let dir = case.path();
    let out = embedlab(dir, &["run", "exp.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = results(dir);
    assert!(
        r["failed"].as_array().unwrap().is_empty(),
        "{}",
        r["failed"]
    );

    // Flat: the exact backend's lists (ties included), metrics, recall 1, differences 0.
    let (exact, flat) = (run(&r, "dyadic_exact"), run(&r, "dyadic_flat"));
    assert_eq!(exact["retrieval"]["backend"], "exact");
    assert!(exact["retrieval"].get("recall_vs_exact").is_none());
    let info = &flat["retrieval"];
    assert_eq!(info["backend"], "faiss");
    assert_eq!(info["index"], "Flat");
    assert_eq!(info["parameters"], "");
    assert_eq!(info["faiss_version"], "1.12.0");
    assert!(info["threads"].as_u64().unwrap() >= 1);
    assert!(info["seconds"].as_f64().unwrap() > 0.0 && info["build_s"].as_f64().is_some());
    assert_eq!(info["recall_vs_exact"], 1.0);
    assert_eq!(flat["metrics"], exact["metrics"]);
    assert_eq!(info["exact_metrics"], exact["metrics"]);
    let differences = info["metric_differences"].as_object().unwrap();
    assert_eq!(differences.len(), 16, "8 metrics at 2 cutoffs");
    assert!(differences.values().all(|d| d == 0.0), "{differences:?}");
    assert_eq!(
        per_query(dir, "dyadic_flat"),
        per_query(dir, "dyadic_exact")
    );

    // HNSW: approximate; compared with the exact run of the same vectors.
    let (exact, hnsw) = (run(&r, "noisy_exact"), run(&r, "noisy_hnsw"));
    let info = &hnsw["retrieval"];
    assert_eq!(info["backend"], "faiss");
    assert_eq!(info["index"], "HNSW32");
    let recall = info["recall_vs_exact"].as_f64().unwrap();
    assert!(recall > 0.8 && recall <= 1.0, "HNSW32 recall {recall}");
    assert_eq!(info["exact_metrics"], exact["metrics"]);
    for (key, difference) in info["metric_differences"].as_object().unwrap() {
        let want = hnsw["metrics"][key].as_f64().unwrap() - exact["metrics"][key].as_f64().unwrap();
        assert_eq!(difference.as_f64().unwrap(), want, "{key}");
    }
    let stages: Vec<&str> = (hnsw["stages"].as_array().unwrap().iter())
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert!(stages.contains(&"knn exact (comparison)"), "{stages:?}");
    assert!(
        (r["provenance"]["backend"].as_str().unwrap())
            .contains("exact (blocked f32 GEMM); faiss 1.12.0 (Flat, HNSW32)"),
        "{}",
        r["provenance"]["backend"]
    );

    // The report's table, in both forms.
    let md = std::fs::read_to_string(dir.join("reports/ann/report.md")).unwrap();
    assert!(md.contains("### Approximate search"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| noisy_hnsw | HNSW32 | defaults |"));
    assert!(
        row.is_some_and(|l| l.contains(&format!("{recall:.4}"))),
        "{md}"
    );
    assert!(
        md.contains("| dyadic_flat | Flat | defaults | 1.0000 |"),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.join("reports/ann/report.html")).unwrap();
    assert!(html.contains("<h3>Approximate search</h3>"));

    // The faiss stages have their own keys; the exact stage of the noisy vectors appears once,
    // shared by the exact run and the comparison; a rerun computes nothing.
    let plan = embedlab(dir, &["plan", "exp.toml"]);
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    let knn_lines: Vec<&str> = plan.lines().filter(|l| l.contains(" knn ")).collect();
    assert_eq!(knn_lines.len(), 4, "{plan}");
    assert!(knn_lines.iter().all(|l| l.contains("cached")), "{plan}");
    assert_eq!(
        knn_lines
            .iter()
            .filter(|l| l.contains("faiss Flat k=10"))
            .count(),
        1
    );
    assert_eq!(
        knn_lines
            .iter()
            .filter(|l| l.contains("faiss HNSW32 k=10"))
            .count(),
        1
    );
    let again = embedlab(dir, &["run", "exp.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let r2 = results(dir);
    for run in r2["runs"].as_array().unwrap() {
        assert_eq!(run["cache"]["misses"], 0, "{}", run["name"]);
    }
    assert_eq!(
        run(&r2, "noisy_hnsw")["retrieval"]["recall_vs_exact"],
        recall,
        "the cached search is the same search"
    );
}

#[test]
fn faiss_as_the_experiment_backend_through_set_flags() {
    let manifest = MANIFEST
        .split("[[runs]]")
        .take(2)
        .collect::<Vec<_>>()
        .join("[[runs]]");
    let case = setup(&manifest, 600);
    let dir = case.path();
    let sets = [
        "--set",
        "retrieval.backend=\"faiss\"",
        "--set",
        "retrieval.index=\"Flat\"",
    ];
    let out = embedlab(dir, &[&["run", "exp.toml"][..], &sets].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let r = results(dir);
    let info = &run(&r, "dyadic_exact")["retrieval"];
    assert_eq!(info["backend"], "faiss");
    assert_eq!(info["index"], "Flat");
    assert_eq!(info["recall_vs_exact"], 1.0);
    let differences = info["metric_differences"].as_object().unwrap();
    assert!(differences.values().all(|d| d == 0.0), "{differences:?}");

    // Without the comparison, no exact search runs at all.
    let out = embedlab(
        dir,
        &[
            &["run", "exp.toml"][..],
            &sets,
            &["--set", "retrieval.compare_exact=false"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = results(dir);
    let info = &run(&r, "dyadic_exact")["retrieval"];
    assert!(info.get("recall_vs_exact").is_none() && info.get("exact_metrics").is_none());
    assert_eq!(r["provenance"]["backend"], "faiss 1.12.0 (Flat)");
}

#[test]
fn faiss_refusals_are_one_located_line_and_short_lists_fail_their_run() {
    let bad = MANIFEST.replace("index = \"HNSW32\"", "index = \"HNSW3x\"");
    let case = setup(&bad, 100);
    let out = embedlab(case.path(), &["-q", "run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("exp.toml:34:42: runs[3].retrieval.index: faiss index \"HNSW3x\": ")
            && err.contains("could not parse"),
        "{err}"
    );

    // 256 inverted lists over 600 rows, one probed: most queries see two or three rows.
    let short = MANIFEST.replace(
        "index = \"HNSW32\"",
        "index = \"IVF256,Flat\", parameters = \"nprobe=1\"",
    );
    let case = setup(&short, 600);
    let out = embedlab(case.path(), &["-q", "run", "exp.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = results(case.path());
    let failed = &r["failed"][0];
    assert_eq!(failed["name"], "noisy_hnsw");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("faiss index \"IVF256,Flat\" found only")
            && error.contains("of the k = 10 neighbours of query row")
            && error.contains("nprobe"),
        "{error}"
    );
    assert_eq!(
        r["runs"].as_array().unwrap().len(),
        3,
        "the other runs report"
    );
}
