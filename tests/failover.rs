//! Failover with default settings: a request fails only when every usable
//! key of every candidate provider has been tried once, or when its overall
//! deadline (`upstream.request_timeout`) passes. Also the 503 that says every
//! key is at its concurrency cap.

pub mod common;

use anyhow::Context;
use common::{Reply, TestGateway, chat_body, mock_provider};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard::config::{Backend, Settings};
use switchyard_actors::KeyStrategy;

on_both_backends!(
    three_bad_keys_of_five_never_fail_a_request,
    every_key_failing_is_tried_exactly_once,
    the_request_deadline_bounds_hung_keys,
    every_key_at_its_cap_is_503_all_keys_busy,
    each_attempt_is_on_the_request_log,
    providers_are_tried_in_declaration_order,
);

/// A gateway whose `mock` provider has exactly `keys` with default retry
/// settings, then `configure`.
async fn gateway(
    backend: Backend,
    keys: &[&str],
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], keys)];
        configure(settings);
    })
    .await
}

/// Asserts the OpenAI error shape, status and code.
fn expect_error(reply: &Reply, status: u16, code: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        reply.status == status && reply.error_code().as_deref() == Some(code),
        "expected {status} {code}, got {}: {}",
        reply.status,
        reply.text()
    );
    Ok(())
}

/// The case: five keys, three misbehaving (429, 500, reset), default
/// retry settings (round-robin). With a fixed attempt count of three, a
/// request that met the three bad keys in a row failed. The run opens with
/// sequential requests, where the rotation deterministically hands the
/// second request the three bad keys in a row, then goes on concurrently;
/// with the default of "every usable key once" no request may fail.
async fn three_bad_keys_of_five_never_fail_a_request(backend: Backend) -> anyhow::Result<()> {
    const SEQUENTIAL: usize = 10;
    const REQUESTS: usize = 300;
    const CLIENTS: usize = 30;
    let gw = gateway(
        backend,
        &["ok-a", "r429-b", "e500-c", "reset-d", "ok-e"],
        |_| {},
    )
    .await?;
    let token = gw.create_token(json!({ "name": "failover" })).await?;
    let one = |index: usize| {
        let gw = &gw;
        let token = &token;
        async move {
            match gw
                .chat(token, chat_body("mock-gpt", &format!("request {index}")))
                .await
            {
                Ok(reply) if reply.status == 200 => None,
                Ok(reply) => Some(format!("{index}: {} {}", reply.status, reply.text())),
                Err(error) => Some(format!("{index}: {error}")),
            }
        }
    };
    let mut failures = Vec::new();
    for index in 0..SEQUENTIAL {
        failures.extend(one(index).await);
    }
    let concurrent: Vec<String> = stream::iter(SEQUENTIAL..REQUESTS)
        .map(one)
        .buffer_unordered(CLIENTS)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    failures.extend(concurrent);
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} failed: {failures:?}",
        failures.len()
    );
    // Every bad key was met: the run exercised failover.
    for bad in ["r429-b", "e500-c", "reset-d"] {
        assert!(gw.mock.calls(bad) >= 1, "{bad} was never tried");
    }
    gw.stop().await
}

/// Four keys, all failing, default settings: each is tried exactly once,
/// then the request fails with the last key's error.
async fn every_key_failing_is_tried_exactly_once(backend: Backend) -> anyhow::Result<()> {
    let keys = ["e500-x1", "reset-x2", "r429-x3", "e500-x4"];
    let gw = gateway(backend, &keys, |settings| {
        settings.providers[0].strategy = KeyStrategy::FirstAvailable;
    })
    .await?;
    let token = gw.create_token(json!({ "name": "failover" })).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    expect_error(&reply, 502, "upstream_failed")?;
    let calls: Vec<u64> = keys.iter().map(|key| gw.mock.calls(key)).collect();
    assert_eq!(calls, vec![1, 1, 1, 1]);
    let logs = gw.request_logs().await?;
    assert_eq!(
        common::outcomes(&logs),
        vec![(502, Some("upstream_failed"), 4)]
    );
    gw.stop().await
}

/// Hung keys: each attempt may take `first_byte_timeout` (2 s), but the
/// request as a whole gives up at `request_timeout` (3 s) with 504, rather
/// than after one full timeout per key.
async fn the_request_deadline_bounds_hung_keys(backend: Backend) -> anyhow::Result<()> {
    let keys = ["hang-d1", "hang-d2", "hang-d3", "hang-d4"];
    let gw = gateway(backend, &keys, |settings| {
        settings.providers[0].strategy = KeyStrategy::FirstAvailable;
        settings.upstream.first_byte_timeout = Duration::from_secs(2);
        settings.upstream.request_timeout = Duration::from_secs(3);
    })
    .await?;
    let token = gw.create_token(json!({ "name": "failover" })).await?;
    let started = Instant::now();
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    let elapsed = started.elapsed();
    expect_error(&reply, 504, "upstream_timeout")?;
    // Four full attempts would take 8 s; the deadline ends it at 3 s (the
    // upper margin is for a loaded machine).
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_millis(5500),
        "{elapsed:?}"
    );
    // The first attempt used its 2 s, the second was cut at the deadline,
    // no third began.
    let calls: Vec<u64> = keys.iter().map(|key| gw.mock.calls(key)).collect();
    assert_eq!(calls, vec![1, 1, 0, 0]);
    let logs = gw.request_logs().await?;
    assert_eq!(
        common::outcomes(&logs),
        vec![(504, Some("upstream_timeout"), 2)]
    );
    gw.stop().await
}

