//! Reading answers back (SSE events, OpenAI and Anthropic streams, error
//! shapes) and checking what went upstream.

use super::*;

/// One server-sent event.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) name: Option<String>,
    pub(crate) data: String,
}

/// The events of a complete SSE body, in order.
pub(crate) fn sse_events(body: &[u8]) -> anyhow::Result<Vec<Event>> {
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
pub(crate) struct ChatStream {
    /// The `delta.content` pieces joined.
    pub(crate) text: String,
    /// Tool call 0: its name (sent once) and its argument pieces joined.
    pub(crate) tool_name: Option<String>,
    pub(crate) tool_arguments: String,
    pub(crate) finish_reasons: Vec<String>,
    /// The `usage` of usage chunks (at most one, the last before `[DONE]`).
    pub(crate) usage: Vec<Value>,
}

/// Parses a chat stream: a 200 `text/event-stream` of chunks, `[DONE]` once
/// and last, no error events.
pub(crate) fn chat_stream(reply: &Reply) -> anyhow::Result<ChatStream> {
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
pub(crate) const MESSAGE_EVENTS: [&str; 6] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

/// An Anthropic message stream, read back.
#[derive(Debug, Default)]
pub(crate) struct MessageStream {
    /// Event names in order, consecutive `content_block_delta`s as one.
    pub(crate) names: Vec<String>,
    pub(crate) deltas: usize,
    pub(crate) text: String,
    /// The `tool_use` block's name and its `partial_json` pieces joined.
    pub(crate) tool: Option<(String, String)>,
    pub(crate) stop_reason: Option<String>,
    /// `usage` of `message_start` and of `message_delta`.
    pub(crate) input_tokens: Option<i64>,
    pub(crate) output_tokens: Option<i64>,
}

/// Parses an Anthropic stream: a 200 `text/event-stream` whose every event
/// is named after its data's `type`, without error events.
pub(crate) fn message_stream(reply: &Reply) -> anyhow::Result<MessageStream> {
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
pub(crate) fn anthropic_error(reply: &Reply, status: u16, kind: &str) -> anyhow::Result<String> {
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

/// Checks one chat request the gateway sent to a provider of `kind`: its
/// endpoint, the pool key in that kind's header and no other credential,
/// never the client's token. Returns its JSON body.
pub(crate) fn check_chat_upstream(
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
        ProviderKind::Echo => anyhow::bail!("echo sends nothing upstream"),
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
pub(crate) fn check_tool_declared(kind: ProviderKind, body: &Value) -> anyhow::Result<()> {
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
