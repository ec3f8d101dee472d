//! The management side of limits and billing, end to end on both backends:
//! tokens created and changed with every limit (and the change seen by the
//! very next request), rotation with a grace period on a manual clock,
//! users with balances and top-ups, the billing ledger, model prices that
//! cost the next request, unpriced models, and the seeded list prices.

pub mod common;

use anyhow::Context;
use awc::http::{Method, StatusCode};
use common::{MASTER_KEY, Reply, TestGateway, chat_body};
use serde_json::{Value, json};
use switchyard::StartOptions;
use switchyard::clock::ManualClock;
use switchyard::config::Backend;

on_both_backends!(
    tokens_take_every_limit_and_show_it,
    patch_changes_and_clears_limits,
    invalid_token_limits_are_400_and_change_nothing,
    a_patch_applies_to_the_very_next_request,
    rotation_keeps_the_old_token_for_the_grace_period_only,
    users_are_created_listed_changed_and_deleted,
    invalid_user_bodies_are_400,
    topups_and_charges_move_the_balance_and_are_billed,
    a_price_change_costs_the_next_request,
    unpriced_models_are_listed_until_priced,
    list_prices_are_seeded_and_never_overwrite_an_admin_price,
    the_new_admin_routes_need_the_master_key,
);

/// 2026-11-22T00:00:00Z.
const NOV_22: i64 = 1_795_305_600_000;

/// An admin call with a raw body (for wrong types and malformed JSON).
async fn admin_raw(
    gw: &TestGateway,
    method: Method,
    path: &str,
    body: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut response = gw
        .client
        .request(method, format!("{}{path}", gw.url))
        .insert_header(("authorization", format!("Bearer {MASTER_KEY}")))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
    let bytes = response.body().await?;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&bytes)))?
    };
    Ok((response.status(), value))
}

/// An admin call that must succeed; returns the answer.
async fn ok(
    gw: &TestGateway,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let (status, answer) = gw.admin(method.clone(), path, body).await?;
    anyhow::ensure!(status.is_success(), "{method} {path}: {status} {answer}");
    Ok(answer)
}

/// An admin call that must fail with `status` and `code`.
async fn refused(
    gw: &TestGateway,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
) -> anyhow::Result<Value> {
    let (got, answer) = gw.admin(method.clone(), path, body).await?;
    anyhow::ensure!(
        got.as_u16() == status && answer.pointer("/error/code") == Some(&json!(code)),
        "{method} {path}: expected {status} {code}, got {got} {answer}"
    );
    Ok(answer)
}

/// Creates a token; returns (secret, id, answer).
async fn token(gw: &TestGateway, body: Value) -> anyhow::Result<(String, i64, Value)> {
    let (status, answer) = gw.admin(Method::POST, "/admin/tokens", Some(body)).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status} {answer}");
    let secret = answer["token"].as_str().context("no token")?.to_owned();
    let id = answer["id"].as_i64().context("no id")?;
    Ok((secret, id, answer))
}

async fn user(gw: &TestGateway, body: Value) -> anyhow::Result<Value> {
    let (status, answer) = gw.admin(Method::POST, "/admin/users", Some(body)).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status} {answer}");
    Ok(answer)
}

fn id_of(value: &Value) -> anyhow::Result<i64> {
    value["id"].as_i64().context("no id")
}

async fn chat(gw: &TestGateway, token: &str) -> anyhow::Result<Reply> {
    gw.chat(token, chat_body("mock-gpt", "hello")).await
}

fn status_and_code(reply: &Reply) -> (u16, Option<String>) {
    (reply.status.as_u16(), reply.error_code())
}

async fn default_user_id(gw: &TestGateway) -> anyhow::Result<i64> {
    let found = ok(gw, Method::GET, "/admin/users?name=default", None).await?;
    found
        .pointer("/data/0/id")
        .and_then(Value::as_i64)
        .context("no default user")
}

/// Stops the gateway and starts a new one on the same database.
async fn restart(gw: &mut TestGateway) -> anyhow::Result<()> {
    if let Some(old) = gw.gateway.take() {
        old.stop().await?;
    }
    let gateway = switchyard::start(
        gw.settings.clone(),
        slog::Logger::root(slog::Discard, slog::o!()),
        StartOptions {
            handle_signals: false,
            ..gw.options.clone()
        },
    )
    .await?;
    gw.url = format!("http://{}", gateway.addr);
    gw.gateway = Some(gateway);
    Ok(())
}

