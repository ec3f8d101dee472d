//! What clients get wrong: malformed bodies, unknown models and routes,
//! oversized bodies, missing, invalid, disabled, deleted and expired tokens,
//! models a token may not use. Every refusal is an OpenAI-shaped error with
//! the right status, carries `x-request-id`, never reaches the upstream, is
//! logged as a row, and loses nothing already stored.

pub mod common;

use anyhow::Context;
use awc::http::{Method, StatusCode};
use bytes::Bytes;
use common::{Reply, TestGateway, chat_body};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard::config::Backend;

on_both_backends!(
    malformed_bodies_are_400_in_openai_shape,
    an_unknown_model_is_404,
    oversized_bodies_are_413_with_or_without_content_length,
    missing_and_invalid_tokens_are_401_and_logged_without_a_token,
    the_other_token_headers_work_too,
    disabled_and_deleted_tokens_are_refused,
    expired_tokens_are_refused_and_past_expiry_is_rejected,
    a_model_outside_allowed_models_is_403,
    unknown_routes_are_404_json,
    request_ids_are_set_on_every_answer_and_sane_ones_echoed,
    bad_requests_lose_nothing_already_stored,
);

/// Asserts an OpenAI-shaped error: `{"error":{"message","type","param","code"}}`
/// with exactly those fields, this status and code, and an `x-request-id`.
fn expect_error(reply: &Reply, status: u16, code: &str) -> anyhow::Result<Value> {
    anyhow::ensure!(
        reply.status == status,
        "expected {status}, got {}: {}",
        reply.status,
        reply.text()
    );
    anyhow::ensure!(
        reply
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "content-type {:?}",
        reply.header("content-type")
    );
    anyhow::ensure!(
        reply.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "no x-request-id"
    );
    let body = reply.json()?;
    let error = body
        .get("error")
        .and_then(Value::as_object)
        .context("no error object")?;
    let mut fields: Vec<&str> = error.keys().map(String::as_str).collect();
    fields.sort_unstable();
    anyhow::ensure!(
        fields == ["code", "message", "param", "type"],
        "fields {fields:?}"
    );
    anyhow::ensure!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    anyhow::ensure!(error["type"].is_string(), "{body}");
    anyhow::ensure!(error["code"] == code, "expected code {code}: {body}");
    Ok(body["error"].clone())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn chat_raw(gw: &TestGateway, token: &str, raw: &str) -> anyhow::Result<Reply> {
    gw.post_raw("/v1/chat/completions", Some(token), raw.as_bytes().to_vec())
        .await
}

async fn malformed_bodies_are_400_in_openai_shape(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "sloppy" })).await?;
    let id = gw.gateway()?.db.list_tokens().await?[0].id;
    let hi = r#"[{"role":"user","content":"hi"}]"#;
    // (body, the `param` the error names)
    let cases: Vec<(String, Value)> = vec![
        (String::new(), Value::Null),
        ("{not json".to_owned(), Value::Null),
        ("[1,2]".to_owned(), Value::Null),
        ("\"just a string\"".to_owned(), Value::Null),
        (format!(r#"{{"messages":{hi}}}"#), json!("model")),
        (
            format!(r#"{{"model":null,"messages":{hi}}}"#),
            json!("model"),
        ),
        (format!(r#"{{"model":42,"messages":{hi}}}"#), json!("model")),
        (
            format!(r#"{{"model":"  ","messages":{hi}}}"#),
            json!("model"),
        ),
        (r#"{"model":"mock-gpt"}"#.to_owned(), json!("messages")),
        (
            r#"{"model":"mock-gpt","messages":[]}"#.to_owned(),
            json!("messages"),
        ),
        (
            r#"{"model":"mock-gpt","messages":"hi"}"#.to_owned(),
            json!("messages"),
        ),
        (
            r#"{"model":"mock-gpt","messages":["hi"]}"#.to_owned(),
            json!("messages"),
        ),
        (
            format!(r#"{{"model":"mock-gpt","messages":{hi},"stream":"yes"}}"#),
            json!("stream"),
        ),
    ];
    for (body, param) in &cases {
        let reply = chat_raw(&gw, &token, body).await?;
        let error = expect_error(&reply, 400, "invalid_request").with_context(|| body.clone())?;
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(&error["param"], param, "{body}");
    }
    assert_eq!(gw.mock.total_calls(), 0);
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), cases.len());
    for row in &logs {
        assert_eq!(
            (
                row.status,
                row.error_class.as_deref(),
                row.token_id,
                row.attempts
            ),
            (400, Some("invalid_request"), Some(id), 0),
            "{row:?}"
        );
    }
    gw.stop().await
}

async fn an_unknown_model_is_404(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "lost" })).await?;
    for model in ["gpt-17", "mock/", "MOCK-GPT"] {
        let reply = gw.chat(&token, chat_body(model, "hi")).await?;
        let error = expect_error(&reply, 404, "model_not_found")?;
        assert_eq!(error["param"], "model");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(model)),
            "{error}"
        );
    }
    assert_eq!(gw.mock.total_calls(), 0);
    let logs = gw.request_logs().await?;
    let rows: Vec<(i32, Option<&str>, Option<&str>)> = logs
        .iter()
        .map(|row| {
            (
                row.status,
                row.error_class.as_deref(),
                row.requested_model.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (404, Some("model_not_found"), Some("gpt-17")),
            (404, Some("model_not_found"), Some("mock/")),
            (404, Some("model_not_found"), Some("MOCK-GPT")),
        ]
    );
    gw.stop().await
}

/// A valid chat body of exactly `size` bytes.
fn body_of_size(size: usize) -> anyhow::Result<Vec<u8>> {
    let empty = serde_json::to_vec(&chat_body("mock-gpt", ""))?;
    let padding = size.checked_sub(empty.len()).context("size too small")?;
    let body = serde_json::to_vec(&chat_body("mock-gpt", &"x".repeat(padding)))?;
    anyhow::ensure!(body.len() == size);
    Ok(body)
}

async fn oversized_bodies_are_413_with_or_without_content_length(
    backend: Backend,
) -> anyhow::Result<()> {
    const LIMIT: usize = 4096;
    let gw = TestGateway::start(backend, |settings, _| {
        settings.server.max_body_bytes = LIMIT;
    })
    .await?;
    let token = gw.create_token(json!({ "name": "verbose" })).await?;

    // At the limit: fine.
    let reply = gw
        .post_raw("/v1/chat/completions", Some(&token), body_of_size(LIMIT)?)
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // One byte over, with Content-Length: refused before reading.
    let reply = gw
        .post_raw(
            "/v1/chat/completions",
            Some(&token),
            body_of_size(LIMIT + 1)?,
        )
        .await?;
    let error = expect_error(&reply, 413, "request_too_large")?;
    assert_eq!(error["type"], "invalid_request_error");

    // Chunked, without Content-Length: refused while reading.
    let big = body_of_size(3 * LIMIT)?;
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(1000)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let mut response = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.url))
        .insert_header(("authorization", bearer(&token)))
        .insert_header(("content-type", "application/json"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
    let body = response.body().await?;
    let reply = Reply {
        status: response.status(),
        headers: response.headers().clone(),
        body: body.to_vec(),
    };
    expect_error(&reply, 413, "request_too_large")?;

    assert_eq!(gw.mock.total_calls(), 1);
    let logs = gw.request_logs().await?;
    let rows: Vec<(i32, Option<&str>)> = logs
        .iter()
        .map(|row| (row.status, row.error_class.as_deref()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (200, None),
            (413, Some("request_too_large")),
            (413, Some("request_too_large")),
        ]
    );
    gw.stop().await
}

async fn missing_and_invalid_tokens_are_401_and_logged_without_a_token(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "real" })).await?;
    let body = serde_json::to_vec(&chat_body("mock-gpt", "hi"))?;
    // The last character changed: to `x`, or to `y` when it already is `x`
    // (a token ending in `x` once made this the real token, 1 run in 62).
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    let wrong_but_similar = format!("{}{last}", &token[..token.len() - 1]);
    assert_ne!(wrong_but_similar, token);
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("authorization", "Bearer ".to_owned())],
        vec![("authorization", "Basic dXNlcjpwYXNz".to_owned())],
        vec![("authorization", bearer("sy-not-a-real-token"))],
        vec![("authorization", bearer(&wrong_but_similar))],
        vec![("authorization", bearer(common::MASTER_KEY))],
        vec![("x-api-key", "sy-nope".to_owned())],
    ];
    for headers in &cases {
        let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        all.extend(headers.iter().map(|(name, value)| (*name, value.as_str())));
        let reply = gw
            .send(
                Method::POST,
                "/v1/chat/completions",
                &all,
                Some(body.clone()),
            )
            .await?;
        let error =
            expect_error(&reply, 401, "invalid_api_key").with_context(|| format!("{headers:?}"))?;
        assert_eq!(error["type"], "authentication_error");
        // The answer never echoes what was presented.
        assert!(!reply.text().contains("sy-not-a-real-token"));
        assert!(!reply.text().contains(common::MASTER_KEY));
        // An admin credential used as a gateway token is named as such, so
        // a new user knows to create a token rather than doubt the key.
        let message = error["message"].as_str().unwrap_or_default();
        let presented_master = headers
            .iter()
            .any(|(_, value)| value.contains(common::MASTER_KEY));
        assert_eq!(
            message.contains("admin master key, not a gateway token"),
            presented_master,
            "{headers:?}: {message}"
        );
    }
    assert_eq!(gw.mock.total_calls(), 0);
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), cases.len());
    for row in &logs {
        assert_eq!(
            (
                row.status,
                row.error_class.as_deref(),
                row.token_id,
                row.requested_model.as_deref()
            ),
            (401, Some("invalid_api_key"), None, None),
            "{row:?}"
        );
    }
    gw.stop().await
}

