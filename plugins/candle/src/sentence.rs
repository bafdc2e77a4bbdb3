//! [`SentenceTransformer`]: a sentence-transformers model folder (Transformer -> Pooling ->
//! optional Normalize) run with candle on the CPU.
//!
//! Inputs: a folder as sentence-transformers saves it: `modules.json`, the transformer's
//! `config.json`, `sentence_bert_config.json`, `tokenizer.json` and `model.safetensors` (in the
//! Transformer module's path, usually the folder itself), and `<pooling path>/config.json`.
//! Output: one row of `dim()` f32 per text, in input order.
//!
//! Invariants, each matching what sentence-transformers does:
//! - texts are stripped (and lower-cased when `do_lower_case`), then truncated at
//!   `max_seq_length` tokens, special tokens included;
//! - the padding that `tokenizer.json` declares (all of ours pad to 128) is ignored: each batch is
//!   padded to its longest text and the padding is masked out of attention and pooling;
//! - texts are batched by token length (less padding) and the rows are put back in input order,
//!   so results do not depend on batch size or order beyond float rounding.

use std::cmp::Reverse;
use std::path::Path;

use candle_core::{D, Device, IndexOp, Tensor};
use candle_transformers::models::bert;
use serde::Deserialize;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use embedlab_plugin::{Description, Modality};

use crate::bert::BertModel;
use crate::error::Error;
use crate::family::{self, Family, Model};
#[cfg(test)]
use crate::files::sha256_digest;
use crate::files::{Weights, load_safetensors, read_json, unsupported};
use crate::mpnet::{self, MPNetModel};

/// Run-time options, as they appear under `"options"` in a plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Texts per forward pass (after sorting by length). Default 64.
    pub batch_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { batch_size: 64 }
    }
}

/// The sentence-transformers family: a folder with `modules.json`.
pub(crate) const FAMILY: Family = Family {
    name: "sentence-transformers",
    marker: "modules.json",
    detect: has_modules_json,
    load: load_boxed,
};

fn has_modules_json(dir: &Path) -> bool {
    dir.join("modules.json").is_file()
}

fn load_boxed(dir: &Path, options: family::Options) -> Result<Box<dyn Model>, Error> {
    let options: Options = family::parse_options(options)?;
    Ok(Box::new(SentenceTransformer::load(dir, &options)?))
}

impl Model for SentenceTransformer {
    fn describe(&self) -> Description {
        Description {
            modalities: vec![Modality::Text],
            dim: self.dim(),
            parameters: self.parameters(),
            weights_digest: self.weights_digest().to_owned(),
            device: "cpu".to_string(),
        }
    }

    fn encode_texts(&self, texts: &[&str], out: &mut [f32]) -> Result<(), Error> {
        self.encode_into(texts, out)
    }
}

/// A loaded sentence-transformers model.
pub struct SentenceTransformer {
    transformer: Transformer,
    tokenizer: Tokenizer,
    pad_id: u32,
    do_lower_case: bool,
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
    parameters: u64,
    weights_digest: String,
    device: Device,
}

/// The token-embedding models this crate can run, chosen by `config.json`'s `model_type`.
enum Transformer {
    Bert(BertModel),
    MPNet(MPNetModel),
}

impl Transformer {
    /// Last hidden state, (batch, seq, hidden).
    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        match self {
            Transformer::Bert(model) => model.forward(input_ids, token_type_ids, attention_mask),
            Transformer::MPNet(model) => model.forward(input_ids, attention_mask),
        }
    }
}

/// One entry of `modules.json`.
#[derive(Debug, Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `sentence_bert_config.json`.
#[derive(Debug, Default, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// Just enough of `config.json` to pick the model class.
#[derive(Debug, Deserialize)]
struct ModelType {
    model_type: String,
}

