//! OpenCLIP checkpoints (`open_clip_config.json` + `open_clip_model.safetensors` or
//! `open_clip_pytorch_model.bin`) mapped onto [`ClipModel`](crate::clip::ClipModel): the config's
//! `model_cfg` becomes a [`ClipConfig`] and every OpenCLIP tensor name is renamed to its
//! transformers name, as transformers' `convert_clip_original_pytorch_to_hf.py` does, so one model
//! runs both layouts.
//!
//! Reference: open_clip 3.x `model.py` (`CLIP`, `CLIPVisionCfg`, `CLIPTextCfg`) and
//! `transformer.py` (`VisionTransformer`, `TextTransformer`, `ResidualAttentionBlock`)
//! (<https://github.com/mlfoundations/open_clip/blob/v3.3.0/src/open_clip/model.py>).
//!
//! Supported: the plain ViT towers of the CLIP family (ViT-B-32, ViT-B-16, ViT-L-14, ViT-H-14,
//! ViT-bigG-14, with or without `quick_gelu`, `no_ln_pre`, text pooling `argmax` or `eos`).
//! Refused with a one-line error naming the key: ResNet towers (`layers` a list, RN50), timm or
//! transformers towers, and the non-default blocks (layer scale, attentional pooling, custom
//! attention, text projection bias, ...).

use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::{Checkpoint, split_qkv};
use crate::clip::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig, TextPooling};
use crate::error::Error;
use crate::vision::{CropRule, Normalize, Preprocess, Resample, Resize, Size};

/// `open_clip_config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenClipConfig {
    pub model_cfg: ModelCfg,
    #[serde(default)]
    pub preprocess_cfg: PreprocessCfg,
}

/// `model_cfg`: what `open_clip.create_model` builds.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelCfg {
    pub embed_dim: usize,
    #[serde(default)]
    pub quick_gelu: bool,
    /// The text tower lives under `text.` (`CustomTextCLIP`) rather than at the top level.
    #[serde(default)]
    pub custom_text: bool,
    pub vision_cfg: serde_json::Map<String, Value>,
    pub text_cfg: serde_json::Map<String, Value>,
}

/// `preprocess_cfg`: open_clip's `image_transform` options (image size comes from the model).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PreprocessCfg {
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub interpolation: String,
    pub resize_mode: String,
}

impl Default for PreprocessCfg {
    // OpenAI's CLIP statistics, digit for digit as open_clip's `OPENAI_DATASET_MEAN/STD`.
    #[allow(clippy::excessive_precision)]
    fn default() -> Self {
        Self {
            mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
            interpolation: "bicubic".into(),
            resize_mode: "shortest".into(),
        }
    }
}

/// Keys whose non-default values change the architecture away from what [`ClipModel`] runs.
const VISION_DEFAULTS: &[(&str, &str)] = &[
    ("ls_init_value", "null"),
    ("attentional_pool", "false"),
    ("pos_embed_type", "\"learnable\""),
    ("final_ln_after_pool", "false"),
    ("pool_type", "\"tok\""),
    ("act_kwargs", "null"),
    ("norm_kwargs", "null"),
    ("block_type", "null"),
    ("qk_norm", "false"),
    ("scaled_cosine_attn", "false"),
    ("scale_heads", "false"),
    ("scale_attn_inner", "false"),
    ("scale_attn", "false"),
    ("scale_fc", "false"),
    ("timm_model_name", "null"),
];
const TEXT_DEFAULTS: &[(&str, &str)] = &[
    ("hf_model_name", "null"),
    ("ls_init_value", "null"),
    ("embed_cls", "false"),
    ("no_causal_mask", "false"),
    ("final_ln_after_pool", "false"),
    ("proj_bias", "false"),
    ("proj_type", "\"linear\""),
    ("act_kwargs", "null"),
    ("norm_kwargs", "null"),
    ("block_type", "null"),
    ("qk_norm", "false"),
    ("scaled_cosine_attn", "false"),
    ("scale_heads", "false"),
    ("scale_attn_inner", "false"),
    ("scale_attn", "false"),
    ("scale_fc", "false"),
];

impl OpenClipConfig {
    /// The [`ClipConfig`] and text pooling of `model_cfg`; `path` names the file in errors.
    pub fn to_clip(&self, path: &Path) -> Result<(ClipConfig, TextPooling), Error> {
        let unsupported = |message: String| Error::Unsupported {
            path: path.to_owned(),
            message,
        };
        let m = &self.model_cfg;
        check_defaults("vision_cfg", &m.vision_cfg, VISION_DEFAULTS).map_err(unsupported)?;
        check_defaults("text_cfg", &m.text_cfg, TEXT_DEFAULTS).map_err(unsupported)?;
        let v = Fields("vision_cfg", &m.vision_cfg);
        let t = Fields("text_cfg", &m.text_cfg);
        let activation = if m.quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };

