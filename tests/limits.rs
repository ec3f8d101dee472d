//! Limits on both backends.
//!
//! - The global concurrency limit (`server.max_concurrent_requests`): the
//!   request past the limit is refused at once with 503 `concurrency_limit`
//!   and `Retry-After: 1`, never reaches the upstream, still leaves its usage
//!   row, and a stream keeps its slot until it ends.
//! - The cooldown wait budget (`upstream.max_cooldown_wait`): a request whose
//!   keys are all cooling down waits for the earliest one when the wait fits
//!   the budget, and is answered at once when it does not.

pub mod common;

use anyhow::Context;
use common::{Reply, TestGateway, chat_body, mock_provider, stream_chat_body};
use futures_util::StreamExt;
use futures_util::future::join3;
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard::config::{Backend, Secret, mask};
use switchyard::crypto::{SecretCipher, fingerprint};
use switchyard::db::providers::NewProviderKey;

on_both_backends!(
    a_request_past_the_limit_is_refused_at_once,
    a_stream_holds_its_slot_until_it_ends,
    a_cooldown_beyond_the_wait_budget_is_answered_at_once,
    a_request_waits_for_a_cooling_key_within_the_budget,
);

fn expect_limit(reply: &Reply) -> anyhow::Result<()> {
    anyhow::ensure!(reply.status == 503, "{} {}", reply.status, reply.text());
    let body = reply.json()?;
    assert_eq!(
        body.pointer("/error/code"),
        Some(&json!("concurrency_limit"))
    );
    assert_eq!(
        body.pointer("/error/type"),
        Some(&json!("service_unavailable"))
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.header("x-request-id").is_some());
    Ok(())
}

async fn a_request_past_the_limit_is_refused_at_once(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.server.max_concurrent_requests = 2;
        settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &["slow400-lim"])];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "limits" })).await?;
    let third = async {
        // Both slots are taken once the upstream has seen both requests.
        gw.wait_for_upstream_calls(2).await?;
        let started = Instant::now();
        let reply = gw.chat(&token, chat_body("mock-gpt", "third")).await?;
        anyhow::Ok((reply, started.elapsed()))
    };
    let (first, second, third) = join3(
        gw.chat(&token, chat_body("mock-gpt", "first")),
        gw.chat(&token, chat_body("mock-gpt", "second")),
        third,
    )
    .await;
    let (third, waited) = third?;
    expect_limit(&third)?;
    // Refused at once, not queued behind the 400 ms answers.
    assert!(waited < Duration::from_millis(300), "{waited:?}");
    for reply in [first?, second?] {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // The slots came back.
    let reply = gw.chat(&token, chat_body("mock-gpt", "fourth")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gw.mock.calls("slow400-lim"), 3);

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 4, "{logs:?}");
    let mut rows: Vec<(i32, Option<&str>, i32)> = logs
        .iter()
        .map(|row| (row.status, row.error_class.as_deref(), row.attempts))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (200, None, 1),
            (200, None, 1),
            (200, None, 1),
            (503, Some("concurrency_limit"), 0)
        ]
    );
    // The refusal is attributed to the token that sent it.
    assert!(logs.iter().all(|row| row.token_id.is_some()));
    gw.stop().await
}

async fn a_stream_holds_its_slot_until_it_ends(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.server.max_concurrent_requests = 1;
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &["ok-lim-stream"]);
        provider
            .headers
            .insert("x-mock-chunk-delay-ms".to_owned(), Secret::new("50"));
        settings.providers = vec![provider];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "limits" })).await?;
    let body = stream_chat_body("mock-gpt", "stream");
    let mut stream = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.url))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send_json(&body)
        .await
        .map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
    assert_eq!(stream.status(), 200);
    let first = stream.next().await.context("no first chunk")??;
    assert!(first.starts_with(b"data: "), "{first:?}");

    // The stream is open: the one slot is taken.
    let refused = gw.chat(&token, chat_body("mock-gpt", "refused")).await?;
    expect_limit(&refused)?;

    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk?);
    }
    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"));
    // The relay gives the slot back before the end of the stream goes out,
    // so the next request is served.
    let reply = gw.chat(&token, chat_body("mock-gpt", "after")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gw.mock.calls("ok-lim-stream"), 2);
    let logs = gw.request_logs().await?;
    let mut rows: Vec<(i32, Option<&str>, bool)> = logs
        .iter()
        .map(|row| (row.status, row.error_class.as_deref(), row.stream))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (200, None, false),
            (200, None, true),
            (503, Some("concurrency_limit"), false)
        ]
    );
    gw.stop().await
}

