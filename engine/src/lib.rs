//! embedlab: declarative evaluation of embedding models for multimodal retrieval.

pub mod cache;
pub mod captions;
pub mod dataset;
pub mod digest;
pub mod embed;
pub mod error;
pub mod experiment;
pub mod interrupt;
pub mod manifest;
pub mod metrics;
pub mod models;
pub mod plan;
pub mod plugin;
pub mod progress;
pub mod report;
pub mod resources;
pub mod retrieval;
pub mod rng;
