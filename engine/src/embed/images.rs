//! Image files in, RGB8 pixels out: the engine's half of the image pipeline.
//!
//! The engine decodes (JPEG, PNG), applies the EXIF orientation a camera recorded, and converts
//! to 8-bit RGB; resizing and normalising belong to each plugin, because every model wants its
//! own. Decoding runs in parallel over a batch ([`decode_batch`]), and [`Prefetcher`] decodes the
//! next batch on a background thread while the plugin encodes the current one.
//!
//! A file that is missing, empty or not a decodable image is an [`Unreadable`] value, not an
//! error: the caller decides whether one bad image skips a sample or stops a run (`strict`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use embedlab_plugin::Image;
use image::{DynamicImage, ImageDecoder, ImageReader};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A decoded image: row-major RGB8, `width × height × 3` bytes, upright.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Decoded {
    /// The borrowed form the plugin ABI takes.
    pub fn as_image(&self) -> Image<'_> {
        Image {
            width: self.width,
            height: self.height,
            rgb: &self.rgb,
        }
    }
}

/// Why an image could not be used, in a form reports can show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Unreadable {
    Missing,
    Empty,
    /// The file could not be read (permissions, I/O).
    Io(String),
    /// The bytes are not a JPEG/PNG this build decodes, or are damaged.
    Corrupt(String),
    /// The sample has no image in the dataset.
    NoImage,
    /// The header declares more pixels than [`MAX_SIDE`] and [`MAX_DECODED_BYTES`] allow.
    TooLarge {
        width: u32,
        height: u32,
    },
}

/// The longest side of an image the engine decodes. Decompression-bomb guard: a PNG of a few
/// hundred bytes can declare 60000×60000 pixels, and decoders allocate the whole pixel buffer
/// (10 GB of RGB8 there) before reading any data, on every decoding thread at once. Photos in
/// retrieval datasets are far smaller (COCO ≤ 640 px, Open Images originals ≲ 6000 px).
pub const MAX_SIDE: u32 = 16_384;

/// The most bytes one image may take decoded in its file's own pixel format (16-bit RGBA is 8
/// bytes a pixel): 512 MiB, the `image` crate's default budget, e.g. 16384 × 10922 RGB8.
pub const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Missing => f.write_str("file not found"),
            Unreadable::Empty => f.write_str("empty file (0 bytes)"),
            Unreadable::Io(e) => write!(f, "cannot read: {e}"),
            Unreadable::Corrupt(e) => write!(f, "not a decodable image: {e}"),
            Unreadable::NoImage => f.write_str("the dataset gives no image for this sample"),
            Unreadable::TooLarge { width, height } => write!(
                f,
                "{width}×{height} pixels exceed the decoding limit ({MAX_SIDE} pixels a side, \
                 {} MiB decoded); refused unread",
                MAX_DECODED_BYTES >> 20
            ),
        }
    }
}

/// Reads and decodes one image file, upright, as RGB8.
pub fn decode(path: &Path) -> Result<Decoded, Unreadable> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unreadable::Missing),
        Err(e) => return Err(Unreadable::Io(e.to_string())),
    };
    if bytes.is_empty() {
        return Err(Unreadable::Empty);
    }
    decode_bytes(&bytes)
}

/// Decodes an in-memory JPEG or PNG (format from its magic bytes, not the file name) and applies
/// its EXIF orientation; one larger than the limits is refused from its header alone.
pub fn decode_bytes(bytes: &[u8]) -> Result<Decoded, Unreadable> {
    let corrupt = |e: image::ImageError| Unreadable::Corrupt(one_line(&e.to_string()));
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| corrupt(e.into()))?;
    reader.limits(decoder_limits());
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE || decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(Unreadable::TooLarge { width, height });
    }
    // A missing or unreadable EXIF block means "no rotation", as in every photo viewer.
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    let rgb = image.into_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(Decoded {
        width,
        height,
        rgb: rgb.into_raw(),
    })
}

/// The decoders' own allocation budget (their internal buffers, beyond the pixels checked in
/// [`decode_bytes`]). Sides are left unlimited here so that an oversized image is refused by our
/// check, which names its size, rather than inside the decoder.
fn decoder_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

/// Decodes `paths` in parallel; `None` stands for a sample without an image.
pub fn decode_batch(paths: &[Option<PathBuf>]) -> Vec<Result<Decoded, Unreadable>> {
    paths
        .par_iter()
        .map(|path| match path {
            Some(path) => decode(path),
            None => Err(Unreadable::NoImage),
        })
        .collect()
}

/// Decodes batches on a background thread, one batch ahead of the consumer, so decoding overlaps
/// encoding; at most two decoded batches are in memory at once.
pub struct Prefetcher {
    receiver: mpsc::Receiver<Vec<Result<Decoded, Unreadable>>>,
    worker: Option<thread::JoinHandle<()>>,
}

impl Prefetcher {
    /// Starts decoding `batches` in order.
    pub fn start(batches: Vec<Vec<Option<PathBuf>>>) -> Prefetcher {
        let (sender, receiver) = mpsc::sync_channel(1);
        let worker = thread::spawn(move || {
            for batch in batches {
                if sender.send(decode_batch(&batch)).is_err() {
                    return; // the consumer stopped early (an encoder error): stop decoding
                }
            }
        });
        Prefetcher {
            receiver,
            worker: Some(worker),
        }
    }
}

