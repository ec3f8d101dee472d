//! Whole (non-stream) answers both ways, the usage counts they carry, and
//! error bodies between the Anthropic and OpenAI shapes.

use crate::providers::openai::Usage;
use crate::providers::translate::{
    TranslateError, openai_content_text, parse_tool_arguments, response_object,
};
use crate::providers::wire_error;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// Responses, non-stream
// ---------------------------------------------------------------------------

/// Anthropic `stop_reason` as an OpenAI `finish_reason`.
pub fn finish_reason_of(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// OpenAI `finish_reason` as an Anthropic `stop_reason`.
pub fn stop_reason_of(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage counts (input excludes cache reads and writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct AnthropicUsage {
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
    /// Of `output`: reported by OpenAI upstreams translated for an
    /// Anthropic client (Anthropic's own usage has no such field).
    reasoning: i64,
}

impl AnthropicUsage {
    /// Reads the fields present in `usage`, keeping the others.
    pub(super) fn update(&mut self, usage: &Value) {
        let read = |field: &str| usage.get(field).and_then(Value::as_i64);
        if let Some(input) = read("input_tokens") {
            self.input = input;
        }
        if let Some(output) = read("output_tokens") {
            self.output = output;
        }
        if let Some(cache_read) = read("cache_read_input_tokens") {
            self.cache_read = cache_read;
        }
        if let Some(cache_write) = read("cache_creation_input_tokens") {
            self.cache_write = cache_write;
        }
    }

    pub(super) fn prompt_tokens(&self) -> i64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    pub(super) fn gateway(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens(),
            completion_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
            // Anthropic's thinking is inside `output_tokens`, not counted apart.
            reasoning_tokens: self.reasoning,
            ..Usage::default()
        }
    }

    pub(super) fn openai(&self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens(),
            "completion_tokens": self.output,
            "total_tokens": self.prompt_tokens().saturating_add(self.output),
        });
        if self.cache_read > 0
            && let Some(usage) = usage.as_object_mut()
        {
            usage.insert(
                "prompt_tokens_details".to_owned(),
                json!({ "cached_tokens": self.cache_read }),
            );
        }
        usage
    }

    /// From OpenAI usage: cached prompt tokens become cache reads.
    pub(super) fn from_openai(usage: &Value) -> Self {
        let read = |pointer: &str| usage.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
        let cached = read("/prompt_tokens_details/cached_tokens");
        Self {
            input: (read("/prompt_tokens") - cached).max(0),
            output: read("/completion_tokens"),
            cache_read: cached,
            cache_write: 0,
            reasoning: read("/completion_tokens_details/reasoning_tokens"),
        }
    }

    pub(super) fn anthropic(&self) -> Value {
        let mut usage = json!({ "input_tokens": self.input, "output_tokens": self.output });
        if self.cache_read > 0
            && let Some(usage) = usage.as_object_mut()
        {
            usage.insert("cache_read_input_tokens".to_owned(), json!(self.cache_read));
        }
        usage
    }
}

/// The token counts of an Anthropic message (non-stream), for metering a
/// passed-through answer.
pub fn usage_of(message: &Value) -> Option<Usage> {
    let usage = message.get("usage")?;
    let mut counts = AnthropicUsage::default();
    counts.update(usage);
    Some(counts.gateway())
}

/// An Anthropic message as an OpenAI `chat.completion`. `created` is the
/// Unix time to report ([`crate::providers::translate::unix_now`]).
pub fn anthropic_to_openai_response(body: &Value, created: i64) -> Result<Value, TranslateError> {
    let message = response_object(body)?;
    if message.get("type").and_then(Value::as_str) == Some("error") {
        return Err(TranslateError::upstream(format!(
            "the upstream answered an error: {}",
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
        )));
    }
    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::upstream("the message has no `content` list"))?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text
                .get_or_insert_with(String::new)
                .push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id"),
                "type": "function",
                "function": {
                    "name": block.get("name"),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut reply = Map::new();
    reply.insert("role".to_owned(), json!("assistant"));
    reply.insert("content".to_owned(), json!(text));
    if !tool_calls.is_empty() {
        reply.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    let finish_reason = message
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(finish_reason_of);
    let mut usage = AnthropicUsage::default();
    if let Some(reported) = message.get("usage") {
        usage.update(reported);
    }
    Ok(json!({
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": usage.openai(),
    }))
}

/// An OpenAI `chat.completion` as an Anthropic message (first choice).
pub fn openai_to_anthropic_response(body: &Value) -> Result<Value, TranslateError> {
    let completion = response_object(body)?;
    let choice = completion
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| TranslateError::upstream("the completion has no choices"))?;
    let reply = choice.get("message");
    let mut content = Vec::new();
    let text = openai_content_text(reply.and_then(|reply| reply.get("content")), "");
    if !text.is_empty() {
        content.push(json!({ "type": "text", "text": text }));
    }
    let calls = reply
        .and_then(|reply| reply.get("tool_calls"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for call in calls {
        let input = parse_tool_arguments(call.pointer("/function/arguments"), String::new)
            .map_err(|error| TranslateError::upstream(error.to_string()))?;
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id"),
            "name": call.pointer("/function/name"),
            "input": input,
        }));
    }
    let stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(stop_reason_of);
    let usage = completion
        .get("usage")
        .map(AnthropicUsage::from_openai)
        .unwrap_or_default();
    Ok(json!({
        "id": completion.get("id"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage.anthropic(),
    }))
}

/// An Anthropic error body (`{"type":"error","error":{type,message}}`) in
/// OpenAI's shape.
pub fn anthropic_error_to_openai(body: &Value) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream returned an error");
    let kind = body
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    wire_error::openai(message, kind, None, None)
}

/// An OpenAI error body in Anthropic's shape, typed by the HTTP status.
pub fn openai_error_to_anthropic(body: &Value, status: u16) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream returned an error");
    wire_error::anthropic(wire_error::anthropic_type_for_status(status), message)
}
