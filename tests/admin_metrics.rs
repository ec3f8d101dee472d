//! Request logs and metrics through the admin API, over real traffic: the
//! gateway on a manual clock in front of the mock (5 completion tokens per
//! answer, the prompt's bytes as prompt tokens; `e500-`/`e401-` keys fail),
//! at known times, then every filter of `/admin/request-logs` and the exact
//! figures of `/admin/metrics/*`.

pub mod common;

use anyhow::Context;
use awc::http::Method;
use common::{TestGateway, chat_body, mock_provider};
use serde_json::{Value, json};
use switchyard::StartOptions;
use switchyard::clock::ManualClock;
use switchyard::config::{Backend, PriceSettings, RetrySettings};
use switchyard::db::RequestLog;

on_both_backends!(
    request_logs_filter_by_every_field,
    metrics_summary_distribution_and_series_are_exact,
    prometheus_metrics_count_requests_and_show_key_health,
    hourly_rollups_equal_what_the_request_logs_say,
    top_ranks_models_tokens_and_providers_by_cost,
);

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// (status, requested model, upstream model, prompt tokens, cost nanos)
type LogShape<'a> = (i32, Option<&'a str>, Option<&'a str>, i64, i64);

/// The seeded traffic and what the tests need to know about it.
struct Seeded {
    gw: TestGateway,
    /// Token ids: alice's, then the default user's.
    alice_token: i64,
    default_token: i64,
    alice: i64,
    /// Every log row, oldest first.
    logs: Vec<RequestLog>,
}

