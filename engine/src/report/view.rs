//! What the report templates show, computed from one or more experiments' results.
//!
//! A report of one experiment and a report merging several (`embedlab report DIR...`) are the
//! same thing: runs are grouped by dataset (its fingerprint), and for each dataset the view holds
//! the all-scenarios table, a table per experiment family, the relative differences between the
//! families' best runs, charts, article-compatible numbers, significance and references. Values are
//! formatted here so the Markdown and HTML templates stay logic-free.

use std::collections::BTreeMap;

use serde::Serialize;

use super::charts::{self, Bar, Point, Series};
use super::family;
use super::results::{PairTest, Results, RunResult};
use crate::metrics::Metric;

/// The article's table: its MAP and NDCG are the `_list` variants; its "Recall" is the hit rate.
const MAIN: [(Metric, &str); 6] = [
    (Metric::MapList, "MAP"),
    (Metric::Mrr, "MRR"),
    (Metric::NdcgList, "NDCG"),
    (Metric::Precision, "Precision"),
    (Metric::Recall, "Recall"),
    (Metric::HitRate, "HitRate"),
];

/// The flag-only metrics the study's scorer reports, shown exact vs article-compatible.
const ARTICLE: [(Metric, &str); 3] = [
    (Metric::Mrr, "MRR"),
    (Metric::MapList, "MAP"),
    (Metric::NdcgList, "NDCG"),
];

/// The whole report.
#[derive(Serialize)]
pub struct View<'a> {
    pub title: String,
    /// More than one experiment: run labels carry their experiment's name.
    pub merged: bool,
    pub experiments: Vec<ExperimentView<'a>>,
    pub datasets: Vec<DatasetView>,
}

/// One experiment's own sections: failures, skipped images, all metrics, provenance.
#[derive(Serialize)]
pub struct ExperimentView<'a> {
    pub r: &'a Results,
    /// Folder of its results.json, relative to the report (for links); empty for its own report.
    pub link: String,
    pub cutoff_tables: Vec<CutoffTable>,
}

#[derive(Serialize)]
pub struct CutoffTable {
    pub cutoff: usize,
    pub columns: Vec<&'static str>,
    pub rows: Vec<(String, Vec<String>)>,
}

/// Every run on one dataset, from any experiment.
#[derive(Serialize)]
pub struct DatasetView {
    pub name: String,
    pub fingerprint: String,
    pub n_samples: usize,
    pub label_sets: usize,
    pub experiments: Vec<String>,
    pub k: usize,
    pub slug: String,
    pub columns: Vec<String>,
    /// All scenarios, best MRR first.
    pub rows: Vec<RunRow>,
    pub families: Vec<FamilyView>,
    /// Relative differences between the families' best runs.
    pub highlights: Vec<String>,
    pub charts: Vec<Chart>,
    pub article: Option<ArticleTable>,
    pub significance: Option<Matrix>,
    pub references: Vec<ReferenceRow>,
    pub resources: Vec<ResourceRow>,
    pub encoders: Vec<EncoderRow>,
    pub stages: Vec<StageRow>,
    /// How the runs searched, in words ("exact search", or with faiss runs which).
    pub search: String,
    /// The runs that searched approximately (faiss), beside the exact search.
    pub approximate: Vec<ApproximateRow>,
    /// The metric the "vs best" column tests, and the level.
    pub tested: String,
    pub alpha: f64,
    pub confidence: String,
}

#[derive(Clone, Serialize)]
pub struct RunRow {
    pub label: String,
    pub family: String,
    pub best: bool,
    pub family_best: bool,
    pub main: Vec<String>,
    /// The MRR interval, e.g. `0.79–0.91`.
    pub interval: String,
    /// Relative MRR difference to the dataset's best run, e.g. `−3.2%`.
    pub delta: String,
    /// `n.s.` when not significantly different from the best run, `p=0.003` when it is, empty
    /// for the best run or when untested.
    pub versus_best: String,
    pub not_significant: bool,
    pub parts: String,
}

#[derive(Serialize)]
pub struct FamilyView {
    pub name: String,
    pub rows: Vec<RunRow>,
}

/// An SVG chart: inline in HTML, a file linked from Markdown.
#[derive(Serialize)]
pub struct Chart {
    pub title: String,
    pub file: String,
    pub svg: String,
}

#[derive(Serialize)]
pub struct ArticleTable {
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<String>)>,
}

