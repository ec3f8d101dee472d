//! `nousage-` keys: normal answers in every format, without any usage figures.

use mock_upstream::MockUpstream;
use serde_json::{Value, json};

use crate::client::{TestResult, post, request, sse_data};

fn has_usage(text: &str) -> bool {
    text.contains("usage") || text.contains("Usage")
}

#[test]
fn openai_answers_and_streams_carry_no_usage() -> TestResult {
    let mock = MockUpstream::start()?;
    let messages = json!([{"role": "user", "content": "hello"}]);
    let response = post(
        mock.addr(),
        "/v1/chat/completions",
        "nousage-1",
        &json!({"model": "m", "messages": messages}),
    )?;
    assert_eq!(response.status, 200);
    let json = response.json()?;
    assert!(json.get("usage").is_none());
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "one two three four five"
    );

    let response = post(
        mock.addr(),
        "/v1/chat/completions",
        "nousage-1",
        &json!({
            "model": "m",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": messages,
        }),
    )?;
    let data = sse_data(&response.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        data.len(),
        8,
        "role, five words, stop, [DONE]: no usage chunk"
    );
    assert!(!has_usage(&String::from_utf8_lossy(&response.body)));
    assert_eq!(mock.calls("nousage-1"), 2);
    Ok(())
}

#[test]
fn anthropic_messages_carry_no_usage() -> TestResult {
    let mock = MockUpstream::start()?;
    let body =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let response = post(mock.addr(), "/v1/messages", "nousage-a", &body)?;
    assert_eq!(response.status, 200);
    let json = response.json()?;
    assert!(json.get("usage").is_none());
    assert_eq!(json["stop_reason"], "end_turn");

    let mut body = body;
    body["stream"] = json!(true);
    let response = post(mock.addr(), "/v1/messages", "nousage-a", &body)?;
    assert_eq!(response.status, 200);
    let data = sse_data(&response.body);
    assert!(data.first().is_some_and(|d| d.contains("message_start")));
    assert!(data.iter().any(|d| d.contains("message_delta")));
    assert!(!has_usage(&String::from_utf8_lossy(&response.body)));
    Ok(())
}

#[test]
fn gemini_answers_carry_no_usage_metadata() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = serde_json::to_vec(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))?;
    for path in [
        "/v1beta/models/g:generateContent",
        "/v1beta/models/g:streamGenerateContent?alt=sse",
    ] {
        let response = request(
            mock.addr(),
            "POST",
            path,
            &[("x-goog-api-key", "nousage-g")],
            &body,
        )?;
        assert_eq!(response.status, 200, "{path}");
        let text = String::from_utf8_lossy(&response.body);
        assert!(text.contains("STOP"), "{path}");
        assert!(!has_usage(&text), "{path}");
    }
    // An ok- key on the same mock still gets usage.
    let response = request(
        mock.addr(),
        "POST",
        "/v1beta/models/g:generateContent",
        &[("x-goog-api-key", "ok-g")],
        &body,
    )?;
    let json: Value = response.json()?;
    assert_eq!(json["usageMetadata"]["promptTokenCount"], 2);
    Ok(())
}
