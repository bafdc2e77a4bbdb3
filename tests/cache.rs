//! `embedlab cache verify` and `embedlab cache gc` on a real cache (the fixture plugin's
//! encodings, the exact search, metrics), and what a run does with damaged entries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::{embedlab, fixture_models, fixture_plugin_dir, stderr, write_text_dataset};
use serde_json::Value;

/// Samples: three 256-row chunks per encoding.
const SAMPLES: usize = 700;

fn manifest(name: &str, scale: f64) -> String {
    format!(
        r#"
[experiment]
name = "{name}"

[dataset]
format = "jsonl"
path = "samples.jsonl"

[encoders.stats]
plugin = "fixture_plugin"
model = "ok"
scale = {scale}

[[runs]]
name = "stats_{{captions}}"
parts = [{{ encoder = "stats" }}]
sweep = {{ captions = ["concat", "first"] }}
"#
    )
}

struct Setup {
    dir: tempfile::TempDir,
    plugins: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        write_text_dataset(dir.path(), SAMPLES);
        fixture_models(dir.path(), &["ok"]);
        std::fs::write(dir.path().join("a.toml"), manifest("a", 1.0)).unwrap();
        std::fs::write(dir.path().join("b.toml"), manifest("b", 2.0)).unwrap();
        Setup {
            dir,
            plugins: fixture_plugin_dir(),
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join(".embedlab/cache")
    }

    fn embedlab(&self, args: &[&str]) -> Output {
        let plugins = ["--plugin-dir", self.plugins.to_str().unwrap()];
        embedlab(self.dir.path(), &[args, &plugins].concat())
    }

    /// Runs `manifest`; its stderr and results.
    fn run(&self, manifest: &str) -> (String, Value) {
        let out = self.embedlab(&["run", manifest]);
        assert!(out.status.success(), "{}", stderr(&out));
        let name = manifest.trim_end_matches(".toml");
        let results = std::fs::read(
            self.dir
                .path()
                .join("reports")
                .join(name)
                .join("results.json"),
        );
        (
            stderr(&out),
            serde_json::from_slice(&results.unwrap()).unwrap(),
        )
    }

