//! The content-addressed store of stage outputs.
//!
//! An entry lives at `<root>/<stage>/<key hex>`, where the key is a digest of everything that
//! determines the output (see `plan`). Writes go to a temporary file in the same folder and are
//! renamed into place, so a killed run never leaves a half-written entry, and a reader never sees
//! one; each entry ends with a blake3 checksum of its payload, so a corrupted one is detected,
//! reported and recomputed rather than trusted.
//!
//! Several processes may share a cache. Each holds a shared lock on `<root>/.lock` while it has
//! the store open, so that `gc` (which takes it exclusively) never removes what a run is using;
//! and a process computing an entry holds `<stage>/<key hex>.lock`, so that a second process
//! wanting the same entry waits for it instead of computing it again ([`Store::claim`]).
//! `maintenance.rs` has `embedlab cache verify` and `gc`.

mod maintenance;

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use maintenance::{Damage, GcPolicy, GcReport, Unit, Verification};

use crate::digest::Digest;

const MAGIC: &[u8; 8] = b"EMBLCAC1";
const TRAILER: usize = 32 + MAGIC.len();
/// The lock every process holds (shared) while it has the store open; `gc` holds it exclusively.
const ROOT_LOCK: &str = ".lock";
const TEMP_PREFIX: &str = ".tmp-";
const CHUNKS_SUFFIX: &str = ".chunks";
const LOCK_SUFFIX: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cache {path} is in use by another embedlab process; run this again when it has finished"
    )]
    Busy { path: PathBuf },
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// Present but failing its checksum (truncated or altered); treat as a miss.
    Corrupt(PathBuf),
}

/// What [`Store::claim`] got: the entry, found, or the right to compute it.
#[derive(Debug)]
pub enum Claim<T> {
    Found(T),
    /// No process has the entry and this one now computes it; other processes wanting it wait
    /// until this lock is dropped.
    Mine(EntryLock),
}

/// The lock of one entry being computed; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
}

/// Piece `index` of a large output written in pieces, or a side file of that piece (`side`).
#[derive(Clone, Copy, Debug)]
pub struct Chunk {
    pub index: usize,
    pub side: Option<&'static str>,
}

impl Chunk {
    pub fn new(index: usize) -> Chunk {
        Chunk { index, side: None }
    }

    /// A file stored beside piece `index` (e.g. `"skips"`): `<index>.<side>`.
    pub fn side(index: usize, side: &'static str) -> Chunk {
        Chunk {
            index,
            side: Some(side),
        }
    }

    fn file_name(&self) -> String {
        match self.side {
            None => format!("{:06}", self.index),
            Some(side) => format!("{:06}.{side}", self.index),
        }
    }
}

/// A cache folder, open (its root lock held shared) while any clone lives.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    _open: Arc<File>,
    /// Entries found corrupt since the last [`Store::take_corrupt`].
    corrupt: Arc<Mutex<Vec<PathBuf>>>,
}