/// Seven requests at known times:
///
/// | id | time (UTC) | token | model | stream | prompt | status |
/// |---|---|---|---|---|---|---|
/// | 1 | 01-01 00:00 | alice | mock-gpt | no | 4 | 200 |
/// | 2 | 01-01 00:00 | alice | mock-gpt | yes | 2 | 200 |
/// | 3 | 01-01 00:30 | default | cheap -> free-gpt (no price) | no | 3 | 200 |
/// | 4 | 01-01 01:10 | default | bad-gpt (`e500-`) | no | - | 502 |
/// | 5 | 01-01 01:10 | alice | denied-gpt (`e401-`) | no | - | 502 |
/// | 6 | 01-01 01:10 | alice | nope (unknown) | no | - | 404 |
/// | 7 | 01-02 02:00 | default | mock-gpt | no | 6 | 200 |
///
/// Every answer has 5 completion tokens; mock-gpt costs $1/$2 per million
/// prompt/completion tokens, so 4 + 10 = 14, 12 and 16 micro-USD.
async fn seed(backend: Backend) -> anyhow::Result<Seeded> {
    let clock = ManualClock::starting_at(T0);
    let gw = TestGateway::start_with(
        backend,
        StartOptions {
            clock: Some(clock.clone()),
            ..StartOptions::default()
        },
        |settings, mock| {
            let one_attempt = RetrySettings {
                max_attempts: 1,
                ..RetrySettings::default()
            };
            let mut served = mock_provider(mock, "mock", &["mock-gpt", "free-gpt"], &["ok-1"]);
            served.retry = one_attempt.clone();
            let mut bad = mock_provider(mock, "bad", &["bad-gpt"], &["e500-1"]);
            bad.retry = one_attempt.clone();
            let mut denied = mock_provider(mock, "denied", &["denied-gpt"], &["e401-1"]);
            denied.retry = one_attempt;
            settings.providers = vec![served, bad, denied];
            settings
                .redirects
                .insert("cheap".to_owned(), "free-gpt".to_owned());
            settings.prices = vec![PriceSettings {
                model: "mock-gpt".to_owned(),
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
                ..Default::default()
            }];
        },
    )
    .await?;
    let admin = gw.admin_client();
    let alice = admin.create_user(json!({ "name": "alice" })).await?;
    let alice = alice["id"].as_i64().context("no user id")?;
    let token_a = admin
        .create_token(json!({ "name": "a", "user_id": alice }))
        .await?;
    let token_b = admin.create_token(json!({ "name": "b" })).await?;
    let (a, b) = (token_a.token.as_str(), token_b.token.as_str());
    let status = |reply: common::Reply| reply.status.as_u16();
    assert_eq!(
        status(gw.chat(a, chat_body("mock-gpt", "aaaa")).await?),
        200
    );
    let mut stream = chat_body("mock-gpt", "bb");
    stream["stream"] = json!(true);
    assert_eq!(status(gw.chat(a, stream).await?), 200);
    clock.advance(30 * MINUTE);
    assert_eq!(status(gw.chat(b, chat_body("cheap", "ccc")).await?), 200);
    clock.advance(40 * MINUTE);
    assert_eq!(status(gw.chat(b, chat_body("bad-gpt", "x")).await?), 502);
    assert_eq!(status(gw.chat(a, chat_body("denied-gpt", "y")).await?), 502);
    assert_eq!(status(gw.chat(a, chat_body("nope", "z")).await?), 404);
    clock.set(T0 + DAY + 2 * HOUR);
    assert_eq!(
        status(gw.chat(b, chat_body("mock-gpt", "dddddd")).await?),
        200
    );
    let logs = gw.request_logs().await?;
    let shape: Vec<LogShape> = logs
        .iter()
        .map(|row| {
            (
                row.status,
                row.requested_model.as_deref(),
                row.upstream_model.as_deref(),
                row.prompt_tokens,
                row.cost_nanos,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (200, Some("mock-gpt"), Some("mock-gpt"), 4, 14_000),
            (200, Some("mock-gpt"), Some("mock-gpt"), 2, 12_000),
            (200, Some("cheap"), Some("free-gpt"), 3, 0),
            (502, Some("bad-gpt"), Some("bad-gpt"), 0, 0),
            (502, Some("denied-gpt"), Some("denied-gpt"), 0, 0),
            (404, Some("nope"), None, 0, 0),
            (200, Some("mock-gpt"), Some("mock-gpt"), 6, 16_000),
        ]
    );
    Ok(Seeded {
        alice_token: token_a.id,
        default_token: token_b.id,
        alice,
        logs,
        gw,
    })
}

/// The log ids (1 = oldest, as in [`seed`]) a query answers, in order.
async fn ids(seeded: &Seeded, query: &str) -> anyhow::Result<(Vec<i64>, i64)> {
    let page = seeded
        .gw
        .admin_client()
        .get(&format!("/admin/request-logs?{query}"))
        .await?;
    let first = seeded.logs.first().map_or(0, |row| row.id) - 1;
    let ids = page["data"]
        .as_array()
        .context("no data")?
        .iter()
        .filter_map(|row| row["id"].as_i64())
        .map(|id| id - first)
        .collect();
    Ok((ids, page["total"].as_i64().context("no total")?))
}

fn unix(ms: i64) -> i64 {
    ms / 1000
}

async fn request_logs_filter_by_every_field(backend: Backend) -> anyhow::Result<()> {
    let seeded = seed(backend).await?;
    let default_user = seeded
        .logs
        .get(2)
        .and_then(|row| row.user_id)
        .context("no user on row 3")?;
    let page = seeded
        .gw
        .admin_client()
        .get("/admin/request-logs?limit=2&offset=1")
        .await?;
    assert_eq!(
        (
            page["total"].clone(),
            page["limit"].clone(),
            page["offset"].clone()
        ),
        (json!(7), json!(2), json!(1))
    );
    let cases: Vec<(String, Vec<i64>)> = vec![
        (String::new(), vec![7, 6, 5, 4, 3, 2, 1]),
        ("limit=2&offset=1".to_owned(), vec![6, 5]),
        (
            format!("from={}", unix(T0 + 30 * MINUTE)),
            vec![7, 6, 5, 4, 3],
        ),
        // `to` is exclusive.
        (format!("to={}", unix(T0 + 30 * MINUTE)), vec![2, 1]),
        (
            format!(
                "from={}&to={}",
                unix(T0 + 30 * MINUTE),
                unix(T0 + 70 * MINUTE)
            ),
            vec![3],
        ),
        (
            "from=2026-01-01T01:10:00Z&to=2026-01-02".to_owned(),
            vec![6, 5, 4],
        ),
        (
            "from=2026-01-01T02:10:00%2B01:00".to_owned(),
            vec![7, 6, 5, 4],
        ),
        (format!("token_id={}", seeded.alice_token), vec![6, 5, 2, 1]),
        (format!("token_id={}", seeded.default_token), vec![7, 4, 3]),
        (format!("user_id={}", seeded.alice), vec![6, 5, 2, 1]),
        (format!("user_id={default_user}"), vec![7, 4, 3]),
        ("user_id=999999".to_owned(), vec![]),
        ("model=mock-gpt".to_owned(), vec![7, 2, 1]),
        // Requested or upstream name.
        ("model=cheap".to_owned(), vec![3]),
        ("model=free-gpt".to_owned(), vec![3]),
        ("model=nope".to_owned(), vec![6]),
        ("provider=mock".to_owned(), vec![7, 3, 2, 1]),
        ("provider=bad".to_owned(), vec![4]),
        ("provider=nobody".to_owned(), vec![]),
        ("status=502".to_owned(), vec![5, 4]),
        ("status=404".to_owned(), vec![6]),
        ("status_class=2xx".to_owned(), vec![7, 3, 2, 1]),
        ("status_class=4xx".to_owned(), vec![6]),
        ("status_class=5XX".to_owned(), vec![5, 4]),
        ("status_class=3xx".to_owned(), vec![]),
        ("stream=true".to_owned(), vec![2]),
        ("stream=false".to_owned(), vec![7, 6, 5, 4, 3, 1]),
        (
            format!("token_id={}&status_class=5xx", seeded.alice_token),
            vec![5],
        ),
        (
            format!("model=mock-gpt&stream=false&from={}", unix(T0 + HOUR)),
            vec![7],
        ),
    ];
    for (query, expected) in cases {
        let (found, total) = ids(&seeded, &query).await?;
        assert_eq!(found, expected, "{query}");
        if !query.contains("limit") {
            assert_eq!(total, expected.len() as i64, "{query}");
        }
    }
    let refused = [
        ("from=yesterday", Some("from")),
        ("to=2026-13-01", Some("to")),
        ("from=2026-01-02&to=2026-01-01", Some("from")),
        ("token_id=abc", Some("token_id")),
        ("user_id=1.5", Some("user_id")),
        ("model=", Some("model")),
        ("provider=%20", Some("provider")),
        ("status=700", Some("status")),
        ("status=ok", Some("status")),
        ("status_class=6xx", Some("status_class")),
        ("status=200&status_class=2xx", Some("status_class")),
        ("stream=maybe", Some("stream")),
        ("limit=0", None),
        ("offset=-1", None),
        ("colour=blue", None),
    ];
    for (query, param) in refused {
        let (status, answer) = seeded
            .gw
            .admin(Method::GET, &format!("/admin/request-logs?{query}"), None)
            .await?;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(
            answer["error"]["param"].as_str(),
            param,
            "{query}: {answer}"
        );
    }
    seeded.gw.stop().await
}

/// Nearest-rank percentile `p` of `values`.
fn nearest(p: usize, values: &[i64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len()).div_ceil(100);
    rank.checked_sub(1)
        .and_then(|index| sorted.get(index))
        .map_or(Value::Null, |value| json!(value))
}

async fn metrics_summary_distribution_and_series_are_exact(backend: Backend) -> anyhow::Result<()> {
    let seeded = seed(backend).await?;
    let gw = &seeded.gw;
    let latency = |rows: &[usize]| -> Vec<i64> {
        rows.iter()
            .filter_map(|row| seeded.logs.get(row - 1))
            .map(|row| row.latency_ms)
            .collect()
    };
    let successes = latency(&[1, 2, 3, 7]);
    let ttft: Vec<i64> = seeded.logs.iter().filter_map(|row| row.ttft_ms).collect();
    assert_eq!(ttft.len(), 1, "only the stream has a time to first token");

    let range = format!("from={}&to={}", unix(T0), unix(T0 + 2 * DAY));
    let summary = gw
        .admin_client()
        .get(&format!("/admin/metrics/summary?{range}"))
        .await?;
    assert_eq!(
        summary,
        json!({
            "from": unix(T0),
            "to": unix(T0 + 2 * DAY),
            "requests": 7,
            "successes": 4,
            "success_rate": 4.0 / 7.0,
            "errors": { "4xx": 1, "5xx": 2, "other": 0 },
            "prompt_tokens": 15,
            "completion_tokens": 20,
            "total_tokens": 35,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "images": 0,
            "characters": 0,
            "audio_ms": 0,
            "search_units": 0,
            "cost_usd": 0.000_042,
            "cost_nanos": 42_000,
            "latency_ms": {
                "p50": nearest(50, &successes),
                "p90": nearest(90, &successes),
                "p99": nearest(99, &successes),
            },
            "ttft_ms": { "p50": nearest(50, &ttft), "p99": nearest(99, &ttft) },
            "percentiles": "exact",
            // Row 3 used tokens without a price; the failures used none.
            "unpriced_requests": 1,
        })
    );
    // Only failures: no latency figures, a zero success rate.
    let failures = gw
        .admin_client()
        .get(&format!(
            "/admin/metrics/summary?from={}&to=2026-01-01T02:00:00Z",
            unix(T0 + HOUR)
        ))
        .await?;
    assert_eq!(failures["requests"], 3);
    assert_eq!(failures["success_rate"], 0.0);
    assert_eq!(
        failures["errors"],
        json!({ "4xx": 1, "5xx": 2, "other": 0 })
    );
    assert_eq!(
        failures["latency_ms"],
        json!({ "p50": null, "p90": null, "p99": null })
    );
    assert_eq!(failures["ttft_ms"], json!({ "p50": null, "p99": null }));
    // Nothing at all: no rate.
    let empty = gw
        .admin_client()
        .get("/admin/metrics/summary?from=2025-01-01&to=2025-01-02")
        .await?;
    assert_eq!(
        (empty["requests"].clone(), empty["success_rate"].clone()),
        (json!(0), Value::Null)
    );
    // By default the last 24 hours up to now (the clock is at row 7).
    let recent = gw.admin_client().get("/admin/metrics/summary").await?;
    assert_eq!(
        (recent["requests"].clone(), recent["cost_nanos"].clone()),
        (json!(1), json!(16_000))
    );

    let models = gw
        .admin_client()
        .get(&format!("/admin/metrics/models-distribution?{range}"))
        .await?;
    let row = |model: &str, requests: i64, successes: i64, prompt: i64, cost: i64| {
        json!({
            "model": model,
            "requests": requests,
            "successes": successes,
            "prompt_tokens": prompt,
            "completion_tokens": 5 * successes,
            "total_tokens": prompt + 5 * successes,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "images": 0,
            "characters": 0,
            "audio_ms": 0,
            "search_units": 0,
            "cost_usd": cost as f64 / 1e9,
            "cost_nanos": cost,
            "share": requests as f64 / 7.0,
        })
    };
    assert_eq!(
        models,
        json!({
            "from": unix(T0),
            "to": unix(T0 + 2 * DAY),
            "requests": 7,
            "data": [
                row("mock-gpt", 3, 3, 12, 42_000),
                row("bad-gpt", 1, 0, 0, 0),
                row("cheap", 1, 1, 3, 0),
                row("denied-gpt", 1, 0, 0, 0),
                row("nope", 1, 0, 0, 0),
            ],
        })
    );

    let hourly = gw
        .admin_client()
        .get(&format!(
            "/admin/metrics/timeseries?from={}&to={}&bucket=hour",
            unix(T0),
            unix(T0 + 3 * HOUR)
        ))
        .await?;
    // `successes`: the rows (1 = oldest) whose latencies and times to first
    // token the bucket's percentiles are of.
    let bucket =
        |start: i64, requests: i64, errors: i64, tokens: i64, cost: i64, successes: &[usize]| {
            let ttft: Vec<i64> = successes
                .iter()
                .filter_map(|row| seeded.logs.get(row - 1))
                .filter_map(|row| row.ttft_ms)
                .collect();
            json!({
                "start": unix(start),
                "requests": requests,
                "errors": errors,
                "tokens": tokens,
                "cost_usd": cost as f64 / 1e9,
                "cost_nanos": cost,
                "p50_latency_ms": nearest(50, &latency(successes)),
                "p99_latency_ms": nearest(99, &latency(successes)),
                "p50_ttft_ms": nearest(50, &ttft),
                "p99_ttft_ms": nearest(99, &ttft),
            })
        };
    assert_eq!(
        hourly,
        json!({
            "from": unix(T0),
            "to": unix(T0 + 3 * HOUR),
            "bucket": "hour",
            "data": [
                bucket(T0, 3, 0, 24, 26_000, &[1, 2, 3]),
                bucket(T0 + HOUR, 3, 3, 0, 0, &[]),
                bucket(T0 + 2 * HOUR, 0, 0, 0, 0, &[]),
            ],
        })
    );
    let daily = gw
        .admin_client()
        .get(&format!("/admin/metrics/timeseries?{range}&bucket=day"))
        .await?;
    assert_eq!(
        daily["data"],
        json!([
            bucket(T0, 6, 3, 24, 26_000, &[1, 2, 3]),
            bucket(T0 + DAY, 1, 0, 11, 16_000, &[7]),
        ])
    );
    // A range that starts inside a bucket: the bucket is listed from its
    // start, with the range's requests only.
    let partial = gw
        .admin_client()
        .get(&format!(
            "/admin/metrics/timeseries?from={}&to={}",
            unix(T0 + 30 * MINUTE),
            unix(T0 + HOUR)
        ))
        .await?;
    assert_eq!(partial["data"], json!([bucket(T0, 1, 0, 8, 0, &[3])]));
    // By default, the last 30 days by day: every request is in.
    let month = gw
        .admin_client()
        .get("/admin/metrics/timeseries?bucket=day")
        .await?;
    let buckets = month["data"].as_array().context("data")?;
    assert_eq!(buckets.len(), 31);
    let total: i64 = buckets.iter().filter_map(|b| b["requests"].as_i64()).sum();
    assert_eq!(total, 7);
    for (query, param) in [
        ("bucket=week", "bucket"),
        ("bucket=hour&from=0", "from"),
        ("from=later", "from"),
    ] {
        let (status, answer) = gw
            .admin(
                Method::GET,
                &format!("/admin/metrics/timeseries?{query}"),
                None,
            )
            .await?;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["param"], param, "{query}");
    }
    let (status, _) = gw
        .admin(
            Method::GET,
            "/admin/metrics/summary?from=2026-01-02&to=2026-01-01",
            None,
        )
        .await?;
    assert_eq!(status, 400);
    seeded.gw.stop().await
}

