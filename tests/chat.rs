//! `/v1/chat/completions` and `/v1/models` end to end: real server, real
//! sockets, mock upstream.

pub mod common;

use anyhow::Context;
use common::{
    MASTER_KEY, Reply, TestGateway, chat_body, mock_provider, sse_data, stream_chat_body,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::{Backend, PriceSettings, Secret};

on_both_backends!(
    non_stream_answer_is_relayed_and_metered,
    stream_is_relayed_and_the_injected_usage_chunk_is_hidden,
    stream_keeps_the_usage_chunk_the_client_asked_for,
    stream_is_relayed_event_by_event_not_buffered,
    stream_events_that_arrive_together_go_out_together,
    redirects_and_pins_rewrite_the_upstream_model,
    unknown_request_fields_pass_through_unchanged,
    models_list_respects_allowed_models,
    cost_is_exact_and_token_spend_is_the_sum_of_rows,
);

/// The concatenated `delta.content` of chat stream events.
fn stream_content(events: &[String]) -> anyhow::Result<String> {
    let mut content = String::new();
    for data in events.iter().filter(|data| *data != "[DONE]") {
        let value: Value = serde_json::from_str(data).with_context(|| format!("event {data}"))?;
        if let Some(text) = value
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            content.push_str(text);
        }
    }
    Ok(content)
}

async fn non_stream_answer_is_relayed_and_metered(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hello")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    assert_eq!(
        answer
            .pointer("/choices/0/message/content")
            .and_then(|v| v.as_str()),
        Some("one two three four five")
    );
    assert_eq!(reply.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(reply.header("x-switchyard-provider"), Some("mock"));
    assert!(
        reply
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    // The mock saw the gateway's key, never the client's token.
    let seen = gw
        .mock
        .last_request()
        .ok_or_else(|| anyhow::anyhow!("mock saw nothing"))?;
    assert!(
        seen.header("authorization")
            .is_some_and(|v| v.starts_with("Bearer ok-"))
    );
    assert!(!String::from_utf8_lossy(&seen.body).contains(&token));

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 1);
    let row = &logs[0];
    assert_eq!(
        (
            row.status,
            row.prompt_tokens,
            row.completion_tokens,
            row.attempts
        ),
        (200, 5, 5, 1)
    );
    assert_eq!(
        row.request_id,
        reply.header("x-request-id").unwrap_or_default()
    );
    gw.stop().await
}

async fn stream_is_relayed_and_the_injected_usage_chunk_is_hidden(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "streamer" })).await?;
    let body = stream_chat_body("mock-gpt", "hello");
    let reply = gw.chat(&token, body).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.header("x-switchyard-attempts"), Some("1"));
    assert!(reply.header("x-request-id").is_some());

    let events = sse_data(&reply.body);
    // role, five words, finish, [DONE]: the usage chunk is not among them.
    assert_eq!(events.len(), 8, "{events:?}");
    assert_eq!(stream_content(&events)?, "one two three four five");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.iter().all(|data| !data.contains("\"usage\"")),
        "the client did not ask for usage: {events:?}"
    );
    // The gateway asked the upstream for usage on the client's behalf.
    let seen = gw
        .mock
        .last_request()
        .and_then(|request| request.json())
        .context("mock saw no JSON request")?;
    assert_eq!(
        seen.pointer("/stream_options/include_usage"),
        Some(&json!(true))
    );

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 1);
    let row = &logs[0];
    assert_eq!(
        (
            row.status,
            row.stream,
            row.prompt_tokens,
            row.completion_tokens,
            row.attempts,
            row.error_class.as_deref()
        ),
        (200, true, 5, 5, 1, None)
    );
    let ttft = row.ttft_ms.context("a stream row has a ttft")?;
    assert!(ttft >= 0 && ttft <= row.latency_ms, "{row:?}");
    assert_eq!(row.requested_model.as_deref(), Some("mock-gpt"));
    gw.stop().await
}

