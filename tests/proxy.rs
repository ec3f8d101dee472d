//! `/proxy/{provider}/{path...}` against hostile clients (issue 10): the
//! relay stays inside its provider's `base_url`, forwards only the headers
//! it should, never blames a key for what the client sent, and obeys the
//! token's budgets and balance like the front doors.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::Method;
use common::{Reply, TestGateway, kind_provider, mock_provider};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;
use switchyard::config::{Backend, PriceSettings, ProviderKind, Settings};

on_both_backends!(
    proxy_refuses_dot_segments,
    proxy_drops_connection_named_and_identifying_headers,
    proxy_forwards_identifying_headers_when_settings_opt_in,
    client_caused_send_failures_do_not_hurt_the_key,
    proxy_refuses_spent_budgets_and_balances,
    proxy_token_calls_are_billed_from_upstream_usage,
    proxy_per_call_prices_bill_other_endpoints,
    count_tokens_counts_against_rpm_and_takes_a_slot,
    proxy_refuses_control_characters_in_the_model,
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

/// `mock-gpt` at $1,000 per million tokens both ways: one token costs
/// 1,000,000 nano-USD.
const NANOS_PER_TOKEN: i64 = 1_000_000;

fn priced(settings: &mut Settings) {
    settings.prices = vec![PriceSettings {
        model: "mock-gpt".to_owned(),
        input_per_mtok: 1000.0,
        output_per_mtok: 1000.0,
        ..Default::default()
    }];
}

/// A chat body the mock counts as 2 prompt tokens ("hi") and answers with
/// 5 completion tokens; the gateway estimates 1 + 5.
fn chat(stream: bool) -> Value {
    json!({
        "model": "mock-gpt",
        "messages": [{ "role": "user", "content": "hi" }],
        "max_tokens": 5,
        "stream": stream,
    })
}

async fn post_as(gw: &TestGateway, token: &str, path: &str, body: &Value) -> anyhow::Result<Reply> {
    gw.post_with_headers(
        path,
        &[("authorization", format!("Bearer {token}").as_str())],
        body,
    )
    .await
}

/// A token whose money budget is spent, or whose owner's prepaid balance
/// is, gets the same 402 through `/proxy` as through the front door, on a
/// token endpoint and on any other; nothing reaches the upstream.
async fn proxy_refuses_spent_budgets_and_balances(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-budget", priced).await?;
    // $0.001 cannot take the estimate of $0.006.
    let spent = gw
        .create_token(json!({ "name": "spent", "budget_usd": 0.001 }))
        .await?;
    let front = post_as(&gw, &spent, "/v1/chat/completions", &chat(false)).await?;
    assert_eq!(front.status, 402, "{}", front.text());
    assert_eq!(front.error_code().as_deref(), Some("budget_exhausted"));
    let proxied = post_as(&gw, &spent, "/proxy/mock/chat/completions", &chat(false)).await?;
    assert_eq!(proxied.status, 402, "{}", proxied.text());
    assert_eq!(proxied.error_code().as_deref(), Some("budget_exhausted"));
    let streamed = post_as(&gw, &spent, "/proxy/mock/v1/chat/completions", &chat(true)).await?;
    assert_eq!(streamed.status, 402, "{}", streamed.text());

    let (status, user) = gw
        .admin(
            Method::POST,
            "/admin/users",
            Some(json!({ "name": "broke", "prepaid": true, "balance_usd": 0.0 })),
        )
        .await?;
    assert_eq!(status, 201, "{user}");
    let broke = gw
        .create_token(json!({ "name": "broke-app", "user_id": user["id"] }))
        .await?;
    let proxied = post_as(&gw, &broke, "/proxy/mock/chat/completions", &chat(false)).await?;
    assert_eq!(proxied.status, 402, "{}", proxied.text());
    assert_eq!(
        proxied.error_code().as_deref(),
        Some("insufficient_balance")
    );
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "a refused call reached the upstream"
    );

    let logs = gw.request_logs().await?;
    assert!(
        logs.iter()
            .all(|log| log.status == 402 && log.cost_nanos == 0),
        "{logs:?}"
    );
    gw.stop().await
}

