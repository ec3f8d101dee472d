//! Admin provider routes on both backends: the provider list, per-key health
//! (masked, merged from the database and the live actor), keys added,
//! disabled, enabled and deleted while the gateway runs, and a key the
//! upstream refused (401) staying disabled across a restart until an admin
//! enables it.

pub mod common;

use anyhow::Context;
use awc::http::{Method, StatusCode};
use common::{MASTER_KEY, TestGateway, chat_body, mock_provider};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::{Backend, mask};
use switchyard_actors::KeyStrategy;

on_both_backends!(
    providers_are_listed_with_their_key_counts,
    key_health_is_masked_and_counts_outcomes,
    keys_are_added_disabled_enabled_and_deleted_while_running,
    bad_key_changes_are_refused,
    provider_routes_refuse_anything_but_the_master_key,
    a_rejected_key_stays_disabled_across_a_restart_until_enabled,
);

const REJECTED: &str = "upstream rejected the key (401/403)";

/// A gateway whose `mock` provider tries `keys` in order (first-available).
async fn gateway(backend: Backend, keys: &[&str]) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], keys);
        provider.strategy = KeyStrategy::FirstAvailable;
        settings.providers = vec![provider];
    })
    .await
}

/// Asserts the OpenAI error shape, status and code.
fn expect_error(status: StatusCode, answer: &Value, want: u16, code: &str) {
    assert_eq!(status, want, "{answer}");
    assert_eq!(
        answer.pointer("/error/code"),
        Some(&json!(code)),
        "{answer}"
    );
}

async fn providers_are_listed_with_their_key_counts(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut off = mock_provider(mock, "off", &["off-gpt"], &["ok-off-1"]);
        off.enabled = false;
        settings.providers = vec![
            mock_provider(
                mock,
                "mock",
                &["mock-gpt", "mock-mini"],
                &["ok-l-1", "ok-l-2"],
            ),
            off,
        ];
    })
    .await?;
    let admin = gw.admin_client();
    let answer = admin.get("/admin/providers").await?;
    let base_url = gw.mock.base_url();
    assert_eq!(
        answer,
        json!({ "data": [
            { "name": "mock", "kind": "openai-compatible", "base_url": base_url,
              "models": ["mock-gpt", "mock-mini"], "keys": 2, "enabled_keys": 2,
              "enabled": true, "running": true },
            { "name": "off", "kind": "openai-compatible", "base_url": base_url,
              "models": ["off-gpt"], "keys": 1, "enabled_keys": 1,
              "enabled": false, "running": false },
        ]})
    );
    // A provider that is not running still shows its stored keys.
    let keys = admin.key_healths("off").await?;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["state"], "not_running");
    let (status, answer) = gw
        .admin(Method::GET, "/admin/providers/nope/health", None)
        .await?;
    expect_error(status, &answer, 404, "not_found");
    gw.stop().await
}

