//! The dashboard in a real browser: a gateway on SQLite with the mock
//! upstream, real requests through it, then `tests/ui/test_dashboard.py`
//! (pytest + playwright) driving Debian's headless Chromium against it: log
//! in with the key file, read the overview, create a token and use it,
//! disable a key, visit every page, log out. Screenshots of every page go to
//! `target/ui-screenshots/`.
//!
//! Needs `chromium` (Debian's package; `.ci/run` installs it) and playwright
//! in `.venv/` (`make compat-deps`). A missing Chromium fails the test with
//! what to install: it is never skipped.

pub mod common;

use anyhow::{Context, bail, ensure};
use common::{TestGateway, chat_body, mock_provider, python};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use switchyard::config::Backend;

const MODEL: &str = "mock-gpt";
const UNPRICED: &str = "mock-unpriced";
/// Served by the `flaky` provider, whose first key always answers 500: its
/// request fails over, and its details list both attempts.
const FAILOVER: &str = "mock-failover";
/// Plain requests to [`MODEL`] before the browser starts.
const REQUESTS: usize = 6;
/// Every request answered before the browser starts: those, one to
/// [`UNPRICED`], one streamed and one that failed over.
const ANSWERED: usize = REQUESTS + 3;
/// Bounds a hung browser or gateway; the suite takes about half a minute.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The Chromium binary: `SWITCHYARD_CHROMIUM`, else Debian's.
fn chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("SWITCHYARD_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.is_file() {
        bail!(
            "{} is missing: the dashboard's browser test needs Chromium \
             (Debian: apt-get install chromium chromium-driver; .ci/run installs it), \
             or SWITCHYARD_CHROMIUM pointing at one",
            path.display()
        );
    }
    Ok(path)
}

#[actix_rt::test]
async fn an_operator_uses_the_dashboard_in_a_real_browser() -> anyhow::Result<()> {
    let chromium = chromium()?;
    let python = python::venv_tool("python")?;

    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        let mut flaky = mock_provider(mock, "flaky", &[FAILOVER], &["e500-f1", "ok-f2"]);
        flaky.strategy = switchyard_actors::KeyStrategy::FirstAvailable;
        settings.providers = vec![
            mock_provider(mock, "mock", &[MODEL, UNPRICED], &["ok-1", "ok-2"]),
            flaky,
        ];
    })
    .await?;
    let admin = gw.admin_client();
    admin
        .put(
            &format!("/admin/model-prices/{MODEL}"),
            json!({ "input_per_mtok": 2.5, "output_per_mtok": 10.0 }),
        )
        .await?;
    let token = gw.create_token(json!({ "name": "load" })).await?;
    for index in 0..REQUESTS {
        let reply = gw
            .chat(&token, chat_body(MODEL, &format!("hello {index}")))
            .await?;
        ensure!(
            reply.status.is_success(),
            "{}: {}",
            reply.status,
            reply.text()
        );
    }
    let reply = gw.chat(&token, chat_body(UNPRICED, "hello")).await?;
    ensure!(reply.status.is_success(), "{}", reply.text());
    // A streamed one, so time to first token has a sample.
    let mut streamed = chat_body(MODEL, "stream please");
    streamed["stream"] = json!(true);
    let reply = gw.chat(&token, streamed).await?;
    ensure!(reply.status.is_success(), "{}", reply.text());
    admin
        .put(
            &format!("/admin/model-prices/{FAILOVER}"),
            json!({ "input_per_mtok": 1.0, "output_per_mtok": 2.0 }),
        )
        .await?;
    let reply = gw.chat(&token, chat_body(FAILOVER, "fail over")).await?;
    ensure!(
        reply.status.is_success() && reply.header("x-switchyard-attempts") == Some("2"),
        "{:?}: {}",
        reply.header("x-switchyard-attempts"),
        reply.text()
    );
    // Every answered request is in the logs before the browser looks.
    let logged = gw.request_logs().await?;
    ensure!(logged.len() == ANSWERED, "{} rows", logged.len());
    let health = admin.get("/admin/providers/mock/health").await?;
    let key_id = health["keys"][0]["id"]
        .as_str()
        .context("no key id")?
        .to_owned();

    // A viewer's key file: the browser logs in with it last, and its write
    // must be refused (roles, issue 12).
    let viewer = switchyard::auth::AdminSigningKey::generate();
    admin
        .post(
            "/admin/admin-keys",
            json!({
                "name": "viewer in the browser",
                "public_key": viewer.public_key().to_text(),
                "role": "viewer",
            }),
        )
        .await?;
    let viewer_key_file = gw.data_dir().join("viewer_ed25519.key");
    std::fs::write(&viewer_key_file, viewer.to_pem()?)?;

    let screenshots = python::root().join("target/ui-screenshots");
    let mut command = python::command(&python, &[]);
    command
        .args(["-m", "pytest", "tests/ui", "-q", "-p", "no:cacheprovider"])
        .current_dir(python::root())
        .env("SWITCHYARD_URL", &gw.url)
        .env(
            "SWITCHYARD_KEY_FILE",
            gw.data_dir().join("admin_ed25519.key"),
        )
        .env("SWITCHYARD_CHROMIUM", &chromium)
        .env("SWITCHYARD_SCREENSHOTS", &screenshots)
        .env("SWITCHYARD_MODEL", MODEL)
        .env("SWITCHYARD_FAILOVER_MODEL", FAILOVER)
        .env("SWITCHYARD_REQUESTS", ANSWERED.to_string())
        .env("SWITCHYARD_KEY_ID", &key_id)
        .env("SWITCHYARD_VIEWER_KEY_FILE", &viewer_key_file);
    let (status, report) = python::run_bounded(command, PYTEST_TIMEOUT).await?;
    match status {
        Some(status) if status.success() => println!("{report}"),
        Some(status) => bail!("the dashboard's browser test failed ({status}):\n{report}"),
        None => bail!(
            "the dashboard's browser test did not finish in {PYTEST_TIMEOUT:?}; killed it:\n{report}"
        ),
    }

    // What the browser did reached the gateway: the token it created served
    // a request, the key it disabled is disabled, its session is revoked.
    let logs = gw.request_logs().await?;
    let created = admin
        .tokens()
        .await?
        .into_iter()
        .find(|token| token["name"] == "made-in-the-browser")
        .context("the browser's token is missing")?;
    ensure!(
        logs.iter()
            .any(|row| row.token_id == created["id"].as_i64() && row.status == 200),
        "no request with the browser's token"
    );
    ensure!(
        !admin
            .tokens()
            .await?
            .iter()
            .any(|token| token["name"] == "made-by-a-viewer"),
        "the viewer's token was created"
    );
    let health = admin.get("/admin/providers/mock/health").await?;
    let key = health["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .find(|key| key["id"] == key_id.as_str())
        .context("the key is gone")?;
    ensure!(key["state"] == "disabled", "{key}");
    let sessions = admin.get("/admin/sessions").await?;
    let states: Vec<_> = sessions["data"]
        .as_array()
        .context("sessions")?
        .iter()
        .map(|session| session["state"].clone())
        .collect();
    ensure!(states.iter().all(|state| state == "revoked"), "{states:?}");
    ensure!(!states.is_empty());
    for page in ["01-login", "02-overview", "04-providers", "08-oplog"] {
        ensure!(
            screenshots.join(format!("{page}.png")).is_file(),
            "no screenshot {page}"
        );
    }
    gw.stop().await
}
