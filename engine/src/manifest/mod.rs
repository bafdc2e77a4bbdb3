//! Manifests: what an experiment is, read from TOML and layered with overrides.
//!
//! Layers, later ones winning: the TOML file, `EMBEDLAB_SECTION__KEY=value` environment variables,
//! then `--set section.key=value` flags (figment merges them). The file is first checked alone so
//! that a typo or a wrong type is reported as `file:line:col` with a suggestion; an override's
//! error names the variable or flag. Then runs with a `sweep` expand into the cross product of
//! their values, everything is validated, and relative paths are resolved against the manifest's
//! folder. Output: a [`Manifest`] the planner can trust.

mod locate;
pub mod schema;
mod sweep;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Serialized};

pub use locate::{KeyPath, Location};
pub use schema::{Backend, CaptionSource, Captions, DatasetFormat, Modality};
use schema::{DatasetTable, ManifestFile, Part, Run, RunRetrieval};

use crate::digest::{Digest, Hasher};
use crate::metrics::Metric;

/// What went wrong reading a manifest; every message names where.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read manifest: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax errors, unknown keys, wrong types and bad values, located in the file.
    #[error("{location}: {message}")]
    At { location: Location, message: String },
    /// A problem in an environment variable or `--set` flag.
    #[error("{origin}: {message}")]
    Override { origin: String, message: String },
    #[error("--set {0}: expected key.path=value")]
    BadSet(String),
}

/// A validated experiment, paths absolute, sweeps expanded.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub path: PathBuf,
    /// Digest of the manifest after all overrides (provenance).
    pub digest: Digest,
    pub experiment: schema::Experiment,
    pub dataset: DatasetTable,
    pub retrieval: schema::Retrieval,
    /// Sorted, de-duplicated metric cutoffs, each in `1..=retrieval.k`.
    pub cutoffs: Vec<usize>,
    /// `[metrics]`: per-query output, article-compatible scoring, intervals and tests
    /// (`significance` filled in with its default; use `cutoffs` above, not `metrics.cutoffs`).
    pub metrics: schema::Metrics,
    pub references: Vec<schema::Reference>,
    pub encoders: std::collections::BTreeMap<String, schema::Encoder>,
    pub captioners: std::collections::BTreeMap<String, schema::Encoder>,
    pub runs: Vec<Run>,
    /// For each run, the index of the `[[runs]]` table it was expanded from.
    origins: Vec<usize>,
}

impl Manifest {
    /// Seed of the dataset subsample.
    pub fn dataset_seed(&self) -> u64 {
        self.dataset.seed.unwrap_or(self.experiment.seed)
    }

    /// The caption source and seed of a caption part: the part's, else the run's, else `concat`.
    pub fn caption_source(&self, run: &Run, part: &Part) -> (Captions, u64) {
        let source = (part.captions.clone())
            .or_else(|| run.captions.clone())
            .unwrap_or(Captions::Human(CaptionSource::Concat));
        (source, run.caption_seed.unwrap_or(self.experiment.seed))
    }

    /// How `run` searches: its own `retrieval` table over `[retrieval]`, defaults filled in.
    pub fn search(&self, run: &Run) -> Search {
        let own = run.retrieval.clone().unwrap_or_default();
        let global = &self.retrieval;
        match own.backend.unwrap_or(global.backend) {
            Backend::Exact => Search::Exact,
            Backend::Faiss => {
                let parameters = own.parameters.or_else(|| global.parameters.clone());
                let parameters =
                    crate::retrieval::parse_parameters(parameters.as_deref().unwrap_or(""))
                        .expect("validated: parameters parse");
                Search::Faiss {
                    index: (own.index.or_else(|| global.index.clone()))
                        .unwrap_or_else(|| DEFAULT_FAISS_INDEX.to_string()),
                    parameters: crate::retrieval::canonical_parameters(&parameters),
                    compare_exact: own.compare_exact.or(global.compare_exact).unwrap_or(true),
                }
            }
        }
    }

    /// Whether any part encodes images or any caption part's captions are generated from them.
    pub fn uses_images(&self) -> bool {
        self.runs.iter().any(|run| {
            run.parts
                .iter()
                .filter(|p| p.encoder.is_some())
                .any(|part| {
                    part.input == Some(Modality::Image)
                        || matches!(self.caption_source(run, part).0, Captions::Generated { .. })
                })
        })
    }
}

/// The longest run name: it names the run's per-query file, and with the suffixes of its atomic
/// write that must fit the usual 255-byte limit on a file name.
pub(crate) const MAX_RUN_NAME_BYTES: usize = 200;

/// The faiss index of `backend = "faiss"` when `index` is not given.
pub const DEFAULT_FAISS_INDEX: &str = "HNSW32";

/// A run's search, resolved from `[retrieval]` and the run's own `retrieval` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Search {
    /// The exact backend (blocked GEMM).
    Exact,
    /// faiss: an index-factory string, its `ParameterSpace` settings in canonical form
    /// (`efSearch=128`, possibly empty), and whether to compare with the exact neighbours.
    Faiss {
        index: String,
        parameters: String,
        compare_exact: bool,
    },
}

/// Overrides applied on top of the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Read `EMBEDLAB_SECTION__KEY` variables.
    pub env: bool,
    /// `key.path=value` pairs, applied in order.
    pub sets: Vec<String>,
    /// Accept an encoder's or captioner's `plugin` given as a library path rather than a plugin
    /// name (`--allow-plugin-path`): loading it runs its code, so by default a manifest can only
    /// name plugins from the folders the user configured.
    pub allow_plugin_paths: bool,
}

/// Reads, layers, expands, validates and resolves a manifest.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, overrides)
}