    fn verify(&self) -> (Option<i32>, String) {
        let out = self.embedlab(&["cache", "verify"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
        (out.status.code(), text)
    }

    fn gc(&self, args: &[&str]) -> String {
        let out = self.embedlab(&[&["cache", "gc"], args].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The complete entries of stage folder `stage`.
    fn entries(&self, stage: &str) -> Vec<PathBuf> {
        let Ok(found) = std::fs::read_dir(self.cache().join(stage)) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = found
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.extension().is_none())
            .collect();
        found.sort();
        found
    }
}

fn metrics(results: &Value) -> Vec<Value> {
    let runs = results["runs"].as_array().unwrap();
    runs.iter().map(|r| r["metrics"].clone()).collect()
}

fn misses(results: &Value) -> u64 {
    let runs = results["runs"].as_array().unwrap();
    runs.iter()
        .map(|r| r["cache"]["misses"].as_u64().unwrap())
        .sum()
}

fn chunks_of(entry: &Path) -> PathBuf {
    entry.with_extension("chunks")
}

fn age(path: &Path, by: Duration) {
    let then = SystemTime::now() - by;
    let paths = match path.is_dir() {
        true => std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect(),
        false => vec![path.to_path_buf()],
    };
    for p in paths {
        let file = std::fs::File::options().write(true).open(&p).unwrap();
        file.set_modified(then).unwrap();
    }
}

#[test]
fn damaged_entries_are_reported_by_verify_and_recomputed_by_runs() {
    let s = Setup::new();
    let (_, first) = s.run("a.toml");
    let (code, report) = s.verify();
    assert_eq!(code, Some(0), "{report}");
    // dataset 1; embed 2 entries, 2 × 3 vector chunks + 2 × 3 skip lists; knn 2; metrics 2.
    assert!(
        report.contains("7 entries, 12 chunks") && report.contains("all intact"),
        "{report}"
    );

    let embed = s.entries("embed");
    let altered = chunks_of(&embed[0]).join("000001");
    let mut bytes = std::fs::read(&altered).unwrap();
    bytes[17] ^= 0x40;
    std::fs::write(&altered, bytes).unwrap();
    // Both searches go, so that both runs load their vectors again.
    let truncated = s.entries("knn");
    for entry in &truncated {
        let bytes = std::fs::read(entry).unwrap();
        std::fs::write(entry, &bytes[..bytes.len() / 2]).unwrap();
    }
    std::fs::write(s.cache().join("knn/.tmp-999-0"), b"half a write").unwrap();

    let (code, report) = s.verify();
    assert_eq!(code, Some(1), "{report}");
    let relative = |path: &Path| {
        path.strip_prefix(s.dir.path())
            .unwrap()
            .display()
            .to_string()
    };
    let line = |path: &Path| {
        let text = relative(path);
        report
            .lines()
            .find(|l| l.contains(&text))
            .unwrap_or_else(|| panic!("{text} not reported: {report}"))
            .to_string()
    };
    assert!(line(&altered).contains("checksum mismatch"), "{report}");
    for entry in &truncated {
        assert!(line(entry).contains("no checksum trailer"), "{report}");
    }
    assert!(report.contains("3 damaged"), "{report}");
    assert!(report.contains("1 temporary files"), "{report}");

    let (log, again) = s.run("a.toml");
    assert_eq!(metrics(&again), metrics(&first));
    for path in truncated.iter().chain([&altered]) {
        let warned = format!("{}: corrupt cache entry", relative(path));
        assert!(log.contains(&warned), "{warned}: {log}");
    }
    assert!(log.contains("resumed, 2 of 3 chunks"), "{log}");
    let gc = s.gc(&[]);
    assert!(
        gc.contains("removed 0 entries") && gc.contains("and 1 temporary files"),
        "{gc}"
    );
    let (code, report) = s.verify();
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn gc_removes_by_manifest_age_and_size() {
    let s = Setup::new();
    s.run("a.toml");
    s.run("b.toml");
    assert_eq!(s.entries("embed").len(), 4);

    // Keep what a.toml uses: b's encodings, searches and metrics go; the dataset is shared.
    let dry = s.gc(&["--keep", "a.toml", "--dry-run"]);
    assert!(dry.contains("would remove 6 entries"), "{dry}");
    assert_eq!(s.entries("embed").len(), 4, "a dry run removes nothing");
    let kept = s.gc(&["--keep", "a.toml"]);
    assert!(
        kept.contains("removed 6 entries") && kept.contains("kept 7 entries"),
        "{kept}"
    );
    assert_eq!(
        misses(&s.run("a.toml").1),
        0,
        "a.toml's entries are all kept"
    );
    assert!(misses(&s.run("b.toml").1) > 0, "b.toml's are gone");

    // By age: only entries unused for longer than a day.
    let none = s.gc(&["--older-than", "1day"]);
    assert!(none.contains("removed 0 entries"), "{none}");
    let old = s.entries("embed")[0].clone();
    age(&old, Duration::from_secs(3 * 86_400));
    age(&chunks_of(&old), Duration::from_secs(3 * 86_400));
    let aged = s.gc(&["--older-than", "1day"]);
    assert!(aged.contains("removed 1 entries"), "{aged}");
    assert!(!old.exists() && !chunks_of(&old).exists());

    // By size: least recently used first, until nothing is left for a limit of 0.
    let all = s.gc(&["--max-size", "0"]);
    assert!(all.contains("kept 0 entries (0 B)"), "{all}");
    let (code, report) = s.verify();
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("0 entries, 0 chunks"), "{report}");
}

#[test]
fn cache_commands_refuse_a_missing_folder_and_bad_sizes() {
    let s = Setup::new();
    let out = s.embedlab(&["cache", "verify", "--cache-dir", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nowhere: no such cache folder"),
        "{}",
        stderr(&out)
    );
    s.run("a.toml");
    let out = s.embedlab(&["cache", "gc", "--max-size", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("\"lots\" is not a size"),
        "{}",
        stderr(&out)
    );
}
