//! Provider kinds and front doors end to end: the real gateway in front of
//! the mock speaking each provider's wire (OpenAI, Azure OpenAI, Anthropic,
//! Gemini, Zhipu). Every test checks what the client got, what went upstream
//! (path, credential headers, body) and the usage row the request left.
//!
//! - OpenAI clients (`/v1/chat/completions`) reaching every other kind.
//! - Anthropic clients (`/v1/messages`) reaching Anthropic (passthrough),
//!   OpenAI-compatible (translated) and Gemini (two translators chained).
//! - Errors in the client's shape, failover on an Anthropic provider.
//! - The OpenAI-only endpoints (`/v1/embeddings`, `/v1/completions`),
//!   `count_tokens`, token estimates, and the `/proxy` relay.

pub mod common;

use anyhow::{Context, bail, ensure};
use awc::http::Method;
use base64::Engine;
use bytes::Bytes;
use common::{Reply, TestGateway, chat_body, kind_provider, mock_provider};
use mock_upstream::{MockUpstream, RecordedRequest};
use serde_json::{Value, json};
use switchyard::config::{Backend, ProviderKind, Secret, Settings};
use switchyard::db::RequestLog;
use switchyard_actors::KeyStrategy;

on_both_backends!(
    openai_client_reaches_an_anthropic_provider,
    openai_client_reaches_a_gemini_provider,
    openai_client_reaches_an_azure_deployment,
    openai_client_reaches_a_zhipu_provider,
    anthropic_client_passes_through_to_an_anthropic_provider,
    anthropic_client_is_translated_for_an_openai_compatible_provider,
    anthropic_client_is_chained_to_a_gemini_provider,
    messages_errors_are_anthropic_shaped,
    upstream_client_errors_are_relayed_in_the_clients_shape,
    an_anthropic_provider_fails_over_from_failing_keys,
    embeddings_relay_float_and_base64_vectors,
    legacy_completions_are_relayed_whole_and_streamed,
    openai_only_endpoints_follow_each_kinds_paths_or_refuse,
    count_tokens_passes_through_or_estimates_locally,
    answers_without_usage_get_estimated_tokens,
    proxy_relays_binary_answers_and_byte_streams,
    proxy_replaces_credentials_and_drops_hop_by_hop_headers,
    proxy_streams_a_large_chunked_upload,
    proxy_checks_the_provider_and_the_tokens_scope,
    proxy_relays_an_upstream_error_once,
);

/// What the mock answers to every chat request.
const TEXT: &str = "one two three four five";
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The Azure `api-version` used when the provider sets none.
const AZURE_API_VERSION: &str = "2024-10-21";
/// An `api-version` a provider sets.
const AZURE_PREVIEW: &str = "2025-01-01-preview";
/// An `anthropic-beta` feature a client asks for.
const BETA: &str = "prompt-caching-2024-07-31";
/// A model name clients use, redirected to the provider's own model.
const ALIAS: &str = "claude-alias";

/// The arguments the mock calls the first offered tool with.
fn tool_arguments() -> Value {
    json!({ "arg": "value" })
}

/// A tool in OpenAI's format.
fn openai_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": { "city": { "type": "string" } },
                "required": ["city"],
            },
        },
    })
}

/// The same tool in Anthropic's format.
fn anthropic_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather in a city",
        "input_schema": {
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"],
        },
    })
}

/// An Anthropic client's request: a system prompt, one user turn, and
/// fields only Anthropic's API knows (`top_k`). The mock counts
/// "be brief" + "hello" = 13 prompt tokens in every wire format.
fn messages_body(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "system": "be brief",
        "messages": [{ "role": "user", "content": "hello" }],
        "temperature": 0.5,
        "top_k": 40,
        "metadata": { "user_id": "user-1" },
    })
}

/// A gateway whose only provider is `name`, of `kind`, serving `model` with
/// `keys` tried in order (first-available); then `configure`.
async fn gateway(
    backend: Backend,
    kind: ProviderKind,
    name: &str,
    model: &str,
    keys: &[&str],
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        let mut provider = kind_provider(mock, name, kind, &[model], keys);
        provider.strategy = KeyStrategy::FirstAvailable;
        settings.providers = vec![provider];
        configure(settings);
    })
    .await
}

/// POSTs `body` as Anthropic's SDKs do: the gateway token in `x-api-key`
/// (when given) and an `anthropic-version` header.
async fn post_messages(
    gw: &TestGateway,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<Reply> {
    let mut headers = vec![("anthropic-version", ANTHROPIC_VERSION)];
    if let Some(token) = token {
        headers.push(("x-api-key", token));
    }
    gw.post_with_headers(path, &headers, body).await
}

/// POSTs `body` to an OpenAI route with the token as a bearer.
async fn post_openai(
    gw: &TestGateway,
    path: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Reply> {
    gw.post_raw(path, Some(token), serde_json::to_vec(body)?)
        .await
}

/// The requests the mock received since the last call, which forgets them
/// (and the call counts).
fn drain_upstream(mock: &MockUpstream) -> Vec<RecordedRequest> {
    let requests = mock.requests();
    mock.reset_counts();
    requests
}

/// The one request the mock received since the last drain.
fn only_upstream(mock: &MockUpstream) -> anyhow::Result<RecordedRequest> {
    let mut requests = drain_upstream(mock);
    ensure!(
        requests.len() == 1,
        "expected one upstream request, got {:?}",
        requests
            .iter()
            .map(|request| format!("{} {}", request.method, request.path))
            .collect::<Vec<_>>()
    );
    requests.pop().context("no upstream request")
}

/// What the tests compare of a usage row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row<'a> {
    endpoint: &'a str,
    provider: Option<&'a str>,
    status: i32,
    prompt: i64,
    completion: i64,
    estimated: bool,
    stream: bool,
}

fn row(log: &RequestLog) -> Row<'_> {
    Row {
        endpoint: &log.endpoint,
        provider: log.provider.as_deref(),
        status: log.status,
        prompt: log.prompt_tokens,
        completion: log.completion_tokens,
        estimated: log.tokens_estimated,
        stream: log.stream,
    }
}

/// A successful row with upstream-reported tokens.
fn ok_row<'a>(
    endpoint: &'a str,
    provider: &'a str,
    prompt: i64,
    completion: i64,
    stream: bool,
) -> Row<'a> {
    Row {
        endpoint,
        provider: Some(provider),
        status: 200,
        prompt,
        completion,
        estimated: false,
        stream,
    }
}

// ---------------------------------------------------------------------------
// Reading answers
// ---------------------------------------------------------------------------

/// One server-sent event.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

/// The events of a complete SSE body, in order.
fn sse_events(body: &[u8]) -> anyhow::Result<Vec<Event>> {
    let text = std::str::from_utf8(body)?;
    ensure!(
        text.ends_with("\n\n"),
        "the stream ends inside an event: {text:?}"
    );
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|block| !block.trim().is_empty()) {
        let mut name = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        events.push(Event {
            name,
            data: data.join("\n"),
        });
    }
    Ok(events)
}

/// An OpenAI chat stream, read back.
#[derive(Debug, Default)]
struct ChatStream {
    /// The `delta.content` pieces joined.
    text: String,
    /// Tool call 0: its name (sent once) and its argument pieces joined.
    tool_name: Option<String>,
    tool_arguments: String,
    finish_reasons: Vec<String>,
    /// The `usage` of usage chunks (at most one, the last before `[DONE]`).
    usage: Vec<Value>,
}

