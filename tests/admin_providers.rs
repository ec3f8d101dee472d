//! Providers managed through the admin API, live: a provider added, changed
//! or deleted serves (or stops serving) the very next request, its secrets
//! are shown masked and stored encrypted, bad bodies are refused naming the
//! field, and a provider declared in settings comes back at the next start.

pub mod common;

use anyhow::Context;
use awc::http::{Method, StatusCode};
use common::{TestGateway, chat_body};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use switchyard::config::Backend;

on_both_backends!(
    a_provider_added_through_the_api_serves_at_once,
    a_change_reaches_the_next_request,
    deleting_a_provider_takes_its_models_and_keys_away,
    secrets_are_masked_in_answers_and_encrypted_at_rest,
    invalid_providers_are_refused_naming_the_field,
    settings_providers_come_back_at_start_and_api_ones_stay,
    a_request_in_flight_finishes_when_its_provider_goes,
);

const KEY: &str = "ok-fresh-secret-0123456789";
const HEADER_VALUE: &str = "team-header-secret-value";

/// A provider body on `mock` serving `models` with one good key.
fn provider(name: &str, mock: &MockUpstream, models: &[&str]) -> Value {
    json!({
        "name": name,
        "kind": "openai-compatible",
        "base_url": mock.base_url(),
        "models": models,
        "headers": { "X-Team": HEADER_VALUE },
        "keys": [{ "key": KEY, "id": "main" }],
    })
}

async fn chat_status(gw: &TestGateway, token: &str, model: &str) -> anyhow::Result<u16> {
    Ok(gw
        .chat(token, chat_body(model, "hi"))
        .await?
        .status
        .as_u16())
}

async fn a_provider_added_through_the_api_serves_at_once(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "t" })).await?;
    let reply = gw.chat(&token, chat_body("fresh-model", "hi")).await?;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_code().as_deref(), Some("model_not_found"));

    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/providers",
            Some(provider("fresh", &gw.mock, &["fresh-model"])),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "fresh");
    assert_eq!(created["kind"], "openai-compatible");
    assert_eq!(created["models"], json!(["fresh-model"]));
    assert_eq!(created["running"], true);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["source"], "api");
    assert_eq!(created["strategy"], "round-robin", "the settings default");
    assert_eq!(created["weight"], 1);
    assert_eq!(created["keys"][0]["id"], "main");
    assert_eq!(created["keys"][0]["state"], "healthy");

    // The next request is served by it, with its key and header.
    gw.mock.reset_counts();
    let reply = gw.chat(&token, chat_body("fresh-model", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gw.mock.calls(KEY), 1);
    let upstream = gw.mock.last_request().context("no upstream request")?;
    assert_eq!(upstream.header("x-team"), Some(HEADER_VALUE));
    assert_eq!(upstream.json().context("body")?["model"], "fresh-model");
    // Pinned by its name too, and listed.
    assert_eq!(chat_status(&gw, &token, "fresh/other-model").await?, 200);
    assert_eq!(gw.mock.calls(KEY), 2);
    let listed = admin.get("/admin/providers").await?;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .context("data")?
        .iter()
        .filter_map(|row| row["name"].as_str())
        .collect();
    assert_eq!(names, vec!["fresh", "mock"]);
    let models = gw
        .send(
            Method::GET,
            "/v1/models",
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await?
        .json()?;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .context("data")?
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["fresh-model", "mock-gpt"]);
    let logs = gw.request_logs().await?;
    let served: Vec<(Option<&str>, Option<&str>, i32)> = logs
        .iter()
        .map(|row| (row.provider.as_deref(), row.key_id.as_deref(), row.status))
        .collect();
    assert_eq!(
        served,
        vec![
            (None, None, 404),
            (Some("fresh"), Some("main"), 200),
            (Some("fresh"), Some("main"), 200),
        ]
    );
    gw.stop().await
}

