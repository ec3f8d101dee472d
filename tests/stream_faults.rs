//! Broken upstream streams end to end, on both front doors
//! (`/v1/chat/completions`, `/v1/messages`) and from each upstream wire
//! (OpenAI, Anthropic, Gemini): a stream that did not finish never ends
//! cleanly for the client, an unterminated event is never forwarded, an
//! endless event is cut at `upstream.max_stream_event_bytes`, and a stream
//! dripped one byte at a time arrives whole. The mock's key prefix picks the
//! fault (`truncclean-`, `truncmid-`, `hugeevent-`, `drip-`).

pub mod common;

use anyhow::Context;
use common::{Reply, TestGateway, kind_provider, stream_chat_body};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::{Backend, ProviderKind};
use switchyard::db::RequestLog;

on_both_backends!(
    a_clean_close_without_end_marker_is_an_error_on_both_front_doors,
    a_close_mid_event_never_forwards_half_an_event,
    an_endless_event_ends_the_stream_at_the_event_limit,
    a_dripped_stream_arrives_whole,
    legacy_completions_cut_cleanly_end_with_an_error_event,
);

/// The upstream wire kinds and the model each serves in these tests.
const KINDS: [(ProviderKind, &str); 3] = [
    (ProviderKind::OpenaiCompatible, "m-openai"),
    (ProviderKind::Anthropic, "m-anthropic"),
    (ProviderKind::Gemini, "m-gemini"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    Chat,
    Messages,
}

const DOORS: [Door; 2] = [Door::Chat, Door::Messages];

/// A gateway with one provider per wire kind, each holding only `key`.
async fn gateway(backend: Backend, key: &str) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        settings.providers = KINDS
            .iter()
            .map(|(kind, model)| {
                let name = model.trim_start_matches("m-");
                kind_provider(mock, name, *kind, &[model], &[key])
            })
            .collect();
    })
    .await
}

/// One SSE event as the client received it.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

/// Splits a whole SSE body into events; fails if the body does not end
/// with a blank line (a half event reached the client).
fn events(body: &[u8]) -> anyhow::Result<Vec<Event>> {
    let text = String::from_utf8(body.to_vec()).context("the stream is not UTF-8")?;
    anyhow::ensure!(
        text.ends_with("\n\n"),
        "the stream ends mid-event: {:?}",
        text.get(text.len().saturating_sub(200)..)
    );
    Ok(text
        .split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let name = event
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
                .map(str::to_owned);
            let data = event
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n");
            Event { name, data }
        })
        .collect())
}

/// Every event's data is whole JSON (or `[DONE]`): nothing half-forwarded.
fn assert_whole(events: &[Event]) -> anyhow::Result<()> {
    for event in events {
        if event.data == "[DONE]" || event.data.is_empty() {
            continue;
        }
        serde_json::from_str::<Value>(&event.data)
            .with_context(|| format!("a forwarded event is not whole JSON: {:?}", event.data))?;
    }
    Ok(())
}

/// The stream ends with the client-format error event and shows no clean
/// end anywhere; returns the OpenAI error code when the door has one.
fn assert_ends_with_error(door: Door, events: &[Event]) -> anyhow::Result<Option<String>> {
    let last = events.last().context("no events")?;
    let last_json: Value = serde_json::from_str(&last.data)
        .with_context(|| format!("the last event is not JSON: {:?}", last.data))?;
    match door {
        Door::Chat => {
            anyhow::ensure!(
                !events.iter().any(|event| event.data == "[DONE]"),
                "a cut stream sent [DONE]: {events:?}"
            );
            anyhow::ensure!(
                last_json
                    .pointer("/error/message")
                    .is_some_and(Value::is_string),
                "the last event is not an error: {last_json}"
            );
            Ok(last_json
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_owned))
        }
        Door::Messages => {
            anyhow::ensure!(
                !events
                    .iter()
                    .any(|event| event.name.as_deref() == Some("message_stop")),
                "a cut stream sent message_stop: {events:?}"
            );
            anyhow::ensure!(
                last.name.as_deref() == Some("error")
                    && last_json.get("type") == Some(&json!("error")),
                "the last event is not an error: {last:?}"
            );
            Ok(None)
        }
    }
}

/// Streams one request for `model` through `door`.
async fn stream(gw: &TestGateway, token: &str, door: Door, model: &str) -> anyhow::Result<Reply> {
    match door {
        Door::Chat => {
            let body = stream_chat_body(model, "hello");
            gw.chat(token, body).await
        }
        Door::Messages => {
            let body = json!({
                "model": model,
                "max_tokens": 64,
                "stream": true,
                "messages": [{ "role": "user", "content": "hello" }],
            });
            gw.post_raw("/v1/messages", Some(token), serde_json::to_vec(&body)?)
                .await
        }
    }
}

