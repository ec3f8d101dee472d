//! `POST /v1/responses` and `GET`/`DELETE /v1/responses/{id}` on the real
//! gateway over the mock upstream: passthrough to an `openai` provider,
//! translation for the other kinds, the stored-id bookkeeping (on both
//! backends, across instances), `previous_response_id`, failover and the
//! billing identity of these requests.

pub mod common;

use anyhow::Context;
use awc::http::Method;
use common::{Reply, TestGateway, kind_provider};
use serde_json::{Value, json};
use switchyard::config::{Backend, ModelSettings, PriceSettings, ProviderKind, Settings};

on_both_backends!(
    stored_ids_are_read_and_deleted_at_the_provider_that_made_them,
    responses_requests_are_billed_like_chat,
);

const NATIVE: &str = "gpt-native";
const CLAUDE: &str = "claude-like";

/// One `openai` provider (passthrough) and one `anthropic` (translated).
fn two_kinds(settings: &mut Settings, mock: &mock_upstream::MockUpstream) {
    settings.providers = vec![
        kind_provider(
            mock,
            "native",
            ProviderKind::Openai,
            &[NATIVE],
            &["ok-native"],
        ),
        kind_provider(
            mock,
            "claude",
            ProviderKind::Anthropic,
            &[CLAUDE],
            &["ok-claude"],
        ),
    ];
}

fn request(model: &str, stream: bool) -> Value {
    json!({ "model": model, "instructions": "be brief", "input": "hi", "stream": stream })
}

async fn post(gw: &TestGateway, token: &str, body: &Value) -> anyhow::Result<Reply> {
    gw.post_raw("/v1/responses", Some(token), serde_json::to_vec(body)?)
        .await
}

/// The events of a Responses stream: (`event:` name, data).
fn events(reply: &Reply) -> anyhow::Result<Vec<(String, Value)>> {
    reply
        .text()
        .split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let name = event
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
                .context("an event without a name")?;
            let data = event
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .context("an event without data")?;
            Ok((name.to_owned(), serde_json::from_str(data)?))
        })
        .collect()
}

/// The mock's last request: its path and JSON body.
fn last_upstream(gw: &TestGateway) -> anyhow::Result<(String, Value)> {
    let request = gw.mock.requests().pop().context("no upstream request")?;
    let body = request.json().unwrap_or(Value::Null);
    Ok((request.path, body))
}

#[actix_rt::test]
async fn an_openai_provider_gets_the_request_as_it_came() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, two_kinds).await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let mut body = request(NATIVE, false);
    body["reasoning"] = json!({ "effort": "low" });
    body["tools"] = json!([{ "type": "web_search" }]);
    let reply = post(&gw, &token, &body).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    assert!(
        answer["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("resp_mock_"))
    );
    assert_eq!(answer["usage"]["output_tokens"], 5);
    let (path, sent) = last_upstream(&gw)?;
    assert_eq!(path, "/v1/responses");
    // Untouched but for the model: built-in tools and unknown fields reach it.
    assert_eq!(sent, body);

    let reply = post(&gw, &token, &request(NATIVE, true)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = events(&reply)?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert!(names.contains(&"response.output_text.delta"), "{names:?}");
    gw.stop().await
}

#[actix_rt::test]
async fn an_anthropic_provider_is_reached_through_chat_translation() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, two_kinds).await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let reply = post(&gw, &token, &request(CLAUDE, false)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["status"], "completed");
    assert_eq!(
        answer["output"][0]["content"][0]["text"],
        "one two three four five"
    );
    assert_eq!(answer["usage"]["output_tokens"], 5);
    let (path, sent) = last_upstream(&gw)?;
    assert_eq!(path, "/v1/messages");
    assert_eq!(sent["system"], "be brief");
    assert_eq!(
        sent["messages"],
        json!([{ "role": "user", "content": "hi" }])
    );

    let reply = post(&gw, &token, &request(CLAUDE, true)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = events(&reply)?;
    let numbers: Vec<u64> = events
        .iter()
        .filter_map(|(_, data)| data["sequence_number"].as_u64())
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .filter_map(|(_, data)| data["delta"].as_str())
        .collect();
    assert_eq!(text, "one two three four five");
    let (name, done) = events.last().context("no events")?;
    assert_eq!(name, "response.completed");
    assert_eq!(done["response"]["usage"]["output_tokens"], 5);

    // What chat cannot carry is refused in OpenAI's shape, naming the field.
    let mut continued = request(CLAUDE, false);
    continued["previous_response_id"] = json!("resp_elsewhere");
    let reply = post(&gw, &token, &continued).await?;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.json()?["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("previous_response_id"))
    );
    gw.stop().await
}