async fn a_change_reaches_the_next_request(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "t" })).await?;
    admin.add_provider(provider("p", &gw.mock, &["m1"])).await?;
    assert_eq!(chat_status(&gw, &token, "m1").await?, 200);

    // Models: m1 goes, m2 comes; the running actor (and key health) stays.
    let patched = admin
        .update_provider("p", json!({ "models": ["m2"], "weight": 3 }))
        .await?;
    assert_eq!(patched["models"], json!(["m2"]));
    assert_eq!(patched["weight"], 3);
    assert_eq!(patched["keys"][0]["successes"], 1, "key health was kept");
    assert_eq!(chat_status(&gw, &token, "m1").await?, 404);
    assert_eq!(chat_status(&gw, &token, "m2").await?, 200);

    // Base URL: the next request goes to the other upstream.
    let other = MockUpstream::start()?;
    gw.mock.reset_counts();
    let patched = admin
        .update_provider(
            "p",
            json!({ "base_url": other.base_url(), "headers": { "X-Extra": "v" } }),
        )
        .await?;
    assert_eq!(patched["base_url"], other.base_url());
    // Headers merge: X-Team stays, X-Extra is added (both masked).
    assert_eq!(
        patched["headers"],
        json!({ "X-Extra": "****", "X-Team": "team…alue" })
    );
    assert_eq!(chat_status(&gw, &token, "m2").await?, 200);
    assert_eq!((gw.mock.total_calls(), other.total_calls()), (0, 1));
    let upstream = other.last_request().context("no request")?;
    assert_eq!(upstream.header("x-extra"), Some("v"));
    assert_eq!(upstream.header("x-team"), Some(HEADER_VALUE));

    // Strategy and retry change; `null` removes a header.
    let patched = admin
        .update_provider(
            "p",
            json!({
                "strategy": "round-robin",
                "retry": { "max_attempts": 5 },
                "headers": { "X-Extra": null },
            }),
        )
        .await?;
    assert_eq!(patched["strategy"], "round-robin");
    assert_eq!(patched["retry"]["max_attempts"], 5);
    assert_eq!(patched["headers"], json!({ "X-Team": "team…alue" }));

    // Disabled: out of routing at once, stored, and back when enabled.
    let disabled = admin
        .update_provider("p", json!({ "enabled": false }))
        .await?;
    assert_eq!(
        (disabled["enabled"].clone(), disabled["running"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(chat_status(&gw, &token, "m2").await?, 404);
    assert_eq!(chat_status(&gw, &token, "p/m2").await?, 404);
    admin
        .update_provider("p", json!({ "enabled": true }))
        .await?;
    assert_eq!(chat_status(&gw, &token, "m2").await?, 200);
    assert_eq!(other.total_calls(), 2);

    // The name and the keys are not patched here.
    for (body, param) in [
        (json!({ "name": "q" }), "name"),
        (json!({ "keys": [] }), "keys"),
        (json!({ "kind": "smtp" }), "kind"),
        (json!({ "base_url": "localhost:1" }), "base_url"),
        (json!({ "retry": { "max_attempts": -1 } }), "retry"),
    ] {
        let (status, answer) = gw
            .admin(Method::PATCH, "/admin/providers/p", Some(body.clone()))
            .await?;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["param"], param, "{body}: {answer}");
    }
    // A refused change changed nothing.
    let shown = admin.provider("p").await?;
    assert_eq!(shown["base_url"], other.base_url());
    assert_eq!(shown["retry"]["max_attempts"], 5);
    let (status, _) = gw
        .admin(
            Method::PATCH,
            "/admin/providers/nobody",
            Some(json!({ "weight": 2 })),
        )
        .await?;
    assert_eq!(status, 404);
    gw.stop().await
}

async fn deleting_a_provider_takes_its_models_and_keys_away(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "t" })).await?;
    let created = admin
        .add_provider(provider("gone", &gw.mock, &["gone-model"]))
        .await?;
    assert_eq!(created["keys"].as_array().map(Vec::len), Some(1));
    let row = gw
        .gateway()?
        .db
        .get_provider_by_name("gone")
        .await?
        .context("not stored")?;
    assert_eq!(gw.gateway()?.db.list_provider_keys(row.id).await?.len(), 1);
    assert_eq!(chat_status(&gw, &token, "gone-model").await?, 200);

    let (status, body) = gw
        .admin(Method::DELETE, "/admin/providers/gone", None)
        .await?;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let reply = gw.chat(&token, chat_body("gone-model", "hi")).await?;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_code().as_deref(), Some("model_not_found"));
    assert_eq!(chat_status(&gw, &token, "gone/gone-model").await?, 404);
    // Stored nowhere any more, keys included.
    assert!(
        gw.gateway()?
            .db
            .get_provider_by_name("gone")
            .await?
            .is_none()
    );
    assert!(
        gw.gateway()?
            .db
            .list_provider_keys(row.id)
            .await?
            .is_empty()
    );
    for (method, path) in [
        (Method::GET, "/admin/providers/gone"),
        (Method::GET, "/admin/providers/gone/health"),
        (Method::DELETE, "/admin/providers/gone"),
    ] {
        let (status, _) = gw.admin(method.clone(), path, None).await?;
        assert_eq!(status, 404, "{method} {path}");
    }
    // The other provider never noticed; the name is free again.
    assert_eq!(chat_status(&gw, &token, "mock-gpt").await?, 200);
    let (status, _) = gw
        .admin(
            Method::POST,
            "/admin/providers",
            Some(provider("gone", &gw.mock, &["gone-model"])),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(chat_status(&gw, &token, "gone-model").await?, 200);
    gw.stop().await
}