async fn tokens_take_every_limit_and_show_it(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let owner = user(&gw, json!({ "name": "carol" })).await?;
    let expires_at = switchyard::db::now_ms() / 1000 + 86_400;
    let (secret, id, created) = token(
        &gw,
        json!({
            "name": "limited",
            "user_id": owner["id"],
            "allowed_models": ["mock-*", "gpt-4o"],
            "budget_usd": 12.5,
            "budget_tokens": 100000,
            "rpm": 60,
            "tpm": 50000,
            "max_parallel": 4,
            "quotas": [
                { "period": "day", "kind": "requests", "limit": 1000 },
                { "period": "month", "kind": "cost", "limit_usd": 25 },
                { "period": "hour", "kind": "tokens", "limit": 20000 },
                { "period": "minute", "kind": "cost", "limit": 5000 }
            ],
            "price_multiplier": 1.2,
            "expires_at": expires_at,
            "enabled": false
        }),
    )
    .await?;
    let expected = json!({
        "name": "limited",
        "user_id": owner["id"],
        "allowed_models": ["mock-*", "gpt-4o"],
        "budget_nanos": 12_500_000_000_i64,
        "budget_usd": 12.5,
        "budget_tokens": 100000,
        "rpm": 60,
        "tpm": 50000,
        "max_parallel": 4,
        "quotas": [
            { "period": "day", "kind": "requests", "limit": 1000 },
            { "period": "month", "kind": "cost", "limit": 25_000_000_000_i64, "limit_usd": 25.0 },
            { "period": "hour", "kind": "tokens", "limit": 20000 },
            { "period": "minute", "kind": "cost", "limit": 5000, "limit_usd": 0.000005 }
        ],
        "price_multiplier": 1.2,
        "price_multiplier_ppm": 1_200_000,
        "expires_at": expires_at,
        "enabled": false,
        "spent_nanos": 0,
        "spent_usd": 0.0,
        "spent_tokens": 0,
        "reserved_nanos": 0,
        "reserved_usd": 0.0,
        "reserved_tokens": 0,
        "request_count": 0,
        "previous_token_expires_at": null,
    });
    let shown = ok(&gw, Method::GET, &format!("/admin/tokens/{id}"), None).await?;
    for view in [&created, &shown] {
        for (key, value) in expected.as_object().context("object")? {
            assert_eq!(&view[key], value, "{key} in {view}");
        }
    }
    // The token is disabled as asked; the hash is never shown.
    assert_eq!(chat(&gw, &secret).await?.status, 401);
    let hash = switchyard::tokens::hash(&secret);
    let listed = ok(&gw, Method::GET, "/admin/tokens", None).await?;
    assert!(!listed.to_string().contains(&hash) && !shown.to_string().contains(&hash));
    assert!(!listed.to_string().contains(&secret));

    // budget_nanos is taken as is; no user_id means the `default` user; a
    // token without limits shows nulls and an empty quota list.
    let (_, _, plain) = token(&gw, json!({ "name": "plain", "budget_nanos": 7 })).await?;
    assert_eq!(plain["budget_nanos"], 7);
    assert_eq!(plain["user_id"], json!(default_user_id(&gw).await?));
    for key in [
        "rpm",
        "tpm",
        "max_parallel",
        "price_multiplier",
        "budget_tokens",
        "expires_at",
    ] {
        assert_eq!(plain[key], Value::Null, "{key}");
    }
    assert_eq!(plain["quotas"], json!([]));
    assert_eq!(plain["enabled"], true);
    gw.stop().await
}

async fn patch_changes_and_clears_limits(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let (_, id, _) = token(
        &gw,
        json!({
            "name": "before",
            "rpm": 10,
            "budget_usd": 1,
            "quotas": [{ "period": "day", "kind": "requests", "limit": 5 }],
            "price_multiplier": 2
        }),
    )
    .await?;
    let path = format!("/admin/tokens/{id}");
    let other = user(&gw, json!({ "name": "dave" })).await?;

    // Absent fields stay; values change; null lifts a limit.
    let patched = ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({
            "name": "  after ",
            "user_id": other["id"],
            "tpm": 1000,
            "budget_usd": null,
            "budget_tokens": 500,
            "quotas": [{ "period": "month", "kind": "cost", "limit_usd": 1.5 }],
            "price_multiplier": null,
            "allowed_models": ["mock-gpt"]
        })),
    )
    .await?;
    assert_eq!(patched["name"], "after");
    assert_eq!(patched["user_id"], other["id"]);
    assert_eq!(patched["rpm"], 10, "absent: unchanged");
    assert_eq!(patched["tpm"], 1000);
    assert_eq!(patched["budget_nanos"], Value::Null);
    assert_eq!(patched["budget_tokens"], 500);
    assert_eq!(
        patched["quotas"],
        json!([{ "period": "month", "kind": "cost", "limit": 1_500_000_000_i64, "limit_usd": 1.5 }])
    );
    assert_eq!(patched["price_multiplier"], Value::Null);
    assert_eq!(patched["allowed_models"], json!(["mock-gpt"]));
    assert_eq!(ok(&gw, Method::GET, &path, None).await?, patched);

    // An empty body changes nothing but is fine; budget_nanos, expiry and
    // the remaining limits set and clear the same way.
    let same = ok(&gw, Method::PATCH, &path, Some(json!({}))).await?;
    assert_eq!(same["rpm"], 10);
    let expires_at = switchyard::db::now_ms() / 1000 + 3600;
    let patched = ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({ "budget_nanos": 123, "expires_at": expires_at, "max_parallel": 2, "enabled": false })),
    )
    .await?;
    assert_eq!(
        (
            &patched["budget_nanos"],
            &patched["expires_at"],
            &patched["max_parallel"],
            &patched["enabled"]
        ),
        (&json!(123), &json!(expires_at), &json!(2), &json!(false))
    );
    let cleared = ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({
            "rpm": null, "tpm": null, "max_parallel": null, "budget_nanos": null,
            "budget_tokens": null, "quotas": null, "allowed_models": null, "expires_at": null,
            "enabled": true
        })),
    )
    .await?;
    for key in [
        "rpm",
        "tpm",
        "max_parallel",
        "budget_nanos",
        "budget_tokens",
        "allowed_models",
        "expires_at",
    ] {
        assert_eq!(cleared[key], Value::Null, "{key}");
    }
    assert_eq!(cleared["quotas"], json!([]));
    assert_eq!(cleared["enabled"], true);

    // Unknown ids are 404.
    for missing in ["999999", "abc"] {
        refused(
            &gw,
            Method::PATCH,
            &format!("/admin/tokens/{missing}"),
            Some(json!({ "rpm": 1 })),
            404,
            "not_found",
        )
        .await?;
        refused(
            &gw,
            Method::POST,
            &format!("/admin/tokens/{missing}/rotate"),
            Some(json!({})),
            404,
            "not_found",
        )
        .await?;
    }
    gw.stop().await
}

