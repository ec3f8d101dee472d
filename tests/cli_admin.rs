//! The real binary's admin plane on both backends: `admin login` and the
//! commands that use its session, and `admin rotate-secret` against a
//! running gateway that keeps serving with every key, also after a restart.

pub mod common;

use anyhow::{Context, ensure};
use common::cli::{fails_saying, json_out, stdout, succeeds};
use common::db::TestDb;
use common::process::{GatewayProcess, free_port, run_cli};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use switchyard::auth::AdminSigningKey;
use switchyard::config::Backend;

on_both_backends!(
    login_keeps_a_session_that_admin_commands_use,
    rotating_the_secret_keeps_every_key_serving,
);

#[cfg(unix)]
fn mode(path: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

async fn login_keeps_a_session_that_admin_commands_use(backend: Backend) -> anyhow::Result<()> {
    let test_db = TestDb::new(backend).await?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    // The master key is off: everything below runs on the session.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"{}\"\n\
             [admin]\nmaster_key_enabled = false\n[logging]\nlevel = \"warning\"\n",
            test_db.settings.url
        ),
    )?;
    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    let url = process.url.clone();
    let key_file = dir.path().join("data/admin_ed25519.key");
    #[cfg(unix)]
    ensure!(mode(&key_file)? == 0o600);
    let bootstrap = AdminSigningKey::from_pem(&std::fs::read_to_string(&key_file)?)?;
    let fingerprint = bootstrap.public_key().fingerprint();
    let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
    ensure!(
        log.contains(&fingerprint),
        "the fingerprint was not logged: {log}"
    );
    ensure!(
        !log.contains("PRIVATE KEY"),
        "the private key was logged: {log}"
    );

    let cfg = config.to_str().context("path")?;
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        run_cli(dir.path(), &all, &[])
    };

    let logged_in = succeeds(cli(&[
        "admin",
        "login",
        "--key",
        "data/admin_ed25519.key",
        "--server",
        &url,
    ])?)?;
    ensure!(
        stdout(&logged_in).contains(&fingerprint),
        "{}",
        stdout(&logged_in)
    );
    let session_file = dir.path().join(".config/switchyard/session.json");
    #[cfg(unix)]
    ensure!(mode(&session_file)? == 0o600, "session file mode");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&session_file)?)?;
    ensure!(stored["server"] == url.as_str(), "{stored}");
    let session_token = stored["token"].as_str().context("no token")?.to_owned();
    ensure!(session_token.starts_with("sya-"));
    ensure!(
        !stdout(&logged_in).contains(&session_token),
        "login printed the token"
    );

    // Existing admin commands use the session (no --server, no master key).
    let created = json_out(cli(&[
        "admin",
        "--json",
        "tokens",
        "create",
        "--name",
        "via-session",
    ])?)?;
    ensure!(
        created["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("sy-"))
    );
    let listed = succeeds(cli(&["admin", "keys", "list"])?)?;
    ensure!(
        stdout(&listed).contains(&fingerprint),
        "{}",
        stdout(&listed)
    );

    // A second admin: a key made locally, registered, logged in elsewhere.
    let generated = succeeds(cli(&["admin", "keys", "generate", "--out", "second.key"])?)?;
    #[cfg(unix)]
    ensure!(mode(&dir.path().join("second.key"))? == 0o600);
    let second =
        AdminSigningKey::from_pem(&std::fs::read_to_string(dir.path().join("second.key"))?)?;
    let second_fingerprint = second.public_key().fingerprint();
    ensure!(stdout(&generated).contains(&second_fingerprint));
    let added = json_out(cli(&[
        "admin",
        "--json",
        "keys",
        "add",
        "--name",
        "second",
        "--key-file",
        "second.key",
        "--role",
        "viewer",
    ])?)?;
    ensure!(
        added["fingerprint"] == second_fingerprint.as_str() && added["role"] == "viewer",
        "{added}"
    );
    let second_id = added["id"].as_i64().context("no id")?.to_string();
    let elsewhere = dir.path().join("elsewhere");
    let elsewhere_env = [("XDG_CONFIG_HOME", elsewhere.to_str().context("path")?)];
    let cli_elsewhere = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        run_cli(dir.path(), &all, &elsewhere_env)
    };
    succeeds(cli_elsewhere(&[
        "admin",
        "login",
        "--key",
        "second.key",
        "--server",
        &url,
    ])?)?;
    succeeds(cli_elsewhere(&["admin", "tokens", "list"])?)?;
    // A viewer reads but does not write; given the operator role, it does.
    let create = ["admin", "tokens", "create", "--name", "by-second"];
    fails_saying(&cli_elsewhere(&create)?, &["`operator`", "403"])?;
    succeeds(cli(&["admin", "keys", "set-role", &second_id, "operator"])?)?;
    let table = stdout(&succeeds(cli(&["admin", "keys", "list"])?)?);
    ensure!(
        table.contains("ROLE") && table.contains("operator"),
        "{table}"
    );
    succeeds(cli_elsewhere(&create)?)?;

    let sessions = json_out(cli(&["admin", "--json", "sessions", "list"])?)?;
    let rows = sessions["data"].as_array().context("no data")?;
    ensure!(rows.len() == 2, "{sessions}");
    let second_session = rows
        .iter()
        .find(|row| row["fingerprint"] == second_fingerprint.as_str())
        .and_then(|row| row["id"].as_i64())
        .context("no session of the second key")?;
    ensure!(
        rows.iter()
            .any(|row| row["current"] == true && row["fingerprint"] == fingerprint.as_str())
    );
    let logs = json_out(cli(&[
        "admin",
        "--json",
        "operation-logs",
        "--action",
        "token.create",
    ])?)?;
    // The oldest is the first key's (the second key's comes after it).
    ensure!(
        logs["data"]
            .as_array()
            .and_then(|rows| rows.last())
            .is_some_and(|row| row["actor"] == fingerprint.as_str()),
        "{logs}"
    );

    // Revoked elsewhere: the second admin's next command is one clear line.
    succeeds(cli(&[
        "admin",
        "sessions",
        "revoke",
        &second_session.to_string(),
    ])?)?;
    fails_saying(
        &cli_elsewhere(&["admin", "tokens", "list"])?,
        &["revoked", "401"],
    )?;

    // An expired stored session says so (the master key being off).
    let mut expired = stored.clone();
    expired["expires_at"] = json!(1);
    std::fs::create_dir_all(elsewhere.join("switchyard"))?;
    std::fs::write(
        elsewhere.join("switchyard/session.json"),
        expired.to_string(),
    )?;
    fails_saying(
        &cli_elsewhere(&["admin", "tokens", "list"])?,
        &["expired", "admin login"],
    )?;
    // The master key is off on the server too.
    fails_saying(
        &cli(&["admin", "--master-key", "guess", "tokens", "list"])?,
        &["master-key access is turned off", "401"],
    )?;

    // Login errors: one line each.
    fails_saying(
        &cli(&["admin", "login", "--key", "missing.key", "--server", &url])?,
        &["missing.key"],
    )?;
    std::fs::write(dir.path().join("garbage.key"), "not a key\n")?;
    fails_saying(
        &cli(&["admin", "login", "--key", "garbage.key", "--server", &url])?,
        &["garbage.key", "PKCS#8"],
    )?;
    succeeds(cli(&[
        "admin",
        "keys",
        "generate",
        "--out",
        "stranger.key",
    ])?)?;
    fails_saying(
        &cli(&["admin", "login", "--key", "stranger.key", "--server", &url])?,
        &["Unknown admin key", "401"],
    )?;
    fails_saying(
        &cli(&[
            "admin",
            "login",
            "--key",
            "stranger.key",
            "--server",
            "http://127.0.0.1:1",
        ])?,
        &["cannot reach"],
    )?;

    // Logout revokes the session and forgets it; then nothing authenticates.
    let out = succeeds(cli(&["admin", "logout"])?)?;
    ensure!(stdout(&out).contains("revoked"), "{}", stdout(&out));
    ensure!(!session_file.exists());
    fails_saying(&cli(&["admin", "tokens", "list"])?, &["admin login"])?;
    let (status, _) = process
        .admin_client(&session_token)
        .call(awc::http::Method::GET, "/admin/tokens", None)
        .await?;
    ensure!(status == 401, "a logged-out session still works");
    drop(process);
    Ok(())
}

