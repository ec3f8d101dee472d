//! Budgets held in leased slices (issue 11): a burst of one token's
//! requests costs O(1) lease transactions, not one per request; a lowered
//! budget refuses at once; idle slices go back; two gateway processes on
//! one PostgreSQL database never overspend beyond the stated bound; a
//! killed instance's slice comes back after the reservation TTL.

pub mod common;

use anyhow::Context;
use awc::http::Method;
use common::db::TestDb;
use common::process::{GatewayProcess, free_port};
use common::{Reply, TestGateway};
use futures_util::future::join_all;
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchyard::config::{Backend, DatabaseSettings, PriceSettings};
use switchyard::db::tokens::NewToken;

on_both_backends!(
    a_burst_of_one_token_makes_few_lease_transactions,
    a_lowered_budget_refuses_at_once,
    idle_slices_are_given_back,
    a_killed_instances_slice_comes_back_after_the_ttl,
);

/// One token = 1,000,000 nano-USD ($1,000 per million tokens, both ways).
const NANOS_PER_TOKEN: i64 = 1_000_000;
/// "hi" with max_tokens 5: estimated 1 + 5 tokens, the mock answers 2 + 5.
const ESTIMATE_TOKENS: i64 = 6;
const ACTUAL_TOKENS: i64 = 7;
const MASTER: &str = "slices-test-master-key-0123456789abcdef";

fn priced(settings: &mut switchyard::config::Settings) {
    settings.prices = vec![PriceSettings {
        model: "mock-gpt".to_owned(),
        input_per_mtok: 1000.0,
        output_per_mtok: 1000.0,
        ..Default::default()
    }];
}

fn body(max_tokens: i64) -> Value {
    json!({
        "model": "mock-gpt",
        "messages": [{ "role": "user", "content": "hi" }],
        "max_tokens": max_tokens,
    })
}

async fn token_with(gw: &TestGateway, budget_nanos: i64) -> anyhow::Result<(String, i64)> {
    let db = &gw.gateway()?.db;
    let owner = db
        .list_users()
        .await?
        .into_iter()
        .find(|user| user.name == "default")
        .context("no default user")?;
    let secret = switchyard::tokens::generate();
    let row = db
        .create_token(&NewToken {
            name: "sliced".to_owned(),
            token_hash: secret.hash,
            token_prefix: secret.display_prefix,
            user_id: Some(owner.id),
            allowed_models: None,
            budget_nanos: Some(budget_nanos),
            budget_tokens: None,
            rpm: None,
            tpm: None,
            expires_at: None,
            enabled: true,
            max_parallel: None,
            quotas: None,
            price_multiplier_ppm: None,
        })
        .await?;
    Ok((secret.token, row.id))
}

async fn post(url: &str, client: &awc::Client, token: &str) -> anyhow::Result<Reply> {
    post_body(url, client, token, &body(5)).await
}

