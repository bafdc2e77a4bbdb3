//! [`ImageTextModel`]: a jointly trained image-text checkpoint (CLIP, OpenCLIP, BLIP) as one
//! encoder of both modalities: decoded RGB8 images -> the checkpoint's preprocessing -> image
//! tower; texts -> its `tokenizer.json` (truncated at the context length) -> text tower; both
//! L2-normalised unless `normalize = false`, so image and text vectors share one space.
//!
//! Folder layouts (every error names the file at fault):
//! - CLIP (`openai/clip-vit-*`): `config.json` (`model_type: "clip"`), `model.safetensors` or
//!   `pytorch_model.bin`, `tokenizer.json` (+ optional `tokenizer_config.json`),
//!   `preprocessor_config.json`;
//! - OpenCLIP (`laion/CLIP-ViT-*`, `timm/*-openai`): `open_clip_config.json`,
//!   `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`, `tokenizer.json`;
//! - BLIP (`Salesforce/blip-*`; captioning checkpoints go to [`crate::blip_caption`]):
//!   `config.json` (`model_type: "blip"`), `model.safetensors` or
//!   `pytorch_model.bin`, `preprocessor_config.json`, and for retrieval checkpoints (which embed
//!   texts too) `tokenizer.json`.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use embedlab_plugin::{Description, Image, Modality};
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::blip::{BlipConfig, BlipModel};
use crate::checkpoint::Checkpoint;
use crate::clip::{ClipConfig, ClipModel, TextPooling};
use crate::error::Error;
use crate::family::{self, Model};
use crate::files::read_json;
use crate::openclip::{self, OpenClipConfig};
use crate::sentence::{load_tokenizer, normalize};
use crate::vision::{ImageEncoder, Preprocess, VisionModel};

/// Run-time options, as they appear under `"options"` in a plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageTextOptions {
    /// Images or texts per forward pass. Default 32.
    pub batch_size: usize,
    /// L2-normalise the features (what retrieval by cosine expects). Default true.
    pub normalize: bool,
}

impl Default for ImageTextOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            normalize: true,
        }
    }
}

/// The towers of one checkpoint, shared by the image and the text side.
enum Towers {
    /// CLIP and OpenCLIP (renamed onto CLIP).
    Clip(ClipModel),
    Blip(BlipModel),
}

/// Both towers and whether their outputs are normalised.
struct Joint {
    towers: Towers,
    normalize: bool,
}

impl Joint {
    fn dim(&self) -> usize {
        match &self.towers {
            Towers::Clip(model) => model.projection_dim(),
            Towers::Blip(model) => model.dim(),
        }
    }

    fn finish(&self, features: Tensor) -> candle_core::Result<Tensor> {
        if self.normalize {
            normalize(&features)
        } else {
            Ok(features)
        }
    }

    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.finish(match &self.towers {
            Towers::Clip(model) => model.image_features(pixels)?,
            Towers::Blip(model) => model.image_features(pixels)?,
        })
    }

    fn text_features(&self, rows: &[&[u32]]) -> candle_core::Result<Tensor> {
        self.finish(match &self.towers {
            Towers::Clip(model) => model.text_features(rows)?,
            Towers::Blip(model) => model.text_features(rows)?,
        })
    }
}

/// The image side, as the shared [`ImageEncoder`] drives it (batching, preprocessing).
struct ImageSide(Arc<Joint>);

impl VisionModel for ImageSide {
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.0.image_features(pixels)
    }
}

/// A loaded image-text checkpoint.
pub struct ImageTextModel {
    images: ImageEncoder<ImageSide>,
    joint: Arc<Joint>,
    /// `None` when the checkpoint embeds images only (BLIP captioning / VQA).
    tokenizer: Option<Tokenizer>,
    batch_size: usize,
}

/// The OpenCLIP family: a folder with `open_clip_config.json` and open_clip weights. Hub folders
/// of LAION's models carry a transformers conversion too (`config.json`, `model.safetensors`);
/// this family comes first, so they load as open_clip (their reference) does, unless only the
/// converted weights are there.
pub(crate) const OPENCLIP_FAMILY: family::Family = family::Family {
    name: "open_clip",
    marker: "open_clip_config.json",
    detect: is_openclip,
    load: |dir, options| {
        boxed(ImageTextModel::load_openclip(
            dir,
            &family::parse_options(options)?,
        ))
    },
};

fn is_openclip(dir: &Path) -> bool {
    let has = |name: &str| dir.join(name).is_file();
    has("open_clip_config.json")
        && (OPENCLIP_WEIGHTS.iter().any(|name| has(name)) || !has("config.json"))
}

