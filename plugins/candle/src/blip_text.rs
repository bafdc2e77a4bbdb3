//! BLIP's text decoder (transformers' `BlipTextLMHeadModel`): a BERT whose layers add
//! cross-attention to the image tokens after their causal self-attention, and a language-model
//! head tied to the word embeddings. It turns token ids into next-token logits, one step at a time,
//! with a [`Cache`] of keys and values whose rows can be selected (beam search reorders them).
//!
//! Port of transformers' `modeling_blip_text.py`
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/blip/modeling_blip_text.py>).
//! `candle_transformers::models::blip_text` is not used: its key/value cache lives inside the
//! layers, so beam search cannot reorder it per beam; it also recomputes the image keys and values
//! at every step, and needs `&mut` access to the model for each caption.
//!
//! Tensor names are the checkpoint's (`text_decoder.bert.*`, `text_decoder.cls.*`; pass
//! `vb.pp("text_decoder")`). The head's `decoder.weight` and `decoder.bias` are absent from
//! checkpoints saved with tied weights; the word embeddings and `cls.predictions.bias` stand in.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

use crate::blip::BlipTextConfig;
use crate::clip::Activation;

/// `BlipTextSelfAttention` with its `BlipTextSelfOutput` (dense, residual, LayerNorm): one
/// self-attention or cross-attention block.
#[derive(Debug, Clone)]
struct BlipTextAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    layer_norm: LayerNorm,
    num_heads: usize,
    head_size: usize,
}

impl BlipTextAttention {
    /// Loads `attention` or `crossattention` of a layer; keys and values come from `kv_width`-wide
    /// states (the text's, or the image tokens').
    fn load(vb: VarBuilder, cfg: &BlipTextConfig, kv_width: usize) -> Result<Self> {
        let hidden = cfg.hidden_size;
        let heads = cfg.num_attention_heads;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!("hidden size {hidden} is not a multiple of {heads} heads");
        }
        let this = vb.pp("self");
        let output = vb.pp("output");
        Ok(Self {
            query: candle_nn::linear(hidden, hidden, this.pp("query"))?,
            key: candle_nn::linear(kv_width, hidden, this.pp("key"))?,
            value: candle_nn::linear(kv_width, hidden, this.pp("value"))?,
            dense: candle_nn::linear(hidden, hidden, output.pp("dense"))?,
            layer_norm: candle_nn::layer_norm(hidden, cfg.layer_norm_eps, output.pp("LayerNorm"))?,
            num_heads: heads,
            head_size: hidden / heads,
        })
    }

    /// (B, T, H) -> (B, heads, T, head size).
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.reshape((b, t, self.num_heads, self.head_size))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Keys and values of `states` (B, S, kv width), split into heads.
    fn keys_values(&self, states: &Tensor) -> Result<(Tensor, Tensor)> {
        let keys = self.split_heads(&self.key.forward(states)?)?;
        let values = self.split_heads(&self.value.forward(states)?)?;
        Ok((keys, values))
    }

    /// Attends from `xs` (B, T, H) to `keys`/`values` (B, heads, S, head size); `mask` is added to
    /// the scores. Then the output block: dense, residual `xs`, LayerNorm.
    fn forward(
        &self,
        xs: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t, h) = xs.dims3()?;
        let query = self.split_heads(&self.query.forward(xs)?)?;
        // As transformers: scores divided by sqrt(head size) after the product.
        let scores = (query.matmul(&keys.t()?)? / (self.head_size as f64).sqrt())?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(values)?.transpose(1, 2)?.reshape((b, t, h))?;
        self.layer_norm
            .forward(&(self.dense.forward(&context)? + xs)?)
    }
}

/// `BlipTextLayer` of the decoder: causal self-attention, cross-attention to the image, MLP.
#[derive(Debug, Clone)]
struct BlipTextLayer {
    attention: BlipTextAttention,
    crossattention: BlipTextAttention,
    intermediate: Linear,
    activation: Activation,
    output: Linear,
    output_norm: LayerNorm,
}

