//! Golden tests of the format translation (OpenAI ⇄ Anthropic, OpenAI ⇄
//! Gemini, OpenAI Responses ⇄ chat): requests, responses and streams, compared as JSON values with the
//! expected fixtures under `tests/golden/`, which were written from the
//! providers' documented formats. Streams are fed as SSE bytes cut at
//! awkward boundaries through the gateway's own `SseSplitter`.

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use std::path::PathBuf;
use switchyard::providers::anthropic::{
    self, AnthropicRequestOptions, AnthropicToOpenAiStream, OpenAiToAnthropicStream,
};
use switchyard::providers::gemini::{self, GeminiToOpenAiStream};
use switchyard::providers::openai::Usage;
use switchyard::providers::responses::{
    self, ChatToResponsesStream, ResponseFrame, ResponsesPassthroughStream,
};
use switchyard::providers::sse::{self, SseSplitter};
use switchyard::providers::translate::{ChainedStream, StreamTranslator, TranslateError};

const CREATED: i64 = 1_700_000_000;

fn golden(name: &str) -> Result<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// Compares two values, showing both in full when they differ.
fn assert_json_eq(actual: &Value, expected: &Value, what: &str) -> Result<()> {
    if actual != expected {
        bail!(
            "{what} differs\n--- actual\n{}\n--- expected\n{}",
            serde_json::to_string_pretty(actual)?,
            serde_json::to_string_pretty(expected)?
        );
    }
    Ok(())
}

/// A fixture of events (`[{event?, data}]`) as an SSE byte stream.
fn render_sse(events: &Value, line_end: &str) -> Result<Vec<u8>> {
    let mut out = String::new();
    for event in events.as_array().context("events must be a list")? {
        if let Some(name) = event.get("event").and_then(Value::as_str) {
            out.push_str(&format!("event: {name}{line_end}"));
        }
        let data = match event.get("data") {
            Some(Value::String(raw)) => raw.clone(),
            Some(data) => data.to_string(),
            None => bail!("an event without data"),
        };
        out.push_str(&format!("data: {data}{line_end}{line_end}"));
    }
    Ok(out.into_bytes())
}

/// SSE output bytes back as `[{event?, data}]` (data parsed unless `[DONE]`).
fn parse_sse(bytes: &[u8]) -> Result<Value> {
    let mut splitter = SseSplitter::default();
    splitter.push(bytes);
    let mut events = Vec::new();
    while let Some(event) = splitter.next_event() {
        let mut entry = serde_json::Map::new();
        if let Some(name) = sse::event_name(&event) {
            entry.insert("event".to_owned(), json!(name));
        }
        let data = sse::event_data(&event).context("an output event without data")?;
        let data = if &*data == b"[DONE]" {
            json!("[DONE]")
        } else {
            serde_json::from_slice(&data)?
        };
        entry.insert("data".to_owned(), data);
        events.push(Value::Object(entry));
    }
    ensure!(
        splitter.take_rest().is_empty(),
        "output ends with an unterminated event"
    );
    Ok(Value::Array(events))
}

/// Feeds `input` to the translator in pieces of `piece` bytes, event by
/// event as the splitter completes them; returns all output bytes.
fn run_stream(
    translator: &mut dyn StreamTranslator,
    input: &[u8],
    piece: usize,
) -> Result<Vec<u8>> {
    let mut splitter = SseSplitter::default();
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        splitter.push(chunk);
        while let Some(event) = splitter.next_event() {
            let Some(data) = sse::event_data(&event) else {
                continue;
            };
            for bytes in translator.on_event(sse::event_name(&event), &data)? {
                out.extend_from_slice(&bytes);
            }
        }
    }
    ensure!(splitter.take_rest().is_empty(), "input left unsplit");
    for bytes in translator.finish() {
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Runs a stream fixture through fresh translators at several awkward cuts
/// (and with CRLF line ends) and checks every run against the expectation.
fn check_stream<T: StreamTranslator>(
    make: impl Fn() -> T,
    input: &str,
    expected: &str,
) -> Result<T> {
    let events = golden(input)?;
    let expected = golden(expected)?;
    let mut last = None;
    for line_end in ["\n", "\r\n"] {
        let bytes = render_sse(&events, line_end)?;
        for piece in [1, 2, 3, 7, 13, 64, 251, bytes.len()] {
            let mut translator = make();
            let output = run_stream(&mut translator, &bytes, piece)?;
            assert_json_eq(
                &parse_sse(&output)?,
                &expected,
                &format!("{input} cut every {piece} bytes"),
            )?;
            last = Some(translator);
        }
    }
    last.ok_or_else(|| anyhow!("no run"))
}

// --- OpenAI -> Anthropic ---------------------------------------------------

#[test]
fn openai_request_to_anthropic() -> Result<()> {
    let input = golden("openai_to_anthropic/request.openai.json")?;
    let actual =
        anthropic::openai_to_anthropic_request(&input, &AnthropicRequestOptions::default())?;
    assert_json_eq(
        &actual,
        &golden("openai_to_anthropic/request.anthropic.json")?,
        "request",
    )
}

#[test]
fn openai_request_without_max_tokens_gets_the_configured_default() -> Result<()> {
    let input = json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }] });
    let actual = anthropic::openai_to_anthropic_request(
        &input,
        &AnthropicRequestOptions {
            default_max_tokens: 777,
        },
    )?;
    assert_json_eq(
        &actual,
        &json!({ "model": "m", "max_tokens": 777, "messages": [{ "role": "user", "content": "hi" }] }),
        "request",
    )
}

