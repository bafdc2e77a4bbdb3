//! `embedlab bench metrics`: all eight metrics of many queries, from neighbour lists and label
//! sets drawn with a fixed seed (no search: this times the metrics alone).

use std::path::PathBuf;

use anyhow::Context as _;

use embedlab::embed::npy;
use embedlab::metrics;
use embedlab::retrieval::Neighbours;
use embedlab::rng::SplitMix64;

use super::{Timing, write_json};

#[derive(clap::Args)]
pub struct Args {
    /// Queries (every row is one).
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    /// Neighbours per query; the metrics are computed at this cutoff.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Distinct label sets, drawn with a skew so that some are large and many small.
    #[arg(long, default_value_t = 2_000)]
    label_sets: u64,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Write the figures and the eight mean values as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the inputs as `.npy` here (`metrics-neighbours.npy`: n × k u32 row indices;
    /// `metrics-labels.npy`: n × 1 u32 label-set ids), for another tool to score.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        args.k >= 1 && args.k < args.n && args.label_sets >= 1,
        "need 1 <= k < n and at least one label set"
    );
    let (labels, neighbours) = synthetic(args.n, args.k, args.label_sets);
    let mut evaluation = None;
    let timing = Timing::measure(args.repeat, || {
        evaluation = Some(metrics::evaluate(&neighbours, &labels, &[args.k]));
    });
    let evaluation = evaluation.expect("at least one repetition");
    println!(
        "all metrics, {} queries, k = {}: {:.4} s (median of {})",
        args.n,
        args.k,
        timing.median,
        timing.seconds.len()
    );
    for (key, value) in &evaluation.means {
        println!("  {key} = {value:.6}");
    }
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, bytes: Vec<u8>| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
        };
        write(
            "metrics-neighbours.npy",
            npy::encode_u32(args.n, args.k, &neighbours.indices),
        )?;
        write("metrics-labels.npy", npy::encode_u32(args.n, 1, &labels))?;
    }
    if let Some(path) = &args.json {
        write_json(
            path,
            &serde_json::json!({
                "n": args.n, "k": args.k, "label_sets": args.label_sets,
                "threads": rayon::current_num_threads(),
                "seconds": timing.seconds, "median": timing.median, "values": evaluation.means,
            }),
        )?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Label-set ids (skewed: id `⌊u²·sets⌋` for uniform `u`) and, per query, `k` distinct other rows,
/// each slot a member of the query's label set with probability 0.3 (when it has other members),
/// else any row: hits are neither rare nor certain, and land at every rank.
fn synthetic(n: usize, k: usize, label_sets: u64) -> (Vec<u32>, Neighbours) {
    let mut rng = SplitMix64::new(11);
    let labels: Vec<u32> = (0..n)
        .map(|_| {
            let u = rng.below(1 << 24) as f64 / (1u64 << 24) as f64;
            (u * u * label_sets as f64) as u32
        })
        .collect();
    let mut members = vec![Vec::new(); label_sets as usize];
    for (row, &label) in labels.iter().enumerate() {
        members[label as usize].push(row as u32);
    }
    let mut indices = Vec::with_capacity(n * k);
    for query in 0..n {
        let own = &members[labels[query] as usize];
        let first = indices.len();
        while indices.len() < first + k {
            let row = if own.len() > 1 && rng.below(10) < 3 {
                own[rng.below(own.len() as u64) as usize]
            } else {
                rng.below(n as u64) as u32
            };
            if row as usize != query && !indices[first..].contains(&row) {
                indices.push(row);
            }
        }
    }
    let scores = (0..n * k).map(|i| -((i % k) as f32)).collect();
    let neighbours = Neighbours {
        n,
        k,
        indices,
        scores,
    };
    (labels, neighbours)
}
