//! Provider supervision, background probes and model fallback chains,
//! through the real server against the mock upstream.

pub mod common;

use anyhow::{Context, ensure};
use awc::http::Method;
use common::{TestGateway, chat_body, mock_provider, stream_chat_body};
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard::config::{Backend, ModelSettings};
use switchyard::crypto::{SecretCipher, fingerprint};
use switchyard::db::NewProviderKey;
use switchyard_actors::{GetRestarts, InjectProviderPanic, KeyStrategy, ProviderRunning};

on_both_backends!(
    a_panicking_provider_restarts_with_its_keys_reloaded,
    probes_bring_an_open_circuit_back,
    a_model_falls_back_along_its_chain,
    round_robin_spreads_a_model_over_its_providers,
);

async fn a_panicking_provider_restarts_with_its_keys_reloaded(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers.push(mock_provider(
            mock,
            "other",
            &["other-gpt"],
            &["slow300-other"],
        ));
    })
    .await?;
    let token = gw.create_token(json!({ "name": "supervision" })).await?;
    let gateway = gw.gateway()?;

    // A key added straight to the database after start: only a reload finds it.
    let provider = gateway
        .db
        .get_provider_by_name("mock")
        .await?
        .context("no provider row")?;
    let cipher = SecretCipher::new("test-secret-key");
    gateway
        .db
        .upsert_provider_key(&NewProviderKey {
            provider_id: provider.id,
            key_id: "added-later".to_owned(),
            secret_ciphertext: cipher.encrypt("ok-added-later")?,
            secret_hint: "ok-a…ater".to_owned(),
            secret_fingerprint: fingerprint("ok-added-later"),
            weight: 1,
            priority: 0,
            enabled: true,
        })
        .await?;

    // A slow request to the other provider is in flight during the panic.
    let slow = {
        let client = gw.client.clone();
        let url = format!("{}/v1/chat/completions", gw.url);
        let token = token.clone();
        actix_rt::spawn(async move {
            let response = client
                .post(url)
                .insert_header(("authorization", format!("Bearer {token}")))
                .send_json(&chat_body("other-gpt", "hold on"))
                .await;
            response
                .map(|r| r.status().as_u16())
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.mock.calls("slow300-other") == 0 {
        ensure!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }

    ensure!(
        gateway
            .router
            .actor()
            .send(InjectProviderPanic("mock".to_owned()))
            .await?,
        "no provider `mock` to panic"
    );
    // The mailbox closes on the actor's own thread as the panic unwinds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway
        .router
        .actor()
        .send(ProviderRunning("mock".to_owned()))
        .await?
        == Some(true)
    {
        ensure!(
            Instant::now() < deadline,
            "the dead actor's mailbox stayed open"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }

    ensure!(
        slow.await?? == 200,
        "the other provider's request was disturbed"
    );
    // The next request restarts the provider and succeeds.
    let reply = gw
        .chat(&token, chat_body("mock-gpt", "after the panic"))
        .await?;
    ensure!(reply.status == 200, "{} {}", reply.status, reply.text());
    ensure!(gateway.router.actor().send(GetRestarts).await? == 1);
    ensure!(
        gateway
            .router
            .actor()
            .send(ProviderRunning("mock".to_owned()))
            .await?
            == Some(true),
        "the provider was not restarted"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids: Vec<String> = gateway
            .router
            .health("mock")
            .context("no provider")?
            .into_iter()
            .map(|h| h.id)
            .collect();
        if ids.iter().any(|id| id == "added-later") {
            break;
        }
        ensure!(Instant::now() < deadline, "keys were not reloaded: {ids:?}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    gw.stop().await
}

async fn probes_bring_an_open_circuit_back(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        // `badjson-` keys answer chat with garbage (a failure) but their
        // model list with 200: a probe succeeds where traffic failed.
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &["badjson-p", "ok-p"]);
        provider.retry.failure_threshold = 1;
        provider.retry.error_cooldown = Duration::from_millis(100);
        provider.strategy = KeyStrategy::FirstAvailable;
        settings.providers = vec![provider];
        settings.health.probe_interval = Duration::from_millis(50);
    })
    .await?;
    let token = gw.create_token(json!({ "name": "probes" })).await?;
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    ensure!(reply.status == 200 && reply.header("x-switchyard-attempts") == Some("2"));

    let router = gw.gateway()?.router.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = router.health("mock").context("no provider")?;
        let key = health
            .iter()
            .find(|h| h.id == "key-1")
            .context("no key-1")?;
        if key.state == "healthy" && key.successes == 1 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the probe never closed the circuit: {key:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Exactly one chat attempt and one probe reached the bad key; the probe
    // asked for the model list with the key.
    let requests: Vec<String> = gw
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.header("authorization") == Some("Bearer badjson-p"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    ensure!(
        requests == ["POST /v1/chat/completions", "GET /v1/models"],
        "{requests:?}"
    );
    gw.stop().await
}

async fn a_model_falls_back_along_its_chain(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut primary = mock_provider(mock, "primary", &["smart"], &["e500-primary"]);
        primary.retry.max_attempts = 3;
        let backup = mock_provider(mock, "backup", &[], &["ok-backup"]);
        settings.providers = vec![primary, backup];
        settings.models.insert(
            "smart".to_owned(),
            ModelSettings {
                strategy: KeyStrategy::FirstAvailable,
                fallbacks: vec!["backup/smart-lite".to_owned()],
            },
        );
    })
    .await?;
    let token = gw.create_token(json!({ "name": "fallback" })).await?;
    let reply = gw.chat(&token, chat_body("smart", "hi")).await?;
    ensure!(reply.status == 200, "{} {}", reply.status, reply.text());
    ensure!(reply.header("x-switchyard-provider") == Some("backup"));
    ensure!(reply.header("x-switchyard-attempts") == Some("2"));
    let sent = gw.mock.last_request().context("nothing sent")?;
    ensure!(
        sent.json().context("body not JSON")?["model"] == "smart-lite",
        "the model name of the chain is sent upstream"
    );
    ensure!(gw.mock.calls("e500-primary") == 1 && gw.mock.calls("ok-backup") == 1);
    let logs = gw.request_logs().await?;
    ensure!(logs.len() == 1);
    ensure!(
        logs[0].provider.as_deref() == Some("backup")
            && logs[0].upstream_model.as_deref() == Some("smart-lite")
    );
    ensure!(logs[0].requested_model.as_deref() == Some("smart"));
    gw.stop().await
}

async fn round_robin_spreads_a_model_over_its_providers(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            mock_provider(mock, "east", &["shared"], &["ok-east"]),
            mock_provider(mock, "west", &["shared"], &["ok-west"]),
        ];
        settings.models.insert(
            "shared".to_owned(),
            ModelSettings {
                strategy: KeyStrategy::RoundRobin,
                fallbacks: Vec::new(),
            },
        );
    })
    .await?;
    let token = gw.create_token(json!({ "name": "spread" })).await?;
    let mut served = Vec::new();
    for _ in 0..6 {
        let reply = gw.chat(&token, chat_body("shared", "hi")).await?;
        ensure!(reply.status == 200);
        served.push(
            reply
                .header("x-switchyard-provider")
                .unwrap_or_default()
                .to_owned(),
        );
    }
    ensure!(
        served == ["east", "west", "east", "west", "east", "west"],
        "{served:?}"
    );
    ensure!(gw.mock.calls("ok-east") == 3 && gw.mock.calls("ok-west") == 3);
    gw.stop().await
}