async fn invalid_token_limits_are_400_and_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let (_, id, original) = token(&gw, json!({ "name": "target", "rpm": 5 })).await?;
    let past = switchyard::db::now_ms() / 1000 - 10;
    let bad: Vec<String> = vec![
        r#"{"budget_usd":-1}"#.into(),
        r#"{"budget_usd":"ten"}"#.into(),
        r#"{"budget_usd":1e300}"#.into(),
        r#"{"budget_nanos":-5}"#.into(),
        r#"{"budget_usd":1,"budget_nanos":5}"#.into(),
        r#"{"budget_tokens":-1}"#.into(),
        r#"{"budget_tokens":1.5}"#.into(),
        r#"{"rpm":0}"#.into(),
        r#"{"rpm":-3}"#.into(),
        r#"{"rpm":"60"}"#.into(),
        r#"{"tpm":99999999999}"#.into(),
        r#"{"max_parallel":0}"#.into(),
        r#"{"quotas":{"period":"day"}}"#.into(),
        r#"{"quotas":[{"period":"year","kind":"requests","limit":5}]}"#.into(),
        r#"{"quotas":[{"period":"Day","kind":"requests","limit":5}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"dollars","limit":5}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"requests","limit":0}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"requests","limit":-1}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"requests"}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"requests","limit_usd":5}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"cost","limit":5,"limit_usd":5}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"cost","limit_usd":-5}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"requests","limit":5,"every":1}]}"#.into(),
        r#"{"quotas":[{"period":"day","kind":"requests","limit":5},{"period":"day","kind":"requests","limit":6}]}"#.into(),
        r#"{"price_multiplier":-0.5}"#.into(),
        r#"{"price_multiplier":"x"}"#.into(),
        format!(r#"{{"expires_at":{past}}}"#),
        r#"{"expires_at":"soon"}"#.into(),
        r#"{"allowed_models":[]}"#.into(),
        r#"{"allowed_models":[""]}"#.into(),
        r#"{"user_id":999999}"#.into(),
        r#"{"enabled":"yes"}"#.into(),
        r#"{"rate":5}"#.into(),
    ];
    for body in &bad {
        // As a PATCH...
        let (status, answer) =
            admin_raw(&gw, Method::PATCH, &format!("/admin/tokens/{id}"), body).await?;
        assert_eq!(status, 400, "PATCH {body}: {answer}");
        assert_eq!(
            answer.pointer("/error/code"),
            Some(&json!("invalid_request")),
            "{body}"
        );
        // ...and in a creation.
        let create = format!(r#"{{"name":"new",{}"#, body.trim_start_matches('{'));
        let (status, answer) = admin_raw(&gw, Method::POST, "/admin/tokens", &create).await?;
        assert_eq!(status, 400, "POST {create}: {answer}");
    }
    for body in [
        r#"{"user_id":null}"#,
        r#"{"name":""}"#,
        r#"{"name":null}"#,
        r#"{"enabled":null}"#,
        "[]",
        "",
    ] {
        let (status, answer) =
            admin_raw(&gw, Method::PATCH, &format!("/admin/tokens/{id}"), body).await?;
        assert_eq!(status, 400, "PATCH {body}: {answer}");
    }
    // Nothing changed and nothing was created.
    let listed = ok(&gw, Method::GET, "/admin/tokens", None).await?;
    assert_eq!(listed["data"], json!([original_without_token(&original)]));
    gw.stop().await
}

fn original_without_token(created: &Value) -> Value {
    let mut view = created.clone();
    if let Some(object) = view.as_object_mut() {
        object.remove("token");
    }
    view
}

async fn a_patch_applies_to_the_very_next_request(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let owner = user(&gw, json!({ "name": "erin" })).await?;
    let owner_path = format!("/admin/users/{}", id_of(&owner)?);
    let (secret, id, _) = token(&gw, json!({ "name": "live", "user_id": owner["id"] })).await?;
    let path = format!("/admin/tokens/{id}");
    // Each step caches the token first, so a stale cache would show.
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({ "allowed_models": ["other-*"] })),
    )
    .await?;
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (403, Some("model_not_allowed".into()))
    );
    ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({ "allowed_models": ["mock-*"] })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({ "allowed_models": null })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // A rate limit: one request in the minute, then 429; lifted at once.
    ok(&gw, Method::PATCH, &path, Some(json!({ "rpm": 1 }))).await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (429, Some("rate_limited".into()))
    );
    ok(&gw, Method::PATCH, &path, Some(json!({ "rpm": null }))).await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // A money budget already spent: 402; lifted at once.
    ok(
        &gw,
        Method::PUT,
        "/admin/model-prices/mock-gpt",
        Some(json!({ "input_per_mtok": 1, "output_per_mtok": 1 })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    gw.gateway()?.flush_usage().await?;
    ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({ "budget_nanos": 1 })),
    )
    .await?;
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (402, Some("budget_exhausted".into()))
    );
    ok(
        &gw,
        Method::PATCH,
        &path,
        Some(json!({ "budget_nanos": null })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // Disabled through PATCH: 401 on the next request.
    ok(&gw, Method::PATCH, &path, Some(json!({ "enabled": false }))).await?;
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (401, Some("invalid_api_key".into()))
    );
    ok(&gw, Method::PATCH, &path, Some(json!({ "enabled": true }))).await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // The owner suspended: 401 on the next request; active again: served.
    let suspended = ok(
        &gw,
        Method::PATCH,
        &owner_path,
        Some(json!({ "status": "suspended" })),
    )
    .await?;
    assert_eq!(suspended["status"], "suspended");
    let reply = chat(&gw, &secret).await?;
    assert_eq!(reply.status, 401);
    assert!(reply.text().contains("suspended"), "{}", reply.text());
    ok(
        &gw,
        Method::PATCH,
        &owner_path,
        Some(json!({ "status": "active" })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // The owner's multiplier applies to the next request's cost.
    ok(
        &gw,
        Method::PATCH,
        &owner_path,
        Some(json!({ "price_multiplier": 3 })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    let logs = gw.request_logs().await?;
    let last = logs.last().context("no logs")?;
    // "hello": 5 prompt + 5 completion tokens at $1 per million = 10,000 nano-USD, x3.
    assert_eq!((last.cost_nanos, last.priced), (30_000, true));
    gw.stop().await
}

async fn rotation_keeps_the_old_token_for_the_grace_period_only(
    backend: Backend,
) -> anyhow::Result<()> {
    let clock = ManualClock::starting_at(NOV_22);
    let gw = TestGateway::start_with(
        backend,
        StartOptions {
            clock: Some(clock.clone()),
            ..StartOptions::default()
        },
        |_, _| {},
    )
    .await?;
    let (first, id, created) = token(&gw, json!({ "name": "rotating" })).await?;
    assert_eq!(chat(&gw, &first).await?.status, 200);

    let rotated = ok(
        &gw,
        Method::POST,
        &format!("/admin/tokens/{id}/rotate"),
        Some(json!({ "grace_seconds": 60 })),
    )
    .await?;
    let second = rotated["token"]
        .as_str()
        .context("no new token")?
        .to_owned();
    assert_ne!(second, first);
    assert_eq!(rotated["id"], id);
    assert_ne!(rotated["prefix"], created["prefix"]);
    assert_eq!(
        rotated["previous_token_expires_at"],
        json!(NOV_22 / 1000 + 60)
    );
    // Both work during the grace period (the old one was cached before).
    assert_eq!(chat(&gw, &first).await?.status, 200);
    assert_eq!(chat(&gw, &second).await?.status, 200);
    clock.advance(59_999);
    assert_eq!(chat(&gw, &first).await?.status, 200);
    // At its end the old one is refused; the new one goes on.
    clock.advance(1);
    let reply = chat(&gw, &first).await?;
    assert_eq!(
        status_and_code(&reply),
        (401, Some("invalid_api_key".into()))
    );
    assert!(reply.text().contains("rotated"), "{}", reply.text());
    assert_eq!(chat(&gw, &second).await?.status, 200);
    // The secret is never shown again.
    let shown = ok(&gw, Method::GET, &format!("/admin/tokens/{id}"), None).await?;
    assert!(shown.get("token").is_none());
    assert!(!shown.to_string().contains(&second));

    // Default grace: one hour. A rotation forgets the earlier old token.
    let again = ok(
        &gw,
        Method::POST,
        &format!("/admin/tokens/{id}/rotate"),
        None,
    )
    .await?;
    let third = again["token"].as_str().context("no token")?.to_owned();
    let now_s = (NOV_22 + 60_000) / 1000;
    assert_eq!(again["previous_token_expires_at"], json!(now_s + 3600));
    assert_eq!(chat(&gw, &second).await?.status, 200);
    assert_eq!(chat(&gw, &third).await?.status, 200);
    // Grace 0: the replaced token stops at once.
    let last = ok(
        &gw,
        Method::POST,
        &format!("/admin/tokens/{id}/rotate"),
        Some(json!({ "grace_seconds": 0 })),
    )
    .await?;
    let fourth = last["token"].as_str().context("no token")?.to_owned();
    assert_eq!(chat(&gw, &third).await?.status, 401);
    assert_eq!(chat(&gw, &fourth).await?.status, 200);

    for body in [
        r#"{"grace_seconds":-1}"#,
        r#"{"grace_seconds":2592001}"#,
        r#"{"grace_seconds":"1h"}"#,
        r#"{"grace":5}"#,
        "{",
        "[]",
    ] {
        let (status, answer) = admin_raw(
            &gw,
            Method::POST,
            &format!("/admin/tokens/{id}/rotate"),
            body,
        )
        .await?;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // The longest grace is accepted; the refused rotations changed nothing.
    assert_eq!(chat(&gw, &fourth).await?.status, 200);
    ok(
        &gw,
        Method::POST,
        &format!("/admin/tokens/{id}/rotate"),
        Some(json!({ "grace_seconds": 2_592_000 })),
    )
    .await?;
    assert_eq!(chat(&gw, &fourth).await?.status, 200);
    gw.stop().await
}

async fn users_are_created_listed_changed_and_deleted(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let alice = user(
        &gw,
        json!({ "name": " alice ", "prepaid": true, "balance_usd": 10, "price_multiplier": 1.5 }),
    )
    .await?;
    let expected = json!({
        "name": "alice", "status": "active", "prepaid": true,
        "balance_nanos": 10_000_000_000_i64, "balance_usd": 10.0,
        "reserved_nanos": 0, "reserved_usd": 0.0, "available_usd": 10.0,
        "price_multiplier": 1.5, "price_multiplier_ppm": 1_500_000,
    });
    for (key, value) in expected.as_object().context("object")? {
        assert_eq!(&alice[key], value, "{key}");
    }
    let bob = user(&gw, json!({ "name": "bob" })).await?;
    assert_eq!(
        (
            &bob["prepaid"],
            &bob["balance_nanos"],
            &bob["price_multiplier"]
        ),
        (&json!(false), &json!(0), &Value::Null)
    );
    refused(
        &gw,
        Method::POST,
        "/admin/users",
        Some(json!({ "name": "alice" })),
        409,
        "conflict",
    )
    .await?;

    // Paging: the migration's `default` user, alice, bob.
    let all = ok(&gw, Method::GET, "/admin/users", None).await?;
    assert_eq!(all["total"], 3);
    let names: Vec<&str> = all["data"]
        .as_array()
        .context("data")?
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["default", "alice", "bob"]);
    let page = ok(&gw, Method::GET, "/admin/users?limit=1&offset=1", None).await?;
    assert_eq!(
        (page["total"].clone(), page["data"][0]["name"].clone()),
        (json!(3), json!("alice"))
    );
    let page = ok(&gw, Method::GET, "/admin/users?limit=2&offset=2", None).await?;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    for query in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "limit=x",
        "colour=red",
    ] {
        refused(
            &gw,
            Method::GET,
            &format!("/admin/users?{query}"),
            None,
            400,
            "invalid_request",
        )
        .await?;
    }

    // One user: its tokens and what its requests were charged.
    let alice_path = format!("/admin/users/{}", id_of(&alice)?);
    let (_, t1, _) = token(&gw, json!({ "name": "a1", "user_id": alice["id"] })).await?;
    let (_, t2, _) = token(&gw, json!({ "name": "a2", "user_id": alice["id"] })).await?;
    let shown = ok(&gw, Method::GET, &alice_path, None).await?;
    assert_eq!(shown["token_ids"], json!([t1, t2]));
    assert_eq!(
        (&shown["spent_nanos"], &shown["name"]),
        (&json!(0), &json!("alice"))
    );
    for missing in ["999999", "x"] {
        refused(
            &gw,
            Method::GET,
            &format!("/admin/users/{missing}"),
            None,
            404,
            "not_found",
        )
        .await?;
        refused(
            &gw,
            Method::PATCH,
            &format!("/admin/users/{missing}"),
            Some(json!({ "status": "active" })),
            404,
            "not_found",
        )
        .await?;
        refused(
            &gw,
            Method::DELETE,
            &format!("/admin/users/{missing}"),
            None,
            404,
            "not_found",
        )
        .await?;
        refused(
            &gw,
            Method::POST,
            &format!("/admin/users/{missing}/topup"),
            Some(json!({ "amount_usd": 1 })),
            404,
            "not_found",
        )
        .await?;
    }

    // Changes.
    let changed = ok(&gw, Method::PATCH, &alice_path, Some(json!({ "status": "suspended", "prepaid": false, "price_multiplier": null, "name": "alice2" }))).await?;
    assert_eq!(
        (
            &changed["status"],
            &changed["prepaid"],
            &changed["price_multiplier"],
            &changed["name"]
        ),
        (
            &json!("suspended"),
            &json!(false),
            &Value::Null,
            &json!("alice2")
        )
    );
    assert_eq!(changed["balance_nanos"], 10_000_000_000_i64, "untouched");
    refused(
        &gw,
        Method::PATCH,
        &alice_path,
        Some(json!({ "name": "bob" })),
        409,
        "conflict",
    )
    .await?;

    // Deletion: refused while tokens remain, then done; history stays.
    let answer = refused(&gw, Method::DELETE, &alice_path, None, 409, "conflict").await?;
    assert!(answer.to_string().contains("2 token"), "{answer}");
    ok(&gw, Method::DELETE, &format!("/admin/tokens/{t1}"), None).await?;
    ok(
        &gw,
        Method::PATCH,
        &format!("/admin/tokens/{t2}"),
        Some(json!({ "user_id": bob["id"] })),
    )
    .await?;
    let (status, _) = gw.admin(Method::DELETE, &alice_path, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(&gw, Method::GET, &alice_path, None, 404, "not_found").await?;
    refused(&gw, Method::DELETE, &alice_path, None, 404, "not_found").await?;
    let history = ok(
        &gw,
        Method::GET,
        &format!("/admin/billing?user_id={}", id_of(&alice)?),
        None,
    )
    .await?;
    assert_eq!(history["total"], 1, "the opening top-up stays: {history}");
    // The default user owns tokens made without user_id: never deleted or renamed.
    let default_path = format!("/admin/users/{}", default_user_id(&gw).await?);
    refused(&gw, Method::DELETE, &default_path, None, 409, "conflict").await?;
    refused(
        &gw,
        Method::PATCH,
        &default_path,
        Some(json!({ "name": "other" })),
        409,
        "conflict",
    )
    .await?;
    gw.stop().await
}

async fn invalid_user_bodies_are_400(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let long = format!(r#"{{"name":"{}"}}"#, "n".repeat(201));
    for body in [
        "",
        "{",
        "{}",
        r#"{"name":""}"#,
        r#"{"name":"  "}"#,
        r#"{"name":5}"#,
        &long,
        r#"{"name":"x","balance_usd":-1}"#,
        r#"{"name":"x","balance_usd":"5"}"#,
        r#"{"name":"x","prepaid":"yes"}"#,
        r#"{"name":"x","price_multiplier":-1}"#,
        r#"{"name":"x","price_multiplier":1001}"#,
        r#"{"name":"x","status":"active"}"#,
    ] {
        let (status, answer) = admin_raw(&gw, Method::POST, "/admin/users", body).await?;
        assert_eq!(status, 400, "POST {body}: {answer}");
        assert_eq!(
            answer.pointer("/error/code"),
            Some(&json!("invalid_request")),
            "{body}"
        );
    }
    let bob = user(&gw, json!({ "name": "bob" })).await?;
    let path = format!("/admin/users/{}", id_of(&bob)?);
    for body in [
        r#"{"status":"gone"}"#,
        r#"{"status":null}"#,
        r#"{"prepaid":null}"#,
        r#"{"prepaid":1}"#,
        r#"{"name":""}"#,
        r#"{"price_multiplier":"2"}"#,
        r#"{"balance_usd":5}"#,
        "[]",
    ] {
        let (status, answer) = admin_raw(&gw, Method::PATCH, &path, body).await?;
        assert_eq!(status, 400, "PATCH {body}: {answer}");
    }
    for body in [
        "{}",
        r#"{"amount_usd":0}"#,
        r#"{"amount_usd":-5}"#,
        r#"{"amount_usd":"5"}"#,
        r#"{"amount_usd":1e7}"#,
        r#"{"amount_usd":1e-12}"#,
        r#"{"amount_usd":1,"extra":1}"#,
        &format!(r#"{{"amount_usd":1,"note":"{}"}}"#, "n".repeat(501)),
    ] {
        let (status, answer) = admin_raw(&gw, Method::POST, &format!("{path}/topup"), body).await?;
        assert_eq!(status, 400, "topup {body}: {answer}");
    }
    // Nothing moved.
    let shown = ok(&gw, Method::GET, &path, None).await?;
    assert_eq!(
        (&shown["balance_nanos"], &shown["status"], &shown["name"]),
        (&json!(0), &json!("active"), &json!("bob"))
    );
    let ledger = ok(&gw, Method::GET, "/admin/billing", None).await?;
    assert_eq!(ledger["total"], 0);
    assert_eq!(
        ok(&gw, Method::GET, "/admin/users", None).await?["total"],
        2
    );
    gw.stop().await
}

async fn topups_and_charges_move_the_balance_and_are_billed(
    backend: Backend,
) -> anyhow::Result<()> {
    let clock = ManualClock::starting_at(NOV_22);
    let gw = TestGateway::start_with(
        backend,
        StartOptions {
            clock: Some(clock.clone()),
            ..StartOptions::default()
        },
        |_, _| {},
    )
    .await?;
    ok(
        &gw,
        Method::PUT,
        "/admin/model-prices/mock-gpt",
        Some(json!({ "input_per_mtok": 2.5, "output_per_mtok": 10 })),
    )
    .await?;
    let payer = user(
        &gw,
        json!({ "name": "payer", "prepaid": true, "balance_usd": 1.25 }),
    )
    .await?;
    let other = user(&gw, json!({ "name": "other", "balance_usd": 3 })).await?;
    let path = format!("/admin/users/{}", id_of(&payer)?);

    clock.advance(1000);
    let answer = ok(
        &gw,
        Method::POST,
        &format!("{path}/topup"),
        Some(json!({ "amount_usd": 0.75, "note": " invoice 42 " })),
    )
    .await?;
    assert_eq!(answer["user"]["balance_nanos"], 2_000_000_000_i64);
    assert_eq!(answer["user"]["balance_usd"], 2.0);
    let record = &answer["record"];
    assert_eq!(
        (
            &record["kind"],
            &record["amount_nanos"],
            &record["note"],
            &record["user_id"],
            &record["created_at"]
        ),
        (
            &json!("topup"),
            &json!(750_000_000),
            &json!("invoice 42"),
            &payer["id"],
            &json!(NOV_22 / 1000 + 1)
        )
    );
    // Exact in nano-dollars, however many top-ups.
    clock.advance(1000);
    for _ in 0..10 {
        ok(
            &gw,
            Method::POST,
            &format!("{path}/topup"),
            Some(json!({ "amount_usd": 0.1 })),
        )
        .await?;
    }
    assert_eq!(
        ok(&gw, Method::GET, &path, None).await?["balance_nanos"],
        3_000_000_000_i64
    );

    // A request charges the balance and leaves a billing record.
    let (secret, token_id, _) =
        token(&gw, json!({ "name": "spender", "user_id": payer["id"] })).await?;
    clock.advance(1000);
    let reply = gw.chat(&secret, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.gateway()?.flush_usage().await?;
    // The instance holds the unused rest of its balance slice until the
    // token is idle (docs/limits.md); give it back, as at shutdown.
    gw.gateway()?.enforcer.give_back_slices().await;
    let cost = 5 * 2_500 + 5 * 10_000;
    let shown = ok(&gw, Method::GET, &path, None).await?;
    assert_eq!(shown["balance_nanos"], 3_000_000_000_i64 - cost);
    assert_eq!(
        (&shown["spent_nanos"], &shown["reserved_nanos"]),
        (&json!(cost), &json!(0))
    );

    // The ledger: newest first, filtered by user, token and kind.
    let mine = ok(
        &gw,
        Method::GET,
        &format!("/admin/billing?user_id={}", id_of(&payer)?),
        None,
    )
    .await?;
    assert_eq!(mine["total"], 13);
    let rows = mine["data"].as_array().context("data")?;
    let kinds: Vec<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"request"));
    assert_eq!(kinds.iter().filter(|k| **k == "topup").count(), 12);
    assert_eq!(
        rows.last().map(|r| r["note"].clone()),
        Some(json!("opening balance"))
    );
    let charge = &rows[0];
    assert_eq!(
        (
            &charge["token_id"],
            &charge["model"],
            &charge["prompt_tokens"],
            &charge["completion_tokens"],
            &charge["amount_nanos"],
            &charge["priced"]
        ),
        (
            &json!(token_id),
            &json!("mock-gpt"),
            &json!(5),
            &json!(5),
            &json!(cost),
            &json!(true)
        )
    );
    let topups: i64 = rows
        .iter()
        .filter(|r| r["kind"] == "topup")
        .filter_map(|r| r["amount_nanos"].as_i64())
        .sum();
    assert_eq!(
        topups - cost,
        3_000_000_000_i64 - cost,
        "the ledger adds up to the balance"
    );
    let by_token = ok(
        &gw,
        Method::GET,
        &format!("/admin/billing?token_id={token_id}"),
        None,
    )
    .await?;
    assert_eq!(
        (
            by_token["total"].clone(),
            by_token["data"][0]["kind"].clone()
        ),
        (json!(1), json!("request"))
    );
    let page = ok(
        &gw,
        Method::GET,
        &format!(
            "/admin/billing?user_id={}&kind=topup&limit=5&offset=10",
            id_of(&payer)?
        ),
        None,
    )
    .await?;
    assert_eq!(
        (page["total"].clone(), page["data"].as_array().map(Vec::len)),
        (json!(12), Some(2))
    );
    let everything = ok(&gw, Method::GET, "/admin/billing?kind=topup", None).await?;
    assert_eq!(everything["total"], 13, "other's opening balance too");
    assert!(
        everything["data"]
            .as_array()
            .context("data")?
            .iter()
            .any(|r| r["user_id"] == other["id"])
    );
    for query in [
        "kind=refund",
        "limit=0",
        "limit=5000",
        "offset=-1",
        "user_id=abc",
        "colour=red",
    ] {
        refused(
            &gw,
            Method::GET,
            &format!("/admin/billing?{query}"),
            None,
            400,
            "invalid_request",
        )
        .await?;
    }
    gw.stop().await
}

async fn a_price_change_costs_the_next_request(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let (secret, id, _) = token(&gw, json!({ "name": "costed" })).await?;
    let path = "/admin/model-prices/mock-gpt";
    let set = ok(
        &gw,
        Method::PUT,
        path,
        Some(json!({ "input_per_mtok": 2.5, "output_per_mtok": 10 })),
    )
    .await?;
    assert_eq!(
        (
            &set["model"],
            &set["input_per_mtok"],
            &set["output_per_mtok"],
            &set["input_per_mtok_micros"],
            &set["output_per_mtok_micros"]
        ),
        (
            &json!("mock-gpt"),
            &json!(2.5),
            &json!(10.0),
            &json!(2_500_000),
            &json!(10_000_000)
        )
    );
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    ok(
        &gw,
        Method::PUT,
        path,
        Some(json!({ "input_per_mtok": 1, "output_per_mtok": 2 })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    ok(
        &gw,
        Method::PATCH,
        &format!("/admin/tokens/{id}"),
        Some(json!({ "price_multiplier": 1.5 })),
    )
    .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    let (status, _) = gw.admin(Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    let logs = gw.request_logs().await?;
    let costs: Vec<(bool, i64)> = logs
        .iter()
        .map(|row| (row.priced, row.cost_nanos))
        .collect();
    // "hello": 5 prompt and 5 completion tokens.
    assert_eq!(
        costs,
        [
            (true, 5 * 2_500 + 5 * 10_000),
            (true, 5 * 1_000 + 5 * 2_000),
            (true, 15_000 * 3 / 2),
            (false, 0)
        ]
    );
    let listed = ok(&gw, Method::GET, "/admin/model-prices", None).await?;
    assert!(
        !listed.to_string().contains("mock-gpt"),
        "deleted: {listed}"
    );
    refused(&gw, Method::DELETE, path, None, 404, "not_found").await?;

    // Names with slashes; validation.
    let pinned = ok(
        &gw,
        Method::PUT,
        "/admin/model-prices/openai/gpt-x",
        Some(json!({ "input_per_mtok": 0, "output_per_mtok": 0.5 })),
    )
    .await?;
    assert_eq!(pinned["model"], "openai/gpt-x");
    let listed = ok(&gw, Method::GET, "/admin/model-prices", None).await?;
    let found = listed["data"]
        .as_array()
        .context("data")?
        .iter()
        .find(|p| p["model"] == "openai/gpt-x")
        .cloned();
    assert_eq!(
        found.map(|p| p["output_per_mtok_micros"].clone()),
        Some(json!(500_000))
    );
    for body in [
        "",
        "{}",
        r#"{"input_per_mtok":1}"#,
        r#"{"input_per_mtok":-1,"output_per_mtok":1}"#,
        r#"{"input_per_mtok":1,"output_per_mtok":"2"}"#,
        r#"{"input_per_mtok":1,"output_per_mtok":1e9}"#,
        r#"{"input_per_mtok":1,"output_per_mtok":1,"cached":1}"#,
    ] {
        let (status, answer) =
            admin_raw(&gw, Method::PUT, "/admin/model-prices/openai/gpt-x", body).await?;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/model-prices/openai/gpt-x", None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    gw.stop().await
}

async fn unpriced_models_are_listed_until_priced(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let (secret, _, _) = token(&gw, json!({ "name": "unpriced" })).await?;
    assert_eq!(
        ok(&gw, Method::GET, "/admin/unpriced-models", None).await?,
        json!({ "data": [] })
    );
    let before = switchyard::db::now_ms() / 1000;
    for _ in 0..2 {
        assert_eq!(chat(&gw, &secret).await?.status, 200);
    }
    // A request refused before reaching an upstream is not counted.
    let refused_reply = gw.chat(&secret, chat_body("no-such-model", "x")).await?;
    assert_eq!(refused_reply.status, 404);
    gw.gateway()?.flush_usage().await?;
    let listed = ok(&gw, Method::GET, "/admin/unpriced-models", None).await?;
    let rows = listed["data"].as_array().context("data")?;
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(
        (&rows[0]["model"], &rows[0]["requests"]),
        (&json!("mock-gpt"), &json!(2))
    );
    let seen = rows[0]["last_seen_at"].as_i64().context("last_seen_at")?;
    assert!(
        (before..=switchyard::db::now_ms() / 1000).contains(&seen),
        "{seen}"
    );
    ok(
        &gw,
        Method::PUT,
        "/admin/model-prices/mock-gpt",
        Some(json!({ "input_per_mtok": 1, "output_per_mtok": 1 })),
    )
    .await?;
    assert_eq!(
        ok(&gw, Method::GET, "/admin/unpriced-models", None).await?,
        json!({ "data": [] })
    );
    for query in ["days=0", "days=5000", "days=x"] {
        refused(
            &gw,
            Method::GET,
            &format!("/admin/unpriced-models?{query}"),
            None,
            400,
            "invalid_request",
        )
        .await?;
    }
    gw.stop().await
}

async fn list_prices_are_seeded_and_never_overwrite_an_admin_price(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut gw = TestGateway::start(backend, |_, _| {}).await?;
    let list = switchyard::seed::list_prices()?;
    let listed = ok(&gw, Method::GET, "/admin/model-prices", None).await?;
    let rows = listed["data"].as_array().context("data")?;
    assert_eq!(rows.len(), list.prices.len());
    for model in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "claude-sonnet-4-5",
        "claude-opus-4-1",
        "claude-haiku-4-5",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "deepseek-chat",
        "deepseek-reasoner",
        "glm-4.6",
    ] {
        assert!(
            rows.iter().any(|row| row["model"] == model),
            "{model} not seeded"
        );
    }
    let gpt4o = rows
        .iter()
        .find(|row| row["model"] == "gpt-4o")
        .context("gpt-4o")?;
    assert_eq!(
        (&gpt4o["input_per_mtok"], &gpt4o["output_per_mtok"]),
        (&json!(2.5), &json!(10.0))
    );

    // An admin's price survives a restart (seeding fills gaps only).
    ok(
        &gw,
        Method::PUT,
        "/admin/model-prices/gpt-4o",
        Some(json!({ "input_per_mtok": 1, "output_per_mtok": 1 })),
    )
    .await?;
    restart(&mut gw).await?;
    let listed = ok(&gw, Method::GET, "/admin/model-prices", None).await?;
    let rows = listed["data"].as_array().context("data")?;
    assert_eq!(rows.len(), list.prices.len());
    let gpt4o = rows
        .iter()
        .find(|row| row["model"] == "gpt-4o")
        .context("gpt-4o")?;
    assert_eq!(
        (&gpt4o["input_per_mtok"], &gpt4o["output_per_mtok"]),
        (&json!(1.0), &json!(1.0))
    );
    gw.stop().await?;

    // Seeding can be turned off.
    let gw = TestGateway::start(backend, |settings, _| {
        settings.usage.seed_list_prices = false
    })
    .await?;
    assert_eq!(
        ok(&gw, Method::GET, "/admin/model-prices", None).await?,
        json!({ "data": [] })
    );
    gw.stop().await
}

async fn the_new_admin_routes_need_the_master_key(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let (secret, id, _) = token(&gw, json!({ "name": "t" })).await?;
    let bob = user(&gw, json!({ "name": "bob" })).await?;
    let uid = id_of(&bob)?;
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            format!("/admin/tokens/{id}"),
            Some(json!({ "rpm": 1 })),
        ),
        (
            Method::POST,
            format!("/admin/tokens/{id}/rotate"),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/admin/users".into(),
            Some(json!({ "name": "eve" })),
        ),
        (Method::GET, "/admin/users".into(), None),
        (Method::GET, format!("/admin/users/{uid}"), None),
        (
            Method::PATCH,
            format!("/admin/users/{uid}"),
            Some(json!({ "status": "suspended" })),
        ),
        (Method::DELETE, format!("/admin/users/{uid}"), None),
        (
            Method::POST,
            format!("/admin/users/{uid}/topup"),
            Some(json!({ "amount_usd": 5 })),
        ),
        (Method::GET, "/admin/billing".into(), None),
        (Method::GET, "/admin/model-prices".into(), None),
        (
            Method::PUT,
            "/admin/model-prices/x".into(),
            Some(json!({ "input_per_mtok": 1, "output_per_mtok": 1 })),
        ),
        (Method::DELETE, "/admin/model-prices/gpt-4o".into(), None),
        (Method::GET, "/admin/unpriced-models".into(), None),
    ];
    for (method, path, body) in routes {
        for credential in [
            None,
            Some(format!("Bearer {secret}")),
            Some(format!("Bearer {MASTER_KEY}x")),
        ] {
            let mut request = gw
                .client
                .request(method.clone(), format!("{}{path}", gw.url));
            if let Some(credential) = &credential {
                request = request.insert_header(("authorization", credential.as_str()));
            }
            let response = match &body {
                Some(body) => request.send_json(body).await,
                None => request.send().await,
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            assert_eq!(response.status(), 401, "{method} {path} {credential:?}");
        }
    }
    // Nothing changed behind the refusals.
    let shown = ok(&gw, Method::GET, &format!("/admin/users/{uid}"), None).await?;
    assert_eq!(
        (&shown["status"], &shown["balance_nanos"]),
        (&json!("active"), &json!(0))
    );
    assert_eq!(
        ok(&gw, Method::GET, &format!("/admin/tokens/{id}"), None).await?["rpm"],
        Value::Null
    );
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    gw.stop().await
}
