//! The `embedlab` command line: parses flags, calls the library, prints one-line errors.

mod bench;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use embedlab::experiment::{self, Settings};
use embedlab::manifest::{self, CaptionSource, Overrides};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plan and run an experiment, then write results.json, report.md and report.html.
    ///
    /// Stages already in the cache are reused; the report goes to DIR/<experiment.name>/.
    /// Exit status: 0 when every run finished, 1 when some run failed (the report lists it),
    /// 2 on an error that stops the experiment.
    Run {
        #[command(flatten)]
        manifest: ManifestArgs,
        /// Folder for reports.
        #[arg(long, value_name = "DIR", default_value = "reports")]
        out: PathBuf,
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
    /// Measure the engine's hot paths on generated data.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
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
}

impl ManifestArgs {
    fn load(&self) -> anyhow::Result<manifest::Manifest> {
        let overrides = Overrides {
            env: true,
            sets: self.sets.clone(),
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
    match dispatch(cli.command, &progress) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(command: Command, progress: &Progress) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { manifest, out } => run(&manifest, &out, progress),
        Command::Plan { manifest } => plan(&manifest),
        Command::Captions {
            manifest,
            source,
            seed,
            out,
        } => captions(&manifest, source.into(), seed, out.as_deref()),
        Command::Bench { what } => bench::run(what, progress),
    }
}

fn run(args: &ManifestArgs, out: &Path, progress: &Progress) -> anyhow::Result<ExitCode> {
    let manifest = args.load()?;
    let settings = Settings {
        out_dir: out.to_path_buf(),
        cache_dir: args.cache_dir(),
    };
    let summary = experiment::run(&manifest, &settings, progress)?;
    progress.info(&format!("wrote {}", summary.written.markdown.display()));
    progress.info(&format!("wrote {}", summary.written.html.display()));
    progress.info(&format!("wrote {}", summary.written.results.display()));
    Ok(if summary.results.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plan(args: &ManifestArgs) -> anyhow::Result<ExitCode> {
    let manifest = args.load()?;
    let plan = embedlab::plan::Plan::build(&manifest)?;
    let store = embedlab::cache::Store::open(&args.cache_dir())?;
    print!("{}", plan.describe(&manifest, &store));
    Ok(ExitCode::SUCCESS)
}

fn captions(
    args: &ManifestArgs,
    source: CaptionSource,
    seed: Option<u64>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let manifest = args.load()?;
    let plan = embedlab::plan::Plan::build(&manifest)?;
    let store = embedlab::cache::Store::open(&args.cache_dir())?;
    let progress = Progress::new(Verbosity::Quiet);
    let dataset = embedlab::plan::Executor::new(&manifest, &plan, &store, &progress).dataset()?;
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
