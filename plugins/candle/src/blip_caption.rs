//! BLIP image captioning (transformers' `BlipForConditionalGeneration`,
//! `Salesforce/blip-image-captioning-{base,large}`): BLIP's ViT encodes the image into tokens,
//! and the text decoder ([`crate::blip_text`]) writes a caption attending to them, greedily or by
//! beam search ([`crate::generation`]), optionally continuing a prompt ("a picture of").
//!
//! Port of `BlipForConditionalGeneration.generate` of transformers' `modeling_blip.py`
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/blip/modeling_blip.py>):
//! the decoder's input is the prompt's tokenisation with its first token (`[CLS]`) replaced by
//! `bos_token_id` (`[DEC]`) and its last (`[SEP]`) dropped, or `[DEC]` alone; generation stops at
//! `sep_token_id`. The caption is `decode(ids, skip_special_tokens=True)`, prompt included, as
//! BLIP's processor returns it. Without `max_length`, transformers 5 writes 20 tokens after the
//! prompt (at most `max_position_embeddings` in all); it ignores the legacy generation keys of
//! `config.json` and the outer model's `generation_config.json`, and so does this module.
//!
//! Folder: `config.json` (`architectures: ["BlipForConditionalGeneration"]`), `model.safetensors`
//! or `pytorch_model.bin`, `tokenizer.json` (+ optional `tokenizer_config.json`),
//! `preprocessor_config.json`. The model also embeds images: the normalised post-layernorm class
//! token, as the BLIP family does for checkpoints without projections.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use embedlab_plugin::{Description, Image};
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::blip::{BlipConfig, rename_vision};
use crate::blip_text::{BlipTextLMHeadModel, Cache};
use crate::checkpoint::Checkpoint;
use crate::clip::ClipVisionTransformer;
use crate::error::Error;
use crate::family::{self, Model};
use crate::files::read_json;
use crate::generation::{self, Decoder, Search};
use crate::image_text::tokenizer;
use crate::sentence::normalize;
use crate::vision::{ImageEncoder, Preprocess, VisionModel};

/// The captioning family: a transformers BLIP folder whose `config.json` names the
/// `BlipForConditionalGeneration` architecture (tried before the BLIP family, which takes every
/// other `model_type: "blip"` folder).
pub(crate) const FAMILY: family::Family = family::Family {
    name: "blip_caption",
    marker: "config.json with architectures [\"BlipForConditionalGeneration\"]",
    detect: |dir| {
        family::config_architectures(dir)
            .iter()
            .any(|a| a == ARCHITECTURE)
    },
    load: |dir, options| {
        let options = family::parse_options(options)?;
        Ok(Box::new(BlipCaptioner::load(dir, &options)?))
    },
};

const ARCHITECTURE: &str = "BlipForConditionalGeneration";

/// Run-time options, as they appear under `"options"` in a plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptionOptions {
    /// Images per forward pass (and per batch of captions). Default 32.
    pub batch_size: usize,
    /// Tokens per caption, `[DEC]` and the prompt included. Default: 20 after the prompt.
    pub max_length: Option<usize>,
    /// No eos before this many tokens (`[DEC]` and the prompt included). Default 0.
    pub min_length: usize,
    /// 1: greedy search; more: beam search. Default 1.
    pub num_beams: usize,
    /// Text every caption starts with, e.g. "a picture of". Default none.
    pub prompt: Option<String>,
}

impl Default for CaptionOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            max_length: None,
            min_length: 0,
            num_beams: 1,
            prompt: None,
        }
    }
}

/// transformers' default when `max_length` is not given: this many tokens after the prompt.
const DEFAULT_NEW_TOKENS: usize = 20;

/// The vision tower and the text decoder of a captioning checkpoint.
pub struct BlipForConditionalGeneration {
    vision_model: ClipVisionTransformer,
    text_decoder: BlipTextLMHeadModel,
}

impl BlipForConditionalGeneration {
    /// Loads a checkpoint whose tensors are still in BLIP's names (renames the vision ones).
    pub fn load(checkpoint: &mut Checkpoint, cfg: &BlipConfig) -> Result<Self, Error> {
        let hidden = cfg.text_config.hidden_size;
        checkpoint.rename(|name, t| rename_vision(name, t, hidden))?;
        let vb = checkpoint.var_builder();
        let load = || -> candle_core::Result<Self> {
            Ok(Self {
                vision_model: ClipVisionTransformer::load(
                    vb.pp("vision_model"),
                    &cfg.vision_config.to_clip(),
                )?,
                text_decoder: BlipTextLMHeadModel::load(vb.pp("text_decoder"), &cfg.text_config)?,
            })
        };
        load().map_err(|e| checkpoint.error(e))
    }