/// p-values of every pair of runs on one metric.
#[derive(Serialize)]
pub struct Matrix {
    pub metric: String,
    pub labels: Vec<String>,
    /// `cells[i][j]` for j > i; empty on and below the diagonal.
    pub cells: Vec<Vec<Cell>>,
}

#[derive(Serialize)]
pub struct Cell {
    pub text: String,
    pub significant: bool,
}

#[derive(Serialize)]
pub struct ReferenceRow {
    pub run: String,
    pub metric: String,
    pub scoring: String,
    pub reference: String,
    pub ours: String,
    pub difference: String,
    pub tolerance: String,
    pub source: String,
    pub within: bool,
}

#[derive(Serialize)]
pub struct ResourceRow {
    pub label: String,
    pub n_samples: usize,
    pub wall_s: String,
    pub embed_s: String,
    pub knn_s: String,
    pub items_per_s: String,
    pub peak_rss_mb: String,
    pub parameters: String,
    pub device: String,
    pub cache: String,
}

/// One encoding: the study's "inference time and memory" paragraph, measured.
#[derive(Serialize)]
pub struct EncoderRow {
    pub stage: String,
    pub parameters: String,
    pub device: String,
    pub items: usize,
    pub seconds: String,
    pub items_per_s: String,
    pub peak_rss_mb: String,
}

#[derive(Serialize)]
pub struct StageRow {
    pub label: String,
    pub stage: String,
    pub items: usize,
    pub seconds: String,
    pub items_per_s: String,
    pub peak_rss_mb: String,
    pub cached: bool,
}

/// An approximate (faiss) run beside the exact search of the same vectors.
#[derive(Serialize)]
pub struct ApproximateRow {
    pub label: String,
    pub index: String,
    pub parameters: String,
    /// Mean share of the exact neighbours found; `–` when not compared.
    pub recall: String,
    pub build_s: String,
    pub search_s: String,
    /// The exact search's time on the same vectors.
    pub exact_s: String,
    /// MRR@k and NDCG@k of this run − those of the exact search.
    pub mrr_difference: String,
    pub ndcg_difference: String,
}

/// One experiment's results, and where its own report lies relative to the report being written
/// (empty for its own report).
pub struct Input<'a> {
    pub results: &'a Results,
    pub link: String,
}

/// A run with the experiment it came from.
struct Entry<'a> {
    run: &'a RunResult,
    experiment: &'a Results,
    label: String,
}

