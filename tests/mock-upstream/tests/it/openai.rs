//! OpenAI-shaped endpoints: exact usage, SSE sequences, embeddings, models, routing.

use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use serde_json::{Value, json};

use crate::client::{Client, TIMEOUT, TestResult, post, request, sse_data};

fn chat_request(stream: bool, include_usage: Option<bool>) -> Value {
    let mut body = json!({
        "model": "mock-gpt",
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}],
    });
    if let (Some(include), Some(object)) = (include_usage, body.as_object_mut()) {
        object.insert("stream_options".into(), json!({"include_usage": include}));
    }
    body
}

#[test]
fn chat_usage_counts_the_bytes_of_every_message_content() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = json!({
        "model": "some-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
            {"role": "user", "content": [
                {"type": "text", "text": "abc"},
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
            ]},
        ],
    });
    let response = post(mock.addr(), "/v1/chat/completions", "ok-1", &body)?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json()?;
    assert_eq!(json["id"], "chatcmpl-mock");
    assert_eq!(json["object"], "chat.completion");
    assert!(json["created"].is_u64());
    assert_eq!(json["model"], "some-model");
    assert_eq!(json["choices"][0]["index"], 0);
    assert_eq!(json["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "one two three four five"
    );
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        json["usage"],
        json!({"prompt_tokens": 16, "completion_tokens": 5, "total_tokens": 21})
    );
    Ok(())
}

#[test]
fn chat_with_tools_calls_the_first_tool() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = json!({
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {}}},
            {"type": "function", "function": {"name": "other", "parameters": {}}},
        ],
    });
    let json = post(mock.addr(), "/v1/chat/completions", "ok-1", &body)?.json()?;
    let choice = &json["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .ok_or("no tool_calls")?;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().ok_or("args")?)?;
    assert_eq!(arguments, json!({"arg": "value"}));
    assert_eq!(json["usage"]["prompt_tokens"], 8);
    Ok(())
}

/// Checks the chunk-per-event layout and returns the parsed events before `[DONE]`.
fn stream_events(
    response: &crate::client::Response,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    for chunk in &response.chunks {
        assert_eq!(sse_data(chunk).len(), 1, "one SSE event per chunk");
        assert!(chunk.ends_with(b"\n\n"));
    }
    let data = sse_data(&response.body);
    let (last, events) = data.split_last().ok_or("empty stream")?;
    assert_eq!(last, "[DONE]");
    Ok(events
        .iter()
        .map(|event| serde_json::from_str(event))
        .collect::<Result<_, _>>()?)
}

fn streamed_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn chat_stream_without_usage_is_role_five_words_stop_done() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(
        mock.addr(),
        "/v1/chat/completions",
        "ok-1",
        &chat_request(true, None),
    )?;
    assert_eq!(response.chunks.len(), 8);
    let events = stream_events(&response)?;
    assert_eq!(events.len(), 7);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let words: Vec<&str> = events[1..6]
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(words, ["one", " two", " three", " four", " five"]);
    assert_eq!(streamed_text(&events), "one two three four five");
    assert_eq!(events[6]["choices"][0]["finish_reason"], "stop");
    for event in &events {
        assert_eq!(event["object"], "chat.completion.chunk");
        assert_eq!(event["model"], "mock-gpt");
        assert!(event.get("usage").is_none());
    }
    Ok(())
}

#[test]
fn chat_stream_with_include_usage_ends_with_a_usage_chunk() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(
        mock.addr(),
        "/v1/chat/completions",
        "ok-1",
        &chat_request(true, Some(true)),
    )?;
    assert_eq!(response.chunks.len(), 9);
    let events = stream_events(&response)?;
    assert_eq!(events[6]["choices"][0]["finish_reason"], "stop");
    let usage = &events[7];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10})
    );
    // include_usage false is the same as absent.
    let response = post(
        mock.addr(),
        "/v1/chat/completions",
        "ok-1",
        &chat_request(true, Some(false)),
    )?;
    assert_eq!(response.chunks.len(), 8);
    Ok(())
}

#[test]
fn chat_stream_with_tools_streams_the_arguments() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = json!({
        "model": "mock-gpt",
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
    });
    let response = post(mock.addr(), "/v1/chat/completions", "ok-1", &body)?;
    let events = stream_events(&response)?;
    let first = &events[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["function"]["name"], "lookup");
    let arguments: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"arg":"value"}"#);
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    Ok(())
}

