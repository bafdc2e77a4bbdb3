//! Encoding texts or images with a plugin encoder, in cached chunks that survive an interrupted
//! run.
//!
//! Rows are encoded `CHUNK_ROWS` at a time; each chunk is stored as soon as it is done
//! (`Store::put_chunk`), and the stage's entry — a small [`EncodedMeta`] — is written last. A
//! rerun after a kill finds the finished chunks and encodes only the rest; a complete entry is
//! loaded without touching the encoder.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use embedlab_plugin::Image;

use serde::{Deserialize, Serialize};

use super::Vectors;
use super::images::{Decoded, Prefetcher, Unreadable};
use crate::cache::{Chunk, Lookup, Store};
use crate::digest::Digest;
use crate::error::Error;
use crate::plugin::EncoderHandle;

/// Rows per stored chunk (part of the stage key, so changing it never mixes layouts). A kill or
/// Ctrl-C loses at most this much work: under a second for MiniLM, a few seconds for
/// EfficientNet-Lite0 on two cores.
pub const CHUNK_ROWS: usize = 256;

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
    /// Rows whose image could not be used (zeros in the vectors), in row order.
    #[serde(default)]
    pub skipped: Vec<SkippedRow>,
    /// What the encoder said of itself (entries from before 0.1 lack it).
    #[serde(default)]
    pub encoder: EncoderFacts,
    /// Peak resident memory of the process while encoding, MiB (0: not measured).
    #[serde(default)]
    pub peak_rss_mb: f64,
}

/// The parts of an encoder's description the resources table shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EncoderFacts {
    pub parameters: u64,
    /// `text`, `image`: both for a jointly trained image-text model.
    pub modalities: Vec<String>,
    pub device: String,
}

impl EncoderFacts {
    fn of(encoder: &EncoderHandle) -> EncoderFacts {
        let description = encoder.describe();
        EncoderFacts {
            parameters: description.parameters,
            modalities: description
                .modalities
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
            device: description.device.clone(),
        }
    }
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
        let Lookup::Hit(bytes) = store.get_chunk(STAGE, key, Chunk::new(chunk))? else {
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
    let chunks = Chunks::new(
        store,
        key,
        texts.len(),
        EncoderFacts::of(encoder),
        encoder.describe().dim,
    );
    let encoded = chunks.run(progress, |range| {
        let batch: Vec<&str> = texts[range].iter().map(String::as_str).collect();
        Ok((encoder.encode_texts(&batch)?, Vec::new()))
    })?;
    Ok(encoded)
}

/// Images decoded per batch handed to the plugin (and decoded ahead while it encodes).
pub const IMAGE_BATCH: usize = 32;

/// A row whose image could not be used: its vector is all zeros and the run leaves the sample out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkippedRow {
    pub row: usize,
    pub reason: Unreadable,
}

/// Encodes the images at `paths` (`None`: the sample has none), decoding the next batch while
/// the plugin encodes the current one. An unreadable image is skipped and recorded in
/// [`EncodedMeta::skipped`]; with `strict`, it fails the encoding instead, naming the file.
pub fn encode_images(
    store: &Store,
    key: &Digest,
    encoder: &mut EncoderHandle,
    paths: &[Option<PathBuf>],
    strict: bool,
    progress: &dyn Fn(usize),
) -> Result<Encoded, Error> {
    let dim = encoder.describe().dim;
    let chunks = Chunks::new(store, key, paths.len(), EncoderFacts::of(encoder), dim);
    let todo: Vec<Vec<Option<PathBuf>>> = chunks
        .missing()?
        .into_iter()
        .flat_map(|range| {
            paths[range]
                .chunks(IMAGE_BATCH)
                .map(<[_]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut decoded = Prefetcher::start(todo);
    chunks.run(progress, |range| {
        let mut data = Vec::with_capacity(range.len() * dim);
        let mut skipped = Vec::new();
        for first in range.step_by(IMAGE_BATCH) {
            let batch = decoded.next().expect("one decoded batch per planned batch");
            let (vectors, batch_skipped) = encode_batch(encoder, &batch, first, paths, strict)?;
            data.extend(vectors);
            skipped.extend(batch_skipped);
        }
        Ok((data, skipped))
    })
}

/// Encodes one decoded batch whose first image is row `first` of `paths`: a vector per row
/// (zeros for an image that could not be read) and the rows skipped. With `strict`, an unreadable
/// image is an error that names its file.
pub fn encode_batch(
    encoder: &mut EncoderHandle,
    batch: &[Result<Decoded, Unreadable>],
    first: usize,
    paths: &[Option<PathBuf>],
    strict: bool,
) -> Result<ChunkOutput, Error> {
    let dim = encoder.describe().dim;
    let (good, skipped) = readable(batch, first, paths, strict)?;
    let images: Vec<Image<'_>> = good.iter().map(|(_, image)| *image).collect();
    let vectors = encoder.encode_images(&images)?;
    let mut data = vec![0.0f32; batch.len() * dim];
    for ((offset, _), vector) in good.iter().zip(vectors.chunks_exact(dim)) {
        data[offset * dim..(offset + 1) * dim].copy_from_slice(vector);
    }
    Ok((data, skipped))
}

/// The readable images of a decoded batch, each with its offset in the batch, and the rows
/// skipped.
pub type Readable<'b> = (Vec<(usize, Image<'b>)>, Vec<SkippedRow>);

/// A decoded batch whose first image is row `first` of `paths`, split into the readable images
/// and the rows skipped. With `strict`, an unreadable image is an error that names its file.
pub fn readable<'b>(
    batch: &'b [Result<Decoded, Unreadable>],
    first: usize,
    paths: &[Option<PathBuf>],
    strict: bool,
) -> Result<Readable<'b>, Error> {
    let mut good = Vec::with_capacity(batch.len());
    let mut skipped = Vec::new();
    for (offset, result) in batch.iter().enumerate() {
        let row = first + offset;
        match result {
            Ok(image) => good.push((offset, image.as_image())),
            Err(reason) if strict => {
                return Err(Error::Unsupported(format!(
                    "{}: {reason} (strict = true stops at the first unreadable image)",
                    describe_path(paths[row].as_deref())
                )));
            }
            Err(reason) => skipped.push(SkippedRow {
                row,
                reason: reason.clone(),
            }),
        }
    }
    Ok((good, skipped))
}

