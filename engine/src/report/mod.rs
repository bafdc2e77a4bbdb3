//! Reports: `results.json`, `report.md`, `report.html` and per-query files for one experiment.
//!
//! Tables follow the article's shape (run, MAP, MRR, NDCG, Precision, Recall, HitRate, dataset,
//! parts), sorted by MRR, followed by resources, provenance and the metric definitions. Templates
//! live in `templates/` and are compiled into the binary. Only this module knows about HTML; it
//! escapes every string (HTML auto-escaping), since run names, label sets and captions come from
//! users' files.

pub mod results;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use crate::dataset::Dataset;
use crate::error::Error;
use crate::metrics::{Evaluation, Metric};
use crate::retrieval::Neighbours;
use results::Results;

const MARKDOWN: &str = include_str!("../../../templates/report.md.j2");
const HTML: &str = include_str!("../../../templates/report.html.j2");

/// The files a report wrote.
#[derive(Clone, Debug)]
pub struct Written {
    pub results: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Writes results.json, report.md and report.html into `dir` (created if needed).
pub fn write(dir: &Path, results: &Results) -> Result<Written, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let written = Written {
        results: dir.join("results.json"),
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
    };
    let json = serde_json::to_vec_pretty(results).expect("results serialise");
    write_atomic(&written.results, &json)?;
    let view = ReportView::new(results);
    write_atomic(
        &written.markdown,
        render("report.md", MARKDOWN, &view, &written.markdown)?.as_bytes(),
    )?;
    write_atomic(
        &written.html,
        render("report.html", HTML, &view, &written.html)?.as_bytes(),
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

fn render(name: &str, source: &str, view: &ReportView, path: &Path) -> Result<String, Error> {
    let mut env = Environment::new();
    env.add_template(name, source)
        .map_err(|e| template_error(path, e))?;
    let template = env
        .get_template(name)
        .map_err(|e| template_error(path, e))?;
    template
        .render(minijinja::value::Serde(view))
        .map_err(|e| template_error(path, e))
}

fn template_error(path: &Path, e: minijinja::Error) -> Error {
    Error::Report {
        path: path.to_path_buf(),
        message: format!("template: {e:#}"),
    }
}

/// What the templates iterate over: runs sorted by MRR, values preformatted.
#[derive(Serialize)]
struct ReportView<'a> {
    r: &'a Results,
    k: usize,
    columns: Vec<Column>,
    rows: Vec<Row>,
    /// One table per cutoff with all eight metrics.
    cutoff_tables: Vec<CutoffTable>,
}

#[derive(Serialize)]
struct CutoffTable {
    cutoff: usize,
    columns: Vec<&'static str>,
    rows: Vec<(String, Vec<String>)>,
}

#[derive(Serialize)]
struct Column {
    key: String,
    title: String,
}

#[derive(Serialize)]
struct Row {
    name: String,
    best: bool,
    main: Vec<String>,
    dataset: String,
    parts: String,
    n_samples: usize,
    embed_s: String,
    knn_s: String,
    items_per_s: String,
    peak_rss_mb: String,
    cache: String,
}

/// The article's table: its MAP and NDCG are the `_list` variants; its "Recall" is the hit rate.
const MAIN: [(Metric, &str); 6] = [
    (Metric::MapList, "MAP"),
    (Metric::Mrr, "MRR"),
    (Metric::NdcgList, "NDCG"),
    (Metric::Precision, "Precision"),
    (Metric::Recall, "Recall"),
    (Metric::HitRate, "HitRate"),
];

impl<'a> ReportView<'a> {
    fn new(results: &'a Results) -> ReportView<'a> {
        let k = results.provenance.k;
        let columns = MAIN
            .iter()
            .map(|(m, title)| Column {
                key: m.key(k),
                title: format!("{title}@{k}"),
            })
            .collect();
        let mut runs: Vec<_> = results.runs.iter().collect();
        let mrr =
            |r: &&results::RunResult| r.metrics.get(&Metric::Mrr.key(k)).copied().unwrap_or(0.0);
        runs.sort_by(|a, b| mrr(b).total_cmp(&mrr(a)).then_with(|| a.name.cmp(&b.name)));
        let rows = runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let fmt = |key: &String| {
                    run.metrics
                        .get(key)
                        .map_or("–".into(), |v| format!("{v:.4}"))
                };
                let parts: Vec<String> = run
                    .encoders
                    .iter()
                    .map(|e| {
                        if e.weight == 1.0 {
                            e.model.clone()
                        } else {
                            format!("{}×{}", e.weight, e.model)
                        }
                    })
                    .collect();
                let raw = if run.fusion.normalize_parts {
                    ""
                } else {
                    " (raw)"
                };
                Row {
                    name: run.name.clone(),
                    best: i == 0,
                    main: MAIN.iter().map(|(m, _)| fmt(&m.key(k))).collect(),
                    dataset: run.dataset.clone(),
                    parts: format!("{}{raw}", parts.join(" ++ ")),
                    n_samples: run.n_samples,
                    embed_s: format!("{:.3}", run.timing.embed_s),
                    knn_s: format!("{:.3}", run.timing.knn_s),
                    items_per_s: format!("{:.0}", run.timing.items_per_s),
                    peak_rss_mb: format!("{:.0}", run.timing.peak_rss_mb),
                    cache: format!("{}/{}", run.cache.hits, run.cache.misses),
                }
            })
            .collect();
        let cutoff_tables = results
            .provenance
            .cutoffs
            .iter()
            .map(|&c| cutoff_table(&runs, c))
            .collect();
        ReportView {
            r: results,
            k,
            columns,
            rows,
            cutoff_tables,
        }
    }
}

fn cutoff_table(runs: &[&results::RunResult], cutoff: usize) -> CutoffTable {
    let rows = runs
        .iter()
        .map(|run| {
            let values = Metric::ALL
                .iter()
                .map(|m| {
                    run.metrics
                        .get(&m.key(cutoff))
                        .map_or("–".into(), |v| format!("{v:.4}"))
                })
                .collect();
            (run.name.clone(), values)
        })
        .collect();
    CutoffTable {
        cutoff,
        columns: Metric::ALL.iter().map(|m| m.name()).collect(),
        rows,
    }
}
