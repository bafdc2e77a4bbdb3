//! Looking after a cache folder: `embedlab cache verify` (every entry and chunk read and checked
//! against its checksum) and `embedlab cache gc` (removing entries by age, by total size, or
//! because no given manifest uses them).
//!
//! Both see the folder as units: an entry `<stage>/<key>` together with its chunks
//! (`<key>.chunks/`) and its lock file. A unit with chunks but no entry is an unfinished
//! computation that a rerun would resume.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{CHUNKS_SUFFIX, CacheError, LOCK_SUFFIX, Lookup, ROOT_LOCK, Store, TEMP_PREFIX};
use super::{io, read_entry};

/// One entry with its chunks and lock file.
#[derive(Clone, Debug)]
pub struct Unit {
    pub stage: String,
    /// The key, in hex.
    pub key: String,
    /// Whether the entry itself exists (otherwise only chunks of an unfinished computation).
    pub complete: bool,
    pub bytes: u64,
    /// When the entry was last read or written (for an unfinished one, its newest chunk).
    pub last_used: SystemTime,
    paths: Vec<PathBuf>,
}

/// A file that failed its check.
#[derive(Clone, Debug)]
pub struct Damage {
    pub path: PathBuf,
    pub reason: &'static str,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    pub entries: usize,
    pub chunks: usize,
    pub bytes: u64,
    pub damaged: Vec<Damage>,
    /// Temporary files of writes that never finished (a killed process leaves them).
    pub temporary: Vec<PathBuf>,
}

/// What `gc` removes.
#[derive(Clone, Debug, Default)]
pub struct GcPolicy {
    /// Units not used for longer than this.
    pub older_than: Option<Duration>,
    /// Least recently used units until the cache is no larger than this.
    pub max_bytes: Option<u64>,
    /// Units whose `(stage, key hex)` is not in this set (the keys some manifests' plans use).
    pub keep_only: Option<HashSet<(String, String)>>,
    /// Only say what would be removed.
    pub dry_run: bool,
}

/// What `gc` removed (or, with `dry_run`, would remove) and what is left.
#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<Unit>,
    pub temporary: Vec<PathBuf>,
    pub kept: usize,
    pub kept_bytes: u64,
}

impl GcReport {
    pub fn removed_bytes(&self) -> u64 {
        self.removed.iter().map(|u| u.bytes).sum()
    }
}

impl Store {
    /// Reads every entry and chunk and checks its checksum.
    pub fn verify(&self) -> Result<Verification, CacheError> {
        let mut found = Verification::default();
        for stage in stage_dirs(&self.root)? {
            for path in files_under(&stage)? {
                let name = file_name(&path);
                if name.starts_with(TEMP_PREFIX) {
                    found.temporary.push(path);
                    continue;
                }
                if name.ends_with(LOCK_SUFFIX) {
                    continue;
                }
                let in_chunks = path.parent().is_some_and(|p| p != stage);
                match read_entry(&path)? {
                    Lookup::Hit(_) | Lookup::Miss => {}
                    Lookup::Corrupt(_) => found.damaged.push(Damage {
                        reason: defect(&path),
                        path: path.clone(),
                    }),
                }
                found.bytes += size(&path);
                match in_chunks {
                    true => found.chunks += 1,
                    false => found.entries += 1,
                }
            }
        }
        Ok(found)
    }

    /// Removes the damaged files and leftover temporary files `verification` lists, so that
    /// runs recompute them. Needs the store opened with [`Store::open_exclusive`].
    pub fn remove_damaged(&self, verification: &Verification) -> Result<(), CacheError> {
        let damaged = verification.damaged.iter().map(|d| &d.path);
        for path in damaged.chain(&verification.temporary) {
            remove(path)?;
        }
        Ok(())
    }

    /// Every unit, least recently used first.
    pub fn units(&self) -> Result<Vec<Unit>, CacheError> {
        let mut units: BTreeMap<(String, String), Unit> = BTreeMap::new();
        for stage_dir in stage_dirs(&self.root)? {
            let stage = file_name(&stage_dir).to_string();
            for entry in read_dir(&stage_dir)? {
                let name = file_name(&entry).to_string();
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let (key, kind) = match (
                    name.strip_suffix(CHUNKS_SUFFIX),
                    name.strip_suffix(LOCK_SUFFIX),
                ) {
                    (Some(key), _) => (key.to_string(), Part::Chunks),
                    (_, Some(key)) => (key.to_string(), Part::Lock),
                    _ => (name.clone(), Part::Entry),
                };
                let unit = units
                    .entry((stage.clone(), key.clone()))
                    .or_insert_with(|| Unit {
                        stage: stage.clone(),
                        key,
                        complete: false,
                        bytes: 0,
                        last_used: SystemTime::UNIX_EPOCH,
                        paths: Vec::new(),
                    });
                unit.add(&entry, kind)?;
            }
        }
        let mut units: Vec<Unit> = units.into_values().collect();
        units.sort_by_key(|u| u.last_used);
        Ok(units)
    }

