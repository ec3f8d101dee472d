//! Gemini (Generative Language API v1beta) endpoints over the wire: the model in the path, SSE
//! without `[DONE]`, Google-shaped errors, the v1beta model list.

use std::io::ErrorKind;

use mock_upstream::MockUpstream;
use serde_json::{Value, json};

use crate::client::{Client, TIMEOUT, TestResult, request, sse_data};

const GENERATE: &str = "/v1/v1beta/models/gemini-2.0-flash:generateContent";
const STREAM: &str = "/v1/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse";

fn gemini_request() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
    })
}

/// `POST path` with `x-goog-api-key: key`, the way the gateway calls Gemini.
fn post(
    mock: &MockUpstream,
    path: &str,
    key: &str,
    body: &Value,
) -> std::io::Result<crate::client::Response> {
    request(
        mock.addr(),
        "POST",
        path,
        &[("x-goog-api-key", key)],
        &serde_json::to_vec(body)?,
    )
}

#[test]
fn generate_content_answers_the_words_with_usage_metadata() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(&mock, GENERATE, "ok-g", &gemini_request())?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json()?;
    assert_eq!(
        json["candidates"],
        json!([{
            "content": {"role": "model", "parts": [{"text": "one two three four five"}]},
            "finishReason": "STOP",
            "index": 0,
        }])
    );
    assert_eq!(
        json["usageMetadata"],
        json!({"promptTokenCount": 13, "candidatesTokenCount": 5, "totalTokenCount": 18})
    );
    assert_eq!(json["modelVersion"], "gemini-2.0-flash");
    assert!(json["responseId"].is_string());
    assert_eq!(mock.calls("ok-g"), 1);
    Ok(())
}

#[test]
fn stream_generate_content_is_one_sse_event_per_word() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(&mock, STREAM, "ok-g", &gemini_request())?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.chunks.len(), 5);
    let events: Vec<Value> = sse_data(&response.body)
        .iter()
        .map(|data| serde_json::from_str(data))
        .collect::<Result<_, _>>()?;
    assert_eq!(events.len(), 5, "no [DONE] sentinel");
    let text: String = events
        .iter()
        .filter_map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "one two three four five");
    for event in events.get(..4).unwrap_or_default() {
        assert!(event["candidates"][0].get("finishReason").is_none());
        assert!(event.get("usageMetadata").is_none());
        assert_eq!(event["modelVersion"], "gemini-2.0-flash");
    }
    assert_eq!(events[4]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(events[4]["usageMetadata"]["totalTokenCount"], 18);
    // The `?alt=sse` query carried the key elsewhere: the key query parameter works too.
    let keyed = request(
        mock.addr(),
        "POST",
        "/v1beta/models/m:streamGenerateContent?alt=sse&key=ok-q",
        &[],
        &serde_json::to_vec(&gemini_request())?,
    )?;
    assert_eq!(keyed.chunks.len(), 5);
    assert_eq!(mock.calls("ok-q"), 1);
    Ok(())
}

#[test]
fn declared_functions_are_called() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut body = gemini_request();
    body["tools"] = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT"}}]}]);
    let json = post(&mock, GENERATE, "ok-g", &body)?.json()?;
    assert_eq!(
        json["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {"arg": "value"}}}])
    );
    assert_eq!(json["candidates"][0]["finishReason"], "STOP");

    let response = post(&mock, STREAM, "ok-g", &body)?;
    let events = sse_data(&response.body);
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_str(events.first().ok_or("no event")?)?;
    assert_eq!(
        event["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );
    assert_eq!(event["candidates"][0]["finishReason"], "STOP");
    assert_eq!(event["usageMetadata"]["promptTokenCount"], 13);
    Ok(())
}

#[test]
fn errors_use_the_google_shape() -> TestResult {
    let mock = MockUpstream::start()?;
    for (key, status, name) in [
        ("r429-g", 429, "RESOURCE_EXHAUSTED"),
        ("e500-g", 500, "INTERNAL"),
        ("e401-g", 401, "UNAUTHENTICATED"),
    ] {
        let response = post(&mock, GENERATE, key, &gemini_request())?;
        assert_eq!(response.status, status, "{key}");
        let json = response.json()?;
        assert_eq!(json["error"]["code"], status);
        assert_eq!(json["error"]["status"], name);
        assert!(json["error"]["message"].is_string());
    }
    let response = request(
        mock.addr(),
        "POST",
        GENERATE,
        &[("x-goog-api-key", "ok-g")],
        b"{not json",
    )?;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()?["error"]["status"], "INVALID_ARGUMENT");
    let response = request(mock.addr(), "GET", GENERATE, &[], b"")?;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()?["error"]["status"], "NOT_FOUND");
    Ok(())
}

#[test]
fn stream_failures_cut_at_the_first_event() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = serde_json::to_vec(&gemini_request())?;

    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    client.send("POST", STREAM, &[("x-goog-api-key", "streamdie-g")], &body)?;
    assert_eq!(client.read_head()?.0, 200);
    let first = client.read_chunk()?.ok_or("no first event")?;
    assert!(String::from_utf8_lossy(&first).contains(r#""text":"one""#));
    let error = client.read_chunk().err().ok_or("the stream went on")?;
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");

    // No role-only event: roledie resets right after the head.
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    client.send("POST", STREAM, &[("x-goog-api-key", "roledie-g")], &body)?;
    assert_eq!(client.read_head()?.0, 200);
    let error = client.read_chunk().err().ok_or("an event was sent")?;
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    Ok(())
}

#[test]
fn v1beta_models_lists_gemini_models_and_v1_models_stays_openai() -> TestResult {
    let mock = MockUpstream::start()?;
    let json = request(
        mock.addr(),
        "GET",
        "/v1/v1beta/models",
        &[("x-goog-api-key", "ok-g")],
        b"",
    )?
    .json()?;
    assert_eq!(
        json["models"][0],
        json!({
            "name": "models/mock-gemini",
            "displayName": "Mock Gemini",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
        })
    );
    assert_eq!(json["models"][1]["name"], "models/mock-gemini-pro");
    let json = request(mock.addr(), "GET", "/v1/models", &[], b"")?.json()?;
    assert_eq!(json["object"], "list");
    assert_eq!(json["data"][0]["id"], "mock-gpt");
    Ok(())
}
