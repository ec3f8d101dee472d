//! What browsers see (`server.cors`, `http::browser`), on the real server:
//! preflights from listed origins answered without a credential, unlisted
//! origins getting no CORS headers (and their preflights refused in the
//! API's error shape), credentials and exposed headers only for listed
//! origins, the route table's 405 for a plain `OPTIONS`, CORS off by
//! default, and the security headers on client, admin, health, error and
//! dashboard answers. (Nothing here is stored: SQLite only.)

pub mod common;

use anyhow::{Context, ensure};
use awc::http::{Method, StatusCode};
use common::{MASTER_KEY, Reply, TestGateway};
use serde_json::json;
use switchyard::config::Backend;

const LISTED: &str = "https://app.example.com";
const UNLISTED: &str = "https://evil.example.net";

async fn cors_gateway() -> anyhow::Result<TestGateway> {
    TestGateway::start(Backend::Sqlite, |settings, _| {
        settings.server.cors.allowed_origins =
            vec![LISTED.to_owned(), "http://localhost:3000".to_owned()];
    })
    .await
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The comma-separated list in `name`, lower-cased.
fn list(reply: &Reply, name: &str) -> Vec<String> {
    header(reply, name)
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

fn no_cors_headers(reply: &Reply) -> anyhow::Result<()> {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
    ] {
        ensure!(
            reply.headers.get(name).is_none(),
            "{name} sent: {:?}",
            reply.headers
        );
    }
    Ok(())
}

async fn preflight(
    gw: &TestGateway,
    path: &str,
    origin: Option<&str>,
    method: &str,
    headers: &str,
) -> anyhow::Result<Reply> {
    let mut all = vec![("access-control-request-method", method)];
    if !headers.is_empty() {
        all.push(("access-control-request-headers", headers));
    }
    if let Some(origin) = origin {
        all.push(("origin", origin));
    }
    gw.send(Method::OPTIONS, path, &all, None).await
}

#[actix_rt::test]
async fn a_preflight_from_a_listed_origin_is_answered_without_a_credential() -> anyhow::Result<()> {
    let gw = cors_gateway().await?;
    for (path, method, headers) in [
        (
            "/v1/chat/completions",
            "POST",
            "authorization, content-type",
        ),
        (
            "/v1/messages",
            "POST",
            "x-api-key, anthropic-version, content-type",
        ),
        (
            "/v1beta/models/gemini-pro:generateContent",
            "POST",
            "x-goog-api-key, content-type",
        ),
        ("/admin/tokens", "GET", "authorization"),
    ] {
        let reply = preflight(&gw, path, Some(LISTED), method, headers).await?;
        ensure!(
            reply.status.is_success(),
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        ensure!(header(&reply, "access-control-allow-origin") == Some(LISTED));
        ensure!(header(&reply, "access-control-allow-credentials") == Some("true"));
        ensure!(
            list(&reply, "access-control-allow-methods").contains(&method.to_ascii_lowercase()),
            "{:?}",
            reply.headers
        );
        let allowed = list(&reply, "access-control-allow-headers");
        for needed in [
            "authorization",
            "content-type",
            "x-api-key",
            "anthropic-version",
            "x-goog-api-key",
        ] {
            ensure!(
                allowed.iter().any(|item| item == needed),
                "{needed} not allowed: {allowed:?}"
            );
        }
        ensure!(
            list(&reply, "vary").iter().any(|item| item == "origin"),
            "no Vary: Origin: {:?}",
            reply.headers
        );
        ensure!(header(&reply, "x-content-type-options") == Some("nosniff"));
    }
    // The second listed origin is its own, not the first one's.
    let reply = preflight(
        &gw,
        "/v1/models",
        Some("http://localhost:3000"),
        "GET",
        "authorization",
    )
    .await?;
    ensure!(header(&reply, "access-control-allow-origin") == Some("http://localhost:3000"));
    gw.stop().await
}

#[actix_rt::test]
async fn an_unlisted_origin_gets_no_cors_headers() -> anyhow::Result<()> {
    let gw = cors_gateway().await?;
    let token = gw.create_token(json!({ "name": "browser" })).await?;

    // Its preflight is refused, in the API's error shape, without CORS headers.
    let reply = preflight(
        &gw,
        "/v1/chat/completions",
        Some(UNLISTED),
        "POST",
        "authorization",
    )
    .await?;
    ensure!(reply.status == StatusCode::BAD_REQUEST, "{}", reply.status);
    no_cors_headers(&reply)?;
    let body = reply.json()?;
    let message = body["error"]["message"]
        .as_str()
        .context("no error shape")?;
    ensure!(message.contains("CORS preflight refused"), "{message}");

    // A listed origin asking for a header not on the list is refused too.
    let reply = preflight(
        &gw,
        "/v1/chat/completions",
        Some(LISTED),
        "POST",
        "x-not-allowed",
    )
    .await?;
    ensure!(reply.status == StatusCode::BAD_REQUEST, "{}", reply.status);
    ensure!(reply.json()?["error"]["message"].is_string());

    // Its actual requests are served as without CORS (curl with any Origin
    // still works), the browser just cannot read them.
    let bearer = format!("Bearer {token}");
    let reply = gw
        .send(
            Method::GET,
            "/v1/models",
            &[("origin", UNLISTED), ("authorization", &bearer)],
            None,
        )
        .await?;
    ensure!(reply.status == StatusCode::OK, "{}", reply.status);
    no_cors_headers(&reply)?;
    gw.stop().await
}

#[actix_rt::test]
async fn a_credentialed_request_from_a_listed_origin_may_read_the_answer() -> anyhow::Result<()> {
    let gw = cors_gateway().await?;
    let token = gw.create_token(json!({ "name": "browser" })).await?;
    let bearer = format!("Bearer {token}");
    let reply = gw
        .post_with_headers(
            "/v1/chat/completions",
            &[("origin", LISTED), ("authorization", &bearer)],
            &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await?;
    ensure!(
        reply.status == StatusCode::OK,
        "{} {}",
        reply.status,
        reply.text()
    );
    ensure!(header(&reply, "access-control-allow-origin") == Some(LISTED));
    ensure!(header(&reply, "access-control-allow-credentials") == Some("true"));
    let exposed = list(&reply, "access-control-expose-headers");
    for name in [
        "x-request-id",
        "x-switchyard-attempts",
        "x-switchyard-provider",
    ] {
        ensure!(
            exposed.iter().any(|item| item == name),
            "{name} not exposed: {exposed:?}"
        );
        ensure!(reply.headers.contains_key(name), "{name} not sent");
    }
    // An error answer to a listed origin is readable too (the browser
    // would otherwise show a bare network error).
    let reply = gw
        .send(
            Method::GET,
            "/v1/models",
            &[("origin", LISTED), ("authorization", "Bearer sy-wrong")],
            None,
        )
        .await?;
    ensure!(reply.status == StatusCode::UNAUTHORIZED, "{}", reply.status);
    ensure!(header(&reply, "access-control-allow-origin") == Some(LISTED));
    gw.stop().await
}

#[actix_rt::test]
async fn a_plain_options_gets_405_and_cors_is_off_by_default() -> anyhow::Result<()> {
    let gw = cors_gateway().await?;
    // Without Access-Control-Request-Method it is no preflight: the route
    // table answers, as it does for any method a path is not served with.
    let reply = gw
        .send(
            Method::OPTIONS,
            "/v1/chat/completions",
            &[("origin", LISTED)],
            None,
        )
        .await?;
    ensure!(
        reply.status == StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        reply.status
    );
    ensure!(
        header(&reply, "allow") == Some("POST"),
        "{:?}",
        reply.headers
    );
    ensure!(reply.json()?["error"]["message"].is_string());
    gw.stop().await?;

    let gw = TestGateway::start(Backend::Sqlite, |_, _| {}).await?;
    let reply = preflight(
        &gw,
        "/v1/chat/completions",
        Some(LISTED),
        "POST",
        "authorization",
    )
    .await?;
    ensure!(
        reply.status == StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        reply.status
    );
    no_cors_headers(&reply)?;
    let reply = gw
        .send(Method::GET, "/healthz", &[("origin", LISTED)], None)
        .await?;
    ensure!(reply.status == StatusCode::OK);
    no_cors_headers(&reply)?;
    gw.stop().await
}

/// What is asked (name, method, path, headers) and the status expected.
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    Vec<(&'a str, &'a str)>,
    StatusCode,
);

fn security_headers(what: &str, reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        header(reply, "x-content-type-options") == Some("nosniff"),
        "{what}: {:?}",
        reply.headers
    );
    ensure!(
        header(reply, "referrer-policy") == Some("no-referrer"),
        "{what}: {:?}",
        reply.headers
    );
    // Plain HTTP: no HSTS (tests/tls.rs checks it over TLS).
    ensure!(
        reply.headers.get("strict-transport-security").is_none(),
        "{what}: HSTS over plain HTTP"
    );
    Ok(())
}

#[actix_rt::test]
async fn every_answer_carries_the_security_headers() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "headers" })).await?;
    let bearer = format!("Bearer {token}");
    let master = format!("Bearer {MASTER_KEY}");
    let chat = gw
        .chat(
            &token,
            json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await?;
    ensure!(chat.status == StatusCode::OK);
    security_headers("chat", &chat)?;
    let stream = gw
        .chat(
            &token,
            json!({"model": "mock-gpt", "stream": true,
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await?;
    ensure!(stream.status == StatusCode::OK);
    security_headers("stream", &stream)?;
    let cases: Vec<Case> = vec![
        (
            "models",
            Method::GET,
            "/v1/models",
            vec![("authorization", &bearer)],
            StatusCode::OK,
        ),
        (
            "admin",
            Method::GET,
            "/admin/tokens",
            vec![("authorization", &master)],
            StatusCode::OK,
        ),
        ("healthz", Method::GET, "/healthz", vec![], StatusCode::OK),
        (
            "healthz HEAD",
            Method::HEAD,
            "/healthz",
            vec![],
            StatusCode::OK,
        ),
        (
            "metrics",
            Method::GET,
            "/metrics",
            vec![("authorization", &master)],
            StatusCode::OK,
        ),
        (
            "unauthenticated",
            Method::GET,
            "/v1/models",
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "admin refused",
            Method::GET,
            "/admin/tokens",
            vec![("authorization", &bearer)],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown route",
            Method::GET,
            "/nowhere",
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "wrong method",
            Method::DELETE,
            "/v1/chat/completions",
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (what, method, path, headers, status) in cases {
        let reply = gw.send(method, path, &headers, None).await?;
        ensure!(
            reply.status == status,
            "{what}: {} {}",
            reply.status,
            reply.text()
        );
        security_headers(what, &reply)?;
    }
    let bad_json = gw
        .post_raw("/v1/chat/completions", Some(&token), b"{not json".to_vec())
        .await?;
    ensure!(bad_json.status == StatusCode::BAD_REQUEST);
    security_headers("bad body", &bad_json)?;

    // Every dashboard page and file also keeps its strict CSP.
    for (path, status) in [
        ("/ui", StatusCode::OK),
        ("/ui/", StatusCode::OK),
        ("/ui/index.html", StatusCode::OK),
        ("/ui/app.js", StatusCode::OK),
        ("/ui/pages/overview.js", StatusCode::OK),
        ("/ui/app.css", StatusCode::OK),
        ("/ui/no-such-page.js", StatusCode::NOT_FOUND),
    ] {
        let reply = gw.send(Method::GET, path, &[], None).await?;
        ensure!(reply.status == status, "{path}: {}", reply.status);
        security_headers(path, &reply)?;
        let csp = header(&reply, "content-security-policy").unwrap_or_default();
        ensure!(
            csp == switchyard::ui::CONTENT_SECURITY_POLICY && csp.contains("default-src 'none'"),
            "{path}: CSP {csp:?}"
        );
    }
    gw.stop().await
}

#[test]
fn an_allowed_origin_that_is_not_an_origin_is_refused_in_one_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for bad in [
        "*",
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "ftp://app.example.com",
        "https://",
    ] {
        let mut settings = switchyard::config::Settings::for_tests(dir.path())?;
        settings.server.cors.allowed_origins = vec![bad.to_owned()];
        let error = match settings.validate() {
            Ok(()) => anyhow::bail!("{bad:?} was accepted"),
            Err(error) => error.to_string(),
        };
        ensure!(
            error.contains("server.cors.allowed_origins") && !error.contains('\n'),
            "{bad:?}: {error}"
        );
    }
    let mut settings = switchyard::config::Settings::for_tests(dir.path())?;
    settings.server.cors.allowed_origins = vec![
        "https://app.example.com".to_owned(),
        "http://localhost:3000".to_owned(),
        "http://[::1]:8080".to_owned(),
    ];
    settings.validate()?;
    Ok(())
}
