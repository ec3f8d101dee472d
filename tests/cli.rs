//! The real binary: settings validation, migrations and the admin CLI.

pub mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::cli::{AdminCli, stderr};
use common::process::{GatewayProcess, free_port, run_cli};
use serde_json::Value;

#[test]
fn invalid_settings_stop_the_process_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases: [(&str, &str, &str); 8] = [
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
        // Retention (issue 13): at least an hour, or 0s for forever.
        ("SWITCHYARD__USAGE__RETENTION", "10m", "usage.retention"),
        ("SWITCHYARD__USAGE__RETENTION", "a month", "retention"),
        (
            "SWITCHYARD__USAGE__RETENTION_BATCH_ROWS",
            "0",
            "usage.retention_batch_rows",
        ),
        // Guessable online (issue 10): at least 32 characters.
        (
            "SWITCHYARD__ADMIN__MASTER_KEY",
            "short-master-key-31-characters!",
            "admin.master_key",
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
        if key == "admin.master_key" {
            ensure!(!message.contains(value), "the secret was echoed: {message}");
        }
    }
    // A settings file's refusals, each one line saying what is wrong.
    let config = dir.path().join("typo.toml");
    let serve_with = |settings: &str| -> anyhow::Result<String> {
        std::fs::write(&config, settings)?;
        let output = run_cli(
            dir.path(),
            &["serve", "--config", config.to_str().context("path")?],
            &[],
        )?;
        ensure!(!output.status.success(), "{settings} was accepted");
        ensure!(
            stderr(&output).trim_end().lines().count() == 1,
            "not one line: {}",
            stderr(&output)
        );
        Ok(stderr(&output))
    };
    let provider = "[[providers]]\nname = \"p\"\nbase_url = \"http://127.0.0.1:1\"\n";
    for (settings, says, never) in [
        // An unknown key.
        (
            "[server]\nlisten_addr = \"127.0.0.1:1\"\n".to_owned(),
            vec!["listen_addr"],
            None,
        ),
        // A ${VAR} reference to an unset variable names the variable...
        (
            "[admin]\nmaster_key = \"${SWITCHYARD_TEST_UNSET_VARIABLE}\"\n".to_owned(),
            vec!["SWITCHYARD_TEST_UNSET_VARIABLE"],
            None,
        ),
        // ... also inside a provider's key list, where an untagged enum once
        // hid it behind "data did not match any variant".
        (
            format!("{provider}kind = \"openai\"\nkeys = [\"${{SWITCHYARD_TEST_UNSET_KEY}}\"]\n"),
            vec![
                "SWITCHYARD_TEST_UNSET_KEY is not set",
                "providers[0]keys[0]",
            ],
            Some("did not match"),
        ),
        // An unknown provider kind lists the kinds.
        (
            format!("{provider}kind = \"opnai\"\n"),
            vec![
                "unknown provider kind \"opnai\"",
                "openai, openai-compatible, azure-openai, anthropic, gemini, zhipu, echo",
            ],
            None,
        ),
    ] {
        let message = serve_with(&settings)?;
        for part in &says {
            // Once: the config crate's error was also printed as its own
            // source, so each part came twice.
            ensure!(
                message.matches(part).count() == 1,
                "{message:?} does not say {part:?} once"
            );
        }
        if let Some(never) = never {
            ensure!(!message.contains(never), "{message}");
        }
    }
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

/// A new operator is told what to do after the first start, once; the
/// generated master key does not look like a gateway token.
#[actix_rt::test]
async fn the_first_start_prints_the_next_steps_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[logging]\nlevel = \"warning\"\n"),
    )?;
    let first = GatewayProcess::start(dir.path(), &config, port).await?;
    let printed = std::fs::read_to_string(dir.path().join("gateway.out"))?;
    let url = format!("http://127.0.0.1:{port}");
    for line in [
        format!("Switchyard is listening on {url}. First start"),
        "admin key     data/admin_ed25519.key".to_owned(),
        "master key    data/master.key".to_owned(),
        format!("switchyard admin login --key data/admin_ed25519.key --server {url}"),
        "switchyard admin tokens create --name my-app".to_owned(),
        format!("curl {url}/v1/chat/completions"),
    ] {
        ensure!(printed.contains(&line), "{line:?} not in:\n{printed}");
    }
    let master = std::fs::read_to_string(dir.path().join("data/master.key"))?;
    ensure!(master.starts_with("symaster-"), "{master}");
    ensure!(std::fs::read_to_string(dir.path().join("data/secret.key"))?.starts_with("sysecret-"));
    // The file names are printed, never the secrets.
    ensure!(!printed.contains(master.trim()));
    drop(first);
    let _second = GatewayProcess::start(dir.path(), &config, port).await?;
    let printed = std::fs::read_to_string(dir.path().join("gateway.out"))?;
    ensure!(
        printed.matches("First start").count() == 1,
        "printed again:\n{printed}"
    );
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
master_key = "log-test-master-key-9876543210abcdef"
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
    let token = process
        .admin_client("log-test-master-key-9876543210abcdef")
        .create_token(serde_json::json!({ "name": "logs" }))
        .await?
        .token;
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
        "log-test-master-key-9876543210abcdef",
        "secret prompt text",
    ] {
        ensure!(
            !log.contains(secret),
            "the log contains a secret or a body: {secret}"
        );
    }
    Ok(())
}

