//! Content digests: the identity of inputs and stage outputs.
//!
//! Every cache key and every provenance fingerprint is a [`Digest`]: a blake3 hash written as
//! `blake3:<hex>`. A [`Hasher`] builds one from typed fields, each length-prefixed so that two
//! different field sequences never hash alike ("ab" + "c" differs from "a" + "bc").

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A blake3 digest of content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The lowercase hex form, without the `blake3:` prefix (used for file names).
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex digits, enough to tell entries apart in listings.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Digest of a file's bytes, read in chunks so large files never sit in memory.
    pub fn of_file(path: &Path) -> std::io::Result<Digest> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Digest(*hasher.finalize().as_bytes()))
    }

    /// Digest of a byte string.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.short())
    }
}

impl std::str::FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("blake3:")
            .ok_or_else(|| format!("not a blake3 digest: {s}"))?;
        let hash = blake3::Hash::from_hex(hex).map_err(|e| format!("bad digest {s}: {e}"))?;
        Ok(Digest(*hash.as_bytes()))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that digests the bytes read through it, so that a large file is hashed in the same
/// pass that parses it instead of in a second read.
pub struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }

    /// The digest of everything read so far (all of it, once the reader is at its end: then equal
    /// to [`Digest::of_file`]).
    pub fn digest(&self) -> Digest {
        Digest(*self.hasher.finalize().as_bytes())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Builds a [`Digest`] from a sequence of typed, length-prefixed fields.
pub struct Hasher(blake3::Hasher);

impl Hasher {
    /// A hasher for one kind of thing; `domain` keeps digests of different kinds apart.
    pub fn new(domain: &str) -> Hasher {
        let mut hasher = Hasher(blake3::Hasher::new());
        hasher.str(domain);
        hasher
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.update(&v.to_le_bytes());
        self
    }

    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.u64(v.to_bits())
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u64(v as u64)
    }

    pub fn digest(&mut self, d: &Digest) -> &mut Self {
        self.0.update(&d.0);
        self
    }

    pub fn finish(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let ab_c = Hasher::new("t").str("ab").str("c").finish();
        let a_bc = Hasher::new("t").str("a").str("bc").finish();
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn display_round_trips() {
        let d = Digest::of_bytes(b"hello");
        let parsed: Digest = d.to_string().parse().unwrap();
        assert_eq!(parsed, d);
        assert!(d.to_string().starts_with("blake3:"));
    }

    #[test]
    fn a_hashing_reader_read_to_the_end_digests_the_file() {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = HashingReader::new(bytes.as_slice());
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(reader.digest(), Digest::of_bytes(&bytes));
    }
}
