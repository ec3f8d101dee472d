//! Bounded storage (issue 13, item 6), on the real gateway and both
//! databases: `usage.retention` deletes old request logs in batches in the
//! background while new ones stay, the hourly and daily rollups keep the
//! metrics' figures across the deletion, and the export route (and
//! `switchyard admin logs export`) writes JSON lines and CSV with filters.

pub mod common;

use anyhow::{Context, ensure};
use common::process::run_cli;
use common::{MASTER_KEY, TestGateway, chat_body, mock_provider};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::StartOptions;
use switchyard::clock::ManualClock;
use switchyard::config::{Backend, PriceSettings, RetrySettings};

on_both_backends!(
    retention_deletes_only_old_rows_and_the_metrics_keep_their_figures,
    retention_deletes_in_batches_of_the_configured_size,
    export_writes_json_lines_and_csv_with_filters,
    export_pages_through_more_rows_than_one_page,
);

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn unix(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// A gateway on a manual clock at `T0` with the mock (`mock-gpt`, priced
/// $1/$2 per million tokens) and a failing provider (`bad-gpt`), retention
/// as given (`None`: off).
async fn gateway(
    backend: Backend,
    retention: Option<Duration>,
    batch_rows: i64,
) -> anyhow::Result<(TestGateway, std::sync::Arc<ManualClock>)> {
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
            let served = mock_provider(mock, "mock", &["mock-gpt"], &["ok-1"]);
            let mut bad = mock_provider(mock, "bad", &["bad-gpt"], &["e500-1"]);
            bad.retry = one_attempt;
            settings.providers = vec![served, bad];
            settings.prices = vec![PriceSettings {
                model: "mock-gpt".to_owned(),
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
                ..Default::default()
            }];
            if let Some(retention) = retention {
                settings.usage.retention = retention;
                settings.usage.retention_interval = Duration::from_millis(100);
            }
            settings.usage.retention_batch_rows = batch_rows;
            settings.usage.retention_batch_pause = Duration::from_millis(1);
        },
    )
    .await?;
    Ok((gw, clock))
}

/// Sends `n` chats for `model` with `token`, each answered with `status`.
async fn chats(
    gw: &TestGateway,
    token: &str,
    model: &str,
    n: usize,
    status: u16,
) -> anyhow::Result<()> {
    for i in 0..n {
        let reply = gw.chat(token, chat_body(model, &"x".repeat(i + 1))).await?;
        ensure!(
            reply.status.as_u16() == status,
            "{model}: {} not {status}",
            reply.status
        );
    }
    Ok(())
}

/// The figures of the metrics routes that must not change when old rows
/// go: counts, tokens and cost of the summary, the distribution, the daily
/// series and the week's top models.
async fn figures(gw: &TestGateway, from: i64, to: i64) -> anyhow::Result<Value> {
    let admin = gw.admin_client();
    let range = format!("from={}&to={}", unix(from), unix(to));
    let summary = admin
        .get(&format!("/admin/metrics/summary?{range}"))
        .await?;
    let distribution = admin
        .get(&format!("/admin/metrics/models-distribution?{range}"))
        .await?;
    let series = admin
        .get(&format!("/admin/metrics/timeseries?{range}&bucket=day"))
        .await?;
    let top = admin.get("/admin/metrics/top?by=model&range=week").await?;
    let keep = |value: &Value, fields: &[&str]| -> Value {
        Value::Object(
            fields
                .iter()
                .map(|field| ((*field).to_owned(), value[*field].clone()))
                .collect(),
        )
    };
    let counts = [
        "requests",
        "successes",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_nanos",
        "unpriced_requests",
    ];
    let rows = |value: &Value, key: &str, fields: &[&str]| -> Vec<Value> {
        value[key]
            .as_array()
            .map(|rows| rows.iter().map(|row| keep(row, fields)).collect())
            .unwrap_or_default()
    };
    Ok(json!({
        "summary": keep(&summary, &counts),
        "distribution": rows(&distribution, "data", &["model", "requests", "successes", "prompt_tokens", "completion_tokens", "cost_nanos"]),
        "series": rows(&series, "data", &["start", "requests", "errors", "tokens", "cost_nanos"]),
        "top": rows(&top, "items", &["name", "requests", "prompt_tokens", "completion_tokens", "cost_nanos"]),
    }))
}