async fn prometheus_metrics_count_requests_and_show_key_health(
    backend: Backend,
) -> anyhow::Result<()> {
    let seeded = seed(backend).await?;
    let gw = &seeded.gw;
    let refused = gw.send(Method::GET, "/metrics", &[], None).await?;
    assert_eq!(refused.status, 401, "the admin credential is needed");
    let authorization = format!("Bearer {}", common::MASTER_KEY);
    let reply = gw
        .send(
            Method::GET,
            "/metrics",
            &[("authorization", authorization.as_str())],
            None,
        )
        .await?;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    let requests: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("switchyard_requests_total{"))
        .collect();
    assert_eq!(
        requests,
        vec![
            r#"switchyard_requests_total{provider="",status="404"} 1"#,
            r#"switchyard_requests_total{provider="bad",status="502"} 1"#,
            r#"switchyard_requests_total{provider="denied",status="502"} 1"#,
            r#"switchyard_requests_total{provider="mock",status="200"} 4"#,
        ]
    );
    for line in [
        "# TYPE switchyard_requests_total counter",
        "# TYPE switchyard_key_state gauge",
        r#"switchyard_key_state{provider="mock",key="key-1",state="healthy"} 1"#,
        // The upstream's 401 disabled the key.
        r#"switchyard_key_state{provider="denied",key="key-1",state="disabled"} 1"#,
        r#"switchyard_key_successes_total{provider="mock",key="key-1"} 4"#,
        r#"switchyard_key_failures_total{provider="bad",key="key-1"} 1"#,
        r#"switchyard_key_in_flight{provider="mock",key="key-1"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    seeded.gw.stop().await
}

