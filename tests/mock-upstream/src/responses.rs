//! OpenAI's Responses API: `POST …/responses` (whole or streamed, text or a function call),
//! `GET …/responses/{id}` and `DELETE …/responses/{id}`.
//!
//! The mock keeps nothing: every id it made (`resp_mock_…`) reads back as a completed response
//! and deletes once per request; any other id is OpenAI's 404. That is enough to prove the
//! gateway sends a read to the provider that made the id.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::openai::{content_bytes, first_tool_name, model, wants_stream};
use crate::router::{Answer, Usage, WORDS, strip_usage, unix_now};

/// The prefix of every id the mock makes.
pub(crate) const ID_PREFIX: &str = "resp_mock_";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

const TOOL_ARGUMENTS: &str = r#"{"arg":"value"}"#;

/// Prompt bytes: `instructions` plus the text of every input message (as chat counts
/// `messages`), plus function call outputs.
fn prompt_bytes(body: &Value) -> u64 {
    let instructions = body
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |text| text.len() as u64);
    let input = match body.get("input") {
        Some(Value::String(text)) => text.len() as u64,
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.get("content")
                    .map(content_bytes)
                    .or_else(|| item.get("output").map(content_bytes))
                    .unwrap_or(0)
            })
            .sum(),
        _ => 0,
    };
    instructions + input
}

fn usage_of(prompt: u64) -> Value {
    json!({
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": WORDS.len(),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + WORDS.len() as u64,
    })
}

fn response(id: &str, model: &str, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": unix_now(),
        "status": status,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "store": true,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": usage,
    })
}

fn message(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn call(id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "id": id, "type": "function_call", "status": status,
        "call_id": "call_mock", "name": name, "arguments": arguments,
    })
}

/// `event: {type}\ndata: {json}\n\n`, with the sequence number set.
fn event(sequence: &mut u64, kind: &str, mut data: Value) -> Vec<u8> {
    data["type"] = json!(kind);
    data["sequence_number"] = json!(*sequence);
    *sequence += 1;
    format!("event: {kind}\ndata: {data}\n\n").into_bytes()
}

/// `POST …/responses`.
pub(crate) fn create(body: &Value, usage: Usage) -> Answer {
    let id = format!("{ID_PREFIX}{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let model = model(body);
    let prompt = prompt_bytes(body);
    let tool = first_tool_name(body.get("tools"));
    let item_id = format!("item_{id}");
    let text = WORDS.concat();
    let done_item = match tool {
        Some(name) => call(&item_id, name, TOOL_ARGUMENTS, "completed"),
        None => message(&item_id, &text, "completed"),
    };
    let usage_value = if usage.reported() {
        usage_of(prompt)
    } else {
        Value::Null
    };
    let done = response(&id, model, "completed", json!([done_item]), usage_value);
    if !wants_stream(body) {
        return Answer::json(200, &strip_usage(done, "usage", usage));
    }
    let mut sequence = 0;
    let started = response(&id, model, "in_progress", json!([]), Value::Null);
    let mut events = vec![
        event(
            &mut sequence,
            "response.created",
            json!({"response": started}),
        ),
        event(
            &mut sequence,
            "response.in_progress",
            json!({"response": started}),
        ),
    ];
    let first_content = events.len();
    match tool {
        Some(name) => {
            events.push(event(
                &mut sequence,
                "response.output_item.added",
                json!({"output_index": 0, "item": call(&item_id, name, "", "in_progress")}),
            ));
            for part in [r#"{"arg":"#, r#""value"}"#] {
                events.push(event(
                    &mut sequence,
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": part}),
                ));
            }
            events.push(event(
                &mut sequence,
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": 0, "arguments": TOOL_ARGUMENTS}),
            ));
        }
        None => {
            events.push(event(
                &mut sequence,
                "response.output_item.added",
                json!({"output_index": 0, "item": {
                    "id": item_id, "type": "message", "status": "in_progress",
                    "role": "assistant", "content": [],
                }}),
            ));
            events.push(event(
                &mut sequence,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            ));
            for word in WORDS {
                events.push(event(
                    &mut sequence,
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                           "delta": word}),
                ));
            }
            events.push(event(
                &mut sequence,
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
            ));
        }
    }
    events.push(event(
        &mut sequence,
        "response.output_item.done",
        json!({"output_index": 0, "item": done_item}),
    ));
    events.push(event(
        &mut sequence,
        "response.completed",
        json!({"response": strip_usage(done, "usage", usage)}),
    ));
    Answer::sse(events, first_content)
}

/// The id of `…/responses/{id}`, if the path is one.
pub(crate) fn stored_id(path: &str) -> Option<&str> {
    let (before, id) = path.rsplit_once('/')?;
    (before.ends_with("/responses") && !id.is_empty()).then_some(id)
}

/// `GET …/responses/{id}` and `DELETE …/responses/{id}`; `None` for an id the mock never made.
pub(crate) fn stored(method: &str, id: &str) -> Option<Answer> {
    if !id.starts_with(ID_PREFIX) {
        return None;
    }
    Some(if method == "DELETE" {
        Answer::json(
            200,
            &json!({"id": id, "object": "response", "deleted": true}),
        )
    } else {
        let item = message(&format!("item_{id}"), &WORDS.concat(), "completed");
        Answer::json(
            200,
            &response(id, "mock-gpt", "completed", json!([item]), usage_of(0)),
        )
    })
}
