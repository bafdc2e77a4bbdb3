//! BERT (Devlin et al. 2019), the encoder behind all-MiniLM-L6-v2 and most sentence-transformers
//! text models.
//!
//! A port of the base model of transformers' `modeling_bert.py` (no pooler: sentence-transformers
//! pools the last hidden state itself): embeddings (word + absolute position + token type, then
//! LayerNorm) and post-LN [`Layer`]s shared with MPNet. The configuration is candle-transformers'
//! `bert::Config`, which reads the same `config.json` keys. We run our own layers rather than
//! candle-transformers' `BertModel` for speed: fused dense layers (bias, GELU and residual
//! applied inside the product, one product for query, key and value; see [`crate::transformer`])
//! took MiniLM from 270 to about 450 captions/s on 2 cores.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::Config;

use crate::transformer::{AttentionNames, Dims, Layer, extended_attention_mask};

/// `attention.self.{query,key,value}` and `attention.output.{dense,LayerNorm}`.
const ATTENTION_NAMES: AttentionNames = AttentionNames {
    query: "self.query",
    key: "self.key",
    value: "self.value",
    output: "output.dense",
    layer_norm: "output.LayerNorm",
};

pub struct BertModel {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl BertModel {
    /// Loads from `embeddings.*` / `encoder.*`, or from under `bert.` when the checkpoint was
    /// saved from a task model (`BertForMaskedLM` and friends).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let dims = Dims {
            hidden_size: cfg.hidden_size,
            num_attention_heads: cfg.num_attention_heads,
            intermediate_size: cfg.intermediate_size,
            layer_norm_eps: cfg.layer_norm_eps,
            hidden_act: cfg.hidden_act,
        };
        let embeddings = vb.pp("embeddings");
        let hidden = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), &dims, &ATTENTION_NAMES))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings: embedding(cfg.vocab_size, hidden, embeddings.pp("word_embeddings"))?,
            position_embeddings: embedding(
                cfg.max_position_embeddings,
                hidden,
                embeddings.pp("position_embeddings"),
            )?,
            token_type_embeddings: embedding(
                cfg.type_vocab_size,
                hidden,
                embeddings.pp("token_type_embeddings"),
            )?,
            embeddings_norm: layer_norm(hidden, cfg.layer_norm_eps, embeddings.pp("LayerNorm"))?,
            layers,
        })
    }

    /// `input_ids`, `token_type_ids`: (batch, seq) u32; `attention_mask`: (batch, seq), 1 for real
    /// tokens and 0 for padding. Returns the last hidden state, (batch, seq, hidden).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<Tensor> {
        let (_, seq) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq as u32, input_ids.device())?;
        let embeddings = (self.word_embeddings.forward(input_ids)?
            + self.token_type_embeddings.forward(token_type_ids)?)?
        .broadcast_add(&self.position_embeddings.forward(&positions)?)?;
        let mut hidden_states = self.embeddings_norm.forward(&embeddings)?;
        let bias = extended_attention_mask(attention_mask, hidden_states.dtype())?;
        for layer in &self.layers {
            hidden_states = layer.forward(&hidden_states, &bias)?;
        }
        Ok(hidden_states)
    }
}