/// A rollup row as the test computes it from request logs: the key, then
/// requests, successes, 4xx, 5xx, unpriced, prompt, completion, cost, cache
/// reads, cache writes, reasoning, and the two histograms.
type Rollup = ((i64, i64, String, String), [i64; 15], Vec<i64>, Vec<i64>);

/// What `usage_hourly` must hold for these request logs (computed here,
/// row by row, not by the gateway's SQL).
fn expected_rollups(logs: &[RequestLog]) -> Vec<Rollup> {
    use switchyard::db::rollups::{BUCKETS, bucket_of};
    let mut rows: std::collections::BTreeMap<(i64, i64, String, String), Rollup> =
        std::collections::BTreeMap::new();
    for log in logs {
        let key = (
            log.created_at / HOUR * HOUR,
            log.token_id.unwrap_or(0),
            log.requested_model.clone().unwrap_or_default(),
            log.provider.clone().unwrap_or_default(),
        );
        let row = rows
            .entry(key.clone())
            .or_insert_with(|| (key, [0; 15], vec![0; BUCKETS], vec![0; BUCKETS]));
        let success = (200..300).contains(&log.status);
        let tokens = log.prompt_tokens + log.completion_tokens;
        let units = [log.images, log.characters, log.audio_ms, log.search_units];
        let used = tokens > 0 || units.iter().any(|n| *n > 0);
        let add = [
            1,
            i64::from(success),
            i64::from((400..500).contains(&log.status)),
            i64::from((500..600).contains(&log.status)),
            i64::from(!log.priced && used),
            log.prompt_tokens,
            log.completion_tokens,
            log.cost_nanos,
            log.cache_read_tokens,
            log.cache_write_tokens,
            log.reasoning_tokens,
            log.images,
            log.characters,
            log.audio_ms,
            log.search_units,
        ];
        for (slot, by) in row.1.iter_mut().zip(add) {
            *slot += by;
        }
        if success {
            row.2[bucket_of(log.latency_ms)] += 1;
            if let Some(ttft) = log.ttft_ms {
                row.3[bucket_of(ttft)] += 1;
            }
        }
    }
    rows.into_values().collect()
}

