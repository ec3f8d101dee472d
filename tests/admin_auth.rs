//! The admin login (Ed25519 challenge-response), sessions and admin keys,
//! against the real gateway on both backends: every refusal, the master key
//! turned off, and logins and revocations across two instances sharing one
//! database.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::{Method, StatusCode};
use common::TestGateway;
use common::admin::id_of;
use serde_json::{Value, json};
use switchyard::auth::{AdminSigningKey, login_message};
use switchyard::config::Backend;

on_both_backends!(
    first_start_generates_a_key_file_and_registers_its_fingerprint,
    login_issues_a_session_that_reaches_admin_routes,
    every_refused_login_says_why,
    expired_and_revoked_sessions_get_401,
    the_master_key_can_be_turned_off,
    admin_keys_can_be_added_listed_disabled_and_removed,
    a_login_started_on_one_instance_finishes_on_another,
    a_replay_racing_on_two_instances_gets_one_session,
);

fn message(answer: &Value) -> anyhow::Result<(String, String)> {
    Ok((
        answer["nonce"].as_str().context("no nonce")?.to_owned(),
        answer["message"].as_str().context("no message")?.to_owned(),
    ))
}

fn error_message(answer: &Value) -> String {
    answer
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Registers `key` through the master key; returns its id.
async fn register(gw: &TestGateway, name: &str, key: &AdminSigningKey) -> anyhow::Result<i64> {
    let added = gw
        .admin_client()
        .create(
            "/admin/admin-keys",
            json!({ "name": name, "public_key": key.public_key().to_text() }),
        )
        .await?;
    id_of(&added)
}

async fn first_start_generates_a_key_file_and_registers_its_fingerprint(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let path = gw.data_dir().join("admin_ed25519.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)?.permissions().mode();
        ensure!(mode & 0o777 == 0o600, "key file mode {mode:o}");
    }
    let pem = std::fs::read_to_string(&path)?;
    ensure!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let key = gw.bootstrap_key()?;
    let (status, listed) = gw.admin(Method::GET, "/admin/admin-keys", None).await?;
    ensure!(status == StatusCode::OK, "{status} {listed}");
    let rows = listed["data"].as_array().context("no data")?;
    ensure!(rows.len() == 1, "{listed}");
    ensure!(rows[0]["name"] == "bootstrap" && rows[0]["enabled"] == true);
    ensure!(rows[0]["fingerprint"] == key.public_key().fingerprint().as_str());
    ensure!(rows[0]["public_key"] == key.public_key().to_text().as_str());
    ensure!(!listed.to_string().contains("PRIVATE"), "{listed}");

    // A restart (a second gateway on the same database) keeps that key and
    // writes no new file.
    let second = TestGateway::start(backend, {
        let database = gw.database();
        move |settings, _| settings.database = database
    })
    .await?;
    ensure!(!second.data_dir().join("admin_ed25519.key").exists());
    let (_, listed) = second.admin(Method::GET, "/admin/admin-keys", None).await?;
    ensure!(
        listed["data"].as_array().map(Vec::len) == Some(1),
        "{listed}"
    );
    second.stop().await?;
    gw.stop().await
}

async fn login_issues_a_session_that_reaches_admin_routes(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let key = gw.bootstrap_key()?;
    let (status, challenge) = gw.challenge(&key).await?;
    ensure!(status == StatusCode::OK, "{status} {challenge}");
    let (nonce, text) = message(&challenge)?;
    let server_id = challenge["server_id"].as_str().context("no server id")?;
    let expires_at_ms = challenge["expires_at_ms"].as_i64().context("no expiry")?;
    // The message is exactly the documented one, built from the parts.
    ensure!(
        text == login_message(
            server_id,
            &key.public_key().to_text(),
            &nonce,
            expires_at_ms
        )
    );
    ensure!(text.starts_with("switchyard-admin-login-v1\n"));
    let remaining = expires_at_ms - switchyard::clock::system_now_ms();
    ensure!(
        (50_000..=60_000).contains(&remaining),
        "challenge TTL is not ~60 s: {remaining} ms"
    );
    ensure!(challenge["fingerprint"] == key.public_key().fingerprint().as_str());

    let (status, granted) = gw.verify(&key, &nonce, &text).await?;
    ensure!(status == StatusCode::OK, "{status} {granted}");
    let token = granted["token"].as_str().context("no token")?;
    ensure!(token.starts_with("sya-"), "{token}");
    let lifetime = granted["expires_at"].as_i64().context("no expiry")? * 1000
        - switchyard::clock::system_now_ms();
    ensure!(
        ((12 * 3600 - 60) * 1000..=12 * 3600 * 1000).contains(&lifetime),
        "session TTL is not 12 h: {lifetime} ms"
    );

    // The session reaches admin routes, as the key's fingerprint.
    let (status, created) = gw
        .call(
            Some(token),
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "by-session" })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status} {created}");
    let (status, sessions) = gw
        .call(Some(token), Method::GET, "/admin/sessions", None)
        .await?;
    ensure!(status == StatusCode::OK, "{status} {sessions}");
    let rows = sessions["data"].as_array().context("no data")?;
    ensure!(rows.len() == 1, "{sessions}");
    ensure!(rows[0]["id"] == granted["session_id"]);
    ensure!(rows[0]["state"] == "active" && rows[0]["current"] == true);
    ensure!(rows[0]["fingerprint"] == key.public_key().fingerprint().as_str());
    ensure!(
        !sessions.to_string().contains(token),
        "the session list shows the token"
    );
    // Only the token's hash is stored.
    ensure!(
        gw.sql(&format!(
            "UPDATE admin_sessions SET token_prefix = token_prefix WHERE token_hash = '{}'",
            switchyard::tokens::hash(token)
        ))
        .await?
            == 1
    );
    // A session token is not a gateway token, and a gateway token is not an
    // admin credential.
    let reply = gw.chat(token, common::chat_body("mock-gpt", "hi")).await?;
    ensure!(reply.status == StatusCode::UNAUTHORIZED);
    let gateway_token = created["token"].as_str().context("no token")?;
    let (status, _) = gw
        .call(Some(gateway_token), Method::GET, "/admin/tokens", None)
        .await?;
    ensure!(status == StatusCode::UNAUTHORIZED);
    gw.stop().await
}

