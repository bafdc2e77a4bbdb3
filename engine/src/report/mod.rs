//! Reports: `results.json`, `report.md`, `report.html`, SVG charts and per-query files for one
//! experiment, and merged reports of several (`embedlab report DIR...`).
//!
//! Tables follow the article's shape (run, MAP, MRR, NDCG, Precision, Recall, HitRate), sorted by
//! MRR, per dataset and per experiment family ([`family`]), with bootstrap intervals, paired
//! randomisation tests ([`compare`]), article-compatible numbers, references, resources,
//! provenance and the metric definitions. [`view`] computes what the templates show; templates live
//! in `templates/` and are compiled into the binary. Only this module knows about HTML; it escapes
//! every string (HTML auto-escaping), since run names, label sets and captions come from users'
//! files, and the HTML's content security policy forbids anything but inline styles and images.

pub mod charts;
pub mod compare;
pub mod family;
pub mod results;
pub mod view;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use crate::dataset::Dataset;
use crate::error::Error;
use crate::metrics::{Evaluation, Metric};
use crate::retrieval::Neighbours;
use compare::{QueryScores, TestSettings};
use results::{PairTest, Results, Significance};
use view::{Input, View};

const MARKDOWN: &str = include_str!("../../../templates/report.md.j2");
const HTML: &str = include_str!("../../../templates/report.html.j2");

/// The files a report wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// `results.json` of an experiment, `comparison.json` of a merged report.
    pub results: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Writes results.json, report.md, report.html and the charts into `dir` (created if needed).
pub fn write(dir: &Path, results: &Results) -> Result<Written, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("results.json");
    let json = serde_json::to_vec_pretty(results).expect("results serialise");
    write_atomic(&path, &json)?;
    let inputs = [Input {
        results,
        link: String::new(),
    }];
    let tests = results
        .significance
        .as_ref()
        .map_or(&[][..], |s| s.pairs.as_slice());
    let view = View::new(results.experiment.clone(), &inputs, tests);
    render_all(dir, &view, path)
}