async fn the_other_token_headers_work_too(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw
        .create_token(json!({ "name": "anthropic-style" }))
        .await?;
    let body = serde_json::to_vec(&chat_body("mock-gpt", "hi"))?;
    for header in ["x-api-key", "x-gw-token"] {
        let reply = gw
            .send(
                Method::POST,
                "/v1/chat/completions",
                &[("content-type", "application/json"), (header, &token)],
                Some(body.clone()),
            )
            .await?;
        assert_eq!(reply.status, 200, "{header}: {}", reply.text());
        // The client's token never travels upstream, whatever header it came in.
        let seen = gw.mock.last_request().context("mock saw nothing")?;
        assert!(
            seen.headers
                .iter()
                .all(|(_, value)| !value.contains(&token))
        );
    }
    gw.stop().await
}

async fn set_enabled(gw: &TestGateway, id: i64, enabled: bool) -> anyhow::Result<()> {
    let action = if enabled { "enable" } else { "disable" };
    let answer = gw
        .admin_client()
        .expect(
            Method::POST,
            &format!("/admin/tokens/{id}/{action}"),
            None,
            StatusCode::OK,
        )
        .await?;
    anyhow::ensure!(answer["enabled"] == enabled, "{answer}");
    Ok(())
}

async fn disabled_and_deleted_tokens_are_refused(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "switch" })),
        )
        .await?;
    assert_eq!(status, 201);
    let token = created["token"].as_str().context("token")?.to_owned();
    let id = created["id"].as_i64().context("id")?;
    let other = gw.create_token(json!({ "name": "bystander" })).await?;
    let hi = || chat_body("mock-gpt", "hi");

    // Used once, so the token is in the gateway's cache.
    assert_eq!(gw.chat(&token, hi()).await?.status, 200);
    set_enabled(&gw, id, false).await?;
    let reply = gw.chat(&token, hi()).await?;
    let error = expect_error(&reply, 401, "invalid_api_key")?;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("disabled")),
        "{error}"
    );
    // Other tokens are unaffected.
    assert_eq!(gw.chat(&other, hi()).await?.status, 200);
    set_enabled(&gw, id, true).await?;
    assert_eq!(gw.chat(&token, hi()).await?.status, 200);

    let (status, _) = gw
        .admin(Method::DELETE, &format!("/admin/tokens/{id}"), None)
        .await?;
    assert_eq!(status, 204);
    let reply = gw.chat(&token, hi()).await?;
    expect_error(&reply, 401, "invalid_api_key")?;
    assert_eq!(gw.chat(&other, hi()).await?.status, 200);

    assert_eq!(gw.mock.total_calls(), 4);
    let logs = gw.request_logs().await?;
    let rows: Vec<(i32, bool)> = logs
        .iter()
        .map(|row| (row.status, row.token_id.is_some()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (200, true),
            (401, false),
            (200, true),
            (200, true),
            (401, false),
            (200, true),
        ]
    );
    gw.stop().await
}