async fn stream_keeps_the_usage_chunk_the_client_asked_for(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "usage-reader" })).await?;
    let mut body = stream_chat_body("mock-gpt", "hello there");
    body["stream_options"] = json!({ "include_usage": true });
    let reply = gw.chat(&token, body).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = sse_data(&reply.body);
    assert_eq!(events.len(), 9, "{events:?}");
    assert_eq!(stream_content(&events)?, "one two three four five");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Vec<Value> = events
        .iter()
        .filter(|data| data.contains("\"usage\""))
        .map(|data| serde_json::from_str(data))
        .collect::<Result<_, _>>()?;
    assert_eq!(usage.len(), 1, "{events:?}");
    assert_eq!(
        usage[0].get("usage"),
        Some(&json!({ "prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16 }))
    );

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (
            logs[0].status,
            logs[0].stream,
            logs[0].prompt_tokens,
            logs[0].completion_tokens
        ),
        (200, true, 11, 5)
    );
    assert!(logs[0].ttft_ms.is_some());
    gw.stop().await
}

/// The mock pauses between stream chunks (a provider header asks it to, since
/// client headers are not forwarded); the client must see the first content
/// long before the end, which a buffering gateway could not do.
async fn stream_is_relayed_event_by_event_not_buffered(backend: Backend) -> anyhow::Result<()> {
    const DELAY_MS: u64 = 120;
    let gw = TestGateway::start(backend, |settings, _| {
        settings.providers[0].headers.insert(
            "x-mock-chunk-delay-ms".to_owned(),
            Secret::new(DELAY_MS.to_string()),
        );
    })
    .await?;
    let token = gw.create_token(json!({ "name": "slow-stream" })).await?;
    let body = stream_chat_body("mock-gpt", "hello");
    let started = Instant::now();
    let mut response = gw.open_chat(&token, &body).await?;
    assert_eq!(response.status(), 200);
    // When each event's bytes arrived.
    let mut arrivals: Vec<(String, Duration)> = Vec::new();
    let mut pending = Vec::new();
    while let Some(chunk) = response.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            for data in sse_data(&event) {
                arrivals.push((data, started.elapsed()));
            }
        }
    }
    let first_content = arrivals
        .iter()
        .find(|(data, _)| data.contains("\"one\""))
        .map(|(_, at)| *at)
        .context("no first word")?;
    let done = arrivals
        .iter()
        .find(|(data, _)| data == "[DONE]")
        .map(|(_, at)| *at)
        .context("no [DONE]")?;
    // Seven pauses separate the first word from [DONE] upstream (four
    // words, finish, the hidden usage chunk, [DONE]).
    let gap = done.saturating_sub(first_content);
    assert!(
        gap >= Duration::from_millis(5 * DELAY_MS),
        "first word at {first_content:?}, [DONE] at {done:?}: the stream was buffered"
    );
    let events: Vec<String> = arrivals.into_iter().map(|(data, _)| data).collect();
    assert_eq!(stream_content(&events)?, "one two three four five");
    let seen = gw.mock.last_request().context("mock saw nothing")?;
    assert_eq!(
        seen.header("x-mock-chunk-delay-ms"),
        Some(DELAY_MS.to_string().as_str())
    );
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 1);
    assert_eq!((logs[0].status, logs[0].prompt_tokens), (200, 5));
    // The time to first token is the first chunk's, not the whole stream's.
    let ttft = logs[0].ttft_ms.context("no ttft")?;
    assert!(
        ttft + (4 * DELAY_MS) as i64 <= logs[0].latency_ms,
        "{:?}",
        logs[0]
    );
    gw.stop().await
}

/// The mock writes an answer without pauses all at once, so its events reach
/// the gateway together: the client gets them in fewer HTTP chunks than
/// events (the relay joins what is ready instead of yielding each event as a
/// chunk of its own, bench/README.md), and gets every one of them.
async fn stream_events_that_arrive_together_go_out_together(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "joined" })).await?;
    let body = stream_chat_body("mock-gpt", "hello");
    let mut response = gw.open_chat(&token, &body).await?;
    assert_eq!(response.status(), 200);
    let mut pieces = 0;
    let mut received = Vec::new();
    while let Some(chunk) = response.next().await {
        pieces += 1;
        received.extend_from_slice(&chunk?);
    }
    let events = sse_data(&received);
    // role, five words, finish, [DONE].
    assert_eq!(events.len(), 8, "{events:?}");
    assert_eq!(stream_content(&events)?, "one two three four five");
    assert!(
        pieces < events.len(),
        "{pieces} HTTP chunks for {} events: each event went out alone",
        events.len()
    );
    gw.stop().await
}

