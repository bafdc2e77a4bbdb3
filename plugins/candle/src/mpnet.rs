//! MPNet (Song et al. 2020, "MPNet: Masked and Permuted Pre-training for Language Understanding"),
//! the encoder behind `sentence-transformers/all-mpnet-base-v2`.
//!
//! A port of the Hugging Face transformers implementation (`modeling_mpnet.py`, pinned below). It
//! differs from BERT in three places, all mirrored here:
//! - no token-type embeddings; position ids count from `padding_idx + 1 = 2` over non-pad tokens
//!   (pad tokens get position `padding_idx`);
//! - a T5-style relative position bias (32 buckets, max distance 128) computed once per forward
//!   pass by [`MPNetEncoder`] and added to the attention scores of every layer;
//! - tensor names: `attention.attn.{q,k,v,o}` and `attention.LayerNorm`.
//!
//! Only the base model (`MPNetModel` without its pooler) is ported: sentence-transformers uses the
//! last hidden state. Its layers are [`crate::transformer::Layer`], shared with BERT.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::HiddenAct;
use serde::Deserialize;

use crate::transformer::{AttentionNames, Dims, Layer, extended_attention_mask};

// Reference: https://github.com/huggingface/transformers/blob/00099b9f15ad8bea330364709453fc49cbba90e5/src/transformers/models/mpnet/configuration_mpnet.py
// Fields are the `config.json` keys the model reads; defaults are `MPNetConfig`'s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: HiddenAct,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_relative_attention_num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: u32,
    #[serde(default)]
    pub bos_token_id: u32,
    #[serde(default = "default_eos_token_id")]
    pub eos_token_id: u32,
}

fn default_vocab_size() -> usize {
    30527
}
fn default_hidden_size() -> usize {
    768
}
fn default_num_hidden_layers() -> usize {
    12
}
fn default_num_attention_heads() -> usize {
    12
}
fn default_intermediate_size() -> usize {
    3072
}
fn default_hidden_act() -> HiddenAct {
    HiddenAct::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_position_embeddings() -> usize {
    512
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_relative_attention_num_buckets() -> usize {
    32
}
fn default_pad_token_id() -> u32 {
    1
}
fn default_eos_token_id() -> u32 {
    2
}

impl Default for Config {
    /// `MPNetConfig()` with no arguments (the shape of `microsoft/mpnet-base`).
    fn default() -> Self {
        serde_json::from_str("{}").expect("every Config field has a serde default")
    }
}

/// `MPNetEmbeddings.padding_idx`: hard-coded to 1 in the reference, whatever `pad_token_id` says.
pub const PADDING_IDX: u32 = 1;

/// The `max_distance` the reference passes to `relative_position_bucket` (its default).
pub const RELATIVE_ATTENTION_MAX_DISTANCE: usize = 128;

/// `attention.attn.{q,k,v,o}` and `attention.LayerNorm`; the rest of a layer is named as in BERT.
const ATTENTION_NAMES: AttentionNames = AttentionNames {
    query: "attn.q",
    key: "attn.k",
    value: "attn.v",
    output: "attn.o",
    layer_norm: "LayerNorm",
};

// Reference: https://github.com/huggingface/transformers/blob/00099b9f15ad8bea330364709453fc49cbba90e5/src/transformers/models/mpnet/modeling_mpnet.py
// (`class MPNetEmbeddings` and `create_position_ids_from_input_ids`)
pub struct MPNetEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl MPNetEmbeddings {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            word_embeddings: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position_embeddings: embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            layer_norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `input_ids`: (batch, seq) u32. Returns (batch, seq, hidden).
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let position_ids = create_position_ids_from_input_ids(input_ids, PADDING_IDX)?;
        let embeddings = (self.word_embeddings.forward(input_ids)?
            + self.position_embeddings.forward(&position_ids)?)?;
        self.layer_norm.forward(&embeddings)
    }
}

/// Position ids as the reference makes them: `cumsum(mask) * mask + padding_idx` with
/// `mask = input_ids != padding_idx`, so real tokens count from `padding_idx + 1` and pad tokens
/// sit at `padding_idx`.
pub fn create_position_ids_from_input_ids(input_ids: &Tensor, padding_idx: u32) -> Result<Tensor> {
    // f32 holds these integers exactly (sequences are far shorter than 2^24).
    let mask = input_ids.ne(padding_idx)?.to_dtype(DType::F32)?;
    let incremental = (mask.cumsum(1)? * &mask)?;
    (incremental + f64::from(padding_idx))?.to_dtype(DType::U32)
}

// Reference: https://github.com/huggingface/transformers/blob/00099b9f15ad8bea330364709453fc49cbba90e5/src/transformers/models/mpnet/modeling_mpnet.py
// (`class MPNetEncoder`, with `compute_position_bias` and `relative_position_bucket`)
pub struct MPNetEncoder {
    layers: Vec<Layer>,
    relative_attention_bias: Embedding,
    num_buckets: usize,
}

impl MPNetEncoder {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let dims = Dims {
            hidden_size: cfg.hidden_size,
            num_attention_heads: cfg.num_attention_heads,
            intermediate_size: cfg.intermediate_size,
            layer_norm_eps: cfg.layer_norm_eps,
            hidden_act: cfg.hidden_act,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|index| Layer::load(vb.pp(format!("layer.{index}")), &dims, &ATTENTION_NAMES))
            .collect::<Result<Vec<_>>>()?;
        let relative_attention_bias = embedding(
            cfg.relative_attention_num_buckets,
            cfg.num_attention_heads,
            vb.pp("relative_attention_bias"),
        )?;
        Ok(Self {
            layers,
            relative_attention_bias,
            num_buckets: cfg.relative_attention_num_buckets,
        })
    }

    /// `attention_mask`: the additive mask, (batch, 1, 1, seq). The position bias is computed once
    /// here and shared by every layer, as in the reference.
    pub fn forward(&self, hidden_states: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (_, seq, _) = hidden_states.dims3()?;
        let position_bias = self.compute_position_bias(seq, hidden_states.device())?;
        let attention_bias = position_bias.broadcast_add(attention_mask)?;
        let mut hidden_states = hidden_states.clone();
        for layer in &self.layers {
            hidden_states = layer.forward(&hidden_states, &attention_bias)?;
        }
        Ok(hidden_states)
    }

    /// (1, heads, seq, seq): the bias bucket of `memory - context` position, looked up per head.
    /// The reference passes `num_buckets=32` explicitly; checkpoints set
    /// `relative_attention_num_buckets` to the same 32, and its embedding is sized by the latter.
    pub fn compute_position_bias(&self, seq: usize, device: &Device) -> Result<Tensor> {
        let buckets: Vec<u32> = (0..seq as i64)
            .flat_map(|context| {
                (0..seq as i64).map(move |memory| {
                    relative_position_bucket(
                        memory - context,
                        self.num_buckets,
                        RELATIVE_ATTENTION_MAX_DISTANCE,
                    ) as u32
                })
            })
            .collect();
        let buckets = Tensor::from_vec(buckets, (seq, seq), device)?;
        self.relative_attention_bias
            .forward(&buckets)? // (seq, seq, heads)
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()
    }
}