async fn every_refused_login_says_why(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let key = gw.bootstrap_key()?;
    let other = AdminSigningKey::generate();
    let expect = |status: StatusCode, answer: &Value, want: StatusCode, says: &str| {
        ensure!(
            status == want && error_message(answer).contains(says),
            "wanted {want} saying {says:?}, got {status} {answer}"
        );
        Ok(())
    };

    // Replayed: the same answer twice.
    let (_, challenge) = gw.challenge(&key).await?;
    let (nonce, text) = message(&challenge)?;
    let (status, answer) = gw.verify(&key, &nonce, &text).await?;
    ensure!(status == StatusCode::OK, "{status} {answer}");
    let (status, answer) = gw.verify(&key, &nonce, &text).await?;
    expect(status, &answer, StatusCode::UNAUTHORIZED, "already used")?;

    // Expired: the challenge's expiry moved into the past.
    let (_, challenge) = gw.challenge(&key).await?;
    let (nonce, text) = message(&challenge)?;
    ensure!(
        gw.sql(&format!(
            "UPDATE admin_challenges SET expires_at = 1 WHERE nonce = '{nonce}'"
        ))
        .await?
            == 1
    );
    let (status, answer) = gw.verify(&key, &nonce, &text).await?;
    expect(status, &answer, StatusCode::UNAUTHORIZED, "expired")?;

    // Unknown key, at both steps.
    let (status, answer) = gw.challenge(&other).await?;
    expect(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "Unknown admin key",
    )?;
    let (_, challenge) = gw.challenge(&key).await?;
    let (nonce, text) = message(&challenge)?;
    let (status, answer) = gw.verify(&other, &nonce, &text).await?;
    expect(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "Unknown admin key",
    )?;

    // A signature by another key, over the right message.
    let (status, answer) = gw
        .call(
            None,
            Method::POST,
            "/auth/verify",
            Some(json!({
                "public_key": key.public_key().to_text(),
                "nonce": nonce,
                "signature": other.sign(&text).to_text(),
            })),
        )
        .await?;
    expect(status, &answer, StatusCode::UNAUTHORIZED, "does not verify")?;
    // The right key over another deployment's message (domain separation).
    let server_id = challenge["server_id"].as_str().context("no server id")?;
    let expires_at_ms = challenge["expires_at_ms"].as_i64().context("no expiry")?;
    let foreign = text.replace(server_id, "sy-another-deployment");
    ensure!(foreign != text);
    let (status, answer) = gw.verify(&key, &nonce, &foreign).await?;
    expect(status, &answer, StatusCode::UNAUTHORIZED, "does not verify")?;
    // ... or over a later expiry than the one issued.
    let later = login_message(
        server_id,
        &key.public_key().to_text(),
        &nonce,
        expires_at_ms + 3_600_000,
    );
    let (status, answer) = gw.verify(&key, &nonce, &later).await?;
    expect(status, &answer, StatusCode::UNAUTHORIZED, "does not verify")?;
    // The failed attempts did not use the challenge up.
    let (status, answer) = gw.verify(&key, &nonce, &text).await?;
    ensure!(status == StatusCode::OK, "{status} {answer}");

    // A nonce issued to another (registered) key.
    register(&gw, "second", &other).await?;
    let (_, for_other) = gw.challenge(&other).await?;
    let (other_nonce, other_text) = message(&for_other)?;
    let (status, answer) = gw.verify(&key, &other_nonce, &other_text).await?;
    expect(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "No such challenge",
    )?;
    // A nonce that was never issued.
    let (status, answer) = gw
        .verify(&key, &switchyard::auth::generate_nonce(), &text)
        .await?;
    expect(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "No such challenge",
    )?;

    // Malformed requests: 400 naming the field, before any lookup.
    let public = key.public_key().to_text();
    let cases = [
        (
            "/auth/challenge",
            json!({ "public_key": "not base64!" }),
            "public_key",
        ),
        (
            "/auth/challenge",
            json!({ "public_key": "AAAA" }),
            "public_key",
        ),
        ("/auth/challenge", json!({}), "public_key"),
        (
            "/auth/challenge",
            json!({ "public_key": public, "extra": 1 }),
            "extra",
        ),
        (
            "/auth/verify",
            json!({ "public_key": public, "nonce": nonce, "signature": "AAAA" }),
            "signature",
        ),
        (
            "/auth/verify",
            json!({ "public_key": public, "nonce": "short", "signature": key.sign(&text).to_text() }),
            "nonce",
        ),
        (
            "/auth/verify",
            json!({ "public_key": public, "nonce": nonce }),
            "signature",
        ),
    ];
    for (path, body, names) in cases {
        let (status, answer) = gw
            .call(None, Method::POST, path, Some(body.clone()))
            .await?;
        ensure!(
            status == StatusCode::BAD_REQUEST && error_message(&answer).contains(names),
            "{path} {body}: {status} {answer}"
        );
    }
    let reply = gw
        .post_raw("/auth/verify", None, b"{not json".to_vec())
        .await?;
    ensure!(reply.status == StatusCode::BAD_REQUEST, "{}", reply.text());
    ensure!(reply.error_code().as_deref() == Some("invalid_request"));
    let reply = gw
        .post_raw("/auth/challenge", None, vec![b'x'; 8192])
        .await?;
    ensure!(
        reply.status == StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );

    // A disabled key can neither start nor finish a login.
    let (_, challenge) = gw.challenge(&other).await?;
    let (pending_nonce, pending_text) = message(&challenge)?;
    let other_id = register_id(&gw, &other).await?;
    let (status, _) = gw
        .admin(
            Method::POST,
            &format!("/admin/admin-keys/{other_id}/disable"),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK);
    let (status, answer) = gw.challenge(&other).await?;
    expect(status, &answer, StatusCode::UNAUTHORIZED, "disabled")?;
    let (status, answer) = gw.verify(&other, &pending_nonce, &pending_text).await?;
    expect(status, &answer, StatusCode::UNAUTHORIZED, "disabled")?;

    // Flooding the open route: a key's open challenges are bounded.
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..=switchyard::auth::session::MAX_OPEN_CHALLENGES {
        last = gw.challenge(&key).await?;
        if last.0 != StatusCode::OK {
            break;
        }
    }
    expect(
        last.0,
        &last.1,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many open challenges",
    )?;
    gw.stop().await
}