#[actix_rt::test]
async fn admin_users_tokens_prices_and_billing_commands() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nmaster_key = \"cli-test-master-key-0123456789abcdef\"\n[logging]\nlevel = \"warning\"\n"
        ),
    )?;
    let process = GatewayProcess::start(dir.path(), &config, port).await?;
    let cli = AdminCli::new(dir.path(), &config)?;

    // Users.
    let alice = cli.json(&[
        "users",
        "create",
        "--name",
        "alice",
        "--prepaid",
        "--balance-usd",
        "5",
        "--multiplier",
        "1.5",
    ])?;
    ensure!(
        alice["prepaid"] == true && alice["balance_nanos"] == 5_000_000_000_i64,
        "{alice}"
    );
    ensure!(alice["price_multiplier"] == 1.5, "{alice}");
    let alice_id = alice["id"].as_i64().context("id")?.to_string();
    let table = cli.ok(&["users", "list"])?;
    ensure!(
        table.contains("BALANCE_USD") && table.contains("alice") && table.contains("5.000000"),
        "{table}"
    );
    ensure!(table.contains("2 of 2 users"), "{table}");
    let topped = cli.ok(&[
        "users",
        "topup",
        "alice",
        "--amount-usd",
        "2.5",
        "--note",
        "invoice 7",
    ])?;
    ensure!(topped.contains("balance now $7.500000"), "{topped}");
    let shown = cli.json(&["users", "show", &alice_id])?;
    ensure!(
        shown["balance_usd"] == 7.5 && shown["token_ids"] == serde_json::json!([]),
        "{shown}"
    );
    let details = cli.ok(&["users", "show", "alice"])?;
    ensure!(
        details.contains("balance usd:") && details.contains("7.500000"),
        "{details}"
    );
    let suspended = cli.json(&[
        "users",
        "update",
        "alice",
        "--status",
        "suspended",
        "--multiplier",
        "none",
    ])?;
    ensure!(
        suspended["status"] == "suspended" && suspended["price_multiplier"].is_null(),
        "{suspended}"
    );
    cli.json(&["users", "update", "alice", "--status", "active"])?;
    cli.fails(&["users", "update", "alice", "--status", "gone"], &["400"])?;
    cli.fails(&["users", "update", "alice"], &["nothing to change"])?;
    cli.fails(&["users", "show", "nobody"], &["no user named `nobody`"])?;
    cli.fails(&["users", "topup", "alice", "--amount-usd", "-1"], &["400"])?;
    cli.fails(&["users", "create", "--name", "alice"], &["409"])?;

    // Tokens with every limit.
    let created = cli.json(&[
        "tokens",
        "create",
        "--name",
        "limited",
        "--user",
        "alice",
        "--model",
        "mock-*",
        "--budget-usd",
        "10",
        "--budget-tokens",
        "100000",
        "--rpm",
        "60",
        "--tpm",
        "5000",
        "--max-parallel",
        "2",
        "--quota",
        "day:requests:100",
        "--quota",
        "month:cost:25",
        "--multiplier",
        "1.2",
        "--expires-in",
        "30d",
    ])?;
    let token_id = created["id"].as_i64().context("id")?;
    let first_secret = created["token"].as_str().context("token")?.to_owned();
    ensure!(
        created["user_id"].as_i64().map(|id| id.to_string()) == Some(alice_id.clone()),
        "{created}"
    );
    ensure!(
        created["budget_nanos"] == 10_000_000_000_i64 && created["budget_tokens"] == 100_000,
        "{created}"
    );
    ensure!(
        created["rpm"] == 60 && created["tpm"] == 5000 && created["max_parallel"] == 2,
        "{created}"
    );
    ensure!(
        created["quotas"]
            == serde_json::json!([
                { "period": "day", "kind": "requests", "limit": 100 },
                { "period": "month", "kind": "cost", "limit": 25_000_000_000_i64, "limit_usd": 25.0 }
            ]),
        "{created}"
    );
    ensure!(created["price_multiplier"] == 1.2, "{created}");
    let in_30_days = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )? + 30 * 86_400;
    let expires_at = created["expires_at"].as_i64().context("expires_at")?;
    ensure!(
        (in_30_days - 60..=in_30_days).contains(&expires_at),
        "{expires_at} vs {in_30_days}"
    );
    let id = token_id.to_string();
    let updated = cli.json(&[
        "tokens",
        "update",
        &id,
        "--rpm",
        "none",
        "--tpm",
        "100",
        "--no-quotas",
        "--all-models",
        "--budget-usd",
        "none",
    ])?;
    ensure!(
        updated["rpm"].is_null()
            && updated["tpm"] == 100
            && updated["quotas"] == serde_json::json!([]),
        "{updated}"
    );
    ensure!(
        updated["allowed_models"].is_null() && updated["budget_nanos"].is_null(),
        "{updated}"
    );
    ensure!(updated["max_parallel"] == 2, "untouched: {updated}");
    let details = cli.ok(&["tokens", "show", &id])?;
    ensure!(
        details.contains("max parallel:") && details.contains("models:") && details.contains("all"),
        "{details}"
    );
    ensure!(!details.contains(&first_secret), "{details}");
    let listed = cli.ok(&["tokens", "list"])?;
    ensure!(
        listed.contains("LIMITS") && listed.contains("tpm=100 parallel=2"),
        "{listed}"
    );
    cli.fails(&["tokens", "update", &id], &["nothing to change"])?;
    cli.fails(&["tokens", "update", &id, "--rpm", "0"], &["400"])?;
    cli.fails(
        &[
            "tokens",
            "create",
            "--name",
            "x",
            "--quota",
            "year:requests:5",
        ],
        &["year"],
    )?;
    cli.fails(&["tokens", "update", "999999", "--rpm", "5"], &["404"])?;
    let bad_flag = cli.run(&["tokens", "create", "--name", "x", "--quota", "daily"])?;
    ensure!(
        !bad_flag.status.success() && stderr(&bad_flag).contains("PERIOD:KIND:LIMIT"),
        "{}",
        stderr(&bad_flag)
    );

    // Rotation: a new secret, the old one's grace end.
    let rotated = cli.json(&["tokens", "rotate", &id, "--grace", "2m"])?;
    let second_secret = rotated["token"].as_str().context("token")?;
    ensure!(second_secret.starts_with("sy-") && second_secret != first_secret);
    let grace_end = rotated["previous_token_expires_at"]
        .as_i64()
        .context("grace end")?;
    let now = in_30_days - 30 * 86_400;
    ensure!(
        (now + 60..=now + 180).contains(&grace_end),
        "{grace_end} vs {now}"
    );
    let text = cli.ok(&["tokens", "rotate", &id, "--grace", "0"])?;
    ensure!(
        text.contains("New token (shown once") && text.contains(" UTC"),
        "{text}"
    );
    cli.fails(&["tokens", "rotate", &id, "--grace", "31d"], &["400"])?;

    // Prices, names with a slash included.
    let set = cli.ok(&[
        "prices",
        "set",
        "openai/gpt-x",
        "--input",
        "1.5",
        "--output",
        "3",
        "--cache-read",
        "0.15",
    ])?;
    ensure!(
        set.contains("openai/gpt-x")
            && set.contains("$1.50")
            && set.contains("$3.00")
            && set.contains("$0.15")
            && set.contains("CACHE_READ"),
        "{set}"
    );
    let prices = cli.json(&["prices", "list"])?;
    let rows = prices["data"].as_array().context("data")?;
    ensure!(rows.iter().any(|row| row["model"] == "openai/gpt-x"
        && row["input_per_mtok_micros"] == 1_500_000
        && row["cache_read_per_mtok_micros"] == 150_000
        && row["reasoning_per_mtok_micros"].is_null()));
    ensure!(
        rows.iter().any(|row| row["model"] == "gpt-4o"),
        "the list prices are seeded"
    );
    let table = cli.ok(&["prices", "list"])?;
    ensure!(
        table.contains("INPUT_PER_MTOK") && table.contains("gpt-4o-mini"),
        "{table}"
    );
    ensure!(
        cli.ok(&["prices", "delete", "openai/gpt-x"])?
            .contains("Deleted")
    );
    cli.fails(&["prices", "delete", "openai/gpt-x"], &["404"])?;
    cli.fails(
        &["prices", "set", "m", "--input", "-1", "--output", "1"],
        &["400"],
    )?;
    // Media unit rates (no token price needed): set, shown in MEDIA, listed
    // in micros; a negative one is refused by name.
    let set = cli.ok(&[
        "prices",
        "set",
        "voice-x",
        "--per-mchar",
        "15",
        "--per-audio-second",
        "0.0001",
    ])?;
    ensure!(
        set.contains("MEDIA") && set.contains("$15.00/M chars") && set.contains("$0.0001/audio s"),
        "{set}"
    );
    let prices = cli.json(&["prices", "list"])?;
    let rows = prices["data"].as_array().context("data")?;
    ensure!(
        rows.iter().any(|row| row["model"] == "voice-x"
            && row["input_per_mtok_micros"] == 0
            && row["per_mchar_micros"] == 15_000_000
            && row["per_audio_second_micros"] == 100
            && row["per_image_micros"] == 0),
        "{prices}"
    );
    let table = cli.ok(&["prices", "list"])?;
    ensure!(
        table.contains("$0.04/image") && table.contains("$0.002/search"),
        "the seeded media list prices: {table}"
    );
    cli.fails(
        &["prices", "set", "voice-x", "--per-image", "-1"],
        &["400", "per_image"],
    )?;
    let unpriced = cli.ok(&["prices", "unpriced"])?;
    ensure!(
        unpriced.contains("MODEL") && unpriced.contains("LAST_SEEN"),
        "{unpriced}"
    );

    // The ledger: the opening balance and the top-up, newest first.
    let ledger = cli.json(&["billing", "list", "--user", "alice", "--kind", "topup"])?;
    ensure!(ledger["total"] == 2, "{ledger}");
    ensure!(
        ledger["data"][0]["note"] == "invoice 7" && ledger["data"][1]["note"] == "opening balance",
        "{ledger}"
    );
    let table = cli.ok(&["billing", "list", "--user", &alice_id])?;
    ensure!(
        table.contains("AMOUNT_USD")
            && table.contains("invoice 7")
            && table.contains("2 of 2 records"),
        "{table}"
    );
    cli.fails(&["billing", "list", "--kind", "refund"], &["400"])?;

    // A user that owns a token cannot be deleted; without it, it can.
    cli.fails(&["users", "delete", "alice"], &["409"])?;
    cli.ok(&["tokens", "delete", &id])?;
    ensure!(
        cli.ok(&["users", "delete", "alice"])?
            .contains("Deleted user")
    );
    cli.fails(&["users", "show", &alice_id], &["404"])?;
    drop(process);
    Ok(())
}

/// The binary's allocator is jemalloc with the options `src/main.rs` sets
/// (an arena per CPU, small thread caches): without them its default thread
/// caches cost ~10 MB of peak RSS (bench/README.md). jemalloc lists the
/// option sources it read when asked to (`confirm_conf`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_runs_on_jemalloc_with_its_own_options() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = run_cli(
        dir.path(),
        &["--version"],
        &[("MALLOC_CONF", "confirm_conf:true")],
    )?;
    ensure!(
        output.status.success(),
        "--version failed: {}",
        stderr(&output)
    );
    let report = stderr(&output);
    ensure!(
        report.contains("global variable malloc_conf): \"percpu_arena:percpu,tcache_max:1024"),
        "jemalloc did not read the binary's options:\n{report}"
    );
    for option in [
        "percpu_arena:percpu",
        "tcache_max:1024",
        "tcache_nslots_small_max:32",
    ] {
        ensure!(
            report.contains(&format!("Set conf value: {option}")),
            "jemalloc did not take {option}:\n{report}"
        );
    }
    Ok(())
}