#[test]
fn untranslatable_openai_requests_are_typed_400s() -> Result<()> {
    let options = AnthropicRequestOptions::default();
    let malformed = json!({ "model": "m", "messages": [
        { "role": "user", "content": "hi" },
        { "role": "assistant", "tool_calls": [{ "id": "c", "type": "function",
          "function": { "name": "f", "arguments": "{\"city\": " } }] },
    ] });
    let error = anthropic::openai_to_anthropic_request(&malformed, &options)
        .err()
        .context("malformed arguments must fail")?;
    ensure!(matches!(error, TranslateError::InvalidRequest { .. }));
    ensure!(error.status_code() == 400);
    ensure!(error.param() == Some("messages[1].tool_calls[0].function.arguments"));
    ensure!(error.anthropic_body().pointer("/error/type") == Some(&json!("invalid_request_error")));

    let not_object = json!({ "model": "m", "messages": [{ "role": "assistant", "tool_calls": [
        { "id": "c", "type": "function", "function": { "name": "f", "arguments": "[1]" } }] }] });
    ensure!(anthropic::openai_to_anthropic_request(&not_object, &options).is_err());

    let many = json!({ "model": "m", "n": 2, "messages": [{ "role": "user", "content": "hi" }] });
    let error = anthropic::openai_to_anthropic_request(&many, &options)
        .err()
        .context("n > 1 must fail")?;
    ensure!(matches!(error, TranslateError::Unsupported { .. }) && error.status_code() == 400);

    let audio = json!({ "model": "m", "messages": [{ "role": "user", "content": [
        { "type": "input_audio", "input_audio": { "data": "AAAA", "format": "wav" } }] }] });
    ensure!(anthropic::openai_to_anthropic_request(&audio, &options).is_err());
    ensure!(anthropic::openai_to_anthropic_request(&json!([1]), &options).is_err());
    Ok(())
}

#[test]
fn openai_response_to_anthropic() -> Result<()> {
    let input = golden("openai_to_anthropic/response.openai.json")?;
    assert_json_eq(
        &anthropic::openai_to_anthropic_response(&input)?,
        &golden("openai_to_anthropic/response.anthropic.json")?,
        "response",
    )
}

#[test]
fn openai_stream_to_anthropic() -> Result<()> {
    let translator = check_stream(
        || OpenAiToAnthropicStream::new(None),
        "openai_to_anthropic/stream.openai.json",
        "openai_to_anthropic/stream.anthropic.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(translator.usage() == Some(Usage::tokens(50, 20)));
    Ok(())
}

#[test]
fn openai_stream_without_done_is_closed_by_finish() -> Result<()> {
    let mut stream = OpenAiToAnthropicStream::new(Some("my-model".to_owned()));
    let mut out = Vec::new();
    for data in [
        r#"{"id":"x","model":"up","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
        r#"{"id":"x","model":"up","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
    ] {
        out.extend(stream.on_event(None, data.as_bytes())?);
    }
    ensure!(!stream.is_complete());
    out.extend(stream.finish());
    ensure!(stream.is_complete());
    let events = parse_sse(&out.concat())?;
    let names: Vec<&str> = events
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|event| event.get("event").and_then(Value::as_str))
        .collect();
    ensure!(
        names
            == [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ],
        "{names:?}"
    );
    ensure!(events.pointer("/0/data/message/model") == Some(&json!("my-model")));
    ensure!(events.pointer("/4/data/delta/stop_reason") == Some(&json!("max_tokens")));
    Ok(())
}

#[test]
fn openai_stream_error_becomes_an_anthropic_error_event() -> Result<()> {
    let mut stream = OpenAiToAnthropicStream::new(None);
    let out = stream.on_event(
        None,
        br#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#,
    )?;
    let events = parse_sse(&out.concat())?;
    assert_json_eq(
        &events,
        &json!([{ "event": "error", "data": { "type": "error", "error": { "type": "api_error", "message": "boom" } } }]),
        "error event",
    )?;
    ensure!(!stream.is_complete());
    ensure!(stream.finish().is_empty());
    Ok(())
}

// --- Anthropic -> OpenAI ---------------------------------------------------