async fn key_health_is_masked_and_counts_outcomes(backend: Backend) -> anyhow::Result<()> {
    let secrets = ["e500-health-secret-1", "ok-health-secret-2"];
    let gw = gateway(backend, &secrets).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "health" })).await?;
    for _ in 0..2 {
        let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // First-available: each request tried the 500 key first (the default
    // threshold of 3 keeps its circuit closed), then the good one.
    assert_eq!(
        (gw.mock.calls(secrets[0]), gw.mock.calls(secrets[1])),
        (2, 2)
    );
    let answer = admin.get("/admin/providers/mock/health").await?;
    let text = answer.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    assert_eq!(
        (&answer["provider"], &answer["running"]),
        (&json!("mock"), &json!(true))
    );
    let keys = answer["keys"].as_array().context("keys")?;
    let ids: Vec<&Value> = keys.iter().map(|key| &key["id"]).collect();
    assert_eq!(ids, vec!["key-1", "key-2"]);
    let (bad, good) = (&keys[0], &keys[1]);
    assert_eq!(bad["secret_hint"], mask(secrets[0]));
    assert_eq!(good["secret_hint"], mask(secrets[1]));
    assert_eq!(
        (
            &bad["state"],
            &bad["error_streak"],
            &bad["failures"],
            &bad["successes"]
        ),
        (&json!("healthy"), &json!(2), &json!(2), &json!(0))
    );
    assert_eq!(
        (
            &good["state"],
            &good["error_streak"],
            &good["failures"],
            &good["successes"]
        ),
        (&json!("healthy"), &json!(0), &json!(0), &json!(2))
    );
    assert!(
        good["latency_ewma_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{good}"
    );
    assert_eq!(bad["latency_ewma_ms"], json!(0.0));
    for key in keys {
        assert_eq!(
            (
                &key["enabled"],
                &key["disabled_reason"],
                &key["in_flight"],
                &key["cooldown_remaining_ms"]
            ),
            (&json!(true), &Value::Null, &json!(0), &json!(0)),
            "{key}"
        );
    }
    gw.stop().await
}

async fn keys_are_added_disabled_enabled_and_deleted_while_running(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, &["ok-run-first"]).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "runtime" })).await?;
    let served_by = |reply: &common::Reply| -> anyhow::Result<String> {
        anyhow::ensure!(reply.status == 200, "{}", reply.text());
        Ok(reply
            .header("x-switchyard-attempts")
            .unwrap_or_default()
            .to_owned())
    };

    // Added with a better priority: it serves the next request at once.
    let added = admin
        .add_key(
            "mock",
            json!({ "key": "ok-run-second", "id": "second", "priority": -1, "weight": 2 }),
        )
        .await?;
    assert_eq!(
        (
            &added["id"],
            &added["secret_hint"],
            &added["weight"],
            &added["priority"],
            &added["enabled"]
        ),
        (
            &json!("second"),
            &json!(mask("ok-run-second")),
            &json!(2),
            &json!(-1),
            &json!(true)
        )
    );
    assert!(!added.to_string().contains("ok-run-second"), "{added}");
    assert_eq!(
        served_by(&gw.chat(&token, chat_body("mock-gpt", "a")).await?)?,
        "1"
    );
    assert_eq!(
        (
            gw.mock.calls("ok-run-first"),
            gw.mock.calls("ok-run-second")
        ),
        (0, 1)
    );

    // An id is generated when none is given; it never shows the secret.
    let generated = admin
        .add_key("mock", json!({ "key": "ok-run-third", "priority": 5 }))
        .await?;
    let generated_id = generated["id"].as_str().context("id")?.to_owned();
    assert!(
        generated_id.starts_with("key-") && generated_id.len() == 12,
        "{generated_id}"
    );
    assert_eq!(admin.key_healths("mock").await?.len(), 3);

    // Disabled with a reason: traffic moves to the next key.
    let disabled = admin
        .post(
            "/admin/providers/mock/keys/second/disable",
            json!({ "reason": "rotating" }),
        )
        .await?;
    assert_eq!(
        (
            &disabled["enabled"],
            &disabled["state"],
            &disabled["disabled_reason"]
        ),
        (&json!(false), &json!("disabled"), &json!("rotating"))
    );
    assert_eq!(
        served_by(&gw.chat(&token, chat_body("mock-gpt", "b")).await?)?,
        "1"
    );
    assert_eq!(
        (
            gw.mock.calls("ok-run-first"),
            gw.mock.calls("ok-run-second")
        ),
        (1, 1)
    );
    let stored = gw
        .gateway()?
        .db
        .get_provider_by_name("mock")
        .await?
        .context("row")?;
    let rows = gw.gateway()?.db.list_provider_keys(stored.id).await?;
    let second = rows
        .iter()
        .find(|row| row.key_id == "second")
        .context("second")?;
    assert_eq!(
        (second.enabled, second.disabled_reason.as_deref()),
        (false, Some("rotating"))
    );

    // Enabled again (no body needed): it serves again.
    let enabled = admin.set_key_enabled("mock", "second", true).await?;
    assert_eq!(
        (
            &enabled["enabled"],
            &enabled["state"],
            &enabled["disabled_reason"]
        ),
        (&json!(true), &json!("healthy"), &Value::Null)
    );
    assert_eq!(
        served_by(&gw.chat(&token, chat_body("mock-gpt", "c")).await?)?,
        "1"
    );
    assert_eq!(
        (
            gw.mock.calls("ok-run-first"),
            gw.mock.calls("ok-run-second")
        ),
        (1, 2)
    );

    // A disable without a body records a default reason.
    let disabled = admin.set_key_enabled("mock", "second", false).await?;
    assert_eq!(disabled["disabled_reason"], "disabled by an admin");
    admin
        .post("/admin/providers/mock/keys/second/enable", json!({}))
        .await?;

    // Deleted: gone from the database and from the running pool.
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/providers/mock/keys/second", None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut ids: Vec<String> = admin
        .key_healths("mock")
        .await?
        .iter()
        .filter_map(|key| key["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    // Generated ids come from a keyed hash under this database's own key:
    // either may sort first.
    let mut expected = vec!["key-1".to_owned(), generated_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        served_by(&gw.chat(&token, chat_body("mock-gpt", "d")).await?)?,
        "1"
    );
    assert_eq!(
        (
            gw.mock.calls("ok-run-first"),
            gw.mock.calls("ok-run-second"),
            gw.mock.calls("ok-run-third")
        ),
        (2, 2, 0)
    );
    // The health of a key that stays is kept across the reload.
    let first = admin.key_health("mock", "key-1").await?;
    assert_eq!(first["successes"], json!(2));
    let list = admin.get("/admin/providers").await?;
    assert_eq!(list.pointer("/data/0/keys"), Some(&json!(2)));
    gw.stop().await
}

async fn bad_key_changes_are_refused(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, &["ok-bad-1"]).await?;
    let admin = gw.admin_client();
    let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
        // The id of an existing key, or the same secret under a new id.
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "ok-other", "id": "key-1" })),
            409,
            "conflict",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "ok-bad-1", "id": "again" })),
            409,
            "conflict",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "" })),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "ok-x", "weight": 0 })),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "ok-x", "id": "has space" })),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "ok-x", "secret": 1 })),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "id": "no-key" })),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys/key-1/disable",
            Some(json!({ "why": "x" })),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/admin/providers/nope/keys",
            Some(json!({ "key": "ok-x" })),
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/admin/providers/nope/keys/key-1/enable",
            None,
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys/nope/enable",
            None,
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys/nope/disable",
            None,
            404,
            "not_found",
        ),
        (
            Method::DELETE,
            "/admin/providers/mock/keys/nope",
            None,
            404,
            "not_found",
        ),
        (
            Method::DELETE,
            "/admin/providers/nope/keys/key-1",
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = gw.admin(method.clone(), path, body.clone()).await?;
        assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
        assert_eq!(
            answer.pointer("/error/code"),
            Some(&json!(code)),
            "{method} {path}"
        );
    }
    // Nothing changed behind the refusals.
    let keys = admin.key_healths("mock").await?;
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (&keys[0]["id"], &keys[0]["enabled"]),
        (&json!("key-1"), &json!(true))
    );
    let token = gw.create_token(json!({ "name": "bad" })).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        (gw.mock.calls("ok-bad-1"), gw.mock.calls("ok-other")),
        (1, 0)
    );
    gw.stop().await
}

