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

use crate::error::ApiError;
use crate::providers::{Media, adapter_of, kind_of};
use actix_web::web::Bytes;
use serde_json::{Map, Value};
use switchyard_actors::ProviderSpec;

/// A passed-through JSON body for one attempt: the client's fields with
/// `model` set to the provider's name for it.
pub fn with_upstream_model(
    body: &mut Map<String, Value>,
    upstream_model: &str,
) -> Result<Bytes, ApiError> {
    body.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|_| ApiError::Internal)
}

/// The refusal of a provider whose kind has no `route` endpoint: answered
/// as it is (a 400 naming the provider and its kind), not failed over.
pub fn no_such_endpoint(model: &str, spec: &ProviderSpec, route: &str) -> ApiError {
    ApiError::bad_request(format!(
        "The model `{model}` is served by provider `{}` ({}), which has no {route} endpoint",
        spec.name,
        kind_of(spec).as_str(),
    ))
}

/// Where `media` lives at `spec`'s provider for `model` (the media doors).
pub fn media_path(
    spec: &ProviderSpec,
    model: &str,
    upstream_model: &str,
    media: Media,
) -> Result<String, ApiError> {
    adapter_of(spec)
        .media_path(spec, upstream_model, media)
        .ok_or_else(|| no_such_endpoint(model, spec, media.route()))
}
