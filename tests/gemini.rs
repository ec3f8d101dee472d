//! The Gemini front door (`/v1beta`) over real HTTP: each provider kind
//! (gemini passed through, OpenAI and Anthropic translated) answers
//! `generateContent`, `streamGenerateContent` and `countTokens`; tokens come
//! in `x-goog-api-key`, `?key=` or a Bearer header; every refusal is in
//! Google's error shape; and the requests are metered like the other
//! doors' (request logs = token counters = billing records).

pub mod common;

use anyhow::{Context, ensure};
use common::{Reply, TestGateway, kind_provider, sse_data};
use serde_json::{Value, json};
use switchyard::config::{Backend, PriceSettings, ProviderKind, Settings};

on_both_backends!(spend_agrees_between_logs_counters_and_billing);

const GEMINI: &str = "mock-gemini";
const OPENAI: &str = "mock-gpt";
const CLAUDE: &str = "mock-claude";
/// The mock's answer to every text request.
const ANSWER: &str = "one two three four five";

/// One provider of each kind on the mock, each serving its own model.
fn three_kinds(settings: &mut Settings, mock: &mock_upstream::MockUpstream) {
    settings.providers = vec![
        kind_provider(
            mock,
            "gemini-mock",
            ProviderKind::Gemini,
            &[GEMINI],
            &["ok-gemini"],
        ),
        kind_provider(
            mock,
            "openai-mock",
            ProviderKind::OpenaiCompatible,
            &[OPENAI],
            &["ok-openai"],
        ),
        kind_provider(
            mock,
            "claude-mock",
            ProviderKind::Anthropic,
            &[CLAUDE],
            &["ok-claude"],
        ),
    ];
}

/// A generate request: a system instruction and one user turn ("hi").
fn generate_body() -> Value {
    json!({
        "systemInstruction": { "parts": [{ "text": "be brief" }] },
        "contents": [{ "role": "user", "parts": [{ "text": "hi" }] }],
        "generationConfig": { "maxOutputTokens": 50 },
    })
}

/// The mock's prompt count for [`generate_body`]: its text bytes.
const PROMPT_BYTES: i64 = ("be brief".len() + "hi".len()) as i64;

async fn call(
    gw: &TestGateway,
    token: &str,
    model: &str,
    method: &str,
    body: &Value,
) -> anyhow::Result<Reply> {
    let path = match method {
        "streamGenerateContent" => format!("/v1beta/models/{model}:{method}?alt=sse"),
        _ => format!("/v1beta/models/{model}:{method}"),
    };
    gw.post_with_headers(&path, &[("x-goog-api-key", token)], body)
        .await
}

/// The text of a Gemini answer's first candidate.
fn answer_text(answer: &Value) -> String {
    answer
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect()
}

/// A Gemini stream's events, parsed.
fn events(reply: &Reply) -> anyhow::Result<Vec<Value>> {
    sse_data(&reply.body)
        .iter()
        .map(|data| serde_json::from_str(data).with_context(|| format!("event {data}")))
        .collect()
}

/// The status and Google's error body of a refusal.
fn google_error(reply: &Reply) -> anyhow::Result<(u16, String)> {
    let body = reply.json()?;
    let error = body.get("error").context("no error")?;
    ensure!(
        error["code"].as_u64() == Some(u64::from(reply.status.as_u16())),
        "code is not the status: {body}"
    );
    ensure!(error["message"].is_string(), "{body}");
    ensure!(body.get("type").is_none(), "not Google's shape: {body}");
    Ok((
        reply.status.as_u16(),
        error["status"].as_str().context("status")?.to_owned(),
    ))
}

