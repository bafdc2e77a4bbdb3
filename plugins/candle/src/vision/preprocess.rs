//! [`Preprocess`]: decoded RGB8 images in, the `(N, 3, H, W)` f32 tensor a vision model takes out.
//!
//! Steps, each optional, in the order transformers' image processors and torchvision's
//! transforms run them: resize (PIL filters, see [`resize_rgb8`]), center crop (zero padding when
//! the crop is larger than the image), rescale (`value × factor`, usually 1/255), normalise
//! (`(value − mean) / std` per channel).
//!
//! A `Preprocess` comes from a Hugging Face `preprocessor_config.json`
//! ([`Preprocess::from_hf_config`]) or is deserialised from its own JSON form, e.g.
//! `{"resize": {"shortest_edge": 256}, "resample": "bicubic", "center_crop": {"height": 224,
//! "width": 224}, "crop_rule": "torchvision", "rescale": 0.00392156862745098,
//! "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}`, which other loaders (OpenCLIP's
//! `preprocess_cfg`, the EfficientNet store entry) build.

use std::path::Path;

use candle_core::{Device, Tensor};
use embedlab_plugin::Image;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::resample::{Resample, resize_rgb8};
use crate::error::Error;

/// The preprocessing of one model; see the module documentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// `None`: images keep their size.
    #[serde(default)]
    pub resize: Option<Resize>,
    #[serde(default = "default_resample")]
    pub resample: Resample,
    #[serde(default)]
    pub center_crop: Option<Size>,
    #[serde(default)]
    pub crop_rule: CropRule,
    /// Factor applied to the u8 values (`None`: values stay 0..=255).
    #[serde(default)]
    pub rescale: Option<f32>,
    #[serde(default)]
    pub normalize: Option<Normalize>,
}

/// How images are resized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// The shorter side becomes `n`, the longer `int(n × long / short)` (transformers'
    /// `get_resize_output_image_size`, torchvision's `Resize(n)`).
    ShortestEdge(u32),
    /// Exactly this size.
    Exact(Size),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub height: u32,
    pub width: u32,
}

/// Where a center crop starts when the margin is odd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropRule {
    /// transformers' `center_crop`: `(size − crop) // 2`.
    #[default]
    Transformers,
    /// torchvision's `center_crop`: `int(round((size − crop) / 2))`, Python's round half to even.
    Torchvision,
}

/// Per-channel mean and standard deviation (RGB), applied after rescaling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

fn default_resample() -> Resample {
    Resample::Bicubic
}

