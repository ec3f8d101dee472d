//! `/admin/tokens` (and the admin guard on every admin route) end to end.

pub mod common;

use anyhow::Context;
use awc::http::{Method, StatusCode};
use common::{MASTER_KEY, TestGateway, chat_body};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard::config::Backend;

on_both_backends!(
    create_returns_the_token_once_and_never_again,
    get_disable_enable_and_delete,
    unknown_ids_are_404,
    every_admin_route_refuses_anything_but_the_master_key,
    invalid_create_bodies_are_400,
    request_logs_page_and_refuse_bad_paging,
);

/// An admin call with an arbitrary credential header (or none) and raw body.
async fn admin_as(
    gw: &TestGateway,
    method: Method,
    path: &str,
    credential: Option<(&str, &str)>,
    body: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = gw
        .client
        .request(method, format!("{}{path}", gw.url))
        .insert_header(("content-type", "application/json"));
    if let Some(header) = credential {
        request = request.insert_header(header);
    }
    let result = match body {
        Some(body) => request.send_body(body.to_owned()).await,
        None => request.send().await,
    };
    let mut response = result.map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
    anyhow::ensure!(
        response.headers().contains_key("x-request-id"),
        "no x-request-id"
    );
    let bytes = response.body().await?;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&bytes)))?
    };
    Ok((response.status(), value))
}

fn unix_now() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    )?)
}

/// The fields of the public view of a token, sorted.
const PUBLIC_FIELDS: [&str; 27] = [
    "allowed_models",
    "budget_nanos",
    "budget_tokens",
    "budget_usd",
    "created_at",
    "enabled",
    "expires_at",
    "id",
    "last_used_at",
    "max_parallel",
    "name",
    "prefix",
    "previous_token_expires_at",
    "price_multiplier",
    "price_multiplier_ppm",
    "quotas",
    "request_count",
    "reserved_nanos",
    "reserved_tokens",
    "reserved_usd",
    "rpm",
    "spent_nanos",
    "spent_tokens",
    "spent_usd",
    "tpm",
    "updated_at",
    "user_id",
];

fn fields(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

async fn create_returns_the_token_once_and_never_again(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let before = unix_now()?;
    let expires_at = before + 3600;
    let created = admin
        .create(
            "/admin/tokens",
            json!({ "name": "  ci bot  ", "allowed_models": ["mock-*"], "expires_at": expires_at }),
        )
        .await?;
    let token = created["token"].as_str().context("no token")?.to_owned();
    assert!(token.starts_with("sy-") && token.len() > 20, "{token}");
    let mut expected_fields: Vec<String> = PUBLIC_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    expected_fields.push("token".to_owned());
    expected_fields.sort();
    assert_eq!(fields(&created), expected_fields);
    assert_eq!(created["name"], "ci bot", "the name is trimmed");
    assert_eq!(created["allowed_models"], json!(["mock-*"]));
    assert_eq!(created["expires_at"], json!(expires_at));
    assert_eq!(created["enabled"], true);
    assert_eq!(
        (
            &created["spent_nanos"],
            &created["spent_tokens"],
            &created["request_count"],
            &created["last_used_at"]
        ),
        (&json!(0), &json!(0), &json!(0), &Value::Null)
    );
    let created_at = created["created_at"].as_i64().context("created_at")?;
    assert!((before..=unix_now()?).contains(&created_at), "{created_at}");
    let prefix = created["prefix"].as_str().context("prefix")?;
    assert!(
        token.starts_with(prefix) && prefix.len() < token.len() / 2,
        "{prefix}"
    );
    let id = created["id"].as_i64().context("id")?;

    // The token works, and a second one is different.
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let other = admin
        .create("/admin/tokens", json!({ "name": "other" }))
        .await?;
    assert_ne!(other["token"], created["token"]);
    assert_ne!(other["id"], created["id"]);
    assert_eq!(other["allowed_models"], Value::Null);
    assert_eq!(other["expires_at"], Value::Null);

    // Never shown again: not in the list, not in the single view, and
    // neither is its hash.
    let hash = switchyard::tokens::hash(&token);
    let (status, single) = gw
        .admin(Method::GET, &format!("/admin/tokens/{id}"), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(fields(&single), PUBLIC_FIELDS);
    assert_eq!(single["name"], "ci bot");
    let listed = admin.tokens().await?;
    assert_eq!(listed.len(), 2);
    for row in &listed {
        assert_eq!(fields(row), PUBLIC_FIELDS);
    }
    for text in [single.to_string(), Value::Array(listed).to_string()] {
        assert!(!text.contains(&token), "{text}");
        assert!(!text.contains(&hash), "{text}");
        assert!(!text.contains(&token[prefix.len()..]), "{text}");
    }
    gw.stop().await
}

async fn get_disable_enable_and_delete(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let created = admin
        .create("/admin/tokens", json!({ "name": "cycle" }))
        .await?;
    let keep = admin
        .create("/admin/tokens", json!({ "name": "keep" }))
        .await?;
    let id = created["id"].as_i64().context("id")?;
    let path = format!("/admin/tokens/{id}");

    let (status, got) = gw.admin(Method::GET, &path, None).await?;
    assert_eq!(status, 200);
    assert_eq!((&got["id"], &got["enabled"]), (&json!(id), &json!(true)));

    for (action, enabled) in [("disable", false), ("disable", false), ("enable", true)] {
        let (status, answer) = gw
            .admin(Method::POST, &format!("{path}/{action}"), None)
            .await?;
        assert_eq!(status, 200, "{action}: {answer}");
        assert_eq!(answer["enabled"], enabled, "{action}");
        let (_, got) = gw.admin(Method::GET, &path, None).await?;
        assert_eq!(got["enabled"], enabled, "{action}");
    }

    let (status, answer) = gw.admin(Method::DELETE, &path, None).await?;
    assert_eq!((status, answer), (StatusCode::NO_CONTENT, Value::Null));
    let (status, answer) = gw.admin(Method::GET, &path, None).await?;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer.pointer("/error/code"), Some(&json!("not_found")));
    let (status, _) = gw.admin(Method::DELETE, &path, None).await?;
    assert_eq!(status, 404);

    // Only the deleted one is gone.
    let listed = admin.tokens().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], keep["id"]);
    assert_eq!(listed[0]["enabled"], true);
    gw.stop().await
}

