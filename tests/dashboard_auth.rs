//! The dashboard's side of admin authentication and its files, against the
//! real gateway on both backends: the session cookie's flags, CSRF refusals,
//! logout revoking the session, the master-key login, and the security
//! headers and content types of `/ui`.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::header::HeaderMap;
use awc::http::{Method, StatusCode};
use common::{MASTER_KEY, TestGateway};
use serde_json::{Value, json};
use switchyard::config::Backend;
use switchyard::ui::CONTENT_SECURITY_POLICY;

on_both_backends!(
    a_cookie_login_sets_a_strict_http_only_cookie_and_keeps_the_token_out_of_the_body,
    the_cookie_is_secure_when_the_request_came_over_tls,
    changes_made_with_the_cookie_need_the_csrf_token,
    the_session_route_gives_a_reloaded_page_its_csrf_token,
    logout_revokes_the_session_and_the_cookie_stops_working,
    the_master_key_login_opens_a_revocable_server_side_session,
    master_key_sessions_end_when_master_key_access_is_turned_off,
    a_header_credential_wins_over_the_cookie,
    the_master_key_row_never_counts_as_the_last_admin_key,
);

/// One answer: status, headers, JSON body (`Null` when empty).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Every `Set-Cookie` of the answer.
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .filter_map(|value| value.to_str().ok().map(str::to_owned))
            .collect()
    }

    fn code(&self) -> Option<&str> {
        self.body.pointer("/error/code").and_then(Value::as_str)
    }
}

/// Sends `method path` with `headers` and an optional JSON body.
async fn send(
    gw: &TestGateway,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> anyhow::Result<Answer> {
    let mut request = gw.client.request(method, format!("{}{path}", gw.url));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let bytes = response.body().limit(4 * 1024 * 1024).await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body,
    })
}

/// A dashboard session: the `Cookie` header to send and the CSRF token.
struct CookieSession {
    cookie: String,
    csrf: String,
    session_id: i64,
    answer: Answer,
}

impl CookieSession {
    fn from_answer(answer: Answer) -> anyhow::Result<Self> {
        ensure!(
            answer.status == StatusCode::OK,
            "login: {} {}",
            answer.status,
            answer.body
        );
        let set = answer
            .set_cookies()
            .into_iter()
            .find(|cookie| cookie.starts_with("switchyard_session="))
            .context("no session cookie")?;
        let cookie = set.split(';').next().context("empty cookie")?.to_owned();
        Ok(Self {
            cookie,
            csrf: answer.body["csrf_token"]
                .as_str()
                .context("no csrf_token")?
                .to_owned(),
            session_id: answer.body["session_id"]
                .as_i64()
                .context("no session_id")?,
            answer,
        })
    }
}

/// Logs in with the bootstrap key, asking for the cookie; `extra` headers
/// go with the verify request.
async fn cookie_login(gw: &TestGateway, extra: &[(&str, &str)]) -> anyhow::Result<CookieSession> {
    let key = gw.bootstrap_key()?;
    let (status, challenge) = gw.challenge(&key).await?;
    ensure!(status == StatusCode::OK, "challenge: {status} {challenge}");
    let message = challenge["message"].as_str().context("no message")?;
    let answer = send(
        gw,
        Method::POST,
        "/auth/verify",
        extra,
        Some(json!({
            "public_key": key.public_key().to_text(),
            "nonce": challenge["nonce"],
            "signature": key.sign(message).to_text(),
            "cookie": true,
        })),
    )
    .await?;
    CookieSession::from_answer(answer)
}

async fn master_login(gw: &TestGateway, master_key: &str) -> anyhow::Result<Answer> {
    send(
        gw,
        Method::POST,
        "/auth/master",
        &[],
        Some(json!({ "master_key": master_key })),
    )
    .await
}

/// The attributes of a `Set-Cookie`, lower-cased, without the value.
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|part| part.trim().to_ascii_lowercase())
        .collect()
}