impl<'a> View<'a> {
    /// The view of `inputs`; `tests` are the pair tests to show (run labels as names).
    pub fn new(title: String, inputs: &[Input<'a>], tests: &[PairTest]) -> View<'a> {
        let merged = inputs.len() > 1;
        let mut groups: BTreeMap<String, Vec<Entry<'a>>> = BTreeMap::new();
        for input in inputs {
            let r = input.results;
            for run in &r.runs {
                groups
                    .entry(r.provenance.dataset.fingerprint.to_string())
                    .or_default()
                    .push(Entry {
                        run,
                        experiment: r,
                        label: run_label(run, r, merged),
                    });
            }
        }
        let datasets = groups
            .into_values()
            .map(|entries| dataset_view(&entries, tests))
            .collect();
        View {
            title,
            merged,
            experiments: inputs
                .iter()
                .map(|i| ExperimentView {
                    r: i.results,
                    link: i.link.clone(),
                    cutoff_tables: cutoff_tables(i.results),
                })
                .collect(),
            datasets,
        }
    }

    /// Every chart of the report, for writing next to it.
    pub fn charts(&self) -> impl Iterator<Item = &Chart> {
        self.datasets.iter().flat_map(|d| &d.charts)
    }
}

/// A run's name, with its experiment's in a merged report (names repeat across experiments).
pub fn run_label(run: &RunResult, experiment: &Results, merged: bool) -> String {
    if merged {
        format!("{} · {}", run.name, experiment.experiment)
    } else {
        run.name.clone()
    }
}

fn dataset_view(entries: &[Entry<'_>], tests: &[PairTest]) -> DatasetView {
    let first = entries[0].experiment;
    let k = first.provenance.k;
    let mrr_key = Metric::Mrr.key(k);
    let mrr = |e: &Entry| e.run.metrics.get(&mrr_key).copied().unwrap_or(0.0);
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        mrr(b)
            .total_cmp(&mrr(a))
            .then_with(|| a.label.cmp(&b.label))
    });
    let best = sorted[0];
    let (alpha, tested) = first
        .significance
        .as_ref()
        .map_or((0.05, mrr_key.clone()), |s| {
            (
                s.alpha,
                s.metrics.first().cloned().unwrap_or(mrr_key.clone()),
            )
        });
    let family_best: BTreeMap<&str, &Entry> = sorted
        .iter()
        .rev()
        .map(|e| (e.run.family.as_str(), *e))
        .collect();
    let row = |e: &Entry| -> RunRow {
        let test = (e.label != best.label)
            .then(|| find_test(tests, &best.label, &e.label, &tested))
            .flatten();
        RunRow {
            label: e.label.clone(),
            family: e.run.family.clone(),
            best: e.label == best.label,
            family_best: family_best
                .get(e.run.family.as_str())
                .is_some_and(|b| b.label == e.label),
            main: MAIN
                .iter()
                .map(|(m, _)| value(e.run.metrics.get(&m.key(k)).copied()))
                .collect(),
            interval: e
                .run
                .intervals
                .get(&mrr_key)
                .map_or(String::new(), |[lo, hi]| format!("{lo:.3}–{hi:.3}")),
            delta: relative(mrr(e), mrr(best)),
            versus_best: test.map_or(String::new(), |t| {
                if t.p_value >= alpha {
                    "n.s.".into()
                } else {
                    format!("p{}", p_relation(t.p_value))
                }
            }),
            not_significant: test.is_some_and(|t| t.p_value >= alpha),
            parts: parts(e.run),
        }
    };
    let rows: Vec<RunRow> = sorted.iter().map(|e| row(e)).collect();
    let mut family_names: Vec<&str> = family_best.keys().copied().collect();
    family_names.sort_by_key(|f| family::rank(f));
    let families = family_names
        .iter()
        .map(|&name| FamilyView {
            name: name.to_string(),
            rows: rows.iter().filter(|r| r.family == name).cloned().collect(),
        })
        .collect();
    let slug = slug(
        &first.provenance.dataset.name,
        &first.provenance.dataset.fingerprint.to_string(),
    );
    let bests: Vec<&Entry> = family_names.iter().map(|f| family_best[f]).collect();
    DatasetView {
        name: first.provenance.dataset.name.clone(),
        fingerprint: first.provenance.dataset.fingerprint.to_string(),
        n_samples: first.provenance.dataset.n_samples,
        label_sets: first.provenance.dataset.stats.label_sets,
        experiments: unique(entries.iter().map(|e| e.experiment.experiment.clone())),
        k,
        columns: MAIN.iter().map(|(_, t)| format!("{t}@{k}")).collect(),
        highlights: highlights(&bests, &mrr_key),
        charts: dataset_charts(&slug, &sorted, &rows, &bests, k),
        article: article_table(&sorted, k),
        significance: matrix(&sorted, tests, &tested, alpha),
        references: references(entries),
        resources: sorted.iter().map(|e| resource_row(e)).collect(),
        encoders: encoder_rows(&sorted),
        stages: stage_rows(&sorted),
        search: search_words(entries),
        approximate: approximate_rows(&sorted, k),
        rows,
        families,
        slug,
        tested,
        alpha,
        confidence: first
            .provenance
            .statistics
            .as_ref()
            .map_or(String::new(), |s| format!("{:.0}%", s.confidence * 100.0)),
    }
}

fn find_test<'t>(tests: &'t [PairTest], a: &str, b: &str, metric: &str) -> Option<&'t PairTest> {
    tests
        .iter()
        .find(|t| t.metric == metric && ((t.a == a && t.b == b) || (t.a == b && t.b == a)))
}

fn value(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.4}"))
}

/// `=0.034` or `<0.001`, to follow "p".
fn p_relation(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("={p:.3}")
    }
}

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// `+7.1%` / `−3.2%` of `value` over `base`; empty when equal or `base` is 0.
fn relative(value: f64, base: f64) -> String {
    if base == 0.0 || value == base {
        return String::new();
    }
    let percent = (value / base - 1.0) * 100.0;
    let sign = if percent >= 0.0 { "+" } else { "−" };
    format!("{sign}{:.1}%", percent.abs())
}

