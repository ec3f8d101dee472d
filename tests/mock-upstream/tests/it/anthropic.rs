//! The Anthropic Messages shape: answers, the stream's event sequence and errors.

use mock_upstream::MockUpstream;
use serde_json::{Value, json};

use crate::client::{TestResult, request, sse_data, sse_events};

fn post_messages(
    mock: &MockUpstream,
    key: &str,
    body: &Value,
) -> std::io::Result<crate::client::Response> {
    request(
        mock.addr(),
        "POST",
        "/v1/messages",
        &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
        &serde_json::to_vec(body)?,
    )
}

fn messages_request(stream: bool) -> Value {
    json!({
        "model": "claude-mock",
        "max_tokens": 100,
        "stream": stream,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
            {"role": "user", "content": "abc"},
        ],
    })
}

#[test]
fn messages_answer_counts_system_and_message_text() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post_messages(&mock, "ok-1", &messages_request(false))?;
    assert_eq!(response.status, 200);
    let json = response.json()?;
    assert_eq!(json["id"], "msg_mock");
    assert_eq!(json["type"], "message");
    assert_eq!(json["role"], "assistant");
    assert_eq!(json["model"], "claude-mock");
    assert_eq!(
        json["content"],
        json!([{"type": "text", "text": "one two three four five"}])
    );
    assert_eq!(json["stop_reason"], "end_turn");
    // "be brief" 8 + "hello" 5 + "hi" 2 + "abc" 3.
    assert_eq!(
        json["usage"],
        json!({"input_tokens": 18, "output_tokens": 5})
    );
    Ok(())
}

#[test]
fn messages_stream_is_the_anthropic_event_sequence() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post_messages(&mock, "ok-1", &messages_request(true))?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        sse_events(&response.body),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(response.chunks.len(), 10, "one event per chunk");
    let data: Vec<Value> = sse_data(&response.body)
        .iter()
        .map(|d| serde_json::from_str(d))
        .collect::<Result<_, _>>()?;
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 18);
    let text: String = data
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "one two three four five");
    assert_eq!(data[8]["delta"]["stop_reason"], "end_turn");
    assert_eq!(data[8]["usage"]["output_tokens"], 5);
    assert_eq!(data[9], json!({"type": "message_stop"}));
    Ok(())
}

#[test]
fn messages_with_tools_use_the_first_tool() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut body = messages_request(false);
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "tools".into(),
            json!([{"name": "get_weather", "input_schema": {"type": "object"}}]),
        );
    }
    let json = post_messages(&mock, "ok-1", &body)?.json()?;
    assert_eq!(json["stop_reason"], "tool_use");
    assert_eq!(json["content"][0]["type"], "tool_use");
    assert_eq!(json["content"][0]["name"], "get_weather");
    assert_eq!(json["content"][0]["input"], json!({"arg": "value"}));
    Ok(())
}

#[test]
fn count_tokens_uses_the_same_count() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = request(
        mock.addr(),
        "POST",
        "/v1/messages/count_tokens?beta=true",
        &[("x-api-key", "ok-1")],
        &serde_json::to_vec(&messages_request(false))?,
    )?;
    assert_eq!(response.json()?, json!({"input_tokens": 18}));
    Ok(())
}

#[test]
fn messages_errors_use_the_anthropic_shape() -> TestResult {
    let mock = MockUpstream::start()?;
    let cases = [
        ("r429-a", 429, "rate_limit_error"),
        ("e500-a", 500, "api_error"),
        ("e401-a", 401, "authentication_error"),
    ];
    for (key, status, kind) in cases {
        let response = post_messages(&mock, key, &messages_request(false))?;
        assert_eq!(response.status, status, "{key}");
        let json = response.json()?;
        assert_eq!(json["type"], "error", "{key}");
        assert_eq!(json["error"]["type"], kind, "{key}");
        assert!(json["error"]["message"].is_string());
    }
    let limited = post_messages(&mock, "r429-a", &messages_request(false))?;
    assert_eq!(limited.header("retry-after"), Some("2"));

    let response = request(
        mock.addr(),
        "POST",
        "/v1/messages",
        &[("x-api-key", "ok-1")],
        b"[1,",
    )?;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()?["error"]["type"], "invalid_request_error");
    Ok(())
}
