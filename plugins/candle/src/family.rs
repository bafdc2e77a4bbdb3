//! Model families: how the plugin recognises a model folder, and what a loaded model offers.
//!
//! [`FAMILIES`] is the one list of families; each entry comes from the family's own module (its
//! `FAMILY` constant), so adding a family is one line there. [`detect`] takes the first family
//! whose marker the folder has.

use std::path::Path;

use embedlab_plugin::{Description, Image, serde_json};

use crate::error::Error;

/// A loaded model of any family, as the plugin's encoder drives it.
pub trait Model: Send {
    /// Modalities, dimension, parameters and weights digest; fixed once loaded.
    fn describe(&self) -> Description;

    /// One row of `describe().dim` values per text into `out`.
    fn encode_texts(&self, texts: &[&str], out: &mut [f32]) -> Result<(), Error> {
        let _ = (texts, out);
        Err(Error::Modality("texts"))
    }

    /// One row of `describe().dim` values per image into `out`.
    fn encode_images(&self, images: &[Image<'_>], out: &mut [f32]) -> Result<(), Error> {
        let _ = (images, out);
        Err(Error::Modality("images"))
    }

    /// One caption per image (captioning models).
    fn generate_captions(&self, images: &[Image<'_>]) -> Result<Vec<String>, Error> {
        let _ = images;
        Err(Error::NoCaptions)
    }
}

/// The plugin's `options` object, which each family parses into its own options type.
pub type Options = serde_json::Map<String, serde_json::Value>;

/// One family of models.
pub struct Family {
    pub name: &'static str,
    /// What `detect` looks for, for messages (`modules.json`).
    pub marker: &'static str,
    pub detect: fn(&Path) -> bool,
    pub load: Loader,
}

/// Loads a family's model from its folder with the plugin's `options`.
pub type Loader = fn(&Path, Options) -> Result<Box<dyn Model>, Error>;

/// Every family, in the order they are tried. The first is also the fallback for a folder that
/// no family recognises (its loader then names the file it expected).
// One family per line, so adding one is a one-line change that merges cleanly.
#[rustfmt::skip]
pub const FAMILIES: &[Family] = &[
    crate::sentence::FAMILY,
    crate::efficientnet_lite::FAMILY,
    crate::image_text::OPENCLIP_FAMILY,
    crate::image_text::CLIP_FAMILY,
    crate::blip_caption::FAMILY,
    crate::image_text::BLIP_FAMILY,
    crate::vit::FAMILY,
];

/// The family of the model folder `dir`: the first whose marker it has; else, when its
/// `config.json` names a `model_type` no family takes, [`UNRECOGNISED`]; else the first family.
pub fn detect(dir: &Path) -> &'static Family {
    if let Some(family) = FAMILIES.iter().find(|family| (family.detect)(dir)) {
        return family;
    }
    if config_model_type(dir).is_some() {
        return &UNRECOGNISED;
    }
    &FAMILIES[0]
}

/// Stands for a folder whose `config.json` names a `model_type` that no family loads: loading it
/// is the one-line error that says so, naming the file (rather than another family's missing
/// marker).
pub const UNRECOGNISED: Family = Family {
    name: "unrecognised",
    marker: "config.json",
    detect: |_| false,
    load: unrecognised,
};

fn unrecognised(dir: &Path, _: Options) -> Result<Box<dyn Model>, Error> {
    let model_type = config_model_type(dir).unwrap_or_default();
    let markers: Vec<&str> = FAMILIES.iter().map(|family| family.marker).collect();
    Err(Error::Unsupported {
        path: dir.join("config.json"),
        message: format!(
            "model_type {model_type:?} is not supported (this plugin loads folders with {})",
            markers.join("; ")
        ),
    })
}

/// Parses a family's options (unknown keys are errors, as each options type denies them).
pub fn parse_options<T: serde::de::DeserializeOwned>(options: Options) -> Result<T, Error> {
    serde_json::from_value(serde_json::Value::Object(options))
        .map_err(|e| Error::Options(e.to_string()))
}

/// The `model_type` of `dir/config.json`, when that file exists and names one (model families
/// use it to recognise their folders).
pub fn config_model_type(dir: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelType {
        model_type: String,
    }
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    serde_json::from_str::<ModelType>(&text)
        .ok()
        .map(|m| m.model_type)
}

/// The `architectures` of `dir/config.json` (empty when the file or the key is absent): what
/// tells a captioning BLIP checkpoint from a retrieval one, both `model_type: "blip"`.
pub fn config_architectures(dir: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Architectures {
        architectures: Vec<String>,
    }
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Architectures>(&text).ok())
        .map_or_else(Vec::new, |a| a.architectures)
}
