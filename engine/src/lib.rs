//! embedlab: declarative evaluation of embedding models for multimodal retrieval.

pub mod dataset;
pub mod digest;
pub mod embed;
pub mod retrieval;
pub mod rng;
pub mod manifest;
pub mod metrics;
pub mod cache;
pub mod captions;
pub mod error;
pub mod experiment;
pub mod plan;
pub mod progress;
pub mod report;