/// Parses a chat stream: a 200 `text/event-stream` of chunks, `[DONE]` once
/// and last, no error events.
fn chat_stream(reply: &Reply) -> anyhow::Result<ChatStream> {
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    ensure!(
        reply.header("content-type") == Some("text/event-stream"),
        "{:?}",
        reply.header("content-type")
    );
    let events = sse_events(&reply.body)?;
    let (last, chunks) = events.split_last().context("an empty stream")?;
    ensure!(last.data == "[DONE]", "[DONE] is not last: {events:?}");
    let mut out = ChatStream::default();
    for (position, event) in chunks.iter().enumerate() {
        let chunk: Value = serde_json::from_str(&event.data)
            .with_context(|| format!("not a JSON chunk: {:?}", event.data))?;
        ensure!(chunk.get("error").is_none(), "an error event: {chunk}");
        ensure!(chunk["object"] == "chat.completion.chunk", "{chunk}");
        if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
            ensure!(
                position + 1 == chunks.len() && chunk["choices"] == json!([]),
                "the usage chunk must be the last, without choices: {events:?}"
            );
            out.usage.push(usage.clone());
        }
        for choice in chunk["choices"].as_array().context("no choices")? {
            ensure!(choice["index"] == 0, "{chunk}");
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                out.text.push_str(text);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                ensure!(call["index"] == 0, "one tool call expected: {chunk}");
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    ensure!(out.tool_name.is_none(), "the tool name came twice");
                    ensure!(call["type"] == "function", "{chunk}");
                    ensure!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
                    out.tool_name = Some(name.to_owned());
                }
                if let Some(piece) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    out.tool_arguments.push_str(piece);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                out.finish_reasons.push(reason.to_owned());
            }
        }
    }
    Ok(out)
}

/// Event names of a whole text answer from any Anthropic stream, with the
/// run of `content_block_delta` events collapsed to one.
const MESSAGE_EVENTS: [&str; 6] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

/// An Anthropic message stream, read back.
#[derive(Debug, Default)]
struct MessageStream {
    /// Event names in order, consecutive `content_block_delta`s as one.
    names: Vec<String>,
    deltas: usize,
    text: String,
    /// The `tool_use` block's name and its `partial_json` pieces joined.
    tool: Option<(String, String)>,
    stop_reason: Option<String>,
    /// `usage` of `message_start` and of `message_delta`.
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
}

/// Parses an Anthropic stream: a 200 `text/event-stream` whose every event
/// is named after its data's `type`, without error events.
fn message_stream(reply: &Reply) -> anyhow::Result<MessageStream> {
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    ensure!(
        reply.header("content-type") == Some("text/event-stream"),
        "{:?}",
        reply.header("content-type")
    );
    let mut out = MessageStream::default();
    for event in sse_events(&reply.body)? {
        let data: Value = serde_json::from_str(&event.data)
            .with_context(|| format!("not a JSON event: {:?}", event.data))?;
        let name = event.name.context("an event without a name")?;
        ensure!(data["type"] == name.as_str(), "event {name} carries {data}");
        match name.as_str() {
            "message_start" => {
                ensure!(data.pointer("/message/role") == Some(&json!("assistant")));
                out.input_tokens = data
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_i64);
            }
            "content_block_start" => {
                let block = &data["content_block"];
                match block["type"].as_str() {
                    Some("text") => {}
                    Some("tool_use") => {
                        ensure!(out.tool.is_none(), "two tool blocks");
                        ensure!(block["id"].as_str().is_some_and(|id| !id.is_empty()));
                        let name = block["name"].as_str().context("a tool without a name")?;
                        out.tool = Some((name.to_owned(), String::new()));
                    }
                    other => bail!("unexpected block {other:?}"),
                }
            }
            "content_block_delta" => {
                out.deltas += 1;
                let delta = &data["delta"];
                match (delta["type"].as_str(), out.tool.as_mut()) {
                    (Some("text_delta"), _) => {
                        out.text
                            .push_str(delta["text"].as_str().context("no text")?);
                    }
                    (Some("input_json_delta"), Some((_, json))) => {
                        json.push_str(delta["partial_json"].as_str().context("no json")?);
                    }
                    _ => bail!("unexpected delta {data}"),
                }
            }
            "message_delta" => {
                out.stop_reason = data
                    .pointer("/delta/stop_reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                out.output_tokens = data.pointer("/usage/output_tokens").and_then(Value::as_i64);
            }
            "content_block_stop" | "message_stop" => {}
            other => bail!("unexpected event {other}: {data}"),
        }
        if !(name == "content_block_delta" && out.names.last() == Some(&name)) {
            out.names.push(name);
        }
    }
    Ok(out)
}

/// Asserts Anthropic's error shape `{"type":"error","error":{type,message}}`
/// with this status and type; returns the message.
fn anthropic_error(reply: &Reply, status: u16, kind: &str) -> anyhow::Result<String> {
    ensure!(
        reply.status == status,
        "expected {status}, got {}: {}",
        reply.status,
        reply.text()
    );
    let body = reply.json()?;
    ensure!(
        body["type"] == "error" && body["error"]["type"] == kind,
        "expected an Anthropic {kind}: {body}"
    );
    let message = body["error"]["message"].as_str().context("no message")?;
    ensure!(!message.is_empty(), "{body}");
    Ok(message.to_owned())
}

// ---------------------------------------------------------------------------
// What went upstream
// ---------------------------------------------------------------------------

/// Checks one chat request the gateway sent to a provider of `kind`: its
/// endpoint, the pool key in that kind's header and no other credential,
/// never the client's token. Returns its JSON body.
fn check_chat_upstream(
    seen: &RecordedRequest,
    kind: ProviderKind,
    model: &str,
    key: &str,
    token: &str,
    stream: bool,
) -> anyhow::Result<Value> {
    let bearer = format!("Bearer {key}");
    let (path, header, value) = match kind {
        ProviderKind::Anthropic => ("/v1/messages".to_owned(), "x-api-key", key),
        ProviderKind::Gemini if stream => (
            format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
            "x-goog-api-key",
            key,
        ),
        ProviderKind::Gemini => (
            format!("/v1beta/models/{model}:generateContent"),
            "x-goog-api-key",
            key,
        ),
        ProviderKind::AzureOpenai => (
            format!("/openai/deployments/{model}/chat/completions?api-version={AZURE_API_VERSION}"),
            "api-key",
            key,
        ),
        ProviderKind::Zhipu => (
            "/api/paas/v4/chat/completions".to_owned(),
            "authorization",
            bearer.as_str(),
        ),
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => (
            "/v1/chat/completions".to_owned(),
            "authorization",
            bearer.as_str(),
        ),
    };
    ensure!(seen.method == "POST", "{kind:?}: {}", seen.method);
    ensure!(
        seen.path == path,
        "{kind:?}: upstream path {} instead of {path}",
        seen.path
    );
    ensure!(
        seen.header(header) == Some(value),
        "{kind:?}: {header} is {:?}",
        seen.header(header)
    );
    for other in ["authorization", "x-api-key", "api-key", "x-goog-api-key"] {
        ensure!(
            other == header || seen.header(other).is_none(),
            "{kind:?}: an unexpected {other} header: {:?}",
            seen.headers
        );
    }
    let version = (kind == ProviderKind::Anthropic).then_some(ANTHROPIC_VERSION);
    ensure!(
        seen.header("anthropic-version") == version,
        "{kind:?}: anthropic-version {:?}",
        seen.header("anthropic-version")
    );
    ensure!(seen.header("content-type") == Some("application/json"));
    if stream {
        ensure!(seen.header("accept") == Some("text/event-stream"));
    }
    let leaked = seen.headers.iter().any(|(_, value)| value.contains(token))
        || String::from_utf8_lossy(&seen.body).contains(token);
    ensure!(!leaked, "{kind:?}: the gateway token reached the upstream");
    let body = seen.json().context("the upstream body is not JSON")?;
    if kind == ProviderKind::Gemini {
        // The model and streaming are in the URL.
        ensure!(
            body.get("model").is_none() && body.get("stream").is_none(),
            "{body}"
        );
    } else {
        ensure!(body["model"] == model, "{kind:?}: {body}");
        ensure!(
            body["stream"].as_bool().unwrap_or(false) == stream,
            "{kind:?}: {body}"
        );
    }
    Ok(body)
}

