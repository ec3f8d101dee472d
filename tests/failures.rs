//! Upstream failures end to end: failover between keys, retries with exact
//! call counts, the status and error code the client sees, key health, broken
//! streams, and exactly one usage row per request whatever happened.

pub mod common;

use anyhow::Context;
use common::{Reply, TestGateway, chat_body, mock_provider, sse_data, stream_chat_body};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::{Backend, Secret, Settings};
use switchyard::db::RequestLog;
use switchyard_actors::KeyStrategy;

on_both_backends!(
    a_failing_key_fails_over_to_the_next,
    every_key_failing_is_502_after_max_attempts,
    a_lone_failing_key_is_retried_after_backoff_then_rests,
    rate_limited_keys_give_429_with_retry_after,
    a_hung_upstream_is_504_after_the_first_byte_timeout,
    a_reset_connection_is_502,
    a_malformed_answer_is_502_or_fails_over,
    a_rejected_key_is_disabled_for_good,
    an_upstream_client_error_is_relayed_not_retried,
    a_stream_cut_after_content_ends_with_an_error_event,
    a_stalled_stream_ends_with_an_idle_timeout_event,
    a_slow_stream_longer_than_the_idle_timeout_is_not_cut,
    a_stream_failing_before_its_first_byte_fails_over_invisibly,
    a_client_leaving_mid_stream_still_gets_a_row,
    a_client_leaving_a_stalled_stream_is_noticed_at_once,
);

/// A gateway whose `mock` provider has exactly `keys`, tried in order
/// (first-available), then `configure`.
async fn gateway(
    backend: Backend,
    keys: &[&str],
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], keys);
        provider.strategy = KeyStrategy::FirstAvailable;
        settings.providers = vec![provider];
        configure(settings);
    })
    .await
}

async fn new_token(gw: &TestGateway) -> anyhow::Result<String> {
    gw.create_token(json!({ "name": "failures" })).await
}

/// A streamed chat through `gw` with a new token, answered 200, and how
/// long the whole answer took.
async fn timed_stream(gw: &TestGateway) -> anyhow::Result<(Reply, Duration)> {
    let token = new_token(gw).await?;
    let started = Instant::now();
    let reply = gw
        .chat(&token, stream_chat_body("mock-gpt", "hello"))
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(reply.status == 200, "{}", reply.text());
    Ok((reply, elapsed))
}

fn stream_content(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|value| {
            value
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// Asserts the OpenAI error shape and code; returns the message.
fn expect_error(reply: &Reply, status: u16, code: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        reply.status == status,
        "expected {status}, got {}: {}",
        reply.status,
        reply.text()
    );
    let body = reply.json()?;
    let error = body.get("error").context("no error object")?;
    anyhow::ensure!(error["code"] == code, "expected code {code}: {body}");
    anyhow::ensure!(error["type"].is_string(), "{body}");
    anyhow::ensure!(reply.header("x-request-id").is_some(), "no x-request-id");
    Ok(error["message"].as_str().unwrap_or_default().to_owned())
}

/// The single row the request left: (status, error_class, attempts).
fn only_row(logs: &[RequestLog]) -> anyhow::Result<(i32, Option<&str>, i32)> {
    anyhow::ensure!(logs.len() == 1, "expected one row: {logs:?}");
    let row = &logs[0];
    Ok((row.status, row.error_class.as_deref(), row.attempts))
}

async fn a_failing_key_fails_over_to_the_next(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["e500-fo", "ok-fo"], |_| {}).await?;
    let token = new_token(&gw).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("2"));
    assert_eq!((gw.mock.calls("e500-fo"), gw.mock.calls("ok-fo")), (1, 1));
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (200, None, 2));
    // The row names the attempt that answered.
    assert_eq!(logs[0].key_id.as_deref(), Some("key-2"));
    assert_eq!((logs[0].prompt_tokens, logs[0].completion_tokens), (5, 5));
    gw.stop().await
}

async fn every_key_failing_is_502_after_max_attempts(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["e500-all1", "e500-all2"], |settings| {
        settings.providers[0].retry.max_attempts = 2;
    })
    .await?;
    let token = new_token(&gw).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    let message = expect_error(&reply, 502, "upstream_failed")?;
    // The upstream's own error body is not passed on.
    assert!(!message.contains("(mock)"), "{message}");
    assert_eq!(
        (gw.mock.calls("e500-all1"), gw.mock.calls("e500-all2")),
        (1, 1)
    );
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (502, Some("upstream_failed"), 2));
    gw.stop().await
}

