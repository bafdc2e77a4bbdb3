//! The `embedlab` command line: parses flags, calls the library, prints one-line errors.

mod bench;
mod cache_cli;
mod commands;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use embedlab::cache::Store;
use embedlab::experiment::{self, Settings};
use embedlab::manifest::{self, CaptionSource, Manifest, Overrides};
use embedlab::plan::{Environment, Executor, Plan};
use embedlab::progress::{Progress, Verbosity};

/// Evaluate embedding models for multimodal retrieval from a declarative TOML manifest.
///
/// A manifest names a dataset, caption source, the vectors of each run (precomputed or, with
/// plugins, encoded) and how they are fused; `embedlab run` computes what is not cached, retrieves
/// every sample's k nearest neighbours and writes a paper-style report.
#[derive(Parser)]
#[command(
    name = "embedlab",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Print only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print details of each stage.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// A folder of encoder plugins, searched before EMBEDLAB_PLUGIN_PATH and the binary's folder
    /// (repeatable).
    #[arg(long, global = true, value_name = "DIR")]
    plugin_dir: Vec<PathBuf>,
    /// The model store (default: EMBEDLAB_MODEL_STORE, else the user cache folder).
    #[arg(long, global = true, value_name = "DIR", env = "EMBEDLAB_MODEL_STORE")]
    model_store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plan and run an experiment, then write results.json, report.md and report.html.
    ///
    /// Stages already in the cache are reused; the report goes to DIR/<experiment.name>/.
    /// Exit status: 0 when every run finished, 1 when some run failed (the report lists it),
    /// 2 on an error that stops the experiment, 3 (with --check) when a reference number is not
    /// reproduced.
    Run {
        #[command(flatten)]
        manifest: ManifestArgs,
        /// Folder for reports.
        #[arg(long, value_name = "DIR", default_value = "reports")]
        out: PathBuf,
        /// Exit with status 3 when a `[[reference]]` number is not reproduced within its
        /// tolerance (after the report is written).
        #[arg(long)]
        check: bool,
    },
    /// Merge the reports of several experiments (folders holding results.json) into one:
    /// all-scenario and per-family tables per dataset, charts, and paired tests across them.
    Report {
        /// Report folders written by `embedlab run` (e.g. reports/quickstart reports/coco).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Where the merged report.md, report.html and comparison.json go.
        #[arg(long, value_name = "DIR", default_value = "reports/merged")]
        out: PathBuf,
    },
    /// Score a hit matrix from any tool: one query per line, k flags of 0/1 in retrieval order.
    /// Prints mrr, map_list, ndcg_list, precision and hit_rate at k as JSON.
    Score {
        /// The hit-matrix file.
        #[arg(long, value_name = "FILE")]
        hits: PathBuf,
        /// Score as the study did (torchmetrics 0.11.4 on torch 2.0.0, whose unstable sort
        /// scrambles each query's items).
        #[arg(long)]
        article_compatible: bool,
    },
    /// Print the experiment's stages, which are cached, and which runs share them; runs nothing.
    Plan {
        #[command(flatten)]
        manifest: ManifestArgs,
    },
    /// Write the caption text of every sample (after the dataset's filters) as JSON lines,
    /// `{"id": ..., "text": ...}`, so vectors can be computed elsewhere from exactly these texts.
    Captions {
        #[command(flatten)]
        manifest: ManifestArgs,
        /// Which caption source to apply.
        #[arg(long, value_enum, default_value = "concat")]
        source: SourceArg,
        /// Seed for `--source random` (default: the manifest's experiment.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Output file (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Embed texts or images with a plugin encoder into a float32 .npy and OUT.ids.txt (text line
    /// numbers, or image paths relative to DIR).
    Embed {
        /// Plugin name (e.g. candle).
        #[arg(long)]
        plugin: String,
        /// Model id (e.g. sentence-transformers/all-MiniLM-L6-v2) or a local model folder.
        #[arg(long)]
        model: String,
        /// A text file, one text per line.
        #[arg(long, value_name = "FILE", required_unless_present = "images")]
        texts: Option<PathBuf>,
        /// A folder of images (.jpg, .jpeg, .png, searched recursively).
        #[arg(long, value_name = "DIR", conflicts_with = "texts")]
        images: Option<PathBuf>,
        /// Output .npy; ids go to the sibling .ids.txt.
        #[arg(long, value_name = "OUT.npy")]
        out: PathBuf,
        /// Inputs per forward pass.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
    },
    /// Encoder plugins found on the search path.
    Plugins {
        #[command(subcommand)]
        what: PluginsCommand,
    },
    /// The model store: known models, fetching and verifying them.
    Models {
        #[command(subcommand)]
        what: ModelsCommand,
    },
    /// Measure the engine's hot paths on generated data.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
    /// Check the cache's entries against their checksums, or remove entries (gc).
    Cache {
        #[command(subcommand)]
        what: cache_cli::CacheCommand,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Name, version, ABI, path and known models of every plugin found.
    List,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Known and installed models.
    List,
    /// Download a model into the store and verify every file's sha256.
    Fetch { id: String },
    /// Re-hash an installed model's files against their pinned sha256.
    Verify { id: String },
}

#[derive(Args)]
struct ManifestArgs {
    /// The experiment manifest (TOML).
    manifest: PathBuf,
    /// Override a manifest key, e.g. --set retrieval.k=20 (applied after EMBEDLAB_SECTION__KEY
    /// environment variables, which are applied after the file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Cache folder (default: .embedlab/cache beside the manifest).
    #[arg(long, value_name = "DIR", env = "EMBEDLAB_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Let the manifest give an encoder's `plugin` as a library path (relative to the manifest)
    /// instead of a plugin name. Loading a library runs its code: only for manifests you trust.
    #[arg(long)]
    allow_plugin_path: bool,
}

impl ManifestArgs {
    fn load(&self) -> anyhow::Result<manifest::Manifest> {
        let overrides = Overrides {
            env: true,
            sets: self.sets.clone(),
            allow_plugin_paths: self.allow_plugin_path,
        };
        Ok(manifest::load(&self.manifest, &overrides)?)
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| Settings::default_cache_dir(&self.manifest))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SourceArg {
    Concat,
    Random,
    First,
}

impl From<SourceArg> for CaptionSource {
    fn from(s: SourceArg) -> Self {
        match s {
            SourceArg::Concat => CaptionSource::Concat,
            SourceArg::Random => CaptionSource::Random,
            SourceArg::First => CaptionSource::First,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let progress = Progress::new(verbosity);
    let sources = Sources {
        plugin_dirs: cli.plugin_dir,
        model_store: cli.model_store,
    };
    match dispatch(cli.command, &sources, &progress) {
        Ok(code) => code,
        Err(err) if interrupted(&err) => {
            eprintln!("{}", one_line(&err));
            ExitCode::from(embedlab::interrupt::EXIT_STATUS)
        }
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

fn interrupted(err: &anyhow::Error) -> bool {
    err.downcast_ref::<embedlab::error::Error>()
        .is_some_and(embedlab::error::Error::is_interrupted)
}

/// `err` and its causes on one line, `: `-separated. A cause whose text the message already
/// holds is left out: library errors print their source themselves, so `{:#}` would repeat it.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where plugins and models come from (global flags).
struct Sources {
    plugin_dirs: Vec<PathBuf>,
    model_store: Option<PathBuf>,
}

impl Sources {
    fn environment(&self, fetch: bool) -> anyhow::Result<Environment> {
        Ok(Environment::new(
            &self.plugin_dirs,
            self.model_store.as_deref(),
            fetch,
        )?)
    }

    fn settings(&self, out: &Path, cache_dir: PathBuf) -> Settings {
        Settings {
            out_dir: out.to_path_buf(),
            cache_dir,
            plugin_dirs: self.plugin_dirs.clone(),
            model_store: self.model_store.clone(),
        }
    }
}

fn dispatch(command: Command, sources: &Sources, progress: &Progress) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            manifest,
            out,
            check,
        } => run(&manifest, &out, check, sources, progress),
        Command::Report { dirs, out } => {
            let written = embedlab::report::write_merged(&out, &dirs)?;
            progress.info(&format!("wrote {}", written.markdown.display()));
            progress.info(&format!("wrote {}", written.html.display()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Score {
            hits,
            article_compatible,
        } => commands::score(&hits, article_compatible),
        Command::Plan { manifest } => plan(&manifest, sources),
        Command::Captions {
            manifest,
            source,
            seed,
            out,
        } => captions(&manifest, sources, source.into(), seed, out.as_deref()),
        Command::Embed {
            plugin,
            model,
            texts,
            images,
            out,
            batch_size,
        } => {
            let input = match (texts, images) {
                (Some(texts), _) => commands::EmbedInput::Texts(texts),
                (None, Some(dir)) => commands::EmbedInput::Images(dir),
                (None, None) => unreachable!("clap requires --texts or --images"),
            };
            let env = sources.environment(true)?;
            commands::embed(&env, &plugin, &model, &input, &out, batch_size, progress)
        }
        Command::Plugins {
            what: PluginsCommand::List,
        } => commands::plugins_list(&embedlab::plugin::SearchPath::new(&sources.plugin_dirs)),
        Command::Models { what } => {
            let store = embedlab::models::ModelStore::open(sources.model_store.as_deref())?;
            match what {
                ModelsCommand::List => commands::models_list(&store),
                ModelsCommand::Fetch { id } => commands::models_fetch(&store, &id),
                ModelsCommand::Verify { id } => commands::models_verify(&store, &id),
            }
        }
        Command::Bench { what } => bench::run(what, sources, progress),
        Command::Cache { what } => cache_cli::run(what, sources, progress),
    }
}

fn run(
    args: &ManifestArgs,
    out: &Path,
    check: bool,
    sources: &Sources,
    progress: &Progress,
) -> anyhow::Result<ExitCode> {
    let manifest = args.load()?;
    let settings = sources.settings(out, args.cache_dir());
    embedlab::interrupt::install().context("installing the Ctrl-C handler")?;
    let summary = experiment::run(&manifest, &settings, progress)?;
    progress.info(&format!("wrote {}", summary.written.markdown.display()));
    progress.info(&format!("wrote {}", summary.written.html.display()));
    progress.info(&format!("wrote {}", summary.written.results.display()));
    let missed: Vec<_> = summary
        .results
        .references
        .iter()
        .filter(|r| !r.within)
        .collect();
    for r in &missed {
        let ours = r
            .ours
            .map_or("no value (the run failed)".into(), |v| format!("{v:.4}"));
        progress.warn(&format!(
            "reference {} {} ({}): ours {ours}, reference {:.4} ± {}{}",
            r.run,
            r.metric,
            r.scoring,
            r.reference,
            r.tolerance,
            if r.source.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.source)
            }
        ));
    }
    Ok(if !summary.results.failed.is_empty() {
        ExitCode::from(1)
    } else if check && !missed.is_empty() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The manifest, its plan (looking for models, never fetching) and its cache, for commands that
/// run no stage.
fn planned(args: &ManifestArgs, sources: &Sources) -> anyhow::Result<(Manifest, Plan, Store)> {
    let manifest = args.load()?;
    let store = Store::open(&args.cache_dir())?;
    let plan = Plan::build(&manifest, &sources.environment(false)?, &store)?;
    Ok((manifest, plan, store))
}

fn plan(args: &ManifestArgs, sources: &Sources) -> anyhow::Result<ExitCode> {
    let (manifest, plan, store) = planned(args, sources)?;
    print!("{}", plan.describe(&manifest, &store));
    Ok(ExitCode::SUCCESS)
}

fn captions(
    args: &ManifestArgs,
    sources: &Sources,
    source: CaptionSource,
    seed: Option<u64>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (manifest, plan, store) = planned(args, sources)?;
    let progress = Progress::new(Verbosity::Quiet);
    let dataset = Executor::new(&manifest, &plan, &store, &progress).dataset()?;
    let texts = embedlab::captions::texts(
        &dataset.samples,
        source,
        seed.unwrap_or(manifest.experiment.seed),
    )?;
    let mut lines = String::new();
    for (sample, text) in dataset.samples.iter().zip(texts) {
        lines.push_str(&serde_json::json!({ "id": sample.id, "text": text }).to_string());
        lines.push('\n');
    }
    match out {
        Some(path) => {
            std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{lines}"),
    }
    Ok(ExitCode::SUCCESS)
}