    /// Token ids of one caption per image of `pixels` (N, 3, S, S): `prompt` (which starts with
    /// `[DEC]`) and its continuation, up to and including eos.
    pub fn generate(
        &self,
        pixels: &Tensor,
        prompt: &[u32],
        search: &Search,
    ) -> candle_core::Result<Vec<Vec<u32>>> {
        let image_embeds = self.vision_model.last_hidden_state(pixels)?;
        let mut session = Session {
            decoder: &self.text_decoder,
            cache: self.text_decoder.cache(&image_embeds)?,
        };
        generation::generate(&mut session, pixels.dim(0)?, prompt, search)
    }

    /// (N, hidden): the post-normalised class token of each image.
    pub fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.vision_model.forward(pixels)
    }
}

/// The text decoder and its cache, as generation drives it.
struct Session<'a> {
    decoder: &'a BlipTextLMHeadModel,
    cache: Cache,
}

impl Decoder for Session<'_> {
    fn step(&mut self, tokens: &[u32], len: usize) -> candle_core::Result<Vec<f32>> {
        let device = Device::Cpu;
        let ids = Tensor::from_slice(tokens, (tokens.len() / len, len), &device)?;
        self.decoder
            .forward(&ids, &mut self.cache)?
            .flatten_all()?
            .to_vec1()
    }

    fn select(&mut self, rows: &[u32]) -> candle_core::Result<()> {
        self.cache.select(rows)
    }
}

/// One generated caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    /// `[DEC]`, the prompt's tokens, the generated ones and eos (when reached).
    pub ids: Vec<u32>,
    /// The ids decoded without special tokens: the prompt and the caption.
    pub text: String,
}

/// The image side: normalised class tokens.
struct ClassToken(Arc<BlipForConditionalGeneration>);

impl VisionModel for ClassToken {
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        normalize(&self.0.image_features(pixels)?)
    }
}

/// A loaded captioning checkpoint with its preprocessing, tokenizer and generation options.
pub struct BlipCaptioner {
    images: ImageEncoder<ClassToken>,
    model: Arc<BlipForConditionalGeneration>,
    tokenizer: Tokenizer,
    /// `[DEC]` and the prompt's tokens.
    prompt: Vec<u32>,
    search: Search,
}

impl BlipCaptioner {
    /// Loads a captioning folder.
    pub fn load(dir: &Path, options: &CaptionOptions) -> Result<Self, Error> {
        let config: BlipConfig = read_json(&dir.join("config.json"))?;
        let mut checkpoint =
            Checkpoint::read_first(dir, &["model.safetensors", "pytorch_model.bin"])?;
        let model = Arc::new(BlipForConditionalGeneration::load(
            &mut checkpoint,
            &config,
        )?);
        let text = &config.text_config;
        let tokenizer = tokenizer(dir, text.max_position_embeddings)?;
        let prompt = prompt_ids(&tokenizer, options.prompt.as_deref(), text.bos_token_id)?;
        let search = search(options, prompt.len(), text)?;
        let images = ImageEncoder {
            model: ClassToken(model.clone()),
            preprocess: Preprocess::from_hf_config(&dir.join("preprocessor_config.json"))?,
            dim: config.vision_config.hidden_size,
            parameters: checkpoint.parameters,
            weights_digest: checkpoint.digest.clone(),
            batch_size: options.batch_size,
            device: Device::Cpu,
        };
        Ok(Self {
            images,
            model,
            tokenizer,
            prompt,
            search,
        })
    }

    /// The preprocessing images go through before [`Self::caption_pixels`].
    pub fn preprocess(&self) -> &Preprocess {
        &self.images.preprocess
    }

    /// Captions of already preprocessed pixels (N, 3, S, S): generation and decoding alone.
    pub fn caption_pixels(&self, pixels: &Tensor) -> Result<Vec<Caption>, Error> {
        let run = || self.model.generate(pixels, &self.prompt, &self.search);
        // As for embeddings: inside candle's rayon pool the calling thread joins the products.
        let ids = self.images.device.with_context(run)?;
        ids.into_iter()
            .map(|ids| {
                let text = self.tokenizer.decode(&ids, true).map_err(Error::Tokenize)?;
                Ok(Caption { ids, text })
            })
            .collect()
    }