#[actix_rt::test]
async fn every_provider_kind_answers_gemini_clients() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, three_kinds).await?;
    let token = gw.create_token(json!({ "name": "genai" })).await?;
    for model in [GEMINI, OPENAI, CLAUDE] {
        let reply = call(&gw, &token, model, "generateContent", &generate_body()).await?;
        ensure!(reply.status == 200, "{model}: {}", reply.text());
        let answer = reply.json()?;
        ensure!(answer_text(&answer) == ANSWER, "{model}: {answer}");
        ensure!(
            answer.pointer("/candidates/0/finishReason") == Some(&json!("STOP")),
            "{answer}"
        );
        ensure!(
            answer.pointer("/usageMetadata/promptTokenCount") == Some(&json!(PROMPT_BYTES))
                && answer.pointer("/usageMetadata/candidatesTokenCount") == Some(&json!(5)),
            "{model}: {answer}"
        );

        let reply = call(
            &gw,
            &token,
            model,
            "streamGenerateContent",
            &generate_body(),
        )
        .await?;
        ensure!(reply.status == 200, "{model}: {}", reply.text());
        ensure!(reply.header("content-type") == Some("text/event-stream"));
        let events = events(&reply)?;
        let text: String = events.iter().map(answer_text).collect();
        ensure!(text == ANSWER, "{model}: {events:?}");
        let last = events.last().context("no events")?;
        ensure!(
            last.pointer("/candidates/0/finishReason") == Some(&json!("STOP")),
            "{last}"
        );
        ensure!(
            last.pointer("/usageMetadata/promptTokenCount") == Some(&json!(PROMPT_BYTES)),
            "{model}: {last}"
        );
        ensure!(
            events.iter().all(|event| event.get("error").is_none()),
            "{events:?}"
        );
    }

    // Each upstream was reached in its own dialect, with the system
    // instruction where that dialect puts it.
    let seen = gw.mock.requests();
    let body_of = |key: &str, dialect: &str| -> anyhow::Result<Value> {
        let request = seen
            .iter()
            .find(|request| {
                request.path.contains(dialect)
                    && request.headers.iter().any(|(_, value)| value.contains(key))
            })
            .with_context(|| format!("no {dialect} call with {key}"))?;
        Ok(serde_json::from_slice(&request.body)?)
    };
    // Passed through: the client's body as it came.
    ensure!(body_of("ok-gemini", ":generateContent")? == generate_body());
    ensure!(body_of("ok-gemini", ":streamGenerateContent")? == generate_body());
    let openai = body_of("ok-openai", "/chat/completions")?;
    ensure!(
        openai["messages"][0] == json!({ "role": "system", "content": "be brief" }),
        "{openai}"
    );
    ensure!(openai["max_tokens"] == 50, "{openai}");
    let claude = body_of("ok-claude", "/messages")?;
    ensure!(
        claude["system"].to_string().contains("be brief"),
        "{claude}"
    );

    let logs = gw.request_logs().await?;
    ensure!(logs.len() == 6, "{logs:?}");
    for row in &logs {
        ensure!(row.status == 200, "{row:?}");
        ensure!(
            row.endpoint == "/v1beta/models/{model}:generateContent",
            "{row:?}"
        );
        ensure!(
            row.prompt_tokens == PROMPT_BYTES && row.completion_tokens == 5,
            "{row:?}"
        );
        ensure!(!row.tokens_estimated, "{row:?}");
    }
    ensure!(logs.iter().filter(|row| row.stream).count() == 3);
    gw.stop().await
}

/// An upstream that falls silent mid-stream: the Gemini client's stream
/// ends with Google's timeout, 504 `DEADLINE_EXCEEDED`, not an internal
/// error, after the text that came.
#[actix_rt::test]
async fn a_stalled_stream_ends_with_deadline_exceeded() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        settings.providers = vec![kind_provider(
            mock,
            "stalls",
            ProviderKind::OpenaiCompatible,
            &[OPENAI],
            &["streamhang-gemini"],
        )];
        settings.upstream.stream_idle_timeout = std::time::Duration::from_millis(300);
    })
    .await?;
    let token = gw.create_token(json!({ "name": "genai" })).await?;
    let reply = call(
        &gw,
        &token,
        OPENAI,
        "streamGenerateContent",
        &generate_body(),
    )
    .await?;
    ensure!(reply.status == 200, "{}", reply.text());
    let events = events(&reply)?;
    let text: String = events.iter().map(answer_text).collect();
    ensure!(text == "one", "{events:?}");
    let last = events.last().context("no events")?;
    ensure!(
        last.pointer("/error/code") == Some(&json!(504))
            && last.pointer("/error/status") == Some(&json!("DEADLINE_EXCEEDED")),
        "{last}"
    );
    Ok(())
}

