//! Schemathesis against the served `/openapi.json`: every documented
//! operation gets generated requests (valid and invalid), and every answer
//! must be free of 5xx and match the document (status, content type,
//! headers, body schema). `make compat-deps` (a dependency of `make test`)
//! installs schemathesis into `.venv/` from `tests/compat/requirements.txt`.
//!
//! One header serves a whole schemathesis run, so there are two runs: the
//! client and public operations with a gateway token, then the admin
//! operations with the master key. The client run goes first because the
//! admin run may disable, rotate or delete that token (generated ids can hit
//! it); nothing the admin run does can revoke the master key, which comes
//! from the settings. The `/auth/*` login operations are left out: they need
//! an Ed25519 signature over a fresh nonce, which schemathesis cannot make,
//! so it would only ever exercise their refusals (tests/admin_auth.rs
//! covers those).

pub mod common;

use anyhow::bail;
use common::{MASTER_KEY, TestGateway, mock_provider, python};
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard::config::{Backend, ProviderKind, ProviderSettings};

/// Each run takes well under a minute; this only stops a hung gateway
/// from hanging `cargo test`.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Generated cases per operation and phase: enough to reach each
/// operation's validation paths, few enough to keep the test short on a
/// loaded machine.
const MAX_EXAMPLES: &str = "50";

#[actix_rt::test]
async fn every_operation_answers_without_5xx_and_as_documented() -> anyhow::Result<()> {
    let schemathesis = python::venv_tool("schemathesis")?;

    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        let claude = ProviderSettings {
            kind: ProviderKind::Anthropic,
            ..mock_provider(mock, "claude-mock", &["mock-claude"], &["ok-claude"])
        };
        settings.providers.push(claude);
    })
    .await?;
    let token = gw.create_token(json!({ "name": "schemathesis" })).await?;
    let schema = format!("{}/openapi.json", gw.url);

    let runs = [
        (
            "client and public operations",
            format!("Authorization: Bearer {token}"),
            // Everything but the admin API and the login steps.
            vec!["--exclude-tag", "admin", "--exclude-tag", "login"],
        ),
        (
            "admin operations",
            format!("Authorization: Bearer {MASTER_KEY}"),
            vec!["--include-tag", "admin"],
        ),
    ];
    // schemathesis keeps a cache (`.schemathesis/`) in its working
    // directory: not in the checkout.
    let workdir = tempfile::tempdir()?;
    let mut failures = Vec::new();
    for (name, header, filters) in runs {
        let mut command = python::command(&schemathesis, &[]);
        command
            .arg("run")
            .arg(&schema)
            .args(["--header", &header])
            .args(filters)
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                MAX_EXAMPLES,
                "--request-timeout",
                "20",
                "--workers",
                "2",
                "--suppress-health-check",
                "all",
                "--no-color",
                // Nothing remembered between runs: each run starts afresh.
                "--generation-database",
                "none",
            ])
            .current_dir(workdir.path());
        let started = Instant::now();
        let (status, report) = python::run_bounded(command, RUN_TIMEOUT).await?;
        let took = started.elapsed();
        match status {
            Some(status) if status.success() => {
                println!("schemathesis, {name}: passed in {took:?}\n{report}");
            }
            Some(status) => {
                println!("schemathesis, {name}: FAILED ({status}) in {took:?}\n{report}");
                failures.push(format!("{name} ({status})"));
            }
            None => {
                println!("schemathesis, {name}: killed after {RUN_TIMEOUT:?}\n{report}");
                failures.push(format!("{name} (did not finish in {RUN_TIMEOUT:?})"));
            }
        }
    }
    gw.stop().await?;
    if !failures.is_empty() {
        bail!(
            "schemathesis failed: {}; its output is above",
            failures.join(", ")
        );
    }
    Ok(())
}