async fn a_cookie_login_sets_a_strict_http_only_cookie_and_keeps_the_token_out_of_the_body(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let session = cookie_login(&gw, &[]).await?;
    let set = session
        .answer
        .set_cookies()
        .into_iter()
        .next()
        .context("no Set-Cookie")?;
    let attributes = attributes(&set);
    for expected in ["httponly", "samesite=strict", "path=/"] {
        ensure!(
            attributes.iter().any(|a| a == expected),
            "{expected} missing: {set}"
        );
    }
    ensure!(
        attributes.iter().any(|a| a.starts_with("max-age=")),
        "{set}"
    );
    ensure!(
        !attributes.iter().any(|a| a == "secure"),
        "plain HTTP: {set}"
    );
    ensure!(
        session.answer.body.get("token").is_none(),
        "{}",
        session.answer.body
    );
    let token = session
        .cookie
        .strip_prefix("switchyard_session=")
        .context("cookie name")?;
    ensure!(
        token.starts_with("sya-"),
        "the cookie holds the session token"
    );
    ensure!(!session.answer.body.to_string().contains(token));
    // The same session the CLI would get: listed, current.
    let sessions = gw.admin_client().get("/admin/sessions").await?;
    ensure!(
        sessions["data"]
            .as_array()
            .context("data")?
            .iter()
            .any(|s| s["id"] == session.session_id && s["state"] == "active"),
        "{sessions}"
    );
    // The CLI's login is unchanged: the token in the body, no cookie.
    let (status, granted) = {
        let key = gw.bootstrap_key()?;
        let (_, challenge) = gw.challenge(&key).await?;
        let message = challenge["message"].as_str().context("no message")?;
        let answer = send(
            &gw,
            Method::POST,
            "/auth/verify",
            &[],
            Some(json!({
                "public_key": key.public_key().to_text(),
                "nonce": challenge["nonce"],
                "signature": key.sign(message).to_text(),
            })),
        )
        .await?;
        ensure!(answer.set_cookies().is_empty(), "no cookie for the CLI");
        (answer.status, answer.body)
    };
    ensure!(status == StatusCode::OK && granted["token"].is_string());
    gw.stop().await
}

async fn the_cookie_is_secure_when_the_request_came_over_tls(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    // A TLS-terminating proxy in front of the gateway says so.
    let session = cookie_login(&gw, &[("x-forwarded-proto", "https")]).await?;
    let set = session
        .answer
        .set_cookies()
        .into_iter()
        .next()
        .context("no Set-Cookie")?;
    ensure!(attributes(&set).iter().any(|a| a == "secure"), "{set}");
    let answer = master_login(&gw, MASTER_KEY).await?;
    ensure!(answer.status == StatusCode::OK);
    let set = answer
        .set_cookies()
        .into_iter()
        .next()
        .context("no Set-Cookie")?;
    ensure!(!attributes(&set).iter().any(|a| a == "secure"), "{set}");
    gw.stop().await
}

async fn changes_made_with_the_cookie_need_the_csrf_token(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let session = cookie_login(&gw, &[]).await?;
    let cookie = [("cookie", session.cookie.as_str())];
    let read = send(&gw, Method::GET, "/admin/tokens", &cookie, None).await?;
    ensure!(
        read.status == StatusCode::OK,
        "{} {}",
        read.status,
        read.body
    );

    let body = || Some(json!({ "name": "from-the-dashboard" }));
    let without = send(&gw, Method::POST, "/admin/tokens", &cookie, body()).await?;
    ensure!(
        without.status == StatusCode::FORBIDDEN && without.code() == Some("csrf_token_invalid"),
        "{} {}",
        without.status,
        without.body
    );
    let wrong = send(
        &gw,
        Method::POST,
        "/admin/tokens",
        &[
            ("cookie", session.cookie.as_str()),
            ("x-csrf-token", "not-the-token"),
        ],
        body(),
    )
    .await?;
    ensure!(
        wrong.status == StatusCode::FORBIDDEN && wrong.code() == Some("csrf_token_invalid"),
        "{} {}",
        wrong.status,
        wrong.body
    );
    // Another session's token is wrong too.
    let other = cookie_login(&gw, &[]).await?;
    let crossed = send(
        &gw,
        Method::POST,
        "/admin/tokens",
        &[
            ("cookie", session.cookie.as_str()),
            ("x-csrf-token", other.csrf.as_str()),
        ],
        body(),
    )
    .await?;
    ensure!(crossed.status == StatusCode::FORBIDDEN, "{}", crossed.body);
    ensure!(
        gw.admin_client().tokens().await?.is_empty(),
        "a refused change changed nothing"
    );
    let right = send(
        &gw,
        Method::POST,
        "/admin/tokens",
        &[
            ("cookie", session.cookie.as_str()),
            ("x-csrf-token", session.csrf.as_str()),
        ],
        body(),
    )
    .await?;
    ensure!(
        right.status == StatusCode::CREATED,
        "{} {}",
        right.status,
        right.body
    );
    // The operation log names the key's fingerprint and the session.
    let log = gw
        .admin_client()
        .get("/admin/operation-logs?action=token.create")
        .await?;
    let entry = log["data"].get(0).context("no entry")?;
    ensure!(entry["session_id"] == session.session_id, "{entry}");
    ensure!(
        entry["actor"]
            .as_str()
            .is_some_and(|actor| actor.starts_with("SHA256:")),
        "{entry}"
    );
    gw.stop().await
}

