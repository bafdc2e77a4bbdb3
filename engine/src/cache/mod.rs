//! The content-addressed store of stage outputs.
//!
//! An entry lives at `<root>/<stage>/<key hex>`, where the key is a digest of everything that
//! determines the output (see `plan`). Writes go to a temporary file in the same folder and are
//! renamed into place, so a killed run never leaves a half-written entry; each entry ends with a
//! blake3 checksum of its payload, so a corrupted one is detected, reported and recomputed rather
//! than trusted.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

const MAGIC: &[u8; 8] = b"EMBLCAC1";
const TRAILER: usize = 32 + MAGIC.len();

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// Present but failing its checksum (truncated or altered); treat as a miss.
    Corrupt(PathBuf),
}

/// A cache folder.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        std::fs::create_dir_all(root).map_err(|source| io(root, source))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
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

    pub fn get(&self, stage: &str, key: &Digest) -> Result<Lookup, CacheError> {
        read_entry(&self.entry_path(stage, key))
    }

    /// Stores `payload` atomically (temp file + fsync + rename).
    pub fn put(&self, stage: &str, key: &Digest, payload: &[u8]) -> Result<(), CacheError> {
        write_entry(&self.entry_path(stage, key), payload)
    }

    /// Piece `index` of a large output written in pieces, so an interrupted computation keeps the
    /// pieces it finished: `<root>/<stage>/<key>.chunks/<index>`. The entry at `key` itself is
    /// written last and marks the output complete.
    pub fn chunk_path(&self, stage: &str, key: &Digest, index: usize) -> PathBuf {
        self.root
            .join(stage)
            .join(format!("{}.chunks", key.hex()))
            .join(format!("{index:06}"))
    }

    pub fn get_chunk(&self, stage: &str, key: &Digest, index: usize) -> Result<Lookup, CacheError> {
        read_entry(&self.chunk_path(stage, key, index))
    }

    pub fn put_chunk(
        &self,
        stage: &str,
        key: &Digest,
        index: usize,
        payload: &[u8],
    ) -> Result<(), CacheError> {
        write_entry(&self.chunk_path(stage, key, index), payload)
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

fn verified_payload(mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    if bytes.len() < TRAILER || &bytes[bytes.len() - MAGIC.len()..] != MAGIC {
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
    file: std::fs::File,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn tempfile_in(dir: &Path) -> Result<TempFile, CacheError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    let file = std::fs::File::create_new(&path).map_err(|source| io(&path, source))?;
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
        assert!(matches!(
            store.get_chunk("embed", &key("e"), 3).unwrap(),
            Lookup::Miss
        ));
        store.put_chunk("embed", &key("e"), 3, b"rows").unwrap();
        assert!(
            matches!(store.get_chunk("embed", &key("e"), 3).unwrap(), Lookup::Hit(p) if p == b"rows")
        );
        assert!(
            !store.contains("embed", &key("e")),
            "chunks alone do not complete an entry"
        );
    }

    #[test]
    fn detects_truncated_and_altered_entries() {
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
    }
}