impl Store {
    /// Opens (creating) the cache at `root`, waiting while `gc` holds it.
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        let lock = root_lock(root)?;
        lock.lock_shared()
            .map_err(|source| io(&root.join(ROOT_LOCK), source))?;
        Ok(Store::holding(root, lock))
    }

    /// Opens the cache at `root` for this process alone (to remove entries), or fails with
    /// [`CacheError::Busy`] while another process has it open.
    pub fn open_exclusive(root: &Path) -> Result<Store, CacheError> {
        let lock = root_lock(root)?;
        match lock.try_lock() {
            Ok(()) => Ok(Store::holding(root, lock)),
            Err(TryLockError::WouldBlock) => Err(CacheError::Busy {
                path: root.to_path_buf(),
            }),
            Err(TryLockError::Error(source)) => Err(io(&root.join(ROOT_LOCK), source)),
        }
    }

    fn holding(root: &Path, lock: File) -> Store {
        Store {
            root: root.to_path_buf(),
            _open: Arc::new(lock),
            corrupt: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_path(&self, stage: &str, key: &Digest) -> PathBuf {
        self.root.join(stage).join(key.hex())
    }

    /// Whether a (checksum-unverified) entry exists: cheap, for `plan`.
    pub fn contains(&self, stage: &str, key: &Digest) -> bool {
        self.entry_path(stage, key).is_file()
    }

    /// The entry `stage/key`. A hit marks the entry used now (what `gc --older-than` and
    /// `--max-size` go by); a corrupt entry is also remembered for [`Store::take_corrupt`].
    pub fn get(&self, stage: &str, key: &Digest) -> Result<Lookup, CacheError> {
        let path = self.entry_path(stage, key);
        let found = self.read(&path)?;
        if matches!(found, Lookup::Hit(_)) {
            mark_used(&path);
        }
        Ok(found)
    }

    /// Stores `payload` atomically (temp file + fsync + rename).
    pub fn put(&self, stage: &str, key: &Digest, payload: &[u8]) -> Result<(), CacheError> {
        write_entry(&self.entry_path(stage, key), payload)
    }

    /// A chunk of a large output written in pieces, so an interrupted computation keeps the
    /// pieces it finished: `<root>/<stage>/<key>.chunks/<index>[.<side>]`. The entry at `key`
    /// itself is written last and marks the output complete.
    pub fn chunk_path(&self, stage: &str, key: &Digest, chunk: Chunk) -> PathBuf {
        self.root
            .join(stage)
            .join(format!("{}{CHUNKS_SUFFIX}", key.hex()))
            .join(chunk.file_name())
    }

    pub fn get_chunk(&self, stage: &str, key: &Digest, chunk: Chunk) -> Result<Lookup, CacheError> {
        self.read(&self.chunk_path(stage, key, chunk))
    }

    pub fn put_chunk(
        &self,
        stage: &str,
        key: &Digest,
        chunk: Chunk,
        payload: &[u8],
    ) -> Result<(), CacheError> {
        write_entry(&self.chunk_path(stage, key, chunk), payload)
    }

    /// The entry `stage/key` as `lookup` reads it, or, when it is missing, the right to compute
    /// it. While another process computes the same entry this waits for it (calling `waiting`
    /// once first), then looks again: what that process stored is found, not recomputed.
    pub fn claim<T, E: From<CacheError>>(
        &self,
        stage: &str,
        key: &Digest,
        waiting: impl FnOnce(),
        mut lookup: impl FnMut() -> Result<Option<T>, E>,
    ) -> Result<Claim<T>, E> {
        if let Some(found) = lookup()? {
            return Ok(Claim::Found(found));
        }
        let lock = self.lock_entry(stage, key, waiting)?;
        Ok(match lookup()? {
            Some(found) => Claim::Found(found),
            None => Claim::Mine(lock),
        })
    }

    fn lock_entry(
        &self,
        stage: &str,
        key: &Digest,
        waiting: impl FnOnce(),
    ) -> Result<EntryLock, CacheError> {
        let dir = self.root.join(stage);
        std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
        let path = dir.join(format!("{}{LOCK_SUFFIX}", key.hex()));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| io(&path, source))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                file.lock().map_err(|source| io(&path, source))?;
            }
            Err(TryLockError::Error(source)) => return Err(io(&path, source)),
        }
        Ok(EntryLock { _file: file })
    }

    /// The entries and chunks found corrupt since the last call, each once (each was treated
    /// as missing, so it is being recomputed).
    pub fn take_corrupt(&self) -> Vec<PathBuf> {
        let mut found =
            std::mem::take(&mut *self.corrupt.lock().unwrap_or_else(|p| p.into_inner()));
        found.sort();
        found.dedup();
        found
    }

    fn read(&self, path: &Path) -> Result<Lookup, CacheError> {
        let found = read_entry(path)?;
        if let Lookup::Corrupt(path) = &found {
            let mut corrupt = self.corrupt.lock().unwrap_or_else(|p| p.into_inner());
            corrupt.push(path.clone());
        }
        Ok(found)
    }
}

fn root_lock(root: &Path) -> Result<File, CacheError> {
    std::fs::create_dir_all(root).map_err(|source| io(root, source))?;
    let path = root.join(ROOT_LOCK);
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| io(&path, source))
}

/// Sets the entry's modification time to now: the cache's record of when it was last used.
/// Best effort: a read-only cache still serves hits.
fn mark_used(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn read_entry(path: &Path) -> Result<Lookup, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
        Err(source) => return Err(io(path, source)),
    };
    Ok(match verified_payload(bytes) {
        Some(payload) => Lookup::Hit(payload),
        None => Lookup::Corrupt(path.to_path_buf()),
    })
}

fn write_entry(path: &Path, payload: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().expect("entry has a stage folder");
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let mut tmp = tempfile_in(dir)?;
    let checksum = blake3::hash(payload);
    let written = tmp
        .file
        .write_all(payload)
        .and_then(|_| tmp.file.write_all(checksum.as_bytes()))
        .and_then(|_| tmp.file.write_all(MAGIC))
        .and_then(|_| tmp.file.sync_all());
    written.map_err(|source| io(&tmp.path, source))?;
    std::fs::rename(&tmp.path, path).map_err(|source| io(path, source))?;
    tmp.keep = true;
    Ok(())
}

