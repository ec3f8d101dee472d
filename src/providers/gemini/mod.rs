//! The Gemini `generateContent` format: the gateway's OpenAI-format requests
//! sent to `gemini` upstreams, and their answers (whole or streamed with
//! `streamGenerateContent?alt=sse`) read back as OpenAI ones; and the
//! other way for the Gemini front door (`ingress`).
mod ingress;
mod request;
mod response;
mod stream;

pub use ingress::{
    GeminiPassthroughStream, OpenAiToGeminiStream, count_tokens_request, gemini_finish_reason,
    gemini_to_openai_request, openai_error_to_gemini, openai_to_gemini_response,
    stream_error_event,
};
pub use request::{openai_object_to_gemini_request, openai_to_gemini_request};
pub use response::{finish_reason_of, gemini_error_to_openai, gemini_to_openai_response, usage_of};
pub use stream::GeminiToOpenAiStream;

use super::{Adapter, Wire};
use serde_json::Value;
use switchyard_actors::ProviderSpec;

/// The API path (below the provider's base URL) for a model, whole or
/// streamed as SSE.
pub fn api_path(model: &str, stream: bool) -> String {
    let model = super::path_segment(model.strip_prefix("models/").unwrap_or(model));
    if stream {
        format!("models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("models/{model}:generateContent")
    }
}

/// Gemini's API: keys in `x-goog-api-key` (never in the URL, where they
/// would end up in logs), model lists as `{"models":[{"name":"models/ID"}]}`.
pub struct GeminiAdapter;

impl Adapter for GeminiAdapter {
    fn wire(&self) -> Wire {
        Wire::Gemini
    }

    fn auth_headers(&self, _: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)> {
        vec![("x-goog-api-key", secret.to_owned())]
    }

    fn chat_path(&self, _: &ProviderSpec, model: &str, stream: bool) -> String {
        api_path(model, stream)
    }

    fn parse_models(&self, body: &Value) -> Vec<String> {
        body.get("models")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|model| model.get("name").and_then(Value::as_str))
                    .map(|name| name.strip_prefix("models/").unwrap_or(name).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}
