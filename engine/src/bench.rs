//! `embedlab bench`: timings of the engine's hot paths on generated data or a folder of images.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;

use embedlab::dataset::{self, LoadOptions, Source};
use embedlab::digest::Digest;
use embedlab::embed::images;
use embedlab::metrics;
use embedlab::progress::Progress;
use embedlab::resources::peak_rss_mb;
use embedlab::retrieval::{self, ExactOptions, bench::random_unit_vectors};
use embedlab::rng::SplitMix64;

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

pub fn run(what: Bench, progress: &Progress) -> anyhow::Result<std::process::ExitCode> {
    match what {
        Bench::Knn { n, dim, k, repeat } => knn(&n, &dim, k, repeat, progress),
        Bench::Decode { dir, repeat } => decode(&dir, repeat),
        Bench::Oiv7 { rows, dir } => oiv7(rows, dir, progress),
    }
}

fn oiv7(
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

/// Resets the peak RSS (`VmHWM`) so that each step reports its own (Linux; elsewhere a no-op and
/// the peaks accumulate).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
