//! Token limits under load and over time: budgets held by database
//! reservations (100 concurrent requests, two instances sharing
//! PostgreSQL), rate limits, parallelism, quotas resetting on calendar
//! boundaries with a manual clock, unpriced models, and spend that agrees
//! between request logs, token counters and billing records.

pub mod common;

use anyhow::Context;
use common::{Reply, TestGateway, mock_provider};
use futures_util::future::join_all;
use serde_json::{Value, json};
use switchyard::StartOptions;
use switchyard::clock::ManualClock;
use switchyard::config::{Backend, PriceSettings};
use switchyard::db::tokens::NewToken;

on_both_backends!(
    hundred_concurrent_requests_cannot_overspend_a_money_budget,
    hundred_concurrent_requests_cannot_overspend_a_token_budget,
    rate_limits_answer_429_and_slide,
    parallel_limit_refuses_while_a_request_runs,
    quotas_reset_on_calendar_boundaries,
    expired_tokens_are_refused_by_the_clock,
    unpriced_models_are_refused_to_money_budgets_unless_allowed,
    spend_agrees_between_logs_counters_and_billing,
    self_service_reports_limits_spend_and_usage,
    expired_reservations_are_given_back,
    failed_authentications_are_slowed_then_refused,
    prepaid_balance_is_enforced_and_topped_up,
);

/// 2026-11-30T23:59:50Z: ten seconds before a day and a month end.
const NOV_30_235950: i64 = 1_796_083_190_000;

/// One token = 1,000,000 nano-USD ($1,000 per million tokens, both ways).
const NANOS_PER_TOKEN: i64 = 1_000_000;

/// The mock counts a prompt's bytes as its tokens and answers 5 tokens; the
/// gateway estimates ~4 characters per token. For "hi" with max_tokens 5:
const ESTIMATE_TOKENS: i64 = 1 + 5;
const ACTUAL_TOKENS: i64 = 2 + 5;

fn priced(settings: &mut switchyard::config::Settings) {
    settings.prices = vec![PriceSettings {
        model: "mock-gpt".to_owned(),
        input_per_mtok: 1000.0,
        output_per_mtok: 1000.0,
        ..Default::default()
    }];
}

fn body(stream: bool) -> Value {
    json!({
        "model": "mock-gpt",
        "messages": [{ "role": "user", "content": "hi" }],
        "max_tokens": 5,
        "stream": stream,
    })
}

/// Creates a token straight in the database (the admin API's own tests
/// cover its routes); returns the token and its id.
async fn token_with(
    gw: &TestGateway,
    configure: impl FnOnce(&mut NewToken),
) -> anyhow::Result<(String, i64)> {
    let db = &gw.gateway()?.db;
    let owner = db
        .list_users()
        .await?
        .into_iter()
        .find(|user| user.name == "default")
        .context("no default user")?;
    let secret = switchyard::tokens::generate();
    let mut new = NewToken {
        name: "limited".to_owned(),
        token_hash: secret.hash,
        token_prefix: secret.display_prefix,
        user_id: Some(owner.id),
        allowed_models: None,
        budget_nanos: None,
        budget_tokens: None,
        rpm: None,
        tpm: None,
        expires_at: None,
        enabled: true,
        max_parallel: None,
        quotas: None,
        price_multiplier_ppm: None,
    };
    configure(&mut new);
    let row = db.create_token(&new).await?;
    Ok((secret.token, row.id))
}