async fn unknown_ids_are_404(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let existing = admin
        .create("/admin/tokens", json!({ "name": "exists" }))
        .await?;
    for id in ["999999", "0", "-1", "abc", "1.5", "99999999999999999999999"] {
        for (method, path) in [
            (Method::GET, format!("/admin/tokens/{id}")),
            (Method::DELETE, format!("/admin/tokens/{id}")),
            (Method::POST, format!("/admin/tokens/{id}/disable")),
            (Method::POST, format!("/admin/tokens/{id}/enable")),
        ] {
            let (status, answer) = gw.admin(method.clone(), &path, None).await?;
            assert_eq!(status, 404, "{method} {path}: {answer}");
            assert_eq!(
                answer.pointer("/error/code"),
                Some(&json!("not_found")),
                "{method} {path}"
            );
        }
    }
    // Nothing happened to the real one.
    let listed = admin.tokens().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (&listed[0]["id"], &listed[0]["enabled"]),
        (&existing["id"], &json!(true))
    );
    gw.stop().await
}

async fn every_admin_route_refuses_anything_but_the_master_key(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let created = admin
        .create("/admin/tokens", json!({ "name": "target" }))
        .await?;
    let gateway_token = created["token"].as_str().context("token")?.to_owned();
    let id = created["id"].as_i64().context("id")?;
    let new_token = r#"{"name":"intruder"}"#;
    // Every route of src/http/admin/mod.rs.
    let routes: Vec<(Method, String, Option<&str>)> = vec![
        (Method::POST, "/admin/tokens".to_owned(), Some(new_token)),
        (Method::GET, "/admin/tokens".to_owned(), None),
        (Method::GET, format!("/admin/tokens/{id}"), None),
        (Method::DELETE, format!("/admin/tokens/{id}"), None),
        (Method::POST, format!("/admin/tokens/{id}/disable"), None),
        (Method::POST, format!("/admin/tokens/{id}/enable"), None),
        (Method::GET, "/admin/request-logs".to_owned(), None),
    ];
    let gateway_bearer = format!("Bearer {gateway_token}");
    let wrong_master = format!("Bearer {MASTER_KEY}x");
    let prefix_of_master = format!("Bearer {}", &MASTER_KEY[..MASTER_KEY.len() - 1]);
    let credentials: Vec<Option<(&str, &str)>> = vec![
        None,
        Some(("authorization", "Bearer ")),
        Some(("authorization", &gateway_bearer)),
        Some(("x-api-key", &gateway_token)),
        Some(("authorization", &wrong_master)),
        Some(("authorization", &prefix_of_master)),
        Some(("x-api-key", "test-master-KEY")),
    ];
    for (method, path, body) in &routes {
        for credential in &credentials {
            let (status, answer) = admin_as(&gw, method.clone(), path, *credential, *body).await?;
            assert_eq!(status, 401, "{method} {path} {credential:?}: {answer}");
            assert_eq!(
                answer.pointer("/error/code"),
                Some(&json!("invalid_api_key")),
                "{method} {path} {credential:?}"
            );
        }
    }
    // Nothing changed behind the refusals.
    let listed = admin.tokens().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (&listed[0]["id"], &listed[0]["enabled"]),
        (&json!(id), &json!(true))
    );
    // The master key works in either header.
    for header in ["authorization", "x-api-key"] {
        let value = if header == "authorization" {
            format!("Bearer {MASTER_KEY}")
        } else {
            MASTER_KEY.to_owned()
        };
        let (status, answer) = admin_as(
            &gw,
            Method::GET,
            "/admin/tokens",
            Some((header, &value)),
            None,
        )
        .await?;
        assert_eq!(status, 200, "{header}: {answer}");
    }
    // And the gateway token itself still works where it belongs.
    let reply = gw.chat(&gateway_token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.stop().await
}

