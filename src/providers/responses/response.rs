//! Answers in the Responses API's shape: a whole chat completion turned into
//! a `response` object, the usage of an OpenAI upstream's own Responses
//! answer, and the parts the stream translator shares (the response
//! skeleton echoing the request, the usage block, item ids).

use super::super::openai::Usage;
use super::super::translate::{TranslateError, response_object};
use serde_json::{Map, Value, json};

/// What an answer echoes of its request, and the ids it is known by. Built
/// once per request, so a stream's events and a whole answer agree.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    /// `resp_…`, made by the gateway for translated answers.
    pub id: String,
    pub created_at: i64,
    /// The model the client asked for.
    pub model: String,
    /// The request fields a `response` object repeats.
    echoed: Map<String, Value>,
}

impl ResponseFrame {
    pub fn new(id: String, created_at: i64, model: String, request: &Map<String, Value>) -> Self {
        let mut echoed = Map::new();
        let field = |name: &str, default: Value| {
            request
                .get(name)
                .filter(|value| !value.is_null())
                .cloned()
                .unwrap_or(default)
        };
        echoed.insert(
            "instructions".to_owned(),
            field("instructions", Value::Null),
        );
        echoed.insert(
            "max_output_tokens".to_owned(),
            field("max_output_tokens", Value::Null),
        );
        echoed.insert("metadata".to_owned(), field("metadata", json!({})));
        echoed.insert(
            "parallel_tool_calls".to_owned(),
            field("parallel_tool_calls", json!(true)),
        );
        echoed.insert("previous_response_id".to_owned(), Value::Null);
        echoed.insert(
            "reasoning".to_owned(),
            json!({ "effort": request.pointer_str("reasoning", "effort"), "summary": null }),
        );
        // Nothing is kept: a translated response cannot be read back.
        echoed.insert("store".to_owned(), json!(false));
        echoed.insert("temperature".to_owned(), field("temperature", json!(1.0)));
        echoed.insert(
            "text".to_owned(),
            field("text", json!({ "format": { "type": "text" } })),
        );
        echoed.insert(
            "tool_choice".to_owned(),
            field("tool_choice", json!("auto")),
        );
        echoed.insert("tools".to_owned(), field("tools", json!([])));
        echoed.insert("top_p".to_owned(), field("top_p", json!(1.0)));
        echoed.insert("truncation".to_owned(), json!("disabled"));
        echoed.insert("user".to_owned(), field("user", Value::Null));
        Self {
            id,
            created_at,
            model,
            echoed,
        }
    }

    /// The id suffix item ids are made from (`msg_…`, `fc_…`).
    fn suffix(&self) -> &str {
        self.id.strip_prefix("resp_").unwrap_or(&self.id)
    }

    pub fn message_id(&self) -> String {
        format!("msg_{}", self.suffix())
    }

    pub fn call_item_id(&self, index: u64) -> String {
        format!("fc_{}_{index}", self.suffix())
    }

    /// The `response` object in a given state.
    pub fn response(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Option<Value>,
        incomplete: Option<&str>,
    ) -> Value {
        let mut object = Map::new();
        object.insert("id".to_owned(), json!(self.id));
        object.insert("object".to_owned(), json!("response"));
        object.insert("created_at".to_owned(), json!(self.created_at));
        object.insert("status".to_owned(), json!(status));
        object.insert("error".to_owned(), Value::Null);
        object.insert(
            "incomplete_details".to_owned(),
            incomplete.map_or(Value::Null, |reason| json!({ "reason": reason })),
        );
        object.insert("model".to_owned(), json!(self.model));
        object.insert("output".to_owned(), Value::Array(output));
        for (key, value) in &self.echoed {
            object.insert(key.clone(), value.clone());
        }
        object.insert("usage".to_owned(), usage.unwrap_or(Value::Null));
        Value::Object(object)
    }
}

trait PointerStr {
    fn pointer_str(&self, object: &str, field: &str) -> Value;
}

impl PointerStr for Map<String, Value> {
    fn pointer_str(&self, object: &str, field: &str) -> Value {
        self.get(object)
            .and_then(|inner| inner.get(field))
            .filter(|value| value.is_string())
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// A chat `usage` object in the Responses shape.
pub fn responses_usage(chat_usage: &Value) -> Value {
    let count = |pointer: &str| {
        chat_usage
            .pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let input = count("/prompt_tokens");
    let output = count("/completion_tokens");
    json!({
        "input_tokens": input,
        "input_tokens_details": { "cached_tokens": count("/prompt_tokens_details/cached_tokens") },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": count("/completion_tokens_details/reasoning_tokens"),
        },
        "total_tokens": input + output,
    })
}

/// The usage of a Responses answer (an OpenAI upstream's own, or a
/// `response` object inside a stream event).
pub fn usage_of(response: &Value) -> Option<Usage> {
    let usage = response.get("usage")?;
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    // Like chat's usage, the cached part is inside the input tokens and the
    // reasoning part inside the output tokens.
    Some(Usage {
        cache_read_tokens: count("/input_tokens_details/cached_tokens"),
        reasoning_tokens: count("/output_tokens_details/reasoning_tokens"),
        ..Usage::tokens(count("/input_tokens"), count("/output_tokens"))
    })
}

/// `status` and `incomplete_details.reason` for a chat finish reason.
pub(super) fn status_of(finish_reason: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish_reason {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// An output `message` item holding one text part.
pub(super) fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(text) => vec![output_text_part(text)],
        None => Vec::new(),
    };
    json!({
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

pub(super) fn output_text_part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

/// An output `function_call` item.
pub(super) fn call_item(
    id: &str,
    status: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> Value {
    json!({
        "id": id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    })
}

/// A whole chat completion (OpenAI's format, from any upstream) as a
/// `response` object.
pub fn chat_to_responses_response(
    chat: &Value,
    frame: &ResponseFrame,
) -> Result<Value, TranslateError> {
    let chat = response_object(chat)?;
    let choice = chat
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| TranslateError::upstream("the answer has no choice"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| TranslateError::upstream("the answer's choice has no message"))?;
    let mut output = Vec::new();
    let text = super::super::translate::openai_content_text(message.get("content"), "");
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        output.push(json!({
            "id": frame.message_id(),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{ "type": "refusal", "refusal": refusal }],
        }));
    } else if !text.is_empty() || calls.is_empty() {
        output.push(message_item(&frame.message_id(), "completed", Some(&text)));
    }
    for (index, call) in calls.iter().enumerate() {
        let function = call.get("function");
        fn string(value: Option<&Value>) -> &str {
            value.and_then(Value::as_str).unwrap_or_default()
        }
        output.push(call_item(
            &frame.call_item_id(index as u64),
            "completed",
            string(call.get("id")),
            string(function.and_then(|f| f.get("name"))),
            string(function.and_then(|f| f.get("arguments"))),
        ));
    }
    let (status, incomplete) = status_of(choice.get("finish_reason").and_then(Value::as_str));
    let usage = chat
        .get("usage")
        .filter(|usage| usage.is_object())
        .map(responses_usage);
    Ok(frame.response(status, output, usage, incomplete))
}
