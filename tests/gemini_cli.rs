//! Google's Gemini CLI (npm `@google/gemini-cli`, pinned in
//! `tests/clients/package-lock.json`, installed by `make client-deps`, a
//! dependency of `make test`) through the gateway: non-interactive (`-p`),
//! `GOOGLE_GEMINI_BASE_URL` pointing at the gateway and a gateway token as
//! its API key, against a provider of each kind on the mock upstream.
//!
//! The CLI runs in a throwaway home and workspace with its telemetry,
//! usage statistics and update checks off, so it needs nothing but the
//! gateway (the machine reaches no Google host). It always offers its own
//! tools; the mock's `textonly-` keys answer text anyway, so one prompt is
//! one generate call whose answer the CLI prints.

pub mod common;

use anyhow::{Context, bail, ensure};
use common::{TestGateway, kind_provider, python};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use switchyard::config::{Backend, ProviderKind};

/// One run takes a few seconds; this only stops a hung CLI from hanging
/// `cargo test`.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The mock's answer to every text request.
const ANSWER: &str = "one two three four five";

/// `tests/clients/node_modules/.bin/gemini`, or an error saying how to
/// install it.
fn gemini_cli() -> anyhow::Result<PathBuf> {
    let path = python::root().join("tests/clients/node_modules/.bin/gemini");
    if !path.is_file() {
        bail!(
            "{} is missing: run `make test` (or `make client-deps`), which installs tests/clients/package-lock.json",
            path.display()
        );
    }
    Ok(path)
}

/// What the CLI reads from `~/.gemini/settings.json`: API-key auth, and
/// nothing that would call Google (telemetry, usage statistics, updates).
fn cli_settings() -> Value {
    json!({
        "security": { "auth": { "selectedType": "gemini-api-key" } },
        "privacy": { "usageStatisticsEnabled": false },
        "telemetry": { "enabled": false },
        "general": { "disableAutoUpdate": true, "disableUpdateNag": true },
    })
}

#[actix_rt::test]
async fn gemini_cli_answers_through_every_provider_kind() -> anyhow::Result<()> {
    let cli = gemini_cli()?;
    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        settings.providers = vec![
            kind_provider(
                mock,
                "gemini-mock",
                ProviderKind::Gemini,
                &["mock-gemini"],
                &["textonly-gemini"],
            ),
            kind_provider(
                mock,
                "openai-mock",
                ProviderKind::OpenaiCompatible,
                &["mock-gpt"],
                &["textonly-openai"],
            ),
            kind_provider(
                mock,
                "claude-mock",
                ProviderKind::Anthropic,
                &["mock-claude"],
                &["textonly-claude"],
            ),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "gemini-cli" })).await?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join(".gemini"))?;
    std::fs::write(
        home.path().join(".gemini/settings.json"),
        serde_json::to_vec_pretty(&cli_settings())?,
    )?;
    let workspace = tempfile::tempdir()?;

    for model in ["mock-gemini", "mock-gpt", "mock-claude"] {
        // Only what the CLI needs: no credentials, proxies or Google
        // settings of the test's own environment reach it.
        let mut command = Command::new(&cli);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("GEMINI_API_KEY", &token)
            .env("GOOGLE_GEMINI_BASE_URL", &gw.url)
            .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
            .env("NO_COLOR", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .current_dir(workspace.path())
            .args(["-m", model, "-p", "count to five"]);
        let (status, output) = python::run_bounded(command, RUN_TIMEOUT).await?;
        match status {
            Some(status) if status.success() => {}
            Some(status) => bail!("gemini -m {model} failed ({status}):\n{output}"),
            None => bail!("gemini -m {model} did not finish in {RUN_TIMEOUT:?}:\n{output}"),
        }
        ensure!(
            output.lines().any(|line| line.trim() == ANSWER),
            "gemini -m {model} did not print the answer:\n{output}"
        );
    }

    // Every call the CLI made was served and metered on the Gemini door.
    let logs = gw.request_logs().await?;
    for model in ["mock-gemini", "mock-gpt", "mock-claude"] {
        let rows: Vec<_> = logs
            .iter()
            .filter(|row| row.requested_model.as_deref() == Some(model))
            .collect();
        ensure!(!rows.is_empty(), "no request of {model}: {logs:?}");
        for row in rows {
            ensure!(row.status == 200, "{row:?}");
            ensure!(row.endpoint.starts_with("/v1beta/models/"), "{row:?}");
            ensure!(
                row.prompt_tokens > 0 && row.completion_tokens == 5,
                "{row:?}"
            );
        }
    }
    ensure!(logs.iter().all(|row| row.status == 200), "{logs:?}");

    // The CLI's own tools reached the OpenAI upstream, translated.
    let seen = gw.mock.requests();
    let openai = seen
        .iter()
        .find(|request| request.path.ends_with("/chat/completions"))
        .context("the OpenAI upstream was never called")?;
    let body: Value = serde_json::from_slice(&openai.body)?;
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .context("no tools")?
        .iter()
        .filter_map(|tool| tool.pointer("/function/name").and_then(Value::as_str))
        .collect();
    ensure!(tools.contains(&"read_file"), "{tools:?}");
    ensure!(body["stream"] == true, "the CLI streams: {body}");
    gw.stop().await
}