impl SentenceTransformer {
    /// Loads the model folder `dir`. Every error names the file it comes from.
    pub fn load(dir: &Path, options: &Options) -> Result<Self, Error> {
        if options.batch_size == 0 {
            return Err(Error::Option {
                name: "batch_size",
                message: "must be at least 1".into(),
            });
        }
        let modules_path = dir.join("modules.json");
        let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
        let mut transformer_dir = None;
        let mut pooling_dir = None;
        let mut normalize = false;
        for module in &modules {
            match module.kind.as_str() {
                "sentence_transformers.models.Transformer" => {
                    transformer_dir = Some(dir.join(&module.path))
                }
                "sentence_transformers.models.Pooling" => {
                    pooling_dir = Some(dir.join(&module.path))
                }
                "sentence_transformers.models.Normalize" => normalize = true,
                other => return Err(unsupported(&modules_path, format!("module type {other}"))),
            }
        }
        let Some(transformer_dir) = transformer_dir else {
            return Err(unsupported(&modules_path, "no Transformer module".into()));
        };
        let Some(pooling_dir) = pooling_dir else {
            return Err(unsupported(&modules_path, "no Pooling module".into()));
        };

        let device = Device::Cpu;
        let config_path = transformer_dir.join("config.json");
        let weights_path = transformer_dir.join("model.safetensors");
        let Weights {
            vb,
            parameters,
            digest: weights_digest,
        } = load_safetensors(&weights_path, &device)?;
        let weights_error = |source| Error::Weights {
            path: weights_path.clone(),
            source,
        };
        let model_type: ModelType = read_json(&config_path)?;
        let (transformer, hidden_size, max_positions, model_pad_id) =
            match model_type.model_type.as_str() {
                "bert" => {
                    let cfg: bert::Config = read_json(&config_path)?;
                    let model = BertModel::load(vb, &cfg).map_err(weights_error)?;
                    let max_positions = cfg.max_position_embeddings;
                    let pad_id = cfg.pad_token_id as u32;
                    (
                        Transformer::Bert(model),
                        cfg.hidden_size,
                        max_positions,
                        pad_id,
                    )
                }
                "mpnet" => {
                    let cfg: mpnet::Config = read_json(&config_path)?;
                    let model = MPNetModel::load(vb, &cfg).map_err(weights_error)?;
                    // Position ids start at padding_idx + 1.
                    let max_positions = cfg
                        .max_position_embeddings
                        .saturating_sub(mpnet::PADDING_IDX as usize + 1);
                    (
                        Transformer::MPNet(model),
                        cfg.hidden_size,
                        max_positions,
                        cfg.pad_token_id,
                    )
                }
                other => {
                    return Err(unsupported(&config_path, format!("model_type {other:?}")));
                }
            };

        let sbert_path = transformer_dir.join("sentence_bert_config.json");
        let sbert: SentenceBertConfig = if sbert_path.exists() {
            read_json(&sbert_path)?
        } else {
            SentenceBertConfig::default()
        };
        let max_seq_length = sbert
            .max_seq_length
            .unwrap_or(max_positions)
            .min(max_positions);

        let tokenizer_path = transformer_dir.join("tokenizer.json");
        let (tokenizer, pad_id) = load_tokenizer(&tokenizer_path, max_seq_length, model_pad_id)?;

        let pooling_path = pooling_dir.join("config.json");
        let pooling = Pooling::from_config(&read_json(&pooling_path)?)
            .map_err(|message| unsupported(&pooling_path, message))?;
        if pooling.word_embedding_dimension != hidden_size {
            return Err(unsupported(
                &pooling_path,
                format!(
                    "word_embedding_dimension {} differs from the model's hidden_size {hidden_size}",
                    pooling.word_embedding_dimension
                ),
            ));
        }

        Ok(Self {
            transformer,
            tokenizer,
            pad_id,
            do_lower_case: sbert.do_lower_case,
            pooling,
            normalize,
            batch_size: options.batch_size,
            parameters,
            weights_digest,
            device,
        })
    }

    /// Length of each output row.
    pub fn dim(&self) -> usize {
        self.pooling.output_dimension()
    }