async fn secrets_are_masked_in_answers_and_encrypted_at_rest(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let mut answers = Vec::new();
    answers.push(
        admin
            .add_provider(provider("s", &gw.mock, &["s-model"]))
            .await?,
    );
    answers.push(admin.provider("s").await?);
    answers.push(admin.get("/admin/providers").await?);
    answers.push(admin.get("/admin/providers/s/health").await?);
    answers.push(
        admin
            .update_provider("s", json!({ "models": ["s2"] }))
            .await?,
    );
    for answer in &answers {
        let text = answer.to_string();
        assert!(!text.contains(KEY), "the key leaked: {text}");
        assert!(!text.contains(HEADER_VALUE), "the header leaked: {text}");
    }
    let shown = answers.get(1).context("detail")?;
    assert_eq!(shown["keys"][0]["secret_hint"], "ok-f…6789");
    assert_eq!(shown["headers"], json!({ "X-Team": "team…alue" }));

    // At rest: neither secret appears in the rows, yet both decrypt (the
    // provider serves with them).
    let db = &gw.gateway()?.db;
    let row = db.get_provider_by_name("s").await?.context("not stored")?;
    assert!(
        !row.config_json.contains(HEADER_VALUE),
        "{}",
        row.config_json
    );
    assert!(row.config_json.contains("headers_ciphertext"));
    let keys = db.list_provider_keys(row.id).await?;
    assert_eq!(keys.len(), 1);
    for key in &keys {
        assert!(!key.secret_ciphertext.contains(KEY));
        assert!(!key.secret_hint.contains(KEY));
    }
    let token = gw.create_token(json!({ "name": "t" })).await?;
    assert_eq!(chat_status(&gw, &token, "s2").await?, 200);
    let upstream = gw.mock.last_request().context("no request")?;
    assert_eq!(
        upstream.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(upstream.header("x-team"), Some(HEADER_VALUE));
    gw.stop().await
}

async fn invalid_providers_are_refused_naming_the_field(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let good = provider("v", &gw.mock, &["v-model"]);
    let with = |change: Value| {
        let mut body = good.clone();
        if let (Some(body), Some(change)) = (body.as_object_mut(), change.as_object()) {
            for (key, value) in change {
                body.insert(key.clone(), value.clone());
            }
        }
        body
    };
    let cases = [
        (with(json!({ "name": "a/b" })), Some("name")),
        (with(json!({ "name": "" })), Some("name")),
        (with(json!({ "kind": "openai-ish" })), Some("kind")),
        (
            with(json!({ "base_url": "ftp://example.com" })),
            Some("base_url"),
        ),
        (with(json!({ "strategy": "fastest" })), Some("strategy")),
        (with(json!({ "weight": 0 })), Some("weight")),
        (
            with(json!({ "max_in_flight_per_key": -1 })),
            Some("max_in_flight_per_key"),
        ),
        (
            with(json!({ "retry": { "max_attempts": -1 } })),
            Some("retry"),
        ),
        (
            with(json!({ "retry": { "backoff_base": "soon" } })),
            Some("retry"),
        ),
        (with(json!({ "models": ["ok", ""] })), Some("models")),
        // Environment references are never expanded from the admin API.
        (
            with(json!({ "keys": [{ "key": "${HOME}" }] })),
            Some("keys"),
        ),
        (
            with(json!({ "headers": { "X-Key": "Bearer ${OPENAI_API_KEY}" } })),
            Some("headers"),
        ),
        (
            with(json!({ "headers": { "Bad Header": "v" } })),
            Some("headers"),
        ),
        (
            with(json!({ "keys": [{ "key": "ok-a" }, { "key": "ok-a" }] })),
            Some("keys"),
        ),
        (
            with(json!({ "keys": [{ "key": "ok-a", "id": "k" }, { "key": "ok-b", "id": "k" }] })),
            Some("keys"),
        ),
        (
            with(json!({ "keys": [{ "key": "ok-a", "weight": 0 }] })),
            Some("keys"),
        ),
        (with(json!({ "colour": "blue" })), None),
        (json!({ "name": "v", "base_url": "http://x" }), None),
    ];
    for (body, param) in cases {
        let (status, answer) = gw
            .admin(Method::POST, "/admin/providers", Some(body.clone()))
            .await?;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{body}");
        assert_eq!(answer["error"]["param"].as_str(), param, "{body}: {answer}");
    }
    // A name taken (here by the settings provider) is a conflict.
    let (status, answer) = gw
        .admin(
            Method::POST,
            "/admin/providers",
            Some(with(json!({ "name": "mock" }))),
        )
        .await?;
    assert_eq!(status, 409, "{answer}");
    // Nothing was stored by the refused bodies.
    let listed = admin.get("/admin/providers").await?;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    let (status, _) = gw
        .admin(Method::POST, "/admin/providers", Some(good))
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    gw.stop().await
}

async fn settings_providers_come_back_at_start_and_api_ones_stay(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "t" })).await?;
    let shown = admin.provider("mock").await?;
    assert_eq!(shown["source"], "settings");
    admin
        .add_provider(provider("extra", &gw.mock, &["extra-model"]))
        .await?;
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/providers/mock", None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(chat_status(&gw, &token, "mock-gpt").await?, 404);

    // Restart on the same database and settings.
    gw.restart().await?;
    let admin = gw.admin_client();
    // Declared in settings: upserted again. Added through the API: kept.
    assert_eq!(chat_status(&gw, &token, "mock-gpt").await?, 200);
    assert_eq!(chat_status(&gw, &token, "extra-model").await?, 200);
    let extra = admin.provider("extra").await?;
    assert_eq!(extra["source"], "api");
    assert_eq!(extra["keys"][0]["secret_hint"], "ok-f…6789");
    gw.stop().await
}

