//! The offline demo upstream (`kind = "echo"`, `providers::echo`) on the
//! real server: a gateway whose only provider is an echo answers chat
//! completions, streamed or not, through the OpenAI and Anthropic front
//! doors, without a single upstream call, and records and meters them like
//! any provider's (usage rows on both backends); `settings/demo.toml` starts
//! as the README's quick start says and answers.

pub mod common;

use anyhow::{Context, bail, ensure};
use awc::http::StatusCode;
use common::process::{BINARY, free_port};
use common::{TestGateway, sse_data};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard::config::{
    Backend, KeySettings, PriceSettings, ProviderKind, ProviderSettings, RetrySettings, Secret,
};

on_both_backends!(an_echo_only_gateway_answers_both_doors_and_writes_usage_rows);

fn echo_provider() -> ProviderSettings {
    ProviderSettings {
        name: "demo".to_owned(),
        kind: ProviderKind::Echo,
        base_url: String::new(),
        api_version: None,
        keys: vec![KeySettings::Plain(Secret::new("local"))],
        models: vec!["demo-echo".to_owned()],
        headers: Default::default(),
        strategy: Default::default(),
        retry: RetrySettings::default(),
        max_in_flight_per_key: 0,
        weight: 1,
        enabled: true,
    }
}

/// The text of the content deltas of an OpenAI stream.
fn openai_stream_text(body: &[u8]) -> anyhow::Result<(String, bool)> {
    let mut text = String::new();
    let mut done = false;
    for data in sse_data(body) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let event: Value = serde_json::from_str(&data)?;
        if let Some(piece) = event
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            text.push_str(piece);
        }
    }
    Ok((text, done))
}

async fn an_echo_only_gateway_answers_both_doors_and_writes_usage_rows(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, _| {
        settings.providers = vec![echo_provider()];
        settings.prices = vec![PriceSettings {
            model: "demo-echo".to_owned(),
            input_per_mtok: 0.0,
            output_per_mtok: 0.0,
            ..Default::default()
        }];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "demo" })).await?;

    // OpenAI, not streamed.
    let said = "Hello from the demo, twice: hello!";
    let reply = gw
        .chat(
            &token,
            json!({"model": "demo-echo", "messages": [
                {"role": "system", "content": "You are a parrot."},
                {"role": "user", "content": said},
            ]}),
        )
        .await?;
    ensure!(
        reply.status == StatusCode::OK,
        "{} {}",
        reply.status,
        reply.text()
    );
    let answer = reply.json()?;
    ensure!(
        answer["choices"][0]["message"]["content"] == said,
        "{answer}"
    );
    ensure!(answer["choices"][0]["finish_reason"] == "stop", "{answer}");
    ensure!(answer["model"] == "demo-echo", "{answer}");
    ensure!(
        answer["usage"]["completion_tokens"].as_i64() > Some(0),
        "{answer}"
    );
    ensure!(reply.header("x-switchyard-provider") == Some("demo"));

    // OpenAI, streamed, with the usage chunk asked for.
    let reply = gw
        .chat(
            &token,
            json!({"model": "demo-echo", "stream": true,
                   "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "one two three"}]}),
        )
        .await?;
    ensure!(
        reply.status == StatusCode::OK,
        "{} {}",
        reply.status,
        reply.text()
    );
    let (text, done) = openai_stream_text(&reply.body)?;
    ensure!(text == "one two three" && done, "{}", reply.text());
    ensure!(
        reply.text().contains("\"usage\""),
        "no usage chunk: {}",
        reply.text()
    );

    // Anthropic's front door, through the same translation as any
    // OpenAI-shaped provider.
    let anthropic = [
        ("x-api-key", token.as_str()),
        ("anthropic-version", "2023-06-01"),
    ];
    let reply = gw
        .post_with_headers(
            "/v1/messages",
            &anthropic,
            &json!({"model": "demo-echo", "max_tokens": 64,
                    "messages": [{"role": "user", "content": "Bonjour"}]}),
        )
        .await?;
    ensure!(
        reply.status == StatusCode::OK,
        "{} {}",
        reply.status,
        reply.text()
    );
    let answer = reply.json()?;
    ensure!(answer["type"] == "message", "{answer}");
    ensure!(answer["content"][0]["text"] == "Bonjour", "{answer}");
    ensure!(
        answer["usage"]["output_tokens"].as_i64() > Some(0),
        "{answer}"
    );
    let reply = gw
        .post_with_headers(
            "/v1/messages",
            &anthropic,
            &json!({"model": "demo-echo", "max_tokens": 64, "stream": true,
                    "messages": [{"role": "user", "content": "streamed bonjour"}]}),
        )
        .await?;
    ensure!(
        reply.status == StatusCode::OK,
        "{} {}",
        reply.status,
        reply.text()
    );
    let mut text = String::new();
    let mut stopped = false;
    for data in sse_data(&reply.body) {
        let event: Value = serde_json::from_str(&data)?;
        if let Some(piece) = event.pointer("/delta/text").and_then(Value::as_str) {
            text.push_str(piece);
        }
        stopped |= event["type"] == "message_stop";
    }
    ensure!(text == "streamed bonjour" && stopped, "{}", reply.text());

    // What it cannot answer is refused, not sent anywhere.
    let reply = gw
        .post_with_headers(
            "/v1/embeddings",
            &[("authorization", &format!("Bearer {token}"))],
            &json!({"model": "demo-echo", "input": "x"}),
        )
        .await?;
    ensure!(
        reply.status.is_client_error(),
        "{} {}",
        reply.status,
        reply.text()
    );

    // Added live through the admin API (no base_url), it answers at once.
    let admin = gw.admin_client();
    admin
        .add_provider(json!({"name": "echo2", "kind": "echo",
                             "keys": [{"key": "local"}], "models": ["echo-two"]}))
        .await?;
    let reply = gw
        .chat(
            &token,
            json!({"model": "echo2/echo-two", "messages": [{"role": "user", "content": "live"}]}),
        )
        .await?;
    ensure!(
        reply.status == StatusCode::OK,
        "{} {}",
        reply.status,
        reply.text()
    );
    ensure!(reply.json()?["choices"][0]["message"]["content"] == "live");
    // Other kinds still need their URL.
    let (status, _) = admin
        .call(
            awc::http::Method::POST,
            "/admin/providers",
            Some(json!({"name": "nourl", "kind": "openai", "keys": [{"key": "k"}]})),
        )
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status}");

    // Nothing reached any upstream.
    ensure!(
        gw.mock.total_calls() == 0,
        "{} upstream calls",
        gw.mock.total_calls()
    );

    // Recorded and metered like any provider's answer.
    let rows: Vec<_> = gw
        .request_logs()
        .await?
        .into_iter()
        .filter(|row| row.status == 200)
        .collect();
    ensure!(rows.len() == 5, "{} rows with 200", rows.len());
    for row in &rows {
        ensure!(
            matches!(row.provider.as_deref(), Some("demo" | "echo2")),
            "{:?}",
            row.provider
        );
        ensure!(row.key_id.is_some(), "no key id");
        ensure!(
            row.prompt_tokens > 0 && row.completion_tokens > 0,
            "{row:?}"
        );
        ensure!(row.cost_nanos == 0, "{row:?}");
        ensure!(
            row.priced || row.provider.as_deref() == Some("echo2"),
            "{row:?}"
        );
        ensure!(row.attempts == 1, "{row:?}");
    }
    ensure!(rows.iter().filter(|row| row.stream).count() == 2);
    gw.stop().await
}

