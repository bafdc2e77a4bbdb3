//! Reading a model folder's files: JSON configs and safetensors weights, every error naming the
//! file.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Weights loaded from one safetensors file, with what the plugin reports about them.
pub(crate) struct Weights {
    pub vb: VarBuilder<'static>,
    /// Floating-point elements (see [`count_parameters`]).
    pub parameters: u64,
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
}

/// Reads `path` (a `.safetensors` file) into f32 weights on `device`.
pub(crate) fn load_safetensors(path: &Path, device: &Device) -> Result<Weights, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let weights_error = |source| Error::Weights {
        path: path.to_owned(),
        source,
    };
    let parameters = count_parameters(&bytes).map_err(weights_error)?;
    let digest = sha256_digest(&bytes);
    let vb =
        VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(weights_error)?;
    Ok(Weights {
        vb,
        parameters,
        digest,
    })
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn unsupported(path: &Path, message: String) -> Error {
    Error::Unsupported {
        path: PathBuf::from(path),
        message,
    }
}

/// `sha256:<hex>`, the form the engine's model store uses.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(7 + 2 * hash.len());
    text.push_str("sha256:");
    for byte in hash.iter() {
        write!(text, "{byte:02x}").expect("writing to a String cannot fail");
    }
    text
}

/// Floating-point elements in a safetensors buffer (integer buffers such as BERT's saved
/// `position_ids` are not parameters).
pub(crate) fn count_parameters(weights: &[u8]) -> candle_core::Result<u64> {
    use safetensors::Dtype;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(weights)
        .map_err(|err| candle_core::Error::Msg(format!("safetensors header: {err}")))?;
    let total = metadata
        .tensors()
        .values()
        .filter(|info| {
            !matches!(
                info.dtype,
                Dtype::BOOL
                    | Dtype::U8
                    | Dtype::I8
                    | Dtype::I16
                    | Dtype::U16
                    | Dtype::I32
                    | Dtype::U32
                    | Dtype::I64
                    | Dtype::U64
            )
        })
        .map(|info| info.shape.iter().product::<usize>() as u64)
        .sum();
    Ok(total)
}