fn unix_now() -> anyhow::Result<Duration> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?)
}

async fn expired_tokens_are_refused_and_past_expiry_is_rejected(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    // No clock injection: a token that expires two seconds from now, used
    // before and after that instant.
    let expires_at = unix_now()?.as_secs() + 2;
    let token = gw
        .create_token(json!({ "name": "brief", "expires_at": expires_at }))
        .await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expiry = Duration::from_secs(expires_at);
    let now = unix_now()?;
    if expiry > now {
        // Waiting for wall-clock time to pass, not for the gateway.
        actix_rt::time::sleep(expiry - now + Duration::from_millis(20)).await;
    }
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    let error = expect_error(&reply, 401, "invalid_api_key")?;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{error}"
    );
    assert_eq!(gw.mock.total_calls(), 1);

    // Creating one that is already expired is refused.
    let past = unix_now()?.as_secs() - 1;
    for expires_at in [json!(past), json!(0), json!(-5)] {
        let (status, answer) = gw
            .admin(
                Method::POST,
                "/admin/tokens",
                Some(json!({ "name": "stale", "expires_at": expires_at })),
            )
            .await?;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(
            answer.pointer("/error/code"),
            Some(&json!("invalid_request"))
        );
        assert_eq!(answer.pointer("/error/param"), Some(&json!("expires_at")));
    }
    let (_, listed) = gw.admin(Method::GET, "/admin/tokens", None).await?;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    gw.stop().await
}