/// Weights files of an OpenCLIP folder, in order of preference.
const OPENCLIP_WEIGHTS: &[&str] = &["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];

/// The CLIP family: a transformers folder whose `config.json` says `model_type: "clip"`.
pub(crate) const CLIP_FAMILY: family::Family = family::Family {
    name: "clip",
    marker: "config.json with model_type \"clip\"",
    detect: |dir| family::config_model_type(dir).as_deref() == Some("clip"),
    load: |dir, options| {
        boxed(ImageTextModel::load_clip(
            dir,
            &family::parse_options(options)?,
        ))
    },
};

/// The BLIP family: a transformers folder whose `config.json` says `model_type: "blip"`.
pub(crate) const BLIP_FAMILY: family::Family = family::Family {
    name: "blip",
    marker: "config.json with model_type \"blip\"",
    detect: |dir| family::config_model_type(dir).as_deref() == Some("blip"),
    load: |dir, options| {
        boxed(ImageTextModel::load_blip(
            dir,
            &family::parse_options(options)?,
        ))
    },
};

fn boxed(model: Result<ImageTextModel, Error>) -> Result<Box<dyn Model>, Error> {
    Ok(Box::new(model?))
}

impl ImageTextModel {
    /// Loads a transformers CLIP folder.
    pub fn load_clip(dir: &Path, options: &ImageTextOptions) -> Result<Self, Error> {
        check(options)?;
        let config = read_clip_config(&dir.join("config.json"))?;
        let checkpoint = Checkpoint::read_first(dir, &["model.safetensors", "pytorch_model.bin"])?;
        let pooling = TextPooling::from_config(&config.text_config);
        let model = ClipModel::load(checkpoint.var_builder(), &config, pooling)
            .map_err(|e| checkpoint.error(e))?;
        let text = &config.text_config;
        let tokenizer = tokenizer(dir, text.max_position_embeddings)?;
        let preprocess = Preprocess::from_hf_config(&dir.join("preprocessor_config.json"))?;
        Ok(Self::new(
            Towers::Clip(model),
            preprocess,
            Some(tokenizer),
            options,
            &checkpoint,
        ))
    }

    /// Loads an OpenCLIP folder.
    pub fn load_openclip(dir: &Path, options: &ImageTextOptions) -> Result<Self, Error> {
        check(options)?;
        let config_path = dir.join("open_clip_config.json");
        let config: OpenClipConfig = read_json(&config_path)?;
        let (clip_config, pooling) = config.to_clip(&config_path)?;
        let preprocess = config.preprocess(&config_path, clip_config.vision_config.image_size)?;
        let mut checkpoint = Checkpoint::read_first(dir, OPENCLIP_WEIGHTS)?;
        openclip::rename_to_clip(&mut checkpoint, config.model_cfg.custom_text)?;
        let model = ClipModel::load(checkpoint.var_builder(), &clip_config, pooling)
            .map_err(|e| checkpoint.error(e))?;
        let tokenizer = tokenizer(dir, clip_config.text_config.max_position_embeddings)?;
        Ok(Self::new(
            Towers::Clip(model),
            preprocess,
            Some(tokenizer),
            options,
            &checkpoint,
        ))
    }

    /// Loads a transformers BLIP folder.
    pub fn load_blip(dir: &Path, options: &ImageTextOptions) -> Result<Self, Error> {
        check(options)?;
        let config: BlipConfig = read_json(&dir.join("config.json"))?;
        let mut checkpoint =
            Checkpoint::read_first(dir, &["model.safetensors", "pytorch_model.bin"])?;
        let model = BlipModel::load(&mut checkpoint, &config)?;
        let tokenizer = if model.has_text() {
            let text = &config.text_config;
            Some(tokenizer(dir, text.max_position_embeddings)?)
        } else {
            None
        };
        let preprocess = Preprocess::from_hf_config(&dir.join("preprocessor_config.json"))?;
        Ok(Self::new(
            Towers::Blip(model),
            preprocess,
            tokenizer,
            options,
            &checkpoint,
        ))
    }

    fn new(
        towers: Towers,
        preprocess: Preprocess,
        tokenizer: Option<Tokenizer>,
        options: &ImageTextOptions,
        checkpoint: &Checkpoint,
    ) -> Self {
        let joint = Arc::new(Joint {
            towers,
            normalize: options.normalize,
        });
        let images = ImageEncoder {
            model: ImageSide(joint.clone()),
            preprocess,
            dim: joint.dim(),
            parameters: checkpoint.parameters,
            weights_digest: checkpoint.digest.clone(),
            batch_size: options.batch_size,
            device: Device::Cpu,
        };
        Self {
            images,
            joint,
            tokenizer,
            batch_size: options.batch_size,
        }
    }

    /// Length of each output row.
    pub fn dim(&self) -> usize {
        self.images.dim
    }

    /// The preprocessing images go through before [`Self::image_features`].
    pub fn preprocess(&self) -> &Preprocess {
        &self.images.preprocess
    }

    /// Features of already preprocessed pixels (N, 3, S, S), flattened: the forward pass alone.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Vec<f32>, Error> {
        self.images.forward(pixels)
    }

    /// The token ids of `text`, as the text tower receives them.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, Error> {
        let Some(tokenizer) = &self.tokenizer else {
            return Err(Error::Modality("texts"));
        };
        let encoding = tokenizer.encode(text, true).map_err(Error::Tokenize)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Features of token rows (as [`Self::tokenize`] gives them), flattened.
    pub fn text_features(&self, rows: &[&[u32]]) -> Result<Vec<f32>, Error> {
        let run = || {
            self.joint
                .text_features(rows)?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        // As for images: inside candle's rayon pool the calling thread joins the matrix products.
        Ok(self.images.device.with_context(run)?)
    }
}

impl Model for ImageTextModel {
    fn describe(&self) -> Description {
        let mut description = self.images.describe();
        if self.tokenizer.is_some() {
            description.modalities = vec![Modality::Text, Modality::Image];
        }
        description
    }

    fn encode_texts(&self, texts: &[&str], out: &mut [f32]) -> Result<(), Error> {
        let dim = self.dim();
        if out.len() != texts.len() * dim {
            return Err(Error::OutputSize {
                expected: texts.len() * dim,
                actual: out.len(),
            });
        }
        let rows = out.chunks_mut(self.batch_size * dim);
        for (batch, out) in texts.chunks(self.batch_size).zip(rows) {
            let ids = batch
                .iter()
                .map(|text| self.tokenize(text))
                .collect::<Result<Vec<_>, _>>()?;
            let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            out.copy_from_slice(&self.text_features(&rows)?);
        }
        Ok(())
    }

    fn encode_images(&self, images: &[Image<'_>], out: &mut [f32]) -> Result<(), Error> {
        self.images.encode_into(images, out)
    }
}

fn check(options: &ImageTextOptions) -> Result<(), Error> {
    if options.batch_size == 0 {
        return Err(Error::Option {
            name: "batch_size",
            message: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// `config.json` of a CLIP checkpoint. Configs saved by transformers before v4.30 repeat the
/// non-default text and vision keys in `text_config_dict` / `vision_config_dict`, which win.
fn read_clip_config(path: &Path) -> Result<ClipConfig, Error> {
    let mut value: serde_json::Value = read_json(path)?;
    for tower in ["text_config", "vision_config"] {
        let overrides = value.get(format!("{tower}_dict")).cloned();
        if let Some(serde_json::Value::Object(overrides)) = overrides {
            let target = value.as_object_mut().and_then(|v| {
                v.entry(tower)
                    .or_insert_with(|| serde_json::json!({}))
                    .as_object_mut()
            });
            if let Some(target) = target {
                target.extend(overrides);
            }
        }
    }
    serde_json::from_value(value).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

/// `dir/tokenizer.json`, truncating at `tokenizer_config.json`'s `model_max_length` when that is
/// shorter than the model's context (what `truncation=True` does in transformers), else at the
/// context length.
pub(crate) fn tokenizer(dir: &Path, context: usize) -> Result<Tokenizer, Error> {
    #[derive(Deserialize)]
    struct TokenizerConfig {
        model_max_length: Option<f64>,
    }
    let config_path = dir.join("tokenizer_config.json");
    let max_length = if config_path.is_file() {
        let config: TokenizerConfig = read_json(&config_path)?;
        // Unlimited tokenizers write a huge float (1e30) here.
        config
            .model_max_length
            .filter(|n| *n >= 1.0 && *n < context as f64)
            .map_or(context, |n| n as usize)
    } else {
        context
    };
    // Batches are padded by the towers themselves, so the declared pad id is not needed.
    let (tokenizer, _) = load_tokenizer(&dir.join("tokenizer.json"), max_length, 0)?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_config_dicts_override_the_tower_configs() {
        let dir = std::env::temp_dir().join(format!("embedlab-clip-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            r#"{"model_type": "clip", "projection_dim": 768,
                "text_config": {"hidden_size": 512, "eos_token_id": 2},
                "text_config_dict": {"hidden_size": 768},
                "vision_config_dict": {"patch_size": 14, "image_size": 336}}"#,
        )
        .unwrap();
        let config = read_clip_config(&path).unwrap();
        assert_eq!(config.text_config.hidden_size, 768);
        assert_eq!(config.text_config.eos_token_id, 2);
        assert_eq!(config.vision_config.patch_size, 14);
        assert_eq!(config.vision_config.image_size, 336);
        assert_eq!(config.projection_dim, 768);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn openclip_folders_with_a_transformers_conversion_load_as_open_clip() {
        let dir =
            std::env::temp_dir().join(format!("embedlab-openclip-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let touch = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        touch("open_clip_config.json", "{}");
        assert!(
            is_openclip(&dir),
            "no config.json: open_clip, which names its missing weights"
        );
        touch("config.json", r#"{"model_type": "clip"}"#);
        touch("model.safetensors", "");
        assert!(!is_openclip(&dir), "only the transformers weights: CLIP");
        assert_eq!(family::detect(&dir).name, "clip");
        touch("open_clip_pytorch_model.bin", "");
        assert!(is_openclip(&dir));
        assert_eq!(family::detect(&dir).name, "open_clip");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn options_default_and_reject_unknown_keys() {
        let options: ImageTextOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(options, ImageTextOptions::default());
        assert!(options.normalize);
        assert!(serde_json::from_str::<ImageTextOptions>(r#"{"normalise": false}"#).is_err());
        let zero = ImageTextOptions {
            batch_size: 0,
            normalize: true,
        };
        assert!(matches!(
            check(&zero),
            Err(Error::Option {
                name: "batch_size",
                ..
            })
        ));
    }
}