async fn post(url: &str, client: &awc::Client, token: &str, body: &Value) -> anyhow::Result<Reply> {
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

fn error_code(reply: &Reply) -> Option<String> {
    reply.error_code()
}

/// Sends `n` requests at once; returns the replies.
async fn burst(
    url: &str,
    client: &awc::Client,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<Reply>> {
    let body = body(false);
    join_all((0..n).map(|_| post(url, client, token, &body)))
        .await
        .into_iter()
        .collect()
}

/// Checks the outcome of a burst against a budget of `budget` units where a
/// request is estimated at `estimate` and really costs `actual`: never more
/// admitted than the reservations allow, at least what the budget covers,
/// the rest refused with 402, and the overshoot within the documented bound
/// (requests admitted x per-request underestimate, docs/limits.md).
fn check_burst(replies: &[Reply], budget: i64, estimate: i64, actual: i64) -> anyhow::Result<i64> {
    let ok = replies.iter().filter(|r| r.status == 200).count() as i64;
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(reply.status, 402, "{}", reply.text());
        assert_eq!(error_code(reply).as_deref(), Some("budget_exhausted"));
        let message = reply.json()?["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("budget"), "{message}");
    }
    assert!(
        ok <= budget / estimate,
        "{ok} admitted, at most {} fit",
        budget / estimate
    );
    assert!(
        ok >= budget / actual,
        "{ok} admitted, the budget covers {}",
        budget / actual
    );
    let spent = ok * actual;
    assert!(
        spent - budget <= ok * (actual - estimate),
        "overshoot {} beyond the bound {}",
        spent - budget,
        ok * (actual - estimate)
    );
    Ok(ok)
}

/// A $0.07 budget covers 10 requests of $0.007; 100 at once must not spend
/// more than the stated bound, and the counters must be exact.
async fn hundred_concurrent_requests_cannot_overspend_a_money_budget(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| priced(s)).await?;
    let budget = 10 * ACTUAL_TOKENS * NANOS_PER_TOKEN;
    let (token, id) = token_with(&gw, |t| t.budget_nanos = Some(budget)).await?;
    let replies = burst(&gw.url, &gw.client, &token, 100).await?;
    let ok = check_burst(
        &replies,
        budget,
        ESTIMATE_TOKENS * NANOS_PER_TOKEN,
        ACTUAL_TOKENS * NANOS_PER_TOKEN,
    )?;
    assert_eq!(
        gw.mock.total_calls(),
        ok as u64,
        "refused requests never reach upstream"
    );
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 100);
    // The instance keeps the unused part of its budget slice until the
    // token is idle; give it back now, as at shutdown (docs/limits.md).
    gw.gateway()?.enforcer.give_back_slices().await;
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token")?;
    assert_eq!(row.spent_nanos, ok * ACTUAL_TOKENS * NANOS_PER_TOKEN);
    assert_eq!(row.reserved_nanos, 0, "every hold was given back");
    assert_eq!(db.count_reservations().await?, 0);
    // The budget is spent: the next request is refused at once.
    let reply = post(&gw.url, &gw.client, &token, &body(false)).await?;
    assert_eq!(reply.status, 402);
    gw.stop().await
}

async fn hundred_concurrent_requests_cannot_overspend_a_token_budget(
    backend: Backend,
) -> anyhow::Result<()> {
    // No prices at all: a token budget does not need them.
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let budget = 10 * ACTUAL_TOKENS;
    let (token, id) = token_with(&gw, |t| t.budget_tokens = Some(budget)).await?;
    let replies = burst(&gw.url, &gw.client, &token, 100).await?;
    let ok = check_burst(&replies, budget, ESTIMATE_TOKENS, ACTUAL_TOKENS)?;
    gw.request_logs().await?;
    gw.gateway()?.enforcer.give_back_slices().await;
    let row = gw.gateway()?.db.get_token(id).await?.context("token")?;
    assert_eq!(row.spent_tokens, ok * ACTUAL_TOKENS);
    assert_eq!(row.reserved_tokens, 0);
    gw.stop().await
}

