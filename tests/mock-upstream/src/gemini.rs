//! Gemini answers in the shape of Google's Generative Language API v1beta: `generateContent`,
//! `streamGenerateContent?alt=sse`, the model list and errors.
//!
//! The model is named in the path (`…/models/{model}:generateContent`), not in the body, and the
//! answer echoes it as `modelVersion`. Streams are SSE `data:` events, each a whole
//! `GenerateContentResponse`, without a `[DONE]` sentinel; the last one carries `finishReason`
//! and `usageMetadata`. Gemini has no role-only event, so the first event already has content.

use serde_json::{Value, json};

use crate::openai::content_bytes;
use crate::router::{Answer, Usage, WORDS, sse_data};

/// The method after the `:` of a non-streaming call.
pub(crate) const GENERATE: &str = "generateContent";
/// The method after the `:` of a streaming call.
pub(crate) const STREAM: &str = "streamGenerateContent";
/// The method after the `:` of a token count.
pub(crate) const COUNT_TOKENS: &str = "countTokens";

/// The model used when the path names none.
const DEFAULT_MODEL: &str = "mock-gemini";

const RESPONSE_ID: &str = "mock-gemini-response";

/// A `…/models/{model}:{method}` path split into model and method; `None` when the last segment
/// has no `:`. The model is what follows the last `models/` (or the last `/`).
pub(crate) fn call(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_end_matches('/');
    let (before, method) = path.rsplit_once(':')?;
    if method.contains('/') {
        return None;
    }
    let model = match before.rsplit_once("models/") {
        Some((_, model)) => model,
        None => before.rsplit('/').next().unwrap_or(before),
    };
    Some((model, method))
}

/// The model named by a call path, [`DEFAULT_MODEL`] when empty.
pub(crate) fn model(path: &str) -> &str {
    call(path)
        .map(|(model, _)| model)
        .filter(|model| !model.is_empty())
        .unwrap_or(DEFAULT_MODEL)
}

/// Text bytes of the `parts` of a `Content` object.
fn parts_bytes(content: &Value) -> u64 {
    content.get("parts").map_or(0, content_bytes)
}

/// Prompt bytes: the text of every part of `contents`, plus `systemInstruction` (the API also
/// accepts the snake_case `system_instruction`).
fn prompt_bytes(body: &Value) -> u64 {
    let contents: u64 = body
        .get("contents")
        .and_then(Value::as_array)
        .map_or(0, |contents| contents.iter().map(parts_bytes).sum());
    let system = body
        .get("systemInstruction")
        .or_else(|| body.get("system_instruction"))
        .map_or(0, parts_bytes);
    contents + system
}

/// The first function declared by the first tool, if any.
fn tool_name(body: &Value) -> Option<&str> {
    body.pointer("/tools/0/functionDeclarations/0/name")
        .or_else(|| body.pointer("/tools/0/function_declarations/0/name"))
        .and_then(Value::as_str)
}

fn usage_metadata(prompt: u64) -> Value {
    json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": WORDS.len(),
        "totalTokenCount": prompt + WORDS.len() as u64,
    })
}

/// One `GenerateContentResponse` with a single candidate made of `part`; `last` adds the finish
/// reason and the usage.
fn response(model: &str, part: Value, last: Option<u64>, usage: Usage) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": [part]}, "index": 0});
    if last.is_some()
        && let Some(candidate) = candidate.as_object_mut()
    {
        candidate.insert("finishReason".into(), json!("STOP"));
    }
    let mut response = json!({
        "candidates": [candidate],
        "modelVersion": model,
        "responseId": RESPONSE_ID,
    });
    if let Some(prompt) = last
        && usage.reported()
        && let Some(response) = response.as_object_mut()
    {
        response.insert("usageMetadata".into(), usage_metadata(prompt));
    }
    response
}