async fn redirects_and_pins_rewrite_the_upstream_model(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        settings
            .redirects
            .insert("gpt-4".into(), "mock/mock-gpt".into());
        settings.redirects.insert("cheap".into(), "mock-gpt".into());
    })
    .await?;
    let token = gw.create_token(json!({ "name": "router" })).await?;
    // (requested, what the upstream must receive)
    let cases = [
        ("gpt-4", "mock-gpt"),
        ("cheap", "mock-gpt"),
        ("mock/mock-gpt", "mock-gpt"),
        // A pin reaches models the provider does not list.
        ("mock/mock-unlisted", "mock-unlisted"),
    ];
    for (requested, upstream) in cases {
        let reply = gw.chat(&token, chat_body(requested, "hi")).await?;
        assert_eq!(reply.status, 200, "{requested}: {}", reply.text());
        let seen = gw
            .mock
            .last_request()
            .and_then(|request| request.json())
            .context("mock saw no JSON")?;
        assert_eq!(seen.get("model"), Some(&json!(upstream)), "{requested}");
    }
    // An unknown provider prefix is just an unknown model.
    let reply = gw.chat(&token, chat_body("nope/mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.error_code().as_deref(), Some("model_not_found"));
    assert_eq!(gw.mock.total_calls(), 4);

    let logs = gw.request_logs().await?;
    let models: Vec<(Option<&str>, Option<&str>, i32)> = logs
        .iter()
        .map(|row| {
            (
                row.requested_model.as_deref(),
                row.upstream_model.as_deref(),
                row.status,
            )
        })
        .collect();
    assert_eq!(
        models,
        vec![
            (Some("gpt-4"), Some("mock-gpt"), 200),
            (Some("cheap"), Some("mock-gpt"), 200),
            (Some("mock/mock-gpt"), Some("mock-gpt"), 200),
            (Some("mock/mock-unlisted"), Some("mock-unlisted"), 200),
            (Some("nope/mock-gpt"), None, 404),
        ]
    );
    assert_eq!(logs[4].error_class.as_deref(), Some("model_not_found"));
    gw.stop().await
}

async fn unknown_request_fields_pass_through_unchanged(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        settings.redirects.insert("alias".into(), "mock-gpt".into());
    })
    .await?;
    let token = gw.create_token(json!({ "name": "passthrough" })).await?;
    let body = json!({
        "model": "alias",
        "messages": [
            { "role": "system", "content": "be brief", "name": "sys" },
            { "role": "user", "content": [{ "type": "text", "text": "hi" }] }
        ],
        "temperature": 0.25,
        "max_tokens": 64,
        "seed": 7,
        "response_format": { "type": "json_object" },
        "x_vendor_extension": { "nested": [1, "two", null, { "three": 3.5 }] },
        "user": "end-user-1",
        "stream": false
    });
    let reply = gw.chat(&token, body.clone()).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw
        .mock
        .last_request()
        .and_then(|request| request.json())
        .context("mock saw no JSON")?;
    let mut expected = body;
    expected["model"] = json!("mock-gpt");
    assert_eq!(seen, expected);
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 1);
    // "be brief" (8) + "hi" (2)
    assert_eq!((logs[0].prompt_tokens, logs[0].completion_tokens), (10, 5));
    gw.stop().await
}