        if m.vision_cfg.get("layers").is_some_and(Value::is_array) {
            return Err(unsupported(
                "vision_cfg.layers is a list: ResNet image towers (RN50, ...) are not supported"
                    .into(),
            ));
        }
        let width = v.usize("width", 768).map_err(unsupported)?;
        let head_width = v.usize("head_width", 64).map_err(unsupported)?;
        let image_size = match m.vision_cfg.get("image_size") {
            Some(Value::Array(sides)) if sides.len() == 2 && sides[0] == sides[1] => {
                v.usize_of(&sides[0], "image_size").map_err(unsupported)?
            }
            Some(Value::Array(_)) => {
                return Err(unsupported(
                    "vision_cfg.image_size: only square images are supported".into(),
                ));
            }
            _ => v.usize("image_size", 224).map_err(unsupported)?,
        };
        let vision = ClipVisionConfig {
            hidden_size: width,
            intermediate_size: (width as f64 * v.f64("mlp_ratio", 4.0).map_err(unsupported)?)
                as usize,
            num_hidden_layers: v.usize("layers", 12).map_err(unsupported)?,
            num_attention_heads: width / head_width.max(1),
            num_channels: 3,
            image_size,
            patch_size: v.usize("patch_size", 16).map_err(unsupported)?,
            hidden_act: activation,
            layer_norm_eps: 1e-5,
            pre_layernorm: !v.bool("no_ln_pre").map_err(unsupported)?,
            patch_bias: false,
        };

        let text_width = t.usize("width", 512).map_err(unsupported)?;
        let eos_id = t.usize("eos_id", 2).map_err(unsupported)? as u32;
        let pooling = match m.text_cfg.get("pool_type").and_then(Value::as_str) {
            None | Some("argmax") => TextPooling::Argmax,
            Some("eos") => TextPooling::FirstEos(eos_id),
            Some(other) => {
                return Err(unsupported(format!(
                    "text_cfg.pool_type {other:?} is not supported (argmax, eos)"
                )));
            }
        };
        let text = ClipTextConfig {
            vocab_size: t.usize("vocab_size", 49408).map_err(unsupported)?,
            hidden_size: text_width,
            intermediate_size: (text_width as f64 * t.f64("mlp_ratio", 4.0).map_err(unsupported)?)
                as usize,
            num_hidden_layers: t.usize("layers", 12).map_err(unsupported)?,
            num_attention_heads: t.usize("heads", 8).map_err(unsupported)?,
            max_position_embeddings: t.usize("context_length", 77).map_err(unsupported)?,
            hidden_act: activation,
            layer_norm_eps: 1e-5,
            eos_token_id: eos_id,
        };
        let config = ClipConfig {
            text_config: text,
            vision_config: vision,
            projection_dim: m.embed_dim,
        };
        Ok((config, pooling))
    }
}

impl OpenClipConfig {
    /// open_clip's evaluation transform (`image_transform(is_train=False)`) for square images of
    /// side `image_size`: torchvision `Resize` of the shorter side on the PIL image and
    /// `CenterCrop` (torchvision's rounding), or `squash` to the exact size; then `ToTensor` and
    /// `Normalize`.
    pub fn preprocess(&self, path: &Path, image_size: usize) -> Result<Preprocess, Error> {
        let p = &self.preprocess_cfg;
        let unsupported = |message: String| Error::Unsupported {
            path: path.to_owned(),
            message,
        };
        let resample = match p.interpolation.as_str() {
            "bicubic" => Resample::Bicubic,
            "bilinear" => Resample::Bilinear,
            "nearest" => Resample::Nearest,
            other => {
                return Err(unsupported(format!(
                    "preprocess_cfg.interpolation {other:?} is not supported"
                )));
            }
        };
        let side = u32::try_from(image_size)
            .map_err(|_| unsupported(format!("image size {image_size} is too large")))?;
        let square = Size {
            height: side,
            width: side,
        };
        let (resize, center_crop) = match p.resize_mode.as_str() {
            "shortest" => (Resize::ShortestEdge(side), Some(square)),
            "squash" => (Resize::Exact(square), None),
            other => {
                return Err(unsupported(format!(
                    "preprocess_cfg.resize_mode {other:?} is not supported (shortest, squash)"
                )));
            }
        };
        Ok(Preprocess {
            resize: Some(resize),
            resample,
            center_crop,
            crop_rule: CropRule::Torchvision,
            rescale: Some(1.0 / 255.0),
            normalize: Some(Normalize {
                mean: p.mean,
                std: p.std,
            }),
        })
    }
}