#[actix_rt::test]
async fn function_calls_and_results_cross_every_kind() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, three_kinds).await?;
    let token = gw.create_token(json!({ "name": "tools" })).await?;
    let tools = json!([{ "functionDeclarations": [{
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": { "type": "OBJECT", "properties": { "city": { "type": "STRING" } }, "required": ["city"] },
    }] }]);
    for model in [GEMINI, OPENAI, CLAUDE] {
        for method in ["generateContent", "streamGenerateContent"] {
            let body = json!({
                "contents": [{ "role": "user", "parts": [{ "text": "weather in Paris?" }] }],
                "tools": tools,
            });
            let reply = call(&gw, &token, model, method, &body).await?;
            ensure!(reply.status == 200, "{model} {method}: {}", reply.text());
            let answers = match method {
                "generateContent" => vec![reply.json()?],
                _ => events(&reply)?,
            };
            let function_call = answers
                .iter()
                .filter_map(|answer| answer.pointer("/candidates/0/content/parts"))
                .filter_map(Value::as_array)
                .flatten()
                .find_map(|part| part.get("functionCall"))
                .with_context(|| format!("{model} {method}: no functionCall in {answers:?}"))?
                .clone();
            ensure!(function_call["name"] == "get_weather", "{function_call}");
            ensure!(
                function_call["args"] == json!({ "arg": "value" }),
                "{function_call}"
            );
            ensure!(
                answers
                    .last()
                    .and_then(|last| last.pointer("/candidates/0/finishReason"))
                    == Some(&json!("STOP")),
                "{answers:?}"
            );

            // The result goes back with the call, by id where there is one.
            let mut response = json!({ "name": "get_weather", "response": { "temperature": 18 } });
            if let Some(id) = function_call.get("id") {
                response["id"] = id.clone();
            }
            let body = json!({
                "contents": [
                    { "role": "user", "parts": [{ "text": "weather in Paris?" }] },
                    { "role": "model", "parts": [{ "functionCall": function_call }] },
                    { "role": "user", "parts": [{ "functionResponse": response }] },
                ],
                "tools": tools,
            });
            let reply = call(&gw, &token, model, method, &body).await?;
            ensure!(
                reply.status == 200,
                "{model} {method} with a result: {}",
                reply.text()
            );
        }
    }
    // The OpenAI upstream saw the result as a tool message answering the call.
    let seen = gw.mock.requests();
    let tool_message = seen
        .iter()
        .filter(|request| request.path.ends_with("/chat/completions"))
        .filter_map(|request| serde_json::from_slice::<Value>(&request.body).ok())
        .find_map(|body| {
            let messages = body["messages"].as_array()?.clone();
            let call_id = messages.get(1)?.pointer("/tool_calls/0/id")?.clone();
            let tool = messages.get(2)?.clone();
            (tool["tool_call_id"] == call_id).then_some(tool)
        })
        .context("no tool message answering its call reached the OpenAI upstream")?;
    ensure!(
        tool_message["content"] == "{\"temperature\":18}",
        "{tool_message}"
    );
    gw.stop().await
}