#[test]
fn claude_code_request_to_openai() -> Result<()> {
    let input = golden("anthropic_to_openai/claude_code.anthropic.json")?;
    assert_json_eq(
        &anthropic::anthropic_to_openai_request(&input)?,
        &golden("anthropic_to_openai/claude_code.openai.json")?,
        "request",
    )
}

#[test]
fn anthropic_response_to_openai() -> Result<()> {
    let input = golden("anthropic_to_openai/response.anthropic.json")?;
    assert_json_eq(
        &anthropic::anthropic_to_openai_response(&input, CREATED)?,
        &golden("anthropic_to_openai/response.openai.json")?,
        "response",
    )?;
    ensure!(
        anthropic::usage_of(&input)
            == Some(Usage {
                cache_read_tokens: 300,
                cache_write_tokens: 20,
                ..Usage::tokens(420, 42)
            })
    );
    Ok(())
}

#[test]
fn stop_reasons_map_both_ways() -> Result<()> {
    for (anthropic_reason, openai_reason) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
    ] {
        ensure!(anthropic::finish_reason_of(anthropic_reason) == openai_reason);
    }
    for (openai_reason, anthropic_reason) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
    ] {
        ensure!(anthropic::stop_reason_of(openai_reason) == anthropic_reason);
    }
    let message = json!({ "id": "msg_1", "type": "message", "role": "assistant", "model": "c",
        "content": [{ "type": "text", "text": "Hello" }], "stop_reason": "max_tokens",
        "stop_sequence": null, "usage": { "input_tokens": 5, "output_tokens": 7 } });
    let completion = anthropic::anthropic_to_openai_response(&message, CREATED)?;
    ensure!(completion.pointer("/choices/0/finish_reason") == Some(&json!("length")));
    ensure!(completion.pointer("/choices/0/message/content") == Some(&json!("Hello")));
    ensure!(
        completion
            .pointer("/choices/0/message/tool_calls")
            .is_none()
    );
    ensure!(completion.pointer("/usage/total_tokens") == Some(&json!(12)));
    Ok(())
}