/// Proxied chat (whole, streamed with and without a usage event),
/// embeddings and Anthropic messages (whole and streamed) are billed from
/// the usage the upstream reported: the request log, the token's counters
/// and its billing records agree, and the answers pass unchanged.
async fn proxy_token_calls_are_billed_from_upstream_usage(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-billed", priced).await?;
    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "billed", "budget_usd": 100.0 })),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().context("no token")?.to_owned();
    let id = created["id"].as_i64().context("no id")?;

    let reply = post_as(&gw, &token, "/proxy/mock/chat/completions", &chat(false)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?["usage"]["completion_tokens"], 5);
    let mut with_usage = chat(true);
    with_usage["stream_options"] = json!({ "include_usage": true });
    let reply = post_as(&gw, &token, "/proxy/mock/chat/completions", &with_usage).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("data: [DONE]"), "{}", reply.text());
    let reply = post_as(&gw, &token, "/proxy/mock/chat/completions", &chat(true)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = post_as(
        &gw,
        &token,
        "/proxy/mock/embeddings",
        &json!({ "model": "mock-gpt", "input": "abcd" }),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let messages = |stream: bool| {
        json!({
            "model": "mock-gpt",
            "max_tokens": 5,
            "stream": stream,
            "messages": [{ "role": "user", "content": "hi" }],
        })
    };
    for stream in [false, true] {
        let reply = post_as(&gw, &token, "/proxy/mock/messages", &messages(stream)).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(gw.mock.calls("ok-billed"), 6);

    let logs = gw.request_logs().await?;
    let rows: Vec<(i64, i64, bool, bool)> = logs
        .iter()
        .map(|log| {
            (
                log.prompt_tokens,
                log.completion_tokens,
                log.tokens_estimated,
                log.priced,
            )
        })
        .collect();
    let embedded = rows.get(3).map(|row| row.0).context("no embeddings row")?;
    let messages_reported = rows.get(4).copied().context("no messages row")?;
    assert!(embedded > 0 && messages_reported.0 > 0, "{rows:?}");
    assert_eq!(
        rows,
        [
            (2, 5, false, true),
            (2, 5, false, true),
            // No usage event: estimated from the text ("hi"; "one two
            // three four five" is 23 characters, 6 tokens), and said so.
            (1, 6, true, true),
            (embedded, 0, false, true),
            (messages_reported.0, 5, false, true),
            (messages_reported.0, 5, false, true),
        ],
        "{logs:?}"
    );
    for log in &logs {
        assert_eq!(log.endpoint, "/proxy/mock");
        assert_eq!(
            log.cost_nanos,
            (log.prompt_tokens + log.completion_tokens) * NANOS_PER_TOKEN,
            "{log:?}"
        );
    }
    let logged: i64 = logs.iter().map(|log| log.cost_nanos).sum();
    // The instance holds the unused rest of its budget slice until the token
    // is idle (docs/limits.md); give it back, as at shutdown.
    gw.gateway()?.enforcer.give_back_slices().await;
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token")?;
    let (charges, charged) = db.token_charges(id).await?;
    assert_eq!((row.spent_nanos, charged, charges), (logged, logged, 6));
    assert_eq!(
        row.spent_tokens,
        logs.iter()
            .map(|log| log.prompt_tokens + log.completion_tokens)
            .sum::<i64>()
    );
    assert_eq!((row.reserved_nanos, row.reserved_tokens), (0, 0));
    gw.stop().await
}

/// Other endpoints are priced per call by the pseudo-model
/// `proxy:{provider}:{path}` (else `proxy:{provider}:*`); a money-limited
/// token is refused an unpriced one (402) that an unlimited token is
/// served, and its budget stops per-call spending too.
async fn proxy_per_call_prices_bill_other_endpoints(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-percall", |_| {}).await?;
    let (status, price) = gw
        .admin(
            Method::PUT,
            "/admin/model-prices/proxy:mock:audio/speech",
            Some(json!({ "input_per_mtok": 0, "output_per_mtok": 0, "per_call": 0.04 })),
        )
        .await?;
    assert_eq!(status, 200, "{price}");
    assert_eq!(price["per_call_micros"], 40_000);
    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "per-call", "budget_usd": 0.05 })),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let limited = created["token"].as_str().context("no token")?.to_owned();
    let id = created["id"].as_i64().context("no id")?;
    let unlimited = gw.create_token(json!({ "name": "unlimited" })).await?;
    let speech = json!({ "model": "tts-1", "input": "hello", "voice": "alloy" });

    let reply = post_as(&gw, &limited, "/proxy/mock/audio/speech", &speech).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.body == mock_upstream::speech_bytes());
    // $0.04 spent of $0.05: a second call does not fit.
    let refused = post_as(&gw, &limited, "/proxy/mock/audio/speech", &speech).await?;
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("budget_exhausted"));

    // No price for the echo endpoint: refused to the budget, served to
    // the unlimited token (logged unpriced).
    let refused = post_as(&gw, &limited, "/proxy/mock/echo", &json!({})).await?;
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("proxy_unpriced"));
    assert!(
        refused.text().contains("proxy:mock:echo"),
        "{}",
        refused.text()
    );
    let served = post_as(&gw, &unlimited, "/proxy/mock/echo", &json!({})).await?;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(gw.mock.calls("ok-percall"), 2);

    // A provider-wide price covers every other endpoint.
    let (status, price) = gw
        .admin(
            Method::PUT,
            "/admin/model-prices/proxy:mock:*",
            Some(json!({ "input_per_mtok": 0, "output_per_mtok": 0, "per_call": 0.001 })),
        )
        .await?;
    assert_eq!(status, 200, "{price}");
    let served = post_as(&gw, &limited, "/proxy/mock/echo", &json!({})).await?;
    assert_eq!(served.status, 200, "{}", served.text());

    let logs = gw.request_logs().await?;
    let billed: Vec<(i32, Option<&str>, i64, bool)> = logs
        .iter()
        .map(|log| {
            (
                log.status,
                log.requested_model.as_deref(),
                log.cost_nanos,
                log.priced,
            )
        })
        .collect();
    assert_eq!(
        billed,
        [
            (200, Some("proxy:mock:audio/speech"), 40_000_000, true),
            (402, Some("proxy:mock:audio/speech"), 0, true),
            (402, None, 0, false),
            (200, Some("proxy:mock:echo"), 0, false),
            (200, Some("proxy:mock:*"), 1_000_000, true),
        ]
    );
    // The instance holds the unused rest of its budget slice until the token
    // is idle (docs/limits.md); give it back, as at shutdown.
    gw.gateway()?.enforcer.give_back_slices().await;
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token")?;
    let (charges, charged) = db.token_charges(id).await?;
    assert_eq!(
        (row.spent_nanos, charged, charges),
        (41_000_000, 41_000_000, 2)
    );
    assert_eq!(row.reserved_nanos, 0);
    gw.stop().await
}