/// One key, three attempts: the key is retried after a backoff each time;
/// the third consecutive failure opens its circuit, so the next request does
/// not reach it at all.
async fn a_lone_failing_key_is_retried_after_backoff_then_rests(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, &["e500-lone"], |settings| {
        let retry = &mut settings.providers[0].retry;
        retry.max_attempts = 3;
        retry.failure_threshold = 3;
        retry.backoff_base = Duration::from_millis(20);
        retry.error_cooldown = Duration::from_secs(30);
    })
    .await?;
    let token = new_token(&gw).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    expect_error(&reply, 502, "upstream_failed")?;
    assert_eq!(gw.mock.calls("e500-lone"), 3);

    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    expect_error(&reply, 503, "no_healthy_upstream")?;
    let retry_after: u64 = reply
        .header("retry-after")
        .context("no Retry-After")?
        .parse()?;
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(gw.mock.calls("e500-lone"), 3);

    let logs = gw.request_logs().await?;
    let rows = common::outcomes(&logs);
    assert_eq!(
        rows,
        vec![
            (502, Some("upstream_failed"), 3),
            (503, Some("no_healthy_upstream"), 0)
        ]
    );
    gw.stop().await
}

async fn rate_limited_keys_give_429_with_retry_after(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["r429-x", "r429-y"], |_| {}).await?;
    let token = new_token(&gw).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    expect_error(&reply, 429, "rate_limited")?;
    // The mock's `Retry-After: 2`.
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert_eq!((gw.mock.calls("r429-x"), gw.mock.calls("r429-y")), (1, 1));

    // Both keys now rest for the upstream's two seconds: the next request
    // does not reach them and says how long to wait.
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    expect_error(&reply, 429, "rate_limited")?;
    let retry_after: u64 = reply
        .header("retry-after")
        .context("no Retry-After")?
        .parse()?;
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!((gw.mock.calls("r429-x"), gw.mock.calls("r429-y")), (1, 1));

    let logs = gw.request_logs().await?;
    let rows = common::outcomes(&logs);
    assert_eq!(
        rows,
        vec![
            (429, Some("rate_limited"), 2),
            (429, Some("rate_limited"), 0)
        ]
    );
    gw.stop().await
}

async fn a_hung_upstream_is_504_after_the_first_byte_timeout(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, &["hang-h"], |settings| {
        settings.upstream.first_byte_timeout = Duration::from_millis(300);
        settings.providers[0].retry.max_attempts = 1;
    })
    .await?;
    let token = new_token(&gw).await?;
    let started = Instant::now();
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    let elapsed = started.elapsed();
    expect_error(&reply, 504, "upstream_timeout")?;
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(gw.mock.calls("hang-h"), 1);
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (504, Some("upstream_timeout"), 1));
    gw.stop().await
}

async fn a_reset_connection_is_502(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["reset-r"], |settings| {
        settings.providers[0].retry.max_attempts = 1;
    })
    .await?;
    let token = new_token(&gw).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    expect_error(&reply, 502, "upstream_failed")?;
    assert_eq!(gw.mock.calls("reset-r"), 1);
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (502, Some("upstream_failed"), 1));
    gw.stop().await
}

async fn a_malformed_answer_is_502_or_fails_over(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut alone = mock_provider(mock, "alone", &["alone-gpt"], &["badjson-alone"]);
        alone.retry.max_attempts = 1;
        let mut mixed = mock_provider(mock, "mixed", &["mock-gpt"], &["badjson-m", "ok-m"]);
        mixed.strategy = KeyStrategy::FirstAvailable;
        settings.providers = vec![alone, mixed];
    })
    .await?;
    let token = new_token(&gw).await?;
    let reply = gw.chat(&token, chat_body("alone-gpt", "hello")).await?;
    expect_error(&reply, 502, "upstream_failed")?;
    assert_eq!(gw.mock.calls("badjson-alone"), 1);

    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(reply.header("x-switchyard-provider"), Some("mixed"));
    let answer = reply.json()?;
    assert_eq!(
        answer.pointer("/choices/0/message/content"),
        Some(&json!("one two three four five"))
    );
    assert_eq!((gw.mock.calls("badjson-m"), gw.mock.calls("ok-m")), (1, 1));

    let logs = gw.request_logs().await?;
    let rows = common::outcomes(&logs);
    assert_eq!(
        rows,
        vec![(502, Some("upstream_failed"), 1), (200, None, 2)]
    );
    gw.stop().await
}