#[test]
fn anthropic_stream_to_openai() -> Result<()> {
    let translator = check_stream(
        || AnthropicToOpenAiStream::new(CREATED, true),
        "anthropic_to_openai/stream.anthropic.json",
        "anthropic_to_openai/stream.openai.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(translator.usage() == Some(Usage::tokens(472, 89)));
    Ok(())
}

#[test]
fn anthropic_stream_hides_usage_chunk_unless_asked() -> Result<()> {
    let bytes = render_sse(&golden("anthropic_to_openai/stream.anthropic.json")?, "\n")?;
    let mut translator = AnthropicToOpenAiStream::new(CREATED, false);
    let events = parse_sse(&run_stream(&mut translator, &bytes, 5)?)?;
    let events = events.as_array().context("list")?;
    ensure!(
        events
            .iter()
            .all(|event| event.pointer("/data/usage").is_none())
    );
    ensure!(events.last() == Some(&json!({ "data": "[DONE]" })));
    ensure!(translator.usage().is_some(), "usage is still metered");
    Ok(())
}

#[test]
fn anthropic_stream_error_becomes_an_openai_error_chunk() -> Result<()> {
    let translator = check_stream(
        || AnthropicToOpenAiStream::new(CREATED, true),
        "anthropic_to_openai/stream_error.anthropic.json",
        "anthropic_to_openai/stream_error.openai.json",
    )?;
    ensure!(!translator.is_complete());
    ensure!(translator.failed());
    ensure!(translator.usage() == Some(Usage::tokens(12, 1)));
    Ok(())
}

#[test]
fn broken_upstream_events_are_upstream_errors() -> Result<()> {
    let mut stream = AnthropicToOpenAiStream::new(CREATED, false);
    let error = stream
        .on_event(Some("message_start"), b"{not json")
        .err()
        .context("must fail")?;
    ensure!(error.status_code() == 502);
    let mut stream = OpenAiToAnthropicStream::new(None);
    ensure!(stream.on_event(None, b"[1,2]").is_err());
    Ok(())
}

#[test]
fn error_bodies_convert_between_shapes() -> Result<()> {
    let anthropic_error =
        json!({ "type": "error", "error": { "type": "rate_limit_error", "message": "slow down" } });
    assert_json_eq(
        &anthropic::anthropic_error_to_openai(&anthropic_error),
        &json!({ "error": { "message": "slow down", "type": "rate_limit_error", "param": null, "code": null } }),
        "anthropic error",
    )?;
    let openai_error = json!({ "error": { "message": "bad key", "type": "invalid_request_error", "param": null, "code": "invalid_api_key" } });
    assert_json_eq(
        &anthropic::openai_error_to_anthropic(&openai_error, 401),
        &json!({ "type": "error", "error": { "type": "authentication_error", "message": "bad key" } }),
        "openai error",
    )?;
    let gemini_error = json!({ "error": { "code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT" } });
    assert_json_eq(
        &gemini::gemini_error_to_openai(&gemini_error),
        &json!({ "error": { "message": "API key not valid", "type": "upstream_error", "param": null, "code": "INVALID_ARGUMENT" } }),
        "gemini error",
    )
}

// --- Round trips -----------------------------------------------------------

#[test]
fn openai_request_round_trips_through_anthropic() -> Result<()> {
    let original = golden("roundtrip/openai_request.json")?;
    let there =
        anthropic::openai_to_anthropic_request(&original, &AnthropicRequestOptions::default())?;
    let back = anthropic::anthropic_to_openai_request(&there)?;
    assert_json_eq(&back, &original, "round trip")
}

#[test]
fn anthropic_request_round_trips_through_openai() -> Result<()> {
    let original = golden("roundtrip/anthropic_request.json")?;
    let there = anthropic::anthropic_to_openai_request(&original)?;
    let back = anthropic::openai_to_anthropic_request(&there, &AnthropicRequestOptions::default())?;
    assert_json_eq(&back, &original, "round trip")
}

#[test]
fn responses_round_trip() -> Result<()> {
    let original = golden("openai_to_anthropic/response.anthropic.json")?;
    let there = anthropic::anthropic_to_openai_response(&original, CREATED)?;
    let back = anthropic::openai_to_anthropic_response(&there)?;
    assert_json_eq(&back, &original, "anthropic response round trip")
}

/// An OpenAI stream translated to Anthropic events and back says the same
/// thing: same text, same tool calls with the same arguments, same finish.
#[test]
fn streams_round_trip() -> Result<()> {
    let input = render_sse(&golden("openai_to_anthropic/stream.openai.json")?, "\n")?;
    let mut there = OpenAiToAnthropicStream::new(None);
    let anthropic_events = run_stream(&mut there, &input, 9)?;
    let mut back = AnthropicToOpenAiStream::new(CREATED, true);
    let chunks = parse_sse(&run_stream(&mut back, &anthropic_events, 4)?)?;
    let original = parse_sse(&input)?;
    ensure!(summarize(&chunks)? == summarize(&original)?);
    ensure!(back.usage() == there.usage());
    Ok(())
}

/// Text, tool calls (id, name, joined arguments) and finish reasons of an
/// OpenAI chunk sequence.
fn summarize(chunks: &Value) -> Result<Value> {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = Vec::new();
    for chunk in chunks.as_array().context("list")? {
        let Some(choice) = chunk.pointer("/data/choices/0") else {
            continue;
        };
        if let Some(piece) = choice.pointer("/delta/content").and_then(Value::as_str) {
            text.push_str(piece);
        }
        for call in choice
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).context("index")? as usize;
            if index == calls.len() {
                calls.push(Default::default());
            }
            let entry = calls.get_mut(index).context("tool index out of order")?;
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                entry.0 = id.to_owned();
            }
            if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                entry.1 = name.to_owned();
            }
            if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                entry.2.push_str(arguments);
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            finish.push(reason.to_owned());
        }
    }
    Ok(json!({ "text": text, "calls": calls, "finish": finish }))
}

// --- Gemini ----------------------------------------------------------------

#[test]
fn openai_request_to_gemini() -> Result<()> {
    let input = golden("openai_to_gemini/request.openai.json")?;
    assert_json_eq(
        &gemini::openai_to_gemini_request(&input)?,
        &golden("openai_to_gemini/request.gemini.json")?,
        "request",
    )?;
    ensure!(
        gemini::api_path("gemini-2.5-flash", true)
            == "models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    ensure!(
        gemini::api_path("models/gemini-2.5-flash", false)
            == "models/gemini-2.5-flash:generateContent"
    );
    Ok(())
}

#[test]
fn gemini_tool_choice_and_errors() -> Result<()> {
    let tools = json!([{ "type": "function", "function": { "name": "f",
        "parameters": { "type": "object", "properties": { "a": { "type": "string" } } } } }]);
    let named = json!({ "model": "g", "messages": [{ "role": "user", "content": "hi" }],
        "tools": tools, "tool_choice": { "type": "function", "function": { "name": "f" } } });
    let request = gemini::openai_to_gemini_request(&named)?;
    assert_json_eq(
        request.get("toolConfig").context("toolConfig")?,
        &json!({ "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": ["f"] } }),
        "named tool choice",
    )?;
    let orphan = json!({ "model": "g", "messages": [
        { "role": "user", "content": "hi" },
        { "role": "tool", "tool_call_id": "nowhere", "content": "x" }] });
    let error = gemini::openai_to_gemini_request(&orphan)
        .err()
        .context("an unknown tool_call_id must fail")?;
    ensure!(error.status_code() == 400 && error.param() == Some("messages[1].tool_call_id"));
    let malformed = json!({ "model": "g", "messages": [{ "role": "assistant", "tool_calls": [
        { "id": "c", "type": "function", "function": { "name": "f", "arguments": "{" } }] }] });
    ensure!(gemini::openai_to_gemini_request(&malformed).is_err());
    Ok(())
}