impl BlipTextLayer {
    fn load(vb: VarBuilder, cfg: &BlipTextConfig) -> Result<Self> {
        Ok(Self {
            attention: BlipTextAttention::load(vb.pp("attention"), cfg, cfg.hidden_size)?,
            crossattention: BlipTextAttention::load(
                vb.pp("crossattention"),
                cfg,
                cfg.encoder_hidden_size,
            )?,
            intermediate: candle_nn::linear(
                cfg.hidden_size,
                cfg.intermediate_size,
                vb.pp("intermediate.dense"),
            )?,
            activation: cfg.hidden_act,
            output: candle_nn::linear(
                cfg.intermediate_size,
                cfg.hidden_size,
                vb.pp("output.dense"),
            )?,
            output_norm: candle_nn::layer_norm(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb.pp("output.LayerNorm"),
            )?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        cache: &mut LayerCache,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (keys, values) = self.attention.keys_values(xs)?;
        let (keys, values) = match cache.text.take() {
            Some((past_keys, past_values)) => (
                Tensor::cat(&[&past_keys, &keys], 2)?,
                Tensor::cat(&[&past_values, &values], 2)?,
            ),
            None => (keys, values),
        };
        let xs = self.attention.forward(xs, &keys, &values, mask)?;
        cache.text = Some((keys, values));
        let (image_keys, image_values) = &cache.image;
        let xs = self
            .crossattention
            .forward(&xs, image_keys, image_values, None)?;
        let mlp = self.activation.forward(&self.intermediate.forward(&xs)?)?;
        self.output_norm
            .forward(&(self.output.forward(&mlp)? + xs)?)
    }
}

/// One layer's keys and values: of the tokens so far, and of the image tokens (computed once).
#[derive(Debug, Clone)]
struct LayerCache {
    text: Option<(Tensor, Tensor)>,
    image: (Tensor, Tensor),
}

/// The decoder's state for a batch of rows (one per caption being written, or per beam): the
/// keys and values of every layer, and how many tokens each row has consumed.
#[derive(Debug, Clone)]
pub struct Cache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl Cache {
    /// Keeps the rows `rows`, in that order (repeats allowed): what transformers'
    /// `Cache.reorder_cache` does after each beam-search step.
    pub fn select(&mut self, rows: &[u32]) -> Result<()> {
        let Some(first) = self.layers.first() else {
            return Ok(());
        };
        let index = Tensor::new(rows, first.image.0.device())?;
        let pick = |t: &Tensor| t.index_select(&index, 0);
        for layer in &mut self.layers {
            layer.image = (pick(&layer.image.0)?, pick(&layer.image.1)?);
            if let Some((keys, values)) = &layer.text {
                layer.text = Some((pick(keys)?, pick(values)?));
            }
        }
        Ok(())
    }
}

/// `BlipTextLMPredictionHead`: dense, activation, LayerNorm, then the vocabulary projection.
#[derive(Debug, Clone)]
struct BlipTextLMPredictionHead {
    dense: Linear,
    activation: Activation,
    layer_norm: LayerNorm,
    decoder: Linear,
}

impl BlipTextLMPredictionHead {
    /// Loads `cls.predictions` of `vb` (the decoder's root), tied to `word_embeddings` when the
    /// checkpoint omits the projection.
    fn load(vb: VarBuilder, cfg: &BlipTextConfig, word_embeddings: &Tensor) -> Result<Self> {
        let vb = vb.pp("cls.predictions");
        let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
        let weight = if vb.contains_tensor("decoder.weight") {
            vb.get((vocab, hidden), "decoder.weight")?
        } else {
            word_embeddings.clone()
        };
        let bias = if vb.contains_tensor("bias") {
            vb.get(vocab, "bias")?
        } else {
            vb.get(vocab, "decoder.bias")?
        };
        Ok(Self {
            dense: candle_nn::linear(hidden, hidden, vb.pp("transform.dense"))?,
            activation: cfg.hidden_act,
            layer_norm: candle_nn::layer_norm(
                hidden,
                cfg.layer_norm_eps,
                vb.pp("transform.LayerNorm"),
            )?,
            decoder: Linear::new(weight, Some(bias)),
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.activation.forward(&self.dense.forward(xs)?)?;
        self.decoder.forward(&self.layer_norm.forward(&xs)?)
    }
}

/// `BlipTextLMHeadModel` as a decoder: embeddings (words + absolute positions, LayerNorm), the
/// layers, the head.
#[derive(Debug, Clone)]
pub struct BlipTextLMHeadModel {
    word_embeddings: Embedding,
    position_embeddings: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<BlipTextLayer>,
    head: BlipTextLMPredictionHead,
}

impl BlipTextLMHeadModel {
    /// Loads `text_decoder.*` (pass `vb.pp("text_decoder")`).
    pub fn load(vb: VarBuilder, cfg: &BlipTextConfig) -> Result<Self> {
        let bert = vb.pp("bert");
        let emb = bert.pp("embeddings");
        let word_embeddings =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, emb.pp("word_embeddings"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BlipTextLayer::load(bert.pp("encoder.layer").pp(i), cfg))
            .collect::<Result<_>>()?;
        let head = BlipTextLMPredictionHead::load(vb, cfg, word_embeddings.embeddings())?;
        Ok(Self {
            position_embeddings: emb
                .pp("position_embeddings")
                .get((cfg.max_position_embeddings, cfg.hidden_size), "weight")?,
            embeddings_norm: candle_nn::layer_norm(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                emb.pp("LayerNorm"),
            )?,
            word_embeddings,
            layers,
            head,
        })
    }

    /// An empty cache for rows that attend to `image_embeds` (rows, image tokens, encoder
    /// width): the image keys and values of every layer, computed once.
    pub fn cache(&self, image_embeds: &Tensor) -> Result<Cache> {
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                Ok(LayerCache {
                    text: None,
                    image: layer.crossattention.keys_values(image_embeds)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Cache { layers, len: 0 })
    }

    /// Feeds `ids` (rows, T), which follow the tokens `cache` has seen, and returns the logits of
    /// the last position (rows, vocab), f32.
    pub fn forward(&self, ids: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let past = cache.len;
        let positions = self.position_embeddings.dims2()?.0;
        if past + len > positions {
            candle_core::bail!("{} tokens exceed the {positions} positions", past + len);
        }
        let xs = self
            .word_embeddings
            .forward(ids)?
            .broadcast_add(&self.position_embeddings.narrow(0, past, len)?)?;
        let mut xs = self.embeddings_norm.forward(&xs)?;
        let mask = if len > 1 {
            Some(causal_mask(past, len, xs.device())?)
        } else {
            None
        };
        for (layer, layer_cache) in self.layers.iter().zip(&mut cache.layers) {
            xs = layer.forward(&xs, layer_cache, mask.as_ref())?;
        }
        cache.len += len;
        // Only the last position's logits choose the next token.
        let last = xs.narrow(1, len - 1, 1)?.squeeze(1)?;
        self.head.forward(&last)?.to_dtype(DType::F32)
    }
}

/// (1, 1, len, past + len): new token `i` sees every cached token and new tokens `0..=i`.
fn causal_mask(past: usize, len: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..past + len).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Tensor::from_vec(mask, (len, past + len), device)?.reshape((1, 1, len, past + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_causal_mask_hides_only_later_tokens() -> Result<()> {
        let mask = causal_mask(1, 2, &Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let inf = f32::NEG_INFINITY;
        assert_eq!(mask, [0.0, 0.0, inf, 0.0, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn one_step_at_a_time_equals_all_at_once() -> Result<()> {
        let cfg = BlipTextConfig {
            vocab_size: 11,
            hidden_size: 8,
            encoder_hidden_size: 6,
            intermediate_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            max_position_embeddings: 8,
            ..BlipTextConfig::default()
        };
        // Fresh random weights, under the checkpoint's names; the head is tied to the word
        // embeddings, as in checkpoints saved with tied weights.
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu).pp("text_decoder");
        let model = BlipTextLMHeadModel::load(vb, &cfg)?;
        let image = Tensor::randn(0f32, 1., (2, 3, 6), &Device::Cpu)?;
        let ids = Tensor::new(&[[1u32, 4, 7], [2, 9, 3]], &Device::Cpu)?;

        let mut all = model.cache(&image)?;
        let at_once = model.forward(&ids, &mut all)?;
        let mut steps = model.cache(&image)?;
        model.forward(&ids.narrow(1, 0, 2)?, &mut steps)?;
        let stepped = model.forward(&ids.narrow(1, 2, 1)?, &mut steps)?;
        let diff = (at_once - stepped)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");

        // Selecting rows of the cache equals running those rows alone.
        let mut swapped = model.cache(&image)?;
        model.forward(&ids.narrow(1, 0, 2)?, &mut swapped)?;
        swapped.select(&[1, 1])?;
        let next = Tensor::new(&[[3u32], [3]], &Device::Cpu)?;
        let from_swapped = model.forward(&next, &mut swapped)?;
        let mut row = model.cache(&image.narrow(0, 1, 1)?)?;
        model.forward(&ids.narrow(0, 1, 1)?.narrow(1, 0, 2)?, &mut row)?;
        let alone = model.forward(&next.narrow(0, 0, 1)?, &mut row)?;
        let diff = (from_swapped.narrow(0, 0, 1)? - alone)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