async fn the_session_route_gives_a_reloaded_page_its_csrf_token(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let session = cookie_login(&gw, &[]).await?;
    let me = send(
        &gw,
        Method::GET,
        "/auth/session",
        &[("cookie", session.cookie.as_str())],
        None,
    )
    .await?;
    ensure!(me.status == StatusCode::OK, "{}", me.body);
    ensure!(
        me.body["csrf_token"] == session.csrf.as_str(),
        "{}",
        me.body
    );
    ensure!(me.body["session_id"] == session.session_id);
    ensure!(me.body["via"] == "cookie");
    ensure!(me.body["actor"] == session.answer.body["fingerprint"]);
    // With a header credential there is no cookie, so no CSRF token.
    let (status, me) = gw.admin(Method::GET, "/auth/session", None).await?;
    ensure!(status == StatusCode::OK, "{me}");
    ensure!(
        me["actor"] == "master-key" && me["csrf_token"].is_null(),
        "{me}"
    );
    // Without a credential: 401, as the page expects to show its login.
    let anonymous = send(&gw, Method::GET, "/auth/session", &[], None).await?;
    ensure!(anonymous.status == StatusCode::UNAUTHORIZED);
    gw.stop().await
}

async fn logout_revokes_the_session_and_the_cookie_stops_working(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let session = cookie_login(&gw, &[]).await?;
    let cookie = ("cookie", session.cookie.as_str());
    // Logout is a change: without the CSRF token it is refused.
    let refused = send(&gw, Method::POST, "/auth/logout", &[cookie], None).await?;
    ensure!(refused.status == StatusCode::FORBIDDEN, "{}", refused.body);
    let out = send(
        &gw,
        Method::POST,
        "/auth/logout",
        &[cookie, ("x-csrf-token", session.csrf.as_str())],
        None,
    )
    .await?;
    ensure!(
        out.status == StatusCode::NO_CONTENT,
        "{} {}",
        out.status,
        out.body
    );
    let cleared = out
        .set_cookies()
        .into_iter()
        .next()
        .context("no Set-Cookie")?;
    ensure!(cleared.starts_with("switchyard_session=;"), "{cleared}");
    ensure!(
        attributes(&cleared).iter().any(|a| a == "max-age=0"),
        "{cleared}"
    );
    // The old cookie is refused, on reads too: the session is revoked
    // server-side, not only forgotten by the browser.
    let after = send(&gw, Method::GET, "/admin/tokens", &[cookie], None).await?;
    ensure!(after.status == StatusCode::UNAUTHORIZED, "{}", after.body);
    let sessions = gw.admin_client().get("/admin/sessions").await?;
    ensure!(
        sessions["data"]
            .as_array()
            .context("data")?
            .iter()
            .any(|s| s["id"] == session.session_id && s["state"] == "revoked"),
        "{sessions}"
    );
    gw.stop().await
}

