//! Anthropic Messages answers and errors.

use serde_json::{Value, json};

use crate::openai::{content_bytes, first_tool_name, messages_bytes, wants_stream};
use crate::router::{Answer, Usage, WORDS, strip_usage};

/// Prompt bytes: `system` (a string or text blocks) plus every message's content.
fn prompt_bytes(body: &Value) -> u64 {
    body.get("system").map_or(0, content_bytes) + messages_bytes(body.get("messages"))
}

fn model(body: &Value) -> &str {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-claude")
}

/// `event: NAME\ndata: JSON\n\n`.
fn event(name: &str, data: &Value) -> Vec<u8> {
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    // Serializing a `Value` cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    out
}

const TOOL_ID: &str = "toolu_mock";

pub(crate) fn messages(body: &Value, usage: Usage) -> Answer {
    let model = model(body);
    let prompt = prompt_bytes(body);
    let tool = first_tool_name(body.get("tools"));
    let output_tokens = WORDS.len();
    if !wants_stream(body) {
        let (content, stop_reason) = match tool {
            Some(name) => (
                json!([{"type": "tool_use", "id": TOOL_ID, "name": name, "input": {"arg": "value"}}]),
                "tool_use",
            ),
            None => (
                json!([{"type": "text", "text": WORDS.concat()}]),
                "end_turn",
            ),
        };
        let answer = json!({
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": {"input_tokens": prompt, "output_tokens": output_tokens},
        });
        return Answer::json(200, &strip_usage(answer, "usage", usage));
    }
    let message = json!({
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
        "usage": {"input_tokens": prompt, "output_tokens": 1},
    });
    let mut events = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": strip_usage(message, "usage", usage)}),
    )];
    let stop_reason = match tool {
        Some(name) => {
            events.push(event(
                "content_block_start",
                &json!({
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "tool_use", "id": TOOL_ID, "name": name, "input": {}},
                }),
            ));
            for part in [r#"{"arg":"#, r#""value"}"#] {
                events.push(event(
                    "content_block_delta",
                    &json!({
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": part},
                    }),
                ));
            }
            "tool_use"
        }
        None => {
            events.push(event(
                "content_block_start",
                &json!({
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }),
            ));
            for word in WORDS {
                events.push(event(
                    "content_block_delta",
                    &json!({
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": word},
                    }),
                ));
            }
            "end_turn"
        }
    };
    events.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    let delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens},
    });
    events.push(event("message_delta", &strip_usage(delta, "usage", usage)));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    Answer::sse(events, 2)
}

pub(crate) fn count_tokens(body: &Value) -> Answer {
    Answer::json(200, &json!({"input_tokens": prompt_bytes(body)}))
}

/// `{"type":"error","error":{"type","message"}}`.
pub(crate) fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}