/// Whether `bytes` end like an entry (checksum and magic), whatever the checksum says.
fn has_trailer(bytes: &[u8]) -> bool {
    bytes.len() >= TRAILER && &bytes[bytes.len() - MAGIC.len()..] == MAGIC
}

fn verified_payload(mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    if !has_trailer(&bytes) {
        return None;
    }
    let payload_len = bytes.len() - TRAILER;
    let stored = &bytes[payload_len..payload_len + 32];
    if blake3::hash(&bytes[..payload_len]).as_bytes() != stored {
        return None;
    }
    bytes.truncate(payload_len);
    Some(bytes)
}

/// A temporary file removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A new temporary file in `dir`, named by process and a per-process counter so that neither
/// threads nor processes writing the same entry ever share one.
fn tempfile_in(dir: &Path) -> Result<TempFile, CacheError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{TEMP_PREFIX}{}-{serial}", std::process::id()));
    let file = File::create_new(&path).map_err(|source| io(&path, source))?;
    Ok(TempFile {
        path,
        file,
        keep: false,
    })
}

fn io(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Digest {
        Digest::of_bytes(s.as_bytes())
    }

    #[test]
    fn round_trips_and_misses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(store.get("knn", &key("a")).unwrap(), Lookup::Miss));
        store.put("knn", &key("a"), b"payload").unwrap();
        assert!(store.contains("knn", &key("a")));
        assert!(matches!(store.get("knn", &key("a")).unwrap(), Lookup::Hit(p) if p == b"payload"));
        let leftovers = std::fs::read_dir(dir.path().join("knn")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files remain");
    }

    #[test]
    fn chunks_live_beside_their_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (e, third) = (key("e"), Chunk::new(3));
        assert!(matches!(
            store.get_chunk("embed", &e, third).unwrap(),
            Lookup::Miss
        ));
        store.put_chunk("embed", &e, third, b"rows").unwrap();
        store
            .put_chunk("embed", &e, Chunk::side(3, "skips"), b"[]")
            .unwrap();
        assert!(
            matches!(store.get_chunk("embed", &e, third).unwrap(), Lookup::Hit(p) if p == b"rows")
        );
        assert!(
            matches!(store.get_chunk("embed", &e, Chunk::side(3, "skips")).unwrap(), Lookup::Hit(p) if p == b"[]")
        );
        assert!(
            !store.contains("embed", &e),
            "chunks alone do not complete an entry"
        );
    }

    #[test]
    fn detects_reports_truncated_and_altered_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put("s", &key("t"), b"0123456789").unwrap();
        let path = store.entry_path("s", &key("t"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            store.get("s", &key("t")).unwrap(),
            Lookup::Corrupt(_)
        ));
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert!(matches!(
            store.get("s", &key("t")).unwrap(),
            Lookup::Corrupt(_)
        ));
        assert_eq!(store.take_corrupt(), vec![path]);
        assert!(store.take_corrupt().is_empty());
    }

    #[test]
    fn a_claim_finds_what_the_lock_holder_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lookup = |s: &Store| match s.get("knn", &key("k")) {
            Ok(Lookup::Hit(bytes)) => Ok(Some(bytes)),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        let Claim::Mine(lock) = store
            .claim("knn", &key("k"), || {}, || lookup(&store))
            .unwrap()
        else {
            panic!("nothing is stored yet")
        };
        let other = Store::open(dir.path()).unwrap();
        let waiter = std::thread::spawn(move || {
            let waited = std::cell::Cell::new(false);
            let claim = other.claim("knn", &key("k"), || waited.set(true), || lookup(&other));
            (waited.get(), claim.unwrap())
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        store.put("knn", &key("k"), b"neighbours").unwrap();
        drop(lock);
        let (waited, claim) = waiter.join().unwrap();
        assert!(waited, "the second claimant was told it waits");
        assert!(matches!(claim, Claim::Found(bytes) if bytes == b"neighbours"));
    }

    #[test]
    fn an_open_store_keeps_exclusive_openers_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open_exclusive(dir.path()),
            Err(CacheError::Busy { .. })
        ));
        drop((store, second));
        let alone = Store::open_exclusive(dir.path()).unwrap();
        assert!(matches!(
            Store::open_exclusive(dir.path()),
            Err(CacheError::Busy { .. })
        ));
        drop(alone);
    }
}