#[test]
fn gemini_response_to_openai() -> Result<()> {
    let input = golden("gemini_to_openai/response.gemini.json")?;
    assert_json_eq(
        &gemini::gemini_to_openai_response(&input, "gemini-2.5-flash", CREATED)?,
        &golden("gemini_to_openai/response.openai.json")?,
        "response",
    )?;
    ensure!(
        gemini::usage_of(&input)
            == Some(Usage {
                reasoning_tokens: 30,
                ..Usage::tokens(80, 45)
            })
    );
    Ok(())
}

#[test]
fn gemini_finish_reasons_and_blocked_prompts() -> Result<()> {
    for (reason, expected) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("OTHER", "stop"),
    ] {
        ensure!(gemini::finish_reason_of(reason) == expected, "{reason}");
    }
    let blocked = json!({ "promptFeedback": { "blockReason": "SAFETY" },
        "usageMetadata": { "promptTokenCount": 4, "totalTokenCount": 4 } });
    let completion = gemini::gemini_to_openai_response(&blocked, "g", CREATED)?;
    ensure!(completion.pointer("/choices/0/finish_reason") == Some(&json!("content_filter")));
    ensure!(completion.pointer("/choices/0/message/content") == Some(&Value::Null));
    ensure!(gemini::gemini_to_openai_response(&json!({}), "g", CREATED).is_err());
    Ok(())
}

