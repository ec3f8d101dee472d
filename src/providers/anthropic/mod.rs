//! The Anthropic Messages format, both ways: the gateway's OpenAI-format
//! requests sent to `anthropic` upstreams, and the `/v1/messages` front door
//! (Claude Code) served by OpenAI-kind upstreams.
//!
//! Requests, non-stream responses and streams (event by event) translate in
//! both directions. Top-level request fields are whitelisted, since both APIs
//! reject parameters they do not know; nested values they share (JSON
//! schemas, tool inputs) pass through untouched.

mod request;
mod response;
mod stream;

pub use request::{
    AnthropicRequestOptions, DEFAULT_MAX_TOKENS, anthropic_object_to_openai_request,
    anthropic_to_openai_request, openai_object_to_anthropic_request, openai_to_anthropic_request,
};
pub use response::{
    anthropic_error_to_openai, anthropic_to_openai_response, finish_reason_of,
    openai_error_to_anthropic, openai_to_anthropic_response, stop_reason_of, usage_of,
};
pub use stream::{
    AnthropicPassthroughStream, AnthropicToOpenAiStream, OpenAiToAnthropicStream, carries_content,
};

use super::{Adapter, Wire};
use switchyard_actors::ProviderSpec;

/// The `anthropic-version` header sent upstream.
pub const API_VERSION: &str = "2023-06-01";

/// Anthropic's API: `x-api-key` plus the `anthropic-version` header (the
/// provider's `api_version`, else [`API_VERSION`]).
pub struct AnthropicAdapter;

impl Adapter for AnthropicAdapter {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn auth_headers(&self, spec: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", secret.to_owned()),
            (
                "anthropic-version",
                spec.api_version
                    .as_deref()
                    .unwrap_or(API_VERSION)
                    .to_owned(),
            ),
        ]
    }

    fn chat_path(&self, _: &ProviderSpec, _model: &str, _stream: bool) -> String {
        "messages".to_owned()
    }
}