async fn the_master_key_login_opens_a_revocable_server_side_session(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let wrong = master_login(&gw, "not-the-master-key").await?;
    ensure!(wrong.status == StatusCode::UNAUTHORIZED, "{}", wrong.body);
    ensure!(wrong.set_cookies().is_empty());
    let bad = send(&gw, Method::POST, "/auth/master", &[], Some(json!({}))).await?;
    ensure!(bad.status == StatusCode::BAD_REQUEST, "{}", bad.body);

    let session = CookieSession::from_answer(master_login(&gw, MASTER_KEY).await?)?;
    ensure!(session.answer.body["actor"] == "master-key");
    ensure!(session.answer.body.get("token").is_none());
    let headers = [
        ("cookie", session.cookie.as_str()),
        ("x-csrf-token", session.csrf.as_str()),
    ];
    let created = send(
        &gw,
        Method::POST,
        "/admin/users",
        &headers,
        Some(json!({ "name": "made-in-the-dashboard" })),
    )
    .await?;
    ensure!(created.status == StatusCode::CREATED, "{}", created.body);
    let log = gw
        .admin_client()
        .get("/admin/operation-logs?action=user.create")
        .await?;
    let entry = log["data"].get(0).context("no entry")?;
    ensure!(
        entry["actor"] == "master-key" && entry["session_id"] == session.session_id,
        "{entry}"
    );
    // A second master login reuses the reserved key row.
    let again = CookieSession::from_answer(master_login(&gw, MASTER_KEY).await?)?;
    ensure!(again.answer.body["admin_key_id"] == session.answer.body["admin_key_id"]);
    // Revocable like any session, from another admin.
    let (status, _) = gw
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", session.session_id),
            None,
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    let after = send(&gw, Method::GET, "/admin/users", &headers, None).await?;
    ensure!(after.status == StatusCode::UNAUTHORIZED, "{}", after.body);
    // No challenge can be issued for the reserved row.
    let (status, answer) = gw
        .call(
            None,
            Method::POST,
            "/auth/challenge",
            Some(json!({ "public_key": "master-key" })),
        )
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {answer}");
    gw.stop().await
}

async fn master_key_sessions_end_when_master_key_access_is_turned_off(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut gw = TestGateway::start(backend, |_, _| {}).await?;
    let session = CookieSession::from_answer(master_login(&gw, MASTER_KEY).await?)?;
    let keyed = cookie_login(&gw, &[]).await?;
    gw.settings.admin.master_key_enabled = false;
    gw.restart().await?;
    let refused = send(
        &gw,
        Method::GET,
        "/admin/tokens",
        &[("cookie", session.cookie.as_str())],
        None,
    )
    .await?;
    ensure!(
        refused.status == StatusCode::UNAUTHORIZED,
        "{}",
        refused.body
    );
    let login = master_login(&gw, MASTER_KEY).await?;
    ensure!(login.status == StatusCode::UNAUTHORIZED, "{}", login.body);
    // A key's cookie session is not affected.
    let kept = send(
        &gw,
        Method::GET,
        "/admin/tokens",
        &[("cookie", keyed.cookie.as_str())],
        None,
    )
    .await?;
    ensure!(kept.status == StatusCode::OK, "{}", kept.body);
    gw.stop().await
}

async fn a_header_credential_wins_over_the_cookie(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let session = cookie_login(&gw, &[]).await?;
    let bearer = format!("Bearer {MASTER_KEY}");
    // A script's change with its bearer meets no CSRF check, even with a cookie.
    let created = send(
        &gw,
        Method::POST,
        "/admin/tokens",
        &[
            ("cookie", session.cookie.as_str()),
            ("authorization", bearer.as_str()),
        ],
        Some(json!({ "name": "scripted" })),
    )
    .await?;
    ensure!(created.status == StatusCode::CREATED, "{}", created.body);
    // And a wrong header credential is not rescued by a valid cookie.
    let refused = send(
        &gw,
        Method::GET,
        "/admin/tokens",
        &[
            ("cookie", session.cookie.as_str()),
            ("authorization", "Bearer sya-wrong"),
        ],
        None,
    )
    .await?;
    ensure!(
        refused.status == StatusCode::UNAUTHORIZED,
        "{}",
        refused.body
    );
    // A cookie carries session tokens only, never the master key.
    let master_cookie = format!("switchyard_session={MASTER_KEY}");
    let refused = send(
        &gw,
        Method::GET,
        "/admin/tokens",
        &[("cookie", master_cookie.as_str())],
        None,
    )
    .await?;
    ensure!(
        refused.status == StatusCode::UNAUTHORIZED,
        "{}",
        refused.body
    );
    gw.stop().await
}

// The dashboard's files (one backend: no database involved).