/// An RGB8 image owned by the pipeline (after resize and crop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Preprocess {
    /// Reads a Hugging Face `preprocessor_config.json` (CLIPImageProcessor, BlipImageProcessor,
    /// ViTImageProcessor and the like). Every error names the file and the key.
    pub fn from_hf_config(path: &Path) -> Result<Preprocess, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let config: hf::ImageProcessor =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.to_owned(),
                source,
            })?;
        config
            .to_preprocess()
            .map_err(|message| Error::Unsupported {
                path: path.to_owned(),
                message,
            })
    }

    /// The `(height, width)` of every output, when it does not depend on the input (a crop or an
    /// exact resize).
    pub fn output_size(&self) -> Option<Size> {
        match (self.center_crop, self.resize) {
            (Some(crop), _) => Some(crop),
            (None, Some(Resize::Exact(size))) => Some(size),
            _ => None,
        }
    }

    /// Preprocesses `images` in parallel into one `(N, 3, H, W)` f32 tensor on `device`. An
    /// inconsistent or empty image, or images whose outputs differ in size (no crop and no exact
    /// resize), is a [`Error::BadImage`] naming the image's index.
    pub fn apply(&self, images: &[Image<'_>], device: &Device) -> Result<Tensor, Error> {
        let planes: Vec<(Size, Vec<f32>)> = images
            .par_iter()
            .enumerate()
            .map(|(index, image)| self.planes(image).map_err(|message| bad(index, message)))
            .collect::<Result<_, _>>()?;
        let Some(&(size, _)) = planes.first() else {
            let (h, w) = self.output_size().map_or((0, 0), |s| (s.height, s.width));
            return Ok(Tensor::zeros(
                (0, 3, h as usize, w as usize),
                candle_core::DType::F32,
                device,
            )?);
        };
        if let Some(index) = planes.iter().position(|(s, _)| *s != size) {
            let other = planes[index].0;
            return Err(bad(
                index,
                format!(
                    "preprocessed to {}×{}, image 0 to {}×{} (no crop makes them equal)",
                    other.width, other.height, size.width, size.height
                ),
            ));
        }
        let mut flat = Vec::with_capacity(planes.len() * planes[0].1.len());
        for (_, values) in &planes {
            flat.extend_from_slice(values);
        }
        let shape = (planes.len(), 3, size.height as usize, size.width as usize);
        Ok(Tensor::from_vec(flat, shape, device)?)
    }

    /// Resize then crop, in u8, as PIL and numpy would produce them.
    pub fn resize_and_crop(&self, image: &Image<'_>) -> Result<Rgb8, String> {
        if !image.is_consistent() {
            return Err(format!(
                "{} bytes for {}×{} RGB",
                image.rgb.len(),
                image.width,
                image.height
            ));
        }
        if image.width == 0 || image.height == 0 {
            return Err("empty image".into());
        }
        let (width, height) = (image.width as usize, image.height as usize);
        let (out_width, out_height) = match self.resize {
            None => (width, height),
            Some(Resize::Exact(size)) => (size.width as usize, size.height as usize),
            Some(Resize::ShortestEdge(n)) => shortest_edge(width, height, n as usize),
        };
        if out_width == 0 || out_height == 0 {
            return Err(format!(
                "resizes to an empty {out_width}×{out_height} image"
            ));
        }
        let resized = Rgb8 {
            width: out_width,
            height: out_height,
            rgb: resize_rgb8(
                image.rgb,
                (width, height),
                (out_width, out_height),
                self.resample,
            ),
        };
        Ok(match self.center_crop {
            Some(crop) => center_crop(&resized, crop, self.crop_rule),
            None => resized,
        })
    }

    /// One image as three planes of `height × width` f32 (R, G, B).
    fn planes(&self, image: &Image<'_>) -> Result<(Size, Vec<f32>), String> {
        let rgb = self.resize_and_crop(image)?;
        let plane = rgb.width * rgb.height;
        let mut out = vec![0f32; 3 * plane];
        let factor = self.rescale.unwrap_or(1.0);
        let (mean, std) = self
            .normalize
            .map_or(([0.0; 3], [1.0; 3]), |n| (n.mean, n.std));
        for (i, pixel) in rgb.rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (f32::from(pixel[c]) * factor - mean[c]) / std[c];
            }
        }
        let size = Size {
            height: rgb.height as u32,
            width: rgb.width as u32,
        };
        Ok((size, out))
    }
}

fn bad(index: usize, message: String) -> Error {
    Error::BadImage { index, message }
}

/// `(width, height)` with the shorter side `n` and the longer `int(n × long / short)`, computed
/// in f64 as Python does.
fn shortest_edge(width: usize, height: usize, n: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (n as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (n, new_long)
    } else {
        (new_long, n)
    }
}

/// The offset of a `crop`-long window centred in `size`; negative when the crop is larger (the
/// image is then zero-padded, as both transformers and torchvision pad it).
fn crop_offset(size: usize, crop: usize, rule: CropRule) -> isize {
    if crop > size {
        return -(((crop - size) / 2) as isize);
    }
    let margin = size - crop;
    let half = margin / 2;
    let offset = match rule {
        CropRule::Transformers => half,
        // round((2h + 1) / 2) is h + 0.5, which Python rounds to the even neighbour.
        CropRule::Torchvision if margin % 2 == 1 && half % 2 == 1 => half + 1,
        CropRule::Torchvision => half,
    };
    offset as isize
}

