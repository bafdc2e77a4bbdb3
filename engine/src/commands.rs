//! The subcommands that are not experiments: `embed`, `plugins list`, `models ...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use embedlab::embed::{Vectors, npy};
use embedlab::models::ModelStore;
use embedlab::plan::{EncoderSetup, Environment};
use embedlab::plugin::{self, SearchPath};
use embedlab::progress::Progress;

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
    let path = match input {
        EmbedInput::Texts(path) => path,
        EmbedInput::Images(dir) => anyhow::bail!(
            "--images {}: this build embeds texts only; the image pipeline comes with the image encoders",
            dir.display()
        ),
    };
    let texts = read_lines(path)?;
    let setup = EncoderSetup {
        plugin: plugin::find(plugin_name, &env.plugins)?,
        model: env.models.resolve(model)?,
        options: serde_json::json!({ "batch_size": batch_size }),
    };
    let mut encoder = setup.create()?;
    let dim = encoder.describe().dim;
    let bar = progress.bar(texts.len() as u64, "embed");
    let mut data = Vec::with_capacity(texts.len() * dim);
    for rows in texts.chunks(ROWS_PER_CALL) {
        let batch: Vec<&str> = rows.iter().map(String::as_str).collect();
        data.extend(encoder.encode_texts(&batch)?);
        bar.inc(rows.len() as u64);
    }
    bar.finish_and_clear();
    npy::write_f32(
        out,
        &Vectors {
            n: texts.len(),
            dim,
            data,
        },
    )?;
    let ids_path = embedlab::embed::precomputed::ids_path_for(out);
    let ids: String = (1..=texts.len()).map(|i| format!("{i}\n")).collect();
    std::fs::write(&ids_path, ids).with_context(|| format!("writing {}", ids_path.display()))?;
    progress.info(&format!(
        "wrote {} ({} × {dim}) and {}",
        out.display(),
        texts.len(),
        ids_path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// One text per line (a final newline ends the last line); a line that is not UTF-8 is an error
/// naming it.
fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
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
