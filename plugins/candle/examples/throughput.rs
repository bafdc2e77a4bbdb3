//! Sentences per second of a sentence-transformers folder on this machine.
//!
//! ```text
//! cargo run --release -p embedlab-candle --example throughput -- MODEL_DIR CAPTIONS_JSON [BATCH] [N]
//! ```
//! `CAPTIONS_JSON` is a COCO captions file (`captions_val2017.json`); the first `N` (default 1024)
//! captions by annotation id are encoded once to warm up, then timed over three runs.

use std::time::Instant;

use embedlab_candle::{Options, SentenceTransformer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: throughput MODEL_DIR CAPTIONS_JSON [BATCH] [N]".into());
    }
    let batch_size = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let n = args.get(4).map_or(Ok(1024), |s| s.parse())?;

    let coco: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let mut annotations: Vec<(u64, String)> = coco["annotations"]
        .as_array()
        .ok_or("no annotations")?
        .iter()
        .map(|a| {
            (
                a["id"].as_u64().unwrap_or(0),
                a["caption"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    annotations.sort();
    let texts: Vec<&str> = annotations.iter().take(n).map(|(_, c)| c.trim()).collect();
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();

    let start = Instant::now();
    let model = SentenceTransformer::load(args[1].as_ref(), &Options { batch_size })?;
    println!(
        "loaded {} in {:.2}s: dim {}, {} parameters, threads {}",
        args[1],
        start.elapsed().as_secs_f64(),
        model.dim(),
        model.parameters(),
        rayon::current_num_threads()
    );
    println!(
        "{} texts, {:.1} words each on average, batch {batch_size}",
        texts.len(),
        words as f64 / texts.len() as f64
    );
    model.encode(&texts)?;
    for run in 1..=3 {
        let start = Instant::now();
        model.encode(&texts)?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "run {run}: {:.2}s, {:.0} sentences/s",
            secs,
            texts.len() as f64 / secs
        );
    }
    Ok(())
}