/// The daily rollups `hourly` ones add up to (issue 13).
fn daily_of(hourly: &[Rollup]) -> Vec<Rollup> {
    let mut rows: std::collections::BTreeMap<(i64, i64, String, String), Rollup> =
        std::collections::BTreeMap::new();
    for (key, counters, latency, ttft) in hourly {
        let day = (
            key.0.div_euclid(DAY) * DAY,
            key.1,
            key.2.clone(),
            key.3.clone(),
        );
        let row = rows
            .entry(day.clone())
            .or_insert_with(|| (day, [0; 15], vec![0; latency.len()], vec![0; ttft.len()]));
        for (slot, by) in row.1.iter_mut().zip(counters) {
            *slot += by;
        }
        for (slot, by) in row.2.iter_mut().zip(latency) {
            *slot += by;
        }
        for (slot, by) in row.3.iter_mut().zip(ttft) {
            *slot += by;
        }
    }
    rows.into_values().collect()
}

/// The stored hourly rollups in the same form.
async fn stored_rollups(db: &switchyard::db::Db) -> anyhow::Result<Vec<Rollup>> {
    stored(db, switchyard::db::rollups::Rollup::Hourly).await
}

/// The stored rollups of a table in the same form.
async fn stored(
    db: &switchyard::db::Db,
    table: switchyard::db::rollups::Rollup,
) -> anyhow::Result<Vec<Rollup>> {
    use switchyard::db::rollups::Figures;
    Ok(db
        .list_rollups(table)
        .await?
        .into_iter()
        .map(|row| {
            let f = &row.figures;
            (
                (
                    row.hour,
                    row.token_id,
                    row.model.clone(),
                    row.provider.clone(),
                ),
                [
                    f.requests,
                    f.successes,
                    f.client_errors,
                    f.server_errors,
                    f.unpriced,
                    f.prompt_tokens,
                    f.completion_tokens,
                    f.cost_nanos,
                    f.cache_read_tokens,
                    f.cache_write_tokens,
                    f.reasoning_tokens,
                    f.images,
                    f.characters,
                    f.audio_ms,
                    f.search_units,
                ],
                Figures::histogram(&f.latency),
                Figures::histogram(&f.ttft),
            )
        })
        .collect())
}