fn assert_secured(answer: &Answer, what: &str) -> anyhow::Result<()> {
    ensure!(
        answer.header("content-security-policy") == Some(CONTENT_SECURITY_POLICY),
        "{what}: CSP {:?}",
        answer.header("content-security-policy")
    );
    ensure!(
        answer.header("x-content-type-options") == Some("nosniff"),
        "{what}"
    );
    ensure!(
        answer.header("referrer-policy") == Some("no-referrer"),
        "{what}"
    );
    Ok(())
}

#[actix_rt::test]
async fn ui_answers_carry_a_strict_csp_and_files_their_types() -> anyhow::Result<()> {
    ensure!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
    ensure!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    ensure!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    let gw = TestGateway::start(Backend::Sqlite, |_, _| {}).await?;
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/pages/tokens.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        (
            "/ui/vendor/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/ui/vendor/uPlot.min.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let answer = send(&gw, Method::GET, path, &[], None).await?;
        ensure!(answer.status == StatusCode::OK, "{path}: {}", answer.status);
        ensure!(
            answer.header("content-type") == Some(content_type),
            "{path}: {:?}",
            answer.header("content-type")
        );
        assert_secured(&answer, path)?;
        let etag = answer.header("etag").context("no ETag")?.to_owned();
        ensure!(answer.header("cache-control") == Some("no-cache"), "{path}");
        let again = send(&gw, Method::GET, path, &[("if-none-match", &etag)], None).await?;
        ensure!(
            again.status == StatusCode::NOT_MODIFIED,
            "{path}: {}",
            again.status
        );
        assert_secured(&again, path)?;
    }
    for path in ["/ui/nope.js", "/ui/vendor/uPlot.LICENSE", "/ui/pages/"] {
        let answer = send(&gw, Method::GET, path, &[], None).await?;
        ensure!(
            answer.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.status
        );
        ensure!(
            answer.code() == Some("not_found"),
            "{path}: {}",
            answer.body
        );
        assert_secured(&answer, path)?;
    }
    gw.stop().await
}

/// What CSP would block must not be in the page: inline scripts, inline
/// event handlers, style attributes, markup built from strings.
#[test]
fn the_dashboard_has_no_inline_script_or_style() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui/assets");
    let mut files = vec![];
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                if !path.ends_with("vendor") {
                    dirs.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    ensure!(files.len() >= 10, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let name = path.display();
        if path.extension().is_some_and(|ext| ext == "html") {
            for script in text.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap_or_default();
                ensure!(tag.contains("src="), "{name}: inline <script{tag}>");
            }
            ensure!(!text.contains("<style"), "{name}: <style> element");
            ensure!(!text.contains(" style="), "{name}: style attribute");
            ensure!(!text.contains(" onclick="), "{name}: inline handler");
        }
        if path.extension().is_some_and(|ext| ext == "js") {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "'style'",
            ] {
                ensure!(!text.contains(forbidden), "{name}: {forbidden}");
            }
        }
    }
    Ok(())
}

/// The reserved row master-key sessions hang on is not a key anyone signs
/// in with: with it present, the one real admin key is still the last one,
/// and disabling it is refused (else turning master-key access off would
/// lock every admin out). The reserved row itself may be disabled.
async fn the_master_key_row_never_counts_as_the_last_admin_key(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let session = CookieSession::from_answer(master_login(&gw, MASTER_KEY).await?)?;
    let master_row = session.answer.body["admin_key_id"]
        .as_i64()
        .context("no admin_key_id")?;
    let admin = gw.admin_client();
    let listed = admin.get("/admin/admin-keys").await?;
    let keys = listed["data"].as_array().context("no data")?;
    ensure!(keys.len() == 2, "{listed}");
    let real = keys
        .iter()
        .filter_map(|key| key["id"].as_i64())
        .find(|id| *id != master_row)
        .context("no real key")?;
    for (method, path) in [
        (Method::POST, format!("/admin/admin-keys/{real}/disable")),
        (Method::DELETE, format!("/admin/admin-keys/{real}")),
    ] {
        let (status, answer) = gw.admin(method, &path, None).await?;
        ensure!(
            status == StatusCode::BAD_REQUEST
                && answer["error"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("last enabled admin key")),
            "{path}: {status} {answer}"
        );
    }
    let (status, answer) = gw
        .admin(
            Method::POST,
            &format!("/admin/admin-keys/{master_row}/disable"),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status} {answer}");
    gw.stop().await
}