/// [`load`] of a manifest's `text`: `path` names it in errors and relative paths resolve against
/// its folder; no file is read.
pub fn parse(text: &str, path: &Path, overrides: &Overrides) -> Result<Manifest, ManifestError> {
    let file = check_file_alone(path, text)?;
    let layered = layer(file, overrides)?;
    let ctx = Context { path, text };
    let digest = manifest_digest(&layered);
    let (origins, runs) = sweep::expand(&layered.runs, &ctx)?.into_iter().unzip();
    let mut manifest = Manifest {
        path: path.to_path_buf(),
        digest,
        cutoffs: Vec::new(),
        metrics: layered.metrics.clone(),
        references: layered.references,
        experiment: layered.experiment,
        dataset: layered.dataset,
        retrieval: layered.retrieval,
        encoders: layered.encoders,
        captioners: layered.captioners,
        runs,
        origins,
    };
    manifest.cutoffs = validate(&manifest, &layered.metrics.cutoffs, &ctx)?;
    validate_statistics(&mut manifest, &ctx)?;
    validate_references(&manifest, &ctx)?;
    validate_plugins(&manifest, overrides.allow_plugin_paths, &ctx)?;
    resolve_paths(&mut manifest);
    Ok(manifest)
}

/// The manifest text and name, for locating errors.
pub(crate) struct Context<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Context<'_> {
    pub fn error(&self, key: &KeyPath, message: impl std::fmt::Display) -> ManifestError {
        ManifestError::At {
            location: Location::of_key(self.path, self.text, key),
            message: format!("{key}: {message}"),
        }
    }
}

/// Parses the file by itself, so its errors carry exact positions; returns it as the table the
/// overrides layer onto.
fn check_file_alone(path: &Path, text: &str) -> Result<toml::Table, ManifestError> {
    let located = |err: toml::de::Error| {
        let offset = err.span().map_or(0, |s| s.start);
        let mut message = err.message().trim().replace('\n', " ");
        if let Some(right) = locate::suggestion(&message) {
            message.push_str(&format!("; did you mean `{right}`?"));
        }
        ManifestError::At {
            location: Location::at_offset(path, text, offset),
            message,
        }
    };
    toml::from_str::<ManifestFile>(text).map_err(located)?;
    toml::from_str(text).map_err(located)
}

/// The file's table, then the overrides. The table is the one the check parsed, not figment's
/// TOML provider's: that one reads TOML 1.0 and refused what the check accepts from TOML 1.1 (a
/// `\e` escape, a newline in an inline table), with an error that blamed an override.
fn layer(file: toml::Table, overrides: &Overrides) -> Result<ManifestFile, ManifestError> {
    let mut figment = Figment::from(Serialized::defaults(file));
    if overrides.env {
        figment = figment.merge(manifest_env());
    }
    for set in &overrides.sets {
        let (key, value) = parse_set(set)?;
        figment = figment.merge(Serialized::default(key, value));
    }
    figment.extract().map_err(override_error)
}

/// Only variables with a `__` section separator are manifest keys, so `EMBEDLAB_CACHE_DIR` and
/// friends stay CLI settings.
fn manifest_env() -> Env {
    Env::prefixed("EMBEDLAB_")
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

fn parse_set(set: &str) -> Result<(&str, figment::value::Value), ManifestError> {
    let (key, raw) = set
        .split_once('=')
        .ok_or_else(|| ManifestError::BadSet(set.to_string()))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ManifestError::BadSet(set.to_string()));
    }
    let value = raw.trim().parse().unwrap_or_else(|_| raw.trim().into());
    Ok((key, value))
}

fn override_error(err: figment::Error) -> ManifestError {
    use figment::error::Kind;
    let from_env = err
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let origin = if from_env {
        format!(
            "environment variable EMBEDLAB_{}",
            err.path.join("__").to_uppercase()
        )
    } else {
        format!("--set {}", err.path.join("."))
    };
    let mut message = err.kind.to_string();
    if let Kind::UnknownField(field, expected) | Kind::UnknownVariant(field, expected) = &err.kind
        && let Some(right) = locate::closest(field, expected.iter().copied())
    {
        message.push_str(&format!("; did you mean `{right}`?"));
    }
    ManifestError::Override { origin, message }
}

fn manifest_digest(layered: &ManifestFile) -> Digest {
    let json = serde_json::to_string(layered).expect("manifest serialises");
    Hasher::new("manifest").str(&json).finish()
}

/// Checks what the schema cannot express; returns the metric cutoffs.
fn validate(m: &Manifest, cutoffs: &[usize], ctx: &Context) -> Result<Vec<usize>, ManifestError> {
    let root = KeyPath::default();
    let name = &m.experiment.name;
    if name.is_empty() || name.starts_with('.') || !name.chars().all(is_name_char) {
        return Err(ctx.error(
            &root.clone().name("experiment").name("name"),
            "use letters, digits, '-', '_' or '.' (it names the report folder)",
        ));
    }
    validate_dataset(&m.dataset, ctx)?;
    let retrieval = root.clone().name("retrieval");
    if m.retrieval.k == 0 {
        return Err(ctx.error(&retrieval.name("k"), "must be at least 1"));
    }
    if m.retrieval.query_block == 0 {
        return Err(ctx.error(&retrieval.clone().name("query_block"), "must be at least 1"));
    }
    let global = m.retrieval.choice();
    validate_retrieval(&global, &global, &retrieval, &retrieval, ctx)?;
    let cutoffs = validate_cutoffs(cutoffs, m.retrieval.k, ctx)?;
    for name in m.captioners.keys() {
        if name.is_empty() || name.starts_with('.') || !name.chars().all(is_name_char) {
            return Err(ctx.error(
                &root.clone().name("captioners").name(name),
                "use letters, digits, '-', '_' or '.' (it names the captions file)",
            ));
        }
    }
    if m.runs.is_empty() {
        return Err(ctx.error(&root.name("runs"), "declare at least one [[runs]]"));
    }
    let mut names = BTreeSet::new();
    for (i, run) in m.runs.iter().enumerate() {
        let at = root.clone().name("runs").index(m.origins[i]);
        if !names.insert(&run.name) {
            return Err(ctx.error(
                &at.name("name"),
                format!("duplicate run name \"{}\"", run.name),
            ));
        }
        validate_run(run, &at, m, ctx)?;
    }
    Ok(cutoffs)
}