mod readiness {
    use super::*;

    on_both_backends!(
        ready_only_with_a_usable_key,
        a_provider_without_keys_says_none_is_configured
    );

    /// Keys written as `${VAR:-}` with VAR unset are skipped at start, which
    /// leaves the provider without keys: a settings problem, said as such
    /// (it once answered "No healthy upstream key", pointing at health).
    async fn a_provider_without_keys_says_none_is_configured(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let gw = TestGateway::start(backend, |settings, mock| {
            settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &[""])];
        })
        .await?;
        let token = gw.create_token(json!({ "name": "keyless" })).await?;
        let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
        ensure!(reply.status == 503, "{}", reply.text());
        let message = reply.json()?["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            message.contains("No upstream key is configured for `mock-gpt`")
                && message.contains("provider-keys add"),
            "{message}"
        );
        let proxied = gw
            .send(
                Method::POST,
                "/proxy/mock/v1/chat/completions",
                &[("authorization", &format!("Bearer {token}"))],
                Some(serde_json::to_vec(&chat_body("mock-gpt", "hi"))?),
            )
            .await?;
        ensure!(
            proxied.status == 503 && proxied.text().contains("has no key configured"),
            "{}",
            proxied.text()
        );
        let body = gw.send(Method::GET, "/readyz", &[], None).await?.json()?;
        ensure!(
            body["problems"]
                == json!(["no usable upstream key: 1 provider(s), none with a key configured"]),
            "{body}"
        );
        ensure!(gw.mock.total_calls() == 0);
        gw.stop().await
    }

    async fn ready_only_with_a_usable_key(backend: Backend) -> anyhow::Result<()> {
        let gw = TestGateway::start(backend, |settings, mock| {
            settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &["e401-ready"])];
        })
        .await?;
        let ready = gw.send(Method::GET, "/readyz", &[], None).await?;
        ensure!(ready.status == 200, "{}", ready.text());
        // Orchestrators probe with HEAD too.
        ensure!(gw.send(Method::HEAD, "/readyz", &[], None).await?.status == 200);
        // The only key is rejected upstream (401): disabled, nothing can serve.
        let token = gw.create_token(json!({ "name": "ready" })).await?;
        let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
        ensure!(reply.status != 200);
        let not_ready = gw.send(Method::GET, "/readyz", &[], None).await?;
        let body = not_ready.json()?;
        ensure!(not_ready.status == 503, "{body}");
        ensure!(
            body["usable_keys"] == 0 && body["database"] == "ok",
            "{body}"
        );
        // It says why, key by key state.
        ensure!(
            body["problems"]
                == json!(["no usable upstream key: 1 provider(s), 1 key(s): 1 disabled"]),
            "{body}"
        );
        ensure!(gw.send(Method::HEAD, "/readyz", &[], None).await?.status == 503);
        gw.stop().await
    }
}