/// The reference's `MPNetEncoder.relative_position_bucket` for one relative position
/// (`memory_position - context_position`). Half the buckets are for keys after the query; within
/// each half the first `num_buckets / 4` distances are exact and the rest are log-spaced up to
/// `max_distance`, beyond which everything shares the last bucket.
///
/// The log branch is evaluated in f32 in the same order as the reference's float32 tensor ops so
/// that bucket boundaries round the same way.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let n = -relative_position;
    let num_buckets = num_buckets / 2;
    let mut ret = if n < 0 { num_buckets } else { 0 };
    let n = n.unsigned_abs() as usize;
    let max_exact = num_buckets / 2;
    if n < max_exact {
        return ret + n;
    }
    let scaled = (n as f32 / max_exact as f32).ln()
        / ((max_distance as f64 / max_exact as f64).ln() as f32)
        * (num_buckets - max_exact) as f32;
    let val_if_large = max_exact + scaled as usize;
    ret += val_if_large.min(num_buckets - 1);
    ret
}

// Reference: https://github.com/huggingface/transformers/blob/00099b9f15ad8bea330364709453fc49cbba90e5/src/transformers/models/mpnet/modeling_mpnet.py
// (`class MPNetModel`, without the pooler)
pub struct MPNetModel {
    embeddings: MPNetEmbeddings,
    encoder: MPNetEncoder,
}