/// The usage writer keeps `usage_hourly` equal to what the request logs
/// say (requests in the same hour and key merged by the upsert, failures,
/// a stream's time to first token, a request without a provider), and the
/// migration's backfill computes the same rows from the logs alone.
async fn hourly_rollups_equal_what_the_request_logs_say(backend: Backend) -> anyhow::Result<()> {
    let seeded = seed(backend).await?;
    let expected = expected_rollups(&seeded.logs);
    // Rows 1 and 2 share a key: one row holds both.
    assert_eq!(expected.len(), 6, "{expected:?}");
    let written = stored_rollups(&seeded.gw.gateway()?.db).await?;
    assert_eq!(written, expected);
    // One stream succeeded with a time to first token.
    let ttft_total: i64 = written.iter().flat_map(|row| row.3.iter()).sum();
    assert_eq!(ttft_total, 1);

    // The daily rollups (issue 13) are the same figures per day.
    let daily = daily_of(&expected);
    assert_eq!(daily.len(), 6, "every key is on one day: {daily:?}");
    let db = &seeded.gw.gateway()?.db;
    assert_eq!(
        stored(db, switchyard::db::rollups::Rollup::Daily).await?,
        daily
    );

    // The backfills: drop both tables (and the attempt log column between
    // their migrations) and build them again, the hourly
    // from the logs, the daily from the hourly (the gateway idle;
    // stopping it would drop the test database).
    let settings = seeded.gw.database();
    for version in [
        "20261204000600",
        "20261204000500",
        "20261204000400",
        "20261204000200",
        "20261204000100",
        "20261203000610",
        "20261203000500",
        "20261203000200",
    ] {
        assert_eq!(
            switchyard::db::migrate_revert(&settings).await?,
            Some(version.to_owned())
        );
    }
    assert_eq!(
        switchyard::db::migrate_run(&settings).await?,
        vec![
            "20261203000200".to_owned(),
            "20261203000500".to_owned(),
            "20261203000610".to_owned(),
            "20261204000100".to_owned(),
            "20261204000200".to_owned(),
            "20261204000400".to_owned(),
            "20261204000500".to_owned(),
            "20261204000600".to_owned(),
        ]
    );
    let db = switchyard::db::connect(&settings).await?;
    assert_eq!(stored_rollups(&db).await?, expected);
    assert_eq!(
        stored(&db, switchyard::db::rollups::Rollup::Daily).await?,
        daily
    );
    seeded.gw.stop().await
}