/// The same 100 requests split over two gateway instances sharing one
/// PostgreSQL database: the database reservation bounds them together.
#[actix_rt::test]
async fn two_instances_sharing_postgres_cannot_overspend_together() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Postgres, |s, _| priced(s)).await?;
    let (other, other_url) = gw.start_another_instance().await?;
    let budget = 10 * ACTUAL_TOKENS * NANOS_PER_TOKEN;
    let (token, id) = token_with(&gw, |t| t.budget_nanos = Some(budget)).await?;
    let body = body(false);
    let replies: Vec<Reply> = join_all((0..100).map(|i| {
        let url = if i % 2 == 0 {
            gw.url.as_str()
        } else {
            other_url.as_str()
        };
        post(url, &gw.client, &token, &body)
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()?;
    let ok = check_burst(
        &replies,
        budget,
        ESTIMATE_TOKENS * NANOS_PER_TOKEN,
        ACTUAL_TOKENS * NANOS_PER_TOKEN,
    )?;
    other.flush_usage().await?;
    gw.request_logs().await?;
    other.enforcer.give_back_slices().await;
    gw.gateway()?.enforcer.give_back_slices().await;
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token")?;
    assert_eq!(row.spent_nanos, ok * ACTUAL_TOKENS * NANOS_PER_TOKEN);
    assert_eq!(
        row.request_count,
        ok + (100 - ok),
        "every request is counted"
    );
    assert_eq!(row.reserved_nanos, 0);
    assert_eq!(db.count_reservations().await?, 0);
    assert_eq!(gw.mock.total_calls(), ok as u64);
    other.stop().await?;
    gw.stop().await
}

/// RPM and TPM refuse with 429, `Retry-After` and a message naming the
/// limit; the window slides with the clock.
async fn rate_limits_answer_429_and_slide(backend: Backend) -> anyhow::Result<()> {
    let clock = ManualClock::starting_at(NOV_30_235950 - 3_600_000);
    let gw = TestGateway::start_with(
        backend,
        StartOptions {
            clock: Some(clock.clone()),
            ..StartOptions::default()
        },
        |_, _| {},
    )
    .await?;
    let (rpm_token, _) = token_with(&gw, |t| t.rpm = Some(3)).await?;
    for _ in 0..3 {
        let reply = post(&gw.url, &gw.client, &rpm_token, &body(false)).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let refused = post(&gw.url, &gw.client, &rpm_token, &body(false)).await?;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(error_code(&refused).as_deref(), Some("rate_limited"));
    let wait: u64 = refused
        .header("retry-after")
        .context("no Retry-After")?
        .parse()?;
    assert!((1..=60).contains(&wait), "retry after {wait}s");
    let message = refused.json()?["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.to_lowercase().contains("minute"), "{message}");
    clock.advance(60_000);
    let reply = post(&gw.url, &gw.client, &rpm_token, &body(false)).await?;
    assert_eq!(reply.status, 200, "the window slid: {}", reply.text());

    // TPM 10: one request (estimated 6, really 7) fits, the next does not.
    let (tpm_token, _) = token_with(&gw, |t| t.tpm = Some(10)).await?;
    assert_eq!(
        post(&gw.url, &gw.client, &tpm_token, &body(false))
            .await?
            .status,
        200
    );
    let refused = post(&gw.url, &gw.client, &tpm_token, &body(false)).await?;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    clock.advance(60_000);
    assert_eq!(
        post(&gw.url, &gw.client, &tpm_token, &body(false))
            .await?
            .status,
        200
    );
    gw.stop().await
}

/// `max_parallel = 1`: a second request while the first runs gets 429; once
/// it ends the next one passes.
async fn parallel_limit_refuses_while_a_request_runs(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings
            .providers
            .push(mock_provider(mock, "slow", &["slow-gpt"], &["slow400-a"]));
    })
    .await?;
    let (token, _) = token_with(&gw, |t| t.max_parallel = Some(1)).await?;
    let mut slow_body = body(false);
    slow_body["model"] = json!("slow-gpt");
    let first = post(&gw.url, &gw.client, &token, &slow_body);
    let second = async {
        gw.wait_for_upstream_calls(1).await?;
        post(&gw.url, &gw.client, &token, &body(false)).await
    };
    let (first, second) = futures_util::future::join(first, second).await;
    let (first, second) = (first?, second?);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(second.status, 429, "{}", second.text());
    let message = second.json()?["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("parallel") || message.contains("in flight"),
        "{message}"
    );
    assert_eq!(
        post(&gw.url, &gw.client, &token, &body(false))
            .await?
            .status,
        200
    );
    gw.stop().await
}

/// Daily and monthly quotas refuse with 429 until the UTC boundary, then
/// reset; `Retry-After` points at the boundary.
async fn quotas_reset_on_calendar_boundaries(backend: Backend) -> anyhow::Result<()> {
    let clock = ManualClock::starting_at(NOV_30_235950);
    let gw = TestGateway::start_with(
        backend,
        StartOptions {
            clock: Some(clock.clone()),
            ..StartOptions::default()
        },
        |s, _| priced(s),
    )
    .await?;
    let (daily, _) = token_with(&gw, |t| {
        t.quotas = Some(r#"[{"period":"day","kind":"requests","limit":2}]"#.to_owned())
    })
    .await?;
    let monthly_cost = 2 * ACTUAL_TOKENS * NANOS_PER_TOKEN;
    let (monthly, _) = token_with(&gw, |t| {
        t.quotas = Some(format!(
            r#"[{{"period":"month","kind":"cost","limit":{monthly_cost}}}]"#
        ))
    })
    .await?;
    for token in [&daily, &monthly] {
        for _ in 0..2 {
            let reply = post(&gw.url, &gw.client, token, &body(false)).await?;
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
        let refused = post(&gw.url, &gw.client, token, &body(false)).await?;
        assert_eq!(refused.status, 429, "{}", refused.text());
        let wait: u64 = refused
            .header("retry-after")
            .context("Retry-After")?
            .parse()?;
        assert!((1..=10).contains(&wait), "resets in 10 s, said {wait}");
        let message = refused.json()?["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("quota"), "{message}");
    }
    // One second before midnight: still refused.
    clock.advance(9_000);
    assert_eq!(
        post(&gw.url, &gw.client, &daily, &body(false))
            .await?
            .status,
        429
    );
    // December 1st, 00:00:00 UTC: a new day and a new month.
    clock.advance(1_000);
    for token in [&daily, &monthly] {
        let reply = post(&gw.url, &gw.client, token, &body(false)).await?;
        assert_eq!(reply.status, 200, "after the boundary: {}", reply.text());
    }
    gw.stop().await
}

/// Expiry follows the gateway's clock: 401 once it has passed.
async fn expired_tokens_are_refused_by_the_clock(backend: Backend) -> anyhow::Result<()> {
    let clock = ManualClock::starting_at(NOV_30_235950);
    let gw = TestGateway::start_with(
        backend,
        StartOptions {
            clock: Some(clock.clone()),
            ..StartOptions::default()
        },
        |_, _| {},
    )
    .await?;
    let (token, _) = token_with(&gw, |t| t.expires_at = Some(NOV_30_235950 + 5_000)).await?;
    assert_eq!(
        post(&gw.url, &gw.client, &token, &body(false))
            .await?
            .status,
        200
    );
    clock.advance(5_000);
    let refused = post(&gw.url, &gw.client, &token, &body(false)).await?;
    assert_eq!(refused.status, 401);
    let message = refused.json()?["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("expired"), "{message}");
    gw.stop().await
}

/// A model without a price is never a silent $0 for a money budget: 402
/// naming the model, unless `limits.allow_unpriced`; the row says unpriced.
async fn unpriced_models_are_refused_to_money_budgets_unless_allowed(
    backend: Backend,
) -> anyhow::Result<()> {
    for allow in [false, true] {
        let gw = TestGateway::start(backend, |settings, mock| {
            priced(settings);
            settings.limits.allow_unpriced = allow;
            settings
                .providers
                .push(mock_provider(mock, "free", &["mock-free"], &["ok-free"]));
        })
        .await?;
        let (budgeted, _) = token_with(&gw, |t| t.budget_nanos = Some(1_000_000_000)).await?;
        let (unlimited, _) = token_with(&gw, |_| {}).await?;
        let mut free = body(false);
        free["model"] = json!("mock-free");
        let reply = post(&gw.url, &gw.client, &budgeted, &free).await?;
        if allow {
            assert_eq!(reply.status, 200, "{}", reply.text());
        } else {
            assert_eq!(reply.status, 402, "{}", reply.text());
            assert_eq!(error_code(&reply).as_deref(), Some("model_unpriced"));
            let message = reply.json()?["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains("mock-free"), "{message}");
        }
        // Without a money budget the request is served and logged unpriced.
        assert_eq!(
            post(&gw.url, &gw.client, &unlimited, &free).await?.status,
            200
        );
        let logs = gw.request_logs().await?;
        let served: Vec<_> = logs.iter().filter(|row| row.status == 200).collect();
        assert!(served.iter().all(|row| !row.priced && row.cost_nanos == 0));
        gw.stop().await?;
    }
    Ok(())
}

/// Streams and non-streams, with a price multiplier: request logs, the
/// token's counters and its billing records agree to the nano-dollar.
async fn spend_agrees_between_logs_counters_and_billing(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| priced(s)).await?;
    let (token, id) = token_with(&gw, |t| {
        t.budget_nanos = Some(1_000_000_000_000);
        t.price_multiplier_ppm = Some(1_500_000);
    })
    .await?;
    for i in 0..12 {
        let mut request = body(i % 2 == 0);
        if i % 4 == 0 {
            request["stream_options"] = json!({ "include_usage": true });
        }
        let reply = post(&gw.url, &gw.client, &token, &request).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let logs = gw.request_logs().await?;
    gw.gateway()?.enforcer.give_back_slices().await;
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token")?;
    let logged: i64 = logs
        .iter()
        .filter(|log| log.token_id == Some(id))
        .map(|log| log.cost_nanos)
        .sum();
    let (charges, charged) = db.token_charges(id).await?;
    // 7 tokens at $0.001, x1.5.
    assert_eq!(logged, 12 * ACTUAL_TOKENS * NANOS_PER_TOKEN * 3 / 2);
    assert_eq!(row.spent_nanos, logged);
    assert_eq!(charged, logged);
    assert_eq!(charges, 12);
    assert_eq!(row.spent_tokens, 12 * ACTUAL_TOKENS);
    assert_eq!(row.reserved_nanos, 0);
    let owner = db
        .get_user(row.user_id.context("owner")?)
        .await?
        .context("user")?;
    assert_eq!(owner.balance_nanos, -logged, "the tab of a postpaid owner");
    assert_eq!(owner.reserved_nanos, 0);
    gw.stop().await
}

/// `/v1/token/balance` and `/v1/token/usage` report the caller's own token.
async fn self_service_reports_limits_spend_and_usage(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| priced(s)).await?;
    let budget = 100 * NANOS_PER_TOKEN;
    let (token, _) = token_with(&gw, |t| {
        t.budget_nanos = Some(budget);
        t.rpm = Some(100);
        t.quotas = Some(r#"[{"period":"day","kind":"requests","limit":50}]"#.to_owned());
    })
    .await?;
    for _ in 0..3 {
        assert_eq!(
            post(&gw.url, &gw.client, &token, &body(false))
                .await?
                .status,
            200
        );
    }
    gw.request_logs().await?;
    // `remaining` is what can still be reserved: without the slice this
    // instance holds for the token.
    gw.gateway()?.enforcer.give_back_slices().await;
    let get = |path: &'static str| {
        let client = gw.client.clone();
        let url = format!("{}{path}", gw.url);
        let token = token.clone();
        async move {
            let mut response = client
                .get(url)
                .insert_header(("authorization", format!("Bearer {token}")))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let value: Value = response.json().await?;
            anyhow::Ok((response.status(), value))
        }
    };
    let (status, balance) = get("/v1/token/balance").await?;
    assert_eq!(status, 200, "{balance}");
    let spent = 3 * ACTUAL_TOKENS * NANOS_PER_TOKEN;
    assert_eq!(balance["token"]["spent_nanos"], json!(spent));
    assert_eq!(balance["token"]["remaining_nanos"], json!(budget - spent));
    assert_eq!(balance["token"]["rpm"], json!(100));
    assert_eq!(balance["quotas"][0]["used"], json!(3));
    assert_eq!(balance["quotas"][0]["remaining"], json!(47));
    assert!(balance["quotas"][0]["resets_at"].as_u64() > Some(0));
    assert_eq!(balance["rate"]["requests_last_minute"], json!(3));

    let (status, usage) = get("/v1/token/usage?days=7").await?;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["total"]["requests"], json!(3));
    assert_eq!(usage["total"]["cost_nanos"], json!(spent));
    assert_eq!(usage["by_model"][0]["model"], json!("mock-gpt"));
    assert_eq!(usage["by_day"].as_array().map(Vec::len), Some(1));
    let (status, _) = get("/v1/token/usage?days=0").await?;
    assert_eq!(status, 400);
    let mut response = gw
        .client
        .get(format!("{}/v1/token/balance", gw.url))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(response.status(), 401);
    let _ = response.body().await;
    gw.stop().await
}

/// A reservation whose request never settled (a crashed instance) is
/// given back once it expires, and the budget is usable again.
async fn expired_reservations_are_given_back(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| priced(s)).await?;
    let budget = 10 * NANOS_PER_TOKEN;
    let (token, id) = token_with(&gw, |t| t.budget_nanos = Some(budget)).await?;
    let db = &gw.gateway()?.db;
    let now = switchyard::clock::system_now_ms();
    // What a crashed instance leaves behind: the whole budget held.
    let held = db
        .reserve(
            switchyard::db::reservations::Hold {
                token_id: id,
                user_id: None,
                nanos: budget,
                tokens: 0,
                user_nanos: 0,
            },
            now - 10_000,
            now - 1,
        )
        .await?;
    assert!(held.is_ok());
    let refused = post(&gw.url, &gw.client, &token, &body(false)).await?;
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(db.expire_reservations(now).await?, 1);
    assert_eq!(db.expire_reservations(now).await?, 0, "given back once");
    let row = db.get_token(id).await?.context("token")?;
    assert_eq!(row.reserved_nanos, 0);
    let reply = post(&gw.url, &gw.client, &token, &body(false)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.stop().await
}

/// Wrong tokens from one address are answered slower, then refused with
/// 429 before any lookup; a good token still works from other addresses
/// (here: once the block is lifted by the clock).
async fn failed_authentications_are_slowed_then_refused(backend: Backend) -> anyhow::Result<()> {
    let clock = ManualClock::starting_at(NOV_30_235950);
    let gw = TestGateway::start_with(
        backend,
        StartOptions {
            clock: Some(clock.clone()),
            ..StartOptions::default()
        },
        |settings, _| {
            settings.limits.auth.slow_after = 2;
            settings.limits.auth.block_after = 4;
            settings.limits.auth.max_delay = std::time::Duration::from_millis(50);
        },
    )
    .await?;
    let (good, _) = token_with(&gw, |_| {}).await?;
    for attempt in 1..=4 {
        let reply = post(&gw.url, &gw.client, "sy-guess", &body(false)).await?;
        assert_eq!(reply.status, 401, "attempt {attempt}");
    }
    let blocked = post(&gw.url, &gw.client, "sy-guess", &body(false)).await?;
    assert_eq!(blocked.status, 429, "{}", blocked.text());
    assert!(blocked.header("retry-after").is_some());
    // Blocked before the lookup: even a valid token waits out the block.
    assert_eq!(
        post(&gw.url, &gw.client, &good, &body(false)).await?.status,
        429
    );
    clock.advance(15 * 60_000 + 1);
    assert_eq!(
        post(&gw.url, &gw.client, &good, &body(false)).await?.status,
        200
    );
    assert_eq!(gw.mock.total_calls(), 1);
    gw.stop().await
}

/// Two instances sharing PostgreSQL: a token disabled through one is
/// refused by the other within the sync interval (polled here with a
/// deadline, not a fixed sleep).
#[actix_rt::test]
async fn a_token_disabled_on_one_instance_is_refused_by_the_other() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Postgres, |settings, _| {
        settings.database.sync_interval = std::time::Duration::from_millis(200);
    })
    .await?;
    let (other, other_url) = gw.start_another_instance().await?;
    let (token, id) = token_with(&gw, |_| {}).await?;
    // Both instances have the token cached.
    assert_eq!(
        post(&gw.url, &gw.client, &token, &body(false))
            .await?
            .status,
        200
    );
    assert_eq!(
        post(&other_url, &gw.client, &token, &body(false))
            .await?
            .status,
        200
    );
    let (status, _) = gw
        .admin(
            awc::http::Method::POST,
            &format!("/admin/tokens/{id}/disable"),
            None,
        )
        .await?;
    assert!(status.is_success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reply = post(&other_url, &gw.client, &token, &body(false)).await?;
        if reply.status == 401 {
            break;
        }
        assert_eq!(reply.status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the other instance still accepts the disabled token"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    other.stop().await?;
    gw.stop().await
}

/// A prepaid owner whose balance cannot cover the estimate gets 402
/// `insufficient_balance`; a top-up lets the next request through.
async fn prepaid_balance_is_enforced_and_topped_up(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| priced(s)).await?;
    // $0.010: one request (estimated $0.006, charged $0.007) fits, a second not.
    let (status, user) = gw
        .admin(
            awc::http::Method::POST,
            "/admin/users",
            Some(json!({ "name": "prepaid", "prepaid": true, "balance_usd": 0.010 })),
        )
        .await?;
    assert_eq!(status, 201, "{user}");
    let user_id = user["id"].as_i64().context("user id")?;
    let token = gw
        .create_token(json!({ "name": "prepaid-app", "user_id": user_id }))
        .await?;
    assert_eq!(
        post(&gw.url, &gw.client, &token, &body(false))
            .await?
            .status,
        200
    );
    gw.request_logs().await?;
    let refused = post(&gw.url, &gw.client, &token, &body(false)).await?;
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("insufficient_balance")
    );
    let owner = gw.gateway()?.db.get_user(user_id).await?.context("user")?;
    assert_eq!(
        owner.balance_nanos,
        10_000_000 - ACTUAL_TOKENS * NANOS_PER_TOKEN
    );
    assert_eq!(owner.reserved_nanos, 0);
    let (status, _) = gw
        .admin(
            awc::http::Method::POST,
            &format!("/admin/users/{user_id}/topup"),
            Some(json!({ "amount_usd": 0.01 })),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        post(&gw.url, &gw.client, &token, &body(false))
            .await?
            .status,
        200
    );
    gw.stop().await
}
