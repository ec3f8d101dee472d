//! The real binary's `admin providers|provider-keys|logs|metrics` commands against a
//! running gateway (SQLite) in front of the mock: tables by default, the
//! API's JSON with `--json`, one line per error, secrets never printed.

pub mod common;

use anyhow::{Context, ensure};
use common::cli::AdminCli;
use common::process::{GatewayProcess, free_port};
use serde_json::Value;
use std::time::{Duration, Instant};

const KEY: &str = "ok-cli-secret-key-0123456789";
const SECOND_KEY: &str = "ok-cli-second-key-9876543210";
const HEADER_VALUE: &str = "cli-header-secret-value";

#[actix_rt::test]
async fn admin_provider_key_log_and_metrics_commands() -> anyhow::Result<()> {
    let mock = mock_upstream::MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[logging]\nlevel = \"warning\"\n\
             [usage]\nflush_interval = \"0s\"\n"
        ),
    )?;
    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    let cli = AdminCli::new(dir.path(), &config)?.never_printing(&[KEY, SECOND_KEY, HEADER_VALUE]);
    let keys_file = dir.path().join("keys.txt");
    std::fs::write(&keys_file, format!("# the team's key\n{KEY}\n"))?;
    let header = format!("X-Team={HEADER_VALUE}");
    let base_url = mock.base_url();

    // providers add / list / show / update
    let added = cli.ok(&[
        "providers",
        "add",
        "fresh",
        "--kind",
        "openai-compatible",
        "--base-url",
        &base_url,
        "--model",
        "fresh-model",
        "--keys-file",
        keys_file.to_str().context("path")?,
        "--header",
        &header,
        "--max-attempts",
        "2",
    ])?;
    ensure!(
        added.contains("openai-compatible") && added.contains("ok-c…6789"),
        "{added}"
    );
    ensure!(added.contains("X-Team: cli-…alue"), "{added}");
    let listed = cli.ok(&["providers", "list"])?;
    ensure!(
        listed.lines().next().is_some_and(|h| h.starts_with("NAME")),
        "{listed}"
    );
    ensure!(
        listed.contains("fresh") && listed.contains("fresh-model"),
        "{listed}"
    );
    let listed = cli.json(&["providers", "list"])?;
    ensure!(listed["data"][0]["name"] == "fresh", "{listed}");
    let shown = cli.json(&["providers", "show", "fresh"])?;
    ensure!(shown["retry"]["max_attempts"] == 2, "{shown}");
    ensure!(shown["source"] == "api", "{shown}");
    let updated = cli.json(&[
        "providers",
        "update",
        "fresh",
        "--model",
        "cli-model",
        "--weight",
        "2",
        "--remove-header",
        "X-Team",
    ])?;
    ensure!(
        updated["models"] == serde_json::json!(["cli-model"]),
        "{updated}"
    );
    ensure!(updated["weight"] == 2, "{updated}");
    ensure!(updated["headers"] == serde_json::json!({}), "{updated}");

    // provider-keys add / disable / list / enable / remove
    let added = cli.ok(&[
        "provider-keys",
        "add",
        "--provider",
        "fresh",
        "--key",
        SECOND_KEY,
        "--id",
        "second",
    ])?;
    ensure!(
        added.contains("second") && added.contains("ok-c…3210"),
        "{added}"
    );
    let disabled = cli.json(&[
        "provider-keys",
        "disable",
        "--provider",
        "fresh",
        "second",
        "--reason",
        "rotated",
    ])?;
    ensure!(
        disabled["state"] == "disabled" && disabled["disabled_reason"] == "rotated",
        "{disabled}"
    );
    let keys = cli.json(&["provider-keys", "list", "--provider", "fresh"])?;
    let states: Vec<(String, String)> = keys["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .map(|key| (common_text(&key["id"]), common_text(&key["state"])))
        .collect();
    ensure!(states.len() == 2, "{keys}");
    ensure!(
        states.contains(&("second".to_owned(), "disabled".to_owned())),
        "{states:?}"
    );
    let table = cli.ok(&["provider-keys", "list", "--provider", "fresh"])?;
    ensure!(
        table.contains("KEY") && table.contains("rotated"),
        "{table}"
    );
    let enabled = cli.json(&["provider-keys", "enable", "--provider", "fresh", "second"])?;
    ensure!(enabled["state"] == "healthy", "{enabled}");
    let removed = cli.ok(&["provider-keys", "remove", "--provider", "fresh", "second"])?;
    ensure!(removed.contains("Deleted key second"), "{removed}");

    // Traffic, then logs and metrics.
    let created = cli.json(&["tokens", "create", "--name", "cli"])?;
    let token = created["token"].as_str().context("no token")?.to_owned();
    let client = awc::Client::default();
    let response = client
        .post(format!("{}/v1/chat/completions", process.url))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send_json(&serde_json::json!({
            "model": "cli-model",
            "messages": [{ "role": "user", "content": "hello" }],
        }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(response.status() == 200, "{}", response.status());
    // The usage flush is asynchronous: wait (bounded) until it landed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = cli.json(&["logs", "--model", "cli-model"])?;
        if logs["total"] == 1 || Instant::now() > deadline {
            break logs;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    ensure!(logs["total"] == 1, "{logs}");
    ensure!(logs["data"][0]["provider"] == "fresh", "{logs}");
    ensure!(logs["data"][0]["completion_tokens"] == 5, "{logs}");
    let table = cli.ok(&["logs", "--status-class", "2xx", "--provider", "fresh"])?;
    ensure!(
        table.contains("cli-model") && table.contains("1 of 1"),
        "{table}"
    );
    let none = cli.json(&["logs", "--status", "500"])?;
    ensure!(none["total"] == 0, "{none}");

    let summary = cli.json(&["metrics", "summary"])?;
    ensure!(
        summary["requests"] == 1 && summary["successes"] == 1,
        "{summary}"
    );
    ensure!(summary["completion_tokens"] == 5, "{summary}");
    let table = cli.ok(&["metrics", "summary"])?;
    ensure!(
        table.contains("success_rate:") && table.contains("100.0%"),
        "{table}"
    );
    let models = cli.ok(&["metrics", "models"])?;
    ensure!(
        models.contains("cli-model") && models.contains("100.0%"),
        "{models}"
    );
    let series = cli.json(&["metrics", "timeseries", "--bucket", "day"])?;
    let requests: i64 = series["data"]
        .as_array()
        .context("data")?
        .iter()
        .filter_map(|bucket| bucket["requests"].as_i64())
        .sum();
    ensure!(requests == 1, "{series}");
    let table = cli.ok(&["metrics", "timeseries"])?;
    ensure!(table.contains("P50_LATENCY_MS"), "{table}");

    // Errors: one line with the API's message and status.
    cli.fails(&["providers", "show", "nobody"], &["nobody", "404"])?;
    cli.fails(
        &[
            "providers",
            "add",
            "bad",
            "--kind",
            "smtp",
            "--base-url",
            "http://x",
        ],
        &["kind", "400"],
    )?;
    cli.fails(
        &[
            "providers",
            "add",
            "fresh",
            "--kind",
            "openai",
            "--base-url",
            &base_url,
        ],
        &["already exists", "409"],
    )?;
    cli.fails(&["logs", "--from", "yesterday"], &["from", "400"])?;
    cli.fails(
        &["metrics", "timeseries", "--bucket", "week"],
        &["bucket", "400"],
    )?;
    cli.fails(&["providers", "update", "fresh"], &["nothing to change"])?;

    let removed = cli.ok(&["providers", "remove", "fresh"])?;
    ensure!(removed.contains("Deleted provider fresh"), "{removed}");
    let listed = cli.json(&["providers", "list"])?;
    ensure!(listed["data"] == serde_json::json!([]), "{listed}");
    drop(process);
    Ok(())
}

fn common_text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}