fn parts(run: &RunResult) -> String {
    let parts: Vec<String> = run
        .encoders
        .iter()
        .map(|e| {
            let input = match (&e.captions, e.input.as_deref()) {
                (Some(captions), _) => format!(" [{captions} captions]"),
                (None, Some(input)) => format!(" [{input}]"),
                (None, None) => String::new(),
            };
            let weight = if e.weight == 1.0 {
                String::new()
            } else {
                format!("{}×", e.weight)
            };
            format!("{weight}{}{input}", e.model)
        })
        .collect();
    let raw = if run.fusion.normalize_parts {
        ""
    } else {
        " (raw)"
    };
    format!("{}{raw}", parts.join(" ++ "))
}

/// "+7.1% MRR: best of family A (run) over the best of family B (run)", for each pair of
/// families, from the best family down.
fn highlights(bests: &[&Entry], mrr_key: &str) -> Vec<String> {
    let mrr = |e: &Entry| e.run.metrics.get(mrr_key).copied().unwrap_or(0.0);
    let mut ranked: Vec<&&Entry> = bests.iter().collect();
    ranked.sort_by(|a, b| mrr(b).total_cmp(&mrr(a)));
    let mut lines = Vec::new();
    for (i, a) in ranked.iter().enumerate() {
        for b in &ranked[i + 1..] {
            let diff = relative(mrr(a), mrr(b));
            if diff.is_empty() {
                continue;
            }
            lines.push(format!(
                "{diff} {mrr_key}: {} ({}) over the best {} run ({})",
                a.label, a.run.family, b.run.family, b.label
            ));
        }
    }
    lines
}

fn dataset_charts(
    slug: &str,
    sorted: &[&Entry],
    rows: &[RunRow],
    bests: &[&Entry],
    k: usize,
) -> Vec<Chart> {
    let key = Metric::Mrr.key(k);
    let bars: Vec<Bar> = sorted
        .iter()
        .zip(rows)
        .map(|(e, row)| Bar {
            label: e.label.clone(),
            value: e.run.metrics.get(&key).copied().unwrap_or(f64::NAN),
            interval: e.run.intervals.get(&key).map(|[lo, hi]| (*lo, *hi)),
            highlight: row.best,
            note: row.not_significant.then(|| "n.s.".to_string()),
        })
        .collect();
    let points: Vec<Point> = sorted
        .iter()
        .map(|e| Point {
            label: e.run.name.clone(),
            x: e.run.timing.items_per_s,
            y: e.run.metrics.get(&key).copied().unwrap_or(f64::NAN),
            group: e.run.family.clone(),
        })
        .collect();
    let mut charts = vec![
        Chart {
            title: format!("MRR@{k} per run"),
            file: format!("charts/{slug}-mrr.svg"),
            svg: charts::bar_chart(
                &format!("MRR@{k} per run (bootstrap confidence intervals)"),
                &format!("MRR@{k}"),
                &bars,
            ),
        },
        Chart {
            title: "Quality against throughput".into(),
            file: format!("charts/{slug}-throughput.svg"),
            svg: charts::scatter(
                &format!("MRR@{k} against throughput"),
                "items/s (vectors + k-NN, log scale)",
                &format!("MRR@{k}"),
                &points,
                true,
            ),
        },
    ];
    if let Some(chart) = label_set_chart(slug, bests, k) {
        charts.push(chart);
    }
    charts
}

/// MRR per label set (the most frequent ones) for each family's best run.
fn label_set_chart(slug: &str, bests: &[&Entry], k: usize) -> Option<Chart> {
    let groups: Vec<String> = bests
        .iter()
        .find(|e| !e.run.label_sets.is_empty())?
        .run
        .label_sets
        .iter()
        .map(|l| l.labels.clone())
        .collect();
    let series: Vec<Series> = bests
        .iter()
        .map(|e| Series {
            name: e.label.clone(),
            values: groups
                .iter()
                .map(|g| {
                    e.run
                        .label_sets
                        .iter()
                        .find(|l| &l.labels == g)
                        .map(|l| l.mrr)
                })
                .collect(),
        })
        .collect();
    Some(Chart {
        title: "MRR per label set".into(),
        file: format!("charts/{slug}-label-sets.svg"),
        svg: charts::grouped_bars(
            &format!("MRR@{k} of the most frequent label sets, best run of each family"),
            &format!("MRR@{k}"),
            &groups,
            &series,
        ),
    })
}

