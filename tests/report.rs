//! Reports end to end through the binary: merged reports, reference checks, `embedlab score`,
//! article-compatible scoring, and the HTML in a real headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{embedlab, stderr};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The synthetic experiment (precomputed vectors, in the repository) copied into a temporary
/// folder, with `extra` appended to its manifest and its experiment renamed to `name`.
fn synthetic(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let source = repo().join("experiments");
    std::fs::create_dir_all(dir.join("synthetic")).unwrap();
    for entry in std::fs::read_dir(source.join("synthetic")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join("synthetic").join(path.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(source.join("synthetic.toml"))
        .unwrap()
        .replace("name = \"synthetic\"", &format!("name = \"{name}\""));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{manifest}\n{extra}")).unwrap();
    path
}

fn run(dir: &Path, manifest: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", manifest.to_str().unwrap(), "--out", "reports"];
    args.extend_from_slice(extra);
    embedlab(dir, &args)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn results_carry_intervals_families_stages_and_pair_tests() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = synthetic(dir.path(), "synthetic", "");
    let out = run(dir.path(), &manifest, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = json(&dir.path().join("reports/synthetic/results.json"));
    let runs = results["runs"].as_array().unwrap();
    for run in runs {
        let mrr = run["metrics"]["mrr@10"].as_f64().unwrap();
        let [lo, hi] = [0, 1].map(|i| run["intervals"]["mrr@10"][i].as_f64().unwrap());
        assert!(lo <= mrr && mrr <= hi && lo < hi, "{lo} ≤ {mrr} ≤ {hi}");
        assert_eq!(run["family"], "other", "precomputed parts have no family");
        let stages: Vec<&str> = run["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stage"].as_str().unwrap())
            .collect();
        assert_eq!(stages, ["fuse", "knn", "metrics"]);
        assert!(run["label_sets"].as_array().unwrap().len() <= 8);
    }
    // Five runs: ten pairs on mrr@10.
    let pairs = results["significance"]["pairs"].as_array().unwrap();
    assert_eq!((runs.len(), pairs.len()), (5, 10));
    assert_eq!(results["provenance"]["statistics"]["bootstrap"], 1000);
    // Rerunning from the cache reproduces every figure but the timings.
    let again = run(dir.path(), &manifest, &[]);
    assert!(again.status.success());
    let rerun = json(&dir.path().join("reports/synthetic/results.json"));
    assert_eq!(rerun["significance"], results["significance"]);
    for (a, b) in runs.iter().zip(rerun["runs"].as_array().unwrap()) {
        assert_eq!(a["intervals"], b["intervals"]);
    }
}

#[test]
fn article_compatible_scores_differ_only_in_order_dependent_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = synthetic(dir.path(), "synthetic", "");
    let out = run(
        dir.path(),
        &manifest,
        &["--set", "metrics.article_compatible=true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let results = json(&dir.path().join("reports/synthetic/results.json"));
    let mut some_differ = false;
    for run in results["runs"].as_array().unwrap() {
        let (exact, article) = (&run["metrics"], &run["article_compatible"]);
        for key in ["precision@10", "hit_rate@10", "precision@5"] {
            let (a, b) = (exact[key].as_f64().unwrap(), article[key].as_f64().unwrap());
            assert!((a - b).abs() < 1e-12, "{key}: {a} vs {b}");
        }
        some_differ |= exact["mrr@10"] != article["mrr@10"];
    }
    assert!(some_differ, "the scramble changes MRR somewhere");
    let report = std::fs::read_to_string(dir.path().join("reports/synthetic/report.md")).unwrap();
    assert!(report.contains("### Article-compatible scoring"));
}

#[test]
fn references_are_reported_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    // First learn the words run's MRR, then declare one reference it meets and one it misses.
    let probe = synthetic(dir.path(), "probe", "");
    assert!(run(dir.path(), &probe, &[]).status.success());
    let mrr = json(&dir.path().join("reports/probe/results.json"))["runs"][0]["metrics"]["mrr@10"]
        .as_f64()
        .unwrap();
    let references = format!(
        "[[reference]]\nrun = \"words\"\nmetric = \"mrr@10\"\nvalue = {:.6}\nsource = \"Table 1\"\n\n\
         [[reference]]\nrun = \"trigrams\"\nmetric = \"hit_rate@10\"\nvalue = 0.01\ntolerance = 0.005\nsource = \"Table <2>\"\n",
        mrr + 0.0004
    );
    let manifest = synthetic(dir.path(), "checked", &references);
    let plain = run(dir.path(), &manifest, &[]);
    assert!(
        plain.status.success(),
        "without --check a miss is reported, not fatal"
    );
    let checked = run(dir.path(), &manifest, &["--check"]);
    assert_eq!(checked.status.code(), Some(3), "{}", stderr(&checked));
    let err = stderr(&checked);
    assert!(
        err.contains("reference trigrams hit_rate@10 (exact)"),
        "{err}"
    );
    assert!(!err.contains("reference words"), "{err}");
    let results = json(&dir.path().join("reports/checked/results.json"));
    let refs = results["references"].as_array().unwrap();
    assert_eq!(refs[0]["within"], true);
    assert!((refs[0]["difference"].as_f64().unwrap() + 0.0004).abs() < 1e-6);
    assert_eq!(refs[1]["within"], false);
    let html = std::fs::read_to_string(dir.path().join("reports/checked/report.html")).unwrap();
    assert!(html.contains("Table &lt;2&gt;"), "sources are escaped");
    // A reference to a run that does not exist is a located manifest error.
    let typo = synthetic(
        dir.path(),
        "typo",
        "[[reference]]\nrun = \"word\"\nmetric = \"mrr@10\"\nvalue = 0.5\n",
    );
    let out = run(dir.path(), &typo, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("typo.toml:")
            && err.contains("no run is named \"word\"; did you mean \"words\"?"),
        "{err}"
    );
}

#[test]
fn merged_reports_compare_runs_across_experiments() {
    let dir = tempfile::tempdir().unwrap();
    let a = synthetic(dir.path(), "first", "");
    let b = synthetic(
        dir.path(),
        "second",
        "[[runs]]\nname = \"words_raw\"\nnormalize_parts = false\nparts = [{ precomputed = \"synthetic/words.npy\", weight = 2.0 }]\n",
    );
    assert!(run(dir.path(), &a, &[]).status.success());
    assert!(run(dir.path(), &b, &[]).status.success());
    let out = embedlab(
        dir.path(),
        &[
            "report",
            "reports/first",
            "reports/second",
            "--out",
            "reports/both",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let comparison = json(&dir.path().join("reports/both/comparison.json"));
    // One dataset: 5 + 6 runs, all pairs tested on mrr@10.
    let pairs = comparison["significance"][0]["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 11 * 10 / 2);
    // The same run in both experiments has identical per-query scores: no difference at all.
    let same = pairs
        .iter()
        .find(|p| p["a"] == "words · first" && p["b"] == "words · second")
        .unwrap();
    assert_eq!(
        (same["difference"].as_f64(), same["p_value"].as_f64()),
        (Some(0.0), Some(1.0))
    );
    let report = std::fs::read_to_string(dir.path().join("reports/both/report.md")).unwrap();
    assert!(report.starts_with("# first + second"));
    assert!(report.contains("| words_raw · second |"));
    assert!(
        report.contains("(../first/report.md)"),
        "links to each experiment's report"
    );
    for chart in ["mrr", "throughput", "label-sets"] {
        let found = std::fs::read_dir(dir.path().join("reports/both/charts"))
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{chart}.svg"))
            });
        assert!(found, "chart {chart}");
    }
    // A folder without results.json is a one-line error naming it.
    let out = embedlab(dir.path(), &["report", "reports/first", "synthetic"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("synthetic/results.json"),
        "{}",
        stderr(&out)
    );
}

fn article_compat_dir() -> Option<PathBuf> {
    let dir = repo().join("../shared/data/article-compat");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

#[test]
fn score_reproduces_the_study_scorer_from_a_hit_matrix() {
    let Some(fixtures) = article_compat_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for n in [50, 1000] {
        let hits = fixtures.join(format!("hits_{n}.txt"));
        let expected = json(&fixtures.join(format!("expected_{n}.json")));
        let out = embedlab(
            dir.path(),
            &[
                "score",
                "--hits",
                hits.to_str().unwrap(),
                "--article-compatible",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        for (key, want) in expected["article_compatible"].as_object().unwrap() {
            let (g, w) = (got[key].as_f64().unwrap(), want.as_f64().unwrap());
            assert!((g - w).abs() < 1e-6, "N={n} {key}: {g} vs {w}");
        }
        // Without the flag: the exact metrics of the same flags; precision does not change.
        let exact = embedlab(dir.path(), &["score", "--hits", hits.to_str().unwrap()]);
        let exact: Value = serde_json::from_slice(&exact.stdout).unwrap();
        assert_eq!(exact["precision@10"], got["precision@10"]);
    }
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "0101\n0110\n011\n").unwrap();
    let out = embedlab(dir.path(), &["score", "--hits", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.txt:") && err.contains("line 3"), "{err}");
}

/// Chromium, when installed (Debian's `chromium` package).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| {
            std::env::var_os("PATH")
                .map(|paths| {
                    std::env::split_paths(&paths)
                        .map(|p| p.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipping: no chromium on PATH (Debian: apt-get install chromium)");
    }
    found
}

/// Loads `page` in headless Chromium: its DOM after load and the console messages it logged.
fn load(chromium: &Path, page: &Path, screenshot: Option<&Path>) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]);
    command.arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(png) => command.args([
            format!("--screenshot={}", png.display()),
            "--window-size=1440,2600".into(),
        ]),
        None => command.args(["--dump-dom"]),
    };
    let out = command
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .expect("chromium starts");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    let console = stderr(&out)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

#[test]
fn html_reports_render_in_headless_chromium_without_console_errors() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The console check can fail: a page breaking the report's content policy is caught.
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"><img src=\"http://example.invalid/x.png\">",
    )
    .unwrap();
    assert!(!load(&chromium, &broken, None).1.is_empty());

    let a = synthetic(dir.path(), "first", "");
    let b = synthetic(dir.path(), "second", "");
    assert!(
        run(
            dir.path(),
            &a,
            &["--set", "metrics.article_compatible=true"]
        )
        .status
        .success()
    );
    assert!(run(dir.path(), &b, &[]).status.success());
    assert!(
        embedlab(
            dir.path(),
            &[
                "report",
                "reports/first",
                "reports/second",
                "--out",
                "reports/both"
            ]
        )
        .status
        .success()
    );
    for page in ["reports/first/report.html", "reports/both/report.html"] {
        let (dom, console) = load(&chromium, &dir.path().join(page), None);
        assert!(console.is_empty(), "{page}: console messages {console:#?}");
        for part in [
            "<table class=\"results\">",
            "<table class=\"family\">",
            "<table class=\"significance\">",
            "<table class=\"resources\">",
        ] {
            assert!(dom.contains(part), "{page}: no {part}");
        }
        assert_eq!(
            dom.matches("<figure class=\"chart\"><svg").count(),
            3,
            "{page}: charts"
        );
    }
    let (dom, _) = load(
        &chromium,
        &dir.path().join("reports/first/report.html"),
        None,
    );
    assert!(dom.contains("<table class=\"article\">"));

    // The committed merged report renders too; its screenshot is what the README shows
    // (EMBEDLAB_UPDATE_SCREENSHOT=1 rewrites the committed one).
    let committed = repo().join("reports/merged/report.html");
    if committed.is_file() {
        let (_, console) = load(&chromium, &committed, None);
        assert!(console.is_empty(), "committed report: {console:#?}");
        let png = match std::env::var_os("EMBEDLAB_UPDATE_SCREENSHOT") {
            Some(_) => repo().join("reports/merged/screenshot.png"),
            None => dir.path().join("screenshot.png"),
        };
        load(&chromium, &committed, Some(&png));
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
            "a real screenshot"
        );
    }
}

/// Strings a dataset or manifest could use to inject markup into a report.
const SCRIPT: &str = "<script>alert(1)</script>";
const IMAGE: &str = "<img src=x onerror=alert(2)>";

/// An experiment whose dataset name, sample ids, labels and captions carry markup: one run
/// succeeds (label sets reach the charts; its name has a `|`), one fails naming a sample whose
/// id is a script.
fn hostile(dir: &Path) -> PathBuf {
    let label_sets = [vec![IMAGE], vec!["cat|dog"], vec!["plain", SCRIPT]];
    let mut jsonl = String::new();
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for i in 0..30usize {
        let id = if i == 0 {
            SCRIPT.to_string()
        } else {
            format!("s{i}")
        };
        let set = i % 3;
        let line = serde_json::json!({ "id": id, "labels": label_sets[set], "captions": [SCRIPT] });
        jsonl.push_str(&format!("{line}\n"));
        ids.push(id);
        rows.push(vec![
            1.0 + set as f32,
            (i % 7) as f32 * 0.1,
            0.5,
            (i % 5) as f32 * 0.2,
        ]);
    }
    std::fs::write(dir.join("samples.jsonl"), jsonl).unwrap();
    common::write_npy(&dir.join("v.npy"), &rows);
    std::fs::write(dir.join("v.ids.txt"), ids.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("short.ids.txt"), ids[1..].join("\n") + "\n").unwrap();
    common::write_npy(&dir.join("short.npy"), &rows[1..]);
    let manifest = format!(
        r#"
[experiment]
name = "hostile"

[dataset]
format = "jsonl"
name = "{}"
path = "samples.jsonl"

[retrieval]
k = 5

[[runs]]
name = "vectors|all"
parts = [{{ precomputed = "v.npy" }}]

[[runs]]
name = "short"
parts = [{{ precomputed = "short.npy" }}]
"#,
        IMAGE.replace('"', "\\\"")
    );
    let path = dir.join("hostile.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

#[test]
fn dataset_strings_reach_reports_as_text_never_as_markup() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = hostile(dir.path());
    let out = run(dir.path(), &manifest, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one run fails: {}",
        stderr(&out)
    );
    let report = dir.path().join("reports/hostile");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    let markdown = std::fs::read_to_string(report.join("report.md")).unwrap();
    for (name, text) in [("report.html", &html), ("report.md", &markdown)] {
        assert!(
            !text.contains("<script") && !text.contains("<img"),
            "{name}"
        );
        assert!(
            text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{name}: the failed run's sample id"
        );
        assert!(
            text.contains("&lt;img src=x onerror=alert(2)&gt;"),
            "{name}: the dataset name"
        );
    }
    assert!(
        markdown.contains("| **vectors\\|all** |"),
        "a run name's | does not split its table row"
    );

    let Some(chromium) = chromium() else {
        return;
    };
    let (dom, console) = load(&chromium, &report.join("report.html"), None);
    // An injected script or image would break the page's content policy, which logs.
    assert!(console.is_empty(), "console messages {console:#?}");
    assert!(
        !dom.contains("<script") && !dom.contains("<img"),
        "no element was injected"
    );
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown as text"
    );
}
