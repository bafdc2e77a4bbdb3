//! Reliability with the real plugin on real data: a run killed (SIGKILL) or interrupted (SIGINT)
//! in the middle of encoding resumes from its stored chunks and reproduces an uninterrupted run
//! exactly; two runs on one cache at once share its entries (one computes, the other waits) and
//! leave it valid.
//!
//! Needs the COCO val2017 captions beside the checkout (`../shared/data`) and the MiniLM weights
//! (`EMBEDLAB_TEST_MODELS`); each test says "skipped: ..." without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{candle_plugin_dir, embedlab, stderr};
use serde_json::Value;

/// Samples encoded: six 256-row chunks, so a kill lands between chunks with room either side.
const SAMPLES: usize = 1500;

fn coco_text() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/coco-val2017-text/coco_val2017_text.jsonl");
    if path.is_file() {
        return Some(path);
    }
    println!("skipped: {} is absent", path.display());
    None
}

fn minilm() -> Option<PathBuf> {
    let Some(root) = std::env::var_os("EMBEDLAB_TEST_MODELS") else {
        println!("skipped: EMBEDLAB_TEST_MODELS is not set");
        return None;
    };
    let dir = PathBuf::from(root).join("sentence-transformers--all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    println!("skipped: no model.safetensors in {}", dir.display());
    None
}

/// An experiment folder: the manifest (MiniLM on one caption per sample) and the plugin folder.
struct Experiment {
    dir: tempfile::TempDir,
    plugins: PathBuf,
}

impl Experiment {
    fn new() -> Option<Experiment> {
        let (data, model) = (coco_text()?, minilm()?);
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!(
            r#"
[experiment]
name = "resume"
seed = 7

[dataset]
format = "jsonl"
path = "{}"
limit = {SAMPLES}

[retrieval]
k = 10

[encoders.minilm]
plugin = "candle"
model = "{}"

[[runs]]
name = "minilm_first"
captions = "first"
parts = [{{ encoder = "minilm" }}]
"#,
            data.display(),
            model.display()
        );
        std::fs::write(dir.path().join("exp.toml"), manifest).unwrap();
        let plugins = candle_plugin_dir();
        Some(Experiment { dir, plugins })
    }

    fn args<'a>(&'a self, cache: &'a str, out: &'a str) -> Vec<&'a str> {
        let plugins = self.plugins.to_str().unwrap();
        let args = ["run", "exp.toml", "--cache-dir", cache, "--out", out];
        [&args[..], &["--plugin-dir", plugins]].concat()
    }

    /// Runs to the end; panics, with its stderr, unless it succeeds.
    fn run(&self, cache: &str, out: &str) -> String {
        let done = embedlab(self.dir.path(), &self.args(cache, out));
        assert!(done.status.success(), "{}", stderr(&done));
        stderr(&done)
    }

    /// Starts a run in the background, its stderr going to `<out>.log`.
    fn start(&self, cache: &str, out: &str) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("{out}.log"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_embedlab"))
            .args(self.args(cache, out))
            .current_dir(self.dir.path())
            .env_remove("EMBEDLAB_CACHE_DIR")
            .env_remove("EMBEDLAB_PLUGIN_PATH")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, out: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{out}.log"))).unwrap()
    }

    /// results.json of the report in `out`, less what differs between invocations (times,
    /// cache hits, the date), and the per-query lists.
    fn results(&self, out: &str) -> (Value, String) {
        let dir = self.dir.path().join(out).join("resume");
        let mut results: Value =
            serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
        for run in results["runs"].as_array_mut().unwrap() {
            let run = run.as_object_mut().unwrap();
            for volatile in ["timing", "cache", "stages"] {
                run.remove(volatile);
            }
            run["retrieval"].as_object_mut().unwrap().remove("seconds");
        }
        results["provenance"]
            .as_object_mut()
            .unwrap()
            .remove("date");
        let per_query = std::fs::read_to_string(dir.join("per_query/minilm_first.jsonl")).unwrap();
        (results, per_query)
    }

    /// Waits until the encoding in `cache` has stored at least `n` chunks (and is still
    /// running), then returns how many it had.
    fn wait_for_chunks(&self, cache: &str, n: usize, child: &mut Child) -> usize {
        let embed = self.dir.path().join(cache).join("embed");
        let started = Instant::now();
        loop {
            let stored = stored_chunks(&embed);
            if stored >= n {
                return stored;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before storing {n} chunks"
            );
            assert!(started.elapsed() < Duration::from_secs(300), "no chunks");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn verify(&self, cache: &str) {
        let out = embedlab(self.dir.path(), &["cache", "verify", "--cache-dir", cache]);
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && report.contains("all intact"),
            "{report}{}",
            stderr(&out)
        );
    }
}