fn article_table(sorted: &[&Entry], k: usize) -> Option<ArticleTable> {
    if sorted.iter().all(|e| e.run.article_compatible.is_empty()) {
        return None;
    }
    let columns = ARTICLE
        .iter()
        .flat_map(|(_, t)| [format!("{t}@{k} exact"), format!("{t}@{k} article")])
        .collect();
    let rows = sorted
        .iter()
        .map(|e| {
            let cells = ARTICLE
                .iter()
                .flat_map(|(m, _)| {
                    let key = m.key(k);
                    [
                        value(e.run.metrics.get(&key).copied()),
                        value(e.run.article_compatible.get(&key).copied()),
                    ]
                })
                .collect();
            (e.label.clone(), cells)
        })
        .collect();
    Some(ArticleTable { columns, rows })
}

/// Pairwise p-values on `metric`, for up to 24 runs (beyond that the table stops being readable;
/// results.json keeps every pair).
fn matrix(sorted: &[&Entry], tests: &[PairTest], metric: &str, alpha: f64) -> Option<Matrix> {
    if sorted.len() < 2 || sorted.len() > 24 || tests.is_empty() {
        return None;
    }
    let labels: Vec<String> = sorted.iter().map(|e| e.label.clone()).collect();
    let cells = labels
        .iter()
        .enumerate()
        .map(|(i, a)| {
            labels
                .iter()
                .enumerate()
                .map(|(j, b)| match find_test(tests, a, b, metric) {
                    Some(t) if j > i => Cell {
                        text: p_text(t.p_value),
                        significant: t.p_value < alpha,
                    },
                    _ => Cell {
                        text: String::new(),
                        significant: false,
                    },
                })
                .collect()
        })
        .collect();
    Some(Matrix {
        metric: metric.to_string(),
        labels,
        cells,
    })
}