#[actix_rt::test]
async fn tokens_come_three_ways_and_refusals_are_in_googles_shape() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        three_kinds(settings, mock);
        settings.providers.push(kind_provider(
            mock,
            "gemini-limited",
            ProviderKind::Gemini,
            &["mock-gemini-limited"],
            &["r429-gemini"],
        ));
    })
    .await?;
    let token = gw.create_token(json!({ "name": "auth" })).await?;
    let body = serde_json::to_vec(&generate_body())?;
    let path = format!("/v1beta/models/{GEMINI}:generateContent");
    let post = |headers: Vec<(&'static str, String)>, path: String| {
        let body = body.clone();
        let gw = &gw;
        async move {
            let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
            all.extend(headers.iter().map(|(name, value)| (*name, value.as_str())));
            gw.send(awc::http::Method::POST, &path, &all, Some(body))
                .await
        }
    };
    for (how, headers, path) in [
        (
            "x-goog-api-key",
            vec![("x-goog-api-key", token.clone())],
            path.clone(),
        ),
        ("?key=", vec![], format!("{path}?key={token}")),
        (
            "Bearer",
            vec![("authorization", format!("Bearer {token}"))],
            path.clone(),
        ),
    ] {
        let reply = post(headers, path).await?;
        ensure!(reply.status == 200, "{how}: {}", reply.text());
    }
    // `?key=` is the Gemini door's only...
    let reply = gw
        .send(
            awc::http::Method::POST,
            &format!("/v1/chat/completions?key={token}"),
            &[("content-type", "application/json")],
            Some(serde_json::to_vec(&common::chat_body(OPENAI, "hi"))?),
        )
        .await?;
    ensure!(reply.status == 401, "{}", reply.text());
    // ...which includes Google's v1, whose model list shares OpenAI's path:
    // a Google-style token gets Google's shape, a Bearer one OpenAI's.
    let reply = gw
        .send(
            awc::http::Method::GET,
            &format!("/v1/models?key={token}"),
            &[],
            None,
        )
        .await?;
    ensure!(reply.json()?["models"].is_array(), "{}", reply.text());
    let reply = gw.get("/v1/models", Some(&token)).await?;
    ensure!(reply.json()?["object"] == "list", "{}", reply.text());
    let v1 = format!("/v1/models/{GEMINI}:generateContent");
    let reply = post(vec![("x-goog-api-key", token.clone())], v1).await?;
    ensure!(reply.status == 200, "Google's v1: {}", reply.text());

    let refusals = [
        (post(vec![], path.clone()).await?, 401, "UNAUTHENTICATED"),
        (
            post(vec![("x-goog-api-key", "sy-wrong".to_owned())], path.clone()).await?,
            401,
            "UNAUTHENTICATED",
        ),
        (
            call(&gw, &token, GEMINI, "generateContent", &json!({ "contents": [] })).await?,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            gw.send(
                awc::http::Method::POST,
                &path,
                &[("x-goog-api-key", &token)],
                Some(b"{not json".to_vec()),
            )
            .await?,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            call(&gw, &token, "no-such-model", "generateContent", &generate_body()).await?,
            404,
            "NOT_FOUND",
        ),
        (
            call(&gw, &token, GEMINI, "embedContent", &generate_body()).await?,
            404,
            "NOT_FOUND",
        ),
        // Google Search is Gemini's own: refused by the other kinds...
        (
            call(
                &gw,
                &token,
                OPENAI,
                "generateContent",
                &json!({ "contents": generate_body()["contents"], "tools": [{ "googleSearch": {} }] }),
            )
            .await?,
            400,
            "INVALID_ARGUMENT",
        ),
        // The upstream's own refusal, relayed in its shape.
        (
            call(&gw, &token, "mock-gemini-limited", "generateContent", &generate_body()).await?,
            429,
            "RESOURCE_EXHAUSTED",
        ),
    ];
    for (reply, status, name) in &refusals {
        ensure!(
            google_error(reply)? == (*status, (*name).to_owned()),
            "expected {status} {name}, got {} {}",
            reply.status,
            reply.text()
        );
    }
    // ...and passed through to Gemini upstreams.
    let search =
        json!({ "contents": generate_body()["contents"], "tools": [{ "googleSearch": {} }] });
    let reply = call(&gw, &token, GEMINI, "generateContent", &search).await?;
    ensure!(reply.status == 200, "{}", reply.text());

    // A model the token may not use is refused before any upstream call.
    let limited = gw
        .create_token(json!({ "name": "gpt-only", "allowed_models": [OPENAI] }))
        .await?;
    let reply = call(&gw, &limited, GEMINI, "generateContent", &generate_body()).await?;
    ensure!(
        google_error(&reply)? == (403, "PERMISSION_DENIED".to_owned()),
        "{}",
        reply.text()
    );
    gw.stop().await
}

#[actix_rt::test]
async fn count_tokens_is_exact_from_gemini_and_estimated_elsewhere() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, three_kinds).await?;
    let token = gw.create_token(json!({ "name": "count" })).await?;
    let contents = json!({ "contents": generate_body()["contents"] });
    let reply = call(&gw, &token, GEMINI, "countTokens", &contents).await?;
    ensure!(reply.status == 200, "{}", reply.text());
    ensure!(
        reply.json()? == json!({ "totalTokens": 2 }),
        "{}",
        reply.text()
    );
    // The wrapped form names its model; the upstream's name is put in.
    let wrapped = json!({ "generateContentRequest": {
        "model": format!("models/{GEMINI}"),
        "contents": generate_body()["contents"],
        "systemInstruction": generate_body()["systemInstruction"],
    } });
    let reply = call(&gw, &token, GEMINI, "countTokens", &wrapped).await?;
    ensure!(
        reply.json()? == json!({ "totalTokens": PROMPT_BYTES }),
        "{}",
        reply.text()
    );
    for model in [OPENAI, CLAUDE] {
        let reply = call(&gw, &token, model, "countTokens", &contents).await?;
        ensure!(reply.status == 200, "{model}: {}", reply.text());
        let counted = reply.json()?["totalTokens"]
            .as_i64()
            .context("totalTokens")?;
        ensure!(counted >= 1, "{model}: {counted}");
    }
    let reply = call(
        &gw,
        &token,
        GEMINI,
        "countTokens",
        &json!({ "contents": 3 }),
    )
    .await?;
    ensure!(google_error(&reply)? == (400, "INVALID_ARGUMENT".to_owned()));

    let counts = gw.mock.requests();
    ensure!(
        counts
            .iter()
            .filter(|request| request.path.ends_with(":countTokens"))
            .count()
            == 2,
        "only the Gemini upstream counts"
    );
    let logs = gw.request_logs().await?;
    ensure!(logs.len() == 5, "{logs:?}");
    ensure!(
        logs.iter()
            .all(|row| row.endpoint == "/v1beta/models/{model}:countTokens"),
        "{logs:?}"
    );
    ensure!(logs.iter().filter(|row| row.status == 200).count() == 4);
    gw.stop().await
}

