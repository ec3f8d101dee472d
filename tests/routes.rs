//! Tests driven by the route table (`switchyard::http::routes::ROUTES`): the
//! OpenAPI document lists exactly the routes the server serves, and every
//! admin route refuses a request without an admin credential, with a
//! gateway token, with an expired session and with a revoked one; and every
//! admin route answers each role (viewer, operator, admin) as the table
//! declares: 403 below the route's least role, the handler from it on.

pub mod common;

use anyhow::Context;
use awc::http::{Method, StatusCode};
use common::TestGateway;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use switchyard::auth::{AdminSigningKey, Role};
use switchyard::config::Backend;
use switchyard::http::openapi::{methods, openapi_path};
use switchyard::http::routes::{Access, ROUTES};

on_both_backends!(
    every_admin_route_refuses_anything_but_an_admin_credential,
    every_admin_route_answers_each_role_as_the_table_declares,
    a_refused_write_changes_nothing_and_a_role_change_is_seen_at_once,
);

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

/// A concrete path that names nothing: parameters filled with `999999`, so
/// the calls below that get through change nothing (404, or 400 without a
/// body).
fn nowhere(path: &str) -> String {
    concrete(path)
        .split('/')
        .map(|part| if part == "1" { "999999" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

/// Registers a new key with `role` (through the master key) and logs it in;
/// returns the key's id and the session token.
async fn session_with_role(gw: &TestGateway, role: Role) -> anyhow::Result<(i64, String)> {
    let key = AdminSigningKey::generate();
    let added = gw
        .admin_client()
        .create(
            "/admin/admin-keys",
            json!({
                "name": format!("{role} key"),
                "public_key": key.public_key().to_text(),
                "role": role.as_str(),
            }),
        )
        .await?;
    anyhow::ensure!(added["role"] == role.as_str(), "{added}");
    let id = added["id"].as_i64().context("no id")?;
    let granted = gw.login(&key).await?;
    let token = granted["token"].as_str().context("no token")?.to_owned();
    Ok((id, token))
}

/// Every admin route of the table × {viewer, operator, admin}: below the
/// route's least role 403 `role_required` naming that role, at or above it
/// never 401 nor 403 (the handler answers: 200, 404 for the made-up ids,
/// 400 for the missing bodies). The table's policy is checked too: every
/// GET is viewer's, admin keys and settings reloads are admin's, the other
/// writes operator's.
async fn every_admin_route_answers_each_role_as_the_table_declares(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let mut sessions = Vec::new();
    for role in Role::ALL {
        sessions.push((role, session_with_role(&gw, role).await?.1));
    }
    let keys_before = gw.gateway()?.db.list_admin_keys().await?.len();
    let tokens_before = gw.gateway()?.db.list_tokens().await?.len();
    let mut checked = 0;
    // Logging out ends the session the calls use: that route goes last.
    let mut routes: Vec<_> = ROUTES
        .iter()
        .filter(|route| route.access == Access::Admin)
        .collect();
    routes.sort_by_key(|route| route.path == "/auth/logout");
    for route in routes {
        let needed = route.role.context("an admin route without a role")?;
        let policy = if route.method == "GET" {
            Role::Viewer
        } else if route.path.starts_with("/admin/admin-keys") || route.path == "/admin/reload" {
            Role::Admin
        } else if route.path.starts_with("/admin/sessions") || route.path == "/auth/logout" {
            // Own sessions (log out); another key's are checked in the handler.
            Role::Viewer
        } else {
            Role::Operator
        };
        assert_eq!(needed, policy, "{} {}", route.method, route.path);
        let path = nowhere(route.path);
        let method = method_of(route.method);
        for (role, token) in &sessions {
            let (status, answer) = gw.call(Some(token), method.clone(), &path, None).await?;
            let label = format!("{} {path} as {role}: {status} {answer}", route.method);
            if role.allows(needed) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{label}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{label}");
                assert_eq!(answer["error"]["code"], "role_required", "{label}");
                assert_eq!(answer["error"]["type"], "permission_error", "{label}");
                assert!(
                    error_message(&answer).contains(&format!("`{needed}`")),
                    "{label}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 3 * 40, "only {checked} calls");
    // The master key acts as admin.
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/admin-keys/999999", None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The OpenAPI document says each admin route's least role.
    let (_, document) = gw.call(None, Method::GET, "/openapi.json", None).await?;
    let create_key = &document["paths"]["/admin/admin-keys"]["post"];
    assert_eq!(create_key["security"], json!([{ "admin": ["admin"] }]));
    let list_tokens = &document["paths"]["/admin/tokens"]["get"];
    assert_eq!(list_tokens["security"], json!([{ "admin": ["viewer"] }]));
    assert_eq!(gw.gateway()?.db.list_admin_keys().await?.len(), keys_before);
    assert_eq!(gw.gateway()?.db.list_tokens().await?.len(), tokens_before);
    gw.stop().await
}

/// A viewer's write and an operator's admin-key registration are refused
/// and change nothing; an admin's role change is seen at the key's next call
/// (its cached session is read again), and a key cannot raise its own role.
async fn a_refused_write_changes_nothing_and_a_role_change_is_seen_at_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        // A long cache: only the invalidation can make the change seen.
        settings.admin.session_cache_ttl = std::time::Duration::from_secs(3600);
    })
    .await?;
    let (_, viewer) = session_with_role(&gw, Role::Viewer).await?;
    let (operator_id, operator) = session_with_role(&gw, Role::Operator).await?;
    let db = &gw.gateway()?.db;
    let tokens = db.list_tokens().await?.len();
    let keys = db.list_admin_keys().await?.len();

    let (status, answer) = gw
        .call(
            Some(&viewer),
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "by viewer" })),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(error_message(&answer).contains("`operator`"), "{answer}");
    assert_eq!(db.list_tokens().await?.len(), tokens);
    // The viewer still reads.
    let (status, _) = gw
        .call(Some(&viewer), Method::GET, "/admin/tokens", None)
        .await?;
    assert_eq!(status, StatusCode::OK);

    let other = AdminSigningKey::generate();
    let new_key = json!({ "name": "sneaky", "public_key": other.public_key().to_text() });
    let (status, answer) = gw
        .call(
            Some(&operator),
            Method::POST,
            "/admin/admin-keys",
            Some(new_key.clone()),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(error_message(&answer).contains("`admin`"), "{answer}");
    assert_eq!(db.list_admin_keys().await?.len(), keys);
    // Nor can it make itself admin.
    let (status, _) = gw
        .call(
            Some(&operator),
            Method::PATCH,
            &format!("/admin/admin-keys/{operator_id}"),
            Some(json!({ "role": "admin" })),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The operator writes tokens (its session is now cached).
    let (status, answer) = gw
        .call(
            Some(&operator),
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "by operator" })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // Demoted to viewer: the next write is refused, though the session
    // was cached for an hour.
    let demoted = gw
        .admin_client()
        .patch(
            &format!("/admin/admin-keys/{operator_id}"),
            json!({ "role": "viewer" }),
        )
        .await?;
    assert_eq!(demoted["role"], "viewer");
    let (status, _) = gw
        .call(
            Some(&operator),
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "after demotion" })),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let listed = gw.admin_client().get("/admin/admin-keys").await?;
    let row = listed["data"]
        .as_array()
        .context("data")?
        .iter()
        .find(|row| row["id"] == operator_id)
        .context("the key is listed")?
        .clone();
    assert_eq!(row["role"], "viewer");
    // Promoted back: allowed again at once.
    gw.admin_client()
        .patch(
            &format!("/admin/admin-keys/{operator_id}"),
            json!({ "role": "operator" }),
        )
        .await?;
    let (status, _) = gw
        .call(
            Some(&operator),
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "after promotion" })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    // Bad roles are a 400 on `role`; the default role is admin.
    for body in [json!({ "role": "root" }), json!({ "role": 3 }), json!({})] {
        let (status, answer) = gw
            .admin(
                Method::PATCH,
                &format!("/admin/admin-keys/{operator_id}"),
                Some(body.clone()),
            )
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, answer) = gw
        .admin(
            Method::POST,
            "/admin/admin-keys",
            Some(json!({ "name": "x", "public_key": other.public_key().to_text(), "role": "superuser" })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["param"], "role", "{answer}");
    let added = gw
        .admin_client()
        .create("/admin/admin-keys", new_key)
        .await?;
    assert_eq!(added["role"], "admin");
    // A viewer cannot revoke another key's session, but may end its own.
    let other_session = gw.login(&other).await?;
    let (status, _) = gw
        .call(
            Some(&viewer),
            Method::DELETE,
            &format!("/admin/sessions/{}", other_session["session_id"]),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, sessions) = gw
        .call(Some(&viewer), Method::GET, "/admin/sessions", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let own = sessions["data"]
        .as_array()
        .context("data")?
        .iter()
        .find(|row| row["current"] == true)
        .and_then(|row| row["id"].as_i64())
        .context("the viewer's own session")?;
    let (status, _) = gw
        .call(
            Some(&viewer),
            Method::DELETE,
            &format!("/admin/sessions/{own}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    gw.stop().await
}