/// Sends requests until each of `keys` served one (round-robin), bounded.
async fn every_key_serves(
    url: &str,
    token: &str,
    mock: &MockUpstream,
    keys: &[&str],
) -> anyhow::Result<()> {
    mock.reset_counts();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    for _ in 0..keys.len() * 2 {
        let response = client
            .post(format!("{url}/v1/chat/completions"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(
                &json!({ "model": "mock-gpt", "messages": [{ "role": "user", "content": "hi" }] }),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(response.status() == 200, "status {}", response.status());
    }
    for key in keys {
        ensure!(mock.calls(key) > 0, "key {key} served nothing");
    }
    Ok(())
}

async fn rotating_the_secret_keeps_every_key_serving(backend: Backend) -> anyhow::Result<()> {
    let mock = MockUpstream::start()?;
    let test_db = TestDb::new(backend).await?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let master = "rotation-master-key-0123456789abcdef";
    let base = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
[database]
url = "{db}"
[admin]
master_key = "{master}"
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{upstream}"
keys = ["ok-rot-a", "ok-rot-b", "ok-rot-c"]
models = ["mock-gpt"]
strategy = "round-robin"
"#,
        db = test_db.settings.url,
        upstream = mock.base_url(),
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("{base}[logging]\nlevel = \"warning\"\n"))?;
    let cfg = config.to_str().context("path")?;
    let mut process = GatewayProcess::start(dir.path(), &config, port).await?;
    let url = process.url.clone();
    let secret_file = dir.path().join("data/secret.key");
    let old_secret = std::fs::read_to_string(&secret_file)?.trim().to_owned();

    let admin = process.admin_client(master);
    let token = admin
        .create_token(json!({ "name": "rotation" }))
        .await?
        .token;
    admin
        .add_key("mock", json!({ "key": "ok-rot-d", "id": "d" }))
        .await?;
    every_key_serves(
        &url,
        &token,
        &mock,
        &["ok-rot-a", "ok-rot-b", "ok-rot-c", "ok-rot-d"],
    )
    .await?;

    // At rest: every key is v3 under the data key, none in clear.
    let db = switchyard::db::connect(&test_db.settings).await?;
    let provider = db
        .get_provider_by_name("mock")
        .await?
        .context("no provider")?;
    for key in db.list_provider_keys(provider.id).await? {
        ensure!(
            key.secret_ciphertext.starts_with("v3:") && !key.secret_ciphertext.contains("ok-rot"),
            "{}",
            key.secret_ciphertext
        );
    }

    // Rotate with the CLI while the gateway runs.
    let new_secret = "a-brand-new-master-secret-0123456789";
    std::fs::write(dir.path().join("new.secret"), format!("{new_secret}\n"))?;
    let rotated = succeeds(run_cli(
        dir.path(),
        &[
            "--config",
            cfg,
            "admin",
            "rotate-secret",
            "--new-secret-file",
            "new.secret",
        ],
        &[],
    )?)?;
    ensure!(stdout(&rotated).contains("Rotated"), "{}", stdout(&rotated));
    ensure!(std::fs::read_to_string(&secret_file)?.trim() == new_secret);
    #[cfg(unix)]
    ensure!(mode(&secret_file)? == 0o600);
    ensure!(!stdout(&rotated).contains(new_secret) && !stdout(&rotated).contains(&old_secret));
    let log_rows = db
        .list_operation_logs(
            &switchyard::db::OperationLogFilter {
                actor: None,
                action: Some("secret.rotate".to_owned()),
            },
            10,
            0,
        )
        .await?;
    ensure!(log_rows.1 == 1, "no operation-log row for the rotation");
    // Running again with the same new secret: nothing to do, one line.
    fails_saying(
        &run_cli(
            dir.path(),
            &[
                "--config",
                cfg,
                "admin",
                "rotate-secret",
                "--new-secret-file",
                "new.secret",
            ],
            &[],
        )?,
        &["nothing to rotate"],
    )?;

    // The running gateway holds the data key: it keeps serving every key,
    // and encrypts a key added now under the same data key.
    every_key_serves(
        &url,
        &token,
        &mock,
        &["ok-rot-a", "ok-rot-b", "ok-rot-c", "ok-rot-d"],
    )
    .await?;
    admin
        .add_key("mock", json!({ "key": "ok-rot-e", "id": "e" }))
        .await?;
    let all = ["ok-rot-a", "ok-rot-b", "ok-rot-c", "ok-rot-d", "ok-rot-e"];
    every_key_serves(&url, &token, &mock, &all).await?;
    process.signal("TERM")?;
    ensure!(process.wait_exit(Duration::from_secs(30)).await?.success());
    drop(process);

    // A restart with the old secret stops with one clear line.
    let with_old = dir.path().join("old-secret.toml");
    std::fs::write(
        &with_old,
        format!("{base}[logging]\nlevel = \"error\"\n[security]\nsecret_key = \"{old_secret}\"\n"),
    )?;
    let refused = GatewayProcess::start(dir.path(), &with_old, port).await;
    ensure!(refused.is_err(), "the gateway started with the old secret");
    let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("switchyard:"))
        .collect();
    ensure!(
        errors.len() == 1 && errors[0].contains("security.secret_key does not unlock"),
        "{log}"
    );
    ensure!(
        !log.contains(&old_secret) && !log.contains(new_secret),
        "a secret was logged"
    );

    // A restart with the new secret serves with every key.
    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    every_key_serves(&process.url, &token, &mock, &all).await?;
    drop(process);
    Ok(())
}