fn center_crop(image: &Rgb8, crop: Size, rule: CropRule) -> Rgb8 {
    let (width, height) = (crop.width as usize, crop.height as usize);
    let top = crop_offset(image.height, height, rule);
    let left = crop_offset(image.width, width, rule);
    let mut rgb = vec![0u8; width * height * 3];
    for (y, row) in rgb.chunks_exact_mut(width * 3).enumerate() {
        let sy = y as isize + top;
        if sy < 0 || sy >= image.height as isize {
            continue;
        }
        let src_row = &image.rgb[sy as usize * image.width * 3..][..image.width * 3];
        for (x, pixel) in row.chunks_exact_mut(3).enumerate() {
            let sx = x as isize + left;
            if sx >= 0 && sx < image.width as isize {
                pixel.copy_from_slice(&src_row[sx as usize * 3..][..3]);
            }
        }
    }
    Rgb8 { width, height, rgb }
}

/// The keys of Hugging Face image processor configurations.
mod hf {
    use serde::Deserialize;

    use super::{CropRule, Normalize, Preprocess, Resample, Resize, Size};

    #[derive(Debug, Deserialize)]
    pub(super) struct ImageProcessor {
        image_processor_type: Option<String>,
        /// The older name of the same key, still in openai's CLIP folders.
        feature_extractor_type: Option<String>,
        do_resize: Option<bool>,
        size: Option<SizeSpec>,
        resample: Option<u64>,
        do_center_crop: Option<bool>,
        crop_size: Option<SizeSpec>,
        do_rescale: Option<bool>,
        rescale_factor: Option<f64>,
        do_normalize: Option<bool>,
        image_mean: Option<Channels>,
        image_std: Option<Channels>,
        /// Images reach the plugin as RGB already.
        #[allow(dead_code)]
        do_convert_rgb: Option<bool>,
    }