async fn provider_routes_refuse_anything_but_the_master_key(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, &["ok-auth-1"]).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "not-admin" })).await?;
    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/admin/providers", None),
        (Method::GET, "/admin/providers/mock/health", None),
        (
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": "ok-intruder" })),
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys/key-1/disable",
            None,
        ),
        (
            Method::POST,
            "/admin/providers/mock/keys/key-1/enable",
            None,
        ),
        (Method::DELETE, "/admin/providers/mock/keys/key-1", None),
    ];
    let wrong_master = format!("Bearer {MASTER_KEY}x");
    let gateway_bearer = format!("Bearer {token}");
    for (method, path, body) in &routes {
        for credential in [
            None,
            Some(gateway_bearer.as_str()),
            Some(wrong_master.as_str()),
        ] {
            let mut request = gw
                .client
                .request(method.clone(), format!("{}{path}", gw.url));
            if let Some(value) = credential {
                request = request.insert_header(("authorization", value));
            }
            let mut response = match body {
                Some(body) => request.send_json(body).await,
                None => request.send().await,
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let answer: Value = serde_json::from_slice(&response.body().await?)?;
            assert_eq!(response.status(), 401, "{method} {path} {credential:?}");
            assert_eq!(
                answer.pointer("/error/code"),
                Some(&json!("invalid_api_key"))
            );
        }
    }
    let keys = admin.key_healths("mock").await?;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["enabled"], true);
    gw.stop().await
}

