//! The front doors: one module per client API family, each a thin adapter
//! from its wire format to the stages in `crate::gateway`.

pub mod chat;
pub mod completions;
pub mod gemini;
pub mod media;
pub mod media_upload;
pub mod models;
pub mod proxy;
pub mod proxy_usage;
pub mod responses;
pub mod self_service;