/// `/admin/metrics/top` ranks by cost over the last hour, day or week (the
/// clock is at row 7, 2026-01-02 02:00): the exact contract the dashboard
/// reads.
async fn top_ranks_models_tokens_and_providers_by_cost(backend: Backend) -> anyhow::Result<()> {
    let seeded = seed(backend).await?;
    let admin = seeded.gw.admin_client();
    let item = |name: &str, requests: i64, prompt: i64, completion: i64, cost: i64| {
        json!({
            "name": name,
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": cost as f64 / 1e9,
            "cost_usd": cost as f64 / 1e9,
            "cost_nanos": cost,
        })
    };
    let week = admin.get("/admin/metrics/top?by=model&range=week").await?;
    assert_eq!(week["by"], "model");
    assert_eq!(week["range"], "week");
    assert_eq!(
        week["items"],
        json!([
            item("mock-gpt", 3, 12, 15, 42_000),
            item("bad-gpt", 1, 0, 0, 0),
            item("cheap", 1, 3, 5, 0),
            item("denied-gpt", 1, 0, 0, 0),
            item("nope", 1, 0, 0, 0),
        ])
    );
    let providers = admin
        .get("/admin/metrics/top?by=provider&range=week&limit=2")
        .await?;
    // Row 6 reached no provider: not an item.
    assert_eq!(
        providers["items"],
        json!([item("mock", 4, 15, 20, 42_000), item("bad", 1, 0, 0, 0)])
    );
    let tokens = admin.get("/admin/metrics/top?by=token&range=week").await?;
    let mut alice = item("a", 4, 6, 10, 26_000);
    alice["token_id"] = json!(seeded.alice_token);
    let mut default = item("b", 3, 9, 10, 16_000);
    default["token_id"] = json!(seeded.default_token);
    assert_eq!(tokens["items"], json!([alice, default]));
    // The last day holds row 7 only; the last hour too (it ends now,
    // included); a default range is a day.
    let day = admin.get("/admin/metrics/top?by=model").await?;
    assert_eq!(day["range"], "day");
    assert_eq!(day["items"], json!([item("mock-gpt", 1, 6, 5, 16_000)]));
    let hour = admin.get("/admin/metrics/top?by=model&range=hour").await?;
    assert_eq!(hour["items"], day["items"]);
    for (query, param) in [
        ("", "by"),
        ("by=colour", "by"),
        ("by=model&range=month", "range"),
        ("by=model&limit=0", "limit"),
        ("by=model&limit=101", "limit"),
        ("by=model&limit=ten", "limit"),
    ] {
        let (status, answer) = seeded
            .gw
            .admin(Method::GET, &format!("/admin/metrics/top?{query}"), None)
            .await?;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["param"], param, "{query}: {answer}");
    }
    seeded.gw.stop().await
}