/// Every `plugin` is a plugin name, or, when `allow_paths`, a library path.
fn validate_plugins(m: &Manifest, allow_paths: bool, ctx: &Context) -> Result<(), ManifestError> {
    let tables = [("encoders", &m.encoders), ("captioners", &m.captioners)];
    for (section, table) in tables {
        for (name, encoder) in table {
            let at = KeyPath::default().name(section).name(name).name("plugin");
            let plugin = &encoder.plugin;
            let refusal = match crate::plugin::is_path(plugin) {
                true if !allow_paths => format!(
                    "{plugin:?} is a file path; plugins load only from the plugin folders \
                     (--plugin-dir, {}, the binary's folder): name the plugin, or pass \
                     --allow-plugin-path to load this library",
                    crate::plugin::PATH_VAR
                ),
                false if !crate::plugin::valid_name(plugin) => {
                    format!("invalid plugin name {plugin:?}: use letters, digits, '_' and '-'")
                }
                _ => continue,
            };
            return Err(ctx.error(&at, refusal));
        }
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn validate_dataset(d: &DatasetTable, ctx: &Context) -> Result<(), ManifestError> {
    let at = KeyPath::default().name("dataset");
    let wrong_key = |key: &str, why: &str| ctx.error(&at.clone().name(key), why.to_string());
    let oiv7_key = [
        ("labels", !d.labels.is_empty()),
        ("classes", d.classes.is_some()),
        ("narratives", !d.narratives.is_empty()),
        ("outlier_std", d.outlier_std.is_some()),
    ]
    .into_iter()
    .find_map(|(key, used)| used.then_some(key));
    if d.format != schema::DatasetFormat::Oiv7
        && let Some(key) = oiv7_key
    {
        return Err(wrong_key(key, &format!("`{key}` is for format \"oiv7\"")));
    }
    match d.format {
        schema::DatasetFormat::Jsonl => {
            if d.path.is_none() {
                return Err(wrong_key(
                    "path",
                    "format \"jsonl\" needs `path` (the samples file)",
                ));
            }
            if !d.captions.is_empty() || !d.instances.is_empty() {
                return Err(wrong_key(
                    "format",
                    "`captions`/`instances` files are for format \"coco\"",
                ));
            }
        }
        schema::DatasetFormat::Coco => {
            if d.instances.is_empty() {
                return Err(wrong_key(
                    "instances",
                    "format \"coco\" needs `instances` files (labels)",
                ));
            }
            if d.path.is_some() {
                return Err(wrong_key(
                    "path",
                    "`path` is for format \"jsonl\"; coco uses `captions` and `instances`",
                ));
            }
        }
        schema::DatasetFormat::Oiv7 => validate_oiv7(d, &wrong_key)?,
    }
    if d.min_label_set_count == 0 {
        return Err(wrong_key("min_label_set_count", "must be at least 1"));
    }
    if d.limit.is_some_and(|l| l < d.min_label_set_count.max(2)) {
        return Err(wrong_key(
            "limit",
            "too small to keep any label set with a relevant neighbour",
        ));
    }
    Ok(())
}

fn validate_oiv7(
    d: &DatasetTable,
    wrong_key: &impl Fn(&str, &str) -> ManifestError,
) -> Result<(), ManifestError> {
    if !cfg!(feature = "oiv7") {
        return Err(wrong_key("format", crate::dataset::OIV7_MISSING));
    }
    if d.labels.is_empty() {
        return Err(wrong_key(
            "labels",
            "format \"oiv7\" needs `labels` (image-level labels CSV files)",
        ));
    }
    if d.classes.is_none() {
        return Err(wrong_key(
            "classes",
            "format \"oiv7\" needs `classes` (the class descriptions CSV)",
        ));
    }
    if d.path.is_some() {
        return Err(wrong_key(
            "path",
            "`path` is for format \"jsonl\"; oiv7 uses `labels`, `classes` and `narratives`",
        ));
    }
    if !d.captions.is_empty() || !d.instances.is_empty() {
        return Err(wrong_key(
            "format",
            "`captions`/`instances` files are for format \"coco\"; oiv7 uses `labels`, \
             `classes` and `narratives`",
        ));
    }
    if let Some(k) = d.outlier_std
        && !(k.is_finite() && k > 0.0)
    {
        return Err(wrong_key(
            "outlier_std",
            &format!("must be a positive number (got {k})"),
        ));
    }
    Ok(())
}

/// Intervals and tests need sane levels and metric keys the runs report.
fn validate_statistics(m: &mut Manifest, ctx: &Context) -> Result<(), ManifestError> {
    let at = KeyPath::default().name("metrics");
    for (key, value) in [
        ("confidence", m.metrics.confidence),
        ("alpha", m.metrics.alpha),
    ] {
        if !(value > 0.0 && value < 1.0) {
            return Err(ctx.error(&at.clone().name(key), "must lie strictly between 0 and 1"));
        }
    }
    if m.metrics.significance.is_empty() {
        m.metrics.significance = vec![Metric::Mrr.key(m.retrieval.k)];
    }
    for key in &m.metrics.significance {
        check_metric_key(key, &m.cutoffs, ctx, &at.clone().name("significance"))?;
    }
    Ok(())
}

/// Each `[[reference]]` names a run and a metric the run reports.
fn validate_references(m: &Manifest, ctx: &Context) -> Result<(), ManifestError> {
    for (i, reference) in m.references.iter().enumerate() {
        let at = KeyPath::default().name("reference").index(i);
        if !m.runs.iter().any(|r| r.name == reference.run) {
            let names: Vec<&str> = m.runs.iter().map(|r| r.name.as_str()).collect();
            return Err(ctx.error(
                &at.name("run"),
                format!(
                    "no run is named \"{}\"{}",
                    reference.run,
                    suggest(&reference.run, names.iter().copied())
                ),
            ));
        }
        let metric = check_metric_key(
            &reference.metric,
            &m.cutoffs,
            ctx,
            &at.clone().name("metric"),
        )?;
        if reference.tolerance.is_nan() || reference.tolerance < 0.0 {
            return Err(ctx.error(&at.name("tolerance"), "must be 0 or more"));
        }
        if reference.scoring == Some(schema::Scoring::Article) {
            if !m.metrics.article_compatible {
                return Err(ctx.error(
                    &at.name("scoring"),
                    "article scoring needs `[metrics] article_compatible = true`",
                ));
            }
            if !metric.from_flags_alone() {
                return Err(ctx.error(
                    &at.name("metric"),
                    "the study's scorer reports only mrr, map_list, ndcg_list, precision and hit_rate",
                ));
            }
        }
    }
    Ok(())
}

/// A metric key such as `mrr@10` whose cutoff is one of `cutoffs`.
fn check_metric_key(
    key: &str,
    cutoffs: &[usize],
    ctx: &Context,
    at: &KeyPath,
) -> Result<Metric, ManifestError> {
    let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let Some((metric, cutoff)) = Metric::parse_key(key) else {
        let name = key.split('@').next().unwrap_or(key);
        return Err(ctx.error(
            at,
            format!(
                "\"{key}\" is not a metric key like mrr@10 (metrics: {}){}",
                names.join(", "),
                suggest(name, names.iter().copied())
            ),
        ));
    };
    if !cutoffs.contains(&cutoff) {
        return Err(ctx.error(
            at,
            format!(
                "\"{key}\": {cutoff} is not one of the cutoffs {cutoffs:?} ([metrics] cutoffs)"
            ),
        ));
    }
    Ok(metric)
}

fn validate_cutoffs(
    cutoffs: &[usize],
    k: usize,
    ctx: &Context,
) -> Result<Vec<usize>, ManifestError> {
    let at = KeyPath::default().name("metrics").name("cutoffs");
    if let Some(bad) = cutoffs.iter().find(|&&c| c == 0 || c > k) {
        return Err(ctx.error(
            &at,
            format!("cutoff {bad} is outside 1..={k} (retrieval.k)"),
        ));
    }
    let mut sorted: Vec<usize> = if cutoffs.is_empty() {
        vec![k]
    } else {
        cutoffs.to_vec()
    };
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted)
}

fn validate_run(run: &Run, at: &KeyPath, m: &Manifest, ctx: &Context) -> Result<(), ManifestError> {
    if run.name.is_empty() {
        return Err(ctx.error(&at.clone().name("name"), "must not be empty"));
    }
    if run.name.len() > MAX_RUN_NAME_BYTES {
        return Err(ctx.error(
            &at.clone().name("name"),
            format!("longer than {MAX_RUN_NAME_BYTES} bytes (it names the run's files)"),
        ));
    }
    if run.parts.is_empty() {
        return Err(ctx.error(&at.clone().name("parts"), "declare at least one part"));
    }
    validate_captions(run.captions.as_ref(), &at.clone().name("captions"), m, ctx)?;
    if let Some(own) = &run.retrieval {
        let global = m.retrieval.choice();
        let root = KeyPath::default().name("retrieval");
        validate_retrieval(own, &global, &at.clone().name("retrieval"), &root, ctx)?;
    }
    for (p, part) in run.parts.iter().enumerate() {
        let at = at.clone().name("parts").index(p);
        validate_captions(part.captions.as_ref(), &at.clone().name("captions"), m, ctx)?;
        validate_part(part, &at, m, ctx)?;
    }
    Ok(())
}

/// A retrieval table (`own`, at `at`: `[retrieval]` or a run's `retrieval`) over the
/// experiment's (`global`, at `global_at`; the same table for `[retrieval]` itself). The faiss
/// keys belong to backend "faiss"; that backend needs the feature; faiss must accept the index
/// string and parameters (checked with the feature only), each error located at the key that
/// set the value.
fn validate_retrieval(
    own: &RunRetrieval,
    global: &RunRetrieval,
    at: &KeyPath,
    global_at: &KeyPath,
    ctx: &Context,
) -> Result<(), ManifestError> {
    let backend = own.backend.or(global.backend).unwrap_or_default();
    if backend != Backend::Faiss {
        let faiss_key = [
            ("index", own.index.is_some()),
            ("parameters", own.parameters.is_some()),
            ("compare_exact", own.compare_exact.is_some()),
        ]
        .into_iter()
        .find_map(|(key, used)| used.then_some(key));
        return match faiss_key {
            Some(key) => Err(ctx.error(
                &at.clone().name(key),
                format!("`{key}` is for backend = \"faiss\""),
            )),
            None => Ok(()),
        };
    }
    if !cfg!(feature = "faiss") {
        let backend_at = if own.backend.is_some() { at } else { global_at };
        return Err(ctx.error(
            &backend_at.clone().name("backend"),
            crate::retrieval::FAISS_MISSING,
        ));
    }
    // Each value is located where it was set: the run's table, else `[retrieval]`.
    let set_at = |ours: bool, key: &str| if ours { at } else { global_at }.clone().name(key);
    let index = (own.index.clone())
        .or_else(|| global.index.clone())
        .unwrap_or_else(|| DEFAULT_FAISS_INDEX.to_string());
    let index_at = set_at(own.index.is_some(), "index");
    let parameters = (own.parameters.clone())
        .or_else(|| global.parameters.clone())
        .unwrap_or_default();
    let parameters_at = set_at(own.parameters.is_some(), "parameters");
    if let Err(message) = crate::retrieval::parse_parameters(&parameters) {
        return Err(ctx.error(&parameters_at, message));
    }
    check_faiss(&index, &parameters).map_err(|(is_index, message)| {
        ctx.error(if is_index { &index_at } else { &parameters_at }, message)
    })
}

/// Whether faiss accepts the index string and parameters; on refusal, whether the index string
/// (rather than the parameters) is at fault, and faiss's message.
#[cfg(feature = "faiss")]
fn check_faiss(index: &str, parameters: &str) -> Result<(), (bool, String)> {
    use crate::retrieval::RetrievalError;
    crate::retrieval::faiss::check(index, parameters).map_err(|e| {
        let is_index = !matches!(e, RetrievalError::FaissParameters { .. });
        (is_index, e.to_string())
    })
}

#[cfg(not(feature = "faiss"))]
fn check_faiss(_index: &str, _parameters: &str) -> Result<(), (bool, String)> {
    unreachable!("a build without faiss refuses backend = \"faiss\" first")
}

/// Generated captions must name a `[captioners.NAME]` table.
fn validate_captions(
    captions: Option<&schema::Captions>,
    at: &KeyPath,
    m: &Manifest,
    ctx: &Context,
) -> Result<(), ManifestError> {
    let Some(schema::Captions::Generated { generate }) = captions else {
        return Ok(());
    };
    if m.captioners.contains_key(generate) {
        return Ok(());
    }
    let hint = suggest(generate, m.captioners.keys().map(String::as_str));
    Err(ctx.error(
        &at.clone().name("generate"),
        format!("no [captioners.{generate}] table{hint}"),
    ))
}

/// `; did you mean "x"?` for the candidate closest to `wrong`, or nothing.
fn suggest<'c>(wrong: &str, candidates: impl Iterator<Item = &'c str>) -> String {
    locate::closest(wrong, candidates)
        .map(|n| format!("; did you mean \"{n}\"?"))
        .unwrap_or_default()
}

