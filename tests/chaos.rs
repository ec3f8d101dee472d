//! Chaos on both backends: one provider, five keys, three of them
//! misbehaving in different ways (429 with `Retry-After: 600`, 500s, connection
//! resets), 500 requests from 16 concurrent clients, streamed and not. Every
//! request succeeds, and each bad key receives exactly the traffic the health
//! model allows, counted at the mock.
//!
//! The health model, with this provider's policy (`failure_threshold = 1`,
//! `error_cooldown = 60s`, round-robin):
//! - `r429long-c` answers 429 with `Retry-After: 600`: it rests ten minutes
//!   after each call;
//! - `e500-d` and `reset-e` open their circuit on their first failure and
//!   rest 60 s (then a single half-open probe, far after this test).
//!
//! So each bad key is called exactly once as long as the run ends inside
//! `r429long-c`'s rest, and the first contact with each must not be
//! concurrent (16 clients could otherwise all lease a key before its first
//! failure is reported). The run therefore opens with sequential requests
//! until every bad key has failed once, then fires the rest 16 at a time; the
//! test checks that the concurrent part ended while `r429long-c` was still
//! resting. (With `Retry-After: 2` the concurrent part, well under a second
//! on a quiet machine, took 2.1 s on a loaded one and the test failed.)

pub mod common;

use anyhow::Context;
use awc::http::Method;
use common::{TestGateway, chat_body, mock_provider};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::Backend;
use switchyard_actors::KeyStrategy;

on_both_backends!(five_keys_three_bad_500_requests_all_succeed);

const REQUESTS: usize = 500;
const CLIENTS: usize = 16;
const GOOD: [&str; 2] = ["ok-a", "ok-b"];
const BAD: [&str; 3] = ["r429long-c", "e500-d", "reset-e"];

/// Sends one request (every third one streamed) and checks its answer.
/// Returns the attempts the gateway reported.
async fn one_request(gw: &TestGateway, token: &str, index: usize) -> anyhow::Result<u32> {
    let stream = index.is_multiple_of(3);
    let mut body = chat_body("mock-gpt", &format!("request {index}"));
    if stream {
        body["stream"] = json!(true);
    }
    let reply = gw.chat(token, body).await?;
    anyhow::ensure!(
        reply.status == 200,
        "request {index}: {} {}",
        reply.status,
        reply.text()
    );
    let attempts: u32 = reply
        .header("x-switchyard-attempts")
        .context("no attempts header")?
        .parse()?;
    let text = reply.text();
    if stream {
        anyhow::ensure!(
            text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\""),
            "request {index}: {text}"
        );
    } else {
        let answer: Value = reply.json()?;
        anyhow::ensure!(
            answer.pointer("/choices/0/message/content") == Some(&json!("one two three four five")),
            "request {index}: {answer}"
        );
    }
    Ok(attempts)
}

async fn five_keys_three_bad_500_requests_all_succeed(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let keys = [GOOD[0], GOOD[1], BAD[0], BAD[1], BAD[2]];
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &keys);
        provider.strategy = KeyStrategy::RoundRobin;
        // Enough attempts to get past all three bad keys to a good one.
        provider.retry.max_attempts = 5;
        provider.retry.failure_threshold = 1;
        provider.retry.error_cooldown = Duration::from_secs(60);
        settings.providers = vec![provider];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "chaos" })).await?;
    let started = Instant::now();

    // Sequential until every bad key has failed once (three requests with
    // round-robin: a, b, then c -> d -> e -> a).
    let mut sent = 0;
    while BAD.iter().any(|key| gw.mock.calls(key) == 0) {
        anyhow::ensure!(
            sent < 5,
            "the bad keys were not all reached: {sent} requests"
        );
        one_request(&gw, &token, sent).await?;
        sent += 1;
    }
    let (_, health) = gw
        .admin(Method::GET, "/admin/providers/mock/health", None)
        .await?;
    let resting = |id: &str| -> anyhow::Result<u64> {
        let key = health["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|key| key["id"] == id))
            .with_context(|| format!("no {id} in {health}"))?;
        key["cooldown_remaining_ms"].as_u64().context("cooldown")
    };
    // key-3 is r429long-c, key-4 e500-d, key-5 reset-e (declaration order).
    let c_rest = Duration::from_millis(resting("key-3")?);
    let concurrent_start = Instant::now();
    assert!(c_rest > Duration::from_secs(500), "{c_rest:?}");
    assert!(
        resting("key-4")? > 50_000 && resting("key-5")? > 50_000,
        "{health}"
    );

    let results: Vec<anyhow::Result<u32>> = stream::iter(sent..REQUESTS)
        .map(|index| one_request(&gw, &token, index))
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let concurrent_took = concurrent_start.elapsed();
    for result in &results {
        if let Err(error) = result {
            anyhow::bail!("a request failed: {error:#}");
        }
    }
    // The precondition of exact counts: r429long-c never came back.
    assert!(
        concurrent_took < c_rest,
        "the concurrent part took {concurrent_took:?}, longer than r429long-c's rest of {c_rest:?}"
    );

    let calls = |key: &str| gw.mock.calls(key);
    assert_eq!(
        BAD.map(calls),
        [1, 1, 1],
        "bad keys: {:?}",
        BAD.map(|key| (key, calls(key)))
    );
    assert_eq!(calls(GOOD[0]) + calls(GOOD[1]), REQUESTS as u64);
    // Round-robin shares the good keys' work.
    assert!(
        calls(GOOD[0]) > 150 && calls(GOOD[1]) > 150,
        "{:?}",
        GOOD.map(calls)
    );
    let total = gw.mock.total_calls();
    assert_eq!(total, REQUESTS as u64 + 3);

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), REQUESTS);
    assert!(
        logs.iter()
            .all(|row| row.status == 200 && row.error_class.is_none())
    );
    let attempts: i64 = logs.iter().map(|row| i64::from(row.attempts)).sum();
    assert_eq!(attempts, total as i64);
    // One request went through all three bad keys; every other took one attempt.
    let mut per_request: Vec<i32> = logs.iter().map(|row| row.attempts).collect();
    per_request.sort_unstable();
    assert_eq!(per_request.last(), Some(&4));
    assert_eq!(
        per_request.iter().filter(|&&n| n == 1).count(),
        REQUESTS - 1
    );
    assert_eq!(
        logs.iter().filter(|row| row.stream).count(),
        REQUESTS.div_ceil(3)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    gw.stop().await
}