/// Typed reads of one `*_cfg` table, with open_clip's defaults.
struct Fields<'a>(&'static str, &'a serde_json::Map<String, Value>);

impl Fields<'_> {
    fn usize(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.1.get(key) {
            None => Ok(default),
            Some(value) => self.usize_of(value, key),
        }
    }

    fn usize_of(&self, value: &Value, key: &str) -> Result<usize, String> {
        value
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("{}.{key}: expected a whole number, got {value}", self.0))
    }

    fn f64(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.1.get(key) {
            None => Ok(default),
            Some(value) => value
                .as_f64()
                .ok_or_else(|| format!("{}.{key}: expected a number, got {value}", self.0)),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, String> {
        match self.1.get(key) {
            None => Ok(false),
            Some(value) => value
                .as_bool()
                .ok_or_else(|| format!("{}.{key}: expected true or false, got {value}", self.0)),
        }
    }
}

/// Err naming the first key of `table` that is present with a value other than its default.
fn check_defaults(
    table: &str,
    cfg: &serde_json::Map<String, Value>,
    defaults: &[(&str, &str)],
) -> Result<(), String> {
    for (key, default) in defaults {
        let Some(value) = cfg.get(*key) else { continue };
        let default: Value = serde_json::from_str(default).expect("defaults are valid JSON");
        if *value != default {
            return Err(format!("{table}.{key} = {value} is not supported"));
        }
    }
    Ok(())
}

/// Renames the OpenCLIP tensors of `checkpoint` to transformers' CLIP names.
pub fn rename_to_clip(checkpoint: &mut Checkpoint, custom_text: bool) -> Result<(), Error> {
    checkpoint.rename(|name, tensor| rename_tensor(name, tensor, custom_text))
}

fn rename_tensor(
    name: &str,
    tensor: Tensor,
    custom_text: bool,
) -> candle_core::Result<Vec<(String, Tensor)>> {
    if let Some(rest) = name.strip_prefix("visual.") {
        return rename_vision(rest, tensor);
    }
    let text = if custom_text {
        name.strip_prefix("text.")
    } else {
        Some(name)
    };
    match text {
        Some(rest) => rename_text(rest, tensor),
        None => Ok(Vec::new()),
    }
}

fn rename_vision(name: &str, t: Tensor) -> candle_core::Result<Vec<(String, Tensor)>> {
    let to = |n: &str, t: Tensor| Ok(vec![(format!("vision_model.{n}"), t)]);
    match name {
        "conv1.weight" => to("embeddings.patch_embedding.weight", t),
        "class_embedding" => to("embeddings.class_embedding", t),
        "positional_embedding" => to("embeddings.position_embedding.weight", t),
        // open_clip multiplies by `proj`; a linear layer multiplies by its transposed weight.
        "proj" => Ok(vec![(
            "visual_projection.weight".into(),
            t.t()?.contiguous()?,
        )]),
        _ => {
            if let Some(rest) = name.strip_prefix("ln_pre.") {
                return to(&format!("pre_layrnorm.{rest}"), t);
            }
            if let Some(rest) = name.strip_prefix("ln_post.") {
                return to(&format!("post_layernorm.{rest}"), t);
            }
            rename_block(name, t, "vision_model")
        }
    }
}

fn rename_text(name: &str, t: Tensor) -> candle_core::Result<Vec<(String, Tensor)>> {
    let to = |n: &str, t: Tensor| Ok(vec![(format!("text_model.{n}"), t)]);
    match name {
        "token_embedding.weight" => to("embeddings.token_embedding.weight", t),
        "positional_embedding" => to("embeddings.position_embedding.weight", t),
        "text_projection" => Ok(vec![(
            "text_projection.weight".into(),
            t.t()?.contiguous()?,
        )]),
        _ => {
            if let Some(rest) = name.strip_prefix("ln_final.") {
                return to(&format!("final_layer_norm.{rest}"), t);
            }
            rename_block(name, t, "text_model")
        }
    }
}

/// `transformer.resblocks.<i>.<part>` -> `<tower>.encoder.layers.<i>.<part renamed>`; other
/// names (`logit_scale`, `attn_mask`) are not weights of the towers and are dropped.
fn rename_block(name: &str, t: Tensor, tower: &str) -> candle_core::Result<Vec<(String, Tensor)>> {
    let Some(rest) = name.strip_prefix("transformer.resblocks.") else {
        return Ok(Vec::new());
    };
    let Some((index, part)) = rest.split_once('.') else {
        return Ok(Vec::new());
    };
    let layer = format!("{tower}.encoder.layers.{index}");
    let renamed = match part {
        "attn.in_proj_weight" => return split_qkv(&format!("{layer}.self_attn"), "weight", &t),
        "attn.in_proj_bias" => return split_qkv(&format!("{layer}.self_attn"), "bias", &t),
        _ => [
            ("ln_1.", "layer_norm1."),
            ("ln_2.", "layer_norm2."),
            ("attn.out_proj.", "self_attn.out_proj."),
            ("mlp.c_fc.", "mlp.fc1."),
            ("mlp.c_proj.", "mlp.fc2."),
        ]
        .iter()
        .find_map(|(from, to)| part.strip_prefix(from).map(|p| format!("{to}{p}"))),
    };
    Ok(renamed
        .map(|part| vec![(format!("{layer}.{part}"), t)])
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<(ClipConfig, TextPooling), Error> {
        let cfg: OpenClipConfig = serde_json::from_str(json).unwrap();
        cfg.to_clip(Path::new("open_clip_config.json"))
    }

    #[test]
    fn vit_b_32_maps_onto_clip() {
        let (cfg, pooling) = config(
            r#"{"model_cfg": {"embed_dim": 512, "quick_gelu": true,
                "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512,
                             "heads": 8, "layers": 12}}}"#,
        )
        .unwrap();
        assert_eq!(pooling, TextPooling::Argmax);
        assert_eq!(cfg.vision_config.num_attention_heads, 12);
        assert_eq!(cfg.vision_config.intermediate_size, 3072);
        assert_eq!(cfg.vision_config.hidden_act, Activation::QuickGelu);
        assert_eq!(cfg.text_config.intermediate_size, 2048);
        assert_eq!(cfg.projection_dim, 512);
    }

    #[test]
    fn resnets_and_custom_blocks_are_refused_by_name() {
        let err = config(
            r#"{"model_cfg": {"embed_dim": 1024, "vision_cfg": {"layers": [3, 4, 6, 3]},
                "text_cfg": {}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("open_clip_config.json: ") && err.contains("ResNet"),
            "{err}"
        );
        let err = config(
            r#"{"model_cfg": {"embed_dim": 8, "vision_cfg": {"ls_init_value": 0.1},
                "text_cfg": {}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("vision_cfg.ls_init_value"), "{err}");
    }

    #[test]
    fn preprocessing_is_torchvision_resize_and_crop() {
        let cfg: OpenClipConfig = serde_json::from_str(
            r#"{"model_cfg": {"embed_dim": 8, "vision_cfg": {}, "text_cfg": {}},
                "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}"#,
        )
        .unwrap();
        let p = cfg
            .preprocess(Path::new("open_clip_config.json"), 224)
            .unwrap();
        assert_eq!(p.resize, Some(Resize::ShortestEdge(224)));
        assert_eq!(p.crop_rule, CropRule::Torchvision);
        assert_eq!(p.resample, Resample::Bicubic);
        assert_eq!(p.normalize.unwrap().mean, [0.5; 3]);
        let mut longest = cfg.clone();
        longest.preprocess_cfg.resize_mode = "longest".into();
        let err = longest
            .preprocess(Path::new("open_clip_config.json"), 224)
            .unwrap_err();
        assert!(err.to_string().contains("resize_mode"), "{err}");
    }

    #[test]
    fn fused_attention_is_split_and_projections_transposed() -> candle_core::Result<()> {
        let dev = candle_core::Device::Cpu;
        let fused = Tensor::zeros((6, 2), candle_core::DType::F32, &dev)?;
        let out = rename_tensor(
            "visual.transformer.resblocks.3.attn.in_proj_weight",
            fused,
            false,
        )?;
        assert_eq!(
            out[1].0,
            "vision_model.encoder.layers.3.self_attn.k_proj.weight"
        );
        let proj = Tensor::zeros((4, 2), candle_core::DType::F32, &dev)?;
        let out = rename_tensor("text_projection", proj.clone(), false)?;
        assert_eq!(out[0].1.dims(), [2, 4]);
        assert!(rename_tensor("text_projection", proj.clone(), true)?.is_empty());
        assert_eq!(rename_tensor("text.text_projection", proj, true)?.len(), 1);
        Ok(())
    }
}
