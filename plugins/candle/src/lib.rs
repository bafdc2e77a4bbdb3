//! `embedlab-candle`: text and image encoders on the CPU with
//! [candle](https://github.com/huggingface/candle), packaged as an embedlab plugin.
//!
//! Model families live side by side ([`family::FAMILIES`]); the plugin detects a folder's family
//! from its files. Image families share [`vision`]: preprocessing described by the model's
//! configuration (PIL-exact resampling) and batching ([`vision::ImageEncoder`]).
//!
//! The central type is [`SentenceTransformer`]: it loads a sentence-transformers model folder
//! (`modules.json`, `config.json`, `tokenizer.json`, `model.safetensors`, `1_Pooling/`) and turns
//! texts into fixed-size vectors exactly as the Python library does (same truncation, pooling and
//! normalisation), batching texts by length and padding each batch only to its longest text.
//!
//! ```no_run
//! use embedlab_candle::{Options, SentenceTransformer};
//!
//! let model = SentenceTransformer::load("models/all-MiniLM-L6-v2".as_ref(), &Options::default())?;
//! let vectors = model.encode(&["A cat on a sofa.", "Two dogs play in the snow."])?;
//! assert_eq!(vectors.len(), 2 * model.dim());
//! # Ok::<(), embedlab_candle::Error>(())
//! ```
//!
//! Models: BERT-family checkpoints (`model_type: "bert"`, e.g. all-MiniLM-L6-v2) through [`bert`]
//! and MPNet (`model_type: "mpnet"`, e.g. all-mpnet-base-v2) through [`mpnet`], ports of
//! transformers' `modeling_bert.py` and `modeling_mpnet.py` sharing one layer ([`transformer`]). Pooling: cls, max, mean and
//! mean-sqrt-len, concatenated as sentence-transformers does; an optional Normalize module.
//!
//! Jointly trained image-text models ([`ImageTextModel`], texts and images into one space):
//! CLIP in the transformers layout ([`clip`]), OpenCLIP checkpoints renamed onto it
//! ([`openclip`]), and BLIP ([`blip`]: its ViT renamed onto CLIP's, its unimodal text encoder
//! through candle-transformers' BERT).
//!
//! Threading: candle's matrix products use all cores (rayon), so batches run one after another.
//!
//! The library is also the embedlab plugin `candle` (`libembedlab_candle.so`, see [`Candle`]).

#![deny(unsafe_code)]

/// The plugin's heap. A forward pass allocates and frees activations of tens of MB per op; glibc
/// serves those with mmap and unmaps them when freed, so every op paid fresh page faults (about
/// 15 % of EfficientNet-Lite0's time, 7 % of MiniLM's on long texts). jemalloc keeps freed pages
/// for reuse. The plugin may have its own allocator because nothing crosses the ABI to be freed
/// by the other side (see the SDK's ownership rules).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod activation;
pub mod bert;
pub mod blip;
pub mod blip_caption;
pub mod blip_text;
pub mod checkpoint;
pub mod clip;
pub mod dense;
pub mod efficientnet_lite;
mod error;
pub mod family;
mod files;
pub mod generation;
mod image_text;
pub mod mpnet;
pub mod openclip;
mod plugin;
mod sentence;
pub mod simd;
pub mod transformer;
pub mod vision;
pub mod vit;

pub use error::Error;
pub use image_text::{ImageTextModel, ImageTextOptions};
pub use plugin::{Candle, CandleEncoder};
pub use sentence::{Options, Pooling, PoolingConfig, SentenceTransformer, normalize};

embedlab_plugin::export_plugin!(Candle);