/// `generateContent` (one JSON answer) or `streamGenerateContent` (SSE, one event per word, or
/// one event with the function call when the request declares functions).
pub(crate) fn generate(model: &str, body: &Value, stream: bool, usage: Usage) -> Answer {
    let prompt = prompt_bytes(body);
    let tool = tool_name(body)
        .map(|name| json!({"functionCall": {"name": name, "args": {"arg": "value"}}}));
    if !stream {
        let part = tool.unwrap_or_else(|| json!({"text": WORDS.concat()}));
        return Answer::json(200, &response(model, part, Some(prompt), usage));
    }
    let events = match tool {
        Some(part) => vec![sse_data(&response(model, part, Some(prompt), usage))],
        None => WORDS
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let last = (i + 1 == WORDS.len()).then_some(prompt);
                sse_data(&response(model, json!({"text": word}), last, usage))
            })
            .collect(),
    };
    Answer::sse(events, 0)
}

/// `countTokens`: `{"totalTokens": P}`, the prompt bytes of `contents` (or of the wrapped
/// `generateContentRequest`), as a generate call would report them.
pub(crate) fn count_tokens(body: &Value) -> Answer {
    let request = body.get("generateContentRequest").unwrap_or(body);
    Answer::json(200, &json!({"totalTokens": prompt_bytes(request)}))
}

pub(crate) fn models() -> Answer {
    let methods = json!(["generateContent", "streamGenerateContent"]);
    Answer::json(
        200,
        &json!({
            "models": [
                {"name": "models/mock-gemini", "displayName": "Mock Gemini", "supportedGenerationMethods": methods},
                {"name": "models/mock-gemini-pro", "displayName": "Mock Gemini Pro", "supportedGenerationMethods": methods},
            ],
        }),
    )
}