    /// Number of parameters (every floating-point tensor in `model.safetensors`, the unused
    /// pooler included, as `sum(p.numel() for p in model.parameters())` counts them).
    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// `sha256:<hex>` of the `model.safetensors` bytes the weights were loaded from.
    pub fn weights_digest(&self) -> &str {
        &self.weights_digest
    }

    /// Encodes `texts`; returns `texts.len() × dim()` values, row-major, in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<f32>, Error> {
        let mut out = vec![0f32; texts.len() * self.dim()];
        self.encode_into(texts, &mut out)?;
        Ok(out)
    }

    // Reference: https://github.com/UKPLab/sentence-transformers/blob/005039ffb10da6f2fc2675c948e5c0ab10eee7f5/sentence_transformers/models/Transformer.py
    // (`Transformer.tokenize`: strip, optional lower-case, truncate at max_seq_length)
    /// Like [`SentenceTransformer::encode`], writing row `i` to `out[i * dim..(i + 1) * dim]`.
    /// `out.len()` must be `texts.len() × dim()`.
    pub fn encode_into(&self, texts: &[&str], out: &mut [f32]) -> Result<(), Error> {
        let dim = self.dim();
        if out.len() != texts.len() * dim {
            return Err(Error::OutputSize {
                expected: texts.len() * dim,
                actual: out.len(),
            });
        }
        if texts.is_empty() {
            return Ok(());
        }
        let prepared: Vec<String> = texts
            .iter()
            .map(|text| {
                let text = text.trim();
                if self.do_lower_case {
                    text.to_lowercase()
                } else {
                    text.to_owned()
                }
            })
            .collect();
        let inputs: Vec<&str> = prepared.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch_fast(inputs, true)
            .map_err(Error::Tokenize)?;

        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| Reverse(encodings[i].len()));
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let rows = self.embed_batch(&batch)?;
            for (row, &index) in rows.chunks_exact(dim).zip(chunk) {
                out[index * dim..(index + 1) * dim].copy_from_slice(row);
            }
        }
        Ok(())
    }

    /// One forward pass over texts padded to the longest of them; returns `len × dim` values.
    fn embed_batch(&self, batch: &[&Encoding]) -> candle_core::Result<Vec<f32>> {
        let seq = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let size = batch.len() * seq;
        let mut ids = vec![self.pad_id; size];
        let mut type_ids = vec![0u32; size];
        let mut mask = vec![0u32; size];
        for (row, encoding) in batch.iter().enumerate() {
            let start = row * seq;
            let len = encoding.len();
            ids[start..start + len].copy_from_slice(encoding.get_ids());
            type_ids[start..start + len].copy_from_slice(encoding.get_type_ids());
            mask[start..start + len].fill(1);
        }
        let shape = (batch.len(), seq);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;

        let run = || {
            let token_embeddings = self.transformer.forward(&ids, &type_ids, &mask)?;
            let mut pooled = self.pooling.forward(&token_embeddings, &mask)?;
            if self.normalize {
                pooled = normalize(&pooled)?;
            }
            pooled.flatten_all()?.to_vec1::<f32>()
        };
        // Inside candle's own rayon pool the calling thread takes part in the matrix products
        // instead of waiting on the global pool (a few percent faster on 2 cores).
        self.device.with_context(run)
    }
}

/// Loads `tokenizer.json` with its padding switched off (batches are padded here, to their
/// longest text) and truncation at `max_seq_length`, as sentence-transformers calls it. Returns
/// the tokenizer and the pad id it declared (or `fallback_pad_id` when it declared none).
pub(crate) fn load_tokenizer(
    path: &Path,
    max_seq_length: usize,
    fallback_pad_id: u32,
) -> Result<(Tokenizer, u32), Error> {
    let tokenizer_error = |source| Error::Tokenizer {
        path: path.to_owned(),
        source,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(tokenizer_error)?;
    let pad_id = tokenizer
        .get_padding()
        .map_or(fallback_pad_id, |padding| padding.pad_id);
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_seq_length,
            ..TruncationParams::default()
        }))
        .map_err(tokenizer_error)?;
    Ok((tokenizer, pad_id))
}

