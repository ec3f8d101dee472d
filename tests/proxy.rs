//! `/proxy/{provider}/{path...}` against hostile clients (issue 10): the
//! relay stays inside its provider's `base_url`, forwards only the headers
//! it should, never blames a key for what the client sent, and obeys the
//! token's budgets and balance like the front doors.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::Method;
use common::{TestGateway, mock_provider};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;
use switchyard::config::{Backend, Settings};

on_both_backends!(
    proxy_refuses_dot_segments,
    proxy_drops_connection_named_and_identifying_headers,
    proxy_forwards_identifying_headers_when_settings_opt_in,
    client_caused_send_failures_do_not_hurt_the_key,
);

/// A gateway whose `mock` provider has the one key `key`.
async fn proxy_gateway(
    backend: Backend,
    key: &str,
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &[key])];
        configure(settings);
    })
    .await
}

/// Sends `request` as raw bytes on a new connection and returns everything
/// the gateway answered until it closed the connection (the request asks
/// for `Connection: close`). Raw bytes, because HTTP clients refuse to send
/// what hostile clients send (`Expect` without a body, short bodies) and
/// write their own `Connection` header. `give_up` closes the sending side
/// after the request, as a client that never sends the rest of its body.
async fn raw_exchange(gw: &TestGateway, request: Vec<u8>, give_up: bool) -> anyhow::Result<String> {
    let addr = gw.gateway()?.addr;
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(&request)?;
        if give_up {
            stream.shutdown(std::net::Shutdown::Write)?;
        }
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            // A reset after the answer was read still carries the answer.
            Err(error) if !answer.is_empty() => {
                let _ = error;
            }
            Err(error) => return Err(error.into()),
        }
        Ok(String::from_utf8_lossy(&answer).into_owned())
    })
    .await?
}

/// The final status of a raw answer (after any `100 Continue`).
fn final_status(answer: &str) -> Option<u16> {
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("HTTP/1.1 "))
        .filter_map(|rest| rest.get(..3)?.parse::<u16>().ok())
        .rfind(|status| *status != 100)
}

/// `..` and `.` segments, raw or percent-encoded in any case, are refused
/// with 400 before any upstream call: the pool key never travels outside
/// the provider's `base_url`.
async fn proxy_refuses_dot_segments(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-dots", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "dots" })).await?;
    let bearer = format!("Bearer {token}");
    for path in [
        "/proxy/mock/../../echo",
        "/proxy/mock/%2e%2e/%2e%2e/echo",
        "/proxy/mock/%2E./echo",
        "/proxy/mock/.%2e/echo",
        "/proxy/mock/echo/./x",
        "/proxy/mock/echo/%2E",
        "/proxy/mock/a/..%2f..%2fecho",
        "/proxy/mock/a/..%5Cecho",
    ] {
        let reply = gw
            .send(
                Method::GET,
                path,
                &[("authorization", bearer.as_str())],
                None,
            )
            .await?;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert_eq!(
            reply.error_code().as_deref(),
            Some("invalid_request"),
            "{path}: {}",
            reply.text()
        );
    }
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "a dot segment reached the upstream"
    );

    // Dots inside a segment are ordinary names.
    let reply = gw
        .send(
            Method::GET,
            "/proxy/mock/echo/v1..2/.well-known/a.b",
            &[("authorization", bearer.as_str())],
            None,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?["path"], "/v1/echo/v1..2/.well-known/a.b");
    assert_eq!(gw.mock.total_calls(), 1);
    gw.stop().await
}

/// The echo route's headers as the upstream received them.
async fn echoed_headers(
    gw: &TestGateway,
    headers: &[(&str, &str)],
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let reply = gw
        .send(Method::GET, "/proxy/mock/echo", headers, None)
        .await?;
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    reply.json()?["headers"]
        .as_object()
        .cloned()
        .context("no headers in the echo")
}