impl MPNetModel {
    /// Loads from `embeddings.*` / `encoder.*`, or from under `mpnet.` when the checkpoint was
    /// saved from a task model (`MPNetForMaskedLM` and friends).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("mpnet.embeddings.word_embeddings.weight") {
            vb.pp("mpnet")
        } else {
            vb
        };
        Ok(Self {
            embeddings: MPNetEmbeddings::load(vb.pp("embeddings"), cfg)?,
            encoder: MPNetEncoder::load(vb.pp("encoder"), cfg)?,
        })
    }

    /// `input_ids`: (batch, seq) u32; `attention_mask`: (batch, seq), 1 for real tokens and 0 for
    /// padding (any dtype). Returns the last hidden state, (batch, seq, hidden).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let embeddings = self.embeddings.forward(input_ids)?;
        let mask = extended_attention_mask(attention_mask, embeddings.dtype())?;
        self.encoder.forward(&embeddings, &mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;
    use candle_nn::VarMap;

    /// Hand-computed from the reference formula (32 buckets, max distance 128):
    /// n = -(relative position); keys after the query (n < 0) add 16; |n| < 8 is exact; otherwise
    /// 8 + floor(ln(|n| / 8) / ln(16) * 8), capped at 15.
    #[test]
    fn relative_position_bucket_matches_hand_computed_values() {
        let cases: &[(i64, usize)] = &[
            (0, 0),
            (-1, 1),
            (-7, 7),
            (-8, 8),    // ln(1) = 0
            (-15, 9),   // ln(1.875)/ln(16)*8 = 1.81
            (-16, 10),  // ln(2)/ln(16)*8 = 2 exactly
            (-20, 10),  // 2.64
            (-40, 12),  // 4.64
            (-127, 15), // 7.98
            (-128, 15), // 8 -> capped at 15
            (-1000, 15),
            (1, 17),
            (7, 23),
            (8, 24),
            (20, 26),
            (127, 31),
            (128, 31),
            (5000, 31),
        ];
        for &(relative, expected) in cases {
            assert_eq!(
                relative_position_bucket(relative, 32, 128),
                expected,
                "relative position {relative}"
            );
        }
    }

    #[test]
    fn position_ids_count_from_padding_idx_plus_one_and_pads_stay_at_padding_idx() -> Result<()> {
        let ids = Tensor::new(&[[0u32, 17, 2, 1, 1], [0, 5, 6, 7, 2]], &Device::Cpu)?;
        let positions = create_position_ids_from_input_ids(&ids, PADDING_IDX)?;
        assert_eq!(
            positions.to_vec2::<u32>()?,
            vec![vec![2, 3, 4, 1, 1], vec![2, 3, 4, 5, 6]]
        );
        Ok(())
    }

    fn tiny_config() -> Config {
        Config {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 24,
            max_position_embeddings: 40,
            layer_norm_eps: 1e-5,
            ..Config::default()
        }
    }

    fn random_model(cfg: &Config) -> Result<(VarMap, MPNetModel)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = MPNetModel::load(vb, cfg)?;
        Ok((varmap, model))
    }

    #[test]
    fn default_config_is_mpnet_base() {
        let cfg = Config::default();
        assert_eq!((cfg.hidden_size, cfg.num_hidden_layers), (768, 12));
        assert_eq!(cfg.relative_attention_num_buckets, 32);
        assert_eq!(cfg.hidden_act, HiddenAct::Gelu);
    }

    #[test]
    fn forward_shape_and_padding_does_not_change_real_tokens() -> Result<()> {
        let cfg = tiny_config();
        let (_varmap, model) = random_model(&cfg)?;
        let dev = Device::Cpu;
        let short = Tensor::new(&[[0u32, 9, 12, 2]], &dev)?;
        let short_mask = Tensor::new(&[[1u32, 1, 1, 1]], &dev)?;
        let padded = Tensor::new(&[[0u32, 9, 12, 2, 1, 1, 1], [0, 3, 4, 5, 6, 7, 2]], &dev)?;
        let padded_mask = Tensor::new(&[[1u32, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]], &dev)?;

        let alone = model.forward(&short, &short_mask)?;
        assert_eq!(alone.dims(), &[1, 4, 16]);
        let batched = model.forward(&padded, &padded_mask)?;
        assert_eq!(batched.dims(), &[2, 7, 16]);

        let diff = (alone.i(0)? - batched.i((0, 0..4))?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "padding changed real tokens by {diff}");
        Ok(())
    }

    #[test]
    fn position_bias_is_per_head_and_depends_on_relative_position_only() -> Result<()> {
        let cfg = tiny_config();
        let (_varmap, model) = random_model(&cfg)?;
        let bias = model.encoder.compute_position_bias(5, &Device::Cpu)?;
        assert_eq!(bias.dims(), &[1, 4, 5, 5]);
        let bias = bias.i(0)?.to_vec3::<f32>()?;
        for head in &bias {
            // Toeplitz: equal along each diagonal.
            assert_eq!(head[0][1], head[3][4]);
            assert_eq!(head[2][0], head[4][2]);
            assert_ne!(head[0][1], head[1][0]);
        }
        let table = model
            .encoder
            .relative_attention_bias
            .embeddings()
            .to_vec2::<f32>()?;
        assert_eq!(
            bias[2][0][3],
            table[relative_position_bucket(3, 32, 128)][2]
        );
        Ok(())
    }

    #[test]
    fn loads_weights_saved_under_an_mpnet_prefix() -> Result<()> {
        let cfg = tiny_config();
        let (varmap, _) = random_model(&cfg)?;
        let prefixed = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(name, var)| (format!("mpnet.{name}"), var.as_tensor().clone()))
            .collect();
        let vb = VarBuilder::from_tensors(prefixed, DType::F32, &Device::Cpu);
        MPNetModel::load(vb, &cfg)?;
        Ok(())
    }
}