async fn a_rejected_key_is_disabled_for_good(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["e401-k", "ok-k"], |_| {}).await?;
    let token = new_token(&gw).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("2"));
    // First-available would pick e401-k first if it were still enabled.
    for _ in 0..3 {
        let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("x-switchyard-attempts"), Some("1"));
    }
    assert_eq!((gw.mock.calls("e401-k"), gw.mock.calls("ok-k")), (1, 4));
    let logs = gw.request_logs().await?;
    let attempts: Vec<(i32, i32)> = logs.iter().map(|row| (row.status, row.attempts)).collect();
    assert_eq!(attempts, vec![(200, 2), (200, 1), (200, 1), (200, 1)]);
    // The upstream's 401 is never shown to the client as its own 401.
    assert!(logs.iter().all(|row| row.error_class.is_none()));
    gw.stop().await
}

/// The mock answers 4xx only for requests the gateway never builds, except
/// for an unknown path: a base URL whose query swallows the endpoint path
/// makes every call a 404, which the gateway must relay as is, without
/// trying the second key or holding it against the first.
async fn an_upstream_client_error_is_relayed_not_retried(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["ok-c1", "ok-c2"], |settings| {
        settings.providers[0].base_url = format!("{}?x=", settings.providers[0].base_url);
    })
    .await?;
    let token = new_token(&gw).await?;
    for _ in 0..2 {
        let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
        assert_eq!(reply.status, 404, "{}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("unknown_url"));
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.header("x-request-id").is_some());
    }
    // Not retried, and the first key is still the healthy first choice.
    assert_eq!((gw.mock.calls("ok-c1"), gw.mock.calls("ok-c2")), (2, 0));
    let logs = gw.request_logs().await?;
    let rows = common::outcomes(&logs);
    assert_eq!(rows, vec![(404, Some("upstream_rejected"), 1); 2]);
    gw.stop().await
}

async fn a_stream_cut_after_content_ends_with_an_error_event(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, &["streamdie-s"], |_| {}).await?;
    let token = new_token(&gw).await?;
    let reply = gw
        .chat(&token, stream_chat_body("mock-gpt", "hello"))
        .await?;
    // The head went out with the first chunk: the status is 200.
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = sse_data(&reply.body);
    assert_eq!(stream_content(&events), "one", "{events:?}");
    assert!(!events.iter().any(|data| data == "[DONE]"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().context("no events")?)?;
    assert_eq!(
        last.pointer("/error/code"),
        Some(&json!("stream_interrupted"))
    );
    assert!(last.pointer("/error/message").is_some_and(Value::is_string));
    // Content went out, so there is no failing over.
    assert_eq!(gw.mock.calls("streamdie-s"), 1);
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (200, Some("stream_interrupted"), 1));
    assert!(logs[0].stream);
    assert!(logs[0].ttft_ms.is_some());
    gw.stop().await
}

async fn a_stalled_stream_ends_with_an_idle_timeout_event(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["streamhang-s"], |settings| {
        settings.upstream.stream_idle_timeout = Duration::from_millis(300);
    })
    .await?;
    let (reply, elapsed) = timed_stream(&gw).await?;
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let events = sse_data(&reply.body);
    assert_eq!(stream_content(&events), "one", "{events:?}");
    assert!(!events.iter().any(|data| data == "[DONE]"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().context("no events")?)?;
    assert_eq!(
        last.pointer("/error/code"),
        Some(&json!("stream_idle_timeout"))
    );
    assert_eq!(gw.mock.calls("streamhang-s"), 1);
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (200, Some("stream_idle_timeout"), 1));
    gw.stop().await
}

/// The idle timeout is the longest silence, not the stream's length: a
/// stream whose chunks each come well within it, but which lasts several
/// times as long, is relayed whole.
async fn a_slow_stream_longer_than_the_idle_timeout_is_not_cut(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut slow = mock_provider(mock, "mock", &["mock-gpt"], &["ok-paced"]);
        slow.headers
            .insert("x-mock-chunk-delay-ms".to_owned(), Secret::new("100"));
        settings.providers = vec![slow];
        settings.upstream.stream_idle_timeout = Duration::from_millis(400);
    })
    .await?;
    let (reply, elapsed) = timed_stream(&gw).await?;
    let events = sse_data(&reply.body);
    // Longer than two idle timeouts, so the idle timer fired while chunks
    // kept coming.
    assert!(
        elapsed >= Duration::from_millis(800),
        "{elapsed:?} {events:?}"
    );
    assert_eq!(stream_content(&events), "one two three four five");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (200, None, 1));
    gw.stop().await
}