/// Headers a client names in `Connection` or `Proxy-Connection` are
/// hop-by-hop and stop at the gateway; so do, by default, the client's own
/// address (`X-Forwarded-For`, `Forwarded`) and OpenAI organization and
/// project headers (the pool key belongs to the gateway's account).
async fn proxy_drops_connection_named_and_identifying_headers(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-headers", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "headers" })).await?;
    // Raw, because HTTP clients write their own `Connection` header.
    let answer = raw_exchange(
        &gw,
        format!(
            "GET /proxy/mock/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Connection: close, X-Secret-Hop\r\nX-Secret-Hop: hop\r\n\
             Proxy-Connection: x-other-hop\r\nX-Other-Hop: hop\r\n\
             X-Forwarded-For: 10.1.2.3\r\nForwarded: for=10.1.2.3\r\n\
             OpenAI-Organization: org-client\r\nOpenAI-Project: proj-client\r\n\
             X-Kept: kept\r\n\r\n"
        )
        .into_bytes(),
        false,
    )
    .await?;
    assert_eq!(final_status(&answer), Some(200), "{answer}");
    // The relayed echo is small: one chunk of a chunked body, the JSON
    // object between its size line and the last chunk.
    let (_head, body) = answer.split_once("\r\n\r\n").context("no body")?;
    let json = body
        .find('{')
        .zip(body.rfind('}'))
        .and_then(|(start, end)| body.get(start..=end))
        .context("no JSON in the answer")?;
    let echo: Value = serde_json::from_str(json).with_context(|| answer.clone())?;
    let headers = echo["headers"].as_object().context("no headers")?;
    for dropped in [
        "x-secret-hop",
        "proxy-connection",
        "x-other-hop",
        "x-forwarded-for",
        "forwarded",
        "openai-organization",
        "openai-project",
    ] {
        assert_eq!(
            headers.get(dropped),
            None,
            "{dropped} reached the upstream: {headers:?}"
        );
    }
    assert_eq!(headers.get("x-kept"), Some(&json!("kept")));
    assert_eq!(
        headers.get("authorization"),
        Some(&json!("Bearer ok-headers"))
    );
    gw.stop().await
}

/// `[proxy]` settings opt in to forwarding the client's address and its
/// OpenAI organization and project headers.
async fn proxy_forwards_identifying_headers_when_settings_opt_in(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-optin", |settings| {
        settings.proxy.forward_client_address = true;
        settings.proxy.forward_openai_organization = true;
    })
    .await?;
    let token = gw.create_token(json!({ "name": "opt-in" })).await?;
    let bearer = format!("Bearer {token}");
    let headers = echoed_headers(
        &gw,
        &[
            ("authorization", bearer.as_str()),
            ("x-forwarded-for", "10.1.2.3"),
            ("forwarded", "for=10.1.2.3"),
            ("openai-organization", "org-client"),
            ("openai-project", "proj-client"),
        ],
    )
    .await?;
    for (name, value) in [
        ("x-forwarded-for", "10.1.2.3"),
        ("forwarded", "for=10.1.2.3"),
        ("openai-organization", "org-client"),
        ("openai-project", "proj-client"),
    ] {
        assert_eq!(headers.get(name), Some(&json!(value)), "{headers:?}");
    }
    gw.stop().await
}

/// More client-caused send failures than `failure_threshold` (3): requests
/// with `Expect: 100-continue` (with and without a body) and a body shorter
/// than its declared length. None counts against the key: a normal request
/// afterwards succeeds and the key is healthy with no failure recorded.
async fn client_caused_send_failures_do_not_hurt_the_key(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-expect", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "hostile" })).await?;
    let head = |method: &str, extra: &str| {
        format!(
            "{method} /proxy/mock/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n{extra}\r\n"
        )
        .into_bytes()
    };
    for _ in 0..3 {
        // Expect without a body: HTTP clients must not send it, and
        // forwarding it made the upstream send fail.
        let answer = raw_exchange(
            &gw,
            head("POST", "Expect: 100-continue\r\nContent-Length: 0\r\n"),
            false,
        )
        .await?;
        assert_eq!(final_status(&answer), Some(200), "{answer}");

        // Expect with a body: the gateway answers `100 Continue` itself.
        let mut request = head(
            "POST",
            "Expect: 100-continue\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n",
        );
        request.extend_from_slice(b"hello");
        let answer = raw_exchange(&gw, request, false).await?;
        assert_eq!(final_status(&answer), Some(200), "{answer}");

        // A body that breaks off before its declared length.
        let mut request = head("POST", "Content-Length: 100\r\n");
        request.extend_from_slice(b"short");
        // The gateway may not get to answer a client that gave up (its row
        // is a 499); if it does, the fault is the client's.
        let answer = raw_exchange(&gw, request, true).await?;
        if let Some(status) = final_status(&answer) {
            assert!((400..500).contains(&status), "{answer}");
        }
    }

    let reply = gw
        .send(
            Method::GET,
            "/proxy/mock/echo",
            &[("authorization", format!("Bearer {token}").as_str())],
            None,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (status, health) = gw
        .admin(Method::GET, "/admin/providers/mock/health", None)
        .await?;
    assert_eq!(status, 200, "{health}");
    let key = &health["keys"][0];
    assert_eq!(
        (&key["state"], &key["failures"], &key["error_streak"]),
        (&json!("healthy"), &json!(0), &json!(0)),
        "{health}"
    );
    gw.stop().await
}