/// Merges the experiments whose reports are in `dirs` into one report in `out`: runs on the same
/// dataset share tables and charts, and are tested against each other (from their per-query files,
/// so across experiments too).
pub fn write_merged(out: &Path, dirs: &[PathBuf]) -> Result<Written, Error> {
    let loaded = dirs
        .iter()
        .map(|dir| read_results(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs: Vec<Input> = loaded
        .iter()
        .zip(dirs)
        .map(|(results, dir)| Input {
            results,
            link: relative_link(out, dir),
        })
        .collect();
    let comparison = merged_tests(&loaded, dirs)?;
    let tests: Vec<PairTest> = comparison
        .significance
        .iter()
        .flat_map(|s| s.pairs.iter().cloned())
        .collect();
    let title = loaded
        .iter()
        .map(|r| r.experiment.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    let view = View::new(title, &inputs, &tests);
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let path = out.join("comparison.json");
    write_atomic(
        &path,
        &serde_json::to_vec_pretty(&comparison).expect("serialises"),
    )?;
    render_all(out, &view, path)
}

/// What a merged report adds to its experiments' results.json: the pair tests across them.
#[derive(Serialize)]
struct Comparison {
    experiments: Vec<String>,
    /// One set of tests per dataset.
    significance: Vec<Significance>,
}

fn read_results(dir: &Path) -> Result<Results, Error> {
    let path = dir.join("results.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Report {
        path: path.clone(),
        message: format!("not an embedlab results.json: {e}"),
    })
}

/// Pair tests of every two runs on the same dataset, from the per-query files the runs wrote;
/// runs without one are left out of the tests (and say so in the report by their empty cells).
fn merged_tests(loaded: &[Results], dirs: &[PathBuf]) -> Result<Comparison, Error> {
    let mut groups: BTreeMap<String, Vec<(String, QueryScores)>> = BTreeMap::new();
    let first = &loaded[0];
    let keys = first.significance.as_ref().map_or_else(
        || vec![Metric::Mrr.key(first.provenance.k)],
        |s| s.metrics.clone(),
    );
    for (results, dir) in loaded.iter().zip(dirs) {
        for run in &results.runs {
            let Some(file) = &run.per_query else { continue };
            let scores = QueryScores::read(&dir.join(file), &keys)?;
            groups
                .entry(results.provenance.dataset.fingerprint.to_string())
                .or_default()
                .push((view::run_label(run, results, true), scores));
        }
    }
    let settings = first.provenance.statistics.as_ref().map_or(
        TestSettings {
            permutations: 1000,
            seed: first.provenance.seed,
            alpha: 0.05,
        },
        |s| TestSettings {
            permutations: s.permutations,
            seed: s.seed,
            alpha: first.significance.as_ref().map_or(0.05, |sig| sig.alpha),
        },
    );
    let significance = groups
        .values()
        .filter_map(|runs| {
            let named: Vec<(&str, &QueryScores)> =
                runs.iter().map(|(n, s)| (n.as_str(), s)).collect();
            compare::pairwise(&named, &keys, settings)
        })
        .collect();
    Ok(Comparison {
        experiments: loaded.iter().map(|r| r.experiment.clone()).collect(),
        significance,
    })
}

/// `dir` as a link from a report in `out` (relative when both are relative or share a root).
fn relative_link(out: &Path, dir: &Path) -> String {
    let (Ok(out), Ok(dir)) = (std::path::absolute(out), std::path::absolute(dir)) else {
        return dir.display().to_string();
    };
    let common = out
        .components()
        .zip(dir.components())
        .take_while(|(a, b)| a == b)
        .count();
    let ups = out.components().count() - common;
    let mut link = PathBuf::new();
    (0..ups).for_each(|_| link.push(".."));
    dir.components().skip(common).for_each(|c| link.push(c));
    link.display().to_string()
}

/// Writes the charts and both report files for `view` into `dir`.
fn render_all(dir: &Path, view: &View, results: PathBuf) -> Result<Written, Error> {
    for chart in view.charts() {
        write_file(&dir.join(&chart.file), chart.svg.as_bytes())?;
    }
    let written = Written {
        results,
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
    };
    write_atomic(
        &written.markdown,
        render("report.md", MARKDOWN, view, &written.markdown)?.as_bytes(),
    )?;
    write_atomic(
        &written.html,
        render("report.html", HTML, view, &written.html)?.as_bytes(),
    )?;
    Ok(written)
}

/// Writes one run's per-query results as JSON lines: query id, label set, neighbour ids, scores,
/// hit flags and the query's metrics at each cutoff.
pub fn write_per_query(
    path: &Path,
    dataset: &Dataset,
    neighbours: &Neighbours,
    evaluation: &Evaluation,
) -> Result<(), Error> {
    let mut out = Vec::with_capacity(neighbours.n * 256);
    for q in 0..neighbours.n {
        let query = &dataset.samples[q];
        let rows = neighbours.of(q);
        let mut metrics = BTreeMap::new();
        for (ci, cutoff) in evaluation.cutoffs.iter().enumerate() {
            for (mi, metric) in Metric::ALL.iter().enumerate() {
                metrics.insert(metric.key(*cutoff), evaluation.per_query[q][ci][mi]);
            }
        }
        let line = QueryLine {
            query: &query.id.0,
            labels: query.labels.to_string(),
            neighbours: rows
                .iter()
                .map(|&r| dataset.samples[r as usize].id.0.as_str())
                .collect(),
            scores: neighbours.scores_of(q),
            hits: rows
                .iter()
                .map(|&r| (dataset.samples[r as usize].labels == query.labels) as u8)
                .collect(),
            metrics,
        };
        serde_json::to_writer(&mut out, &line).expect("json");
        out.push(b'\n');
    }
    write_file(path, &out)
}

/// Writes `bytes` to `path` atomically, creating its folder.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("a file path has a folder");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomic(path, bytes)
}

/// One line of a per-query file.
#[derive(Serialize)]
struct QueryLine<'a> {
    query: &'a str,
    labels: String,
    neighbours: Vec<&'a str>,
    scores: &'a [f32],
    hits: Vec<u8>,
    metrics: BTreeMap<String, f64>,
}

/// File-name-safe form of a run name.
pub fn file_stem(run: &str) -> String {
    run.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path.file_name().expect("a file path").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    result.map_err(|e| Error::io(path, e))
}

fn render(name: &str, source: &str, view: &View, path: &Path) -> Result<String, Error> {
    let mut env = Environment::new();
    if name.ends_with(".md") {
        env.set_formatter(markdown_formatter);
    }
    env.add_template(name, source)
        .map_err(|e| template_error(path, e))?;
    let template = env
        .get_template(name)
        .map_err(|e| template_error(path, e))?;
    template
        .render(minijinja::value::Serde(view))
        .map_err(|e| template_error(path, e))
}

/// Writes values into Markdown. Strings from users' files (labels, sample ids, paths, run
/// names) could carry raw HTML, which many Markdown viewers render, or a `|` or line break that
/// breaks a table row: those are neutralised. Strings marked safe are written as they are.
fn markdown_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if !value.is_safe() => {
            Ok(std::fmt::Write::write_str(out, &escape_markdown(text))?)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn escape_markdown(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '|' => escaped.push_str("\\|"),
            '\n' | '\r' => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

fn template_error(path: &Path, e: minijinja::Error) -> Error {
    Error::Report {
        path: path.to_path_buf(),
        message: format!("template: {e:#}"),
    }
}