/// Checks that the tool was declared to the provider in its own format.
fn check_tool_declared(kind: ProviderKind, body: &Value) -> anyhow::Result<()> {
    let name = match kind {
        ProviderKind::Anthropic => body.pointer("/tools/0/name"),
        ProviderKind::Gemini => body.pointer("/tools/0/functionDeclarations/0/name"),
        _ => body.pointer("/tools/0/function/name"),
    };
    ensure!(
        name == Some(&json!("get_weather")),
        "{kind:?}: the tool was not declared upstream: {body}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. OpenAI clients, every provider kind
// ---------------------------------------------------------------------------

/// An OpenAI client reaches `kind` through `/v1/chat/completions`: a plain
/// answer, a stream without and with the usage chunk, and a tool call whole
/// and streamed; each request goes to the kind's endpoint with its
/// credential header, and each leaves a row with the upstream's tokens.
async fn openai_client_suite(
    backend: Backend,
    kind: ProviderKind,
    name: &str,
    model: &str,
) -> anyhow::Result<()> {
    let key = "ok-suite";
    let gw = gateway(backend, kind, name, model, &[key], |_| {}).await?;
    let token = gw.create_token(json!({ "name": "openai-client" })).await?;

    // A plain answer.
    let reply = gw.chat(&token, chat_body(model, "hello")).await?;
    ensure!(reply.status == 200, "{kind:?}: {}", reply.text());
    assert_eq!(reply.header("x-switchyard-provider"), Some(name));
    assert_eq!(reply.header("x-switchyard-attempts"), Some("1"));
    let answer = reply.json()?;
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert_eq!(
        answer.pointer("/choices/0/message/role"),
        Some(&json!("assistant"))
    );
    assert_eq!(
        answer.pointer("/choices/0/message/content"),
        Some(&json!(TEXT))
    );
    assert_eq!(
        answer.pointer("/choices/0/finish_reason"),
        Some(&json!("stop"))
    );
    assert_eq!(answer.pointer("/usage/prompt_tokens"), Some(&json!(5)));
    assert_eq!(answer.pointer("/usage/completion_tokens"), Some(&json!(5)));
    check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, false)?;

    // A stream; the client did not ask for usage, so none comes.
    let mut body = chat_body(model, "hello");
    body["stream"] = json!(true);
    let stream = chat_stream(&gw.chat(&token, body.clone()).await?)?;
    assert_eq!(stream.text, TEXT, "{kind:?}");
    assert_eq!(stream.finish_reasons, ["stop"], "{kind:?}");
    assert_eq!(stream.usage, Vec::<Value>::new(), "{kind:?}");
    assert_eq!(stream.tool_name, None);
    check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, true)?;

    // The same stream with `stream_options.include_usage`: one usage chunk.
    body["stream_options"] = json!({ "include_usage": true });
    let stream = chat_stream(&gw.chat(&token, body).await?)?;
    assert_eq!(stream.text, TEXT, "{kind:?}");
    assert_eq!(stream.finish_reasons, ["stop"], "{kind:?}");
    assert_eq!(stream.usage.len(), 1, "{kind:?}");
    assert_eq!(
        (
            &stream.usage[0]["prompt_tokens"],
            &stream.usage[0]["completion_tokens"],
            &stream.usage[0]["total_tokens"]
        ),
        (&json!(5), &json!(5), &json!(10)),
        "{kind:?}: {}",
        stream.usage[0]
    );
    check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, true)?;

    // A tool call, whole.
    let mut tools = chat_body(model, "hello");
    tools["tools"] = json!([openai_tool()]);
    let reply = gw.chat(&token, tools.clone()).await?;
    ensure!(reply.status == 200, "{kind:?}: {}", reply.text());
    let answer = reply.json()?;
    let calls = answer
        .pointer("/choices/0/message/tool_calls")
        .and_then(Value::as_array)
        .with_context(|| format!("{kind:?}: no tool calls: {answer}"))?;
    assert_eq!(calls.len(), 1, "{answer}");
    assert_eq!(calls[0]["type"], "function");
    assert!(
        calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{answer}"
    );
    assert_eq!(
        calls[0].pointer("/function/name"),
        Some(&json!("get_weather"))
    );
    let arguments: Value = serde_json::from_str(
        calls[0]
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .context("arguments")?,
    )?;
    assert_eq!(arguments, tool_arguments(), "{kind:?}");
    assert_eq!(
        answer.pointer("/choices/0/finish_reason"),
        Some(&json!("tool_calls"))
    );
    let body = check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, false)?;
    check_tool_declared(kind, &body)?;

    // A tool call, streamed.
    tools["stream"] = json!(true);
    let stream = chat_stream(&gw.chat(&token, tools).await?)?;
    assert_eq!(stream.tool_name.as_deref(), Some("get_weather"), "{kind:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&stream.tool_arguments)?,
        tool_arguments()
    );
    assert_eq!(stream.finish_reasons, ["tool_calls"], "{kind:?}");
    assert_eq!(stream.text, "", "{kind:?}");
    let body = check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, true)?;
    check_tool_declared(kind, &body)?;

    let logs = gw.request_logs().await?;
    let endpoint = "/v1/chat/completions";
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [false, true, true, false, true].map(|stream| ok_row(endpoint, name, 5, 5, stream)),
        "{kind:?}"
    );
    assert!(
        logs.iter()
            .all(|log| log.upstream_model.as_deref() == Some(model))
    );
    gw.stop().await
}

/// OpenAI chat → Anthropic Messages (`x-api-key`, `anthropic-version`).
async fn openai_client_reaches_an_anthropic_provider(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::Anthropic, "anth", "claude-m").await
}

/// OpenAI chat → Gemini `generateContent` / `streamGenerateContent?alt=sse`
/// (`x-goog-api-key`, the model in the path).
async fn openai_client_reaches_a_gemini_provider(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::Gemini, "gem", "gemini-m").await
}

/// OpenAI chat → Azure: `/openai/deployments/{model}/chat/completions` with
/// `api-version`, the key in `api-key` and no `authorization` header.
async fn openai_client_reaches_an_azure_deployment(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::AzureOpenai, "azure", "mock-gpt").await
}

/// OpenAI chat → Zhipu's v4 API (bearer key below `/api/paas/v4`).
async fn openai_client_reaches_a_zhipu_provider(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::Zhipu, "glm", "glm-m").await
}

// ---------------------------------------------------------------------------
// 2. Anthropic clients
// ---------------------------------------------------------------------------

/// Checks how an Anthropic client's `messages_body` reached `kind`:
/// unchanged but for the model (Anthropic), or translated.
fn check_messages_translation(
    kind: ProviderKind,
    body: &Value,
    model: &str,
    stream: bool,
) -> anyhow::Result<()> {
    match kind {
        ProviderKind::Anthropic => {
            let mut expected = messages_body(model);
            if stream {
                expected["stream"] = json!(true);
            }
            ensure!(*body == expected, "not passed through: {body}");
        }
        ProviderKind::Gemini => {
            ensure!(
                body["systemInstruction"] == json!({ "parts": [{ "text": "be brief" }] }),
                "{body}"
            );
            ensure!(
                body["contents"] == json!([{ "role": "user", "parts": [{ "text": "hello" }] }]),
                "{body}"
            );
            ensure!(
                body.pointer("/generationConfig/maxOutputTokens") == Some(&json!(256)),
                "{body}"
            );
        }
        _ => {
            ensure!(
                body["messages"]
                    == json!([
                        { "role": "system", "content": "be brief" },
                        { "role": "user", "content": "hello" },
                    ]),
                "{body}"
            );
            ensure!(
                body["max_tokens"] == 256 && body["temperature"] == 0.5 && body["user"] == "user-1",
                "{body}"
            );
            // Anthropic-only fields do not reach an OpenAI-format provider.
            ensure!(
                body.get("top_k").is_none() && body.get("system").is_none(),
                "{body}"
            );
            if stream {
                ensure!(
                    body.pointer("/stream_options/include_usage") == Some(&json!(true)),
                    "{body}"
                );
            }
        }
    }
    Ok(())
}