async fn a_model_outside_allowed_models_is_403(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        settings
            .redirects
            .insert("other-alias".into(), "mock-gpt".into());
    })
    .await?;
    let token = gw
        .create_token(json!({ "name": "fenced", "allowed_models": ["other-*"] }))
        .await?;
    for model in ["mock-gpt", "mock/mock-gpt", "unknown-model"] {
        let reply = gw.chat(&token, chat_body(model, "hi")).await?;
        let error = expect_error(&reply, 403, "model_not_allowed")?;
        assert_eq!(error["type"], "permission_error");
        assert_eq!(error["param"], "model");
    }
    // The allow-list applies to the name asked for (here a redirect).
    let reply = gw.chat(&token, chat_body("other-alias", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gw.mock.total_calls(), 1);
    let logs = gw.request_logs().await?;
    let rows: Vec<(i32, Option<&str>, bool)> = logs
        .iter()
        .map(|row| {
            (
                row.status,
                row.error_class.as_deref(),
                row.token_id.is_some(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (403, Some("model_not_allowed"), true),
            (403, Some("model_not_allowed"), true),
            (403, Some("model_not_allowed"), true),
            (200, None, true),
        ]
    );
    gw.stop().await
}

async fn unknown_routes_are_404_json(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "explorer" })).await?;
    let auth = bearer(&token);
    for (method, path) in [
        (Method::GET, "/nothing"),
        (Method::GET, "/v1/nothing"),
        (Method::POST, "/v1/chat/complete"),
        (Method::POST, "/v2/chat/completions"),
        (Method::GET, "/admin/nothing"),
        (Method::DELETE, "/admin/tokens/1/nothing"),
    ] {
        let reply = gw
            .send(method.clone(), path, &[("authorization", &auth)], None)
            .await?;
        let error =
            expect_error(&reply, 404, "not_found").with_context(|| format!("{method} {path}"))?;
        assert_eq!(error["type"], "invalid_request_error");
    }
    // A served path asked with a method it does not take is 405 with the
    // methods it does take in `Allow` (RFC 9110), not a misleading 404.
    for (method, path, allow) in [
        (Method::GET, "/v1/chat/completions", "POST"),
        (Method::POST, "/v1/models", "GET"),
        (Method::PUT, "/admin/tokens/7", "GET, PATCH, DELETE"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (
            Method::GET,
            "/admin/model-prices/openai/gpt-4o",
            "PUT, DELETE",
        ),
    ] {
        let reply = gw
            .send(method.clone(), path, &[("authorization", &auth)], None)
            .await?;
        let error = expect_error(&reply, 405, "method_not_allowed")
            .with_context(|| format!("{method} {path}"))?;
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(allow), "{method} {path}: {message}");
    }
    assert_eq!(gw.mock.total_calls(), 0);
    gw.stop().await
}

