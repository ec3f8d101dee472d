//! OpenAI-shaped answers: chat completions, legacy completions, embeddings, models, errors.

use serde_json::{Value, json};

use crate::base64;
use crate::router::{Answer, Usage, WORDS, sse_data, strip_usage, unix_now};

/// Byte length of a `content` value: a string, or the `text` of every part of a list.
pub(crate) fn content_bytes(content: &Value) -> u64 {
    match content {
        Value::String(s) => s.len() as u64,
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(|text| text.len() as u64)
            .sum(),
        _ => 0,
    }
}

/// Total content bytes of a `messages` list.
pub(crate) fn messages_bytes(messages: Option<&Value>) -> u64 {
    messages.and_then(Value::as_array).map_or(0, |messages| {
        messages
            .iter()
            .filter_map(|m| m.get("content"))
            .map(content_bytes)
            .sum()
    })
}

pub(crate) fn model(body: &Value) -> &str {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-gpt")
}

pub(crate) fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}

fn include_usage(body: &Value) -> bool {
    body.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
}

/// The name of the first tool, if the request offers tools.
pub(crate) fn first_tool_name(tools: Option<&Value>) -> Option<&str> {
    let first = tools?.as_array()?.first()?;
    first
        .pointer("/function/name")
        .or_else(|| first.get("name"))
        .and_then(Value::as_str)
        .or(Some("tool"))
}

fn usage_of(prompt: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": WORDS.len(),
        "total_tokens": prompt + WORDS.len() as u64,
    })
}

const TOOL_ARGUMENTS: &str = r#"{"arg":"value"}"#;

pub(crate) fn chat(body: &Value, usage: Usage) -> Answer {
    let model = model(body);
    let prompt = messages_bytes(body.get("messages"));
    let tool = first_tool_name(body.get("tools"));
    let created = unix_now();
    if wants_stream(body) {
        let include_usage = include_usage(body) && usage.reported();
        return chat_stream(model, prompt, tool, created, include_usage);
    }
    let (message, finish_reason) = match tool {
        Some(name) => (
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_mock",
                    "type": "function",
                    "function": {"name": name, "arguments": TOOL_ARGUMENTS},
                }],
            }),
            "tool_calls",
        ),
        None => (
            json!({"role": "assistant", "content": WORDS.concat()}),
            "stop",
        ),
    };
    let answer = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage_of(prompt),
    });
    Answer::json(200, &strip_usage(answer, "usage", usage))
}

fn chat_stream(
    model: &str,
    prompt: u64,
    tool: Option<&str>,
    created: u64,
    include_usage: bool,
) -> Answer {
    let chunk = |delta: Value, finish_reason: Option<&str>| {
        sse_data(&json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }))
    };
    let mut events = Vec::with_capacity(10);
    let finish_reason = match tool {
        Some(name) => {
            events.push(chunk(
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "index": 0,
                        "id": "call_mock",
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }],
                }),
                None,
            ));
            for part in [r#"{"arg":"#, r#""value"}"#] {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    None,
                ));
            }
            "tool_calls"
        }
        None => {
            events.push(chunk(json!({"role": "assistant", "content": ""}), None));
            for word in WORDS {
                events.push(chunk(json!({"content": word}), None));
            }
            "stop"
        }
    };
    events.push(chunk(json!({}), Some(finish_reason)));
    if include_usage {
        events.push(sse_data(&json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage_of(prompt),
        })));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    Answer::sse(events, 1)
}

/// Byte length of a legacy `prompt`: a string or a list of strings.
fn prompt_bytes(prompt: Option<&Value>) -> u64 {
    match prompt {
        Some(Value::String(s)) => s.len() as u64,
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.len() as u64)
            .sum(),
        _ => 0,
    }
}

pub(crate) fn completions(body: &Value, usage: Usage) -> Answer {
    let model = model(body);
    let prompt = prompt_bytes(body.get("prompt"));
    let created = unix_now();
    let choice = |text: &str, finish_reason: Option<&str>| json!({"text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason});
    if !wants_stream(body) {
        let answer = json!({
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice(&WORDS.concat(), Some("stop"))],
            "usage": usage_of(prompt),
        });
        return Answer::json(200, &strip_usage(answer, "usage", usage));
    }
    let chunk = |choices: Value| {
        sse_data(&json!({
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
        }))
    };
    let mut events: Vec<Vec<u8>> = WORDS
        .iter()
        .map(|word| chunk(json!([choice(word, None)])))
        .collect();
    events.push(chunk(json!([choice("", Some("stop"))])));
    if include_usage(body) && usage.reported() {
        events.push(sse_data(&json!({
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage_of(prompt),
        })));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    Answer::sse(events, 0)
}

/// Dimensions of every embedding.
pub(crate) const EMBEDDING_DIMS: usize = 8;

/// The vector for input number `index`: exact binary fractions, so f32 and f64 agree.
pub(crate) fn embedding_vector(index: usize) -> [f32; EMBEDDING_DIMS] {
    let mut vector = [0.0f32; EMBEDDING_DIMS];
    for (j, v) in vector.iter_mut().enumerate() {
        *v = index as f32 + (j as f32 + 1.0) / 8.0;
    }
    vector
}

/// One size per input: bytes for strings, token count for token arrays.
fn embedding_inputs(input: Option<&Value>) -> Vec<u64> {
    match input {
        Some(Value::String(s)) => vec![s.len() as u64],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![items.len() as u64]
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.len() as u64,
                Value::Array(tokens) => tokens.len() as u64,
                _ => 0,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn embeddings(body: &Value, usage: Usage) -> Answer {
    let inputs = embedding_inputs(body.get("input"));
    if inputs.is_empty() {
        return Answer::json(
            400,
            &error_body(
                "'input' must be a non-empty string or list",
                "invalid_request_error",
                None,
            ),
        );
    }
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = (0..inputs.len())
        .map(|index| {
            let vector = embedding_vector(index);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let prompt: u64 = inputs.iter().sum();
    let answer = json!({
        "object": "list",
        "data": data,
        "model": model(body),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    });
    Answer::json(200, &strip_usage(answer, "usage", usage))
}

pub(crate) fn models() -> Answer {
    Answer::json(
        200,
        &json!({
            "object": "list",
            "data": [
                {"id": "mock-gpt", "object": "model", "created": 1_700_000_000, "owned_by": "mock"},
                {"id": "mock-gpt-mini", "object": "model", "created": 1_700_000_000, "owned_by": "mock"},
            ],
        }),
    )
}

/// `{"error":{"message","type","param","code"}}`.
pub(crate) fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