    /// Removes what `policy` says, and every leftover temporary file. Needs the store opened
    /// with [`Store::open_exclusive`], so no run is using what goes.
    pub fn gc(&self, policy: &GcPolicy) -> Result<GcReport, CacheError> {
        let now = SystemTime::now();
        let units = self.units()?;
        let mut total: u64 = units.iter().map(|u| u.bytes).sum();
        let mut report = GcReport::default();
        for unit in units {
            // A unit that is only a lock file holds nothing; while gc has the cache alone,
            // nobody holds the lock. It goes, but is no entry to report.
            if unit.paths.iter().all(|p| is_lock(p)) {
                if !policy.dry_run {
                    unit.paths.iter().try_for_each(|p| remove(p))?;
                }
                continue;
            }
            let unused = (policy.keep_only.as_ref())
                .is_some_and(|keep| !keep.contains(&(unit.stage.clone(), unit.key.clone())));
            let old = (policy.older_than)
                .is_some_and(|age| now.duration_since(unit.last_used).unwrap_or_default() > age);
            let over = policy.max_bytes.is_some_and(|max| total > max);
            if unused || old || over {
                total -= unit.bytes;
                if !policy.dry_run {
                    unit.paths.iter().try_for_each(|p| remove(p))?;
                }
                report.removed.push(unit);
            } else {
                report.kept += 1;
                report.kept_bytes += unit.bytes;
            }
        }
        for stage in stage_dirs(&self.root)? {
            let temporary = files_under(&stage)?
                .into_iter()
                .filter(|p| file_name(p).starts_with(TEMP_PREFIX));
            report.temporary.extend(temporary);
        }
        if !policy.dry_run {
            report.temporary.iter().try_for_each(|p| remove(p))?;
        }
        Ok(report)
    }
}

#[derive(Clone, Copy)]
enum Part {
    Entry,
    Chunks,
    Lock,
}

impl Unit {
    fn add(&mut self, path: &Path, part: Part) -> Result<(), CacheError> {
        let (bytes, modified) = match part {
            Part::Entry => {
                self.complete = true;
                (size(path), modified(path))
            }
            Part::Chunks => {
                let files = files_under(path)?;
                let newest = files.iter().map(|f| modified(f)).max();
                (
                    files.iter().map(|f| size(f)).sum(),
                    newest.unwrap_or(modified(path)),
                )
            }
            Part::Lock => (0, SystemTime::UNIX_EPOCH),
        };
        self.bytes += bytes;
        self.last_used = self.last_used.max(modified);
        self.paths.push(path.to_path_buf());
        Ok(())
    }
}

/// Why a file that failed its check did.
fn defect(path: &Path) -> &'static str {
    match std::fs::read(path) {
        Ok(bytes) if super::has_trailer(&bytes) => "checksum mismatch (altered)",
        Ok(_) => "no checksum trailer (truncated, or not a cache entry)",
        Err(_) => "unreadable",
    }
}

fn stage_dirs(root: &Path) -> Result<Vec<PathBuf>, CacheError> {
    Ok(read_dir(root)?
        .into_iter()
        .filter(|p| p.is_dir() && !file_name(p).starts_with('.'))
        .collect())
}

/// The files in `dir` and its subfolders, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let mut files = Vec::new();
    for path in read_dir(dir)? {
        match path.is_dir() {
            true => files.extend(files_under(&path)?),
            false => files.push(path),
        }
    }
    Ok(files)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let entries = std::fs::read_dir(dir).map_err(|source| io(dir, source))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|source| io(dir, source))?;
    paths.sort();
    Ok(paths)
}

fn remove(path: &Path) -> Result<(), CacheError> {
    let removed = match path.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, e)),
        _ => Ok(()),
    }
}

fn is_lock(path: &Path) -> bool {
    file_name(path).ends_with(LOCK_SUFFIX) && file_name(path) != ROOT_LOCK
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}