fn validate_part(
    part: &Part,
    at: &KeyPath,
    m: &Manifest,
    ctx: &Context,
) -> Result<(), ManifestError> {
    match (&part.precomputed, &part.encoder) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ctx.error(at, "a part needs exactly one of `precomputed` or `encoder`"));
        }
        (None, Some(name)) => {
            if !m.encoders.contains_key(name) {
                let hint = suggest(name, m.encoders.keys().map(String::as_str));
                return Err(ctx.error(
                    &at.clone().name("encoder"),
                    format!("no [encoders.{name}] table{hint}"),
                ));
            }
            if part.ids.is_some() {
                return Err(ctx.error(
                    &at.clone().name("ids"),
                    "`ids` belongs to a `precomputed` part",
                ));
            }
        }
        (Some(_), None) => {
            if part.input.is_some() {
                return Err(ctx.error(
                    &at.clone().name("input"),
                    "`input` belongs to an `encoder` part",
                ));
            }
        }
    }
    if !(part.weight.is_finite() && part.weight > 0.0) {
        return Err(ctx.error(
            &at.clone().name("weight"),
            format!("must be > 0 (got {})", part.weight),
        ));
    }
    Ok(())
}

fn resolve_paths(m: &mut Manifest) {
    let base = m.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = std::path::absolute(&base).unwrap_or(base);
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    let d = &mut m.dataset;
    d.path
        .iter_mut()
        .chain(d.images.iter_mut())
        .chain(d.classes.iter_mut())
        .for_each(resolve);
    d.captions
        .iter_mut()
        .chain(d.instances.iter_mut())
        .chain(d.labels.iter_mut())
        .chain(d.narratives.iter_mut())
        .for_each(resolve);
    // A plugin given as a path (validate_plugins allowed it) is relative to the manifest too.
    let tables = m.encoders.values_mut().chain(m.captioners.values_mut());
    for encoder in tables.filter(|e| crate::plugin::is_path(&e.plugin)) {
        encoder.plugin = base.join(&encoder.plugin).display().to_string();
    }
    for part in m.runs.iter_mut().flat_map(|r| r.parts.iter_mut()) {
        part.precomputed
            .iter_mut()
            .chain(part.ids.iter_mut())
            .for_each(resolve);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[experiment]
name = "demo"
seed = 7

[dataset]
format = "jsonl"
path = "data/samples.jsonl"

[retrieval]
k = 5

[[runs]]
name = "text"
parts = [{ precomputed = "vectors/text.npy" }]
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn load_text(text: &str, sets: &[&str]) -> Result<Manifest, ManifestError> {
        let (_dir, path) = write(text);
        let overrides = Overrides {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Overrides::default()
        };
        load(&path, &overrides)
    }

    fn error(text: &str, sets: &[&str]) -> String {
        load_text(text, sets).unwrap_err().to_string()
    }

    #[test]
    fn statistics_default_and_are_checked() {
        let m = load_text(BASE, &[]).unwrap();
        assert_eq!(m.metrics.significance, ["mrr@5"]);
        assert_eq!((m.metrics.bootstrap, m.metrics.permutations), (1000, 1000));
        assert!(!m.metrics.article_compatible);
        let text = format!(
            "{BASE}\n[metrics]\ncutoffs = [1, 5]\nsignificance = [\"map@1\", \"ndgc@5\"]\n"
        );
        let err = error(&text, &[]);
        assert!(
            err.contains("m.toml:") && err.contains("metrics.significance"),
            "{err}"
        );
        assert!(
            err.contains("\"ndgc@5\" is not a metric key")
                && err.contains("did you mean \"ndcg\"?"),
            "{err}"
        );
        let err = error(&text.replace("ndgc@5", "mrr@10"), &[]);
        assert!(err.contains("10 is not one of the cutoffs [1, 5]"), "{err}");
        let err = error(BASE, &["metrics.confidence=1.5"]);
        assert!(
            err.contains("metrics.confidence: must lie strictly between 0 and 1"),
            "{err}"
        );
    }

    #[test]
    fn references_name_runs_and_metrics_they_can_compare() {
        let reference = |body: &str| format!("{BASE}\n[[reference]]\nrun = \"text\"\n{body}\n");
        let m = load_text(&reference("metric = \"mrr@5\"\nvalue = 0.5"), &[]).unwrap();
        assert_eq!(
            (m.references[0].tolerance, m.references[0].scoring),
            (0.001, None)
        );
        let err = error(
            &reference("metric = \"mrr@5\"\nvalue = 0.5\nscoring = \"article\""),
            &[],
        );
        assert!(
            err.contains(
                "reference[0].scoring: article scoring needs `[metrics] article_compatible = true`"
            ),
            "{err}"
        );
        let err = error(
            &reference("metric = \"recall@5\"\nvalue = 0.5\nscoring = \"article\""),
            &["metrics.article_compatible=true"],
        );
        assert!(
            err.contains("reference[0].metric: the study's scorer reports only"),
            "{err}"
        );
        let err = error(
            &reference("metric = \"mrr@5\"\nvalue = 0.5\ntolerance = -1"),
            &[],
        );
        assert!(
            err.contains("reference[0].tolerance: must be 0 or more"),
            "{err}"
        );
        let err = error(&reference("metric = \"mrr@5\"\nvalu = 0.5"), &[]);
        assert!(err.contains("unknown field `valu`"), "{err}");
    }

    #[test]
    fn loads_defaults_and_resolves_paths_against_the_manifest_folder() {
        let (dir, path) = write(BASE);
        let m = load(&path, &Overrides::default()).unwrap();
        assert_eq!(m.retrieval.k, 5);
        assert_eq!(m.cutoffs, [5]);
        assert_eq!(m.dataset.min_label_set_count, 2);
        assert_eq!(m.dataset_seed(), 7);
        let expected = std::path::absolute(dir.path())
            .unwrap()
            .join("data/samples.jsonl");
        assert_eq!(m.dataset.path.as_deref(), Some(expected.as_path()));
        assert!(
            m.runs[0].parts[0]
                .precomputed
                .as_ref()
                .unwrap()
                .is_absolute()
        );
        assert!(m.runs[0].normalize_parts);
    }

    #[test]
    fn captions_are_a_human_source_or_generated_by_a_captioner() {
        let with = |captions: &str| {
            BASE.replace(
                "name = \"text\"",
                &format!("name = \"text\"\ncaptions = {captions}"),
            ) + "\n[captioners.blip]\nplugin = \"candle\"\nmodel = \"m\"\nnum_beams = 3\n"
        };
        let m = load_text(&with("\"random\""), &[]).unwrap();
        let (source, seed) = m.caption_source(&m.runs[0], &m.runs[0].parts[0]);
        assert_eq!((source, seed), (Captions::Human(CaptionSource::Random), 7));
        assert!(!m.uses_images(), "a precomputed part reads no images");
        let m = load_text(&with("{ generate = \"blip\" }"), &[]).unwrap();
        let generated = Captions::Generated {
            generate: "blip".into(),
        };
        assert_eq!(m.runs[0].captions, Some(generated));
        assert_eq!(m.captioners["blip"].options["num_beams"], 3.into());

        let err = error(&with("\"human\""), &[]);
        assert!(
            err.contains(
                "m.toml:15:12: unknown variant `human`, expected one of `concat`, `random`, `first`"
            ),
            "{err}"
        );
        let err = error(&with("{ generated = \"blip\" }"), &[]);
        assert!(
            err.contains("unknown field `generated`, expected `generate`"),
            "{err}"
        );
        let err = error(&with("{ generate = \"blips\" }"), &[]);
        assert!(
            err.contains(
                "runs[0].captions.generate: no [captioners.blips] table; did you mean \"blip\"?"
            ),
            "{err}"
        );
    }

    #[test]
    fn misspelt_key_names_line_column_and_suggestion() {
        let err = error(
            &BASE.replace("[retrieval]\nk = 5", "[retrieval]\nkk = 5"),
            &[],
        );
        assert!(err.contains("m.toml:11:1: unknown field `kk`"), "{err}");
        assert!(err.contains("did you mean `k`?"), "{err}");
    }

    #[test]
    fn plugins_given_as_paths_need_the_flag_and_are_relative_to_the_manifest() {
        let text =
            BASE.to_string() + "\n[encoders.x]\nplugin = \"lib/libembedlab_x.so\"\nmodel = \"m\"\n";
        let err = error(&text, &[]);
        assert!(
            err.contains(
                "m.toml:18:10: encoders.x.plugin: \"lib/libembedlab_x.so\" is a file path"
            ) && err.contains("--allow-plugin-path"),
            "{err}"
        );
        let (dir, path) = write(&text);
        let allowed = Overrides {
            allow_plugin_paths: true,
            ..Overrides::default()
        };
        let loaded = load(&path, &allowed).unwrap();
        let expected = std::path::absolute(dir.path().join("lib/libembedlab_x.so")).unwrap();
        assert_eq!(Path::new(&loaded.encoders["x"].plugin), expected);

        let bad_name = text.replace("lib/libembedlab_x.so", "x y");
        let err = error(&bad_name, &[]);
        assert!(
            err.contains("m.toml:18:10: encoders.x.plugin: invalid plugin name \"x y\""),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let err = error(&BASE.replace("k = 5", "k = \"five\""), &[]);
        assert!(
            err.contains("m.toml:11:5: invalid type: string \"five\""),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let err = error(&BASE.replace("seed = 7", "seed = = 7"), &[]);
        assert!(err.contains("m.toml:4:"), "{err}");
    }

    #[test]
    fn run_names_fit_a_file_name() {
        let named = |name: &str| BASE.replace("name = \"text\"", &format!("name = \"{name}\""));
        assert!(load_text(&named(&"é".repeat(100)), &[]).is_ok());
        let err = error(&named(&"x".repeat(201)), &[]);
        assert!(
            err.ends_with(
                "m.toml:14:8: runs[0].name: longer than 200 bytes (it names the run's files)"
            ),
            "{err}"
        );
    }

    #[test]
    fn toml_1_1_reaches_the_layers_as_checked() {
        // Found by the `manifest` fuzz target: TOML 1.1 (a `\e` escape; a newline in an inline
        // table) passed the check of the file alone, then figment's toml, which reads TOML 1.0,
        // refused it and the error blamed "--set ".
        let text =
            BASE.replace(
                "name = \"demo\"",
                "name = \"demo\"\ndescription = \"\\e[1mbold\"",
            )
            .replace(
                "parts = [{ precomputed = \"vectors/text.npy\" }]",
                "parts = [{\n  precomputed = \"vectors/text.npy\",\n  weight = 2.0,\n}]",
            ) + "\n[encoders.e]\nplugin = \"p\"\nmodel = \"m\"\nsince = 1979-05-27T07:32:00Z\n";
        let m = load_text(&text, &[]).unwrap();
        assert_eq!(m.experiment.description, "\u{1b}[1mbold");
        assert_eq!(m.runs[0].parts[0].weight, 2.0);
        let since = &m.encoders["e"].options["since"];
        assert_eq!(
            since.as_datetime().unwrap().to_string(),
            "1979-05-27T07:32:00Z"
        );
        let m = load_text(&text, &["experiment.seed=9"]).unwrap();
        assert_eq!((m.experiment.seed, m.runs[0].parts[0].weight), (9, 2.0));
    }

    #[test]
    fn set_overrides_the_file_and_changes_the_digest() {
        let plain = load_text(BASE, &[]).unwrap();
        let m = load_text(BASE, &["retrieval.k=20", "dataset.limit=100"]).unwrap();
        assert_eq!(m.retrieval.k, 20);
        assert_eq!(m.dataset.limit, Some(100));
        assert_ne!(plain.digest, m.digest);
        assert_eq!(plain.digest, load_text(BASE, &[]).unwrap().digest);
    }

    #[test]
    fn bad_set_names_the_flag_and_suggests() {
        let err = error(BASE, &["retrieval.kk=3"]);
        assert!(err.starts_with("--set retrieval"), "{err}");
        assert!(err.contains("did you mean `k`?"), "{err}");
        let err = error(BASE, &["retrieval.k=many"]);
        assert!(err.contains("--set retrieval.k"), "{err}");
        assert!(error(BASE, &["no-equals-sign"]).contains("expected key.path=value"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
    fn environment_variables_layer_between_file_and_flags() {
        let (_dir, path) = write(BASE);
        let both = Overrides {
            env: true,
            sets: vec!["retrieval.query_block=64".into()],
            ..Overrides::default()
        };
        let mut loaded = None;
        figment::Jail::expect_with(|jail| {
            jail.set_env("EMBEDLAB_RETRIEVAL__K", "3");
            jail.set_env("EMBEDLAB_CACHE_DIR", "/elsewhere"); // a CLI setting, not a manifest key
            loaded = Some(load(&path, &both).unwrap());
            Ok(())
        });
        let m = loaded.unwrap();
        assert_eq!((m.retrieval.k, m.retrieval.query_block), (3, 64));
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let err = error(&BASE.replace("k = 5", "k = 0"), &[]);
        assert!(
            err.contains("m.toml:11:5: retrieval.k: must be at least 1"),
            "{err}"
        );

        let dup =
            format!("{BASE}\n[[runs]]\nname = \"text\"\nparts = [{{ precomputed = \"b.npy\" }}]\n");
        let err = error(&dup, &[]);
        assert!(
            err.contains(":18:8: runs[1].name: duplicate run name \"text\""),
            "{err}"
        );

        let neg = BASE.replace("text.npy\" }", "text.npy\", weight = -0.5 }");
        assert!(error(&neg, &[]).contains("runs[0].parts[0].weight: must be > 0 (got -0.5)"));

        let enc = BASE.replace("precomputed = \"vectors/text.npy\"", "encoder = \"minlm\"")
            + "\n[encoders.minilm]\nplugin = \"candle\"\nmodel = \"m\"\n";
        let err = error(&enc, &[]);
        assert!(
            err.contains("no [encoders.minlm] table; did you mean \"minilm\"?"),
            "{err}"
        );

        let cut = BASE.replace("k = 5", "k = 5\n[metrics]\ncutoffs = [1, 9]");
        assert!(error(&cut, &[]).contains("cutoff 9 is outside 1..=5"));
    }

    #[test]
    fn coco_needs_instances() {
        let coco = BASE.replace(
            "format = \"jsonl\"\npath = \"data/samples.jsonl\"",
            "format = \"coco\"",
        );
        assert!(error(&coco, &[]).contains("format \"coco\" needs `instances`"));
    }

    const OIV7: &str = "format = \"oiv7\"\nlabels = \"l.csv\"\nclasses = \"c.csv\"\nnarratives = [\"n1.jsonl\", \"n2.jsonl\"]\nimages = \"img\"\noutlier_std = 3.0";

    fn oiv7(dataset: &str) -> String {
        BASE.replace("format = \"jsonl\"\npath = \"data/samples.jsonl\"", dataset)
    }

    #[test]
    #[cfg(feature = "oiv7")]
    fn oiv7_takes_one_or_many_files_and_resolves_them() {
        let (dir, path) = write(&oiv7(OIV7));
        let m = load(&path, &Overrides::default()).unwrap();
        let base = std::path::absolute(dir.path()).unwrap();
        let d = &m.dataset;
        assert_eq!(d.format, DatasetFormat::Oiv7);
        assert_eq!(d.labels, [base.join("l.csv")]);
        assert_eq!(d.classes, Some(base.join("c.csv")));
        assert_eq!(d.narratives, [base.join("n1.jsonl"), base.join("n2.jsonl")]);
        assert_eq!(d.outlier_std, Some(3.0));
        let many = oiv7(&OIV7.replace("\"l.csv\"", "[\"a.csv\", \"b.csv\"]"));
        assert_eq!(load_text(&many, &[]).unwrap().dataset.labels.len(), 2);
        // The same list through --set.
        let set = load_text(&oiv7(OIV7), &["dataset.labels=[\"x.csv\",\"y.csv\"]"]).unwrap();
        assert_eq!(set.dataset.labels.len(), 2);
    }

    #[test]
    #[cfg(not(feature = "oiv7"))]
    fn oiv7_needs_the_feature() {
        let err = error(&oiv7(OIV7), &[]);
        assert!(
            err.contains("dataset.format: this embedlab was built without the `oiv7` feature"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    #[cfg(feature = "oiv7")]
    fn oiv7_keys_belong_to_oiv7() {
        let err = error(&oiv7(&OIV7.replace("classes = \"c.csv\"\n", "")), &[]);
        assert!(
            err.contains("dataset.classes: format \"oiv7\" needs `classes`"),
            "{err}"
        );
        let err = error(&oiv7(&OIV7.replace("labels = \"l.csv\"\n", "")), &[]);
        assert!(err.contains("format \"oiv7\" needs `labels`"), "{err}");
        let err = error(&oiv7(&OIV7.replace("3.0", "-1.0")), &[]);
        assert!(
            err.contains("dataset.outlier_std: must be a positive number (got -1)"),
            "{err}"
        );
        let err = error(&oiv7(&format!("{OIV7}\ninstances = [\"i.json\"]")), &[]);
        assert!(err.contains("files are for format \"coco\""), "{err}");
        let err = error(
            &BASE.replace(
                "format = \"jsonl\"",
                "format = \"jsonl\"\nnarratives = \"n.jsonl\"",
            ),
            &[],
        );
        assert!(
            err.contains("m.toml:8:14: dataset.narratives: `narratives` is for format \"oiv7\""),
            "{err}"
        );
    }

    fn with_retrieval(global: &str, run: &str) -> String {
        let text = BASE.replace(
            "[retrieval]\nk = 5",
            &format!("[retrieval]\nk = 5\n{global}"),
        );
        match run {
            "" => text,
            run => text.replace(
                "parts = [{ precomputed = \"vectors/text.npy\" }]",
                &format!("parts = [{{ precomputed = \"vectors/text.npy\" }}]\nretrieval = {run}"),
            ),
        }
    }

    #[test]
    fn faiss_keys_belong_to_the_faiss_backend() {
        let m = load_text(BASE, &[]).unwrap();
        assert_eq!(m.search(&m.runs[0]), Search::Exact);
        let err = error(&with_retrieval("index = \"HNSW32\"", ""), &[]);
        assert!(
            err.contains("m.toml:12:9: retrieval.index: `index` is for backend = \"faiss\""),
            "{err}"
        );
        let err = error(&with_retrieval("", "{ compare_exact = false }"), &[]);
        assert!(
            err.contains(
                "runs[0].retrieval.compare_exact: `compare_exact` is for backend = \"faiss\""
            ),
            "{err}"
        );
        let err = error(
            &with_retrieval("", "{ backend = \"exact\", indx = \"Flat\" }"),
            &[],
        );
        assert!(err.contains("unknown field `indx`"), "{err}");
    }

    #[test]
    #[cfg(not(feature = "faiss"))]
    fn faiss_needs_the_feature() {
        let err = error(&with_retrieval("backend = \"faiss\"", ""), &[]);
        assert!(
            err.contains(
                "m.toml:12:11: retrieval.backend: this embedlab was built without the `faiss` feature"
            ) && err.contains("--features faiss")
                && err.contains("cmake"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
        let err = error(&with_retrieval("", "{ backend = \"faiss\" }"), &[]);
        assert!(
            err.contains("runs[0].retrieval.backend: this embedlab was built without"),
            "{err}"
        );
        let err = error(BASE, &["retrieval.backend=\"faiss\""]);
        assert!(err.contains("without the `faiss` feature"), "{err}");
    }

    #[test]
    #[cfg(feature = "faiss")]
    fn faiss_settings_resolve_run_over_experiment() {
        let faiss = |index: &str, parameters: &str, compare_exact| Search::Faiss {
            index: index.into(),
            parameters: parameters.into(),
            compare_exact,
        };
        let m = load_text(&with_retrieval("backend = \"faiss\"", ""), &[]).unwrap();
        assert_eq!(m.search(&m.runs[0]), faiss("HNSW32", "", true));
        let text = with_retrieval(
            "backend = \"faiss\"\nindex = \"HNSW16\"\nparameters = \" efSearch = 64 \"",
            "{ compare_exact = false }",
        );
        let m = load_text(&text, &[]).unwrap();
        assert_eq!(m.search(&m.runs[0]), faiss("HNSW16", "efSearch=64", false));
        // A run may pick faiss under an exact experiment, and sweep its index.
        let text = with_retrieval("", "{ backend = \"faiss\" }")
            + "sweep = { \"retrieval.index\" = [\"Flat\", \"IVF16,Flat\"] }\n";
        let m = load_text(&text, &[]).unwrap();
        let searches: Vec<Search> = m.runs.iter().map(|r| m.search(r)).collect();
        assert_eq!(
            searches,
            [faiss("Flat", "", true), faiss("IVF16,Flat", "", true)]
        );
        assert_eq!(m.runs[1].name, "text_IVF16,Flat");
    }

    #[test]
    #[cfg(feature = "faiss")]
    fn faiss_refusals_are_located_and_quote_faiss() {
        let err = error(
            &with_retrieval("backend = \"faiss\"\nindex = \"HNSW3x\"", ""),
            &[],
        );
        assert!(
            err.contains("m.toml:13:9: retrieval.index: faiss index \"HNSW3x\": ")
                && err.contains("could not parse"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
        let err = error(
            &with_retrieval("backend = \"faiss\"", "{ parameters = \"nprobe=4\" }"),
            &[],
        );
        assert!(
            err.contains("runs[0].retrieval.parameters: faiss parameters \"nprobe=4\": "),
            "{err}"
        );
        let err = error(
            &with_retrieval("backend = \"faiss\"\nparameters = \"efSearch\"", ""),
            &[],
        );
        assert!(
            err.contains("retrieval.parameters: \"efSearch\" is not name=value"),
            "{err}"
        );
    }

    #[test]
    fn sweeps_expand_and_validate_each_value() {
        let sweep = BASE.replace(
            "parts = [{ precomputed = \"vectors/text.npy\" }]",
            "parts = [{ precomputed = \"vectors/text.npy\" }]\nsweep = { \"parts.0.weight\" = [1.0, -2.0] }",
        );
        let err = error(&sweep, &[]);
        assert!(
            err.contains("runs[0].parts[0].weight: must be > 0 (got -2)"),
            "{err}"
        );
        let ok = load_text(&sweep.replace("-2.0", "2.0"), &[]).unwrap();
        let names: Vec<&str> = ok.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["text_1.0", "text_2.0"]);
    }
}
