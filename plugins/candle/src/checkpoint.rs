//! [`Checkpoint`]: a weights file read whole into named f32 tensors, with its digest and parameter
//! count, so that layouts other than the model's own (OpenCLIP, BLIP) can be renamed onto it
//! before a [`VarBuilder`] sees them.
//!
//! Formats: safetensors, and PyTorch's zip pickles (`torch.save` of a state dict, the
//! `pytorch_model.bin` / `open_clip_pytorch_model.bin` of older hub folders). The first candidate
//! file that exists is read; when none does, the error names them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::Error;

/// The tensors of one weights file.
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
    /// Number of floating-point values (integer buffers such as position ids are not parameters).
    pub parameters: u64,
}

impl Checkpoint {
    /// Reads the first of `names` (in `dir`) that exists.
    pub fn read_first(dir: &Path, names: &[&str]) -> Result<Self, Error> {
        let Some(path) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) else {
            let tried = names.join(" or ");
            return Err(Error::Io {
                path: dir.join(names.first().copied().unwrap_or("")),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no weights file ({tried})"),
                ),
            });
        };
        Self::read(&path)
    }

    /// Reads `path` (safetensors unless its name ends in `.bin`, `.pt` or `.pth`).
    pub fn read(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let weights_error = |source| Error::Weights {
            path: path.to_owned(),
            source,
        };
        let pickled = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("bin" | "pt" | "pth")
        );
        let tensors: HashMap<String, Tensor> = if pickled {
            let mut tensors = candle_core::pickle::read_all(path).map_err(weights_error)?;
            if tensors.is_empty() {
                // Training checkpoints wrap the state dict: `{"state_dict": {...}, "epoch": ..}`.
                tensors = candle_core::pickle::read_all_with_key(path, Some("state_dict"))
                    .map_err(weights_error)?;
            }
            tensors.into_iter().collect()
        } else {
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(weights_error)?
        };
        let parameters = tensors
            .values()
            .filter(|t| t.dtype().is_float())
            .map(|t| t.elem_count() as u64)
            .sum();
        Ok(Self {
            path: path.to_owned(),
            tensors,
            digest: crate::files::sha256_digest(&bytes),
            parameters,
        })
    }

    /// Renames every tensor with `rename`; a name it maps to `None` is dropped, and a tensor may
    /// become several (a fused q/k/v projection split in three).
    pub fn rename<F>(&mut self, rename: F) -> Result<(), Error>
    where
        F: Fn(&str, Tensor) -> candle_core::Result<Vec<(String, Tensor)>>,
    {
        let old = std::mem::take(&mut self.tensors);
        for (name, tensor) in old {
            let renamed = rename(&name, tensor).map_err(|source| self.error(source))?;
            self.tensors.extend(renamed);
        }
        Ok(())
    }

    /// A weights error naming this file.
    pub fn error(&self, source: candle_core::Error) -> Error {
        Error::Weights {
            path: self.path.clone(),
            source,
        }
    }

    /// A [`VarBuilder`] over the tensors, in f32 on the CPU.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), DType::F32, &Device::Cpu)
    }
}

/// Splits a fused `(3 H, ...)` q/k/v projection (PyTorch's `in_proj_weight`, BLIP's `qkv`) into
/// `<prefix>.{q,k,v}_proj.<suffix>`.
pub fn split_qkv(
    prefix: &str,
    suffix: &str,
    fused: &Tensor,
) -> candle_core::Result<Vec<(String, Tensor)>> {
    let rows = fused.dim(0)?;
    if rows % 3 != 0 {
        candle_core::bail!("{prefix}: fused q/k/v projection has {rows} rows, not a multiple of 3");
    }
    let parts = fused.chunk(3, 0)?;
    Ok(["q_proj", "k_proj", "v_proj"]
        .iter()
        .zip(parts)
        .map(|(name, t)| (format!("{prefix}.{name}.{suffix}"), t))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_weights_file_names_the_candidates() {
        let err = Checkpoint::read_first(
            Path::new("/nonexistent/embedlab"),
            &["model.safetensors", "pytorch_model.bin"],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("/nonexistent/embedlab/model.safetensors"),
            "{err}"
        );
        assert!(err.contains("pytorch_model.bin"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn qkv_splits_in_thirds_in_order() -> candle_core::Result<()> {
        let fused = Tensor::arange(0f32, 6., &Device::Cpu)?.reshape((6, 1))?;
        let parts = split_qkv("a", "weight", &fused)?;
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["a.q_proj.weight", "a.k_proj.weight", "a.v_proj.weight"]
        );
        assert_eq!(parts[2].1.flatten_all()?.to_vec1::<f32>()?, [4., 5.]);
        assert!(split_qkv("a", "weight", &fused.narrow(0, 0, 4)?).is_err());
        Ok(())
    }
}
