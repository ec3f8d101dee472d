//! `kind = "echo"`: the offline demo upstream. It answers chat completions
//! inside the gateway, without any network, by repeating the last user
//! message, in OpenAI's wire format (so the Anthropic front door gets it
//! through the same translation as any OpenAI-shaped provider), with usage
//! figures.
//!
//! Policy:
//! - Never there unless configured: it is a provider kind like the others,
//!   present only when a `[[providers]]` entry (or the admin API) names it.
//! - Everything except the upstream HTTP call is the normal path: routing,
//!   the key pool (an echo provider needs one key entry, whose value is
//!   never sent anywhere), limits, metering and usage rows. The gateway
//!   calls [`answer`] where it would send the request (`gateway::failover`),
//!   after one string comparison of the provider's kind.
//! - Token figures are estimates (about four characters per token, at least
//!   one per message): it has no tokenizer, and the point is to see numbers
//!   flow into usage rows, budgets and metrics.
//! - Only chat completions: the other endpoints (embeddings, legacy
//!   completions, model lists, the proxy) have no path, as for a provider
//!   that lacks them.

use super::{Adapter, Wire};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_actors::ProviderSpec;

/// The kind's name, as `ProviderSpec::kind` carries it.
pub const KIND: &str = "echo";

/// The chat path the adapter names (the only one it has).
pub const CHAT_PATH: &str = "chat/completions";

pub struct EchoAdapter;

impl Adapter for EchoAdapter {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    /// Nothing is sent anywhere, so no credential either.
    fn auth_headers(&self, _: &ProviderSpec, _secret: &str) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn chat_path(&self, _: &ProviderSpec, _model: &str, _stream: bool) -> String {
        CHAT_PATH.to_owned()
    }

    /// No model list to fetch: the configured models are what it serves.
    fn models_path(&self, _spec: &ProviderSpec) -> Option<String> {
        None
    }
}

/// Whether `spec` is an echo provider (one comparison, no parsing).
pub fn is_echo(spec: &ProviderSpec) -> bool {
    spec.kind == KIND
}

/// A request the echo provider cannot answer (the body is not a chat
/// request); the message is for the client.
#[derive(Debug)]
pub struct NotAChatRequest(pub String);

/// The answer to an OpenAI chat request `body` (as the gateway would send
/// it upstream, model already rewritten): a `chat.completion` object, or for
/// a stream the whole SSE body ending in `data: [DONE]`.
pub fn answer(body: &[u8]) -> Result<Bytes, NotAChatRequest> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|error| NotAChatRequest(format!("The chat request is not JSON: {error}")))?;
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| NotAChatRequest("The chat request has no `messages` array".to_owned()))?;
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(KIND)
        .to_owned();
    let reply = messages
        .iter()
        .rev()
        .find(|message| message.get("role").and_then(Value::as_str) == Some("user"))
        .map(|message| text_of(message.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let prompt_tokens: i64 = messages
        .iter()
        .map(|message| tokens(&text_of(message.get("content").unwrap_or(&Value::Null))).max(1))
        .sum();
    let completion_tokens = tokens(&reply);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let id = format!("chatcmpl-echo-{}", next_id());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    if !stream {
        let completion = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }],
            "usage": usage,
        });
        return Ok(Bytes::from(completion.to_string()));
    }
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    // A word at a time (with its following space), so a stream looks like one.
    for piece in reply.split_inclusive(' ') {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }));
    }
    let mut sse = String::new();
    for event in events {
        sse.push_str("data: ");
        sse.push_str(&event.to_string());
        sse.push_str("\n\n");
    }
    sse.push_str("data: [DONE]\n\n");
    Ok(Bytes::from(sse))
}

/// The text of a message's `content`: a string, or the text parts of an
/// array of parts joined by newlines.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// About four characters per token, rounded up.
fn tokens(text: &str) -> i64 {
    i64::try_from(text.chars().count().div_ceil(4)).unwrap_or(i64::MAX)
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_last_user_message_with_usage() -> Result<(), NotAChatRequest> {
        let body = json!({"model": "demo", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ]});
        let answer: Value = serde_json::from_slice(&answer(body.to_string().as_bytes())?)
            .map_err(|error| NotAChatRequest(error.to_string()))?;
        assert_eq!(answer["choices"][0]["message"]["content"], "hello there");
        assert_eq!(answer["usage"]["completion_tokens"], 3);
        assert_eq!(answer["usage"]["prompt_tokens"], 2 + 2 + 1 + 3);
        assert_eq!(answer["model"], "demo");
        Ok(())
    }

    #[test]
    fn a_stream_ends_with_done_and_carries_usage_when_asked() -> Result<(), NotAChatRequest> {
        let body = json!({"model": "demo", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "a b c"}]});
        let sse = answer(body.to_string().as_bytes())?;
        let text = String::from_utf8_lossy(&sse);
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert!(text.contains("\"finish_reason\":\"stop\""));
        assert!(text.contains("\"completion_tokens\":2"));
        let pieces: String = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .filter_map(|event| {
                event["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(pieces, "a b c");
        Ok(())
    }

    #[test]
    fn a_body_that_is_no_chat_request_is_refused() {
        assert!(answer(b"{not json").is_err());
        assert!(answer(br#"{"model": "x"}"#).is_err());
    }
}