mod streams_and_timeouts {
    use super::*;

    on_both_backends!(
        a_stream_that_dies_before_content_fails_over_invisibly,
        a_provider_attempt_timeout_overrides_the_global_one,
    );

    async fn a_stream_that_dies_before_content_fails_over_invisibly(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let gw = TestGateway::start(backend, |settings, mock| {
            let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &["roledie-a", "ok-b"]);
            provider.strategy = KeyStrategy::FirstAvailable;
            settings.providers = vec![provider];
        })
        .await?;
        let token = gw.create_token(json!({ "name": "hold" })).await?;
        let body = stream_chat_body("mock-gpt", "hi");
        let reply = gw.chat(&token, body).await?;
        ensure!(reply.status == 200, "{}", reply.text());
        ensure!(reply.header("x-switchyard-attempts") == Some("2"));
        let text = reply.text();
        // One clean stream from the healthy key: a single role chunk, all
        // the content, the end, and no error event.
        ensure!(text.matches("\"role\"").count() == 1, "{text}");
        ensure!(
            text.contains("\" five\"") && text.trim_end().ends_with("data: [DONE]"),
            "{text}"
        );
        ensure!(!text.contains("\"error\""), "{text}");
        ensure!(gw.mock.calls("roledie-a") == 1 && gw.mock.calls("ok-b") == 1);
        gw.stop().await
    }

    async fn a_provider_attempt_timeout_overrides_the_global_one(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let gw = TestGateway::start(backend, |settings, mock| {
            settings.upstream.first_byte_timeout = Duration::from_secs(60);
            let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &["hang-a"]);
            provider.retry.max_attempts = 1;
            provider.retry.attempt_timeout = Some(Duration::from_millis(300));
            settings.providers = vec![provider];
        })
        .await?;
        let token = gw.create_token(json!({ "name": "timeout" })).await?;
        let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
        ensure!(reply.status == 504, "{} {}", reply.status, reply.text());
        ensure!(reply.error_code().as_deref() == Some("upstream_timeout"));
        let logs = gw.request_logs().await?;
        // Well below the 60 s global limit.
        ensure!(
            logs.len() == 1 && logs[0].latency_ms < 10_000,
            "{:?}",
            logs.first().map(|l| l.latency_ms)
        );
        gw.stop().await
    }
}
