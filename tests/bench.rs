//! `embedlab bench`: the figures it hands to the Python peers must be right, or the ratios in
//! bench/RESULTS.md compare different work. These check the saved inputs and outputs against
//! independent computations (brute force in f64, the metric definitions).

use std::path::Path;

use serde_json::Value;

mod common;
use common::{definition_metrics, embedlab, read_u32_npy, stderr};

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn knn_saves_vectors_and_the_exact_neighbours_of_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = embedlab(
        dir.path(),
        &[
            "bench", "knn", "--n", "300", "--dim", "16", "--k", "5", "--repeat", "2", "--sgemm",
            "64", "--save", "saved", "--json", "knn.json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let figures = json(&dir.path().join("knn.json"));
    let case = &figures["cases"][0];
    assert_eq!(
        (case["n"].as_u64(), case["dim"].as_u64()),
        (Some(300), Some(16))
    );
    assert_eq!(case["seconds"].as_array().unwrap().len(), 2);
    let median = case["median"].as_f64().unwrap();
    let gflops = 2.0 * 300f64.powi(2) * 16.0 / median / 1e9;
    assert!((case["gflops"].as_f64().unwrap() - gflops).abs() < 1e-9 * gflops.max(1.0));
    assert!(figures["sgemm"]["all_threads_gflops"].as_f64().unwrap() > 0.0);

    let vectors =
        embedlab::embed::npy::read_f32(&dir.path().join("saved/vectors-300-16.npy")).unwrap();
    let (indices, n, k) = read_u32_npy(&dir.path().join("saved/neighbours-300-16.npy"));
    assert_eq!((vectors.n, vectors.dim, n, k), (300, 16, 300, 5));
    for q in 0..n {
        let dot = |j: usize| -> f64 {
            let (a, b) = (vectors.row(q), vectors.row(j));
            a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
        };
        let mut others: Vec<(f64, usize)> =
            (0..n).filter(|&j| j != q).map(|j| (dot(j), j)).collect();
        others.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let saved = &indices[q * k..(q + 1) * k];
        for (rank, &row) in saved.iter().enumerate() {
            // Random vectors: scores this close are not expected, but allow rounding-level ties.
            assert!(
                (dot(row as usize) - others[rank].0).abs() < 1e-6,
                "query {q} rank {rank}: row {row}, expected {}",
                others[rank].1
            );
        }
    }
}

#[test]
fn metrics_values_follow_the_definitions_on_the_saved_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = embedlab(
        dir.path(),
        &[
            "bench",
            "metrics",
            "--n",
            "3000",
            "--k",
            "10",
            "--label-sets",
            "200",
            "--repeat",
            "1",
            "--save",
            "saved",
            "--json",
            "metrics.json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let figures = json(&dir.path().join("metrics.json"));
    let (indices, n, k) = read_u32_npy(&dir.path().join("saved/metrics-neighbours.npy"));
    let (labels, rows, one) = read_u32_npy(&dir.path().join("saved/metrics-labels.npy"));
    assert_eq!((n, k, rows, one), (3000, 10, 3000, 1));
    let neighbours: Vec<Vec<usize>> = indices
        .chunks_exact(k)
        .map(|list| list.iter().map(|&j| j as usize).collect())
        .collect();
    for (q, list) in neighbours.iter().enumerate() {
        assert!(!list.contains(&q), "query {q} lists itself");
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), k, "query {q} lists a row twice");
    }
    let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let expected = definition_metrics(&neighbours, &labels, k);
    let values = figures["values"].as_object().unwrap();
    assert_eq!(values.len(), 8);
    for (key, want) in &expected {
        let got = values[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{key}: {got} vs {want}");
    }
    // Hits are neither absent nor certain, so every metric is exercised.
    let precision = expected["precision@10"];
    assert!(precision > 0.1 && precision < 0.9, "precision {precision}");
}

#[test]
fn encode_names_an_unavailable_model_in_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("texts.txt"), "a cat\n").unwrap();
    let plugins = common::fixture_plugin_dir();
    let out = embedlab(
        dir.path(),
        &[
            "--plugin-dir",
            plugins.to_str().unwrap(),
            "bench",
            "encode",
            "--plugin",
            "fixture_plugin",
            "--model",
            "no/such-model",
            "--texts",
            "texts.txt",
        ],
    );
    assert!(!out.status.success());
    let message = stderr(&out);
    let errors: Vec<&str> = message
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{message}");
    assert!(errors[0].contains("model no/such-model"), "{message}");
}