async fn models_list_respects_allowed_models(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers[0].models = vec!["mock-gpt".into(), "mock-mini".into()];
        settings
            .providers
            .push(mock_provider(mock, "other", &["other-a"], &["ok-other"]));
        settings
            .redirects
            .insert("gpt-4".into(), "mock/mock-gpt".into());
    })
    .await?;
    let everything = gw.create_token(json!({ "name": "all" })).await?;
    let limited = gw
        .create_token(json!({ "name": "limited", "allowed_models": ["mock-*", "gpt-4"] }))
        .await?;
    let nothing = gw
        .create_token(json!({ "name": "none", "allowed_models": ["absent"] }))
        .await?;

    let ids = |reply: &Reply| -> anyhow::Result<Vec<(String, String)>> {
        let answer = reply.json()?;
        anyhow::ensure!(answer["object"] == "list", "{answer}");
        answer["data"]
            .as_array()
            .context("no data")?
            .iter()
            .map(|model| {
                anyhow::ensure!(model["object"] == "model", "{model}");
                Ok((
                    model["id"].as_str().context("id")?.to_owned(),
                    model["owned_by"].as_str().context("owned_by")?.to_owned(),
                ))
            })
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(id, owner)| ((*id).to_owned(), (*owner).to_owned()))
            .collect()
    };

    let reply = gw.get("/v1/models", Some(&everything)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(
        ids(&reply)?,
        pairs(&[
            ("gpt-4", "mock"),
            ("mock-gpt", "mock"),
            ("mock-mini", "mock"),
            ("other-a", "other"),
        ])
    );
    let reply = gw.get("/v1/models", Some(&limited)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        ids(&reply)?,
        pairs(&[
            ("gpt-4", "mock"),
            ("mock-gpt", "mock"),
            ("mock-mini", "mock")
        ])
    );
    let reply = gw.get("/v1/models", Some(&nothing)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(ids(&reply)?, Vec::new());

    for token in [None, Some("sy-not-a-token"), Some(MASTER_KEY)] {
        let reply = gw.get("/v1/models", token).await?;
        assert_eq!(reply.status, 401, "{token:?}: {}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("invalid_api_key"));
    }
    // Listing models never calls the upstream.
    assert_eq!(gw.mock.total_calls(), 0);
    gw.stop().await
}

async fn cost_is_exact_and_token_spend_is_the_sum_of_rows(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        settings.providers[0].models = vec!["mock-gpt".into(), "mock-free".into()];
        settings.prices = vec![PriceSettings {
            model: "mock-gpt".into(),
            input_per_mtok: 2.5,
            output_per_mtok: 10.0,
            ..Default::default()
        }];
    })
    .await?;
    let (status, created) = gw
        .admin(
            awc::http::Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "payer" })),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().context("token")?.to_owned();
    let id = created["id"].as_i64().context("id")?;

    // P = byte length of the message contents; completion is always 5.
    let requests = [
        (chat_body("mock-gpt", "hello"), 5),
        (
            chat_body("mock-gpt", "a longer prompt of 32 bytes....."),
            32,
        ),
        (
            json!({
                "model": "mock-gpt",
                "messages": [{ "role": "user", "content": "streamed" }],
                "stream": true
            }),
            8,
        ),
        (chat_body("mock-free", "free"), 4),
    ];
    for (body, _) in &requests {
        let reply = gw.chat(&token, body.clone()).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), requests.len());
    // $2.50 per million input tokens is 2,500 nanodollars a token; $10 per
    // million output tokens is 10,000.
    let expected: Vec<(i64, i64, bool, i64)> = vec![
        (5, 5, true, 5 * 2_500 + 5 * 10_000),
        (32, 5, true, 32 * 2_500 + 5 * 10_000),
        (8, 5, true, 8 * 2_500 + 5 * 10_000),
        (4, 5, false, 0),
    ];
    let actual: Vec<(i64, i64, bool, i64)> = logs
        .iter()
        .map(|row| {
            (
                row.prompt_tokens,
                row.completion_tokens,
                row.priced,
                row.cost_nanos,
            )
        })
        .collect();
    assert_eq!(actual, expected);
    for ((_, prompt), row) in requests.iter().zip(&logs) {
        assert_eq!(row.prompt_tokens, *prompt);
        assert_eq!(row.token_id, Some(id));
    }

    let (status, listed) = gw
        .admin(awc::http::Method::GET, "/admin/tokens", None)
        .await?;
    assert_eq!(status, 200, "{listed}");
    let row = listed["data"]
        .as_array()
        .context("no data")?
        .iter()
        .find(|row| row["id"] == id)
        .context("token not listed")?
        .clone();
    let spent_nanos: i64 = logs.iter().map(|row| row.cost_nanos).sum();
    let spent_tokens: i64 = logs
        .iter()
        .map(|row| row.prompt_tokens + row.completion_tokens)
        .sum();
    assert_eq!(spent_nanos, 62_500 + 130_000 + 70_000);
    assert_eq!(row["spent_nanos"], json!(spent_nanos));
    assert_eq!(row["spent_tokens"], json!(spent_tokens));
    assert_eq!(row["request_count"], json!(4));
    let (status, single) = gw
        .admin(awc::http::Method::GET, &format!("/admin/tokens/{id}"), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(single["spent_nanos"], json!(spent_nanos));
    gw.stop().await
}