#[test]
fn gemini_stream_to_openai() -> Result<()> {
    let translator = check_stream(
        || GeminiToOpenAiStream::new("gemini-2.5-flash", CREATED, true),
        "gemini_to_openai/stream.gemini.json",
        "gemini_to_openai/stream.openai.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(translator.usage() == Some(Usage::tokens(10, 12)));
    Ok(())
}

#[test]
fn gemini_stream_cut_before_finish_is_incomplete() -> Result<()> {
    let mut stream = GeminiToOpenAiStream::new("g", CREATED, false);
    let out = stream.on_event(
        None,
        br#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}"#,
    )?;
    ensure!(out.len() == 2, "role chunk and content chunk");
    ensure!(stream.finish().is_empty());
    ensure!(!stream.is_complete());
    Ok(())
}

// --- Gemini front door: Gemini -> OpenAI requests, OpenAI -> Gemini answers ---

#[test]
fn gemini_request_to_openai() -> Result<()> {
    let input = golden("gemini_ingress/request.gemini.json")?;
    let translated = gemini::gemini_to_openai_request(&input, "gemini-2.5-flash", true)?;
    assert_json_eq(
        &translated,
        &golden("gemini_ingress/request.openai.json")?,
        "gemini request as openai",
    )
}

#[test]
fn gemini_requests_without_an_openai_equivalent_are_typed_400s() -> Result<()> {
    let request = |body: Value| gemini::gemini_to_openai_request(&body, "g", false);
    let text = json!([{ "role": "user", "parts": [{ "text": "hi" }] }]);
    for (body, param) in [
        (json!({ "contents": [] }), "contents"),
        (json!({ "contents": "hi" }), "contents"),
        (
            json!({ "contents": [{ "role": "user" }] }),
            "contents[0].parts",
        ),
        (
            json!({ "contents": [{ "role": "tool", "parts": [] }] }),
            "contents[0].role",
        ),
        (
            json!({ "contents": [{ "role": "user", "parts": [
                { "functionResponse": { "name": "never_called", "response": {} } }
            ] }] }),
            "contents[0].parts[0]",
        ),
        (
            json!({ "contents": text, "generationConfig": { "temperature": "hot" } }),
            "generationConfig.temperature",
        ),
    ] {
        let error = request(body.clone())
            .err()
            .context(format!("{body} must fail"))?;
        ensure!(
            matches!(error, TranslateError::InvalidRequest { .. }),
            "{body}: {error:?}"
        );
        ensure!(error.param() == Some(param), "{body}: {:?}", error.param());
        ensure!(error.status_code() == 400);
    }
    // Gemini's own tools can go only to Gemini models.
    let error = request(json!({ "contents": text, "tools": [{ "googleSearch": {} }] }))
        .err()
        .context("google search must fail")?;
    ensure!(
        matches!(error, TranslateError::Unsupported { .. }),
        "{error:?}"
    );
    ensure!(error.param() == Some("tools[0].googleSearch"));
    // A request without anything but text is the smallest chat body.
    assert_json_eq(
        &request(json!({ "contents": text }))?,
        &json!({ "model": "g", "messages": [{ "role": "user", "content": "hi" }] }),
        "minimal request",
    )?;
    // Tool modes.
    for (mode, allowed, choice) in [
        ("AUTO", json!([]), json!("auto")),
        ("NONE", json!([]), json!("none")),
        ("ANY", json!([]), json!("required")),
        ("ANY", json!(["a", "b"]), json!("required")),
        (
            "ANY",
            json!(["a"]),
            json!({ "type": "function", "function": { "name": "a" } }),
        ),
    ] {
        let body = request(json!({
            "contents": text,
            "tools": [{ "functionDeclarations": [{ "name": "a" }] }],
            "toolConfig": { "functionCallingConfig": { "mode": mode, "allowedFunctionNames": allowed } },
        }))?;
        ensure!(
            body["tool_choice"] == choice,
            "{mode}: {}",
            body["tool_choice"]
        );
    }
    // JSON output, with and without a schema.
    let body = request(json!({
        "contents": text,
        "generationConfig": { "responseMimeType": "application/json",
            "responseSchema": { "type": "OBJECT", "properties": { "n": { "type": "INTEGER" } } } },
    }))?;
    ensure!(
        body["response_format"]
            == json!({ "type": "json_schema", "json_schema": { "name": "response",
                "schema": { "type": "object", "properties": { "n": { "type": "integer" } } } } }),
        "{}",
        body["response_format"]
    );
    let body = request(
        json!({ "contents": text, "generationConfig": { "responseMimeType": "application/json" } }),
    )?;
    ensure!(body["response_format"] == json!({ "type": "json_object" }));
    Ok(())
}

#[test]
fn openai_response_to_gemini() -> Result<()> {
    let input = golden("gemini_ingress/response.openai.json")?;
    assert_json_eq(
        &gemini::openai_to_gemini_response(&input, "requested")?,
        &golden("gemini_ingress/response.gemini.json")?,
        "openai response as gemini",
    )
}

#[test]
fn openai_finish_reasons_map_to_gemini() -> Result<()> {
    for (openai, gemini_reason) in [
        ("stop", "STOP"),
        ("tool_calls", "STOP"),
        ("length", "MAX_TOKENS"),
        ("content_filter", "SAFETY"),
        ("something_new", "OTHER"),
    ] {
        ensure!(
            gemini::gemini_finish_reason(openai) == gemini_reason,
            "{openai}"
        );
    }
    let answer = gemini::openai_to_gemini_response(
        &json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": null },
                  "finish_reason": "length" }] }),
        "requested",
    )?;
    ensure!(answer.pointer("/candidates/0/finishReason") == Some(&json!("MAX_TOKENS")));
    ensure!(answer.pointer("/candidates/0/content/parts/0/text") == Some(&json!("")));
    ensure!(answer["modelVersion"] == "requested");
    ensure!(answer.get("usageMetadata").is_none());
    let broken = gemini::openai_to_gemini_response(&json!({ "id": "x" }), "m");
    ensure!(broken.as_ref().map_err(TranslateError::status_code).err() == Some(502));
    let bad_arguments = json!({ "choices": [{ "message": { "tool_calls": [
        { "id": "c", "function": { "name": "f", "arguments": "{not json" } } ] } }] });
    ensure!(gemini::openai_to_gemini_response(&bad_arguments, "m").is_err());
    Ok(())
}