#[test]
fn chunk_delay_header_spaces_the_chunks_out() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    let body = serde_json::to_vec(&chat_request(true, None))?;
    client.send(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", "Bearer ok-1"),
            ("x-mock-chunk-delay-ms", "40"),
        ],
        &body,
    )?;
    let (status, _) = client.read_head()?;
    assert_eq!(status, 200);
    let mut arrivals = Vec::new();
    while let Some(chunk) = client.read_chunk()? {
        arrivals.push((Instant::now(), chunk));
    }
    assert_eq!(arrivals.len(), 8);
    // Seven pauses of 40 ms between eight chunks: each gap is at least the delay.
    for pair in arrivals.windows(2) {
        if let [(earlier, _), (later, _)] = pair {
            assert!(later.duration_since(*earlier) >= Duration::from_millis(30));
        }
    }
    Ok(())
}

#[test]
fn legacy_completions_answer_text_and_count_prompt_bytes() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = json!({"model": "mock-gpt", "prompt": "hello world"});
    let json = post(mock.addr(), "/v1/completions", "ok-1", &body)?.json()?;
    assert_eq!(json["object"], "text_completion");
    assert_eq!(json["choices"][0]["text"], "one two three four five");
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        json["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16})
    );
    Ok(())
}

#[test]
fn embeddings_return_one_vector_per_input() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = json!({"model": "mock-embed", "input": ["ab", "cde"]});
    let json = post(mock.addr(), "/v1/embeddings", "ok-1", &body)?.json()?;
    assert_eq!(json["object"], "list");
    assert_eq!(json["model"], "mock-embed");
    let data = json["data"].as_array().ok_or("no data")?;
    assert_eq!(data.len(), 2);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["index"], index);
        assert_eq!(item["embedding"].as_array().map(Vec::len), Some(8));
    }
    assert_eq!(data[1]["embedding"][0], 1.125);
    assert_eq!(
        json["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );

    let single = json!({"input": "four"});
    let json = post(mock.addr(), "/v1/embeddings", "ok-1", &single)?.json()?;
    assert_eq!(json["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["usage"]["prompt_tokens"], 4);
    Ok(())
}

fn base64_decode(text: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).ok_or("bad base64")?;
        bits = (bits << 6) | u32::try_from(value)?;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff)?);
        }
    }
    Ok(out)
}

#[test]
fn embeddings_in_base64_are_little_endian_f32() -> TestResult {
    let mock = MockUpstream::start()?;
    let floats = json!({"input": ["x", "y"]});
    let floats = post(mock.addr(), "/v1/embeddings", "ok-1", &floats)?.json()?;
    let encoded = json!({"input": ["x", "y"], "encoding_format": "base64"});
    let encoded = post(mock.addr(), "/v1/embeddings", "ok-1", &encoded)?.json()?;
    for index in 0..2 {
        let text = encoded["data"][index]["embedding"]
            .as_str()
            .ok_or("not a string")?;
        let bytes = base64_decode(text)?;
        assert_eq!(bytes.len(), 32);
        let decoded: Vec<f64> = bytes
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect();
        let expected: Vec<f64> = floats["data"][index]["embedding"]
            .as_array()
            .ok_or("no floats")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(decoded, expected);
    }
    Ok(())
}

#[test]
fn models_lists_the_mock_models() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = request(mock.addr(), "GET", "/v1/models", &[], b"")?;
    assert_eq!(response.status, 200);
    let json = response.json()?;
    assert_eq!(json["object"], "list");
    let ids: Vec<&str> = json["data"]
        .as_array()
        .ok_or("no data")?
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["mock-gpt", "mock-gpt-mini"]);
    assert_eq!(json["data"][0]["owned_by"], "mock");
    Ok(())
}

#[test]
fn invalid_json_is_a_400_in_openai_shape() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = request(
        mock.addr(),
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer ok-1")],
        b"{not json",
    )?;
    assert_eq!(response.status, 400);
    let json = response.json()?;
    assert_eq!(json["error"]["type"], "invalid_request_error");
    assert!(json["error"]["message"].is_string());
    Ok(())
}

#[test]
fn unknown_routes_are_404() -> TestResult {
    let mock = MockUpstream::start()?;
    for (method, path) in [
        ("POST", "/v1/assistants"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/models"),
    ] {
        let response = request(mock.addr(), method, path, &[], b"")?;
        assert_eq!(response.status, 404, "{method} {path}");
        assert!(response.json()?["error"]["message"].is_string());
    }
    Ok(())
}

#[test]
fn any_prefix_and_query_string_reach_the_endpoint_on_one_connection() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = serde_json::to_vec(&chat_request(false, None))?;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    for path in [
        "/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/proxy/v1/chat/completions?api-version=2024-10-21",
    ] {
        client.send("POST", path, &[("api-key", "ok-azure")], &body)?;
        let response = client.read_response()?;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.json()?["usage"]["prompt_tokens"], 5);
    }
    assert_eq!(mock.calls("ok-azure"), 3);
    Ok(())
}