    /// One caption per image, in batches of `batch_size`.
    pub fn caption(&self, images: &[Image<'_>]) -> Result<Vec<Caption>, Error> {
        let mut captions = Vec::with_capacity(images.len());
        for (i, batch) in images.chunks(self.images.batch_size).enumerate() {
            let pixels = self
                .images
                .preprocess_batch(batch, i * self.images.batch_size)?;
            captions.extend(self.caption_pixels(&pixels)?);
        }
        Ok(captions)
    }
}

impl Model for BlipCaptioner {
    fn describe(&self) -> Description {
        self.images.describe()
    }

    fn encode_images(&self, images: &[Image<'_>], out: &mut [f32]) -> Result<(), Error> {
        self.images.encode_into(images, out)
    }

    fn generate_captions(&self, images: &[Image<'_>]) -> Result<Vec<String>, Error> {
        Ok(self
            .caption(images)?
            .into_iter()
            .map(|caption| caption.text)
            .collect())
    }
}

/// The decoder's first tokens: the prompt's tokenisation with `[CLS]` replaced by `bos` and the
/// final `[SEP]` dropped (what `BlipForConditionalGeneration.generate` does to its `input_ids`),
/// or `bos` alone.
fn prompt_ids(tokenizer: &Tokenizer, prompt: Option<&str>, bos: u32) -> Result<Vec<u32>, Error> {
    let Some(prompt) = prompt else {
        return Ok(vec![bos]);
    };
    let encoding = tokenizer.encode(prompt, true).map_err(Error::Tokenize)?;
    let mut ids = encoding.get_ids().to_vec();
    if ids.len() < 2 {
        return Err(Error::Option {
            name: "prompt",
            message: format!("{prompt:?} tokenises to {ids:?}, without [CLS] and [SEP] around it"),
        });
    }
    ids[0] = bos;
    ids.pop();
    Ok(ids)
}

/// The search the options ask for, checked against the prompt's length and the model's positions.
fn search(
    options: &CaptionOptions,
    prompt_len: usize,
    text: &crate::blip::BlipTextConfig,
) -> Result<Search, Error> {
    let positions = text.max_position_embeddings;
    let max_length = options
        .max_length
        .unwrap_or((prompt_len + DEFAULT_NEW_TOKENS).min(positions));
    let bad = |name, message: String| Err(Error::Option { name, message });
    if options.batch_size == 0 {
        return bad("batch_size", "must be at least 1".into());
    }
    if options.num_beams == 0 {
        return bad("num_beams", "must be at least 1".into());
    }
    if max_length <= prompt_len {
        return bad(
            "max_length",
            format!("{max_length} leaves no room after the prompt's {prompt_len} tokens"),
        );
    }
    if max_length > positions {
        return bad(
            "max_length",
            format!("{max_length} exceeds the model's {positions} positions"),
        );
    }
    Ok(Search {
        max_length,
        min_length: options.min_length,
        num_beams: options.num_beams,
        eos: text.sep_token_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_and_reject_unknown_keys() {
        let options: CaptionOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(options, CaptionOptions::default());
        assert!(serde_json::from_str::<CaptionOptions>(r#"{"beams": 3}"#).is_err());
    }

    #[test]
    fn lengths_default_as_transformers_and_are_checked() {
        let text = crate::blip::BlipTextConfig {
            max_position_embeddings: 24,
            sep_token_id: 7,
            ..Default::default()
        };
        let options = CaptionOptions::default();
        assert_eq!(search(&options, 1, &text).unwrap().max_length, 21);
        assert_eq!(search(&options, 5, &text).unwrap().max_length, 24);
        assert_eq!(search(&options, 5, &text).unwrap().eos, 7);
        let with = |max_length, num_beams| CaptionOptions {
            max_length: Some(max_length),
            num_beams,
            ..CaptionOptions::default()
        };
        for (options, name) in [
            (with(5, 1), "max_length"),
            (with(25, 1), "max_length"),
            (with(10, 0), "num_beams"),
        ] {
            let err = search(&options, 5, &text).unwrap_err();
            assert!(
                matches!(err, Error::Option { name: n, .. } if n == name),
                "{err}"
            );
        }
    }
}