/// Two reports' results and per-query lists are equal; on failure, says where they differ first
/// (the whole documents are too long to print).
fn assert_same(got: &(Value, String), want: &(Value, String), what: &str) {
    let differing = got.1.lines().zip(want.1.lines()).find(|(a, b)| a != b);
    assert!(
        differing.is_none(),
        "{what}: per-query lists differ: {differing:?}"
    );
    assert_eq!(got.1.len(), want.1.len(), "{what}: per-query lists");
    for (key, value) in want.0.as_object().unwrap() {
        assert_eq!(&got.0[key], value, "{what}: results.json {key}");
    }
}

/// Vector chunks stored under an `embed` folder.
fn stored_chunks(embed: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(embed) else {
        return 0;
    };
    entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "chunks"))
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten())
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.chars().all(|c| c.is_ascii_digit()))
        .count()
}

/// "resumed, N of M chunks were already encoded": N.
fn resumed_chunks(log: &str) -> usize {
    let at = log.find("resumed, ").expect("the rerun resumed") + "resumed, ".len();
    let n = log[at..].split(' ').next().unwrap();
    n.parse().unwrap()
}

#[test]
fn killed_and_interrupted_runs_resume_and_reproduce_an_uninterrupted_run() {
    let Some(exp) = Experiment::new() else {
        return;
    };
    exp.run("cache-whole", "whole");
    let whole = exp.results("whole");
    let chunks = SAMPLES.div_ceil(256);

    // SIGKILL: nothing runs at exit, so only what was stored (atomically) survives.
    let mut child = exp.start("cache-killed", "killed");
    let stored = exp.wait_for_chunks("cache-killed", 2, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(stored < chunks, "killed mid-encoding");
    let log = exp.run("cache-killed", "killed");
    let resumed = resumed_chunks(&log);
    assert!(
        (stored..chunks).contains(&resumed),
        "{stored} chunks stored before the kill; the rerun found {resumed}: {log}"
    );
    assert_same(&exp.results("killed"), &whole, "killed, then resumed");
    exp.verify("cache-killed");

    // SIGINT: the chunk in progress is stored, then the run stops with status 130.
    let mut child = exp.start("cache-interrupted", "interrupted");
    exp.wait_for_chunks("cache-interrupted", 1, &mut child);
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let log = exp.log("interrupted");
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("stopping at the next checkpoint"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("interrupted after"))
        .unwrap_or_else(|| panic!("no interruption message: {log}"));
    assert!(
        line.contains("chunks of encoding; what was finished is cached"),
        "{line}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let stopped_after: usize = line
        .split("interrupted after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(
        stored_chunks(&exp.dir.path().join("cache-interrupted/embed")),
        stopped_after,
        "the message counts the stored chunks"
    );
    exp.verify("cache-interrupted");
    let log = exp.run("cache-interrupted", "interrupted");
    assert_eq!(resumed_chunks(&log), stopped_after, "{log}");
    assert_eq!(
        exp.results("interrupted"),
        whole,
        "interrupted, then resumed"
    );
}

#[test]
fn two_runs_on_one_cache_compute_each_entry_once() {
    let Some(exp) = Experiment::new() else {
        return;
    };
    let mut first = exp.start("cache", "first");
    let mut second = exp.start("cache", "second");
    assert!(first.wait().unwrap().success(), "{}", exp.log("first"));
    assert!(second.wait().unwrap().success(), "{}", exp.log("second"));
    assert_same(
        &exp.results("first"),
        &exp.results("second"),
        "side by side",
    );

    // Exactly one of the two encoded; the other waited for it (or came after it).
    let encoded_by = |out: &str| -> usize {
        let results: Value = serde_json::from_slice(
            &std::fs::read(exp.dir.path().join(out).join("resume/results.json")).unwrap(),
        )
        .unwrap();
        let stages = results["runs"][0]["stages"].as_array().unwrap().clone();
        stages
            .iter()
            .filter(|s| s["stage"].as_str().unwrap().starts_with("encode"))
            .filter(|s| s["cached"] == false)
            .count()
    };
    assert_eq!(
        encoded_by("first") + encoded_by("second"),
        1,
        "{}\n{}",
        exp.log("first"),
        exp.log("second")
    );
    exp.verify("cache");
}
