//! `embedlab bench encode`: an encoder plugin's throughput on texts or images, the model loaded
//! once and warmed up first, so the figure is comparable with a Python library's `encode` call.
//!
//! Texts: the lines of a file, through the same path as `embedlab embed` (the plugin batches by
//! `--batch-size`). Images: the first `--limit` JPEG/PNG files of a folder, end to end (read,
//! decode one batch ahead, preprocess, forward) and forward only (decoded beforehand).

use std::path::PathBuf;

use embedlab::embed::{encode, images};
use embedlab::plan::EncoderSetup;
use embedlab::plugin::{self, EncoderHandle};
use embedlab::progress::Progress;
use embedlab::resources::{peak_rss_mb, reset_peak_rss};

use super::{Timing, write_json};
use crate::Sources;
use crate::commands::{embed_images, embed_texts, image_files, read_lines};

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true))]
pub struct Args {
    /// A model id or folder, as in a manifest.
    #[arg(long)]
    model: String,
    #[arg(long, default_value = "candle")]
    plugin: String,
    /// A text file, one input per line.
    #[arg(long, group = "input", value_name = "FILE")]
    texts: Option<PathBuf>,
    /// A folder of JPEG/PNG images.
    #[arg(long, group = "input", value_name = "DIR")]
    images: Option<PathBuf>,
    /// Use only the first N inputs (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Timed passes over the inputs, after one untimed warm-up pass; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(
    args: &Args,
    sources: &Sources,
    progress: &Progress,
) -> anyhow::Result<std::process::ExitCode> {
    let env = sources.environment(false)?;
    let setup = EncoderSetup {
        plugin: plugin::find(&args.plugin, &env.plugins)?,
        model: env.models.resolve(&args.model)?,
        options: serde_json::json!({ "batch_size": args.batch_size }),
    };
    reset_peak_rss();
    let mut encoder = setup.create()?;
    let take = |len: usize| {
        if args.limit == 0 {
            len
        } else {
            args.limit.min(len)
        }
    };
    let (items, end_to_end, forward_only) = if let Some(path) = &args.texts {
        let mut texts = read_lines(path)?;
        texts.truncate(take(texts.len()));
        let timing = measure(args.repeat, || embed_texts(&mut encoder, &texts, progress))?;
        (texts.len(), timing, None)
    } else {
        let dir = args
            .images
            .as_ref()
            .expect("clap requires --texts or --images");
        let mut files = image_files(dir)?;
        files.truncate(take(files.len()));
        let timing = measure(args.repeat, || {
            embed_images(&mut encoder, dir, &files, progress)
        })?;
        let forward = forward_only(&mut encoder, &files, args.repeat)?;
        (files.len(), timing, Some(forward))
    };
    let peak = peak_rss_mb();
    let rate = |t: &Timing| items as f64 / t.median;
    println!(
        "{} on {items} {}: {:.1} items/s end to end (median of {}){}; peak RSS {peak:.0} MiB",
        args.model,
        if args.texts.is_some() {
            "texts"
        } else {
            "images"
        },
        rate(&end_to_end),
        end_to_end.seconds.len(),
        forward_only
            .as_ref()
            .map_or(String::new(), |t| format!(", {:.1} forward only", rate(t)))
    );
    if let Some(path) = &args.json {
        let timing = |t: &Timing| serde_json::json!({ "seconds": t.seconds, "median": t.median, "items_per_s": rate(t) });
        write_json(
            path,
            &serde_json::json!({
                "model": args.model, "plugin": args.plugin, "items": items,
                "batch_size": args.batch_size, "threads": rayon::current_num_threads(),
                "end_to_end": timing(&end_to_end),
                "forward_only": forward_only.as_ref().map(timing),
                "peak_rss_mb": peak,
            }),
        )?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Times `repeat` calls of `pass` after one untimed warm-up call; the first error stops it.
fn measure<T>(
    repeat: usize,
    mut pass: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<Timing> {
    pass()?;
    let mut failed = None;
    let timing = Timing::measure(repeat, || {
        if let Err(e) = pass() {
            failed.get_or_insert(e);
        }
    });
    failed.map_or(Ok(timing), Err)
}

/// The model alone: every image decoded beforehand, then encoded in the engine's batches.
fn forward_only(
    encoder: &mut EncoderHandle,
    files: &[PathBuf],
    repeat: usize,
) -> anyhow::Result<Timing> {
    let paths: Vec<Option<PathBuf>> = files.iter().cloned().map(Some).collect();
    let decoded = (files.iter().zip(images::decode_batch(&paths)))
        .map(|(file, image)| image.map_err(|e| anyhow::anyhow!("{}: {e}", file.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    measure(repeat, || {
        for batch in decoded.chunks(encode::IMAGE_BATCH) {
            let batch: Vec<_> = batch.iter().map(images::Decoded::as_image).collect();
            encoder.encode_images(&batch)?;
        }
        Ok(())
    })
}