#[actix_rt::test]
async fn the_demo_settings_file_starts_and_answers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/settings/demo.toml");
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BINARY)
        .current_dir(dir.path())
        .args(["serve", "--config", demo])
        .env_remove("SWITCHYARD_CONFIG")
        .env("SWITCHYARD__SERVER__LISTEN", &listen)
        .stdout(Stdio::from(std::fs::File::create(
            dir.path().join("gateway.out"),
        )?))
        .stderr(Stdio::from(std::fs::File::create(
            dir.path().join("gateway.log"),
        )?))
        .spawn()?;
    let result = async {
        let url = format!("http://{listen}");
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
                bail!("the demo exited during start ({status}):\n{log}");
            }
            if let Ok(response) = client.get(format!("{url}/healthz")).send().await
                && response.status().is_success()
            {
                break;
            }
            ensure!(Instant::now() < deadline, "the demo did not start in 30 s");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(dir.path().join("data/demo.db").exists(), "no data/demo.db");
        // The first start's next steps try the model this deployment serves.
        let printed = std::fs::read_to_string(dir.path().join("gateway.out"))?;
        ensure!(
            printed.contains(r#"-d '{"model":"demo-echo","#),
            "the next steps do not try demo-echo:\n{printed}"
        );
        // The quick start's steps: a token with the generated master key,
        // then a completion.
        let master = std::fs::read_to_string(dir.path().join("data/master.key"))?;
        let mut created = client
            .post(format!("{url}/admin/tokens"))
            .insert_header(("authorization", format!("Bearer {}", master.trim())))
            .send_json(&json!({"name": "my-app"}))
            .await
            .map_err(|error| anyhow::anyhow!("creating a token: {error}"))?;
        ensure!(
            created.status() == StatusCode::CREATED,
            "{}",
            created.status()
        );
        let created: Value = created.json().await?;
        let token = created["token"].as_str().context("no token")?;
        let mut reply = client
            .post(format!("{url}/v1/chat/completions"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&json!({"model": "demo-echo",
                "messages": [{"role": "user", "content": "Hello"}]}))
            .await
            .map_err(|error| anyhow::anyhow!("chat: {error}"))?;
        ensure!(reply.status() == StatusCode::OK, "{}", reply.status());
        let answer: Value = reply.json().await?;
        ensure!(
            answer["choices"][0]["message"]["content"] == "Hello",
            "{answer}"
        );
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