#[test]
fn openai_stream_to_gemini() -> Result<()> {
    let translator = check_stream(
        || gemini::OpenAiToGeminiStream::new("requested"),
        "gemini_ingress/stream.openai.json",
        "gemini_ingress/stream.gemini.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(translator.usage() == Some(Usage::tokens(12, 9)));
    Ok(())
}

#[test]
fn openai_stream_to_gemini_ends_only_after_a_finish() -> Result<()> {
    // Cut before the finish: nothing closes it, it is incomplete.
    let mut cut = gemini::OpenAiToGeminiStream::new("m");
    let out = cut.on_event(
        None,
        br#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
    )?;
    ensure!(out.len() == 1);
    ensure!(cut.finish().is_empty());
    ensure!(!cut.is_complete());
    // Finished without [DONE] (some servers close right after): the
    // closing event comes from finish().
    let mut closed = gemini::OpenAiToGeminiStream::new("m");
    closed.on_event(
        None,
        br#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    )?;
    let closing = parse_sse(&closed.finish().concat())?;
    ensure!(closing.pointer("/0/data/candidates/0/finishReason") == Some(&json!("STOP")));
    ensure!(closed.is_complete());
    // An error event ends it in Google's shape, incomplete.
    let mut failed = gemini::OpenAiToGeminiStream::new("m");
    let out = failed.on_event(None, br#"{"error":{"message":"overloaded","type":"x"}}"#)?;
    let event = parse_sse(&out.concat())?;
    ensure!(event.pointer("/0/data/error/message") == Some(&json!("overloaded")));
    ensure!(event.pointer("/0/data/error/status") == Some(&json!("INTERNAL")));
    ensure!(failed.finish().is_empty());
    ensure!(!failed.is_complete());
    Ok(())
}

#[test]
fn anthropic_stream_to_gemini_through_openai() -> Result<()> {
    let translator = check_stream(
        || switchyard::providers::translate::ChainedStream {
            first: AnthropicToOpenAiStream::new(CREATED, true),
            second: gemini::OpenAiToGeminiStream::new("claude-sonnet-4-5"),
        },
        "anthropic_to_openai/stream.anthropic.json",
        "gemini_ingress/stream_from_anthropic.gemini.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(translator.usage() == Some(Usage::tokens(472, 89)));
    Ok(())
}

#[test]
fn gemini_stream_passes_through_to_gemini_clients() -> Result<()> {
    // Each event's own data comes out unchanged.
    let translator = check_stream(
        gemini::GeminiPassthroughStream::default,
        "gemini_to_openai/stream.gemini.json",
        "gemini_to_openai/stream.gemini.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(translator.usage() == Some(Usage::tokens(10, 12)));
    // Without a finishReason the stream was cut.
    let mut cut = gemini::GeminiPassthroughStream::default();
    cut.on_event(
        None,
        br#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}"#,
    )?;
    ensure!(!cut.is_complete());
    // An error event is never a finish.
    let mut failed = gemini::GeminiPassthroughStream::default();
    failed.on_event(
        None,
        br#"{"error":{"code":500,"message":"x","status":"INTERNAL"}}"#,
    )?;
    ensure!(!failed.is_complete());
    ensure!(failed.on_event(None, b"{not json").is_err());
    Ok(())
}

#[test]
fn gemini_request_round_trips_through_openai() -> Result<()> {
    // Gemini -> OpenAI -> Gemini keeps the conversation: roles, texts,
    // calls and their results (thoughts and Gemini-only fields aside).
    let original = golden("gemini_ingress/request.gemini.json")?;
    let openai = gemini::gemini_to_openai_request(&original, "g", false)?;
    let back = gemini::openai_to_gemini_request(&openai)?;
    ensure!(
        back["systemInstruction"]
            == json!({ "parts": [{ "text": "You are a weather bot.\nAnswer briefly." }] })
    );
    let summary = |contents: &Value| -> Vec<(String, Vec<String>)> {
        contents
            .as_array()
            .into_iter()
            .flatten()
            .map(|content| {
                let parts = content["parts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|part| part.get("thought").is_none())
                    .map(|part| {
                        if let Some(call) = part.get("functionCall") {
                            format!("call {} {}", call["name"], call["args"])
                        } else if let Some(result) = part.get("functionResponse") {
                            format!("result {} {}", result["name"], result["response"])
                        } else if let Some(text) = part.get("text") {
                            format!("text {text}")
                        } else {
                            format!(
                                "data {}",
                                part.pointer("/inlineData/mimeType").unwrap_or(&Value::Null)
                            )
                        }
                    })
                    .collect();
                (content["role"].as_str().unwrap_or("user").to_owned(), parts)
            })
            .collect()
    };
    let expected = summary(&original["contents"]);
    ensure!(
        summary(&back["contents"]) == expected,
        "{:#?}\n{:#?}",
        summary(&back["contents"]),
        expected
    );
    Ok(())
}

#[test]
fn errors_reach_gemini_clients_in_googles_shape() -> Result<()> {
    let openai_error = json!({ "error": { "message": "bad key", "type": "invalid_request_error", "param": null, "code": "invalid_api_key" } });
    assert_json_eq(
        &gemini::openai_error_to_gemini(&openai_error, 401),
        &json!({ "error": { "code": 401, "message": "bad key", "status": "UNAUTHENTICATED" } }),
        "openai error as gemini",
    )?;
    assert_json_eq(
        &gemini::openai_error_to_gemini(&json!("garbage"), 400),
        &json!({ "error": { "code": 400, "message": "The upstream returned an error", "status": "INVALID_ARGUMENT" } }),
        "unreadable error as gemini",
    )?;
    Ok(())
}

// --- Responses API <-> chat ---------------------------------------------------

/// The frame every Responses golden test names its answer with.
fn responses_frame(request: &Value) -> Result<ResponseFrame> {
    let request = request.as_object().context("a request object")?;
    Ok(ResponseFrame::new(
        "resp_gw1".to_owned(),
        CREATED,
        "gpt-4o".to_owned(),
        request,
    ))
}

#[test]
fn responses_request_to_chat() -> Result<()> {
    let input = golden("responses/request.responses.json")?;
    let actual = responses::responses_to_chat_request(input.as_object().context("object")?)?;
    assert_json_eq(&actual, &golden("responses/request.chat.json")?, "request")
}

#[test]
fn responses_requests_a_chat_upstream_cannot_honour_are_400s_naming_the_field() -> Result<()> {
    let cases = [
        (
            json!({ "model": "m", "input": "hi", "previous_response_id": "resp_1" }),
            "previous_response_id",
        ),
        (
            json!({ "model": "m", "input": "hi", "tools": [{ "type": "web_search" }] }),
            "tools[0].type",
        ),
        (
            json!({ "model": "m", "input": [{ "type": "item_reference", "id": "msg_1" }] }),
            "input[0].type",
        ),
        (json!({ "model": "m", "input": [] }), "input"),
        (
            json!({ "model": "m", "input": [{ "type": "function_call", "name": "f" }] }),
            "input[0].call_id",
        ),
    ];
    for (request, param) in cases {
        let error = responses::responses_to_chat_request(request.as_object().context("object")?)
            .err()
            .with_context(|| format!("{request} must be refused"))?;
        ensure!(error.status_code() == 400, "{request}: {error:?}");
        ensure!(error.param() == Some(param), "{request}: {error:?}");
    }
    Ok(())
}

#[test]
fn chat_response_to_responses() -> Result<()> {
    let request = golden("responses/request.responses.json")?;
    let actual = responses::chat_to_responses_response(
        &golden("responses/response.chat.json")?,
        &responses_frame(&request)?,
    )?;
    assert_json_eq(
        &actual,
        &golden("responses/response.responses.json")?,
        "response",
    )
}

#[test]
fn chat_stream_to_responses_events() -> Result<()> {
    let request = golden("responses/request.responses.json")?;
    let frame = responses_frame(&request)?;
    let translator = check_stream(
        || ChatToResponsesStream::new(frame.clone()),
        "responses/stream.chat.json",
        "responses/stream.responses.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(translator.usage() == Some(Usage::tokens(40, 12)));
    Ok(())
}

#[test]
fn anthropic_stream_to_responses_events_through_chat() -> Result<()> {
    let request = json!({ "model": "gpt-4o", "input": "hi" });
    let frame = responses_frame(&request)?;
    let translator = check_stream(
        || ChainedStream {
            first: AnthropicToOpenAiStream::new(CREATED, true),
            second: ChatToResponsesStream::new(frame.clone()),
        },
        "anthropic_to_openai/stream.anthropic.json",
        "responses/stream_from_anthropic.responses.json",
    )?;
    ensure!(translator.is_complete());
    ensure!(
        translator
            .usage()
            .is_some_and(|usage| usage.completion_tokens > 0)
    );
    Ok(())
}

#[test]
fn a_chat_stream_cut_before_its_finish_is_not_a_complete_response() -> Result<()> {
    let frame = responses_frame(&json!({ "model": "gpt-4o", "input": "hi" }))?;
    let mut translator = ChatToResponsesStream::new(frame);
    let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": "Hel" } }] });
    let events = translator.on_event(None, chunk.to_string().as_bytes())?;
    ensure!(!events.is_empty());
    ensure!(translator.finish().is_empty());
    ensure!(!translator.is_complete());
    let error = translator
        .error_event("cut", "stream_interrupted")
        .context("a Responses error event")?;
    let parsed = parse_sse(&error)?;
    ensure!(parsed.pointer("/0/event") == Some(&json!("error")));
    ensure!(parsed.pointer("/0/data/code") == Some(&json!("stream_interrupted")));
    Ok(())
}

#[test]
fn an_openai_responses_stream_passes_through_and_is_read() -> Result<()> {
    let events = [
        json!({ "type": "response.created", "sequence_number": 0,
                "response": { "id": "resp_up", "status": "in_progress", "usage": null } }),
        json!({ "type": "response.output_text.delta", "sequence_number": 1, "delta": "hi" }),
        json!({ "type": "response.completed", "sequence_number": 2,
                "response": { "id": "resp_up", "status": "completed",
                              "usage": { "input_tokens": 7, "output_tokens": 2, "total_tokens": 9 } } }),
    ];
    ensure!(!responses::carries_content(
        events[0].to_string().as_bytes()
    ));
    ensure!(responses::carries_content(events[1].to_string().as_bytes()));
    let mut translator = ResponsesPassthroughStream::default();
    let mut out = Vec::new();
    for event in &events {
        let kind = event["type"].as_str();
        for bytes in translator.on_event(kind, event.to_string().as_bytes())? {
            out.extend_from_slice(&bytes);
        }
    }
    let relayed = parse_sse(&out)?;
    let expected: Vec<Value> = events
        .iter()
        .map(|event| json!({ "event": event["type"], "data": event }))
        .collect();
    assert_json_eq(&relayed, &Value::Array(expected), "relayed events")?;
    ensure!(translator.is_complete());
    ensure!(translator.response_id() == Some("resp_up"));
    ensure!(translator.usage() == Some(Usage::tokens(7, 2)));
    Ok(())
}
