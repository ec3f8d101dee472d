//! Graceful shutdown of the real process: in-flight requests finish, usage is
//! flushed, the exit code is 0, and a restart finds exactly one row per request.
//! Streams still open when `server.shutdown_timeout` runs out end with an
//! error event (`server_shutting_down`) and are recorded as cut by the server.

pub mod common;

use anyhow::{Context, ensure};
use common::db::TestDb;
use common::process::{GatewayProcess, free_port};
use futures_util::future::join_all;
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::Backend;

on_both_backends!(
    sigterm_finishes_in_flight_requests_and_keeps_every_row,
    streams_open_at_the_shutdown_timeout_end_with_an_error_event,
);

const MASTER: &str = "shutdown-master-key-0123456789abcdef";
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
master_key = "{MASTER}"
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
    let token = process
        .admin_client(MASTER)
        .create_token(json!({ "name": "shutdown" }))
        .await?
        .token;

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
    let logs = process
        .admin_client(MASTER)
        .request_logs("limit=1000")
        .await?;
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

async fn streams_open_at_the_shutdown_timeout_end_with_an_error_event(
    backend: Backend,
) -> anyhow::Result<()> {
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let db = TestDb::new(backend).await?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    // `streamhang-` streams send their first content, then stall for good:
    // only the shutdown can end them.
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
workers = 2
shutdown_timeout = "1s"
[database]
url = "{db_url}"
[admin]
master_key = "{MASTER}"
[logging]
level = "warning"
[upstream]
model_refresh_interval = "0s"
stream_idle_timeout = "60s"
[usage]
flush_interval = "10m"
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{base}"
keys = ["streamhang-a"]
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
    let token = process
        .admin_client(MASTER)
        .create_token(json!({ "name": "shutdown" }))
        .await?
        .token;

    // One stream per front door; the head comes with the first content, so
    // once both answered, both streams are open and stalled.
    let chat = json!({ "model": "mock-gpt", "stream": true,
        "messages": [{ "role": "user", "content": "hello" }] });
    let messages = json!({ "model": "mock-gpt", "stream": true, "max_tokens": 64,
        "messages": [{ "role": "user", "content": "hello" }] });
    let mut responses = Vec::new();
    for (path, body) in [("/v1/chat/completions", chat), ("/v1/messages", messages)] {
        let response = client
            .post(format!("{}{path}", process.url))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&body)
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        ensure!(response.status() == 200, "{path}: {}", response.status());
        responses.push((path, response));
    }
    let signalled = Instant::now();
    process.signal("TERM")?;

    for (path, mut response) in responses {
        let body = response
            .body()
            .await
            .map_err(|e| anyhow::anyhow!("{path}: the stream broke instead of ending: {e}"))?;
        let text = String::from_utf8_lossy(&body);
        let last = text
            .trim_end()
            .rsplit("\n\n")
            .next()
            .context("empty stream")?;
        let data: Value = serde_json::from_str(
            last.lines()
                .find_map(|line| line.strip_prefix("data: "))
                .context("no data in the last event")?,
        )?;
        if path == "/v1/messages" {
            ensure!(last.starts_with("event: error"), "{path}: {text}");
            ensure!(data["type"] == json!("error"), "{path}: {text}");
        } else {
            ensure!(
                data.pointer("/error/code") == Some(&json!("server_shutting_down")),
                "{path}: {text}"
            );
            ensure!(!text.contains("[DONE]"), "{path}: {text}");
        }
    }
    // Cut at the shutdown timeout, not at the idle timeout.
    ensure!(
        signalled.elapsed() < Duration::from_secs(20),
        "{:?}",
        signalled.elapsed()
    );
    let status = process.wait_exit(Duration::from_secs(30)).await?;
    ensure!(status.success(), "exit status {status}");
    drop(process);

    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    let logs = process
        .admin_client(MASTER)
        .request_logs("limit=1000")
        .await?;
    let rows = logs["data"].as_array().context("no data")?;
    ensure!(rows.len() == 2, "{rows:?}");
    ensure!(
        rows.iter().all(|row| row["status"] == json!(200)
            && row["error_class"] == json!("server_shutting_down")),
        "{rows:?}"
    );
    Ok(())
}

/// The harness's ports for child gateways come from below the kernel's
/// ephemeral range, where no test's outgoing connection can take one between
/// the check and the child's bind ("Address already in use" in full runs),
/// and each is free when handed out.
#[test]
fn child_ports_are_free_and_outside_the_ephemeral_range() -> anyhow::Result<()> {
    let first_ephemeral = common::process::first_ephemeral_port();
    for _ in 0..50 {
        let port = free_port()?;
        ensure!(
            port < first_ephemeral,
            "port {port} is in the ephemeral range (from {first_ephemeral})"
        );
        std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("port {port} was handed out but is taken"))?;
    }
    Ok(())
}
