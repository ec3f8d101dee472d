//! The OpenAI-only endpoints (`/v1/embeddings`, `/v1/completions`, the
//! rest) on each provider kind's paths, or refused where a kind has none.

use super::*;
use crate::on_both_backends;

on_both_backends!(
    embeddings_relay_float_and_base64_vectors,
    legacy_completions_are_relayed_whole_and_streamed,
    openai_only_endpoints_follow_each_kinds_paths_or_refuse,
);

/// The mock's embedding for input number `index`.
fn embedding(index: usize) -> Vec<f32> {
    (0..8)
        .map(|j| index as f32 + (j as f32 + 1.0) / 8.0)
        .collect()
}

/// `/v1/embeddings` relays float vectors and base64 strings as the upstream
/// sent them, and meters the prompt tokens it reports.
async fn embeddings_relay_float_and_base64_vectors(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(mock, "mock", &["mock-embed"], &["ok-embed"])];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "embedder" })).await?;

    let request = json!({ "model": "mock-embed", "input": ["ab", "cde"] });
    let reply = post_openai(&gw, "/v1/embeddings", &token, &request).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-provider"), Some("mock"));
    let answer = reply.json()?;
    assert_eq!(answer["object"], "list");
    assert_eq!(
        answer["data"],
        json!([
            { "object": "embedding", "index": 0, "embedding": embedding(0) },
            { "object": "embedding", "index": 1, "embedding": embedding(1) },
        ])
    );
    assert_eq!(
        answer["usage"],
        json!({ "prompt_tokens": 5, "total_tokens": 5 })
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.path.as_str(), seen.header("authorization")),
        ("/v1/embeddings", Some("Bearer ok-embed"))
    );
    assert_eq!(seen.json(), Some(request));

    let request = json!({ "model": "mock-embed", "input": "hello", "encoding_format": "base64" });
    let reply = post_openai(&gw, "/v1/embeddings", &token, &request).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    let bytes: Vec<u8> = embedding(0).iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        answer["data"],
        json!([{ "object": "embedding", "index": 0, "embedding": base64::engine::general_purpose::STANDARD.encode(bytes) }])
    );
    assert_eq!(answer["usage"]["prompt_tokens"], 5);
    assert_eq!(only_upstream(&gw.mock)?.json(), Some(request));

    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [
            ok_row("/v1/embeddings", "mock", 5, 0, false),
            ok_row("/v1/embeddings", "mock", 5, 0, false)
        ]
    );
    gw.stop().await
}

/// The `choices[].text` pieces of a legacy completion stream, joined, and
/// the usage chunks; `[DONE]` must be last.
fn completion_stream(reply: &Reply) -> anyhow::Result<(String, Vec<String>, Vec<Value>)> {
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    let events = sse_events(&reply.body)?;
    let (last, chunks) = events.split_last().context("an empty stream")?;
    ensure!(last.data == "[DONE]", "[DONE] is not last: {events:?}");
    let (mut text, mut finish, mut usage) = (String::new(), Vec::new(), Vec::new());
    for event in chunks {
        let chunk: Value = serde_json::from_str(&event.data)?;
        ensure!(chunk["object"] == "text_completion", "{chunk}");
        if let Some(reported) = chunk.get("usage") {
            usage.push(reported.clone());
        }
        for choice in chunk["choices"].as_array().context("no choices")? {
            text.push_str(choice["text"].as_str().context("no text")?);
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish.push(reason.to_owned());
            }
        }
    }
    Ok((text, finish, usage))
}