async fn post_body(
    url: &str,
    client: &awc::Client,
    token: &str,
    body: &Value,
) -> anyhow::Result<Reply> {
    let mut response = client
        .post(format!("{url}/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send_json(body)
        .await
        .map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
    let bytes = response.body().limit(1 << 20).await?;
    Ok(Reply {
        status: response.status(),
        headers: response.headers().clone(),
        body: bytes.to_vec(),
    })
}

/// 100 requests at once, estimated at 51 tokens ($0.051: max_tokens 50)
/// and really using 7, against a $10 budget: the first slice is an eighth
/// of it, so a handful of leases cover the burst where there used to be
/// one reservation per request; spend is exact.
async fn a_burst_of_one_token_makes_few_lease_transactions(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| priced(s)).await?;
    let budget = 10_000_000_000;
    let (token, id) = token_with(&gw, budget).await?;
    let body = body(50);
    let replies = join_all((0..100).map(|_| post_body(&gw.url, &gw.client, &token, &body))).await;
    for reply in replies {
        let reply = reply?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let enforcer = gw.gateway()?.enforcer.clone();
    let leases = enforcer.budget_leases_total();
    // Slices of 1/8 of what is left: 100 estimates of $0.051 are $5.1, so
    // at most ln(1 - 0.51) / ln(7/8) ~ 6 leases, whatever the interleaving.
    assert!(leases <= 8, "{leases} lease transactions for 100 requests");
    assert!(leases >= 1);
    // Operators see the same count in /metrics.
    let authorization = format!("Bearer {}", common::MASTER_KEY);
    let metrics = gw
        .send(
            Method::GET,
            "/metrics",
            &[("authorization", authorization.as_str())],
            None,
        )
        .await?;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .lines()
            .any(|line| line == format!("switchyard_budget_leases_total {leases}")),
        "{}",
        metrics.text()
    );
    gw.request_logs().await?;
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token")?;
    assert_eq!(row.spent_nanos, 100 * ACTUAL_TOKENS * NANOS_PER_TOKEN);
    assert_eq!(row.request_count, 100);
    assert!(row.spent_nanos + row.reserved_nanos <= budget);
    assert!(
        row.reserved_nanos > 0,
        "the unused slice stays held until the token is idle: {row:?}, {} rows",
        db.count_reservations().await?
    );
    assert_eq!(db.count_reservations().await?, 1, "one row per instance");
    enforcer.give_back_slices().await;
    let row = db.get_token(id).await?.context("token")?;
    assert_eq!(row.reserved_nanos, 0, "every hold was given back");
    assert_eq!(db.count_reservations().await?, 0);
    // The next request leases again.
    assert_eq!(post(&gw.url, &gw.client, &token).await?.status, 200);
    assert_eq!(enforcer.budget_leases_total(), leases + 1);
    gw.stop().await
}

/// A slice leased under the old budget does not outlive an admin change:
/// a lowered budget refuses the very next request, a raised one serves it.
async fn a_lowered_budget_refuses_at_once(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| priced(s)).await?;
    let (token, id) = token_with(&gw, 1_000_000_000).await?;
    assert_eq!(post(&gw.url, &gw.client, &token).await?.status, 200);
    let path = format!("/admin/tokens/{id}");
    // Less than what one request already spent.
    let (status, answer) = gw
        .admin(
            awc::http::Method::PATCH,
            &path,
            Some(json!({ "budget_nanos": ACTUAL_TOKENS * NANOS_PER_TOKEN - 1 })),
        )
        .await?;
    assert!(status.is_success(), "{answer}");
    let refused = post(&gw.url, &gw.client, &token).await?;
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("budget_exhausted"));
    let (status, answer) = gw
        .admin(
            awc::http::Method::PATCH,
            &path,
            Some(json!({ "budget_nanos": 1_000_000_000 })),
        )
        .await?;
    assert!(status.is_success(), "{answer}");
    assert_eq!(post(&gw.url, &gw.client, &token).await?.status, 200);
    gw.request_logs().await?;
    gw.gateway()?.enforcer.give_back_slices().await;
    let row = gw.gateway()?.db.get_token(id).await?.context("token")?;
    assert_eq!(row.spent_nanos, 2 * ACTUAL_TOKENS * NANOS_PER_TOKEN);
    assert_eq!(row.reserved_nanos, 0);
    gw.stop().await
}

/// With `limits.budget_slice_idle` short, the unused slice goes back by
/// itself once the token has no request (polled with a deadline).
async fn idle_slices_are_given_back(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| {
        priced(s);
        s.limits.budget_slice_idle = Duration::from_millis(200);
    })
    .await?;
    let (token, id) = token_with(&gw, 1_000_000_000).await?;
    for _ in 0..3 {
        assert_eq!(post(&gw.url, &gw.client, &token).await?.status, 200);
    }
    gw.request_logs().await?;
    let db = &gw.gateway()?.db;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = db.get_token(id).await?.context("token")?;
        if row.reserved_nanos == 0 && db.count_reservations().await? == 0 {
            assert_eq!(row.spent_nanos, 3 * ACTUAL_TOKENS * NANOS_PER_TOKEN);
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the idle slice is still held: {} reserved",
            row.reserved_nanos
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await
}

fn write_config(
    dir: &Path,
    port: u16,
    db: &DatabaseSettings,
    mock: &MockUpstream,
    extra: &str,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
workers = 2
shutdown_timeout = "10s"
[database]
url = "{url}"
connect_timeout = "1s"
[admin]
master_key = "{MASTER}"
[security]
secret_key = "slices-test-secret-key-0123456789"
[logging]
level = "warning"
[upstream]
model_refresh_interval = "0s"
[[prices]]
model = "mock-gpt"
input_per_mtok = 1000.0
output_per_mtok = 1000.0
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{base}"
keys = ["ok-1", "ok-2"]
models = ["mock-gpt"]
{extra}
"#,
            url = db.url,
            base = mock.base_url(),
        ),
    )?;
    Ok(config)
}