/// An Anthropic client (`x-api-key` = its gateway token, `anthropic-version`,
/// `?beta=true` as Claude Code sends it) reaches `kind` through
/// `/v1/messages`, the alias redirected to the provider's model: a text
/// answer and a tool call, whole and streamed; `anthropic-beta` reaches
/// Anthropic providers only.
async fn anthropic_client_suite(
    backend: Backend,
    kind: ProviderKind,
    name: &str,
    model: &str,
) -> anyhow::Result<()> {
    let key = "ok-messages";
    let gw = gateway(backend, kind, name, model, &[key], |settings| {
        settings
            .redirects
            .insert(ALIAS.to_owned(), format!("{name}/{model}"));
    })
    .await?;
    let token = gw.create_token(json!({ "name": "claude-code" })).await?;

    // A whole answer.
    let reply = post_messages(
        &gw,
        "/v1/messages?beta=true",
        Some(&token),
        &messages_body(ALIAS),
    )
    .await?;
    ensure!(reply.status == 200, "{kind:?}: {}", reply.text());
    assert_eq!(reply.header("x-switchyard-provider"), Some(name));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let answer = reply.json()?;
    assert_eq!(
        (&answer["type"], &answer["role"]),
        (&json!("message"), &json!("assistant")),
        "{answer}"
    );
    assert_eq!(
        answer["content"],
        json!([{ "type": "text", "text": TEXT }]),
        "{kind:?}"
    );
    assert_eq!(answer["stop_reason"], "end_turn", "{kind:?}");
    assert_eq!(
        (
            &answer["usage"]["input_tokens"],
            &answer["usage"]["output_tokens"]
        ),
        (&json!(13), &json!(5)),
        "{kind:?}: {answer}"
    );
    let seen = only_upstream(&gw.mock)?;
    let body = check_chat_upstream(&seen, kind, model, key, &token, false)?;
    check_messages_translation(kind, &body, model, false)?;

    // A stream, with a beta feature as Claude Code asks for them.
    let mut streamed = messages_body(ALIAS);
    streamed["stream"] = json!(true);
    let headers = [
        ("anthropic-version", ANTHROPIC_VERSION),
        ("anthropic-beta", BETA),
        ("x-api-key", token.as_str()),
    ];
    let stream = message_stream(
        &gw.post_with_headers("/v1/messages", &headers, &streamed)
            .await?,
    )?;
    assert_eq!(stream.names, MESSAGE_EVENTS, "{kind:?}");
    assert_eq!(stream.deltas, 5, "{kind:?}: one delta per word");
    assert_eq!(stream.text, TEXT, "{kind:?}");
    assert_eq!(stream.stop_reason.as_deref(), Some("end_turn"), "{kind:?}");
    assert_eq!(stream.output_tokens, Some(5), "{kind:?}");
    if kind == ProviderKind::Anthropic {
        // The upstream's own events: its prompt count is in message_start.
        assert_eq!(stream.input_tokens, Some(13));
    }
    let seen = only_upstream(&gw.mock)?;
    let body = check_chat_upstream(&seen, kind, model, key, &token, true)?;
    check_messages_translation(kind, &body, model, true)?;
    // Beta features mean something to Anthropic only.
    let beta = (kind == ProviderKind::Anthropic).then_some(BETA);
    assert_eq!(seen.header("anthropic-beta"), beta, "{kind:?}");

    // A tool call, whole.
    let mut tools = messages_body(ALIAS);
    tools["tools"] = json!([anthropic_tool()]);
    let reply = post_messages(&gw, "/v1/messages?beta=true", Some(&token), &tools).await?;
    ensure!(reply.status == 200, "{kind:?}: {}", reply.text());
    let answer = reply.json()?;
    let blocks = answer["content"].as_array().context("no content")?;
    assert_eq!(blocks.len(), 1, "{answer}");
    assert_eq!(
        (&blocks[0]["type"], &blocks[0]["name"], &blocks[0]["input"]),
        (&json!("tool_use"), &json!("get_weather"), &tool_arguments()),
        "{kind:?}: {answer}"
    );
    assert!(
        blocks[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{answer}"
    );
    assert_eq!(answer["stop_reason"], "tool_use", "{kind:?}");
    let body = check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, false)?;
    check_tool_declared(kind, &body)?;
    if kind == ProviderKind::Anthropic {
        assert_eq!(body["tools"], json!([anthropic_tool()]));
    }

    // A tool call, streamed.
    tools["stream"] = json!(true);
    let stream = message_stream(&post_messages(&gw, "/v1/messages", Some(&token), &tools).await?)?;
    assert_eq!(stream.names, MESSAGE_EVENTS, "{kind:?}");
    let (tool, json) = stream.tool.context("no tool_use block")?;
    assert_eq!(tool, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&json)?,
        tool_arguments(),
        "{kind:?}"
    );
    assert_eq!(stream.text, "");
    assert_eq!(stream.stop_reason.as_deref(), Some("tool_use"), "{kind:?}");
    let body = check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, true)?;
    check_tool_declared(kind, &body)?;

    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [false, true, false, true].map(|stream| ok_row("/v1/messages", name, 13, 5, stream)),
        "{kind:?}"
    );
    for log in &logs {
        assert_eq!(
            (
                log.requested_model.as_deref(),
                log.upstream_model.as_deref()
            ),
            (Some(ALIAS), Some(model))
        );
    }
    gw.stop().await
}

/// Anthropic → Anthropic passes the body through (only `model` rewritten,
/// `top_k` and `metadata` intact) and the events as the upstream sent them.
async fn anthropic_client_passes_through_to_an_anthropic_provider(
    backend: Backend,
) -> anyhow::Result<()> {
    anthropic_client_suite(backend, ProviderKind::Anthropic, "anth", "claude-up").await
}

/// Anthropic → OpenAI-compatible: the request becomes OpenAI chat, the
/// answer and each stream chunk become Anthropic's again.
async fn anthropic_client_is_translated_for_an_openai_compatible_provider(
    backend: Backend,
) -> anyhow::Result<()> {
    anthropic_client_suite(backend, ProviderKind::OpenaiCompatible, "oai", "gpt-up").await
}

/// Anthropic → Gemini: two translators chained (Anthropic → OpenAI →
/// Gemini, and back event by event).
async fn anthropic_client_is_chained_to_a_gemini_provider(backend: Backend) -> anyhow::Result<()> {
    anthropic_client_suite(backend, ProviderKind::Gemini, "gem", "gemini-up").await
}

// ---------------------------------------------------------------------------
// 3. Errors and failover
// ---------------------------------------------------------------------------

