//! Graceful shutdown of the real process: in-flight requests finish, usage is
//! flushed, the exit code is 0, and a restart finds exactly one row per request.

pub mod common;

use anyhow::{Context, ensure};
use common::db::TestDb;
use common::process::{GatewayProcess, free_port};
use futures_util::future::join_all;
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::Backend;

on_both_backends!(sigterm_finishes_in_flight_requests_and_keeps_every_row);

const REQUESTS: usize = 24;

async fn sigterm_finishes_in_flight_requests_and_keeps_every_row(
    backend: Backend,
) -> anyhow::Result<()> {
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let db = TestDb::new(backend).await?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    // Usage is flushed only every 10 minutes, so every row written below was
    // written by the shutdown flush.
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
workers = 2
shutdown_timeout = "20s"
[database]
url = "{db_url}"
[admin]
master_key = "shutdown-master-key-0123456789abcdef"
[logging]
level = "warning"
[upstream]
# The test counts the mock's calls: no model-list fetches.
model_refresh_interval = "0s"
[usage]
flush_interval = "10m"
flush_max_records = 100000
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{base}"
keys = ["slow400-a", "slow400-b"]
models = ["mock-gpt"]
"#,
            db_url = db.settings.url,
            base = mock.base_url(),
        ),
    )?;

    let mut process = GatewayProcess::start(dir.path(), &config, port).await?;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut created = client
        .post(format!("{}/admin/tokens", process.url))
        .insert_header((
            "authorization",
            "Bearer shutdown-master-key-0123456789abcdef",
        ))
        .send_json(&json!({ "name": "shutdown" }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created: Value = created.json().await?;
    let token = created["token"].as_str().context("no token")?.to_owned();

    // Every request is held ~400 ms by the upstream: all are in flight when
    // the signal arrives.
    let requests = (0..REQUESTS).map(|i| {
        let client = client.clone();
        let url = format!("{}/v1/chat/completions", process.url);
        let token = token.clone();
        actix_rt::spawn(async move {
            let mut response = client
                .post(url)
                .insert_header(("authorization", format!("Bearer {token}")))
                .send_json(&json!({ "model": "mock-gpt", "messages": [{ "role": "user", "content": format!("request {i}") }] }))
                .await
                .map_err(|e| anyhow::anyhow!("request {i}: {e}"))?;
            let body = response.body().await?;
            anyhow::Ok((response.status().as_u16(), body))
        })
    });
    let requests: Vec<_> = requests.collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.total_calls() < REQUESTS as u64 {
        ensure!(
            Instant::now() < deadline,
            "only {} requests reached the upstream",
            mock.total_calls()
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    process.signal("TERM")?;

    for (i, outcome) in join_all(requests).await.into_iter().enumerate() {
        let (status, body) = outcome??;
        ensure!(
            status == 200,
            "request {i} got {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let status = process.wait_exit(Duration::from_secs(30)).await?;
    ensure!(status.success(), "exit status {status}");
    drop(process);

    // A fresh process over the same database sees every row.
    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    let mut logs = client
        .get(format!("{}/admin/request-logs?limit=1000", process.url))
        .insert_header((
            "authorization",
            "Bearer shutdown-master-key-0123456789abcdef",
        ))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let logs: Value = logs.json().limit(10 * 1024 * 1024).await?;
    ensure!(
        logs["total"] == json!(REQUESTS),
        "expected {REQUESTS} rows, got {}",
        logs["total"]
    );
    let rows = logs["data"].as_array().context("no data")?;
    ensure!(
        rows.iter().all(|row| row["status"] == json!(200)),
        "{rows:?}"
    );
    let mut ids: Vec<&str> = rows
        .iter()
        .filter_map(|row| row["request_id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ensure!(ids.len() == REQUESTS, "request ids are not unique");
    Ok(())
}
