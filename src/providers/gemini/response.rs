//! A whole Gemini answer as an OpenAI `chat.completion`, its usage, and
//! Gemini error bodies in OpenAI's shape.

use crate::providers::openai::Usage;
use crate::providers::translate::{TranslateError, response_object};
use crate::providers::wire_error;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// Gemini `finishReason` as an OpenAI `finish_reason`.
pub fn finish_reason_of(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        // STOP, OTHER, MALFORMED_FUNCTION_CALL, LANGUAGE, ...
        _ => "stop",
    }
}

/// Gemini `usageMetadata` as OpenAI usage; thinking tokens count as output.
pub(super) fn openai_usage(metadata: &Value) -> Value {
    let read = |field: &str| metadata.get(field).and_then(Value::as_i64).unwrap_or(0);
    let prompt = read("promptTokenCount");
    let thoughts = read("thoughtsTokenCount");
    let completion = read("candidatesTokenCount").saturating_add(thoughts);
    let mut usage = Map::new();
    usage.insert("prompt_tokens".to_owned(), json!(prompt));
    usage.insert("completion_tokens".to_owned(), json!(completion));
    usage.insert(
        "total_tokens".to_owned(),
        json!(prompt.saturating_add(completion)),
    );
    let cached = read("cachedContentTokenCount");
    if cached > 0 {
        usage.insert(
            "prompt_tokens_details".to_owned(),
            json!({ "cached_tokens": cached }),
        );
    }
    if thoughts > 0 {
        usage.insert(
            "completion_tokens_details".to_owned(),
            json!({ "reasoning_tokens": thoughts }),
        );
    }
    Value::Object(usage)
}

/// The token counts of a Gemini response or stream chunk.
pub fn usage_of(body: &Value) -> Option<Usage> {
    let metadata = body.get("usageMetadata")?;
    crate::providers::openai::usage_fields(&openai_usage(metadata))
}

/// What one candidate (or chunk of one) says.
pub(super) struct CandidateParts {
    pub(super) text: Option<String>,
    pub(super) calls: Vec<(String, Value)>,
}

pub(super) fn candidate_parts(candidate: &Value) -> CandidateParts {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for part in parts {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(piece) = part.get("text").and_then(Value::as_str) {
            text.get_or_insert_with(String::new).push_str(piece);
        }
        if let Some(call) = part.get("functionCall") {
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            calls.push((name, args));
        }
    }
    CandidateParts { text, calls }
}

pub(super) fn call_id(call_ids: &str, number: u64) -> String {
    if call_ids.is_empty() {
        format!("call_{number}")
    } else {
        format!("call_{call_ids}_{number}")
    }
}

pub(super) fn candidate_index(candidate: &Value, position: usize) -> u64 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

/// A Gemini `GenerateContentResponse` as an OpenAI `chat.completion`.
/// `model` is the name to report; `created` the Unix time. Tool calls get
/// ids `call_{responseId}_{n}`, as Gemini's calls have none.
pub fn gemini_to_openai_response(
    body: &Value,
    model: &str,
    created: i64,
) -> Result<Value, TranslateError> {
    let response = response_object(body)?;
    if let Some(error) = response.get("error") {
        return Err(TranslateError::upstream(format!(
            "the upstream answered an error: {}",
            error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
        )));
    }
    let response_id = response
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let candidates = response
        .get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut choices = Vec::with_capacity(candidates.len().max(1));
    for (position, candidate) in candidates.iter().enumerate() {
        let parts = candidate_parts(candidate);
        let mut message = Map::new();
        message.insert("role".to_owned(), json!("assistant"));
        message.insert("content".to_owned(), json!(parts.text));
        let has_calls = !parts.calls.is_empty();
        if has_calls {
            let calls: Vec<Value> = parts
                .calls
                .into_iter()
                .zip(0u64..)
                .map(|((name, args), number)| {
                    json!({
                        "id": call_id(response_id, number),
                        "type": "function",
                        "function": { "name": name, "arguments": args.to_string() },
                    })
                })
                .collect();
            message.insert("tool_calls".to_owned(), Value::Array(calls));
        }
        let finish_reason = candidate
            .get("finishReason")
            .and_then(Value::as_str)
            .map(|reason| match finish_reason_of(reason) {
                "stop" if has_calls => "tool_calls",
                mapped => mapped,
            });
        choices.push(json!({
            "index": candidate_index(candidate, position),
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason,
        }));
    }
    if choices.is_empty() {
        if body.pointer("/promptFeedback/blockReason").is_none() {
            return Err(TranslateError::upstream("the response has no candidates"));
        }
        choices.push(json!({
            "index": 0,
            "message": { "role": "assistant", "content": null },
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    let mut completion = json!({
        "id": completion_id(response_id, created),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let (Some(metadata), Some(completion)) =
        (response.get("usageMetadata"), completion.as_object_mut())
    {
        completion.insert("usage".to_owned(), openai_usage(metadata));
    }
    Ok(completion)
}

pub(super) fn completion_id(response_id: &str, created: i64) -> String {
    if response_id.is_empty() {
        format!("chatcmpl-gemini-{created}")
    } else {
        format!("chatcmpl-{response_id}")
    }
}

/// A Gemini error body (`{"error":{code,message,status}}`) in OpenAI's shape.
pub fn gemini_error_to_openai(body: &Value) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream returned an error");
    let status = body
        .pointer("/error/status")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN");
    wire_error::openai(message, "upstream_error", None, Some(status))
}