/// The id of a registered key.
async fn register_id(gw: &TestGateway, key: &AdminSigningKey) -> anyhow::Result<i64> {
    let (_, listed) = gw.admin(Method::GET, "/admin/admin-keys", None).await?;
    listed["data"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|row| row["public_key"] == key.public_key().to_text().as_str())
        })
        .and_then(|row| row["id"].as_i64())
        .context("key not registered")
}

async fn status_with(gw: &TestGateway, token: &str) -> anyhow::Result<(StatusCode, String)> {
    let (status, answer) = gw
        .call(Some(token), Method::GET, "/admin/tokens", None)
        .await?;
    Ok((status, error_message(&answer)))
}

async fn expired_and_revoked_sessions_get_401(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let key = gw.bootstrap_key()?;

    // Expired (its expiry moved into the past before its first use).
    let granted = gw.login(&key).await?;
    let token = granted["token"].as_str().context("no token")?;
    // A second ago: kept in the list (purged only a week after expiry).
    gw.sql(&format!(
        "UPDATE admin_sessions SET expires_at = {} WHERE id = {}",
        switchyard::clock::system_now_ms() - 1000,
        granted["session_id"]
    ))
    .await?;
    let (status, says) = status_with(&gw, token).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED && says.contains("expired"),
        "{status} {says}"
    );

    // Revoked through the API: refused on this instance at once, although
    // it was just used (and so cached).
    let granted = gw.login(&key).await?;
    let token = granted["token"].as_str().context("no token")?;
    ensure!(status_with(&gw, token).await?.0 == StatusCode::OK);
    let (status, _) = gw
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", granted["session_id"]),
            None,
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status}");
    let (status, says) = status_with(&gw, token).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED && says.contains("revoked"),
        "{status} {says}"
    );
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/sessions/999999", None)
        .await?;
    ensure!(status == StatusCode::NOT_FOUND);

    // Logging out: a session revokes itself.
    let granted = gw.login(&key).await?;
    let token = granted["token"].as_str().context("no token")?;
    let (status, _) = gw
        .call(
            Some(token),
            Method::DELETE,
            &format!("/admin/sessions/{}", granted["session_id"]),
            None,
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    ensure!(status_with(&gw, token).await?.0 == StatusCode::UNAUTHORIZED);

    // A key disabled, then removed: its sessions stop at once.
    let second = AdminSigningKey::generate();
    let second_id = register(&gw, "second", &second).await?;
    let granted = gw.login(&second).await?;
    let token = granted["token"].as_str().context("no token")?;
    ensure!(status_with(&gw, token).await?.0 == StatusCode::OK);
    gw.admin(
        Method::POST,
        &format!("/admin/admin-keys/{second_id}/disable"),
        None,
    )
    .await?;
    let (status, says) = status_with(&gw, token).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED && says.contains("disabled"),
        "{status} {says}"
    );
    gw.admin(
        Method::POST,
        &format!("/admin/admin-keys/{second_id}/enable"),
        None,
    )
    .await?;
    ensure!(status_with(&gw, token).await?.0 == StatusCode::OK);
    gw.admin(
        Method::DELETE,
        &format!("/admin/admin-keys/{second_id}"),
        None,
    )
    .await?;
    ensure!(status_with(&gw, token).await?.0 == StatusCode::UNAUTHORIZED);

    // Garbage with the session prefix, and no credential at all.
    ensure!(status_with(&gw, "sya-forged").await?.0 == StatusCode::UNAUTHORIZED);
    let (status, _) = gw.call(None, Method::GET, "/admin/tokens", None).await?;
    ensure!(status == StatusCode::UNAUTHORIZED);

    // The list tells the states apart.
    let (_, listed) = gw.admin(Method::GET, "/admin/sessions", None).await?;
    let states: Vec<&str> = listed["data"]
        .as_array()
        .context("no data")?
        .iter()
        .filter_map(|row| row["state"].as_str())
        .collect();
    ensure!(
        states.contains(&"expired") && states.contains(&"revoked"),
        "{listed}"
    );
    gw.stop().await
}