/// One key capped at one request in flight: while it serves a slow request,
/// the next one is told that every key is busy, with `Retry-After`, and never
/// reaches the upstream.
async fn every_key_at_its_cap_is_503_all_keys_busy(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["slow4000-busy"], |settings| {
        settings.upstream.first_byte_timeout = Duration::from_secs(30);
        settings.providers[0].max_in_flight_per_key = 1;
    })
    .await?;
    let token = gw.create_token(json!({ "name": "failover" })).await?;
    let slow = gw.chat(&token, chat_body("mock-gpt", "slow"));
    let refused = async {
        gw.wait_for_upstream_calls(1).await?;
        gw.chat(&token, chat_body("mock-gpt", "refused")).await
    };
    let (slow, refused) = futures_util::future::join(slow, refused).await;
    let (slow, refused) = (slow?, refused?);
    expect_error(&refused, 503, "all_keys_busy")?;
    let retry_after: u64 = refused
        .header("retry-after")
        .context("no Retry-After")?
        .parse()?;
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert_eq!(gw.mock.calls("slow4000-busy"), 1);
    let logs = gw.request_logs().await?;
    let mut rows = common::outcomes(&logs);
    rows.sort();
    assert_eq!(rows, vec![(200, None, 1), (503, Some("all_keys_busy"), 0)]);
    gw.stop().await
}

/// A request served after failover keeps each attempt on its log row: the
/// key tried, how it failed, when it started and how long it took, then the
/// attempt that answered. `GET /admin/request-logs/{id}` shows them; a
/// request answered at the first attempt shows that one attempt.
async fn each_attempt_is_on_the_request_log(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["e500-t1", "ok-t2"], |settings| {
        settings.providers[0].strategy = KeyStrategy::FirstAvailable;
    })
    .await?;
    let token = gw.create_token(json!({ "name": "attempts" })).await?;
    let failed_over = gw.chat(&token, chat_body("mock-gpt", "first")).await?;
    anyhow::ensure!(failed_over.status == 200, "{}", failed_over.text());
    assert_eq!(failed_over.header("x-switchyard-attempts"), Some("2"));
    let logs = gw.request_logs().await?;
    let row = logs.last().context("no request log")?;
    let admin = gw.admin_client();
    let keys: Vec<String> = admin
        .key_healths("mock")
        .await?
        .iter()
        .filter_map(|key| key["id"].as_str().map(str::to_owned))
        .collect();
    let detail = admin
        .get(&format!("/admin/request-logs/{}", row.id))
        .await?;
    let attempts = detail["attempt_log"]
        .as_array()
        .with_context(|| format!("no attempt_log in {detail}"))?;
    assert_eq!(attempts.len(), 2, "{detail}");
    let (failed, answered) = (&attempts[0], &attempts[1]);
    assert_eq!(failed["provider"], "mock");
    assert_eq!(answered["provider"], "mock");
    assert_eq!(answered["key_id"].as_str(), row.key_id.as_deref());
    assert_ne!(failed["key_id"], answered["key_id"]);
    for attempt in attempts {
        let key = attempt["key_id"].as_str().unwrap_or_default();
        assert!(keys.iter().any(|id| id == key), "{key} not in {keys:?}");
        assert_eq!(attempt["upstream_model"], "mock-gpt");
        assert!(attempt["duration_ms"].as_i64().is_some_and(|ms| ms >= 0));
    }
    assert_eq!(failed["outcome"], "upstream_failed", "{detail}");
    assert_eq!(answered["outcome"], "ok");
    let failed_start = failed["started_ms"].as_i64().context("started_ms")?;
    let answered_start = answered["started_ms"].as_i64().context("started_ms")?;
    assert!(failed_start <= answered_start, "{detail}");

    // With the failing key disabled the next request is answered at its
    // first attempt.
    let bad = attempts[0]["key_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    admin.set_key_enabled("mock", &bad, false).await?;
    let direct = gw.chat(&token, chat_body("mock-gpt", "second")).await?;
    assert_eq!(direct.header("x-switchyard-attempts"), Some("1"));
    let logs = gw.request_logs().await?;
    let row = logs.last().context("no request log")?;
    let detail = admin
        .get(&format!("/admin/request-logs/{}", row.id))
        .await?;
    let attempts = detail["attempt_log"].as_array().context("attempt_log")?;
    assert_eq!(attempts.len(), 1, "{detail}");
    assert_eq!(attempts[0]["key_id"].as_str(), row.key_id.as_deref());
    assert_eq!(attempts[0]["outcome"], "ok");
    gw.stop().await
}

/// `first-available` (the default) tries a model's providers in the order
/// settings declare them, not by name: the first declared serves while it
/// can. Both names are chosen to sort against their order, so routing by
/// name would pick `alpha-backup` first.
async fn providers_are_tried_in_declaration_order(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            mock_provider(mock, "zeta-primary", &["mock-gpt"], &["ok-primary"]),
            mock_provider(mock, "alpha-backup", &["mock-gpt"], &["ok-backup"]),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "order" })).await?;
    for request in 0..3 {
        let reply = gw
            .chat(&token, chat_body("mock-gpt", &format!("request {request}")))
            .await?;
        anyhow::ensure!(reply.status == 200, "{}", reply.text());
        assert_eq!(reply.header("x-switchyard-provider"), Some("zeta-primary"));
    }
    // A provider added later through the admin API comes after those
    // declared in settings, whatever its name.
    gw.admin_client()
        .post(
            "/admin/providers",
            json!({
                "name": "aaa-added",
                "kind": "openai-compatible",
                "base_url": format!("http://{}/v1", gw.mock.addr()),
                "models": ["mock-gpt"],
                "keys": [{ "key": "ok-added" }],
            }),
        )
        .await?;
    let reply = gw
        .chat(&token, chat_body("mock-gpt", "after the add"))
        .await?;
    anyhow::ensure!(reply.status == 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-provider"), Some("zeta-primary"));
    Ok(())
}