/// What a warning says about the rows in `skipped` (indices into `paths`, each sample's image):
/// how many of all, and the first one's file and reason. `None` when nothing was skipped.
pub fn skips_summary(skipped: &[SkippedRow], paths: &[Option<&Path>]) -> Option<String> {
    let first = skipped.iter().min_by_key(|s| s.row)?;
    Some(format!(
        "{} of {} images could not be read (first: {}: {})",
        skipped.len(),
        paths.len(),
        describe_path(paths[first.row]),
        first.reason
    ))
}

fn describe_path(path: Option<&Path>) -> String {
    path.map_or_else(|| "(no image)".to_string(), |p| p.display().to_string())
}

/// A chunk's or batch's output: its vectors, row-major, and the rows it could not encode.
pub type ChunkOutput = (Vec<f32>, Vec<SkippedRow>);

/// The chunked, resumable encoding of `n` rows into one cache entry.
struct Chunks<'a> {
    store: &'a Store,
    key: &'a Digest,
    n: usize,
    encoder: EncoderFacts,
    dim: usize,
}

impl<'a> Chunks<'a> {
    fn new(store: &'a Store, key: &'a Digest, n: usize, encoder: EncoderFacts, dim: usize) -> Self {
        Chunks {
            store,
            key,
            n,
            encoder,
            dim,
        }
    }

    fn ranges(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let n = self.n;
        (0..n.div_ceil(CHUNK_ROWS)).map(move |i| i * CHUNK_ROWS..((i + 1) * CHUNK_ROWS).min(n))
    }

    /// A stored chunk's vectors and skipped rows, if the chunk is complete and intact.
    fn stored(&self, index: usize, rows: usize) -> Result<Option<ChunkOutput>, Error> {
        let Lookup::Hit(bytes) = self.store.get_chunk(STAGE, self.key, Chunk::new(index))? else {
            return Ok(None);
        };
        if bytes.len() != rows * self.dim * 4 {
            return Ok(None);
        }
        // The skip list is written before the vectors, so a stored vector chunk has one.
        let skipped = match self.store.get_chunk(STAGE, self.key, skips_chunk(index))? {
            Lookup::Hit(json) => serde_json::from_slice(&json).ok(),
            _ => None,
        };
        Ok(skipped.map(|skipped| (floats(&bytes).collect(), skipped)))
    }

    /// The row ranges of the chunks still to encode.
    fn missing(&self) -> Result<Vec<Range<usize>>, Error> {
        let mut missing = Vec::new();
        for (index, range) in self.ranges().enumerate() {
            if self.stored(index, range.len())?.is_none() {
                missing.push(range);
            }
        }
        Ok(missing)
    }

    /// Encodes every missing chunk with `encode` (vectors for the range, row-major, and the rows
    /// it skipped), storing each as soon as it is done, then the entry's record.
    fn run(
        &self,
        progress: &dyn Fn(usize),
        mut encode: impl FnMut(Range<usize>) -> Result<ChunkOutput, Error>,
    ) -> Result<Encoded, Error> {
        crate::resources::reset_peak_rss();
        let mut data = Vec::with_capacity(self.n * self.dim);
        let mut skipped = Vec::new();
        let mut encode_s = 0.0;
        let mut reused_chunks = 0;
        let mut chunks = 0;
        for (index, range) in self.ranges().enumerate() {
            chunks += 1;
            let rows = range.len();
            let (vectors, chunk_skipped) = match self.stored(index, rows)? {
                Some(found) => {
                    reused_chunks += 1;
                    found
                }
                None => {
                    let total = self.n.div_ceil(CHUNK_ROWS);
                    crate::interrupt::check(|| {
                        format!("after {index} of {total} chunks of encoding")
                    })?;
                    let started = Instant::now();
                    let (vectors, chunk_skipped) = encode(range)?;
                    encode_s += started.elapsed().as_secs_f64();
                    let skips = serde_json::to_vec(&chunk_skipped).expect("serialises");
                    self.store
                        .put_chunk(STAGE, self.key, skips_chunk(index), &skips)?;
                    let bytes: Vec<u8> = vectors.iter().flat_map(|x| x.to_le_bytes()).collect();
                    self.store
                        .put_chunk(STAGE, self.key, Chunk::new(index), &bytes)?;
                    (vectors, chunk_skipped)
                }
            };
            data.extend(vectors);
            skipped.extend(chunk_skipped);
            progress(rows);
        }
        let meta = EncodedMeta {
            n: self.n,
            dim: self.dim,
            chunks,
            encode_s,
            skipped,
            encoder: self.encoder.clone(),
            peak_rss_mb: crate::resources::peak_rss_mb(),
        };
        self.store.put(
            STAGE,
            self.key,
            &serde_json::to_vec(&meta).expect("serialises"),
        )?;
        Ok(Encoded {
            vectors: Vectors {
                n: self.n,
                dim: self.dim,
                data,
            },
            meta,
            reused_chunks,
        })
    }
}

/// Where a chunk's skipped rows are stored, beside its vectors.
fn skips_chunk(index: usize) -> Chunk {
    Chunk::side(index, "skips")
}

fn floats(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}