async fn retention_deletes_only_old_rows_and_the_metrics_keep_their_figures(
    backend: Backend,
) -> anyhow::Result<()> {
    let (gw, clock) = gateway(backend, Some(Duration::from_secs(2 * 86_400)), 2).await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    // Old traffic on day 1 (00:00 and 00:30), new traffic on day 2, 23:00.
    chats(&gw, &token, "mock-gpt", 3, 200).await?;
    clock.advance(30 * MINUTE);
    chats(&gw, &token, "bad-gpt", 2, 502).await?;
    clock.set(T0 + 47 * HOUR);
    chats(&gw, &token, "mock-gpt", 2, 200).await?;
    let all = gw.request_logs().await?;
    assert_eq!(all.len(), 7);
    let (old, new): (Vec<_>, Vec<_>) = all.iter().partition(|row| row.created_at < T0 + HOUR);
    assert_eq!((old.len(), new.len()), (5, 2));

    // Before: the cutoff (now - 2 days, to the hour) is T0 - 1 h, so
    // nothing is due; the range's edges are read from the request logs.
    let from = T0 - 10 * MINUTE;
    let to = T0 + 2 * DAY + 30 * MINUTE;
    let before = figures(&gw, from, to).await?;
    assert_eq!(before["summary"]["requests"], 7, "{before}");
    assert_eq!(before["summary"]["successes"], 5, "{before}");

    // One hour later the cutoff is T0 + 1 h: the five old rows go, in
    // batches of two, the two new ones stay.
    clock.set(T0 + 2 * DAY + HOUR + 10 * MINUTE);
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left = gw.request_logs().await?;
        if left.len() == new.len() {
            break left;
        }
        ensure!(
            Instant::now() < deadline,
            "retention did not delete the old rows: {} left",
            left.len()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let ids = |rows: &[&switchyard::db::RequestLog]| -> Vec<i64> {
        rows.iter().map(|row| row.id).collect()
    };
    assert_eq!(
        ids(&left.iter().collect::<Vec<_>>()),
        ids(&new),
        "only the old rows went"
    );

    // After: the same counts, tokens and cost, from the rollups.
    let after = figures(&gw, from, to).await?;
    assert_eq!(after, before);
    // The old day's requests are still counted although their rows are gone.
    let summary = gw
        .admin_client()
        .get(&format!(
            "/admin/metrics/summary?from={}&to={}",
            unix(T0),
            unix(T0 + DAY)
        ))
        .await?;
    assert_eq!(summary["requests"], 5, "{summary}");
    assert_eq!(summary["percentiles"], "histogram", "{summary}");
    gw.stop().await
}

async fn retention_deletes_in_batches_of_the_configured_size(
    backend: Backend,
) -> anyhow::Result<()> {
    // Retention off: the sweep is run by hand on the gateway's database.
    let (gw, clock) = gateway(backend, None, 5000).await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    chats(&gw, &token, "mock-gpt", 5, 200).await?;
    clock.advance(HOUR);
    chats(&gw, &token, "mock-gpt", 2, 200).await?;
    assert_eq!(gw.request_logs().await?.len(), 7);
    let db = &gw.gateway()?.db;
    let report = switchyard::retention::sweep(db, T0 + HOUR, 2, Duration::ZERO).await?;
    assert_eq!(
        report,
        switchyard::retention::SweepReport {
            batches: 3,
            rows: 5
        }
    );
    let left = gw.request_logs().await?;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|row| row.created_at >= T0 + HOUR));
    // Nothing more is due: no statement deletes anything.
    let again = switchyard::retention::sweep(db, T0 + HOUR, 2, Duration::ZERO).await?;
    assert_eq!(again, switchyard::retention::SweepReport::default());
    gw.stop().await
}

/// GETs an export; returns the status and the body as text.
async fn export(gw: &TestGateway, query: &str) -> anyhow::Result<(u16, String, String)> {
    let mut response = gw
        .client
        .get(format!("{}/admin/request-logs/export?{query}", gw.url))
        .insert_header(("authorization", format!("Bearer {MASTER_KEY}")))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("export: {e}"))?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.body().limit(64 << 20).await?;
    Ok((
        response.status().as_u16(),
        content_type,
        String::from_utf8(body.to_vec())?,
    ))
}