impl Iterator for Prefetcher {
    type Item = Vec<Result<Decoded, Unreadable>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Unblock the worker (its send fails once the receiver is gone) and wait for it, so no
        // decoding outlives the encoding that asked for it.
        let (_, dead) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.receiver, dead));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, RgbImage};

    /// A 3×2 PNG whose pixel (x, y) is (x, y, 7).
    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    /// A JPEG carrying an EXIF APP1 segment with the given orientation tag.
    fn jpeg_with_orientation(width: u32, height: u32, orientation: u16) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, _| {
            image::Rgb(if x < width / 2 {
                [255, 0, 0]
            } else {
                [0, 0, 255]
            })
        });
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        // TIFF header (little endian), one IFD entry: tag 0x0112 (Orientation), SHORT, count 1.
        let mut tiff = b"II\x2a\x00\x08\x00\x00\x00\x01\x00".to_vec();
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&orientation.to_le_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn decodes_png_pixels_exactly() {
        let decoded = decode_bytes(&png(3, 2)).unwrap();
        assert_eq!((decoded.width, decoded.height), (3, 2));
        assert_eq!(&decoded.rgb[..6], &[0, 0, 7, 1, 0, 7]);
        assert_eq!(&decoded.rgb[9..12], &[0, 1, 7]);
    }

    #[test]
    fn exif_orientation_turns_the_image_upright() {
        let plain = decode_bytes(&jpeg_with_orientation(16, 8, 1)).unwrap();
        assert_eq!((plain.width, plain.height), (16, 8));
        // Orientation 6: the camera was turned 90° clockwise; upright is 8 wide, 16 high, and
        // the red left half becomes the top half.
        let rotated = decode_bytes(&jpeg_with_orientation(16, 8, 6)).unwrap();
        assert_eq!((rotated.width, rotated.height), (8, 16));
        let pixel = |d: &Decoded, x: u32, y: u32| {
            let i = ((y * d.width + x) * 3) as usize;
            [d.rgb[i], d.rgb[i + 1], d.rgb[i + 2]]
        };
        assert!(
            pixel(&rotated, 4, 1)[0] > 200,
            "{:?}",
            pixel(&rotated, 4, 1)
        );
        assert!(
            pixel(&rotated, 4, 14)[2] > 200,
            "{:?}",
            pixel(&rotated, 4, 14)
        );
    }

    #[test]
    fn bad_files_are_named_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        let garbage = dir.path().join("garbage.jpg");
        std::fs::write(&garbage, b"this is not an image at all").unwrap();
        let truncated = dir.path().join("truncated.png");
        std::fs::write(&truncated, &png(40, 40)[..60]).unwrap();
        let good = dir.path().join("good.png");
        std::fs::write(&good, png(3, 2)).unwrap();
        let paths = [
            Some(dir.path().join("missing.jpg")),
            Some(empty),
            Some(garbage),
            Some(truncated),
            None,
            Some(good),
        ];
        let decoded = decode_batch(&paths);
        assert_eq!(decoded[0], Err(Unreadable::Missing));
        assert_eq!(decoded[1], Err(Unreadable::Empty));
        assert!(
            matches!(decoded[2], Err(Unreadable::Corrupt(_))),
            "{:?}",
            decoded[2]
        );
        assert!(
            matches!(decoded[3], Err(Unreadable::Corrupt(_))),
            "{:?}",
            decoded[3]
        );
        assert_eq!(decoded[4], Err(Unreadable::NoImage));
        assert!(decoded[5].is_ok());
    }

    #[test]
    fn images_beyond_the_size_limit_are_refused_unread() {
        let wide = decode_bytes(&png(MAX_SIDE + 1, 1));
        let refused = Unreadable::TooLarge {
            width: MAX_SIDE + 1,
            height: 1,
        };
        assert_eq!(wide, Err(refused.clone()));
        assert_eq!(
            refused.to_string(),
            "16385×1 pixels exceed the decoding limit (16384 pixels a side, 512 MiB decoded); \
             refused unread"
        );
        assert_eq!(decode_bytes(&png(MAX_SIDE, 1)).unwrap().width, MAX_SIDE);
    }

    #[test]
    fn prefetcher_yields_batches_in_order_and_stops_early_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<Option<PathBuf>> = (1..=6)
            .map(|w| {
                let path = dir.path().join(format!("{w}.png"));
                std::fs::write(&path, png(w, 1)).unwrap();
                Some(path)
            })
            .collect();
        let batches: Vec<Vec<Option<PathBuf>>> = paths.chunks(2).map(<[_]>::to_vec).collect();
        let widths: Vec<Vec<u32>> = Prefetcher::start(batches.clone())
            .map(|b| b.into_iter().map(|d| d.unwrap().width).collect())
            .collect();
        assert_eq!(widths, [[1, 2], [3, 4], [5, 6]]);
        let mut early = Prefetcher::start(batches);
        assert!(early.next().is_some());
        drop(early); // must not hang
    }
}