/// `/v1/messages` answers its own failures in Anthropic's shape: a missing
/// or unknown token (401 `authentication_error`), an unknown model (404
/// `not_found_error`), malformed JSON and a missing field (400
/// `invalid_request_error`); none of them reaches the upstream.
async fn messages_errors_are_anthropic_shaped(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(
        backend,
        ProviderKind::Anthropic,
        "anth",
        "claude-m",
        &["ok-1"],
        |_| {},
    )
    .await?;
    let token = gw.create_token(json!({ "name": "errors" })).await?;

    let reply = post_messages(&gw, "/v1/messages", None, &messages_body("claude-m")).await?;
    anthropic_error(&reply, 401, "authentication_error")?;
    assert!(reply.header("x-request-id").is_some());
    let reply = post_messages(
        &gw,
        "/v1/messages",
        Some("sy-not-a-token"),
        &messages_body("claude-m"),
    )
    .await?;
    anthropic_error(&reply, 401, "authentication_error")?;

    let reply = post_messages(
        &gw,
        "/v1/messages",
        Some(&token),
        &messages_body("no-such-model"),
    )
    .await?;
    let message = anthropic_error(&reply, 404, "not_found_error")?;
    assert!(message.contains("no-such-model"), "{message}");

    let headers = [
        ("content-type", "application/json"),
        ("anthropic-version", ANTHROPIC_VERSION),
        ("x-api-key", token.as_str()),
    ];
    let reply = gw
        .send(
            Method::POST,
            "/v1/messages",
            &headers,
            Some(br#"{"model": "claude-m", "messages": ["#.to_vec()),
        )
        .await?;
    anthropic_error(&reply, 400, "invalid_request_error")?;

    let reply = post_messages(
        &gw,
        "/v1/messages",
        Some(&token),
        &json!({ "model": "claude-m", "max_tokens": 10 }),
    )
    .await?;
    let message = anthropic_error(&reply, 400, "invalid_request_error")?;
    assert!(message.contains("messages"), "{message}");

    assert_eq!(gw.mock.total_calls(), 0);
    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, i32, Option<&str>)> = logs
        .iter()
        .map(|log| {
            (
                log.endpoint.as_str(),
                log.status,
                log.error_class.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (401, "invalid_api_key"),
            (401, "invalid_api_key"),
            (404, "model_not_found"),
            (400, "invalid_request"),
            (400, "invalid_request"),
        ]
        .map(|(status, class)| ("/v1/messages", status, Some(class)))
    );
    gw.stop().await
}

/// An upstream's own 4xx is relayed once (not retried) with its status, in
/// the client's error shape whatever the provider speaks.
///
/// The mock refuses no well-formed request with a 400 (it answers any JSON
/// object), so the 4xx is its 404 for an unknown URL: these providers' base
/// URLs end in a query (`?q=`) that swallows the endpoint path, leaving the
/// mock a path it does not serve (Google's error shape below `/v1beta/`,
/// OpenAI's elsewhere). The gateway treats every 4xx but 401/403/408/429
/// alike, so a 404 takes the same path as a 400.
async fn upstream_client_errors_are_relayed_in_the_clients_shape(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let root = common::mock_root(mock);
        let broken = |name: &str, kind: ProviderKind, model: &str, base: &str| {
            let mut provider = kind_provider(mock, name, kind, &[model], &["ok-4xx"]);
            provider.base_url = format!("{root}{base}?q=");
            provider
        };
        settings.providers = vec![
            broken("oai", ProviderKind::OpenaiCompatible, "oai-m", "/v1/x"),
            broken("anth", ProviderKind::Anthropic, "anth-m", "/v1/x"),
            broken("gem", ProviderKind::Gemini, "gem-m", "/v1beta/x"),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "relay" })).await?;
    let openai_404 = "Unknown request URL: POST /v1/x";
    let gemini_404 = "Not found: POST /v1beta/x";

    // OpenAI client, OpenAI-format provider: the upstream's body verbatim.
    let reply = gw.chat(&token, chat_body("oai-m", "hello")).await?;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(
        reply.json()?,
        json!({ "error": { "message": openai_404, "type": "invalid_request_error", "param": null, "code": "unknown_url" } })
    );
    assert_eq!(only_upstream(&gw.mock)?.path, "/v1/x?q=/chat/completions");

    // OpenAI client, Anthropic provider.
    let reply = gw.chat(&token, chat_body("anth-m", "hello")).await?;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(
        reply.json()?,
        json!({ "error": { "message": openai_404, "type": "invalid_request_error", "param": null, "code": null } })
    );
    assert_eq!(only_upstream(&gw.mock)?.path, "/v1/x?q=/messages");

    // OpenAI client, Gemini provider: Google's status becomes the code.
    let reply = gw.chat(&token, chat_body("gem-m", "hello")).await?;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(
        reply.json()?,
        json!({ "error": { "message": gemini_404, "type": "upstream_error", "param": null, "code": "NOT_FOUND" } })
    );
    assert_eq!(
        only_upstream(&gw.mock)?.path,
        "/v1beta/x?q=/models/gem-m:generateContent"
    );

    // Anthropic client, OpenAI-format and Gemini providers.
    let reply = post_messages(&gw, "/v1/messages", Some(&token), &messages_body("oai-m")).await?;
    assert_eq!(anthropic_error(&reply, 404, "not_found_error")?, openai_404);
    only_upstream(&gw.mock)?;
    let reply = post_messages(&gw, "/v1/messages", Some(&token), &messages_body("gem-m")).await?;
    assert_eq!(anthropic_error(&reply, 404, "not_found_error")?, gemini_404);
    only_upstream(&gw.mock)?;

    let logs = gw.request_logs().await?;
    let outcomes: Vec<_> = logs
        .iter()
        .map(|log| {
            (
                log.endpoint.as_str(),
                log.provider.as_deref(),
                log.status,
                log.error_class.as_deref(),
                log.attempts,
            )
        })
        .collect();
    let rejected = Some("upstream_rejected");
    assert_eq!(
        outcomes,
        [
            ("/v1/chat/completions", Some("oai"), 404, rejected, 1),
            ("/v1/chat/completions", Some("anth"), 404, rejected, 1),
            ("/v1/chat/completions", Some("gem"), 404, rejected, 1),
            ("/v1/messages", Some("oai"), 404, rejected, 1),
            ("/v1/messages", Some("gem"), 404, rejected, 1),
        ]
    );
    gw.stop().await
}

/// On an Anthropic provider, a 500 key and a 429 key fail over to a good
/// one invisibly, from either front door; the 429 key then rests (its
/// `Retry-After`) while the 500 key, below the failure threshold, is tried
/// again. Exact call counts per key.
async fn an_anthropic_provider_fails_over_from_failing_keys(
    backend: Backend,
) -> anyhow::Result<()> {
    let keys = ["e500-anth", "r429-anth", "ok-anth"];
    let gw = gateway(
        backend,
        ProviderKind::Anthropic,
        "anth",
        "claude-m",
        &keys,
        |_| {},
    )
    .await?;
    let token = gw.create_token(json!({ "name": "failover" })).await?;
    let calls = |gw: &TestGateway| keys.map(|key| gw.mock.calls(key));

    let reply = post_messages(
        &gw,
        "/v1/messages",
        Some(&token),
        &messages_body("claude-m"),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("3"));
    assert_eq!(
        reply.json()?["content"],
        json!([{ "type": "text", "text": TEXT }])
    );
    assert_eq!(calls(&gw), [1, 1, 1]);

    let reply = gw.chat(&token, chat_body("claude-m", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(
        reply.json()?.pointer("/choices/0/message/content"),
        Some(&json!(TEXT))
    );
    assert_eq!(calls(&gw), [2, 1, 2]);
    // Every attempt spoke Anthropic's wire with its own key.
    for seen in gw.mock.requests() {
        assert_eq!(seen.path, "/v1/messages");
        let key = seen.header("x-api-key").context("no key")?;
        assert!(keys.contains(&key), "{key}");
        assert_eq!(seen.header("authorization"), None);
    }

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(Row<'_>, i32, Option<&str>)> = logs
        .iter()
        .map(|log| (row(log), log.attempts, log.key_id.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                ok_row("/v1/messages", "anth", 13, 5, false),
                3,
                Some("key-3")
            ),
            (
                ok_row("/v1/chat/completions", "anth", 5, 5, false),
                2,
                Some("key-3")
            ),
        ]
    );
    gw.stop().await
}

// ---------------------------------------------------------------------------
// 4. OpenAI-only endpoints
// ---------------------------------------------------------------------------

/// The mock's embedding for input number `index`.
fn embedding(index: usize) -> Vec<f32> {
    (0..8)
        .map(|j| index as f32 + (j as f32 + 1.0) / 8.0)
        .collect()
}

/// `/v1/embeddings` relays float vectors and base64 strings as the upstream
/// sent them, and meters the prompt tokens it reports.
async fn embeddings_relay_float_and_base64_vectors(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(mock, "mock", &["mock-embed"], &["ok-embed"])];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "embedder" })).await?;

    let request = json!({ "model": "mock-embed", "input": ["ab", "cde"] });
    let reply = post_openai(&gw, "/v1/embeddings", &token, &request).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-provider"), Some("mock"));
    let answer = reply.json()?;
    assert_eq!(answer["object"], "list");
    assert_eq!(
        answer["data"],
        json!([
            { "object": "embedding", "index": 0, "embedding": embedding(0) },
            { "object": "embedding", "index": 1, "embedding": embedding(1) },
        ])
    );
    assert_eq!(
        answer["usage"],
        json!({ "prompt_tokens": 5, "total_tokens": 5 })
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.path.as_str(), seen.header("authorization")),
        ("/v1/embeddings", Some("Bearer ok-embed"))
    );
    assert_eq!(seen.json(), Some(request));

    let request = json!({ "model": "mock-embed", "input": "hello", "encoding_format": "base64" });
    let reply = post_openai(&gw, "/v1/embeddings", &token, &request).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    let bytes: Vec<u8> = embedding(0).iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        answer["data"],
        json!([{ "object": "embedding", "index": 0, "embedding": base64::engine::general_purpose::STANDARD.encode(bytes) }])
    );
    assert_eq!(answer["usage"]["prompt_tokens"], 5);
    assert_eq!(only_upstream(&gw.mock)?.json(), Some(request));

    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [
            ok_row("/v1/embeddings", "mock", 5, 0, false),
            ok_row("/v1/embeddings", "mock", 5, 0, false)
        ]
    );
    gw.stop().await
}