/// Polls the database until `key_id` of `provider` is disabled, or fails
/// after `deadline` (the disable is written by a task spawned off the request).
async fn wait_until_stored_disabled(
    gw: &TestGateway,
    provider: &str,
    key_id: &str,
    deadline: Duration,
) -> anyhow::Result<Option<String>> {
    let db = &gw.gateway()?.db;
    let row = db
        .get_provider_by_name(provider)
        .await?
        .context("provider row")?;
    let until = Instant::now() + deadline;
    loop {
        let keys = db.list_provider_keys(row.id).await?;
        let key = keys
            .iter()
            .find(|key| key.key_id == key_id)
            .context("key row")?;
        if !key.enabled {
            return Ok(key.disabled_reason.clone());
        }
        anyhow::ensure!(Instant::now() < until, "{key_id} was never stored disabled");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_rejected_key_stays_disabled_across_a_restart_until_enabled(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut gw = gateway(backend, &["e401-persist", "ok-persist"]).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "persist" })).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("2"));

    let stored_reason =
        wait_until_stored_disabled(&gw, "mock", "key-1", Duration::from_secs(5)).await?;
    assert_eq!(stored_reason.as_deref(), Some(REJECTED));
    let rejected = admin.key_health("mock", "key-1").await?;
    assert_eq!(
        (
            &rejected["state"],
            &rejected["enabled"],
            &rejected["disabled_reason"],
            &rejected["failures"]
        ),
        (
            &json!("disabled"),
            &json!(false),
            &json!(REJECTED),
            &json!(1)
        )
    );

    // A restart reads the verdict back from the database (seeding the same
    // key from settings again does not re-enable it).
    gw.restart().await?;
    let admin = gw.admin_client();
    let rejected = admin.key_health("mock", "key-1").await?;
    assert_eq!(
        (
            &rejected["state"],
            &rejected["enabled"],
            &rejected["disabled_reason"]
        ),
        (&json!("disabled"), &json!(false), &json!(REJECTED))
    );
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(
        (gw.mock.calls("e401-persist"), gw.mock.calls("ok-persist")),
        (1, 2)
    );

    // An admin enables it: it is tried first again (and refused again).
    let enabled = admin.set_key_enabled("mock", "key-1", true).await?;
    assert_eq!(
        (
            &enabled["state"],
            &enabled["enabled"],
            &enabled["disabled_reason"]
        ),
        (&json!("healthy"), &json!(true), &Value::Null)
    );
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(
        (gw.mock.calls("e401-persist"), gw.mock.calls("ok-persist")),
        (2, 3)
    );
    let stored_reason =
        wait_until_stored_disabled(&gw, "mock", "key-1", Duration::from_secs(5)).await?;
    assert_eq!(stored_reason.as_deref(), Some(REJECTED));
    let statuses: Vec<(i32, i32)> = gw
        .request_logs()
        .await?
        .iter()
        .map(|row| (row.status, row.attempts))
        .collect();
    assert_eq!(statuses, vec![(200, 2), (200, 1), (200, 2)]);
    gw.stop().await
}

/// Claude Code probes its base URL with `HEAD /` (no credentials) before
/// anything else: it must get 200, and `GET /` says what answers.
#[actix_rt::test]
async fn root_answers_head_and_get_without_credentials() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |_, _| {}).await?;
    let head = gw
        .client
        .head(format!("{}/", gw.url))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(head.status(), StatusCode::OK);
    let mut get = gw
        .client
        .get(format!("{}/", gw.url))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(get.status(), StatusCode::OK);
    let body: Value = get.json().await?;
    assert_eq!(body["name"], "switchyard");
    gw.stop().await
}