    /// `size` and `crop_size`: an int, or a map of `shortest_edge` / `height` and `width`.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    enum SizeSpec {
        Int(u32),
        Map {
            shortest_edge: Option<u32>,
            longest_edge: Option<u32>,
            height: Option<u32>,
            width: Option<u32>,
        },
    }

    /// `image_mean` / `image_std`: one value for all channels, or three.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    enum Channels {
        One(f32),
        Three([f32; 3]),
    }

    impl Channels {
        fn rgb(&self) -> [f32; 3] {
            match *self {
                Channels::One(v) => [v; 3],
                Channels::Three(v) => v,
            }
        }
    }

    impl ImageProcessor {
        /// CLIP's processor reads an int `size` as the shortest edge; the others as a square
        /// (transformers' `get_size_dict(default_to_square=...)`).
        fn int_size_is_shortest_edge(&self) -> bool {
            let kind = self.image_processor_type.as_ref();
            kind.or(self.feature_extractor_type.as_ref())
                .is_some_and(|t| t.starts_with("CLIP"))
        }

        pub(super) fn to_preprocess(&self) -> Result<Preprocess, String> {
            let resample = match self.resample {
                None => Resample::Bicubic,
                Some(code) => Resample::from_pil_code(code).ok_or_else(|| {
                    format!("resample {code}: only 0 (nearest), 2 (bilinear) and 3 (bicubic) are implemented")
                })?,
            };
            let resize = if self.do_resize.unwrap_or(true) {
                let spec = self.size.as_ref().ok_or("do_resize without `size`")?;
                Some(resize(spec, self.int_size_is_shortest_edge())?)
            } else {
                None
            };
            let center_crop = if self.do_center_crop.unwrap_or(false) {
                let spec = self
                    .crop_size
                    .as_ref()
                    .ok_or("do_center_crop without `crop_size`")?;
                match resize_spec_as_size(spec) {
                    Some(size) => Some(size),
                    None => return Err("crop_size: expected an int or {height, width}".into()),
                }
            } else {
                None
            };
            let rescale = self
                .do_rescale
                .unwrap_or(true)
                .then(|| self.rescale_factor.unwrap_or(1.0 / 255.0) as f32);
            let normalize = if self.do_normalize.unwrap_or(true) {
                let mean = self
                    .image_mean
                    .as_ref()
                    .ok_or("do_normalize without `image_mean`")?;
                let std = self
                    .image_std
                    .as_ref()
                    .ok_or("do_normalize without `image_std`")?;
                Some(Normalize {
                    mean: mean.rgb(),
                    std: std.rgb(),
                })
            } else {
                None
            };
            Ok(Preprocess {
                resize,
                resample,
                center_crop,
                crop_rule: CropRule::Transformers,
                rescale,
                normalize,
            })
        }
    }

    fn resize(spec: &SizeSpec, int_is_shortest_edge: bool) -> Result<Resize, String> {
        match spec {
            SizeSpec::Int(n) if int_is_shortest_edge => Ok(Resize::ShortestEdge(*n)),
            SizeSpec::Map {
                shortest_edge: Some(n),
                longest_edge: None,
                height: None,
                width: None,
            } => Ok(Resize::ShortestEdge(*n)),
            other => resize_spec_as_size(other)
                .map(Resize::Exact)
                .ok_or_else(|| {
                    format!(
                        "size {other:?}: expected an int, {{shortest_edge}} or {{height, width}}"
                    )
                }),
        }
    }

    fn resize_spec_as_size(spec: &SizeSpec) -> Option<Size> {
        match *spec {
            SizeSpec::Int(n) => Some(Size {
                height: n,
                width: n,
            }),
            SizeSpec::Map {
                shortest_edge: None,
                longest_edge: None,
                height: Some(height),
                width: Some(width),
            } => Some(Size { height, width }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(json: &str) -> Result<Preprocess, String> {
        serde_json::from_str::<hf::ImageProcessor>(json)
            .map_err(|e| e.to_string())?
            .to_preprocess()
    }

    #[test]
    fn hf_size_forms() {
        let clip = from_json(r#"{"image_processor_type": "CLIPImageProcessor", "size": 224, "do_normalize": false, "do_center_crop": true, "crop_size": 224}"#).unwrap();
        assert_eq!(clip.resize, Some(Resize::ShortestEdge(224)));
        assert_eq!(
            clip.center_crop,
            Some(Size {
                height: 224,
                width: 224
            })
        );
        let vit = from_json(r#"{"image_processor_type": "ViTImageProcessor", "size": 224, "resample": 2, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]}"#).unwrap();
        assert_eq!(
            vit.resize,
            Some(Resize::Exact(Size {
                height: 224,
                width: 224
            }))
        );
        assert_eq!(vit.resample, Resample::Bilinear);
        assert_eq!(vit.normalize.unwrap().mean, [0.5; 3]);
        assert_eq!(vit.rescale, Some(1.0 / 255.0));
        let blip = from_json(r#"{"size": {"height": 384, "width": 384}, "do_normalize": false, "do_rescale": false}"#).unwrap();
        assert_eq!(
            blip.resize,
            Some(Resize::Exact(Size {
                height: 384,
                width: 384
            }))
        );
        assert_eq!((blip.rescale, blip.normalize), (None, None));
        let edge = from_json(r#"{"size": {"shortest_edge": 256}, "do_normalize": false}"#).unwrap();
        assert_eq!(edge.resize, Some(Resize::ShortestEdge(256)));
    }

    #[test]
    fn hf_rejections_name_the_key() {
        let cases = [
            (
                r#"{"size": 4, "resample": 1, "do_normalize": false}"#,
                "resample 1",
            ),
            (r#"{"do_normalize": false}"#, "size"),
            (
                r#"{"size": 4, "do_center_crop": true, "do_normalize": false}"#,
                "crop_size",
            ),
            (r#"{"size": 4}"#, "image_mean"),
            (
                r#"{"size": {"shortest_edge": 4, "longest_edge": 9}, "do_normalize": false}"#,
                "size",
            ),
        ];
        for (json, key) in cases {
            let err = from_json(json).unwrap_err();
            assert!(err.contains(key), "{json}: {err}");
        }
    }

    #[test]
    fn shortest_edge_truncates_the_long_side() {
        // int(224 * 500 / 375) = int(298.66..) = 298
        assert_eq!(shortest_edge(500, 375, 224), (298, 224));
        assert_eq!(shortest_edge(375, 500, 224), (224, 298));
        assert_eq!(shortest_edge(100, 100, 7), (7, 7));
    }

    #[test]
    fn crop_offsets_follow_each_library() {
        // margins 32 (even), 33 (half 16 → round(16.5) = 16), 35 (half 17 → round(17.5) = 18)
        assert_eq!(crop_offset(256, 224, CropRule::Transformers), 16);
        assert_eq!(crop_offset(256, 224, CropRule::Torchvision), 16);
        assert_eq!(crop_offset(257, 224, CropRule::Transformers), 16);
        assert_eq!(crop_offset(257, 224, CropRule::Torchvision), 16);
        assert_eq!(crop_offset(259, 224, CropRule::Transformers), 17);
        assert_eq!(crop_offset(259, 224, CropRule::Torchvision), 18);
        assert_eq!(crop_offset(220, 224, CropRule::Transformers), -2);
        assert_eq!(crop_offset(221, 224, CropRule::Torchvision), -1);
    }

    #[test]
    fn crop_pads_with_zeros() {
        let image = Rgb8 {
            width: 1,
            height: 1,
            rgb: vec![9, 9, 9],
        };
        let out = center_crop(
            &image,
            Size {
                height: 3,
                width: 2,
            },
            CropRule::Transformers,
        );
        assert_eq!(
            out.rgb,
            [0, 0, 0, 0, 0, 0, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn own_json_form_round_trips_and_denies_unknown_keys() {
        let p: Preprocess = serde_json::from_str(
            r#"{"resize": {"shortest_edge": 256}, "center_crop": {"height": 224, "width": 224},
                "crop_rule": "torchvision", "rescale": 0.5,
                "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}"#,
        )
        .unwrap();
        assert_eq!(p.resample, Resample::Bicubic);
        assert_eq!(
            p.output_size(),
            Some(Size {
                height: 224,
                width: 224
            })
        );
        let back: Preprocess = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_str::<Preprocess>(r#"{"resise": null}"#).is_err());
    }

    #[test]
    fn apply_normalises_and_rejects_bad_images() {
        let p = Preprocess {
            resize: None,
            resample: Resample::Bilinear,
            center_crop: None,
            crop_rule: CropRule::Transformers,
            rescale: Some(0.5),
            normalize: Some(Normalize {
                mean: [1.0, 2.0, 3.0],
                std: [1.0, 2.0, 4.0],
            }),
        };
        let rgb = [10u8, 20, 30, 40, 50, 60];
        let image = Image {
            width: 2,
            height: 1,
            rgb: &rgb,
        };
        let t = p.apply(&[image, image], &Device::Cpu).unwrap();
        assert_eq!(t.dims(), [2, 3, 1, 2]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(&v[..6], [4.0, 19.0, 4.0, 11.5, 3.0, 6.75]);

        let short = Image {
            width: 2,
            height: 2,
            rgb: &rgb,
        };
        let err = p.apply(&[image, short], &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::BadImage { index: 1, .. }), "{err}");
        let small = Image {
            width: 1,
            height: 1,
            rgb: &rgb[..3],
        };
        let err = p.apply(&[image, small], &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("image 1"), "{err}");
        let empty = Image {
            width: 0,
            height: 0,
            rgb: &[],
        };
        assert!(p.apply(&[empty], &Device::Cpu).is_err());
    }
}