/// `/v1/completions` whole and streamed (the injected usage chunk hidden
/// unless asked for), metered from the upstream's usage.
async fn legacy_completions_are_relayed_whole_and_streamed(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &["ok-legacy"])];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "legacy" })).await?;

    let request = json!({ "model": "mock-gpt", "prompt": "hello", "max_tokens": 16 });
    let reply = post_openai(&gw, "/v1/completions", &token, &request).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer.pointer("/choices/0/text"), Some(&json!(TEXT)));
    assert_eq!(
        answer.pointer("/choices/0/finish_reason"),
        Some(&json!("stop"))
    );
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.path.as_str(), seen.header("authorization")),
        ("/v1/completions", Some("Bearer ok-legacy"))
    );
    assert_eq!(seen.json(), Some(request.clone()));

    let mut streamed = request;
    streamed["stream"] = json!(true);
    let reply = post_openai(&gw, "/v1/completions", &token, &streamed).await?;
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let (text, finish, usage) = completion_stream(&reply)?;
    assert_eq!((text.as_str(), finish), (TEXT, vec!["stop".to_owned()]));
    assert_eq!(usage, Vec::<Value>::new());
    // The gateway asked for usage on the client's behalf.
    let seen = only_upstream(&gw.mock)?.json().context("no JSON")?;
    assert_eq!(
        seen.pointer("/stream_options/include_usage"),
        Some(&json!(true))
    );

    streamed["stream_options"] = json!({ "include_usage": true });
    let reply = post_openai(&gw, "/v1/completions", &token, &streamed).await?;
    let (text, _, usage) = completion_stream(&reply)?;
    assert_eq!(text, TEXT);
    assert_eq!(
        usage,
        [json!({ "prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10 })]
    );
    only_upstream(&gw.mock)?;

    let logs = gw.request_logs().await?;
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [false, true, true].map(|stream| ok_row("/v1/completions", "mock", 5, 5, stream))
    );
    gw.stop().await
}

/// Embeddings and legacy completions follow each kind's paths (Azure's
/// deployment URLs with the provider's own `api-version`, Zhipu's v4 root),
/// and a provider
/// kind without the endpoint gets a 400 that names it, before any upstream
/// call.
async fn openai_only_endpoints_follow_each_kinds_paths_or_refuse(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut azure = kind_provider(
            mock,
            "azure",
            ProviderKind::AzureOpenai,
            &["az-dep"],
            &["ok-az"],
        );
        azure.api_version = Some(AZURE_PREVIEW.to_owned());
        settings.providers = vec![
            azure,
            kind_provider(mock, "glm", ProviderKind::Zhipu, &["glm-m"], &["ok-glm"]),
            kind_provider(
                mock,
                "anth",
                ProviderKind::Anthropic,
                &["claude-m"],
                &["ok-anth"],
            ),
            kind_provider(
                mock,
                "gem",
                ProviderKind::Gemini,
                &["gemini-m"],
                &["ok-gem"],
            ),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "openai-only" })).await?;
    let embed = |model: &str| json!({ "model": model, "input": "hello" });
    let complete = |model: &str| json!({ "model": model, "prompt": "hello" });

    let reply = post_openai(&gw, "/v1/embeddings", &token, &embed("az-dep")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        seen.path,
        format!("/openai/deployments/az-dep/embeddings?api-version={AZURE_PREVIEW}")
    );
    assert_eq!(
        (seen.header("api-key"), seen.header("authorization")),
        (Some("ok-az"), None)
    );

    let reply = post_openai(&gw, "/v1/completions", &token, &complete("az-dep")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()?.pointer("/choices/0/text"), Some(&json!(TEXT)));
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        seen.path,
        format!("/openai/deployments/az-dep/completions?api-version={AZURE_PREVIEW}")
    );
    assert_eq!(seen.header("api-key"), Some("ok-az"));

    let reply = post_openai(&gw, "/v1/embeddings", &token, &embed("glm-m")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = only_upstream(&gw.mock)?;
    assert_eq!(
        (seen.path.as_str(), seen.header("authorization")),
        ("/api/paas/v4/embeddings", Some("Bearer ok-glm"))
    );

    // No such endpoint for these kinds: a 400 naming the provider.
    for (path, model, provider, kind) in [
        ("/v1/embeddings", "claude-m", "anth", "anthropic"),
        ("/v1/embeddings", "gemini-m", "gem", "gemini"),
        ("/v1/completions", "glm-m", "glm", "zhipu"),
        ("/v1/completions", "claude-m", "anth", "anthropic"),
    ] {
        let body = if path == "/v1/embeddings" {
            embed(model)
        } else {
            complete(model)
        };
        let reply = post_openai(&gw, path, &token, &body).await?;
        assert_eq!(reply.status, 400, "{path} {model}: {}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("invalid_request"));
        assert_eq!(
            reply.json()?.pointer("/error/message").and_then(Value::as_str),
            Some(format!("The model `{model}` is served by provider `{provider}` ({kind}), which has no {path} endpoint").as_str())
        );
    }
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "refused requests must not reach the upstream"
    );

    let logs = gw.request_logs().await?;
    let outcomes: Vec<(&str, Option<&str>, i32)> = logs
        .iter()
        .map(|log| (log.endpoint.as_str(), log.provider.as_deref(), log.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/v1/embeddings", Some("azure"), 200),
            ("/v1/completions", Some("azure"), 200),
            ("/v1/embeddings", Some("glm"), 200),
            ("/v1/embeddings", Some("anth"), 400),
            ("/v1/embeddings", Some("gem"), 400),
            ("/v1/completions", Some("glm"), 400),
            ("/v1/completions", Some("anth"), 400),
        ]
    );
    // Prompt 5 ("hello"); embeddings have no completion tokens.
    assert_eq!(
        logs.iter()
            .take(3)
            .map(|log| (log.prompt_tokens, log.completion_tokens))
            .collect::<Vec<_>>(),
        [(5, 0), (5, 5), (5, 0)]
    );
    gw.stop().await
}