/// `/v1/messages/count_tokens` answered by an Anthropic upstream takes a
/// concurrency slot and counts against the token's requests per minute.
async fn count_tokens_counts_against_rpm_and_takes_a_slot(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            kind_provider(
                mock,
                "claude",
                ProviderKind::Anthropic,
                &["claude-x"],
                &["ok-count"],
            ),
            mock_provider(mock, "slow", &["slow-gpt"], &["slow3000-hold"]),
        ];
        settings.server.max_concurrent_requests = 1;
    })
    .await?;
    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "counted", "rpm": 2 })),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().context("no token")?.to_owned();
    let count = json!({ "model": "claude-x", "messages": [{ "role": "user", "content": "hi" }] });
    for _ in 0..2 {
        let reply = post_as(&gw, &token, "/v1/messages/count_tokens", &count).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let refused = post_as(&gw, &token, "/v1/messages/count_tokens", &count).await?;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(gw.mock.calls("ok-count"), 2);

    // A slow chat holds the only slot: a count is shed at once.
    let open = gw.create_token(json!({ "name": "open" })).await?;
    let slow = {
        let (url, client, open) = (gw.url.clone(), gw.client.clone(), open.clone());
        actix_rt::spawn(async move {
            client
                .post(format!("{url}/v1/chat/completions"))
                .insert_header(("authorization", format!("Bearer {open}")))
                .send_json(&common::chat_body("slow-gpt", "hold"))
                .await
                .map(|response| response.status())
                .map_err(|error| error.to_string())
        })
    };
    gw.wait_for_upstream_calls(3).await?;
    let shed = post_as(&gw, &open, "/v1/messages/count_tokens", &count).await?;
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert_eq!(shed.header("retry-after"), Some("1"), "{}", shed.text());
    assert_eq!(gw.mock.calls("ok-count"), 2);
    let held = slow.await?;
    assert_eq!(held.ok().map(|status| status.as_u16()), Some(200));
    let reply = post_as(&gw, &open, "/v1/messages/count_tokens", &count).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.stop().await
}

/// A model name with a NUL (or any control character) is a 400 before any
/// upstream call, and its usage row is still written (PostgreSQL refuses a
/// NUL in TEXT).
async fn proxy_refuses_control_characters_in_the_model(backend: Backend) -> anyhow::Result<()> {
    let gw = proxy_gateway(backend, "ok-nul", priced).await?;
    let token = gw.create_token(json!({ "name": "nul" })).await?;
    for model in ["mock\u{0}gpt", "mock\ngpt"] {
        let mut body = chat(false);
        body["model"] = json!(model);
        let reply = post_as(&gw, &token, "/proxy/mock/chat/completions", &body).await?;
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("invalid_request"));
    }
    assert_eq!(gw.mock.total_calls(), 0);
    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter()
            .map(|log| (log.status, log.requested_model.as_deref()))
            .collect::<Vec<_>>(),
        [(400, None), (400, None)]
    );
    gw.stop().await
}