async fn invalid_create_bodies_are_400(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let long_name = format!(r#"{{"name":"{}"}}"#, "n".repeat(201));
    let bodies: Vec<&str> = vec![
        "",
        "{",
        "[]",
        "null",
        r#""name""#,
        "{}",
        r#"{"name":null}"#,
        r#"{"name":5}"#,
        r#"{"name":""}"#,
        r#"{"name":"   "}"#,
        &long_name,
        r#"{"name":"x","extra":1}"#,
        r#"{"name":"x","Name":"y"}"#,
        r#"{"name":"x","allowed_models":"mock-gpt"}"#,
        r#"{"name":"x","allowed_models":[""]}"#,
        r#"{"name":"x","allowed_models":[" "]}"#,
        r#"{"name":"x","allowed_models":[1]}"#,
        r#"{"name":"x","expires_at":"tomorrow"}"#,
        r#"{"name":"x","user_id":"me"}"#,
        // No such user (a foreign key): the caller's mistake, not a 500.
        r#"{"name":"x","user_id":12345}"#,
    ];
    let credential = format!("Bearer {MASTER_KEY}");
    for body in &bodies {
        let (status, answer) = admin_as(
            &gw,
            Method::POST,
            "/admin/tokens",
            Some(("authorization", &credential)),
            Some(body),
        )
        .await?;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            answer.pointer("/error/code"),
            Some(&json!("invalid_request")),
            "{body}"
        );
        assert!(
            answer
                .pointer("/error/message")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty()),
            "{body}: {answer}"
        );
    }
    assert_eq!(admin.tokens().await?.len(), 0, "nothing was created");
    // The longest allowed name is fine, and so is a user that exists.
    admin
        .create("/admin/tokens", json!({ "name": "n".repeat(200) }))
        .await?;
    let user = gw.gateway()?.db.create_user("alice").await?;
    let owned = admin
        .create(
            "/admin/tokens",
            json!({ "name": "alice's", "user_id": user.id }),
        )
        .await?;
    assert_eq!(owned["user_id"], json!(user.id));
    gw.stop().await
}

async fn request_logs_page_and_refuse_bad_paging(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "logged" })).await?;
    for content in ["a", "bb", "ccc"] {
        let reply = gw.chat(&token, chat_body("mock-gpt", content)).await?;
        assert_eq!(reply.status, 200);
    }
    gw.gateway()?.flush_usage().await?;
    let (status, page) = gw
        .admin(Method::GET, "/admin/request-logs?limit=2", None)
        .await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 3);
    // Newest first.
    let prompts: Vec<i64> = page["data"]
        .as_array()
        .context("no data")?
        .iter()
        .filter_map(|row| row["prompt_tokens"].as_i64())
        .collect();
    assert_eq!(prompts, vec![3, 2]);
    let (status, page) = gw
        .admin(Method::GET, "/admin/request-logs?limit=2&offset=2", None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    for query in ["limit=0", "limit=1001", "offset=-1", "limit=abc"] {
        let (status, answer) = gw
            .admin(Method::GET, &format!("/admin/request-logs?{query}"), None)
            .await?;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(
            answer.pointer("/error/code"),
            Some(&json!("invalid_request")),
            "{query}"
        );
    }
    gw.stop().await
}