/// The text the client received: OpenAI deltas or Anthropic text deltas.
fn content(door: Door, events: &[Event]) -> String {
    let pointer = match door {
        Door::Chat => "/choices/0/delta/content",
        Door::Messages => "/delta/text",
    };
    events
        .iter()
        .filter_map(|event| serde_json::from_str::<Value>(&event.data).ok())
        .filter_map(|value| {
            value
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

fn row(log: &RequestLog) -> (i32, Option<&str>, i32) {
    (log.status, log.error_class.as_deref(), log.attempts)
}

/// For every wire and door: the stream through `key` ends with the error
/// event and the row records `class`.
async fn every_pair_fails(backend: Backend, key: &str, class: &str) -> anyhow::Result<()> {
    let gw = gateway(backend, key).await?;
    let token = gw.create_token(json!({ "name": "faults" })).await?;
    let mut expected_rows = Vec::new();
    for door in DOORS {
        for (kind, model) in KINDS {
            let reply = stream(&gw, &token, door, model).await?;
            let context = format!("{door:?} from {kind:?}: {}", reply.text());
            // Content went out before the cut, so the head said 200.
            assert_eq!(reply.status, 200, "{context}");
            let events = events(&reply.body).context(context.clone())?;
            assert_whole(&events).context(context.clone())?;
            let code = assert_ends_with_error(door, &events).context(context.clone())?;
            if door == Door::Chat {
                assert_eq!(code.as_deref(), Some(class), "{context}");
            }
            assert_eq!(content(door, &events), "one", "{context}");
            expected_rows.push((200, Some(class), 1));
        }
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.iter().map(row).collect::<Vec<_>>(), expected_rows);
    assert!(logs.iter().all(|log| log.stream));
    gw.stop().await
}

async fn a_clean_close_without_end_marker_is_an_error_on_both_front_doors(
    backend: Backend,
) -> anyhow::Result<()> {
    every_pair_fails(backend, "truncclean-k", "stream_interrupted").await
}

async fn a_close_mid_event_never_forwards_half_an_event(backend: Backend) -> anyhow::Result<()> {
    every_pair_fails(backend, "truncmid-k", "stream_interrupted").await
}

async fn an_endless_event_ends_the_stream_at_the_event_limit(
    backend: Backend,
) -> anyhow::Result<()> {
    let started = Instant::now();
    every_pair_fails(backend, "hugeevent-k", "stream_event_too_large").await?;
    // Six streams of a 4 MiB event each: linear parsing keeps this short
    // (rescanning the buffer per chunk took minutes).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

async fn a_dripped_stream_arrives_whole(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend, "drip-k").await?;
    let token = gw.create_token(json!({ "name": "faults" })).await?;
    for door in DOORS {
        for (kind, model) in KINDS {
            let reply = stream(&gw, &token, door, model).await?;
            let context = format!("{door:?} from {kind:?}: {}", reply.text());
            assert_eq!(reply.status, 200, "{context}");
            let events = events(&reply.body).context(context.clone())?;
            assert_whole(&events).context(context.clone())?;
            assert_eq!(
                content(door, &events),
                "one two three four five",
                "{context}"
            );
            let last = events.last().context("no events")?;
            match door {
                Door::Chat => assert_eq!(last.data, "[DONE]", "{context}"),
                Door::Messages => {
                    assert_eq!(last.name.as_deref(), Some("message_stop"), "{context}");
                }
            }
        }
    }
    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        vec![(200, None, 1); 6]
    );
    // The mock reports 5 completion tokens on every wire.
    assert!(
        logs.iter().all(|log| log.completion_tokens == 5),
        "{logs:?}"
    );
    gw.stop().await
}

async fn legacy_completions_cut_cleanly_end_with_an_error_event(
    backend: Backend,
) -> anyhow::Result<()> {
    for key in ["truncclean-k", "truncmid-k"] {
        let gw = gateway(backend, key).await?;
        let token = gw.create_token(json!({ "name": "faults" })).await?;
        let body = json!({ "model": "m-openai", "prompt": "hello", "stream": true });
        let reply = gw
            .post_raw("/v1/completions", Some(&token), serde_json::to_vec(&body)?)
            .await?;
        assert_eq!(reply.status, 200, "{key}: {}", reply.text());
        let events = events(&reply.body).context(key)?;
        assert_whole(&events).context(key)?;
        let code = assert_ends_with_error(Door::Chat, &events).context(key)?;
        assert_eq!(code.as_deref(), Some("stream_interrupted"), "{key}");
        let logs = gw.request_logs().await?;
        assert_eq!(
            logs.iter().map(row).collect::<Vec<_>>(),
            vec![(200, Some("stream_interrupted"), 1)],
            "{key}"
        );
        gw.stop().await?;
    }
    Ok(())
}