/// The `choices[].text` pieces of a legacy completion stream, joined, and
/// the usage chunks; `[DONE]` must be last.
fn completion_stream(reply: &Reply) -> anyhow::Result<(String, Vec<String>, Vec<Value>)> {
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    let events = sse_events(&reply.body)?;
    let (last, chunks) = events.split_last().context("an empty stream")?;
    ensure!(last.data == "[DONE]", "[DONE] is not last: {events:?}");
    let (mut text, mut finish, mut usage) = (String::new(), Vec::new(), Vec::new());
    for event in chunks {
        let chunk: Value = serde_json::from_str(&event.data)?;
        ensure!(chunk["object"] == "text_completion", "{chunk}");
        if let Some(reported) = chunk.get("usage") {
            usage.push(reported.clone());
        }
        for choice in chunk["choices"].as_array().context("no choices")? {
            text.push_str(choice["text"].as_str().context("no text")?);
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish.push(reason.to_owned());
            }
        }
    }
    Ok((text, finish, usage))
}

/// `/v1/completions` whole and streamed (the injected usage chunk hidden
/// unless asked for), metered from the upstream's usage.
async fn legacy_completions_are_relayed_whole_and_streamed(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &["ok-legacy"])];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "legacy" })).await?;

    let request = json!({ "model": "mock-gpt", "prompt": "hello", "max_tokens": 16 });
    let reply = post_openai(&gw, "/v1/completions", &token, &request).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer.pointer("/choices/0/text"), Some(&json!(TEXT)));
    assert_eq!(
        answer.pointer("/choices/0/finish_reason"),
        Some(&json!("stop"))
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.path.as_str(), seen.header("authorization")),
        ("/v1/completions", Some("Bearer ok-legacy"))
    );
    assert_eq!(seen.json(), Some(request.clone()));

    let mut streamed = request;
    streamed["stream"] = json!(true);
    let reply = post_openai(&gw, "/v1/completions", &token, &streamed).await?;
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let (text, finish, usage) = completion_stream(&reply)?;
    assert_eq!((text.as_str(), finish), (TEXT, vec!["stop".to_owned()]));
    assert_eq!(usage, Vec::<Value>::new());
    // The gateway asked for usage on the client's behalf.
    let seen = only_upstream(&gw.mock)?.json().context("no JSON")?;
    assert_eq!(
        seen.pointer("/stream_options/include_usage"),
        Some(&json!(true))
    );

    streamed["stream_options"] = json!({ "include_usage": true });
    let reply = post_openai(&gw, "/v1/completions", &token, &streamed).await?;
    let (text, _, usage) = completion_stream(&reply)?;
    assert_eq!(text, TEXT);
    assert_eq!(
        usage,
        [json!({ "prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10 })]
    );
    only_upstream(&gw.mock)?;

    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [false, true, true].map(|stream| ok_row("/v1/completions", "mock", 5, 5, stream))
    );
    gw.stop().await
}

/// Embeddings and legacy completions follow each kind's paths (Azure's
/// deployment URLs with the provider's own `api-version`, Zhipu's v4 root),
/// and a provider
/// kind without the endpoint gets a 400 that names it, before any upstream
/// call.
async fn openai_only_endpoints_follow_each_kinds_paths_or_refuse(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut azure = kind_provider(
            mock,
            "azure",
            ProviderKind::AzureOpenai,
            &["az-dep"],
            &["ok-az"],
        );
        azure.api_version = Some(AZURE_PREVIEW.to_owned());
        settings.providers = vec![
            azure,
            kind_provider(mock, "glm", ProviderKind::Zhipu, &["glm-m"], &["ok-glm"]),
            kind_provider(
                mock,
                "anth",
                ProviderKind::Anthropic,
                &["claude-m"],
                &["ok-anth"],
            ),
            kind_provider(
                mock,
                "gem",
                ProviderKind::Gemini,
                &["gemini-m"],
                &["ok-gem"],
            ),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "openai-only" })).await?;
    let embed = |model: &str| json!({ "model": model, "input": "hello" });
    let complete = |model: &str| json!({ "model": model, "prompt": "hello" });

    let reply = post_openai(&gw, "/v1/embeddings", &token, &embed("az-dep")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        seen.path,
        format!("/openai/deployments/az-dep/embeddings?api-version={AZURE_PREVIEW}")
    );
    assert_eq!(
        (seen.header("api-key"), seen.header("authorization")),
        (Some("ok-az"), None)
    );

    let reply = post_openai(&gw, "/v1/completions", &token, &complete("az-dep")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?.pointer("/choices/0/text"), Some(&json!(TEXT)));
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        seen.path,
        format!("/openai/deployments/az-dep/completions?api-version={AZURE_PREVIEW}")
    );
    assert_eq!(seen.header("api-key"), Some("ok-az"));

    let reply = post_openai(&gw, "/v1/embeddings", &token, &embed("glm-m")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.path.as_str(), seen.header("authorization")),
        ("/api/paas/v4/embeddings", Some("Bearer ok-glm"))
    );

    // No such endpoint for these kinds: a 400 naming the provider.
    for (path, model, provider, kind) in [
        ("/v1/embeddings", "claude-m", "anth", "anthropic"),
        ("/v1/embeddings", "gemini-m", "gem", "gemini"),
        ("/v1/completions", "glm-m", "glm", "zhipu"),
        ("/v1/completions", "claude-m", "anth", "anthropic"),
    ] {
        let body = if path == "/v1/embeddings" {
            embed(model)
        } else {
            complete(model)
        };
        let reply = post_openai(&gw, path, &token, &body).await?;
        assert_eq!(reply.status, 400, "{path} {model}: {}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("invalid_request"));
        assert_eq!(
            reply.json()?.pointer("/error/message").and_then(Value::as_str),
            Some(format!("The model `{model}` is served by provider `{provider}` ({kind}), which has no {path} endpoint").as_str())
        );
    }
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "refused requests must not reach the upstream"
    );

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, Option<&str>, i32)> = logs
        .iter()
        .map(|log| (log.endpoint.as_str(), log.provider.as_deref(), log.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/v1/embeddings", Some("azure"), 200),
            ("/v1/completions", Some("azure"), 200),
            ("/v1/embeddings", Some("glm"), 200),
            ("/v1/embeddings", Some("anth"), 400),
            ("/v1/embeddings", Some("gem"), 400),
            ("/v1/completions", Some("glm"), 400),
            ("/v1/completions", Some("anth"), 400),
        ]
    );
    // Prompt 5 ("hello"); embeddings have no completion tokens.
    assert_eq!(
        logs.iter()
            .take(3)
            .map(|log| (log.prompt_tokens, log.completion_tokens))
            .collect::<Vec<_>>(),
        [(5, 0), (5, 5), (5, 0)]
    );
    gw.stop().await
}

