//! `embedlab bench`: timings of the engine's hot paths on generated data or a folder of images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;

use embedlab::embed::images;
use embedlab::metrics;
use embedlab::progress::Progress;
use embedlab::retrieval::{self, ExactOptions, bench::random_unit_vectors};

#[derive(Subcommand)]
pub enum Bench {
    /// Exact self-k-NN plus all metrics on random unit vectors; prints a Markdown table.
    Knn {
        /// Corpus sizes (every row queries all rows).
        #[arg(long, value_delimiter = ',', default_values_t = [20_000usize, 100_000])]
        n: Vec<usize>,
        /// Dimensions.
        #[arg(long, value_delimiter = ',', default_values_t = [384usize, 768])]
        dim: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Repetitions per case; the table shows the median.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Image decoding (read + decode + EXIF orientation + RGB8) of every JPEG/PNG directly in
    /// DIR, on one thread and on all; prints a Markdown table.
    Decode {
        dir: PathBuf,
        /// Repetitions; the table shows the median.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

pub fn run(what: Bench, progress: &Progress) -> anyhow::Result<std::process::ExitCode> {
    match what {
        Bench::Knn { n, dim, k, repeat } => knn(&n, &dim, k, repeat, progress),
        Bench::Decode { dir, repeat } => decode(&dir, repeat),
    }
}

fn decode(dir: &Path, repeat: usize) -> anyhow::Result<std::process::ExitCode> {
    let mut paths: Vec<Option<PathBuf>> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png"))
        })
        .map(Some)
        .collect();
    paths.sort();
    anyhow::ensure!(!paths.is_empty(), "{}: no images", dir.display());
    let bytes: u64 = (paths.iter().flatten())
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    println!("| images | MB | threads | seconds | images/s | megapixels/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for threads in [1, rayon::current_num_threads()] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let mut seconds = Vec::new();
        let mut pixels = 0u64;
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            let decoded = pool.install(|| images::decode_batch(&paths));
            seconds.push(started.elapsed().as_secs_f64());
            pixels = decoded
                .iter()
                .flatten()
                .map(|d| u64::from(d.width) * u64::from(d.height))
                .sum();
        }
        let s = median(&mut seconds);
        println!(
            "| {} | {:.1} | {threads} | {s:.3} | {:.0} | {:.1} |",
            paths.len(),
            bytes as f64 / 1e6,
            paths.len() as f64 / s,
            pixels as f64 / 1e6 / s
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn knn(
    n: &[usize],
    dim: &[usize],
    k: usize,
    repeat: usize,
    progress: &Progress,
) -> anyhow::Result<std::process::ExitCode> {
    println!("| N | d | k | k-NN (s) | GFLOP/s | metrics (s) | threads |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in n {
        for &d in dim {
            let vectors = random_unit_vectors(n, d, 42);
            // 1,000 label sets, so relevance is neither empty nor trivial.
            let labels: Vec<u32> = (0..n as u32)
                .map(|i| i.wrapping_mul(2_654_435_761) % 1000)
                .collect();
            let options = ExactOptions {
                k,
                ..Default::default()
            };
            let mut knn_s = Vec::new();
            let mut metrics_s = Vec::new();
            for _ in 0..repeat.max(1) {
                let started = Instant::now();
                let neighbours = retrieval::search(&vectors, &options, &|_| {})?;
                knn_s.push(started.elapsed().as_secs_f64());
                let started = Instant::now();
                let evaluation = metrics::evaluate(&neighbours, &labels, &[k]);
                metrics_s.push(started.elapsed().as_secs_f64());
                std::hint::black_box(evaluation);
            }
            let knn = median(&mut knn_s);
            let gflops = 2.0 * (n as f64).powi(2) * d as f64 / knn / 1e9;
            println!(
                "| {n} | {d} | {k} | {knn:.3} | {gflops:.0} | {:.3} | {} |",
                median(&mut metrics_s),
                rayon::current_num_threads()
            );
            progress.detail(&format!("N={n} d={d}: runs {knn_s:?}"));
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