/// The ids of JSON lines.
fn jsonl_ids(text: &str) -> anyhow::Result<Vec<i64>> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)?["id"]
                .as_i64()
                .context("no id")
        })
        .collect()
}

async fn export_writes_json_lines_and_csv_with_filters(backend: Backend) -> anyhow::Result<()> {
    let (gw, clock) = gateway(backend, None, 5000).await?;
    let alice = gw.create_token(json!({ "name": "alice" })).await?;
    let bob = gw.create_token(json!({ "name": "bob" })).await?;
    chats(&gw, &alice, "mock-gpt", 2, 200).await?;
    clock.advance(HOUR);
    chats(&gw, &bob, "bad-gpt", 1, 502).await?;
    chats(&gw, &bob, "mock-gpt", 1, 200).await?;
    clock.advance(DAY);
    chats(&gw, &alice, "mock-gpt", 1, 200).await?;
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 5);
    let ids: Vec<i64> = logs.iter().map(|row| row.id).collect();
    let listed = gw.admin_client().request_logs("limit=1000").await?;
    let mut listed: Vec<Value> = listed["data"].as_array().cloned().unwrap_or_default();
    listed.reverse();

    // JSON lines: every row of the range, oldest first, the same objects
    // as GET /admin/request-logs.
    let until = unix(T0 + 2 * DAY);
    let (status, content_type, body) =
        export(&gw, &format!("since={}&until={until}", unix(T0))).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/x-ndjson");
    let mut lines: Vec<Value> = body
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    // Plus each row's attempt log: the failed request's one attempt, null
    // for the others.
    for line in &mut lines {
        let object = line.as_object_mut().context("an object")?;
        let attempts = object.remove("attempt_log").context("no attempt_log")?;
        if object["status"] == 502 {
            assert_eq!(attempts[0]["provider"], "bad", "{attempts}");
            assert_eq!(attempts[0]["outcome"], "upstream_failed", "{attempts}");
        } else {
            assert_eq!(attempts, Value::Null);
        }
    }
    assert_eq!(lines, listed);
    // The range: `until` is exclusive, `since` inclusive (RFC 3339 too).
    let (_, _, body) = export(
        &gw,
        &format!("since=2026-01-01T00:00:00Z&until={}", unix(T0 + DAY)),
    )
    .await?;
    assert_eq!(jsonl_ids(&body)?, ids[..4].to_vec());
    let (_, _, body) = export(&gw, &format!("since={}", unix(T0 + HOUR))).await?;
    assert_eq!(
        jsonl_ids(&body)?,
        ids[2..].to_vec(),
        "until defaults to now"
    );
    // Filters, as the request-logs route's.
    let (_, _, body) = export(&gw, &format!("since={}&status_class=5xx", unix(T0))).await?;
    assert_eq!(jsonl_ids(&body)?, vec![ids[2]]);
    let (_, _, body) = export(&gw, &format!("since={}&model=bad-gpt", unix(T0))).await?;
    assert_eq!(jsonl_ids(&body)?, vec![ids[2]]);
    let alice_id = logs[0].token_id.context("no token")?;
    let (_, _, body) = export(
        &gw,
        &format!("since={}&token_id={alice_id}&status=200", unix(T0)),
    )
    .await?;
    assert_eq!(jsonl_ids(&body)?, vec![ids[0], ids[1], ids[4]]);

    // CSV: a header naming the same fields, one record per row.
    let (status, content_type, body) =
        export(&gw, &format!("since={}&format=csv&provider=mock", unix(T0))).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    assert_eq!(header, switchyard::admin::export::CSV_COLUMNS.to_vec());
    let records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let expected: Vec<&Value> = listed
        .iter()
        .filter(|row| row["provider"] == "mock")
        .collect();
    assert_eq!(records.len(), expected.len());
    assert_eq!(records.len(), 4);
    for (record, row) in records.iter().zip(expected) {
        for (column, cell) in header.iter().zip(record.iter()) {
            let want = match &row[column.as_str()] {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            assert_eq!(cell, want, "column {column}");
        }
    }
    // The attempt log is a JSON cell.
    let (_, _, body) = export(&gw, &format!("since={}&format=csv&model=bad-gpt", unix(T0))).await?;
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let record = reader.records().next().context("one row")??;
    let cell = record.get(header.len() - 1).context("attempt_log")?;
    let attempts: Value = serde_json::from_str(cell)?;
    assert_eq!(attempts[0]["provider"], "bad", "{cell}");
    // An empty export still has its header.
    let (_, _, body) = export(&gw, &format!("since={}&format=csv&model=none", unix(T0))).await?;
    assert_eq!(
        body.trim_end(),
        switchyard::admin::export::CSV_COLUMNS.join(",")
    );

    // Bad parameters: a 400 naming each.
    for (query, param) in [
        ("format=jsonl".to_owned(), "since"),
        (format!("since={}&format=xml", unix(T0)), "format"),
        ("since=yesterday".to_owned(), "since"),
        (format!("since={}&until=soon", unix(T0)), "until"),
        (format!("since={}&until={}", unix(T0), unix(T0)), "since"),
        (
            format!("since={}&status_class=6xx", unix(T0)),
            "status_class",
        ),
    ] {
        let (status, _, body) = export(&gw, &query).await?;
        assert_eq!(status, 400, "{query}: {body}");
        let error: Value = serde_json::from_str(&body)?;
        assert_eq!(error["error"]["param"], param, "{query}: {body}");
    }

    // The CLI writes the same bytes to a file, and says why it fails.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("logs.csv");
    let file_text = file.to_str().context("path")?;
    let since = unix(T0).to_string();
    let admin = [
        "admin",
        "--server",
        gw.url.as_str(),
        "--master-key",
        MASTER_KEY,
    ];
    let mut args = admin.to_vec();
    args.extend([
        "logs",
        "export",
        "--since",
        &since,
        "--format",
        "csv",
        "--provider",
        "mock",
        "--output",
        file_text,
    ]);
    let output = run_cli(dir.path(), &args, &[])?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, _, body) = export(&gw, &format!("since={}&format=csv&provider=mock", unix(T0))).await?;
    assert_eq!(std::fs::read_to_string(&file)?, body);
    let mut args = admin.to_vec();
    args.extend(["logs", "export", "--since", &since, "--model", "bad-gpt"]);
    let output = run_cli(dir.path(), &args, &[])?;
    ensure!(output.status.success());
    assert_eq!(jsonl_ids(&String::from_utf8(output.stdout)?)?, vec![ids[2]]);
    let mut args = admin.to_vec();
    args.extend([
        "logs",
        "export",
        "--since",
        "yesterday",
        "--output",
        file_text,
    ]);
    let output = run_cli(dir.path(), &args, &[])?;
    common::cli::fails_saying(&output, &["since", "400"])?;
    gw.stop().await
}

