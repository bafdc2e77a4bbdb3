//! `embedlab bench oiv7`: loading a generated Open Images V7 dataset of the official formats.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use embedlab::dataset::{self, LoadOptions, Source};
use embedlab::digest::Digest;
use embedlab::progress::Progress;
use embedlab::resources::{peak_rss_mb, reset_peak_rss};
use embedlab::rng::SplitMix64;

pub fn run(
    rows: u64,
    dir: Option<PathBuf>,
    progress: &Progress,
) -> anyhow::Result<std::process::ExitCode> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("embedlab-bench-oiv7"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let labels = dir.join(format!("labels-{rows}.csv"));
    let classes = dir.join("classes.csv");
    let narratives = dir.join(format!("narratives-{rows}.jsonl"));
    if !labels.exists() || !narratives.exists() {
        progress.info(&format!("generating {} rows in {}", rows, dir.display()));
        generate_oiv7(rows, &labels, &classes, &narratives)?;
    }
    let mb = |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6);
    println!(
        "labels CSV: {rows} rows, {:.0} MB; narratives: {:.1} MB",
        mb(&labels),
        mb(&narratives)
    );
    println!();
    println!(
        "| step | seconds | images | uncaptioned | rare | samples | label sets | peak RSS (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    reset_peak_rss();
    let started = Instant::now();
    Digest::of_file(&labels).with_context(|| format!("reading {}", labels.display()))?;
    println!(
        "| blake3 of the labels CSV | {:.2} | | | | | | {:.0} |",
        started.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    for with_narratives in [true, false] {
        let source = Source::Oiv7 {
            labels: vec![labels.clone()],
            classes: classes.clone(),
            narratives: if with_narratives {
                vec![narratives.clone()]
            } else {
                Vec::new()
            },
            images: None,
        };
        let options = LoadOptions {
            name: "bench".into(),
            ..LoadOptions::default()
        };
        reset_peak_rss();
        let started = Instant::now();
        let loaded = dataset::load_with_progress(&source, &options, progress)?;
        let seconds = started.elapsed().as_secs_f64();
        let stats = &loaded.stats;
        println!(
            "| load, {} | {seconds:.2} | {} | {} | {} | {} | {} | {:.0} |",
            if with_narratives {
                "with narratives"
            } else {
                "labels only"
            },
            stats.loaded,
            stats.dropped_uncaptioned,
            stats.dropped_rare,
            loaded.samples.len(),
            stats.label_sets,
            peak_rss_mb()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Writes the three files of [`Bench::Oiv7`]; ids, labels and confidences come from a fixed seed.
fn generate_oiv7(
    rows: u64,
    labels: &Path,
    classes: &Path,
    narratives: &Path,
) -> anyhow::Result<()> {
    const CLASSES: u64 = 20_000;
    let create = |path: &Path| {
        std::fs::File::create(path)
            .map(|f| std::io::BufWriter::with_capacity(1 << 20, f))
            .with_context(|| format!("creating {}", path.display()))
    };
    // Label ids like the official `/m/0xxxx`: base 36, four digits.
    let label_id = |class: u64| {
        let digits: String = (0..4)
            .rev()
            .map(|i| char::from_digit(((class + 46_656) / 36u64.pow(i) % 36) as u32, 36).unwrap())
            .collect();
        format!("/m/0{digits}")
    };
    let mut out = create(classes)?;
    writeln!(out, "LabelName,DisplayName")?;
    for class in 0..CLASSES {
        if class % 50 == 0 {
            writeln!(out, "{},\"Thing, kind {class}\"", label_id(class))?;
        } else {
            writeln!(out, "{},Thing {class}", label_id(class))?;
        }
    }
    out.flush()?;

    let mut rng = SplitMix64::new(7);
    let mut csv = create(labels)?;
    let mut jsonl = create(narratives)?;
    writeln!(csv, "ImageID,Source,LabelName,Confidence")?;
    let (mut written, mut images) = (0, 0u64);
    while written < rows {
        let id = format!("{:016x}", rng.next_u64());
        images += 1;
        // 1 to 11 rows, about 6 per image: ~1.7M images at 10M rows, as in the official files.
        for _ in 0..(1 + rng.below(11)).min(rows - written) {
            // Skewed towards the first classes (u³), so label sets repeat as real ones do.
            let u = rng.below(1 << 20) as f64 / (1u64 << 20) as f64;
            let class = (u * u * u * CLASSES as f64) as u64;
            let source = ["verification", "crowdsource-verified"][rng.below(2) as usize];
            let confidence = if rng.below(4) == 0 { 0 } else { 1 };
            writeln!(csv, "{id},{source},{},{confidence}", label_id(class))?;
            written += 1;
        }
        // One image in a hundred has a narrative, with every official field.
        if images % 100 == 0 {
            let trace: Vec<String> = (0..40)
                .map(|t| format!("{{\"x\": 0.{t:03}, \"y\": 0.5, \"t\": {t}.25}}"))
                .collect();
            writeln!(
                jsonl,
                "{{\"dataset_id\": \"open_images\", \"image_id\": \"{id}\", \"annotator_id\": 93, \"caption\": \"In this image we can see a thing {images}.\", \"timed_caption\": [{{\"utterance\": \"In this\", \"start_time\": 0.0, \"end_time\": 0.4}}], \"traces\": [[{}]], \"voice_recording\": \"open_images_validation/open_images_validation_{id}_93.ogg\"}}",
                trace.join(", ")
            )?;
        }
    }
    csv.flush()?;
    jsonl.flush()?;
    Ok(())
}