#[actix_rt::test]
async fn bad_requests_are_400s_in_openai_shape() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, two_kinds).await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    for body in [
        json!({ "input": "hi" }),
        json!({ "model": NATIVE, "input": 7 }),
        json!({ "model": NATIVE, "input": "hi", "stream": "yes" }),
        json!({ "model": NATIVE, "input": "hi", "max_output_tokens": 0 }),
        json!([1, 2]),
    ] {
        let reply = post(&gw, &token, &body).await?;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(
            reply.json()?["error"]["message"].is_string(),
            "{}",
            reply.text()
        );
    }
    let reply = gw
        .post_raw("/v1/responses", Some(&token), b"{not json".to_vec())
        .await?;
    assert_eq!(reply.status, 400);
    let reply = gw
        .post_raw(
            "/v1/responses",
            None,
            serde_json::to_vec(&request(NATIVE, false))?,
        )
        .await?;
    assert_eq!(reply.status, 401);
    assert_eq!(gw.mock.total_calls(), 0);
    gw.stop().await
}

#[actix_rt::test]
async fn a_failing_key_fails_over_invisibly() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        settings.providers = vec![kind_provider(
            mock,
            "native",
            ProviderKind::Openai,
            &[NATIVE],
            &["e500-a", "ok-b"],
        )];
        settings.providers[0].strategy = switchyard_actors::KeyStrategy::FirstAvailable;
    })
    .await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    for stream in [false, true] {
        let reply = post(&gw, &token, &request(NATIVE, stream)).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The 500 comes before any byte reached the client: retried on the
        // next key, the answer whole.
        assert_eq!(reply.header("x-switchyard-attempts"), Some("2"));
    }
    gw.stop().await
}

