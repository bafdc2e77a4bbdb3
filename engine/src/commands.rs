//! The subcommands that are not experiments: `embed`, `score`, `plugins list`, `models ...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use embedlab::embed::images::Prefetcher;
use embedlab::embed::{Vectors, encode, npy};
use embedlab::models::ModelStore;
use embedlab::plan::{EncoderSetup, Environment};
use embedlab::plugin::{self, EncoderHandle, SearchPath};
use embedlab::progress::Progress;

/// Prints, as one JSON object, the flag-only metrics of a hit-matrix file (one query per line,
/// k flags of 0/1 in retrieval order), computed exactly or as the study's scorer did.
pub fn score(hits: &Path, article_compatible: bool) -> anyhow::Result<ExitCode> {
    use embedlab::metrics::article;
    let text =
        std::fs::read_to_string(hits).with_context(|| format!("reading {}", hits.display()))?;
    let matrix =
        article::parse_hits(&text).map_err(|e| anyhow::anyhow!("{}:{e}", hits.display()))?;
    let metrics = if article_compatible {
        article::article_metrics(&matrix)
    } else {
        article::flag_metrics(&matrix)
    };
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(ExitCode::SUCCESS)
}

/// What `embedlab embed` reads.
pub enum EmbedInput {
    Texts(PathBuf),
    Images(PathBuf),
}

/// Rows handed to the plugin per call (it batches further by `batch_size`), so the bar moves.
const ROWS_PER_CALL: usize = 1024;

pub fn embed(
    env: &Environment,
    plugin_name: &str,
    model: &str,
    input: &EmbedInput,
    out: &Path,
    batch_size: usize,
    progress: &Progress,
) -> anyhow::Result<ExitCode> {
    let setup = EncoderSetup {
        plugin: plugin::find(plugin_name, &env.plugins)?,
        model: env.models.resolve(model)?,
        options: serde_json::json!({ "batch_size": batch_size }),
    };
    let mut encoder = setup.create()?;
    let (ids, vectors) = match input {
        EmbedInput::Texts(path) => embed_texts(&mut encoder, &read_lines(path)?, progress)?,
        EmbedInput::Images(dir) => {
            let files = image_files(dir)?;
            embed_images(&mut encoder, dir, &files, progress)?
        }
    };
    npy::write_f32(out, &vectors)?;
    let ids_path = embedlab::embed::precomputed::ids_path_for(out);
    let ids: String = ids.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(&ids_path, ids).with_context(|| format!("writing {}", ids_path.display()))?;
    progress.info(&format!(
        "wrote {} ({} × {}) and {}",
        out.display(),
        vectors.n,
        vectors.dim,
        ids_path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Each text's vector; ids are line numbers from 1.
pub fn embed_texts(
    encoder: &mut EncoderHandle,
    texts: &[String],
    progress: &Progress,
) -> anyhow::Result<(Vec<String>, Vectors)> {
    let dim = encoder.describe().dim;
    let bar = progress.bar(texts.len() as u64, "embed");
    let mut data = Vec::with_capacity(texts.len() * dim);
    for rows in texts.chunks(ROWS_PER_CALL) {
        let batch: Vec<&str> = rows.iter().map(String::as_str).collect();
        data.extend(encoder.encode_texts(&batch)?);
        bar.inc(rows.len() as u64);
    }
    bar.finish_and_clear();
    let ids = (1..=texts.len()).map(|i| i.to_string()).collect();
    let n = texts.len();
    Ok((ids, Vectors { n, dim, data }))
}

/// The vector of each image of `files` (decoded one batch ahead); ids are the paths relative to
/// `dir`. An image that cannot be read is named in a warning and left out.
pub fn embed_images(
    encoder: &mut EncoderHandle,
    dir: &Path,
    files: &[PathBuf],
    progress: &Progress,
) -> anyhow::Result<(Vec<String>, Vectors)> {
    let dim = encoder.describe().dim;
    let paths: Vec<Option<PathBuf>> = files.iter().cloned().map(Some).collect();
    let batches = paths
        .chunks(encode::IMAGE_BATCH)
        .map(<[_]>::to_vec)
        .collect();
    let bar = progress.bar(files.len() as u64, "embed");
    let (mut ids, mut data) = (Vec::new(), Vec::with_capacity(files.len() * dim));
    for (index, batch) in Prefetcher::start(batches).enumerate() {
        let first = index * encode::IMAGE_BATCH;
        let (vectors, skipped) = encode::encode_batch(encoder, &batch, first, &paths, false)?;
        for (offset, vector) in vectors.chunks_exact(dim).enumerate() {
            let row = first + offset;
            match skipped.iter().find(|s| s.row == row) {
                Some(s) => {
                    progress.warn(&format!("{}: {}; left out", files[row].display(), s.reason))
                }
                None => {
                    ids.push(relative_id(dir, &files[row]));
                    data.extend_from_slice(vector);
                }
            }
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    let n = ids.len();
    Ok((ids, Vectors { n, dim, data }))
}

/// JPEG and PNG files under `dir`, recursively, in path order; an error when there are none.
pub fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries =
            std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", folder.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if is_image_name(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    anyhow::ensure!(
        !found.is_empty(),
        "{}: no .jpg, .jpeg or .png files",
        dir.display()
    );
    Ok(found)
}

fn is_image_name(path: &Path) -> bool {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    matches!(extension.as_deref(), Some("jpg" | "jpeg" | "png"))
}

/// `a/b.jpg` for `dir/a/b.jpg`, with `/` on every platform.
fn relative_id(dir: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(dir).unwrap_or(file);
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// One text per line (a final newline ends the last line); a line that is not UTF-8 is an error
/// naming it.
pub fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            String::from_utf8(line.to_vec())
                .map_err(|_| anyhow::anyhow!("{}:{}: not valid UTF-8", path.display(), i + 1))
        })
        .collect()
}

pub fn plugins_list(search: &SearchPath) -> anyhow::Result<ExitCode> {
    let found = plugin::list(search);
    if found.is_empty() {
        let dirs: Vec<String> = search
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        println!("no plugins found in: {}", dirs.join(", "));
    }
    for entry in found {
        match entry {
            Ok(p) => {
                println!(
                    "{} {} (ABI {}.{})  {}",
                    p.name(),
                    p.version(),
                    p.abi().major,
                    p.abi().minor,
                    p.path().display()
                );
                for model in p.models() {
                    println!("    {:<44} {}", model.id, model.description);
                }
            }
            Err(e) => println!("✗ {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn models_list(store: &ModelStore) -> anyhow::Result<ExitCode> {
    println!("store {}", store.root().display());
    for listing in store.list() {
        println!("  {listing}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn models_fetch(store: &ModelStore, id: &str) -> anyhow::Result<ExitCode> {
    let model = store.fetch(id)?;
    println!(
        "{} {} {}",
        model.id,
        model.weights_digest,
        model.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn models_verify(store: &ModelStore, id: &str) -> anyhow::Result<ExitCode> {
    let model = store.verify(id)?;
    println!("ok {} {}", model.id, model.weights_digest);
    Ok(ExitCode::SUCCESS)
}
