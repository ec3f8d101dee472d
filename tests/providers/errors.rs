//! Errors in the client's shape, and failover on an Anthropic provider.

use super::*;
use crate::on_both_backends;

on_both_backends!(
    messages_errors_are_anthropic_shaped,
    upstream_client_errors_are_relayed_in_the_clients_shape,
    an_anthropic_provider_fails_over_from_failing_keys,
);

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
