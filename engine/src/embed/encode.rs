//! Encoding texts with a plugin encoder, in cached chunks that survive an interrupted run.
//!
//! Rows are encoded `CHUNK_ROWS` at a time; each chunk is stored as soon as it is done
//! (`Store::put_chunk`), and the stage's entry — a small [`EncodedMeta`] — is written last. A
//! rerun after a kill finds the finished chunks and encodes only the rest; a complete entry is
//! loaded without touching the encoder.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Vectors;
use crate::cache::{Lookup, Store};
use crate::digest::Digest;
use crate::error::Error;
use crate::plugin::EncoderHandle;

/// Rows per stored chunk (part of the stage key, so changing it never mixes layouts).
pub const CHUNK_ROWS: usize = 1024;

/// Cache folder of encoded vectors.
pub const STAGE: &str = "embed";

/// What an encoding produced and cost; the stage's cache entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodedMeta {
    pub n: usize,
    pub dim: usize,
    pub chunks: usize,
    /// Seconds spent in the encoder by the invocation that completed this entry (chunks it
    /// reused from an interrupted run are not counted).
    pub encode_s: f64,
}

/// How an encoding went: vectors, its record, and how many chunks were reused.
pub struct Encoded {
    pub vectors: Vectors,
    pub meta: EncodedMeta,
    pub reused_chunks: usize,
}

/// The record of a finished encoding, if the cache has one.
pub fn load_meta(store: &Store, key: &Digest) -> Result<Option<EncodedMeta>, Error> {
    let Lookup::Hit(bytes) = store.get(STAGE, key)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// The complete output of a finished encoding, if the cache has it (and every chunk is intact).
pub fn load(store: &Store, key: &Digest) -> Result<Option<Encoded>, Error> {
    let Some(meta) = load_meta(store, key)? else {
        return Ok(None);
    };
    let mut data = Vec::with_capacity(meta.n * meta.dim);
    for chunk in 0..meta.chunks {
        let Lookup::Hit(bytes) = store.get_chunk(STAGE, key, chunk)? else {
            return Ok(None);
        };
        data.extend(floats(&bytes));
    }
    if data.len() != meta.n * meta.dim {
        return Ok(None);
    }
    let vectors = Vectors {
        n: meta.n,
        dim: meta.dim,
        data,
    };
    Ok(Some(Encoded {
        vectors,
        meta,
        reused_chunks: 0,
    }))
}

/// Encodes `texts`, reusing the chunks a previous (possibly interrupted) run stored.
/// `progress` receives the number of rows just finished or found.
pub fn encode_texts(
    store: &Store,
    key: &Digest,
    encoder: &mut EncoderHandle,
    texts: &[String],
    progress: &dyn Fn(usize),
) -> Result<Encoded, Error> {
    let dim = encoder.describe().dim;
    let mut data = Vec::with_capacity(texts.len() * dim);
    let mut encode_s = 0.0;
    let mut reused_chunks = 0;
    let chunks: Vec<&[String]> = texts.chunks(CHUNK_ROWS).collect();
    for (index, rows) in chunks.iter().enumerate() {
        if let Lookup::Hit(bytes) = store.get_chunk(STAGE, key, index)?
            && bytes.len() == rows.len() * dim * 4
        {
            data.extend(floats(&bytes));
            reused_chunks += 1;
            progress(rows.len());
            continue;
        }
        let started = Instant::now();
        let batch: Vec<&str> = rows.iter().map(String::as_str).collect();
        let vectors = encoder.encode_texts(&batch)?;
        encode_s += started.elapsed().as_secs_f64();
        let bytes: Vec<u8> = vectors.iter().flat_map(|x| x.to_le_bytes()).collect();
        store.put_chunk(STAGE, key, index, &bytes)?;
        data.extend(vectors);
        progress(rows.len());
    }
    let meta = EncodedMeta {
        n: texts.len(),
        dim,
        chunks: chunks.len(),
        encode_s,
    };
    store.put(STAGE, key, &serde_json::to_vec(&meta).expect("serialises"))?;
    Ok(Encoded {
        vectors: Vectors {
            n: texts.len(),
            dim,
            data,
        },
        meta,
        reused_chunks,
    })
}

fn floats(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}