async fn export_pages_through_more_rows_than_one_page(backend: Backend) -> anyhow::Result<()> {
    let (gw, _clock) = gateway(backend, None, 5000).await?;
    // 2,500 rows written straight into the table (the export reads rows,
    // however they came), one per second from T0.
    gw.sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
         INSERT INTO request_logs (created_at, request_id, endpoint, status, latency_ms, \
         prompt_tokens, completion_tokens, cost_nanos, priced, tokens_estimated, stream, \
         attempts, record_id) \
         SELECT {T0} + i * 1000, 'req-' || i, '/v1/chat/completions', 200, i, 1, 2, 3, \
         TRUE, FALSE, FALSE, 1, 'bulk-' || i FROM n"
    ))
    .await?;
    let (status, _, body) = export(
        &gw,
        &format!("since={}&until={}", unix(T0), unix(T0) + 3000),
    )
    .await?;
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2500);
    let latencies: Vec<i64> = lines
        .iter()
        .filter_map(|row| row["latency_ms"].as_i64())
        .collect();
    assert_eq!(
        latencies,
        (1..=2500).collect::<Vec<i64>>(),
        "each row once, in order"
    );
    // A range inside: rows 1001..=1500 (created T0 + 1001 s ...).
    let (_, _, body) = export(
        &gw,
        &format!(
            "since={}&until={}&format=csv",
            unix(T0) + 1001,
            unix(T0) + 1501
        ),
    )
    .await?;
    assert_eq!(body.lines().count(), 501, "a header and 500 rows");
    gw.stop().await
}
