//! The real binary: settings validation, migrations and the admin CLI.

pub mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::process::{GatewayProcess, free_port, run_cli};
use serde_json::Value;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn invalid_settings_stop_the_process_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases: [(&str, &str, &str); 4] = [
        (
            "SWITCHYARD__SERVER__LISTEN",
            "not-an-address",
            "server.listen",
        ),
        ("SWITCHYARD__LOGGING__LEVEL", "loud", "logging.level"),
        (
            "SWITCHYARD__USAGE__FLUSH_MAX_RECORDS",
            "0",
            "usage.flush_max_records",
        ),
        (
            "SWITCHYARD__SERVER__MAX_BODY_BYTES",
            "12",
            "server.max_body_bytes",
        ),
    ];
    for (variable, value, key) in cases {
        let output = run_cli(dir.path(), &["serve"], &[(variable, value)])?;
        ensure!(!output.status.success(), "{variable}={value} was accepted");
        let message = stderr(&output);
        ensure!(
            message.contains(key),
            "{variable}: message does not name {key}: {message}"
        );
        ensure!(
            message.lines().count() == 1,
            "expected one line, got: {message}"
        );
    }
    // An unknown key in a settings file is refused too.
    let config = dir.path().join("typo.toml");
    std::fs::write(&config, "[server]\nlisten_addr = \"127.0.0.1:1\"\n")?;
    let output = run_cli(
        dir.path(),
        &["serve", "--config", config.to_str().context("path")?],
        &[],
    )?;
    ensure!(!output.status.success());
    ensure!(
        stderr(&output).contains("listen_addr"),
        "{}",
        stderr(&output)
    );
    // A ${VAR} reference to an unset variable names the variable.
    std::fs::write(
        &config,
        "[admin]\nmaster_key = \"${SWITCHYARD_TEST_UNSET_VARIABLE}\"\n",
    )?;
    let output = run_cli(
        dir.path(),
        &["serve", "--config", config.to_str().context("path")?],
        &[],
    )?;
    ensure!(!output.status.success());
    ensure!(
        stderr(&output).contains("SWITCHYARD_TEST_UNSET_VARIABLE"),
        "{}",
        stderr(&output)
    );
    // Nothing was created by the refused starts.
    ensure!(
        !dir.path().join("data").exists(),
        "a refused start created data/"
    );
    Ok(())
}

#[test]
fn migrate_creates_the_sqlite_database_and_is_idempotent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = run_cli(dir.path(), &["migrate"], &[])?;
    ensure!(first.status.success(), "{}", stderr(&first));
    ensure!(String::from_utf8_lossy(&first.stdout).contains("applied"));
    ensure!(dir.path().join("data/switchyard.db").exists());
    let second = run_cli(dir.path(), &["migrate", "run"], &[])?;
    ensure!(second.status.success(), "{}", stderr(&second));
    ensure!(String::from_utf8_lossy(&second.stdout).contains("up to date"));
    Ok(())
}

#[actix_rt::test]
async fn admin_token_commands_against_a_running_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[logging]\nlevel = \"warning\"\n"),
    )?;
    // No master key configured: the server generates data/master.key and the
    // CLI, run from the same directory, finds it there.
    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    let master = std::fs::read_to_string(dir.path().join("data/master.key"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/master.key"))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o077 == 0,
            "master key file is readable by others: {mode:o}"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
    ensure!(
        !log.contains(master.trim()),
        "the generated master key was logged"
    );

    let config_arg = config.to_str().context("path")?;
    let created = run_cli(
        dir.path(),
        &[
            "--config", config_arg, "admin", "--json", "tokens", "create", "--name", "cli-app",
            "--model", "gpt-4o*",
        ],
        &[],
    )?;
    ensure!(created.status.success(), "{}", stderr(&created));
    let created: Value = serde_json::from_slice(&created.stdout)?;
    let token = created["token"].as_str().context("no token")?;
    ensure!(token.starts_with("sy-"));
    let id = created["id"].as_i64().context("no id")?;

    let listed = run_cli(
        dir.path(),
        &["--config", config_arg, "admin", "tokens", "list"],
        &[],
    )?;
    ensure!(listed.status.success(), "{}", stderr(&listed));
    let table = String::from_utf8_lossy(&listed.stdout);
    ensure!(
        table.contains("cli-app") && table.contains("NAME"),
        "{table}"
    );
    ensure!(!table.contains(token), "the list shows the token");

    let disabled = run_cli(
        dir.path(),
        &[
            "--config",
            config_arg,
            "admin",
            "--json",
            "tokens",
            "disable",
            &id.to_string(),
        ],
        &[],
    )?;
    ensure!(disabled.status.success(), "{}", stderr(&disabled));
    let disabled: Value = serde_json::from_slice(&disabled.stdout)?;
    ensure!(disabled["enabled"] == Value::Bool(false));

    // Errors are one clear line and a failing exit code.
    let refused = run_cli(
        dir.path(),
        &[
            "--config",
            config_arg,
            "admin",
            "--master-key",
            "wrong",
            "tokens",
            "list",
        ],
        &[],
    )?;
    ensure!(!refused.status.success());
    let message = stderr(&refused);
    ensure!(
        message.contains("401") && message.lines().count() == 1,
        "{message}"
    );
    let missing = run_cli(
        dir.path(),
        &[
            "--config", config_arg, "admin", "tokens", "delete", "999999",
        ],
        &[],
    )?;
    ensure!(
        !missing.status.success() && stderr(&missing).contains("404"),
        "{}",
        stderr(&missing)
    );
    drop(process);
    Ok(())
}

#[actix_rt::test]
async fn trace_level_json_logs_never_contain_secrets() -> anyhow::Result<()> {
    let mock = mock_upstream::MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    let provider_secret = "ok-very-secret-provider-key-123456";
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
[admin]
master_key = "log-test-master-key-987654"
[logging]
level = "trace"
format = "json"
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{base}"
keys = ["{provider_secret}", "e500-another-secret-key-555"]
models = ["mock-gpt"]
"#,
            base = mock.base_url()
        ),
    )?;
    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    let client = awc::Client::default();
    let mut created = client
        .post(format!("{}/admin/tokens", process.url))
        .insert_header(("authorization", "Bearer log-test-master-key-987654"))
        .send_json(&serde_json::json!({ "name": "logs" }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created: Value = created.json().await?;
    let token = created["token"].as_str().context("no token")?.to_owned();
    for _ in 0..3 {
        let response = client
            .post(format!("{}/v1/chat/completions", process.url))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&serde_json::json!({ "model": "mock-gpt", "messages": [{ "role": "user", "content": "secret prompt text" }] }))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(response.status() == 200);
    }
    // A graceful stop flushes the asynchronous log drain; killing the process
    // could cut the last line in half.
    let mut process = process;
    process.signal("TERM")?;
    let status = process.wait_exit(Duration::from_secs(30)).await?;
    ensure!(status.success(), "gateway exited with {status}");
    let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
    // The log is JSON lines and really was written at trace level.
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    ensure!(lines.len() >= 5, "too little logged: {log}");
    for line in &lines {
        serde_json::from_str::<Value>(line).with_context(|| format!("not a JSON line: {line}"))?;
    }
    ensure!(log.contains("request.finished"), "no access lines: {log}");
    for secret in [
        provider_secret,
        "e500-another-secret-key-555",
        token.as_str(),
        "log-test-master-key-987654",
        "secret prompt text",
    ] {
        ensure!(
            !log.contains(secret),
            "the log contains a secret or a body: {secret}"
        );
    }
    Ok(())
}