// Reference: https://github.com/UKPLab/sentence-transformers/blob/01d5ae387b49838059bb9323ea93e7cbed1c4862/sentence_transformers/models/Pooling.py
// (`Pooling.forward`; modes are concatenated in the order cls, max, mean, mean_sqrt_len)
/// The Pooling module: token embeddings and attention mask in, one vector per text out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pooling {
    pub word_embedding_dimension: usize,
    pub cls_token: bool,
    pub max_tokens: bool,
    pub mean_tokens: bool,
    pub mean_sqrt_len_tokens: bool,
}

/// `1_Pooling/config.json`; missing flags take `Pooling.__init__`'s defaults (mean on).
#[derive(Debug, Deserialize)]
pub struct PoolingConfig {
    pub word_embedding_dimension: usize,
    #[serde(default)]
    pub pooling_mode_cls_token: bool,
    #[serde(default)]
    pub pooling_mode_max_tokens: bool,
    #[serde(default = "default_true")]
    pub pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pub pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pub pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pub pooling_mode_lasttoken: bool,
}

fn default_true() -> bool {
    true
}

impl Pooling {
    /// Checks the flags: at least one mode, and none this crate does not implement.
    pub fn from_config(cfg: &PoolingConfig) -> Result<Self, String> {
        if cfg.pooling_mode_weightedmean_tokens {
            return Err("pooling_mode_weightedmean_tokens is not supported".into());
        }
        if cfg.pooling_mode_lasttoken {
            return Err("pooling_mode_lasttoken is not supported".into());
        }
        let pooling = Self {
            word_embedding_dimension: cfg.word_embedding_dimension,
            cls_token: cfg.pooling_mode_cls_token,
            max_tokens: cfg.pooling_mode_max_tokens,
            mean_tokens: cfg.pooling_mode_mean_tokens,
            mean_sqrt_len_tokens: cfg.pooling_mode_mean_sqrt_len_tokens,
        };
        if pooling.output_dimension() == 0 {
            return Err("no pooling mode is enabled".into());
        }
        Ok(pooling)
    }

    /// `word_embedding_dimension` times the number of enabled modes.
    pub fn output_dimension(&self) -> usize {
        let modes = [
            self.cls_token,
            self.max_tokens,
            self.mean_tokens,
            self.mean_sqrt_len_tokens,
        ];
        modes.iter().filter(|&&on| on).count() * self.word_embedding_dimension
    }

    /// `token_embeddings`: (batch, seq, hidden); `attention_mask`: (batch, seq) of 1/0.
    /// Returns (batch, output_dimension).
    pub fn forward(
        &self,
        token_embeddings: &Tensor,
        attention_mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mask = attention_mask
            .to_dtype(token_embeddings.dtype())?
            .unsqueeze(D::Minus1)?; // (batch, seq, 1)
        let mut parts = Vec::with_capacity(4);
        if self.cls_token {
            parts.push(token_embeddings.i((.., 0))?);
        }
        if self.max_tokens {
            // Padding is set to -1e9 before the max, as the reference does.
            let floor = Tensor::full(-1e9f32, token_embeddings.shape(), token_embeddings.device())?
                .to_dtype(token_embeddings.dtype())?;
            let keep = mask.broadcast_as(token_embeddings.shape())?.ne(0.0)?;
            parts.push(keep.where_cond(token_embeddings, &floor)?.max(1)?);
        }
        if self.mean_tokens || self.mean_sqrt_len_tokens {
            let sum = token_embeddings.broadcast_mul(&mask)?.sum(1)?;
            let count = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
            if self.mean_tokens {
                parts.push(sum.broadcast_div(&count)?);
            }
            if self.mean_sqrt_len_tokens {
                parts.push(sum.broadcast_div(&count.sqrt()?)?);
            }
        }
        Tensor::cat(&parts, 1)
    }
}

