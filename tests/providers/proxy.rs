//! The `/proxy` relay: bytes both ways, credentials replaced, hop-by-hop
//! headers dropped, scope checked, upstream errors relayed once.

use super::*;
use crate::on_both_backends;

on_both_backends!(
    proxy_relays_binary_answers_and_byte_streams,
    proxy_replaces_credentials_and_drops_hop_by_hop_headers,
    proxy_streams_a_large_chunked_upload,
    proxy_checks_the_provider_and_the_tokens_scope,
    proxy_relays_an_upstream_error_once,
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

/// A 200 from the echo endpoint: what the mock received.
fn echoed(reply: &Reply) -> anyhow::Result<Value> {
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    reply.json()
}

/// Binary answers come back byte for byte with their content type: the
/// speech endpoint's non-UTF-8 audio, and a chunked byte stream; each call
/// leaves a `/proxy/mock` row without tokens.
async fn proxy_relays_binary_answers_and_byte_streams(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-proxy", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "proxy" })).await?;
    let bearer = format!("Bearer {token}");

    let speech = json!({ "model": "tts-1", "input": "hello", "voice": "alloy" });
    let reply = gw
        .post_with_headers(
            "/proxy/mock/audio/speech",
            &[("authorization", bearer.as_str())],
            &speech,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("audio/mpeg"));
    assert!(
        reply.body == mock_upstream::speech_bytes(),
        "the audio bytes differ ({} bytes)",
        reply.body.len()
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/audio/speech")
    );
    assert_eq!(seen.header("authorization"), Some("Bearer ok-proxy"));
    assert_eq!(seen.body, serde_json::to_vec(&speech)?);

    let reply = gw
        .send(
            Method::GET,
            "/proxy/mock/stream-bytes?n=64",
            &[("authorization", bearer.as_str())],
            None,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(
        reply.body == mock_upstream::stream_bytes(64),
        "the streamed bytes differ ({} bytes)",
        reply.body.len()
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/v1/stream-bytes?n=64")
    );

    let logs = gw.request_logs().await?;
    let proxied = Row {
        endpoint: "/proxy/mock",
        provider: Some("mock"),
        status: 200,
        prompt: 0,
        completion: 0,
        estimated: false,
        stream: false,
    };
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [proxied.clone(), proxied]
    );
    assert!(
        logs.iter()
            .all(|log| log.key_id.as_deref() == Some("key-1") && log.attempts == 1)
    );
    gw.stop().await
}

/// The upstream sees the pool key instead of the client's token, the
/// provider's own `headers`, the client's other headers, path, query and
/// body; never the client's cookies, other credentials or hop-by-hop
/// headers. The path goes up as the client encoded it. Any method goes
/// through.
async fn proxy_replaces_credentials_and_drops_hop_by_hop_headers(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-proxy", |settings| {
        settings.providers[0]
            .headers
            .insert("x-provider-tag".to_owned(), Secret::new("tag-1"));
    })
    .await?;
    let token = gw.create_token(json!({ "name": "proxy" })).await?;
    let bearer = format!("Bearer {token}");
    let body = b"hello proxy".to_vec();
    let reply = gw
        .send(
            Method::POST,
            "/proxy/mock/echo/x?y=1",
            &[
                ("authorization", bearer.as_str()),
                ("x-api-key", token.as_str()),
                ("cookie", "session=secret"),
                ("connection", "keep-alive"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic c2VjcmV0"),
                ("te", "trailers"),
                ("content-type", "text/plain"),
                ("x-client-header", "kept"),
            ],
            Some(body.clone()),
        )
        .await?;
    let echo = echoed(&reply)?;
    assert_eq!(
        (&echo["method"], &echo["path"], &echo["query"]),
        (&json!("POST"), &json!("/v1/echo/x"), &json!("y=1"))
    );
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(
        echo["body_checksum"],
        mock_upstream::fnv1a64(&body).to_string()
    );
    let headers = echo["headers"].as_object().context("no headers")?;
    assert_eq!(
        headers.get("authorization"),
        Some(&json!("Bearer ok-proxy"))
    );
    assert_eq!(headers.get("x-provider-tag"), Some(&json!("tag-1")));
    assert_eq!(headers.get("x-client-header"), Some(&json!("kept")));
    assert_eq!(headers.get("content-type"), Some(&json!("text/plain")));
    // A body of declared length keeps its length (upstreams may refuse
    // chunked uploads).
    assert_eq!(
        headers.get("content-length"),
        Some(&json!(body.len().to_string()))
    );
    assert_eq!(headers.get("transfer-encoding"), None);
    assert_eq!(
        headers.get("host"),
        Some(&json!(gw.mock.addr().to_string()))
    );
    for dropped in [
        "cookie",
        "x-api-key",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(headers.get(dropped), None, "{dropped} reached the upstream");
    }
    assert_ne!(
        headers.get("connection"),
        Some(&json!("keep-alive")),
        "{echo}"
    );
    assert!(
        !echo.to_string().contains(&token),
        "the gateway token leaked: {echo}"
    );

    // The path goes up as the client encoded it: an escaped space or `?`
    // stays escaped (decoded, the first made an invalid URL and the second
    // started a query).
    let reply = gw
        .send(
            Method::GET,
            "/proxy/mock/echo/a%20b%3Fc/%C3%A9?q=a%20b",
            &[("authorization", bearer.as_str())],
            None,
        )
        .await?;
    let echo = echoed(&reply)?;
    assert_eq!(
        (&echo["path"], &echo["query"]),
        (&json!("/v1/echo/a%20b%3Fc/%C3%A9"), &json!("q=a%20b"))
    );

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = gw
            .send(
                method.clone(),
                "/proxy/mock/echo",
                &[("authorization", bearer.as_str())],
                None,
            )
            .await?;
        let echo = echoed(&reply)?;
        assert_eq!(
            (&echo["method"], &echo["body_len"]),
            (&json!(method.as_str()), &json!(0))
        );
        assert_eq!(echo["headers"]["authorization"], "Bearer ok-proxy");
    }
    assert_eq!(gw.mock.calls("ok-proxy"), 5);

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 5);
    assert!(
        logs.iter()
            .all(|log| log.endpoint == "/proxy/mock" && log.status == 200),
        "{logs:?}"
    );
    gw.stop().await
}

