//! Anthropic clients (`/v1/messages`) reaching Anthropic (passthrough),
//! OpenAI-compatible (translated) and Gemini (two translators chained).

use super::*;
use crate::on_both_backends;

on_both_backends!(
    anthropic_client_passes_through_to_an_anthropic_provider,
    anthropic_client_is_translated_for_an_openai_compatible_provider,
    anthropic_client_is_chained_to_a_gemini_provider,
);

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
