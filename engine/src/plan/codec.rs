//! Byte formats of the stored stage outputs.
//!
//! `dataset` and `metrics` are JSON (small, inspectable); `knn` is binary (`n × k` indices and
//! scores, little-endian) with the timings and peak memory of the computation that produced it, so a cached run
//! still reports how long its work took, and the samples it left out (as JSON after the numbers),
//! so a cached run still knows which rows its indices refer to. That JSON is the list of skipped
//! samples for an exact search (as before faiss existed, so older entries stay valid), and
//! `{"skipped": [...], "faiss": {...}}` for a faiss search, whose build and search times, threads
//! and version are kept too.

use serde::{Deserialize, Serialize};

use crate::report::results::SkippedImage;
use crate::retrieval::{FaissFacts, Neighbours};

const KNN_MAGIC: &[u8; 8] = b"EMBLKNN3";

/// A stored k-NN result and what producing it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct KnnRecord {
    pub neighbours: Neighbours,
    /// Seconds spent building the fused vectors (loading or encoding, then fusing).
    pub embed_s: f64,
    pub knn_s: f64,
    /// Peak resident memory of the process during the search, MiB (0: not measured).
    pub peak_rss_mb: f64,
    /// Samples left out (unreadable images); the neighbours' row indices count only the others.
    pub skipped: Vec<SkippedImage>,
    /// What the faiss search reported, for a faiss `knn` stage.
    pub faiss: Option<FaissFacts>,
}

/// The JSON tail of a faiss search's entry.
#[derive(Serialize, Deserialize)]
struct Tail {
    skipped: Vec<SkippedImage>,
    faiss: FaissFacts,
}

pub fn encode_knn(record: &KnnRecord) -> Vec<u8> {
    let nb = &record.neighbours;
    let mut out = Vec::with_capacity(40 + nb.indices.len() * 8);
    out.extend_from_slice(KNN_MAGIC);
    out.extend_from_slice(&(nb.n as u64).to_le_bytes());
    out.extend_from_slice(&(nb.k as u64).to_le_bytes());
    out.extend_from_slice(&record.embed_s.to_le_bytes());
    out.extend_from_slice(&record.knn_s.to_le_bytes());
    out.extend_from_slice(&record.peak_rss_mb.to_le_bytes());
    nb.indices
        .iter()
        .for_each(|i| out.extend_from_slice(&i.to_le_bytes()));
    nb.scores
        .iter()
        .for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
    let tail = match &record.faiss {
        None => serde_json::to_vec(&record.skipped),
        Some(faiss) => serde_json::to_vec(&Tail {
            skipped: record.skipped.clone(),
            faiss: faiss.clone(),
        }),
    };
    out.extend(tail.expect("serialises"));
    out
}

/// Decodes a `knn` entry; `None` when the bytes are not one (an entry from another version).
pub fn decode_knn(bytes: &[u8]) -> Option<KnnRecord> {
    let rest = bytes.strip_prefix(KNN_MAGIC)?;
    let word = |i: usize| -> Option<[u8; 8]> { rest.get(i * 8..i * 8 + 8)?.try_into().ok() };
    let n = u64::from_le_bytes(word(0)?) as usize;
    let k = u64::from_le_bytes(word(1)?) as usize;
    let embed_s = f64::from_le_bytes(word(2)?);
    let knn_s = f64::from_le_bytes(word(3)?);
    let peak_rss_mb = f64::from_le_bytes(word(4)?);
    let body = rest.get(40..)?;
    let count = n.checked_mul(k)?;
    let (numbers, skipped) = body.split_at_checked(count.checked_mul(8)?)?;
    let (skipped, faiss) = match serde_json::from_slice::<Vec<SkippedImage>>(skipped) {
        Ok(skipped) => (skipped, None),
        Err(_) => {
            let tail: Tail = serde_json::from_slice(skipped).ok()?;
            (tail.skipped, Some(tail.faiss))
        }
    };
    let (idx, scores) = numbers.split_at(count * 4);
    let indices = idx
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let scores = scores
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Some(KnnRecord {
        neighbours: Neighbours {
            n,
            k,
            indices,
            scores,
        },
        embed_s,
        knn_s,
        peak_rss_mb,
        skipped,
        faiss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_round_trips_and_rejects_foreign_bytes() {
        let record = KnnRecord {
            neighbours: Neighbours {
                n: 2,
                k: 2,
                indices: vec![1, 0, 0, 1],
                scores: vec![0.5, 0.25, 0.5, -1.0],
            },
            embed_s: 1.5,
            knn_s: 0.25,
            peak_rss_mb: 812.5,
            skipped: vec![SkippedImage {
                id: "7".into(),
                path: "images/7.jpg".into(),
                reason: "empty file (0 bytes)".into(),
            }],
            faiss: None,
        };
        let bytes = encode_knn(&record);
        assert_eq!(decode_knn(&bytes), Some(record.clone()));
        assert_eq!(decode_knn(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_knn(b"not a knn entry"), None);
        // An exact entry ends with the bare list, as entries written before faiss did.
        assert!(bytes.ends_with(br#""reason":"empty file (0 bytes)"}]"#));

        let faiss = KnnRecord {
            faiss: Some(FaissFacts {
                build_s: 0.5,
                search_s: 0.125,
                threads: 2,
                version: "1.12.0".into(),
            }),
            ..record
        };
        let bytes = encode_knn(&faiss);
        assert_eq!(decode_knn(&bytes), Some(faiss));
        assert_eq!(decode_knn(&bytes[..bytes.len() - 1]), None);
    }
}
