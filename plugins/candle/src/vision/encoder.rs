//! [`ImageEncoder`]: a vision model with its [`Preprocess`], batched, as a [`Model`] of the plugin.
//!
//! Families of image models implement [`VisionModel`] (pixels in, one row per image out) and
//! wrap it here; batching, preprocessing, output checks and the description are shared.

use candle_core::{Device, Tensor};
use embedlab_plugin::{Description, Image, Modality};

use super::Preprocess;
use crate::error::Error;
use crate::family::Model;

/// A network that turns preprocessed pixels into vectors.
pub trait VisionModel: Send + Sync {
    /// `(N, 3, H, W)` f32 in, `(N, dim)` f32 out.
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor>;
}

/// A vision model ready to encode decoded images.
pub struct ImageEncoder<M> {
    pub model: M,
    pub preprocess: Preprocess,
    pub dim: usize,
    pub parameters: u64,
    /// `sha256:<hex>` of the weights file.
    pub weights_digest: String,
    /// Images per forward pass.
    pub batch_size: usize,
    pub device: Device,
}

impl<M: VisionModel> ImageEncoder<M> {
    /// Encodes `images`: `images.len() × dim` values, row-major, in input order.
    pub fn encode(&self, images: &[Image<'_>]) -> Result<Vec<f32>, Error> {
        let mut out = vec![0f32; images.len() * self.dim];
        self.encode_into(images, &mut out)?;
        Ok(out)
    }

    /// Like [`ImageEncoder::encode`], writing row `i` to `out[i * dim..(i + 1) * dim]`.
    pub fn encode_into(&self, images: &[Image<'_>], out: &mut [f32]) -> Result<(), Error> {
        if out.len() != images.len() * self.dim {
            return Err(Error::OutputSize {
                expected: images.len() * self.dim,
                actual: out.len(),
            });
        }
        let batch_size = self.batch_size.max(1);
        for (i, batch) in images.chunks(batch_size).enumerate() {
            let pixels = self.preprocess_batch(batch, i * batch_size)?;
            let rows = self.forward(&pixels)?;
            out[i * batch_size * self.dim..][..rows.len()].copy_from_slice(&rows);
        }
        Ok(())
    }

    /// Preprocesses `batch`, the images from index `offset` of a call, naming a bad image by its
    /// index in the whole call.
    pub fn preprocess_batch(&self, batch: &[Image<'_>], offset: usize) -> Result<Tensor, Error> {
        self.preprocess
            .apply(batch, &self.device)
            .map_err(|err| match err {
                Error::BadImage { index, message } => Error::BadImage {
                    index: index + offset,
                    message,
                },
                other => other,
            })
    }

    /// The forward pass of one preprocessed batch, flattened.
    pub fn forward(&self, pixels: &Tensor) -> Result<Vec<f32>, Error> {
        let run = || -> candle_core::Result<Vec<f32>> {
            let rows = self.model.forward(pixels)?;
            let (n, dim) = rows.dims2()?;
            if (n, dim) != (pixels.dim(0)?, self.dim) {
                candle_core::bail!(
                    "model output is {n}×{dim}, expected {}×{}",
                    pixels.dim(0)?,
                    self.dim
                );
            }
            rows.flatten_all()?.to_vec1::<f32>()
        };
        // As for texts: inside candle's rayon pool the calling thread joins the matrix products.
        Ok(self.device.with_context(run)?)
    }
}

impl<M: VisionModel> Model for ImageEncoder<M> {
    fn describe(&self) -> Description {
        Description {
            modalities: vec![Modality::Image],
            dim: self.dim,
            parameters: self.parameters,
            weights_digest: self.weights_digest.clone(),
            device: "cpu".to_string(),
        }
    }

    fn encode_images(&self, images: &[Image<'_>], out: &mut [f32]) -> Result<(), Error> {
        self.encode_into(images, out)
    }
}