async fn request_ids_are_set_on_every_answer_and_sane_ones_echoed(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "traced" })).await?;
    let auth = bearer(&token);
    let good = serde_json::to_vec(&chat_body("mock-gpt", "hi"))?;
    let json_type = ("content-type", "application/json");

    // Fresh ids are unique.
    let mut seen = Vec::new();
    for (path, headers, body) in [
        (
            "/v1/chat/completions",
            vec![json_type, ("authorization", auth.as_str())],
            Some(good.clone()),
        ),
        (
            "/v1/chat/completions",
            vec![json_type, ("authorization", auth.as_str())],
            Some(b"{".to_vec()),
        ),
        ("/v1/chat/completions", vec![json_type], Some(good.clone())),
        ("/nowhere", vec![], None),
        ("/healthz", vec![], None),
    ] {
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let reply = gw.send(method, path, &headers, body).await?;
        let id = reply
            .header("x-request-id")
            .with_context(|| format!("{path}: no x-request-id ({})", reply.status))?
            .to_owned();
        assert!(id.starts_with("req_"), "{id}");
        assert!(!seen.contains(&id), "{id} twice");
        seen.push(id);
    }

    // A sane client id is echoed, and is the row's id; a dubious one is not.
    let sane = "trace-01_abc.DEF:42";
    let reply = gw
        .send(
            Method::POST,
            "/v1/chat/completions",
            &[json_type, ("authorization", &auth), ("x-request-id", sane)],
            Some(good.clone()),
        )
        .await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some(sane));
    let reply = gw
        .send(
            Method::POST,
            "/v1/chat/completions",
            &[json_type, ("x-request-id", sane)],
            Some(good.clone()),
        )
        .await?;
    expect_error(&reply, 401, "invalid_api_key")?;
    assert_eq!(reply.header("x-request-id"), Some(sane));
    let too_long = "a".repeat(129);
    for dubious in ["has space", "semi;colon", "quote\"d", too_long.as_str()] {
        let reply = gw
            .send(
                Method::POST,
                "/v1/chat/completions",
                &[
                    json_type,
                    ("authorization", &auth),
                    ("x-request-id", dubious),
                ],
                Some(good.clone()),
            )
            .await?;
        assert_eq!(reply.status, 200);
        let id = reply.header("x-request-id").context("no x-request-id")?;
        assert!(id.starts_with("req_") && id != dubious, "{id}");
    }

    let logs = gw.request_logs().await?;
    let ids: Vec<&str> = logs.iter().map(|row| row.request_id.as_str()).collect();
    // Three metered requests above (health and the unknown route are not
    // usage), then the two sane ones, then the four dubious ones.
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert_eq!(&ids[..3], &seen[..3]);
    assert_eq!(&ids[3..5], &[sane, sane]);
    gw.stop().await
}

/// A burst of every kind of bad request between good ones: the good rows,
/// the tokens and their spend are all still there, and each request left
/// exactly one row.
async fn bad_requests_lose_nothing_already_stored(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        settings.server.max_body_bytes = 4096;
    })
    .await?;
    let first = gw.create_token(json!({ "name": "first" })).await?;
    let second = gw
        .create_token(json!({ "name": "second", "allowed_models": ["x-*"] }))
        .await?;
    let reply = gw.chat(&first, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200);
    let before = gw.request_logs().await?;
    assert_eq!(before.len(), 1);

    let mut statuses = Vec::new();
    for raw in ["", "{", "[]", "null", r#"{"model":1}"#] {
        statuses.push(chat_raw(&gw, &first, raw).await?.status.as_u16());
    }
    statuses.push(
        gw.chat(&first, chat_body("absent", "hi"))
            .await?
            .status
            .as_u16(),
    );
    statuses.push(
        gw.chat(&second, chat_body("mock-gpt", "hi"))
            .await?
            .status
            .as_u16(),
    );
    statuses.push(
        gw.chat("sy-bogus", chat_body("mock-gpt", "hi"))
            .await?
            .status
            .as_u16(),
    );
    statuses.push(
        gw.post_raw("/v1/chat/completions", Some(&first), vec![b' '; 5000])
            .await?
            .status
            .as_u16(),
    );
    let (status, _) = gw
        .admin(Method::POST, "/admin/tokens", Some(json!({ "name": "" })))
        .await?;
    statuses.push(status.as_u16());
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/tokens/999999", None)
        .await?;
    statuses.push(status.as_u16());
    assert_eq!(
        statuses,
        vec![400, 400, 400, 400, 400, 404, 403, 401, 413, 400, 404]
    );

    let reply = gw
        .chat(&first, chat_body("mock-gpt", "hello again"))
        .await?;
    assert_eq!(reply.status, 200);

    let logs = gw.request_logs().await?;
    // 1 good + 9 refused chat requests + 1 good (admin calls are not usage).
    assert_eq!(logs.len(), 11);
    assert_eq!(
        format!("{:?}", logs[0]),
        format!("{:?}", before[0]),
        "the first row is unchanged"
    );
    assert_eq!((logs[10].status, logs[10].prompt_tokens), (200, 11));
    let (_, listed) = gw.admin(Method::GET, "/admin/tokens", None).await?;
    let tokens = listed["data"].as_array().context("no data")?;
    let names: Vec<&str> = tokens.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"first") && names.contains(&"second"));
    let spent_first = tokens
        .iter()
        .find(|t| t["name"] == "first")
        .map(|t| t["spent_tokens"].clone());
    // 10 + 16 tokens from the two good requests; refusals cost nothing.
    assert_eq!(spent_first, Some(json!(26)));
    // Both tokens still work.
    assert_eq!(
        gw.chat(&first, chat_body("mock-gpt", "hi")).await?.status,
        200
    );
    assert_eq!(gw.mock.total_calls(), 3);
    gw.stop().await
}
