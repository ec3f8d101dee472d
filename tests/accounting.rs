//! Usage accounting that nothing a client or an upstream sends can stop or
//! bend: strings PostgreSQL refuses, a record the database refuses, and usage
//! figures that are negative or absurdly large.

pub mod common;

use anyhow::Context;
use common::{TestGateway, chat_body, mock_provider};
use serde_json::json;
use std::time::Duration;
use switchyard::config::{Backend, PriceSettings, Settings};

on_both_backends!(
    a_nul_byte_in_client_strings_does_not_stop_accounting,
    a_record_the_database_refuses_is_set_aside_and_the_rest_stored,
    negative_upstream_usage_is_zero_and_flagged,
    huge_upstream_usage_is_clamped_and_never_wraps,
);

/// One token = 1,000,000 nano-USD ($1,000 per million tokens, both ways).
fn priced(settings: &mut Settings) {
    settings.prices = vec![PriceSettings {
        model: "mock-gpt".to_owned(),
        input_per_mtok: 1000.0,
        output_per_mtok: 1000.0,
    }];
}

/// Holds records for one batch: nothing is written until the test flushes.
fn one_batch(settings: &mut Settings) {
    settings.usage.flush_interval = Duration::from_secs(3600);
    settings.usage.flush_max_records = 10_000;
}

async fn token_id(gw: &TestGateway, token: &str) -> anyhow::Result<i64> {
    let (_, tokens) = gw
        .admin(awc::http::Method::GET, "/admin/tokens", None)
        .await?;
    let prefix: String = token.chars().take(11).collect();
    tokens["data"]
        .as_array()
        .or_else(|| tokens.as_array())
        .context("token list")?
        .iter()
        .find(|t| t["prefix"].as_str() == Some(prefix.as_str()))
        .and_then(|t| t["id"].as_i64())
        .with_context(|| format!("no token {prefix} in {tokens}"))
}

/// `GET /metrics` as text.
async fn metrics(gw: &TestGateway) -> anyhow::Result<String> {
    let auth = format!("Bearer {}", common::MASTER_KEY);
    let reply = gw
        .send(
            awc::http::Method::GET,
            "/metrics",
            &[("authorization", &auth)],
            None,
        )
        .await?;
    anyhow::ensure!(reply.status == 200, "/metrics: {}", reply.status);
    Ok(reply.text())
}

/// The value of a metric line `name` (with its labels, if any), or 0.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A model name with a NUL byte (PostgreSQL refuses it in TEXT) and a proxy
/// path with one, without a credential: both still leave a row, and every
/// later request is metered and charged as usual.
async fn a_nul_byte_in_client_strings_does_not_stop_accounting(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| {
        priced(s);
        one_batch(s);
    })
    .await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let id = token_id(&gw, &token).await?;

    let reply = gw.chat(&token, chat_body("mock\u{0}gpt", "hi")).await?;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    let reply = gw
        .send(awc::http::Method::GET, "/proxy/%00/x", &[], None)
        .await?;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    for _ in 0..5 {
        let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    let logs = gw.request_logs().await?;
    assert_eq!(logs.iter().filter(|row| row.status == 200).count(), 5);
    let odd = logs
        .iter()
        .find(|row| {
            row.requested_model
                .as_deref()
                .is_some_and(|m| m.starts_with("mock") && m.ends_with("gpt") && m != "mock-gpt")
        })
        .context("the NUL model's row")?;
    let model = odd.requested_model.as_deref().unwrap_or_default();
    assert!(!model.contains('\0'), "{model:?}");
    assert!(
        logs.iter().all(|row| !row.endpoint.contains('\0')),
        "a NUL reached a row"
    );
    assert_eq!(logs.len(), 7, "{:?}", common::outcomes(&logs));

    // The good requests were charged: 2 prompt + 5 completion tokens each.
    let row = gw.gateway()?.db.get_token(id).await?.context("token")?;
    assert_eq!(row.request_count, 6);
    assert_eq!(row.spent_tokens, 5 * 7);
    assert_eq!(row.spent_nanos, 5 * 7 * 1_000_000);

    // Accounting goes on after that batch.
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(gw.request_logs().await?.len(), 8);
    gw.stop().await
}