/// A response made through one provider is read and deleted there (and
/// from another instance sharing the database); another token, an unknown
/// id, and a deleted id are 404s; `previous_response_id` goes back to the
/// provider that holds it, whichever provider would be next otherwise.
async fn stored_ids_are_read_and_deleted_at_the_provider_that_made_them(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            kind_provider(mock, "east", ProviderKind::Openai, &[NATIVE], &["ok-east"]),
            kind_provider(mock, "west", ProviderKind::Openai, &[NATIVE], &["ok-west"]),
        ];
        // Alternate between the two, so ids are made on both and a
        // continuation would land on the wrong one half the time unpinned.
        settings.models.insert(
            NATIVE.to_owned(),
            ModelSettings {
                strategy: switchyard_actors::KeyStrategy::RoundRobin,
                fallbacks: Vec::new(),
            },
        );
    })
    .await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let other = gw.create_token(json!({ "name": "other" })).await?;
    let mut made = Vec::new();
    for stream in [false, true, false, true] {
        let reply = post(&gw, &token, &request(NATIVE, stream)).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let provider = reply
            .header("x-switchyard-provider")
            .context("provider")?
            .to_owned();
        let id = if stream {
            events(&reply)?
                .first()
                .and_then(|(_, data)| data["response"]["id"].as_str().map(str::to_owned))
        } else {
            reply.json()?["id"].as_str().map(str::to_owned)
        }
        .context("no id")?;
        made.push((id, provider));
    }
    for (id, provider) in &made {
        let path = format!("/v1/responses/{id}");
        for _ in 0..3 {
            let reply = gw.get(&path, Some(&token)).await?;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.json()?["id"], json!(id));
            assert_eq!(
                reply.header("x-switchyard-provider"),
                Some(provider.as_str())
            );
            let (seen, _) = last_upstream(&gw)?;
            assert_eq!(seen, path);
            assert_eq!(
                gw.mock
                    .requests()
                    .pop()
                    .and_then(|r| r.header("authorization").map(str::to_owned)),
                Some(format!("Bearer ok-{provider}"))
            );
        }
        let reply = gw.get(&path, Some(&other)).await?;
        assert_eq!(reply.status, 404, "another token's id: {}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("not_found"));

        // The continuation is pinned to the holder (round robin alone would
        // send every other request elsewhere).
        for _ in 0..2 {
            let mut next = request(NATIVE, false);
            next["previous_response_id"] = json!(id);
            let reply = post(&gw, &token, &next).await?;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(
                reply.header("x-switchyard-provider"),
                Some(provider.as_str())
            );
            let (_, sent) = last_upstream(&gw)?;
            assert_eq!(sent["previous_response_id"], json!(id));
        }
    }
    let providers: std::collections::HashSet<&str> =
        made.iter().map(|(_, provider)| provider.as_str()).collect();
    assert_eq!(providers.len(), 2, "ids made on both providers: {made:?}");
    for unknown in ["resp_never_made", "resp%00nul", "%E2%9C%93"] {
        let reply = gw
            .get(&format!("/v1/responses/{unknown}"), Some(&token))
            .await?;
        assert_eq!(reply.status, 404, "{unknown}: {}", reply.text());
    }
    // An id the gateway cannot know (here one PostgreSQL could not even
    // store) goes wherever the model routes.
    let mut odd = request(NATIVE, false);
    odd["previous_response_id"] = json!("resp_\u{0}");
    let reply = post(&gw, &token, &odd).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let (first, _) = made.first().context("made")?;
    if backend == Backend::Postgres {
        // Another instance sharing the database knows the owner too.
        let (second, url) = gw.start_another_instance().await?;
        let mut response = gw
            .client
            .get(format!("{url}/v1/responses/{first}"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        assert_eq!(response.status(), 200);
        let _ = response.body().await;
        second.stop().await?;
    }
    let path = format!("/v1/responses/{first}");
    let reply = gw
        .send(
            Method::DELETE,
            &path,
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?["deleted"], true);
    assert_eq!(last_upstream(&gw)?.0, path);
    let reply = gw.get(&path, Some(&token)).await?;
    assert_eq!(reply.status, 404, "deleted: {}", reply.text());

    // Every call left its usage row.
    let logs = gw.request_logs().await?;
    assert!(
        logs.iter()
            .any(|row| row.endpoint == "/v1/responses/{id}" && row.status == 404)
    );
    gw.stop().await
}

/// Responses calls through both kinds, whole and streamed: the request
/// logs, the token's counters and its billing records agree, and the
/// tokens are the upstream's own figures.
async fn responses_requests_are_billed_like_chat(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        two_kinds(settings, mock);
        settings.prices = [NATIVE, CLAUDE]
            .iter()
            .map(|model| PriceSettings {
                model: (*model).to_owned(),
                input_per_mtok: 1000.0,
                output_per_mtok: 1000.0,
                ..PriceSettings::default()
            })
            .collect();
    })
    .await?;
    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/tokens",
            Some(json!({ "name": "billed", "budget_usd": 100.0 })),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().context("token")?.to_owned();
    let id = created["id"].as_i64().context("id")?;
    for model in [NATIVE, CLAUDE] {
        for stream in [false, true] {
            let reply = post(&gw, &token, &request(model, stream)).await?;
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    }
    let logs = gw.request_logs().await?;
    gw.gateway()?.enforcer.give_back_slices().await;
    let rows: Vec<(&str, i64, i64, bool)> = logs
        .iter()
        .map(|row| {
            (
                row.endpoint.as_str(),
                row.prompt_tokens,
                row.completion_tokens,
                row.tokens_estimated,
            )
        })
        .collect();
    // The mock counts "be brief" + "hi" (10 bytes) as the prompt, both ways.
    assert_eq!(rows, vec![("/v1/responses", 10, 5, false); 4], "{logs:?}");
    let logged: i64 = logs.iter().map(|row| row.cost_nanos).sum();
    assert_eq!(logged, 4 * 15 * 1_000_000);
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token row")?;
    let (charges, charged) = db.token_charges(id).await?;
    assert_eq!(row.spent_nanos, logged);
    assert_eq!(row.spent_tokens, 4 * 15);
    assert_eq!(charged, logged);
    assert_eq!(charges, 4);
    gw.stop().await
}