fn references(entries: &[Entry<'_>]) -> Vec<ReferenceRow> {
    let mut seen = Vec::new();
    for e in entries {
        if seen
            .iter()
            .any(|r: &&Results| std::ptr::eq(*r, e.experiment))
        {
            continue;
        }
        seen.push(e.experiment);
    }
    seen.iter()
        .flat_map(|r| &r.references)
        .map(|c| ReferenceRow {
            run: c.run.clone(),
            metric: c.metric.clone(),
            scoring: c.scoring.clone(),
            reference: format!("{:.4}", c.reference),
            ours: value(c.ours),
            difference: c.difference.map_or("–".into(), |d| format!("{d:+.4}")),
            tolerance: format!("{}", c.tolerance),
            source: c.source.clone(),
            within: c.within,
        })
        .collect()
}

fn resource_row(e: &Entry) -> ResourceRow {
    let t = &e.run.timing;
    let parameters: u64 = e.run.encoders.iter().filter_map(|p| p.parameters).sum();
    let devices = unique(e.run.stages.iter().filter_map(|s| s.device.clone()));
    ResourceRow {
        label: e.label.clone(),
        n_samples: e.run.n_samples,
        wall_s: format!("{:.3}", t.wall_s),
        embed_s: format!("{:.3}", t.embed_s),
        knn_s: format!("{:.3}", t.knn_s),
        items_per_s: format!("{:.0}", t.items_per_s),
        peak_rss_mb: megabytes(
            e.run
                .stages
                .iter()
                .map(|s| s.peak_rss_mb)
                .fold(0.0, f64::max),
        ),
        parameters: if parameters > 0 {
            millions(parameters)
        } else {
            "–".into()
        },
        device: if devices.is_empty() {
            "cpu".into()
        } else {
            devices.join(", ")
        },
        cache: format!("{}/{}", e.run.cache.hits, e.run.cache.misses),
    }
}

/// Each distinct encoding (an encoder on one input), once.
fn encoder_rows(sorted: &[&Entry]) -> Vec<EncoderRow> {
    let mut rows: Vec<EncoderRow> = Vec::new();
    for e in sorted {
        for s in e.run.stages.iter().filter(|s| s.parameters.is_some()) {
            if rows.iter().any(|r| r.stage == s.stage) {
                continue;
            }
            rows.push(EncoderRow {
                stage: s.stage.clone(),
                parameters: s.parameters.map_or("–".into(), millions),
                device: s.device.clone().unwrap_or_else(|| "–".into()),
                items: s.items,
                seconds: format!("{:.2}", s.seconds),
                items_per_s: format!("{:.1}", s.items_per_s),
                peak_rss_mb: megabytes(s.peak_rss_mb),
            });
        }
    }
    rows
}

fn stage_rows(sorted: &[&Entry]) -> Vec<StageRow> {
    sorted
        .iter()
        .flat_map(|e| {
            e.run.stages.iter().map(|s| StageRow {
                label: e.label.clone(),
                stage: s.stage.clone(),
                items: s.items,
                seconds: format!("{:.3}", s.seconds),
                items_per_s: if s.items_per_s > 0.0 {
                    format!("{:.0}", s.items_per_s)
                } else {
                    "–".into()
                },
                peak_rss_mb: megabytes(s.peak_rss_mb),
                cached: s.cached,
            })
        })
        .collect()
}

fn search_words(entries: &[Entry<'_>]) -> String {
    let faiss = |e: &&Entry| {
        e.run
            .retrieval
            .as_ref()
            .is_some_and(|r| r.backend == "faiss")
    };
    match entries.iter().filter(faiss).count() {
        0 => "exact search".into(),
        n if n == entries.len() => "approximate search (faiss)".into(),
        _ => "exact search (approximate, with faiss, for the runs under Approximate search)".into(),
    }
}

fn approximate_rows(sorted: &[&Entry], k: usize) -> Vec<ApproximateRow> {
    let difference = |r: &super::results::RetrievalInfo, metric: Metric| {
        r.metric_differences
            .get(&metric.key(k))
            .map_or("–".into(), |d| format!("{d:+.4}"))
    };
    sorted
        .iter()
        .filter_map(|e| {
            let r = e.run.retrieval.as_ref().filter(|r| r.backend == "faiss")?;
            Some(ApproximateRow {
                label: e.label.clone(),
                index: r.index.clone().unwrap_or_default(),
                parameters: match r.parameters.as_deref() {
                    None | Some("") => "defaults".into(),
                    Some(p) => p.to_string(),
                },
                recall: value(r.recall_vs_exact),
                build_s: r.build_s.map_or("–".into(), |s| format!("{s:.3}")),
                search_s: format!("{:.3}", r.seconds),
                exact_s: r.exact_seconds.map_or("–".into(), |s| format!("{s:.3}")),
                mrr_difference: difference(r, Metric::Mrr),
                ndcg_difference: difference(r, Metric::Ndcg),
            })
        })
        .collect()
}

fn megabytes(mb: f64) -> String {
    if mb > 0.0 {
        format!("{mb:.0}")
    } else {
        "–".into()
    }
}

fn millions(parameters: u64) -> String {
    format!("{:.1}M", parameters as f64 / 1e6)
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A file-name-safe dataset name, made unique by its fingerprint.
fn slug(name: &str, fingerprint: &str) -> String {
    let short: String = fingerprint
        .rsplit(':')
        .next()
        .unwrap_or(fingerprint)
        .chars()
        .take(8)
        .collect();
    format!("{}-{short}", super::file_stem(name))
}

fn cutoff_tables(results: &Results) -> Vec<CutoffTable> {
    let k = results.provenance.k;
    let mrr = |r: &RunResult| r.metrics.get(&Metric::Mrr.key(k)).copied().unwrap_or(0.0);
    let mut runs: Vec<&RunResult> = results.runs.iter().collect();
    runs.sort_by(|a, b| mrr(b).total_cmp(&mrr(a)).then_with(|| a.name.cmp(&b.name)));
    results
        .provenance
        .cutoffs
        .iter()
        .map(|&cutoff| CutoffTable {
            cutoff,
            columns: Metric::ALL.iter().map(|m| m.name()).collect(),
            rows: runs
                .iter()
                .map(|run| {
                    let values = Metric::ALL
                        .iter()
                        .map(|m| value(run.metrics.get(&m.key(cutoff)).copied()))
                        .collect();
                    (run.name.clone(), values)
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_differences_read_like_the_paper() {
        assert_eq!(relative(0.535, 0.5), "+7.0%");
        assert_eq!(relative(0.45, 0.5), "−10.0%");
        assert_eq!(relative(0.5, 0.5), "");
        assert_eq!(relative(0.5, 0.0), "");
    }

    #[test]
    fn p_values_are_short() {
        assert_eq!(p_text(0.0004), "<0.001");
        assert_eq!(p_text(0.04567), "0.046");
        assert_eq!(p_relation(0.0004), "<0.001");
        assert_eq!(p_relation(0.04567), "=0.046");
    }
}
