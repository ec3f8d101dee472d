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
