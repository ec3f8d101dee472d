//! `count_tokens` passed through or estimated locally, and token estimates
//! for answers without usage.

use super::*;
use crate::on_both_backends;

on_both_backends!(
    count_tokens_passes_through_or_estimates_locally,
    answers_without_usage_get_estimated_tokens,
);

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
