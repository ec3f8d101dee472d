//! Reload without restart (issue 13, item 5), on the real binary: the
//! settings file is edited, then SIGHUP or `switchyard admin reload`
//! (`POST /admin/reload`) applies providers, keys, redirects and prices
//! live, keeps the health of keys that stay, names the settings that need a
//! restart, and an invalid file changes nothing.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::{Method, StatusCode};
use common::admin::AdminClient;
use common::cli::{json_out, stderr};
use common::db::TestDb;
use common::process::{GatewayProcess, free_port, run_cli};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use switchyard::config::Backend;

on_both_backends!(
    sighup_applies_a_new_provider_redirect_and_price_and_keeps_key_health,
    an_invalid_file_changes_nothing_and_admin_reload_says_why,
);

const MASTER: &str = "reload-test-master-key-0123456789abcdef";

/// The settings file: `extra` is appended (providers, redirects, prices).
fn settings(port: u16, database_url: &str, mock: &MockUpstream, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 1\n\
         [database]\nurl = \"{database_url}\"\n\
         [admin]\nmaster_key = \"{MASTER}\"\n\
         [security]\nsecret_key = \"reload-test-secret\"\n\
         [logging]\nformat = \"json\"\naccess_log = false\n\
         [[providers]]\nname = \"alpha\"\nkind = \"openai-compatible\"\n\
         base_url = \"{base}\"\nmodels = [\"alpha-model\"]\nstrategy = \"first-available\"\n\
         keys = [\"r429long-alpha\", \"ok-alpha\"]\n{extra}",
        base = mock.base_url(),
    )
}

/// The `beta` provider, a redirect to its model and its price.
fn beta(mock: &MockUpstream) -> String {
    format!(
        "[[providers]]\nname = \"beta\"\nkind = \"openai-compatible\"\n\
         base_url = \"{base}\"\nmodels = [\"beta-model\"]\nkeys = [\"ok-beta\"]\n\
         [redirects]\n\"beta-alias\" = \"beta-model\"\n\
         [[prices]]\nmodel = \"beta-model\"\ninput_per_mtok = 7.5\noutput_per_mtok = 9\n",
        base = mock.base_url(),
    )
}

