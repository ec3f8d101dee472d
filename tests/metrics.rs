//! `GET /metrics` (issue 13, item 7): latency and time-to-first-token
//! histograms, tokens and cost by provider, model and token, attempts and
//! failovers, key states, the database pool and build info, computed from
//! the usage records; readable with `metrics.token` instead of an admin
//! credential.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::Method;
use common::{TestGateway, chat_body, mock_provider};
use serde_json::json;
use switchyard::config::{Backend, PriceSettings, Secret};
use switchyard_actors::KeyStrategy;

on_both_backends!(
    metrics_carry_latency_tokens_cost_attempts_and_key_states,
    the_metrics_token_reads_metrics_and_nothing_else,
);

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef0123456789";

/// `/metrics` as text, read with `bearer`.
async fn scrape(gw: &TestGateway, bearer: &str) -> anyhow::Result<(u16, String)> {
    let auth = format!("Bearer {bearer}");
    let reply = gw
        .send(Method::GET, "/metrics", &[("authorization", &auth)], None)
        .await?;
    Ok((reply.status.as_u16(), reply.text()))
}

/// The value of the series `name{labels}` exactly as written, if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse().ok()).flatten()
        })
}

fn expect(text: &str, series: &str, check: impl Fn(f64) -> bool) -> anyhow::Result<()> {
    let found = value(text, series).with_context(|| format!("no {series} in:\n{text}"))?;
    ensure!(check(found), "{series} = {found}");
    Ok(())
}

async fn gateway(backend: Backend) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        // The first key fails (500): the first request fails over to the
        // second, and the first key cools down.
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &["e500-1", "ok-2"]);
        provider.strategy = KeyStrategy::FirstAvailable;
        settings.providers = vec![provider];
        settings.prices = vec![PriceSettings {
            model: "mock-gpt".to_owned(),
            input_per_mtok: 1000.0,
            output_per_mtok: 1000.0,
            ..Default::default()
        }];
        settings.metrics.token = Secret::new(METRICS_TOKEN);
    })
    .await
}

async fn metrics_carry_latency_tokens_cost_attempts_and_key_states(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend).await?;
    let created = gw
        .admin_client()
        .create_token(json!({"name": "metered"}))
        .await?;
    for stream in [false, false, true] {
        let mut body = chat_body("mock-gpt", "hello there");
        body["stream"] = json!(stream);
        let reply = gw.chat(&created.token, body).await?;
        ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    }
    gw.gateway()?.flush_usage().await?;
    let (status, text) = scrape(&gw, METRICS_TOKEN).await?;
    ensure!(status == 200, "{status}: {text}");

    let served = "provider=\"mock\",model=\"mock-gpt\"";
    let latency = "switchyard_request_duration_seconds";
    expect(&text, &format!("{latency}_count{{{served}}}"), |v| v == 3.0)?;
    expect(
        &text,
        &format!("{latency}_bucket{{{served},le=\"+Inf\"}}"),
        |v| v == 3.0,
    )?;
    expect(&text, &format!("{latency}_sum{{{served}}}"), |v| v > 0.0)?;
    // Only the stream has a time to first token.
    let ttft = "switchyard_time_to_first_token_seconds";
    expect(&text, &format!("{ttft}_count{{{served}}}"), |v| v == 1.0)?;
    expect(
        &text,
        &format!("{ttft}_bucket{{{served},le=\"120\"}}"),
        |v| v == 1.0,
    )?;
    let token = format!("token=\"{}\"", created.id);
    for kind in ["prompt", "completion"] {
        expect(
            &text,
            &format!("switchyard_tokens_total{{{served},{token},kind=\"{kind}\"}}"),
            |v| v > 0.0,
        )?;
    }
    // $1,000 per million tokens: at least a few tenths of a cent here.
    expect(
        &text,
        &format!("switchyard_cost_usd_total{{{served},{token}}}"),
        |v| v > 0.001,
    )?;
    // Each request ends on the ok key; every call of the failing key was
    // an attempt followed by a failover.
    let calls = gw.mock.total_calls() as f64;
    let failed = gw.mock.calls("e500-1") as f64;
    ensure!(
        failed >= 1.0 && calls == failed + 3.0,
        "{failed} of {calls}"
    );
    expect(
        &text,
        "switchyard_upstream_attempts_total{provider=\"mock\"}",
        |v| v == calls,
    )?;
    expect(
        &text,
        "switchyard_upstream_failovers_total{provider=\"mock\"}",
        |v| v == failed,
    )?;
    expect(
        &text,
        "switchyard_provider_keys{provider=\"mock\",state=\"healthy\"}",
        |v| v == 1.0,
    )?;
    ensure!(
        value(
            &text,
            "switchyard_provider_keys{provider=\"mock\",state=\"cooling_down\"}"
        ) == Some(1.0)
            || value(
                &text,
                "switchyard_provider_keys{provider=\"mock\",state=\"open\"}"
            ) == Some(1.0),
        "the failing key is neither cooling down nor open:\n{text}"
    );
    expect(
        &text,
        "switchyard_requests_total{provider=\"mock\",status=\"200\"}",
        |v| v == 3.0,
    )?;
    let backend_label = format!("{backend:?}");
    expect(
        &text,
        &format!(
            "switchyard_build_info{{version=\"{}\",backend=\"{backend_label}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
        |v| v == 1.0,
    )?;
    expect(&text, "switchyard_db_pool_max_connections", |v| v >= 1.0)?;
    expect(
        &text,
        "switchyard_db_pool_connections{state=\"idle\"}",
        |v| v >= 0.0,
    )?;
    expect(&text, "switchyard_usage_buffered_records", |v| v == 0.0)?;
    expect(&text, "switchyard_usage_journal_bytes", |v| v >= 0.0)?;
    gw.stop().await
}

async fn the_metrics_token_reads_metrics_and_nothing_else(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend).await?;
    let (status, _) = scrape(&gw, METRICS_TOKEN).await?;
    ensure!(status == 200);
    // An admin credential still reads it.
    let (status, _) = scrape(&gw, common::MASTER_KEY).await?;
    ensure!(status == 200);
    // A wrong token, and no token, are refused in the client's error shape.
    let (status, text) = scrape(&gw, "metrics-token-wrong-0123456789abcdef012345").await?;
    ensure!(status == 401, "{status}: {text}");
    ensure!(text.contains("\"error\""), "{text}");
    let reply = gw.send(Method::GET, "/metrics", &[], None).await?;
    ensure!(reply.status == 401);
    // The metrics token is no admin credential.
    let auth = format!("Bearer {METRICS_TOKEN}");
    let reply = gw
        .send(
            Method::GET,
            "/admin/tokens",
            &[("authorization", &auth)],
            None,
        )
        .await?;
    ensure!(reply.status == 401, "{}", reply.status);
    gw.stop().await
}