/// A record the database refuses (here a trigger stands in for whatever a
/// database may refuse) is set aside in `usage_dead_letters`, counted in
/// `/metrics`; every other record of its batch is stored.
async fn a_record_the_database_refuses_is_set_aside_and_the_rest_stored(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, mock| {
        one_batch(s);
        s.providers.push(mock_provider(
            mock,
            "poison",
            &["poison-model"],
            &["ok-poison"],
        ));
    })
    .await?;
    match backend {
        Backend::Sqlite => {
            gw.sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs \
                 WHEN NEW.requested_model = 'poison-model' \
                 BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
            )
            .await?;
        }
        Backend::Postgres => {
            gw.sql(
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.requested_model = 'poison-model' THEN RAISE EXCEPTION 'poison refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await?;
            gw.sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs \
                 FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            )
            .await?;
        }
    }
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let mut poison_id = String::new();
    for i in 0..9 {
        let model = if i == 4 { "poison-model" } else { "mock-gpt" };
        let reply = gw.chat(&token, chat_body(model, "hi")).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if i == 4 {
            poison_id = reply.header("x-request-id").context("id")?.to_owned();
        }
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 8, "{:?}", common::outcomes(&logs));
    assert!(logs.iter().all(|row| row.request_id != poison_id));
    let dead = gw.gateway()?.db.list_dead_letters(10).await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead.first().map(|d| d.request_id.as_str()),
        Some(poison_id.as_str())
    );
    assert!(
        dead.first()
            .is_some_and(|d| d.error.contains("poison refused")),
        "{dead:?}"
    );
    let text = metrics(&gw).await?;
    assert_eq!(
        metric(&text, "switchyard_usage_dead_letters_total"),
        1.0,
        "{text}"
    );
    // Accounting goes on.
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(gw.request_logs().await?.len(), 9);
    gw.stop().await
}

/// Starts a gateway whose only key reports usage as `figure` (the mock's
/// `negusage-`/`hugeusage-` keys), with a priced model and a postpaid owner.
async fn hostile_usage_gateway(backend: Backend, key: &str) -> anyhow::Result<TestGateway> {
    let key = key.to_owned();
    TestGateway::start(backend, move |s, mock| {
        priced(s);
        s.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &[key.as_str()])];
    })
    .await
}

/// An upstream reporting -1e9 tokens: the row, the token's counters and the
/// owner's balance never go the wrong way; the row says why.
async fn negative_upstream_usage_is_zero_and_flagged(backend: Backend) -> anyhow::Result<()> {
    let gw = hostile_usage_gateway(backend, "negusage-1").await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let id = token_id(&gw, &token).await?;
    for stream in [false, true] {
        let mut body = chat_body("mock-gpt", "hi");
        body["stream"] = json!(stream);
        body["max_tokens"] = json!(5);
        let reply = gw.chat(&token, body).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 2);
    for row in &logs {
        assert!(
            row.prompt_tokens >= 0 && row.completion_tokens >= 0,
            "{row:?}"
        );
        assert!(row.cost_nanos >= 0, "{row:?}");
        assert!(
            row.usage_flags
                .as_deref()
                .is_some_and(|flags| flags.contains("usage_negative")),
            "{row:?}"
        );
    }
    let db = &gw.gateway()?.db;
    let token_row = db.get_token(id).await?.context("token")?;
    assert!(token_row.spent_nanos >= 0, "{token_row:?}");
    assert!(token_row.spent_tokens >= 0, "{token_row:?}");
    let owner = db
        .get_user(token_row.user_id.context("owner")?)
        .await?
        .context("user")?;
    assert!(
        owner.balance_nanos <= 0,
        "the owner gained money: {owner:?}"
    );
    let text = metrics(&gw).await?;
    assert_eq!(
        metric(
            &text,
            "switchyard_usage_flagged_total{flag=\"usage_negative\"}"
        ),
        2.0,
        "{text}"
    );
    gw.stop().await
}

/// An upstream reporting 9.2e18 tokens (twice: the sum overflows an i64):
/// the request is answered, its row is clamped to what the request could
/// produce and flagged, and the counters stay small and positive.
async fn huge_upstream_usage_is_clamped_and_never_wraps(backend: Backend) -> anyhow::Result<()> {
    let gw = hostile_usage_gateway(backend, "hugeusage-1").await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let id = token_id(&gw, &token).await?;
    for stream in [false, true, false] {
        let mut body = chat_body("mock-gpt", "hi");
        body["stream"] = json!(stream);
        body["max_tokens"] = json!(5);
        let reply = gw.chat(&token, body).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 3);
    let allowance = gw.settings.usage.prompt_token_allowance;
    for row in &logs {
        // At most max_tokens out; in, at most the request's bytes plus the
        // allowance for what bytes do not show (images by URL, templates).
        assert_eq!(row.completion_tokens, 5, "{row:?}");
        assert!(
            row.prompt_tokens > 0 && row.prompt_tokens <= 4096 + allowance,
            "{row:?}"
        );
        assert!(
            row.usage_flags
                .as_deref()
                .is_some_and(|flags| flags.contains("usage_clamped")),
            "{row:?}"
        );
    }
    let token_row = gw.gateway()?.db.get_token(id).await?.context("token")?;
    let logged_tokens: i64 = logs
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    let logged_cost: i64 = logs.iter().map(|r| r.cost_nanos).sum();
    assert_eq!(token_row.spent_tokens, logged_tokens);
    assert_eq!(token_row.spent_nanos, logged_cost);
    assert!(token_row.spent_nanos > 0);
    gw.stop().await
}
