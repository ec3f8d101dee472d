//! Tests driven by the route table (`switchyard::http::routes::ROUTES`): the
//! OpenAPI document lists exactly the routes the server serves, and every
//! admin route refuses a request without an admin credential, with a
//! gateway token, with an expired session and with a revoked one.

pub mod common;

use anyhow::Context;
use awc::http::{Method, StatusCode};
use common::TestGateway;
use serde_json::Value;
use std::collections::BTreeSet;
use switchyard::config::Backend;
use switchyard::http::openapi::{methods, openapi_path};
use switchyard::http::routes::{Access, ROUTES};

on_both_backends!(every_admin_route_refuses_anything_but_an_admin_credential);

/// A concrete path for a route pattern: parameters filled with `1`.
fn concrete(path: &str) -> String {
    let template = openapi_path(path);
    let mut out = String::new();
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('1');
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

fn method_of(name: &str) -> Method {
    match name {
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => Method::GET,
    }
}

/// What the server answers for a route nobody declared.
const UNKNOWN_ROUTE: &str = "Unknown route";

/// The document lists every (method, path) of the table and nothing else,
/// and every route of the table is really served (not the unknown-route
/// fallback).
#[actix_rt::test]
async fn openapi_lists_exactly_the_routes_the_server_serves() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |_, _| {}).await?;
    let (status, document) = gw.call(None, Method::GET, "/openapi.json", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().context("no paths")? {
        for (method, operation) in item.as_object().context("path item")? {
            if ["get", "head", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                assert!(
                    operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                    "{method} {path} has no summary"
                );
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let mut declared = BTreeSet::new();
    for route in ROUTES {
        for method in methods(route) {
            let name = serde_json::to_value(&method)?
                .as_str()
                .context("method name")?
                .to_owned();
            declared.insert((name, openapi_path(route.path)));
        }
    }
    assert_eq!(documented, declared);
    assert!(declared.len() >= 60, "only {} operations", declared.len());

    for route in ROUTES {
        let path = concrete(route.path);
        let (status, answer) = gw.call(None, method_of(route.method), &path, None).await?;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.starts_with(UNKNOWN_ROUTE),
            "{} {path} is documented but not served ({status})",
            route.method
        );
    }
    // The fallback really says so, so the check above can fail.
    let (status, answer) = gw
        .call(None, Method::GET, "/admin/nothing-here", None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(UNKNOWN_ROUTE)),
        "{answer}"
    );
    gw.stop().await
}

fn error_message(answer: &Value) -> String {
    answer["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Every route the table marks admin: no credential, a gateway token, an
/// expired session and a revoked session all get 401, never the handler.
async fn every_admin_route_refuses_anything_but_an_admin_credential(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        // Sessions are looked up every time, so a revocation is seen at once.
        settings.admin.session_cache_ttl = std::time::Duration::ZERO;
    })
    .await?;
    let gateway_token = gw
        .create_token(serde_json::json!({ "name": "client" }))
        .await?;
    let key = gw.bootstrap_key()?;
    let expired = gw.login(&key).await?;
    gw.sql(&format!(
        "UPDATE admin_sessions SET expires_at = {} WHERE id = {}",
        switchyard::clock::system_now_ms() - 1000,
        expired["session_id"]
    ))
    .await?;
    let expired = expired["token"].as_str().context("token")?.to_owned();
    let revoked = gw.login(&key).await?;
    let (status, _) = gw
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", revoked["session_id"]),
            None,
        )
        .await?;
    assert!(status.is_success(), "revoke: {status}");
    let revoked = revoked["token"].as_str().context("token")?.to_owned();
    // A valid session works (the refusals below are about the credential).
    let valid = gw.login(&key).await?;
    let valid = valid["token"].as_str().context("token")?.to_owned();
    let (status, _) = gw
        .call(Some(&valid), Method::GET, "/admin/tokens", None)
        .await?;
    assert_eq!(status, StatusCode::OK);

    let before = gw.gateway()?.db.list_tokens().await?.len();
    let mut checked = 0;
    for route in ROUTES.iter().filter(|route| route.access == Access::Admin) {
        let path = concrete(route.path);
        let method = method_of(route.method);
        for (credential, label) in [
            (None, "no credential"),
            (Some(gateway_token.as_str()), "a gateway token"),
            (Some(expired.as_str()), "an expired session"),
            (Some(revoked.as_str()), "a revoked session"),
        ] {
            let (status, answer) = gw.call(credential, method.clone(), &path, None).await?;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {path} with {label}: {status} {answer}",
                route.method
            );
            assert!(!error_message(&answer).is_empty(), "{label}: {answer}");
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} admin routes");
    // Nothing was changed by the refused calls.
    assert_eq!(gw.gateway()?.db.list_tokens().await?.len(), before);
    gw.stop().await
}
