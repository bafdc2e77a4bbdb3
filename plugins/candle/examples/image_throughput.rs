//! Images per second of an image model folder (EfficientNet-Lite) on this machine.
//!
//! ```text
//! cargo run --release -p embedlab-candle --example image_throughput -- MODEL_DIR IMAGES_DIR [BATCH] [N] [RUNS]
//! ```
//! The first `N` (default 200) `.jpg` files of `IMAGES_DIR` by name are read into memory once,
//! then, `RUNS` times (default 3, after one warm-up pass), timed:
//! - end to end: decode the JPEGs (rayon, all threads) + preprocess + forward, in batches;
//! - forward only: the same batches, preprocessed beforehand.
//!
//! Threads: rayon's default (all cores) unless `RAYON_NUM_THREADS` says otherwise.

use std::time::Instant;

use embedlab_candle::efficientnet_lite::load_image_encoder;
use embedlab_plugin::{Image, serde_json};
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: image_throughput MODEL_DIR IMAGES_DIR [BATCH] [N] [RUNS]".into());
    }
    let batch_size: usize = args.get(3).map_or(Ok(32), |s| s.parse())?;
    let n: usize = args.get(4).map_or(Ok(200), |s| s.parse())?;
    let runs: usize = args.get(5).map_or(Ok(3), |s| s.parse())?;

    let mut paths: Vec<_> = std::fs::read_dir(&args[2])?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    paths.sort();
    paths.truncate(n);
    let jpegs: Vec<Vec<u8>> = paths.iter().map(std::fs::read).collect::<Result<_, _>>()?;

    let start = Instant::now();
    let options = serde_json::json!({ "batch_size": batch_size });
    let encoder = load_image_encoder(
        args[1].as_ref(),
        options.as_object().cloned().unwrap_or_default(),
    )?;
    println!(
        "loaded {} in {:.2}s: dim {}, {} parameters; {} images, batch {batch_size}, threads {}",
        args[1],
        start.elapsed().as_secs_f64(),
        encoder.dim,
        encoder.parameters,
        jpegs.len(),
        rayon::current_num_threads()
    );

    let end_to_end = || -> Result<(), Box<dyn std::error::Error>> {
        for chunk in jpegs.chunks(batch_size) {
            let decoded = decode(chunk)?;
            encoder.encode(&as_images(&decoded))?;
        }
        Ok(())
    };
    end_to_end()?;
    timed("end to end", runs, jpegs.len(), end_to_end)?;

    let mut batches = Vec::new();
    for chunk in jpegs.chunks(batch_size) {
        let decoded = decode(chunk)?;
        batches.push(
            encoder
                .preprocess
                .apply(&as_images(&decoded), &encoder.device)?,
        );
    }
    timed("forward only", runs, jpegs.len(), || {
        for pixels in &batches {
            encoder.forward(pixels)?;
        }
        Ok(())
    })?;
    Ok(())
}

type Failure = Box<dyn std::error::Error>;

/// Decodes JPEG bytes in parallel, as the engine does before handing images to a plugin.
fn decode(jpegs: &[Vec<u8>]) -> Result<Vec<image::RgbImage>, image::ImageError> {
    jpegs
        .par_iter()
        .map(|bytes| image::load_from_memory(bytes).map(|i| i.to_rgb8()))
        .collect()
}

fn as_images(decoded: &[image::RgbImage]) -> Vec<Image<'_>> {
    decoded
        .iter()
        .map(|d| Image {
            width: d.width(),
            height: d.height(),
            rgb: d.as_raw(),
        })
        .collect()
}

/// Runs `pass` `runs` times, printing each run's images per second.
fn timed(
    what: &str,
    runs: usize,
    images: usize,
    mut pass: impl FnMut() -> Result<(), Failure>,
) -> Result<(), Failure> {
    for run in 1..=runs {
        let start = Instant::now();
        pass()?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{what} run {run}: {secs:.2}s, {:.1} images/s",
            images as f64 / secs
        );
    }
    Ok(())
}