// ---------------------------------------------------------------------------
// 5. count_tokens
// ---------------------------------------------------------------------------

/// `/v1/messages/count_tokens`: an Anthropic provider counts (the request
/// passed through with its pool key); for an OpenAI-format model the gateway
/// estimates locally (13 characters of text → 4 tokens) without calling
/// anyone.
async fn count_tokens_passes_through_or_estimates_locally(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            kind_provider(
                mock,
                "anth",
                ProviderKind::Anthropic,
                &["claude-m"],
                &["ok-count"],
            ),
            mock_provider(mock, "mock", &["mock-gpt"], &["ok-local"]),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "counter" })).await?;
    let body = |model: &str| {
        json!({
            "model": model,
            "system": "be brief",
            "messages": [{ "role": "user", "content": "hello" }],
        })
    };

    let reply = post_messages(
        &gw,
        "/v1/messages/count_tokens",
        Some(&token),
        &body("claude-m"),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?, json!({ "input_tokens": 13 }));
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(seen.path, "/v1/messages/count_tokens");
    assert_eq!(
        (
            seen.header("x-api-key"),
            seen.header("anthropic-version"),
            seen.header("authorization")
        ),
        (Some("ok-count"), Some(ANTHROPIC_VERSION), None)
    );
    assert_eq!(seen.json(), Some(body("claude-m")));

    let reply = post_messages(
        &gw,
        "/v1/messages/count_tokens",
        Some(&token),
        &body("mock-gpt"),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?, json!({ "input_tokens": 4 }));
    assert_eq!(gw.mock.total_calls(), 0);

    let reply = post_messages(&gw, "/v1/messages/count_tokens", None, &body("mock-gpt")).await?;
    anthropic_error(&reply, 401, "authentication_error")?;

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, Option<&str>, i32)> = logs
        .iter()
        .map(|log| (log.endpoint.as_str(), log.provider.as_deref(), log.status))
        .collect();
    let endpoint = "/v1/messages/count_tokens";
    assert_eq!(
        outcomes,
        [
            (endpoint, Some("anth"), 200),
            (endpoint, Some("mock"), 200),
            (endpoint, None, 401)
        ]
    );
    gw.stop().await
}

// ---------------------------------------------------------------------------
// 6. Token estimates
// ---------------------------------------------------------------------------

/// Upstreams that report no usage (`nousage-` keys) still answer in full,
/// and their rows carry an estimate (a quarter of the characters, rounded
/// up: "hello" → 2, the five words' 23 characters → 6) marked
/// `tokens_estimated`: OpenAI whole and streamed, and an Anthropic stream.
async fn answers_without_usage_get_estimated_tokens(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            mock_provider(mock, "mock", &["mock-gpt"], &["nousage-oai"]),
            kind_provider(
                mock,
                "anth",
                ProviderKind::Anthropic,
                &["claude-m"],
                &["nousage-anth"],
            ),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "estimates" })).await?;

    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    assert_eq!(
        answer.pointer("/choices/0/message/content"),
        Some(&json!(TEXT))
    );
    assert_eq!(answer.get("usage"), None);

    let mut streamed = chat_body("mock-gpt", "hello");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({ "include_usage": true });
    let stream = chat_stream(&gw.chat(&token, streamed).await?)?;
    assert_eq!(stream.text, TEXT);
    assert_eq!(
        stream.usage,
        Vec::<Value>::new(),
        "the upstream reported none"
    );

    let mut streamed = chat_body("claude-m", "hello");
    streamed["stream"] = json!(true);
    let stream = chat_stream(&gw.chat(&token, streamed).await?)?;
    assert_eq!(stream.text, TEXT);
    assert_eq!(stream.finish_reasons, ["stop"]);
    assert_eq!(gw.mock.calls("nousage-oai"), 2);
    assert_eq!(gw.mock.calls("nousage-anth"), 1);

    let logs = gw.request_logs().await?;
    let estimated = |provider, stream| Row {
        estimated: true,
        ..ok_row("/v1/chat/completions", provider, 2, 6, stream)
    };
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [
            estimated("mock", false),
            estimated("mock", true),
            estimated("anth", true)
        ]
    );
    gw.stop().await
}

// ---------------------------------------------------------------------------
// 7. /proxy
// ---------------------------------------------------------------------------

/// A gateway whose `mock` provider has the one key `key`.
async fn proxy_gateway(
    backend: Backend,
    key: &str,
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &[key])];
        configure(settings);
    })
    .await
}

/// A 200 from the echo endpoint: what the mock received.
fn echoed(reply: &Reply) -> anyhow::Result<Value> {
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    reply.json()
}

/// Binary answers come back byte for byte with their content type: the
/// speech endpoint's non-UTF-8 audio, and a chunked byte stream; each call
/// leaves a `/proxy/mock` row without tokens.
async fn proxy_relays_binary_answers_and_byte_streams(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-proxy", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "proxy" })).await?;
    let bearer = format!("Bearer {token}");

    let speech = json!({ "model": "tts-1", "input": "hello", "voice": "alloy" });
    let reply = gw
        .post_with_headers(
            "/proxy/mock/audio/speech",
            &[("authorization", bearer.as_str())],
            &speech,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("audio/mpeg"));
    assert!(
        reply.body == mock_upstream::speech_bytes(),
        "the audio bytes differ ({} bytes)",
        reply.body.len()
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/audio/speech")
    );
    assert_eq!(seen.header("authorization"), Some("Bearer ok-proxy"));
    assert_eq!(seen.body, serde_json::to_vec(&speech)?);

    let reply = gw
        .send(
            Method::GET,
            "/proxy/mock/stream-bytes?n=64",
            &[("authorization", bearer.as_str())],
            None,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(
        reply.body == mock_upstream::stream_bytes(64),
        "the streamed bytes differ ({} bytes)",
        reply.body.len()
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/v1/stream-bytes?n=64")
    );

    let logs = gw.request_logs().await?;
    let proxied = Row {
        endpoint: "/proxy/mock",
        provider: Some("mock"),
        status: 200,
        prompt: 0,
        completion: 0,
        estimated: false,
        stream: false,
    };
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [proxied.clone(), proxied]
    );
    assert!(
        logs.iter()
            .all(|log| log.key_id.as_deref() == Some("key-1") && log.attempts == 1)
    );
    gw.stop().await
}