async fn the_master_key_can_be_turned_off(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        settings.admin.master_key_enabled = false;
    })
    .await?;
    let (status, answer) = gw.admin(Method::GET, "/admin/tokens", None).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {answer}");
    ensure!(
        error_message(&answer).contains("master-key access is turned off"),
        "{answer}"
    );
    // Admin keys still work, for every admin route.
    let granted = gw.login(&gw.bootstrap_key()?).await?;
    let token = granted["token"].as_str().context("no token")?;
    let (status, _) = gw
        .call(
            Some(token),
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "no-master" })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED);
    let second = AdminSigningKey::generate();
    let (status, _) = gw
        .call(
            Some(token),
            Method::POST,
            "/admin/admin-keys",
            Some(json!({ "name": "second", "public_key": second.public_key().to_text() })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED);
    gw.login(&second).await?;
    gw.stop().await
}

async fn admin_keys_can_be_added_listed_disabled_and_removed(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let bootstrap_id = register_id(&gw, &gw.bootstrap_key()?).await?;
    let key = AdminSigningKey::generate();
    let (status, added) = gw
        .admin(
            Method::POST,
            "/admin/admin-keys",
            Some(json!({ "name": "ops laptop", "public_key": key.public_key().to_text() })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status} {added}");
    ensure!(added["fingerprint"] == key.public_key().fingerprint().as_str());
    ensure!(added["enabled"] == true && added["name"] == "ops laptop");
    let id = added["id"].as_i64().context("no id")?;

    // The same key twice: 409 (issue 11: a conflict, not a malformed body).
    let (status, answer) = gw
        .admin(
            Method::POST,
            "/admin/admin-keys",
            Some(json!({ "name": "again", "public_key": key.public_key().to_text() })),
        )
        .await?;
    ensure!(
        status == StatusCode::CONFLICT
            && answer.pointer("/error/code") == Some(&json!("conflict"))
            && error_message(&answer).contains("already registered"),
        "{status} {answer}"
    );
    // A malformed key, a bad name: 400.
    for (body, names) in [
        (json!({ "name": "bad", "public_key": "AAAA" }), "public_key"),
        (
            json!({ "name": " ", "public_key": AdminSigningKey::generate().public_key().to_text() }),
            "name",
        ),
    ] {
        let (status, answer) = gw
            .admin(Method::POST, "/admin/admin-keys", Some(body.clone()))
            .await?;
        ensure!(
            status == StatusCode::BAD_REQUEST && error_message(&answer).contains(names),
            "{body}: {status} {answer}"
        );
    }
    // A PEM public key (`openssl pkey -pubout`) is accepted too.
    let pem = "-----BEGIN PUBLIC KEY-----\n\
               MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
               -----END PUBLIC KEY-----\n";
    let (status, from_pem) = gw
        .admin(
            Method::POST,
            "/admin/admin-keys",
            Some(json!({ "name": "openssl", "public_key": pem })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status} {from_pem}");
    ensure!(from_pem["public_key"] == "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE");

    let (_, listed) = gw.admin(Method::GET, "/admin/admin-keys", None).await?;
    ensure!(
        listed["data"].as_array().map(Vec::len) == Some(3),
        "{listed}"
    );

    let (status, disabled) = gw
        .admin(
            Method::POST,
            &format!("/admin/admin-keys/{id}/disable"),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK && disabled["enabled"] == false);
    let (status, enabled) = gw
        .admin(
            Method::POST,
            &format!("/admin/admin-keys/{id}/enable"),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK && enabled["enabled"] == true);
    let (status, _) = gw
        .admin(Method::DELETE, &format!("/admin/admin-keys/{id}"), None)
        .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    for (method, path) in [
        (Method::DELETE, format!("/admin/admin-keys/{id}")),
        (Method::POST, format!("/admin/admin-keys/{id}/enable")),
    ] {
        let (status, _) = gw.admin(method, &path, None).await?;
        ensure!(status == StatusCode::NOT_FOUND, "{path}: {status}");
    }
    let (status, _) = gw.challenge(&key).await?;
    ensure!(status == StatusCode::UNAUTHORIZED);

    // The last enabled key stays: disabling or removing it is refused.
    let openssl_id = from_pem["id"].as_i64().context("no id")?;
    gw.admin(
        Method::DELETE,
        &format!("/admin/admin-keys/{openssl_id}"),
        None,
    )
    .await?;
    for (method, path) in [
        (
            Method::POST,
            format!("/admin/admin-keys/{bootstrap_id}/disable"),
        ),
        (Method::DELETE, format!("/admin/admin-keys/{bootstrap_id}")),
    ] {
        let (status, answer) = gw.admin(method, &path, None).await?;
        ensure!(
            status == StatusCode::BAD_REQUEST
                && error_message(&answer).contains("last enabled admin key"),
            "{path}: {status} {answer}"
        );
    }
    gw.stop().await
}

async fn a_login_started_on_one_instance_finishes_on_another(
    backend: Backend,
) -> anyhow::Result<()> {
    let a = TestGateway::start(backend, |_, _| {}).await?;
    let b = TestGateway::start(backend, {
        let database = a.database();
        move |settings, _| {
            settings.database = database;
            // B trusts nothing it cached: a revocation elsewhere applies at once.
            settings.admin.session_cache_ttl = std::time::Duration::ZERO;
        }
    })
    .await?;
    let key = a.bootstrap_key()?;
    let (_, challenge) = a.challenge(&key).await?;
    let (_, on_b) = b.challenge(&key).await?;
    ensure!(
        challenge["server_id"] == on_b["server_id"],
        "instances disagree on the server id"
    );
    let (nonce, text) = message(&challenge)?;
    let (status, granted) = b.verify(&key, &nonce, &text).await?;
    ensure!(status == StatusCode::OK, "{status} {granted}");
    let token = granted["token"].as_str().context("no token")?;
    ensure!(status_with(&a, token).await?.0 == StatusCode::OK);
    ensure!(status_with(&b, token).await?.0 == StatusCode::OK);
    // Revoked on A: B (no cache) refuses at once, and so does A.
    let (status, _) = a
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", granted["session_id"]),
            None,
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    ensure!(status_with(&b, token).await?.0 == StatusCode::UNAUTHORIZED);
    ensure!(status_with(&a, token).await?.0 == StatusCode::UNAUTHORIZED);
    b.stop().await?;
    a.stop().await
}

async fn a_replay_racing_on_two_instances_gets_one_session(backend: Backend) -> anyhow::Result<()> {
    let a = TestGateway::start(backend, |_, _| {}).await?;
    let b = TestGateway::start(backend, {
        let database = a.database();
        move |settings, _| settings.database = database
    })
    .await?;
    let key = a.bootstrap_key()?;
    for _ in 0..5 {
        let (_, challenge) = a.challenge(&key).await?;
        let (nonce, text) = message(&challenge)?;
        let (first, second) = futures_util::future::join(
            a.verify(&key, &nonce, &text),
            b.verify(&key, &nonce, &text),
        )
        .await;
        let mut statuses = [first?.0, second?.0];
        statuses.sort();
        ensure!(
            statuses == [StatusCode::OK, StatusCode::UNAUTHORIZED],
            "{statuses:?}"
        );
    }
    let (_, listed) = a.admin(Method::GET, "/admin/sessions", None).await?;
    ensure!(
        listed["data"].as_array().map(Vec::len) == Some(5),
        "{listed}"
    );
    b.stop().await?;
    a.stop().await
}
