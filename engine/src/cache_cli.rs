//! `embedlab cache verify` and `embedlab cache gc`: looking after a cache folder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use embedlab::cache::{GcPolicy, Store, Verification};
use embedlab::manifest::{self, Overrides};
use embedlab::plan::Plan;
use embedlab::progress::Progress;

use crate::Sources;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Read every entry and chunk and check it against its checksum. Exit status 1 when some
    /// are damaged (runs treat those as missing and recompute them).
    Verify {
        #[command(flatten)]
        cache: CacheDir,
        /// Also delete the damaged files and leftover temporary files now.
        #[arg(long)]
        remove: bool,
    },
    /// Remove entries (with their chunks): unused for longer than --older-than, the least
    /// recently used beyond --max-size, or those no --keep manifest uses. Always removes the
    /// temporary files of interrupted writes. Refused while a run has the cache open.
    Gc {
        #[command(flatten)]
        cache: CacheDir,
        /// Remove entries not used for this long (e.g. 30days, 12h).
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Remove the least recently used entries until the cache is at most this size (e.g.
        /// 20G, 500M; powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Keep only the entries these manifests' plans use (repeatable); remove all others.
        #[arg(long, value_name = "MANIFEST")]
        keep: Vec<PathBuf>,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
pub struct CacheDir {
    /// The cache folder (default: .embedlab/cache in the current folder, where `run` puts the
    /// cache of a manifest in that folder).
    #[arg(
        long,
        value_name = "DIR",
        env = "EMBEDLAB_CACHE_DIR",
        default_value = ".embedlab/cache"
    )]
    cache_dir: PathBuf,
}

pub fn run(
    command: CacheCommand,
    sources: &Sources,
    progress: &Progress,
) -> anyhow::Result<ExitCode> {
    match command {
        CacheCommand::Verify { cache, remove } => verify(&cache.cache_dir, remove, progress),
        CacheCommand::Gc {
            cache,
            older_than,
            max_size,
            keep,
            dry_run,
        } => {
            let store = open_alone(&cache.cache_dir)?;
            let keep_only = match keep.is_empty() {
                true => None,
                false => Some(used_entries(&keep, &store, sources)?),
            };
            let policy = GcPolicy {
                older_than,
                max_bytes: max_size,
                keep_only,
                dry_run,
            };
            gc(&store, &policy, progress)
        }
    }
}

fn verify(root: &Path, remove: bool, progress: &Progress) -> anyhow::Result<ExitCode> {
    ensure_exists(root)?;
    let store = match remove {
        true => open_alone(root)?,
        false => Store::open(root)?,
    };
    let found = store.verify()?;
    for damage in &found.damaged {
        println!("damaged  {}: {}", damage.path.display(), damage.reason);
    }
    println!("{}", summary(root, &found));
    if !found.temporary.is_empty() {
        progress.info(&format!(
            "{} temporary files of interrupted writes (removed by `embedlab cache gc`)",
            found.temporary.len()
        ));
    }
    if remove {
        store.remove_damaged(&found)?;
        if !found.damaged.is_empty() {
            progress.info("removed the damaged files; runs will recompute them");
        }
        return Ok(ExitCode::SUCCESS);
    }
    Ok(match found.damaged.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

fn summary(root: &Path, found: &Verification) -> String {
    let state = match found.damaged.len() {
        0 => "all intact".to_string(),
        n => format!(
            "{n} damaged (runs recompute them; `embedlab cache verify --remove` deletes them)"
        ),
    };
    format!(
        "cache {}: {} entries, {} chunks, {}: {state}",
        root.display(),
        found.entries,
        found.chunks,
        human_size(found.bytes)
    )
}

fn gc(store: &Store, policy: &GcPolicy, progress: &Progress) -> anyhow::Result<ExitCode> {
    let report = store.gc(policy)?;
    let verb = if policy.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for unit in &report.removed {
        let state = if unit.complete { "" } else { " (unfinished)" };
        progress.detail(&format!(
            "{verb} {}/{}{state}, {}",
            unit.stage,
            unit.key,
            human_size(unit.bytes)
        ));
    }
    println!(
        "cache {}: {verb} {} entries ({}) and {} temporary files; kept {} entries ({})",
        store.root().display(),
        report.removed.len(),
        human_size(report.removed_bytes()),
        report.temporary.len(),
        report.kept,
        human_size(report.kept_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// The entries the plans of `manifests` use, each planned with its own overrides from the
/// environment (models looked up, never fetched).
fn used_entries(
    manifests: &[PathBuf],
    store: &Store,
    sources: &Sources,
) -> anyhow::Result<HashSet<(String, String)>> {
    let env = sources.environment(false)?;
    let overrides = Overrides {
        env: true,
        ..Overrides::default()
    };
    let mut used = HashSet::new();
    for path in manifests {
        let manifest = manifest::load(path, &overrides)?;
        let plan = Plan::build(&manifest, &env, store)
            .with_context(|| format!("planning {}", path.display()))?;
        let entries = plan.cache_entries().into_iter();
        used.extend(entries.map(|(stage, key)| (stage.to_string(), key.hex())));
    }
    Ok(used)
}

fn open_alone(root: &Path) -> anyhow::Result<Store> {
    ensure_exists(root)?;
    Ok(Store::open_exclusive(root)?)
}

/// Refuses a cache folder that does not exist, rather than creating an empty one.
fn ensure_exists(root: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        root.is_dir(),
        "{}: no such cache folder (give it with --cache-dir)",
        root.display()
    );
    Ok(())
}

/// `20G`, `500M`, `1.5T`, `4096` (bytes); units are powers of 1024, an optional `B`/`iB` after.
fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let unit_at = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(unit_at);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 20G, 500M)"))?;
    let unit = unit.trim_end_matches("iB").trim_end_matches('B');
    let power = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    if !(number.is_finite() && number >= 0.0) {
        return Err(format!("{text:?}: a size cannot be negative"));
    }
    Ok((number * 1024f64.powi(power)) as u64)
}

fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("1.5M"), Ok(1_572_864));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("-3G").unwrap_err().contains("negative"));
        assert!(parse_size("G").unwrap_err().contains("not a size"));
    }

    #[test]
    fn sizes_print_in_the_largest_unit() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