/// The upstream sees the pool key instead of the client's token, the
/// provider's own `headers`, the client's other headers, path, query and
/// body; never the client's cookies, other credentials or hop-by-hop
/// headers. The path goes up as the client encoded it. Any method goes
/// through.
async fn proxy_replaces_credentials_and_drops_hop_by_hop_headers(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-proxy", |settings| {
        settings.providers[0]
            .headers
            .insert("x-provider-tag".to_owned(), Secret::new("tag-1"));
    })
    .await?;
    let token = gw.create_token(json!({ "name": "proxy" })).await?;
    let bearer = format!("Bearer {token}");
    let body = b"hello proxy".to_vec();
    let reply = gw
        .send(
            Method::POST,
            "/proxy/mock/echo/x?y=1",
            &[
                ("authorization", bearer.as_str()),
                ("x-api-key", token.as_str()),
                ("cookie", "session=secret"),
                ("connection", "keep-alive"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic c2VjcmV0"),
                ("te", "trailers"),
                ("content-type", "text/plain"),
                ("x-client-header", "kept"),
            ],
            Some(body.clone()),
        )
        .await?;
    let echo = echoed(&reply)?;
    assert_eq!(
        (&echo["method"], &echo["path"], &echo["query"]),
        (&json!("POST"), &json!("/v1/echo/x"), &json!("y=1"))
    );
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(
        echo["body_checksum"],
        mock_upstream::fnv1a64(&body).to_string()
    );
    let headers = echo["headers"].as_object().context("no headers")?;
    assert_eq!(
        headers.get("authorization"),
        Some(&json!("Bearer ok-proxy"))
    );
    assert_eq!(headers.get("x-provider-tag"), Some(&json!("tag-1")));
    assert_eq!(headers.get("x-client-header"), Some(&json!("kept")));
    assert_eq!(headers.get("content-type"), Some(&json!("text/plain")));
    // A body of declared length keeps its length (upstreams may refuse
    // chunked uploads).
    assert_eq!(
        headers.get("content-length"),
        Some(&json!(body.len().to_string()))
    );
    assert_eq!(headers.get("transfer-encoding"), None);
    assert_eq!(
        headers.get("host"),
        Some(&json!(gw.mock.addr().to_string()))
    );
    for dropped in [
        "cookie",
        "x-api-key",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(headers.get(dropped), None, "{dropped} reached the upstream");
    }
    assert_ne!(
        headers.get("connection"),
        Some(&json!("keep-alive")),
        "{echo}"
    );
    assert!(
        !echo.to_string().contains(&token),
        "the gateway token leaked: {echo}"
    );

    // The path goes up as the client encoded it: an escaped space or `?`
    // stays escaped (decoded, the first made an invalid URL and the second
    // started a query).
    let reply = gw
        .send(
            Method::GET,
            "/proxy/mock/echo/a%20b%3Fc/%C3%A9?q=a%20b",
            &[("authorization", bearer.as_str())],
            None,
        )
        .await?;
    let echo = echoed(&reply)?;
    assert_eq!(
        (&echo["path"], &echo["query"]),
        (&json!("/v1/echo/a%20b%3Fc/%C3%A9"), &json!("q=a%20b"))
    );

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = gw
            .send(
                method.clone(),
                "/proxy/mock/echo",
                &[("authorization", bearer.as_str())],
                None,
            )
            .await?;
        let echo = echoed(&reply)?;
        assert_eq!(
            (&echo["method"], &echo["body_len"]),
            (&json!(method.as_str()), &json!(0))
        );
        assert_eq!(echo["headers"]["authorization"], "Bearer ok-proxy");
    }
    assert_eq!(gw.mock.calls("ok-proxy"), 5);

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 5);
    assert!(
        logs.iter()
            .all(|log| log.endpoint == "/proxy/mock" && log.status == 200),
        "{logs:?}"
    );
    gw.stop().await
}

/// An 8 MiB body sent chunked streams up unchanged (length and checksum as
/// the upstream received them), still chunked.
async fn proxy_streams_a_large_chunked_upload(backend: Backend) -> anyhow::Result<()> {
    const SIZE: usize = 8 * 1024 * 1024;
    let gw = proxy_gateway(backend, "ok-upload", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "uploader" })).await?;
    let body: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(7).wrapping_add(i >> 11) % 256) as u8)
        .collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let mut response = gw
        .client
        .post(format!("{}/proxy/mock/files/echo", gw.url))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("content-type", "application/octet-stream"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .map_err(|e| anyhow::anyhow!("upload failed: {e}"))?;
    assert_eq!(response.status(), 200);
    let echo: Value = serde_json::from_slice(&response.body().await?)?;
    assert_eq!(echo["path"], "/v1/files/echo");
    assert_eq!(echo["body_len"], SIZE);
    assert_eq!(
        echo["body_checksum"],
        mock_upstream::fnv1a64(&body).to_string()
    );
    assert_eq!(
        echo["headers"]["transfer-encoding"], "chunked",
        "{}",
        echo["headers"]
    );
    assert_eq!(echo["headers"].get("content-length"), None);
    assert_eq!(gw.mock.calls("ok-upload"), 1);
    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter()
            .map(|log| (log.endpoint.as_str(), log.status))
            .collect::<Vec<_>>(),
        [("/proxy/mock", 200)]
    );
    gw.stop().await
}

/// An unknown provider is a 404; a token limited to models may use a
/// provider's proxy only when its list allows `{provider}/*`; no token is
/// a 401. Refused calls never reach the upstream.
async fn proxy_checks_the_provider_and_the_tokens_scope(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-scope", |_| {}).await?;
    let open = gw.create_token(json!({ "name": "open" })).await?;
    let models_only = gw
        .create_token(json!({ "name": "models-only", "allowed_models": ["mock-gpt"] }))
        .await?;
    let proxy_allowed = gw
        .create_token(json!({ "name": "proxy-allowed", "allowed_models": ["mock/*"] }))
        .await?;
    let get = |token: Option<String>, path: &'static str| {
        let gw = &gw;
        async move {
            let bearer = token.map(|token| format!("Bearer {token}"));
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("authorization", b.as_str()))
                .collect();
            gw.send(Method::GET, path, &headers, None).await
        }
    };

    let reply = get(Some(open.clone()), "/proxy/nope/echo").await?;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.error_code().as_deref(), Some("not_found"));
    let reply = get(Some(models_only), "/proxy/mock/echo").await?;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.error_code().as_deref(), Some("model_not_allowed"));
    let reply = get(None, "/proxy/mock/echo").await?;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(gw.mock.total_calls(), 0);

    let echo = echoed(&get(Some(proxy_allowed), "/proxy/mock/echo").await?)?;
    assert_eq!(echo["headers"]["authorization"], "Bearer ok-scope");
    echoed(&get(Some(open), "/proxy/mock/echo").await?)?;
    assert_eq!(gw.mock.calls("ok-scope"), 2);

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, i32, Option<&str>)> = logs
        .iter()
        .map(|log| {
            (
                log.endpoint.as_str(),
                log.status,
                log.error_class.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/proxy/nope", 404, Some("not_found")),
            ("/proxy/mock", 403, Some("model_not_allowed")),
            ("/proxy/mock", 401, Some("invalid_api_key")),
            ("/proxy/mock", 200, None),
            ("/proxy/mock", 200, None),
        ]
    );
    gw.stop().await
}

/// An upstream 500 through the proxy is relayed as it is, after exactly one
/// attempt (a streamed body cannot be replayed), and counts against the
/// key's health; the row has the upstream's status.
async fn proxy_relays_an_upstream_error_once(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "e500-proxy", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "proxy-errors" })).await?;
    let reply = gw
        .post_with_headers(
            "/proxy/mock/echo/x",
            &[("authorization", format!("Bearer {token}").as_str())],
            &json!({ "n": 1 }),
        )
        .await?;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(
        reply.json()?,
        json!({ "error": { "message": "The server had an error while processing your request (mock)", "type": "server_error", "param": null, "code": null } })
    );
    assert_eq!(gw.mock.calls("e500-proxy"), 1);

    let (status, health) = gw
        .admin(Method::GET, "/admin/providers/mock/health", None)
        .await?;
    assert_eq!(status, 200, "{health}");
    let key = &health["keys"][0];
    assert_eq!(
        (
            &key["id"],
            &key["failures"],
            &key["successes"],
            &key["error_streak"]
        ),
        (&json!("key-1"), &json!(1), &json!(0), &json!(1)),
        "{health}"
    );

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, Option<&str>, i32, i32)> = logs
        .iter()
        .map(|log| {
            (
                log.endpoint.as_str(),
                log.provider.as_deref(),
                log.status,
                log.attempts,
            )
        })
        .collect();
    assert_eq!(outcomes, [("/proxy/mock", Some("mock"), 500, 1)]);
    gw.stop().await
}
