//! What the image encoders share: turning decoded RGB8 images into the normalised `(N, 3, H, W)`
//! tensor a vision model takes, as its configuration (not code) describes.
//!
//! [`Preprocess`] reproduces the Python pipelines the models were trained and published with:
//! PIL's resampling (bit-exact on the same input pixels), transformers' and torchvision's size
//! and crop rules, then rescale and per-channel normalisation.
//!
//! [`conv`] holds the convolutions of mobile CNNs (channels-last, bias and ReLU6 fused).

pub mod conv;
mod encoder;
mod options;
mod preprocess;
mod resample;

pub use encoder::{ImageEncoder, VisionModel};
pub use options::{ClassifierOptions, Output};

pub use preprocess::{CropRule, Normalize, Preprocess, Resize, Rgb8, Size};
pub use resample::{Resample, resize_rgb8};
