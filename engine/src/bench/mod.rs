//! `embedlab bench`: timings of the engine's hot paths, on generated data or real inputs.
//!
//! Each subcommand prints a Markdown table or summary and can write JSON (`--json`), which
//! `bench/run.py` combines with the Python peers' figures into `bench/RESULTS.md`.

mod decode;
mod encode;
mod knn;
mod metrics;
mod oiv7;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;

use embedlab::progress::Progress;

use crate::Sources;

#[derive(Subcommand)]
pub enum Bench {
    /// Exact self-k-NN on seeded random unit vectors, and a plain SGEMM as the machine's
    /// reference rate; prints a Markdown table.
    Knn(knn::Args),
    /// All eight metrics of many queries (generated neighbour lists and label sets).
    Metrics(metrics::Args),
    /// An encoder's items/s on a text file or an image folder, after loading and a warm-up.
    Encode(encode::Args),
    /// Image decoding (read + decode + EXIF orientation + RGB8) of every JPEG/PNG under DIR, on
    /// one thread and on all; prints a Markdown table.
    Decode {
        dir: PathBuf,
        /// Repetitions; the table shows the median.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Loading an Open Images V7 dataset: generates an image-level labels CSV of ROWS rows in the
    /// official format (~0.17 images per row, ~20k label ids, a quarter of the rows negative), a
    /// classes CSV and a small Localized Narratives file, then loads it with and without the
    /// narratives; prints a Markdown table with times and peak RSS.
    Oiv7 {
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Folder of the generated files, kept and reused for the same ROWS (default: in the
        /// system's temporary folder).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub fn run(
    what: Bench,
    sources: &Sources,
    progress: &Progress,
) -> anyhow::Result<std::process::ExitCode> {
    match what {
        Bench::Knn(args) => knn::run(&args, progress),
        Bench::Metrics(args) => metrics::run(&args),
        Bench::Encode(args) => encode::run(&args, sources, progress),
        Bench::Decode { dir, repeat } => decode::run(&dir, repeat),
        Bench::Oiv7 { rows, dir } => oiv7::run(rows, dir, progress),
    }
}

/// Wall-clock seconds of repeated runs and their median.
struct Timing {
    seconds: Vec<f64>,
    median: f64,
}

impl Timing {
    /// Times `repeat` (at least one) calls of `f`.
    fn measure(repeat: usize, mut f: impl FnMut()) -> Timing {
        let seconds: Vec<f64> = (0..repeat.max(1))
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed().as_secs_f64()
            })
            .collect();
        let median = median(&mut seconds.clone());
        Timing { seconds, median }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