// Reference: https://github.com/UKPLab/sentence-transformers/blob/4edb4a9425d61c90c077ea5bc39c528c07dca2ab/sentence_transformers/models/Normalize.py
/// Row-wise L2 normalisation, `torch.nn.functional.normalize(x, p=2, dim=1)` (eps 1e-12).
pub fn normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norms = xs
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    xs.broadcast_div(&norms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooling(cls: bool, max: bool, mean: bool, sqrt: bool) -> Pooling {
        Pooling {
            word_embedding_dimension: 2,
            cls_token: cls,
            max_tokens: max,
            mean_tokens: mean,
            mean_sqrt_len_tokens: sqrt,
        }
    }

    /// Two texts, hidden size 2; the second has one padded position holding large values that
    /// must not leak into any mode.
    fn inputs() -> candle_core::Result<(Tensor, Tensor)> {
        let dev = Device::Cpu;
        let embeddings = Tensor::new(
            &[
                [[1f32, -2.], [3., 4.], [5., 0.]],
                [[-1., 2.], [-3., -6.], [100., 100.]],
            ],
            &dev,
        )?;
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &dev)?;
        Ok((embeddings, mask))
    }

    #[test]
    fn mean_pooling_ignores_padding() -> candle_core::Result<()> {
        let (embeddings, mask) = inputs()?;
        let pooled = pooling(false, false, true, false).forward(&embeddings, &mask)?;
        assert_eq!(
            pooled.to_vec2::<f32>()?,
            vec![vec![3.0, 2.0 / 3.0], vec![-2.0, -2.0]]
        );
        Ok(())
    }

    #[test]
    fn modes_concatenate_in_reference_order() -> candle_core::Result<()> {
        let (embeddings, mask) = inputs()?;
        let pooled = pooling(true, true, true, true).forward(&embeddings, &mask)?;
        let rows = pooled.to_vec2::<f32>()?;
        let s2 = 2f32.sqrt();
        let expected_second = [-1.0, 2.0, -1.0, 2.0, -2.0, -2.0, -4.0 / s2, -4.0 / s2];
        assert_eq!(rows[1].len(), 8);
        for (got, want) in rows[1].iter().zip(expected_second) {
            assert!((got - want).abs() < 1e-6, "{:?}", rows[1]);
        }
        assert_eq!(&rows[0][..4], &[1.0, -2.0, 5.0, 4.0]);
        Ok(())
    }

    #[test]
    fn pooling_config_defaults_and_rejections() {
        let parse = |json: &str| {
            let cfg: PoolingConfig = serde_json::from_str(json).unwrap();
            Pooling::from_config(&cfg)
        };
        let mean = parse(r#"{"word_embedding_dimension": 4}"#).unwrap();
        assert!(mean.mean_tokens && !mean.cls_token);
        assert_eq!(mean.output_dimension(), 4);
        let cls_max = parse(
            r#"{"word_embedding_dimension": 4, "pooling_mode_mean_tokens": false,
                "pooling_mode_cls_token": true, "pooling_mode_max_tokens": true}"#,
        )
        .unwrap();
        assert_eq!(cls_max.output_dimension(), 8);
        assert!(
            parse(r#"{"word_embedding_dimension": 4, "pooling_mode_lasttoken": true}"#).is_err()
        );
        assert!(
            parse(r#"{"word_embedding_dimension": 4, "pooling_mode_mean_tokens": false}"#).is_err()
        );
    }

    #[test]
    fn normalize_gives_unit_rows_and_leaves_zero_rows_zero() -> candle_core::Result<()> {
        let xs = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu)?;
        assert_eq!(
            normalize(&xs)?.to_vec2::<f32>()?,
            vec![vec![0.6, 0.8], vec![0.0, 0.0]]
        );
        Ok(())
    }

    #[test]
    fn digest_is_prefixed_lowercase_hex_sha256() {
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn options_default_and_reject_unknown_keys() {
        let options: Options = serde_json::from_str("{}").unwrap();
        assert_eq!(options.batch_size, 64);
        let options: Options = serde_json::from_str(r#"{"batch_size": 3}"#).unwrap();
        assert_eq!(options.batch_size, 3);
        assert!(serde_json::from_str::<Options>(r#"{"batchsize": 3}"#).is_err());
    }
}