async fn a_request_in_flight_finishes_when_its_provider_goes(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "t" })).await?;
    let mut body = provider("slow", &gw.mock, &["slow-model"]);
    body["keys"] = json!([{ "key": "slow300-key", "id": "slow" }]);
    admin.add_provider(body).await?;
    gw.mock.reset_counts();
    // The request holds a lease of the provider when it is replaced, then
    // deleted: it still finishes, on the actor that leased the key.
    let in_flight = gw.chat(&token, chat_body("slow-model", "hi"));
    let change = async {
        gw.wait_for_upstream_calls(1).await?;
        admin
            .update_provider(
                "slow",
                json!({ "base_url": format!("{}/", gw.mock.base_url()) }),
            )
            .await?;
        let (status, _) = gw
            .admin(Method::DELETE, "/admin/providers/slow", None)
            .await?;
        anyhow::ensure!(status == StatusCode::NO_CONTENT, "{status}");
        Ok::<_, anyhow::Error>(())
    };
    let (reply, changed) = futures_util::future::join(in_flight, change).await;
    changed?;
    let reply = reply?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(chat_status(&gw, &token, "slow-model").await?, 404);
    let logs = gw.request_logs().await?;
    let served: Vec<(Option<&str>, i32)> = logs
        .iter()
        .map(|row| (row.provider.as_deref(), row.status))
        .collect();
    assert_eq!(served, vec![(Some("slow"), 200), (None, 404)]);
    // The other provider was never disturbed.
    assert_eq!(chat_status(&gw, &token, "mock-gpt").await?, 200);
    gw.stop().await
}
