//! `embedlab bench decode`: image decoding alone, on one thread and on all.

use std::path::{Path, PathBuf};
use std::time::Instant;

use embedlab::embed::images;

use super::median;

pub fn run(dir: &Path, repeat: usize) -> anyhow::Result<std::process::ExitCode> {
    let paths: Vec<Option<PathBuf>> = crate::commands::image_files(dir)?
        .into_iter()
        .map(Some)
        .collect();
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
