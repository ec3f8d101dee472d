//! Tokens: every limit set, shown, changed and cleared; invalid limits refused
//! without a trace; a change seen by the very next request; rotation with a
//! grace period on a manual clock.

use super::{NOV_22, chat, status_and_code};
use crate::common::TestGateway;
use crate::common::admin::{CreatedToken, id_of};
use crate::on_both_backends;
use anyhow::Context;
use awc::http::Method;
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
);

async fn tokens_take_every_limit_and_show_it(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let owner = admin.create_user(json!({ "name": "carol" })).await?;
    let expires_at = switchyard::clock::system_now_ms() / 1000 + 86_400;
    let CreatedToken {
        token: secret,
        id,
        answer: created,
    } = admin
        .create_token(json!({
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
        }))
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
    let shown = admin.token(id).await?;
    for view in [&created, &shown] {
        for (key, value) in expected.as_object().context("object")? {
            assert_eq!(&view[key], value, "{key} in {view}");
        }
    }
    // The token is disabled as asked; the hash is never shown.
    assert_eq!(chat(&gw, &secret).await?.status, 401);
    let hash = switchyard::tokens::hash(&secret);
    let listed = admin.get("/admin/tokens").await?;
    assert!(!listed.to_string().contains(&hash) && !shown.to_string().contains(&hash));
    assert!(!listed.to_string().contains(&secret));

    // budget_nanos is taken as is; no user_id means the `default` user; a
    // token without limits shows nulls and an empty quota list.
    let CreatedToken { answer: plain, .. } = admin
        .create_token(json!({ "name": "plain", "budget_nanos": 7 }))
        .await?;
    assert_eq!(plain["budget_nanos"], 7);
    assert_eq!(plain["user_id"], json!(admin.user_id("default").await?));
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
    let admin = gw.admin_client();
    let CreatedToken { id, .. } = admin
        .create_token(json!({
            "name": "before",
            "rpm": 10,
            "budget_usd": 1,
            "quotas": [{ "period": "day", "kind": "requests", "limit": 5 }],
            "price_multiplier": 2
        }))
        .await?;
    let path = format!("/admin/tokens/{id}");
    let other = admin.create_user(json!({ "name": "dave" })).await?;

    // Absent fields stay; values change; null lifts a limit.
    let patched = admin
        .patch(
            &path,
            json!({
                "name": "  after ",
                "user_id": other["id"],
                "tpm": 1000,
                "budget_usd": null,
                "budget_tokens": 500,
                "quotas": [{ "period": "month", "kind": "cost", "limit_usd": 1.5 }],
                "price_multiplier": null,
                "allowed_models": ["mock-gpt"]
            }),
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
    assert_eq!(admin.get(&path).await?, patched);

    // An empty body changes nothing but is fine; budget_nanos, expiry and
    // the remaining limits set and clear the same way.
    let same = admin.patch(&path, json!({})).await?;
    assert_eq!(same["rpm"], 10);
    let expires_at = switchyard::clock::system_now_ms() / 1000 + 3600;
    let patched = admin.patch(&path, json!({ "budget_nanos": 123, "expires_at": expires_at, "max_parallel": 2, "enabled": false }))
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
    let cleared = admin
        .patch(
            &path,
            json!({
                "rpm": null, "tpm": null, "max_parallel": null, "budget_nanos": null,
                "budget_tokens": null, "quotas": null, "allowed_models": null, "expires_at": null,
                "enabled": true
            }),
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
        admin
            .refused(
                Method::PATCH,
                &format!("/admin/tokens/{missing}"),
                Some(json!({ "rpm": 1 })),
                404,
                "not_found",
            )
            .await?;
        admin
            .refused(
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
    let admin = gw.admin_client();
    let CreatedToken {
        id,
        answer: original,
        ..
    } = admin
        .create_token(json!({ "name": "target", "rpm": 5 }))
        .await?;
    let past = switchyard::clock::system_now_ms() / 1000 - 10;
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
        let (status, answer) = admin
            .call_raw(Method::PATCH, &format!("/admin/tokens/{id}"), Some(body))
            .await?;
        assert_eq!(status, 400, "PATCH {body}: {answer}");
        assert_eq!(
            answer.pointer("/error/code"),
            Some(&json!("invalid_request")),
            "{body}"
        );
        // ...and in a creation.
        let create = format!(r#"{{"name":"new",{}"#, body.trim_start_matches('{'));
        let (status, answer) = admin
            .call_raw(Method::POST, "/admin/tokens", Some(&create))
            .await?;
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
        let (status, answer) = admin
            .call_raw(Method::PATCH, &format!("/admin/tokens/{id}"), Some(body))
            .await?;
        assert_eq!(status, 400, "PATCH {body}: {answer}");
    }
    // Nothing changed and nothing was created.
    let listed = admin.get("/admin/tokens").await?;
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
    let admin = gw.admin_client();
    let owner = admin.create_user(json!({ "name": "erin" })).await?;
    let owner_path = format!("/admin/users/{}", id_of(&owner)?);
    let CreatedToken {
        token: secret, id, ..
    } = admin
        .create_token(json!({ "name": "live", "user_id": owner["id"] }))
        .await?;
    let path = format!("/admin/tokens/{id}");
    // Each step caches the token first, so a stale cache would show.
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    admin
        .patch(&path, json!({ "allowed_models": ["other-*"] }))
        .await?;
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (403, Some("model_not_allowed".into()))
    );
    admin
        .patch(&path, json!({ "allowed_models": ["mock-*"] }))
        .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    admin
        .patch(&path, json!({ "allowed_models": null }))
        .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // A rate limit: one request in the minute, then 429; lifted at once.
    admin.patch(&path, json!({ "rpm": 1 })).await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (429, Some("rate_limited".into()))
    );
    admin.patch(&path, json!({ "rpm": null })).await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // A money budget already spent: 402; lifted at once.
    admin
        .set_price(
            "mock-gpt",
            json!({ "input_per_mtok": 1, "output_per_mtok": 1 }),
        )
        .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    gw.gateway()?.flush_usage().await?;
    admin.patch(&path, json!({ "budget_nanos": 1 })).await?;
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (402, Some("budget_exhausted".into()))
    );
    admin.patch(&path, json!({ "budget_nanos": null })).await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // Disabled through PATCH: 401 on the next request.
    admin.patch(&path, json!({ "enabled": false })).await?;
    assert_eq!(
        status_and_code(&chat(&gw, &secret).await?),
        (401, Some("invalid_api_key".into()))
    );
    admin.patch(&path, json!({ "enabled": true })).await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // The owner suspended: 401 on the next request; active again: served.
    let suspended = admin
        .patch(&owner_path, json!({ "status": "suspended" }))
        .await?;
    assert_eq!(suspended["status"], "suspended");
    let reply = chat(&gw, &secret).await?;
    assert_eq!(reply.status, 401);
    assert!(reply.text().contains("suspended"), "{}", reply.text());
    admin
        .patch(&owner_path, json!({ "status": "active" }))
        .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);

    // The owner's multiplier applies to the next request's cost.
    admin
        .patch(&owner_path, json!({ "price_multiplier": 3 }))
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
    let admin = gw.admin_client();
    let CreatedToken {
        token: first,
        id,
        answer: created,
    } = admin.create_token(json!({ "name": "rotating" })).await?;
    assert_eq!(chat(&gw, &first).await?.status, 200);

    let rotated = admin
        .post(
            &format!("/admin/tokens/{id}/rotate"),
            json!({ "grace_seconds": 60 }),
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
    let shown = admin.token(id).await?;
    assert!(shown.get("token").is_none());
    assert!(!shown.to_string().contains(&second));

    // Default grace: one hour. A rotation forgets the earlier old token.
    let again = admin
        .send(Method::POST, &format!("/admin/tokens/{id}/rotate"), None)
        .await?;
    let third = again["token"].as_str().context("no token")?.to_owned();
    let now_s = (NOV_22 + 60_000) / 1000;
    assert_eq!(again["previous_token_expires_at"], json!(now_s + 3600));
    assert_eq!(chat(&gw, &second).await?.status, 200);
    assert_eq!(chat(&gw, &third).await?.status, 200);
    // Grace 0: the replaced token stops at once.
    let last = admin
        .post(
            &format!("/admin/tokens/{id}/rotate"),
            json!({ "grace_seconds": 0 }),
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
        let (status, answer) = admin
            .call_raw(
                Method::POST,
                &format!("/admin/tokens/{id}/rotate"),
                Some(body),
            )
            .await?;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // The longest grace is accepted; the refused rotations changed nothing.
    assert_eq!(chat(&gw, &fourth).await?.status, 200);
    admin
        .post(
            &format!("/admin/tokens/{id}/rotate"),
            json!({ "grace_seconds": 2_592_000 }),
        )
        .await?;
    assert_eq!(chat(&gw, &fourth).await?.status, 200);
    gw.stop().await
}