/// Polls `check` until it holds or `limit` passes (the machine is loaded).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway's log lines (JSON) whose `msg` is `event`.
fn log_lines(dir: &Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join("gateway.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["msg"] == event)
        .collect()
}

async fn provider_names(admin: &AdminClient) -> anyhow::Result<Vec<String>> {
    let listed = admin.get("/admin/providers").await?;
    Ok(listed["data"]
        .as_array()
        .context("providers list")?
        .iter()
        .filter(|provider| provider["running"] == true)
        .filter_map(|provider| provider["name"].as_str().map(str::to_owned))
        .collect())
}

async fn chat(url: &str, token: &str, model: &str) -> anyhow::Result<(u16, Value)> {
    let mut response = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(token)
        .send_json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .map_err(|error| anyhow::anyhow!("chat: {error}"))?;
    let body = response.body().await?;
    Ok((
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

/// The r429long key of `alpha` is resting after a 429 (a live state the
/// database does not hold).
async fn resting_key(admin: &AdminClient) -> anyhow::Result<Value> {
    admin.key_health("alpha", "key-1").await
}

async fn sighup_applies_a_new_provider_redirect_and_price_and_keeps_key_health(
    backend: Backend,
) -> anyhow::Result<()> {
    let db = TestDb::new(backend).await?;
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, settings(port, &db.settings.url, &mock, ""))?;
    let gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let admin = gateway.admin_client(MASTER);
    let token = admin.create_token(json!({"name": "reload"})).await?.token;

    // The first key answers 429 with a long Retry-After: it rests, and the
    // request is served by the second.
    let (status, answer) = chat(&gateway.url, &token, "alpha-model").await?;
    ensure!(status == 200, "{status}: {answer}");
    let before = resting_key(&admin).await?;
    ensure!(before["state"] == "cooling_down", "{before}");
    // Before the reload, beta and its alias are unknown.
    let (status, _) = chat(&gateway.url, &token, "beta-alias").await?;
    ensure!(status == 404, "beta-alias before the reload: {status}");

    // The file gains a provider, a redirect and a price, and a new listen
    // address (which needs a restart).
    let moved = free_port()?;
    std::fs::write(
        &config,
        settings(moved, &db.settings.url, &mock, &beta(&mock)),
    )?;
    gateway.signal("HUP")?;
    eventually(Duration::from_secs(30), "the SIGHUP reload", || async {
        Ok(!log_lines(dir.path(), "settings.reloaded").is_empty())
    })
    .await?;
    ensure!(provider_names(&admin).await?.contains(&"beta".to_owned()));

    // The redirect leads to the new provider, which is served (still on the
    // old address: the listen address needs a restart).
    let (status, answer) = chat(&gateway.url, &token, "beta-alias").await?;
    ensure!(status == 200, "{status}: {answer}");
    ensure!(
        mock.calls("ok-beta") == 1,
        "ok-beta calls: {}",
        mock.calls("ok-beta")
    );
    let prices = admin.get("/admin/model-prices").await?;
    let price = prices["data"]
        .as_array()
        .context("prices")?
        .iter()
        .find(|price| price["model"] == "beta-model")
        .cloned()
        .with_context(|| format!("no beta-model price in {prices}"))?;
    ensure!(price["input_per_mtok"] == 7.5, "{price}");

    // The resting key of the provider that stayed is still resting.
    let after = resting_key(&admin).await?;
    ensure!(after["state"] == "cooling_down", "health lost: {after}");
    ensure!(
        after["failures"] == before["failures"],
        "{before} -> {after}"
    );

    // One warning names the setting that needs a restart.
    let warnings = log_lines(dir.path(), "settings.restart_needed");
    ensure!(warnings.len() == 1, "{warnings:?}");
    let keys = warnings[0]["keys"].as_str().unwrap_or_default();
    ensure!(keys == "server.listen", "{keys}");
    Ok(())
}

async fn an_invalid_file_changes_nothing_and_admin_reload_says_why(
    backend: Backend,
) -> anyhow::Result<()> {
    let db = TestDb::new(backend).await?;
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, settings(port, &db.settings.url, &mock, ""))?;
    let gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let admin = gateway.admin_client(MASTER);

    // beta is declared, but the file has an unknown key: nothing applies.
    std::fs::write(
        &config,
        settings(
            port,
            &db.settings.url,
            &mock,
            &format!("{}[limits]\nallow_unpriced_typo = true\n", beta(&mock)),
        ),
    )?;
    gateway.signal("HUP")?;
    eventually(Duration::from_secs(30), "the refused SIGHUP", || async {
        Ok(!log_lines(dir.path(), "settings.reload_refused").is_empty())
    })
    .await?;
    let refused = &log_lines(dir.path(), "settings.reload_refused")[0];
    let reason = refused["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("allow_unpriced_typo") && reason.contains("nothing was changed"),
        "{refused}"
    );
    ensure!(provider_names(&admin).await? == ["alpha"]);
    ensure!(log_lines(dir.path(), "settings.reloaded").is_empty());

    // The route says the same as a 400 in the client's error shape.
    let answer = admin
        .expect(Method::POST, "/admin/reload", None, StatusCode::BAD_REQUEST)
        .await?;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains("allow_unpriced_typo"), "{answer}");
    ensure!(provider_names(&admin).await? == ["alpha"]);

    // Fixed, `switchyard admin reload` applies it and reports what it did.
    std::fs::write(
        &config,
        settings(port, &db.settings.url, &mock, &beta(&mock)),
    )?;
    let config_arg = config.to_str().context("path")?;
    let output = run_cli(
        dir.path(),
        &[
            "--config",
            config_arg,
            "admin",
            "--server",
            &gateway.url,
            "--json",
            "reload",
        ],
        &[],
    )?;
    let report = json_out(output)?;
    ensure!(
        report["providers"]
            == json!([{"name": "alpha", "outcome": "updated"}, {"name": "beta", "outcome": "started"}]),
        "{report}"
    );
    ensure!(report["restart_needed"] == json!([]), "{report}");
    ensure!(report["redirects"] == 1, "{report}");
    ensure!(provider_names(&admin).await? == ["alpha", "beta"]);

    // The table form, and a wrong credential is one line.
    let output = run_cli(
        dir.path(),
        &[
            "--config",
            config_arg,
            "admin",
            "--server",
            &gateway.url,
            "reload",
        ],
        &[],
    )?;
    ensure!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    ensure!(
        printed.contains("Settings reloaded: providers alpha (updated), beta (updated)"),
        "{printed}"
    );
    let output = run_cli(
        dir.path(),
        &[
            "--config",
            config_arg,
            "admin",
            "--server",
            &gateway.url,
            "--master-key",
            "wrong",
            "reload",
        ],
        &[],
    )?;
    ensure!(!output.status.success() && stderr(&output).trim_end().lines().count() == 1);
    Ok(())
}