/// The mock's `Retry-After: 2` does not fit a one-second budget: both
/// requests are answered 429 without waiting, and the key is called once.
async fn a_cooldown_beyond_the_wait_budget_is_answered_at_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.upstream.max_cooldown_wait = Duration::from_secs(1);
        settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &["r429-budget"])];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "budget" })).await?;
    for _ in 0..2 {
        let started = Instant::now();
        let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
        assert_eq!(reply.status, 429, "{}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("rate_limited"));
        assert_eq!(reply.header("retry-after"), Some("2"));
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(gw.mock.calls("r429-budget"), 1);
    let logs = gw.request_logs().await?;
    let rows = common::outcomes(&logs);
    assert_eq!(
        rows,
        vec![
            (429, Some("rate_limited"), 1),
            (429, Some("rate_limited"), 0)
        ]
    );
    gw.stop().await
}

/// The one test here that really waits (the mock's two seconds). The key
/// answers 429 once; then its secret is swapped in the database for a good
/// one and reloaded through the admin API, which keeps the key's cooldown
/// (its id survives). A request arriving while it rests waits for it, within
/// the 3 s budget, and is served by it: one attempt, no error.
async fn a_request_waits_for_a_cooling_key_within_the_budget(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.upstream.max_cooldown_wait = Duration::from_secs(3);
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &["r429-wait"]);
        provider.retry.max_attempts = 1;
        settings.providers = vec![provider];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "budget" })).await?;
    // One attempt allowed: the 429 is answered, not waited out.
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 429, "{}", reply.text());

    let db = &gw.gateway()?.db;
    let provider = db.get_provider_by_name("mock").await?.context("provider")?;
    // `Settings::for_tests` encrypts with this secret.
    let cipher = SecretCipher::new("test-secret-key");
    db.upsert_provider_key(&NewProviderKey {
        provider_id: provider.id,
        key_id: "key-1".to_owned(),
        secret_ciphertext: cipher.encrypt("ok-wait")?,
        secret_hint: mask("ok-wait"),
        secret_fingerprint: fingerprint("ok-wait"),
        weight: 1,
        priority: 0,
        enabled: true,
    })
    .await?;
    // Adding and removing a spare key reloads the pool from the database.
    let (status, answer) = gw
        .admin(
            awc::http::Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "ok-spare", "id": "spare" })),
        )
        .await?;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = gw
        .admin(
            awc::http::Method::DELETE,
            "/admin/providers/mock/keys/spare",
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (_, health) = gw
        .admin(awc::http::Method::GET, "/admin/providers/mock/health", None)
        .await?;
    assert_eq!(
        health.pointer("/keys/0/state"),
        Some(&json!("cooling_down")),
        "{health}"
    );
    let rest = health
        .pointer("/keys/0/cooldown_remaining_ms")
        .and_then(serde_json::Value::as_u64)
        .context("cooldown")?;
    assert!(rest > 1000, "{health}");

    let started = Instant::now();
    let reply = gw.chat(&token, chat_body("mock-gpt", "again")).await?;
    let waited = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("1"));
    assert!(
        waited >= Duration::from_millis(rest.saturating_sub(100))
            && waited < Duration::from_secs(3),
        "waited {waited:?} for a rest of {rest} ms"
    );
    assert_eq!(
        (
            gw.mock.calls("r429-wait"),
            gw.mock.calls("ok-wait"),
            gw.mock.calls("ok-spare")
        ),
        (1, 1, 0)
    );
    let logs = gw.request_logs().await?;
    let rows = common::outcomes(&logs);
    assert_eq!(rows, vec![(429, Some("rate_limited"), 1), (200, None, 1)]);
    gw.stop().await
}