/// An 8 MiB body sent chunked streams up unchanged (length and checksum as
/// the upstream received them), still chunked.
async fn proxy_streams_a_large_chunked_upload(backend: Backend) -> anyhow::Result<()> {
    const SIZE: usize = 8 * 1024 * 1024;
    let gw = proxy_gateway(backend, "ok-upload", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "uploader" })).await?;
    let body: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(7).wrapping_add(i >> 11) % 256) as u8)
        .collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let mut response = gw
        .client
        .post(format!("{}/proxy/mock/files/echo", gw.url))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("content-type", "application/octet-stream"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .map_err(|e| anyhow::anyhow!("upload failed: {e}"))?;
    assert_eq!(response.status(), 200);
    let echo: Value = serde_json::from_slice(&response.body().await?)?;
    assert_eq!(echo["path"], "/v1/files/echo");
    assert_eq!(echo["body_len"], SIZE);
    assert_eq!(
        echo["body_checksum"],
        mock_upstream::fnv1a64(&body).to_string()
    );
    assert_eq!(
        echo["headers"]["transfer-encoding"], "chunked",
        "{}",
        echo["headers"]
    );
    assert_eq!(echo["headers"].get("content-length"), None);
    assert_eq!(gw.mock.calls("ok-upload"), 1);
    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter()
            .map(|log| (log.endpoint.as_str(), log.status))
            .collect::<Vec<_>>(),
        [("/proxy/mock", 200)]
    );
    gw.stop().await
}

/// An unknown provider is a 404; a token limited to models may use a
/// provider's proxy only when its list allows `{provider}/*`; no token is
/// a 401. Refused calls never reach the upstream.
async fn proxy_checks_the_provider_and_the_tokens_scope(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-scope", |_| {}).await?;
    let open = gw.create_token(json!({ "name": "open" })).await?;
    let models_only = gw
        .create_token(json!({ "name": "models-only", "allowed_models": ["mock-gpt"] }))
        .await?;
    let proxy_allowed = gw
        .create_token(json!({ "name": "proxy-allowed", "allowed_models": ["mock/*"] }))
        .await?;
    let get = |token: Option<String>, path: &'static str| {
        let gw = &gw;
        async move {
            let bearer = token.map(|token| format!("Bearer {token}"));
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("authorization", b.as_str()))
                .collect();
            gw.send(Method::GET, path, &headers, None).await
        }
    };

    let reply = get(Some(open.clone()), "/proxy/nope/echo").await?;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.error_code().as_deref(), Some("not_found"));
    let reply = get(Some(models_only), "/proxy/mock/echo").await?;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.error_code().as_deref(), Some("model_not_allowed"));
    let reply = get(None, "/proxy/mock/echo").await?;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(gw.mock.total_calls(), 0);

    let echo = echoed(&get(Some(proxy_allowed), "/proxy/mock/echo").await?)?;
    assert_eq!(echo["headers"]["authorization"], "Bearer ok-scope");
    echoed(&get(Some(open), "/proxy/mock/echo").await?)?;
    assert_eq!(gw.mock.calls("ok-scope"), 2);

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, i32, Option<&str>)> = logs
        .iter()
        .map(|log| {
            (
                log.endpoint.as_str(),
                log.status,
                log.error_class.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/proxy/nope", 404, Some("not_found")),
            ("/proxy/mock", 403, Some("model_not_allowed")),
            ("/proxy/mock", 401, Some("invalid_api_key")),
            ("/proxy/mock", 200, None),
            ("/proxy/mock", 200, None),
        ]
    );
    gw.stop().await
}

/// An upstream 500 through the proxy is relayed as it is, after exactly one
/// attempt (a streamed body cannot be replayed), and counts against the
/// key's health; the row has the upstream's status.
async fn proxy_relays_an_upstream_error_once(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "e500-proxy", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "proxy-errors" })).await?;
    let reply = gw
        .post_with_headers(
            "/proxy/mock/echo/x",
            &[("authorization", format!("Bearer {token}").as_str())],
            &json!({ "n": 1 }),
        )
        .await?;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(
        reply.json()?,
        json!({ "error": { "message": "The server had an error while processing your request (mock)", "type": "server_error", "param": null, "code": null } })
    );
    assert_eq!(gw.mock.calls("e500-proxy"), 1);

    let (status, health) = gw
        .admin(Method::GET, "/admin/providers/mock/health", None)
        .await?;
    assert_eq!(status, 200, "{health}");
    let key = &health["keys"][0];
    assert_eq!(
        (
            &key["id"],
            &key["failures"],
            &key["successes"],
            &key["error_streak"]
        ),
        (&json!("key-1"), &json!(1), &json!(0), &json!(1)),
        "{health}"
    );

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, Option<&str>, i32, i32)> = logs
        .iter()
        .map(|log| {
            (
                log.endpoint.as_str(),
                log.provider.as_deref(),
                log.status,
                log.attempts,
            )
        })
        .collect();
    assert_eq!(outcomes, [("/proxy/mock", Some("mock"), 500, 1)]);
    gw.stop().await
}
