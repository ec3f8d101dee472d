//! The operation log: every admin change leaves one row naming who, what,
//! when, and the masked resource before and after; no secret reaches it.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::{Method, StatusCode};
use common::TestGateway;
use serde_json::{Value, json};
use switchyard::config::Backend;

on_both_backends!(
    every_admin_change_is_logged_with_secrets_masked,
    billing_and_provider_changes_are_logged,
);

async fn every_admin_change_is_logged_with_secrets_masked(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let provider_secret = "ok-oplog-provider-secret-123456";
    let mut secrets = vec![provider_secret.to_owned()];

    // Tokens.
    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "audited" })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status} {created}");
    let token_id = created["id"].as_i64().context("no id")?;
    secrets.push(created["token"].as_str().context("no token")?.to_owned());
    for path in [
        format!("/admin/tokens/{token_id}/disable"),
        format!("/admin/tokens/{token_id}/enable"),
    ] {
        ensure!(gw.admin(Method::POST, &path, None).await?.0 == StatusCode::OK);
    }
    ensure!(
        gw.admin(Method::DELETE, &format!("/admin/tokens/{token_id}"), None)
            .await?
            .0
            == StatusCode::NO_CONTENT
    );

    // Provider keys.
    let (status, key) = gw
        .admin(
            Method::POST,
            "/admin/providers/mock/keys",
            Some(json!({ "key": provider_secret, "id": "audited-key" })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status} {key}");
    for path in [
        "/admin/providers/mock/keys/audited-key/disable",
        "/admin/providers/mock/keys/audited-key/enable",
    ] {
        ensure!(gw.admin(Method::POST, path, None).await?.0 == StatusCode::OK);
    }
    ensure!(
        gw.admin(
            Method::DELETE,
            "/admin/providers/mock/keys/audited-key",
            None
        )
        .await?
        .0 == StatusCode::NO_CONTENT
    );

    // Redirects: created, replaced, deleted.
    for to in ["mock-gpt", "mock/mock-gpt"] {
        let (status, _) = gw
            .admin(
                Method::PUT,
                "/admin/redirects/gpt-audit",
                Some(json!({ "to": to })),
            )
            .await?;
        ensure!(status == StatusCode::OK);
    }
    ensure!(
        gw.admin(Method::DELETE, "/admin/redirects/gpt-audit", None)
            .await?
            .0
            == StatusCode::NO_CONTENT
    );

    // Admin keys, and a login, and a change made in that session.
    let second = switchyard::auth::AdminSigningKey::generate();
    let (_, added) = gw
        .admin(
            Method::POST,
            "/admin/admin-keys",
            Some(json!({ "name": "second", "public_key": second.public_key().to_text() })),
        )
        .await?;
    let second_id = added["id"].as_i64().context("no id")?;
    for path in [
        format!("/admin/admin-keys/{second_id}/disable"),
        format!("/admin/admin-keys/{second_id}/enable"),
    ] {
        ensure!(gw.admin(Method::POST, &path, None).await?.0 == StatusCode::OK);
    }
    let key = gw.bootstrap_key()?;
    let fingerprint = key.public_key().fingerprint();
    let granted = gw.login(&key).await?;
    let session_token = granted["token"].as_str().context("no token")?.to_owned();
    let session_id = granted["session_id"].as_i64().context("no session id")?;
    secrets.push(session_token.clone());
    let (status, _) = gw
        .call(
            Some(&session_token),
            Method::DELETE,
            &format!("/admin/admin-keys/{second_id}"),
            None,
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    let (status, _) = gw
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{session_id}"),
            None,
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT);

    let (status, listed) = gw
        .admin(Method::GET, "/admin/operation-logs?limit=1000", None)
        .await?;
    ensure!(status == StatusCode::OK, "{status} {listed}");
    let rows = listed["data"].as_array().context("no data")?;
    let mut actions: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row["action"].as_str().unwrap_or_default(),
                row["target"].as_str().unwrap_or_default(),
                row["actor"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    actions.reverse(); // oldest first
    let target_token = format!("token:{token_id}");
    let target_key = format!("admin_key:{second_id}");
    let target_session = format!("session:{session_id}");
    let expected: Vec<(&str, &str, &str)> = vec![
        ("token.create", &target_token, "master-key"),
        ("token.disable", &target_token, "master-key"),
        ("token.enable", &target_token, "master-key"),
        ("token.delete", &target_token, "master-key"),
        (
            "provider_key.create",
            "provider_key:mock/audited-key",
            "master-key",
        ),
        (
            "provider_key.disable",
            "provider_key:mock/audited-key",
            "master-key",
        ),
        (
            "provider_key.enable",
            "provider_key:mock/audited-key",
            "master-key",
        ),
        (
            "provider_key.delete",
            "provider_key:mock/audited-key",
            "master-key",
        ),
        ("redirect.put", "redirect:gpt-audit", "master-key"),
        ("redirect.put", "redirect:gpt-audit", "master-key"),
        ("redirect.delete", "redirect:gpt-audit", "master-key"),
        ("admin_key.create", &target_key, "master-key"),
        ("admin_key.disable", &target_key, "master-key"),
        ("admin_key.enable", &target_key, "master-key"),
        ("session.create", &target_session, &fingerprint),
        ("admin_key.delete", &target_key, &fingerprint),
        ("session.revoke", &target_session, "master-key"),
    ];
    ensure!(actions == expected, "{actions:#?}");
    ensure!(listed["total"] == expected.len());

    // Before and after: what changed is visible, secrets are not.
    let find = |action: &str| -> anyhow::Result<&Value> {
        rows.iter()
            .find(|row| row["action"] == action)
            .with_context(|| format!("no {action} row"))
    };
    let disable = find("token.disable")?;
    ensure!(disable["before"]["enabled"] == true && disable["after"]["enabled"] == false);
    ensure!(
        disable["before"]["prefix"]
            .as_str()
            .is_some_and(|p| p.starts_with("sy-"))
    );
    ensure!(find("token.create")?["before"].is_null());
    ensure!(find("token.delete")?["after"].is_null());
    let key_created = find("provider_key.create")?;
    ensure!(key_created["after"]["id"] == "audited-key", "{key_created}");
    ensure!(
        key_created["after"]["secret_hint"]
            .as_str()
            .is_some_and(|hint| hint.contains('…')),
        "{key_created}"
    );
    let key_disabled = find("provider_key.disable")?;
    ensure!(key_disabled["after"]["disabled_reason"] == "disabled by an admin");
    let replaced = rows
        .iter()
        .find(|row| row["action"] == "redirect.put" && !row["before"].is_null())
        .context("no redirect replacement")?;
    ensure!(replaced["before"]["to"] == "mock-gpt" && replaced["after"]["to"] == "mock/mock-gpt");
    let by_session = find("admin_key.delete")?;
    ensure!(by_session["session_id"] == session_id, "{by_session}");
    ensure!(
        by_session["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    ensure!(
        by_session["created_at"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000)
    );
    let revoked = find("session.revoke")?;
    ensure!(revoked["before"]["state"] == "active" && revoked["after"]["state"] == "revoked");
    let raw = listed.to_string();
    for secret in &secrets {
        ensure!(
            !raw.contains(secret.as_str()),
            "a secret reached the log: {secret}"
        );
    }
    ensure!(
        !raw.contains(&switchyard::tokens::hash(&secrets[1])),
        "a token hash reached the log"
    );

    // Filters and paging.
    let (_, by_actor) = gw
        .admin(
            Method::GET,
            &format!(
                "/admin/operation-logs?actor={}",
                percent_encoding::utf8_percent_encode(
                    &fingerprint,
                    percent_encoding::NON_ALPHANUMERIC
                )
            ),
            None,
        )
        .await?;
    ensure!(by_actor["total"] == 2, "{by_actor}");
    let (_, by_action) = gw
        .admin(
            Method::GET,
            "/admin/operation-logs?action=redirect.put&limit=1&offset=1",
            None,
        )
        .await?;
    ensure!(by_action["total"] == 2, "{by_action}");
    let page = by_action["data"].as_array().context("no data")?;
    ensure!(
        page.len() == 1 && page[0]["before"].is_null(),
        "{by_action}"
    );
    let (status, _) = gw
        .admin(Method::GET, "/admin/operation-logs?limit=0", None)
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST);
    // Reading needs admin rights like everything under /admin.
    let (status, _) = gw
        .call(None, Method::GET, "/admin/operation-logs", None)
        .await?;
    ensure!(status == StatusCode::UNAUTHORIZED);
    gw.stop().await
}

/// Users, prices, token limits and rotation, and providers are logged too,
/// with the provider's header secret masked.
async fn billing_and_provider_changes_are_logged(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let header_secret = "hdr-secret-value-98765";
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/admin/users".into(),
            Some(json!({ "name": "alice", "prepaid": true })),
        ),
        (
            Method::PATCH,
            "/admin/users/2".into(),
            Some(json!({ "status": "suspended" })),
        ),
        (
            Method::POST,
            "/admin/users/2/topup".into(),
            Some(json!({ "amount_usd": 5.0 })),
        ),
        (
            Method::PUT,
            "/admin/model-prices/mock-gpt".into(),
            Some(json!({ "input_per_mtok": 1.0, "output_per_mtok": 2.0 })),
        ),
        (Method::DELETE, "/admin/model-prices/mock-gpt".into(), None),
        (
            Method::POST,
            "/admin/tokens".into(),
            Some(json!({ "name": "t" })),
        ),
        (
            Method::PATCH,
            "/admin/tokens/1".into(),
            Some(json!({ "rpm": 10 })),
        ),
        (
            Method::POST,
            "/admin/tokens/1/rotate".into(),
            Some(json!({ "grace_seconds": 0 })),
        ),
        (
            Method::POST,
            "/admin/providers".into(),
            Some(json!({
                "name": "audited", "kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
                "models": ["audited-model"], "headers": { "x-secret": header_secret },
            })),
        ),
        (
            Method::PATCH,
            "/admin/providers/audited".into(),
            Some(json!({ "weight": 3 })),
        ),
        (Method::DELETE, "/admin/providers/audited".into(), None),
        (Method::DELETE, "/admin/users/2".into(), None),
    ];
    for (method, path, body) in calls {
        let (status, answer) = gw.admin(method.clone(), &path, body).await?;
        ensure!(status.is_success(), "{method} {path}: {status} {answer}");
    }
    let (status, logs) = gw
        .admin(Method::GET, "/admin/operation-logs?limit=100", None)
        .await?;
    ensure!(status == StatusCode::OK, "{status} {logs}");
    let text = logs.to_string();
    ensure!(
        !text.contains(header_secret),
        "a provider header secret was logged"
    );
    let mut actions: Vec<String> = logs["data"]
        .as_array()
        .context("data")?
        .iter()
        .filter_map(|row| row["action"].as_str().map(str::to_owned))
        .collect();
    actions.reverse();
    for expected in [
        "user.create",
        "user.update",
        "user.topup",
        "price.set",
        "price.delete",
        "token.create",
        "token.update",
        "token.rotate",
        "provider.create",
        "provider.update",
        "provider.delete",
        "user.delete",
    ] {
        ensure!(
            actions.iter().any(|action| action == expected),
            "{expected} missing from {actions:?}"
        );
    }
    gw.stop().await
}