async fn create_token(url: &str, budget_nanos: i64) -> anyhow::Result<(String, i64)> {
    let client = awc::Client::default();
    let mut created = client
        .post(format!("{url}/admin/tokens"))
        .insert_header(("authorization", format!("Bearer {MASTER}")))
        .send_json(&json!({ "name": "sliced", "budget_nanos": budget_nanos }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created: Value = created.json().await?;
    Ok((
        created["token"].as_str().context("no token")?.to_owned(),
        created["id"].as_i64().context("no id")?,
    ))
}

async fn stop(mut gateway: GatewayProcess) -> anyhow::Result<()> {
    gateway.signal("TERM")?;
    anyhow::ensure!(
        gateway.wait_exit(Duration::from_secs(30)).await?.success(),
        "the gateway did not stop cleanly"
    );
    Ok(())
}

/// Two gateway processes, each with its own slices, share one budget on
/// PostgreSQL: 100 requests at once (split between them) are admitted at
/// most as far as the budget covers their estimates; the spend exceeds the
/// budget by at most what the admitted requests under-estimated; at most
/// what the other instance's slice held unused can be refused early.
#[actix_rt::test]
async fn two_gateway_processes_never_overspend_a_budget() -> anyhow::Result<()> {
    let db = TestDb::new(Backend::Postgres).await?;
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let (port_a, port_b) = (free_port()?, free_port()?);
    let config_a = write_config(&dir.path().join("a"), port_a, &db.settings, &mock, "")?;
    let config_b = write_config(&dir.path().join("b"), port_b, &db.settings, &mock, "")?;
    let a = GatewayProcess::start(&dir.path().join("a"), &config_a, port_a).await?;
    let b = GatewayProcess::start(&dir.path().join("b"), &config_b, port_b).await?;
    let budget = 20 * ACTUAL_TOKENS * NANOS_PER_TOKEN;
    let (token, id) = create_token(&a.url, budget).await?;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let replies = join_all((0..100).map(|i| {
        let url = if i % 2 == 0 { &a.url } else { &b.url };
        post(url, &client, &token)
    }))
    .await;
    let mut ok = 0_i64;
    for reply in replies {
        let reply = reply?;
        match reply.status.as_u16() {
            200 => ok += 1,
            402 => assert_eq!(reply.error_code().as_deref(), Some("budget_exhausted")),
            other => anyhow::bail!("unexpected {other}: {}", reply.text()),
        }
    }
    let estimate = ESTIMATE_TOKENS * NANOS_PER_TOKEN;
    let actual = ACTUAL_TOKENS * NANOS_PER_TOKEN;
    assert!(ok <= budget / estimate, "{ok} admitted");
    // Refused early: at most what the other instance's slice held unused
    // (a refused lease gives its own instance's back first), a slice being
    // at most an eighth of the budget or one estimate.
    assert!(
        ok >= (budget - budget / 8 - 2 * estimate) / actual,
        "{ok} admitted, the budget covers {}",
        budget / actual
    );
    assert_eq!(mock.total_calls(), ok as u64);
    stop(a).await?;
    stop(b).await?;
    let store = switchyard::db::connect(&db.settings).await?;
    let row = store.get_token(id).await?.context("token")?;
    assert_eq!(row.spent_nanos, ok * actual, "spend is exact");
    assert_eq!(row.request_count, 100);
    assert!(
        row.spent_nanos - budget <= ok * (actual - estimate),
        "overshoot {} beyond the bound",
        row.spent_nanos - budget
    );
    assert_eq!(row.reserved_nanos, 0, "both gave their slices back");
    assert_eq!(store.count_reservations().await?, 0);
    Ok(())
}

/// `kill -9` leaves the instance's slice held in the database; the next
/// instance's sweep gives it back once `limits.reservation_ttl` has passed
/// (the killed instance no longer renews it), and the spend stays exact.
async fn a_killed_instances_slice_comes_back_after_the_ttl(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend).await?;
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let extra = "[limits]\nreservation_ttl = \"2s\"\n";
    let config = write_config(dir.path(), port, &db.settings, &mock, extra)?;
    let mut gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let (token, id) = create_token(&gateway.url, 1_000_000_000).await?;
    let client = awc::Client::default();
    assert_eq!(post(&gateway.url, &client, &token).await?.status, 200);
    gateway.signal("KILL")?;
    gateway.wait_exit(Duration::from_secs(10)).await?;
    let store = switchyard::db::connect(&db.settings).await?;
    let row = store.get_token(id).await?.context("token")?;
    assert!(
        row.reserved_nanos > 0,
        "the killed instance's slice is held"
    );
    let killed_at = Instant::now();
    let gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = store.get_token(id).await?.context("token")?;
        if row.reserved_nanos == 0 && row.spent_nanos == ACTUAL_TOKENS * NANOS_PER_TOKEN {
            assert!(
                killed_at.elapsed() >= Duration::from_secs(1),
                "given back before the TTL"
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "still held: {} reserved, {} spent",
            row.reserved_nanos,
            row.spent_nanos
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.count_reservations().await?, 0);
    stop(gateway).await
}