/// `{"error":{"code","message","status"}}`, Google's `google.rpc.Status` shape.
pub(crate) fn error_body(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(answer: Answer) -> (u16, Value) {
        match answer {
            Answer::Full { status, body, .. } => {
                (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
            Answer::Stream { .. } => (0, Value::Null),
        }
    }

    /// The JSON of each `data:` event, and the stream's `first_content`.
    fn stream(answer: Answer) -> (Vec<Value>, usize) {
        match answer {
            Answer::Stream {
                content_type,
                events,
                first_content,
            } => {
                assert_eq!(content_type, "text/event-stream");
                let values = events
                    .iter()
                    .map(|event| {
                        let text = String::from_utf8_lossy(event);
                        assert!(text.starts_with("data: ") && text.ends_with("\n\n"));
                        serde_json::from_str(text.trim_start_matches("data: ").trim_end())
                            .unwrap_or(Value::Null)
                    })
                    .collect();
                (values, first_content)
            }
            Answer::Full { .. } => (Vec::new(), usize::MAX),
        }
    }

    fn request() -> Value {
        json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "hello"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                {"role": "model", "parts": [{"text": "hi"}]},
                {"role": "user", "parts": [{"text": "abc"}]},
            ],
        })
    }

    #[test]
    fn call_paths_name_the_model_and_method() {
        assert_eq!(
            call("/v1/v1beta/models/gemini-2.0-flash:generateContent"),
            Some(("gemini-2.0-flash", GENERATE))
        );
        assert_eq!(
            call("/v1beta/models/m:streamGenerateContent/"),
            Some(("m", STREAM))
        );
        assert_eq!(
            call("/v1beta/tunedModels/t:generateContent"),
            Some(("t", GENERATE))
        );
        assert_eq!(call("/v1/chat/completions"), None);
        assert_eq!(call("/v1/a:b/chat/completions"), None);
        assert_eq!(model("/v1beta/models/:generateContent"), DEFAULT_MODEL);
    }

    #[test]
    fn generate_content_answers_text_and_counts_prompt_bytes() {
        let (status, json) = full(generate("mock-gemini", &request(), false, Usage::Report));
        assert_eq!(status, 200);
        assert_eq!(
            json,
            json!({
                "candidates": [{
                    "content": {"role": "model", "parts": [{"text": "one two three four five"}]},
                    "finishReason": "STOP",
                    "index": 0,
                }],
                "usageMetadata": {"promptTokenCount": 18, "candidatesTokenCount": 5, "totalTokenCount": 23},
                "modelVersion": "mock-gemini",
                "responseId": RESPONSE_ID,
            })
        );
    }

    #[test]
    fn snake_case_system_instruction_counts_too() {
        let body = json!({
            "system_instruction": {"parts": [{"text": "12345"}]},
            "contents": [{"parts": [{"text": "abc"}]}],
        });
        let (_, json) = full(generate("m", &body, false, Usage::Report));
        assert_eq!(json["usageMetadata"]["promptTokenCount"], 8);
    }

    #[test]
    fn declared_functions_get_a_function_call() {
        let mut body = request();
        body["tools"] = json!([{"functionDeclarations": [
            {"name": "get_weather", "parameters": {"type": "OBJECT"}},
            {"name": "other"},
        ]}]);
        let (_, json) = full(generate("m", &body, false, Usage::Report));
        assert_eq!(
            json["candidates"][0]["content"],
            json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"arg": "value"}}}]})
        );
        assert_eq!(json["candidates"][0]["finishReason"], "STOP");
        assert_eq!(json["usageMetadata"]["totalTokenCount"], 23);

        let (events, first_content) = stream(generate("m", &body, true, Usage::Report));
        assert_eq!(first_content, 0);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
            "get_weather"
        );
        assert_eq!(events[0]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(events[0]["usageMetadata"]["promptTokenCount"], 18);
    }

    #[test]
    fn stream_sends_one_event_per_word_and_usage_last() {
        let (events, first_content) = stream(generate("gm", &request(), true, Usage::Report));
        assert_eq!(first_content, 0);
        assert_eq!(events.len(), WORDS.len());
        for (i, (event, word)) in events.iter().zip(WORDS).enumerate() {
            let last = i + 1 == WORDS.len();
            let candidate = &event["candidates"][0];
            assert_eq!(
                candidate["content"],
                json!({"role": "model", "parts": [{"text": word}]})
            );
            assert_eq!(candidate["index"], 0);
            assert_eq!(event["modelVersion"], "gm");
            assert_eq!(candidate.get("finishReason").is_some(), last, "event {i}");
            assert_eq!(event.get("usageMetadata").is_some(), last, "event {i}");
        }
        assert_eq!(events[4]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            events[4]["usageMetadata"],
            json!({"promptTokenCount": 18, "candidatesTokenCount": 5, "totalTokenCount": 23})
        );
    }

    #[test]
    fn omitted_usage_leaves_no_usage_metadata() {
        let (_, json) = full(generate("m", &request(), false, Usage::Omit));
        assert!(json.get("usageMetadata").is_none());
        assert_eq!(json["candidates"][0]["finishReason"], "STOP");
        let (events, _) = stream(generate("m", &request(), true, Usage::Omit));
        assert_eq!(events.len(), WORDS.len());
        assert!(events.iter().all(|e| e.get("usageMetadata").is_none()));
        assert_eq!(events[4]["candidates"][0]["finishReason"], "STOP");
    }

    #[test]
    fn models_list_the_mock_gemini_models() {
        let (status, json) = full(models());
        assert_eq!(status, 200);
        let names: Vec<&str> = json["models"]
            .as_array()
            .map(|models| models.iter().filter_map(|m| m["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["models/mock-gemini", "models/mock-gemini-pro"]);
        assert_eq!(json["models"][0]["displayName"], "Mock Gemini");
        assert_eq!(
            json["models"][1]["supportedGenerationMethods"],
            json!(["generateContent", "streamGenerateContent"])
        );
    }

    #[test]
    fn errors_are_google_rpc_statuses() {
        assert_eq!(
            error_body(429, "RESOURCE_EXHAUSTED", "slow down"),
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
        );
    }
}