async fn a_stream_failing_before_its_first_byte_fails_over_invisibly(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, &["reset-sf", "e500-sf", "ok-sf"], |_| {}).await?;
    let token = new_token(&gw).await?;
    let reply = gw
        .chat(&token, stream_chat_body("mock-gpt", "hello"))
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("3"));
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let events = sse_data(&reply.body);
    assert_eq!(stream_content(&events), "one two three four five");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.iter().all(|data| !data.contains("\"error\"")),
        "{events:?}"
    );
    assert_eq!(
        (
            gw.mock.calls("reset-sf"),
            gw.mock.calls("e500-sf"),
            gw.mock.calls("ok-sf")
        ),
        (1, 1, 1)
    );
    let logs = gw.request_logs().await?;
    assert_eq!(only_row(&logs)?, (200, None, 3));
    assert_eq!(
        (
            logs[0].stream,
            logs[0].prompt_tokens,
            logs[0].completion_tokens
        ),
        (true, 5, 5)
    );
    gw.stop().await
}

/// Polls the request logs until `count` rows exist or `deadline` passes; the
/// usage actor writes them on its own `flush_interval` (200 ms in tests).
async fn wait_for_rows(
    gw: &TestGateway,
    count: usize,
    deadline: Duration,
) -> anyhow::Result<Vec<RequestLog>> {
    let until = Instant::now() + deadline;
    loop {
        let mut logs = gw.gateway()?.db.list_request_logs(100_000, 0).await?;
        if logs.len() >= count || Instant::now() >= until {
            logs.reverse();
            return Ok(logs);
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Opens a stream, reads its first chunk and hangs up.
async fn read_first_chunk_and_leave(
    gw: &TestGateway,
    token: &str,
    body: Value,
) -> anyhow::Result<()> {
    let mut response = gw.open_chat(token, &body).await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    let first = response.next().await.context("no first chunk")??;
    anyhow::ensure!(first.starts_with(b"data: "), "{first:?}");
    drop(response);
    Ok(())
}

/// A client that hangs up mid-stream still leaves exactly one row, 499
/// `client_disconnected`, while the upstream keeps talking.
async fn a_client_leaving_mid_stream_still_gets_a_row(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut slow = mock_provider(mock, "mock", &["mock-gpt"], &["ok-leave"]);
        slow.headers
            .insert("x-mock-chunk-delay-ms".to_owned(), Secret::new("200"));
        settings.providers = vec![slow];
    })
    .await?;
    let token = new_token(&gw).await?;
    read_first_chunk_and_leave(&gw, &token, stream_chat_body("mock-gpt", "hello")).await?;
    let logs = wait_for_rows(&gw, 1, Duration::from_secs(5)).await?;
    assert_eq!(only_row(&logs)?, (499, Some("client_disconnected"), 1));
    assert!(logs[0].stream);
    assert_eq!(gw.mock.calls("ok-leave"), 1);
    gw.stop().await
}

/// A client that hangs up while the upstream is silent is noticed at once
/// (`upstream.cancel_on_client_disconnect`), not at the idle timeout. With
/// the setting off (actix-http's default), the client's FIN is taken as a
/// half-close and this fails every time; with it on, the handler is dropped
/// within milliseconds of the FIN. It used to look flaky even then because
/// polling `flush_usage` could spill the 499 row (see `wait_for_rows`).
async fn a_client_leaving_a_stalled_stream_is_noticed_at_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, &["streamhang-leave"], |settings| {
        settings.upstream.stream_idle_timeout = Duration::from_secs(30);
    })
    .await?;
    let token = new_token(&gw).await?;
    let started = Instant::now();
    read_first_chunk_and_leave(&gw, &token, stream_chat_body("mock-gpt", "hello")).await?;
    let logs = wait_for_rows(&gw, 1, Duration::from_secs(5)).await?;
    assert_eq!(only_row(&logs)?, (499, Some("client_disconnected"), 1));
    // Noticed at once, not at the 30 s idle timeout.
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.stop().await
}