#[actix_rt::test]
async fn models_are_listed_in_googles_shape() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, three_kinds).await?;
    let token = gw.create_token(json!({ "name": "all" })).await?;
    let reply = gw
        .send(
            awc::http::Method::GET,
            "/v1beta/models",
            &[("x-goog-api-key", &token)],
            None,
        )
        .await?;
    ensure!(reply.status == 200, "{}", reply.text());
    let listed = reply.json()?;
    let names: Vec<&str> = listed["models"]
        .as_array()
        .context("models")?
        .iter()
        .filter_map(|model| model["name"].as_str())
        .collect();
    for model in [GEMINI, OPENAI, CLAUDE] {
        ensure!(
            names.contains(&format!("models/{model}").as_str()),
            "{names:?}"
        );
    }
    ensure!(
        listed["models"][0]["supportedGenerationMethods"]
            .as_array()
            .is_some_and(|methods| methods.contains(&json!("generateContent"))),
        "{listed}"
    );

    let reply = gw
        .send(
            awc::http::Method::GET,
            &format!("/v1beta/models/{OPENAI}"),
            &[("x-goog-api-key", &token)],
            None,
        )
        .await?;
    ensure!(
        reply.json()?["name"] == format!("models/{OPENAI}"),
        "{}",
        reply.text()
    );

    let limited = gw
        .create_token(json!({ "name": "gpt-only", "allowed_models": [OPENAI] }))
        .await?;
    let reply = gw
        .send(
            awc::http::Method::GET,
            "/v1beta/models",
            &[("x-goog-api-key", &limited)],
            None,
        )
        .await?;
    ensure!(
        reply.json()?["models"].as_array().map(Vec::len) == Some(1),
        "{}",
        reply.text()
    );
    let reply = gw
        .send(
            awc::http::Method::GET,
            &format!("/v1beta/models/{GEMINI}"),
            &[("x-goog-api-key", &limited)],
            None,
        )
        .await?;
    ensure!(
        google_error(&reply)? == (404, "NOT_FOUND".to_owned()),
        "{}",
        reply.text()
    );
    let reply = gw
        .send(awc::http::Method::GET, "/v1beta/models", &[], None)
        .await?;
    ensure!(google_error(&reply)? == (401, "UNAUTHENTICATED".to_owned()));
    gw.stop().await
}

/// One token = 1,000,000 nano-USD ($1,000 per million tokens, both ways).
const NANOS_PER_TOKEN: i64 = 1_000_000;

/// Every kind, streamed and not, through the Gemini door, with a price
/// multiplier: the request logs, the token's counters and its billing
/// records agree to the nano-dollar.
async fn spend_agrees_between_logs_counters_and_billing(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        three_kinds(settings, mock);
        settings.prices = [GEMINI, OPENAI, CLAUDE]
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
    let token = gw
        .create_token(json!({ "name": "billed", "budget_usd": 1000.0, "price_multiplier": 1.5 }))
        .await?;
    for model in [GEMINI, OPENAI, CLAUDE] {
        for method in ["generateContent", "streamGenerateContent"] {
            let reply = call(&gw, &token, model, method, &generate_body()).await?;
            ensure!(reply.status == 200, "{model} {method}: {}", reply.text());
        }
    }
    let logs = gw.request_logs().await?;
    ensure!(logs.len() == 6, "{logs:?}");
    let id = logs[0].token_id.context("token id")?;
    gw.gateway()?.enforcer.give_back_slices().await;
    let db = &gw.gateway()?.db;
    let row = db.get_token(id).await?.context("token")?;
    let logged: i64 = logs.iter().map(|log| log.cost_nanos).sum();
    let (charges, charged) = db.token_charges(id).await?;
    let tokens = PROMPT_BYTES + 5;
    ensure!(logged == 6 * tokens * NANOS_PER_TOKEN * 3 / 2, "{logged}");
    ensure!(row.spent_nanos == logged, "{row:?}");
    ensure!(
        charged == logged && charges == 6,
        "{charges} charges of {charged}"
    );
    ensure!(row.spent_tokens == 6 * tokens, "{row:?}");
    ensure!(row.reserved_nanos == 0, "{row:?}");
    gw.stop().await
}
