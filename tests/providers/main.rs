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
//!
//! One test binary (each binary links the whole gateway), one module per
//! front door or concern; shared fixtures here and in `answers`.

#[path = "../common/mod.rs"]
pub mod common;

mod answers;
mod anthropic_clients;
mod errors;
mod openai_clients;
mod openai_endpoints;
mod proxy;
mod token_counts;

use answers::*;
use anyhow::{Context, bail, ensure};
use awc::http::Method;
use base64::Engine;
use bytes::Bytes;
use common::{Reply, TestGateway, chat_body, kind_provider, mock_provider, stream_chat_body};
use mock_upstream::{MockUpstream, RecordedRequest};
use serde_json::{Value, json};
use switchyard::config::{Backend, ProviderKind, Secret, Settings};
use switchyard::db::RequestLog;
use switchyard_actors::KeyStrategy;

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
