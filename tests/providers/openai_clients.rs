//! OpenAI clients (`/v1/chat/completions`) reaching every other provider
//! kind: Anthropic, Gemini, Azure OpenAI and Zhipu, plain and streamed, with
//! tools.

use super::*;
use crate::on_both_backends;

on_both_backends!(
    openai_client_reaches_an_anthropic_provider,
    openai_client_reaches_a_gemini_provider,
    openai_client_reaches_an_azure_deployment,
    openai_client_reaches_a_zhipu_provider,
);

/// An OpenAI client reaches `kind` through `/v1/chat/completions`: a plain
/// answer, a stream without and with the usage chunk, and a tool call whole
/// and streamed; each request goes to the kind's endpoint with its
/// credential header, and each leaves a row with the upstream's tokens.
async fn openai_client_suite(
    backend: Backend,
    kind: ProviderKind,
    name: &str,
    model: &str,
) -> anyhow::Result<()> {
    let key = "ok-suite";
    let gw = gateway(backend, kind, name, model, &[key], |_| {}).await?;
    let token = gw.create_token(json!({ "name": "openai-client" })).await?;

    // A plain answer.
    let reply = gw.chat(&token, chat_body(model, "hello")).await?;
    ensure!(reply.status == 200, "{kind:?}: {}", reply.text());
    assert_eq!(reply.header("x-switchyard-provider"), Some(name));
    assert_eq!(reply.header("x-switchyard-attempts"), Some("1"));
    let answer = reply.json()?;
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert_eq!(
        answer.pointer("/choices/0/message/role"),
        Some(&json!("assistant"))
    );
    assert_eq!(
        answer.pointer("/choices/0/message/content"),
        Some(&json!(TEXT))
    );
    assert_eq!(
        answer.pointer("/choices/0/finish_reason"),
        Some(&json!("stop"))
    );
    assert_eq!(answer.pointer("/usage/prompt_tokens"), Some(&json!(5)));
    assert_eq!(answer.pointer("/usage/completion_tokens"), Some(&json!(5)));
    check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, false)?;

    // A stream; the client did not ask for usage, so none comes.
    let mut body = stream_chat_body(model, "hello");
    let stream = chat_stream(&gw.chat(&token, body.clone()).await?)?;
    assert_eq!(stream.text, TEXT, "{kind:?}");
    assert_eq!(stream.finish_reasons, ["stop"], "{kind:?}");
    assert_eq!(stream.usage, Vec::<Value>::new(), "{kind:?}");
    assert_eq!(stream.tool_name, None);
    check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, true)?;

    // The same stream with `stream_options.include_usage`: one usage chunk.
    body["stream_options"] = json!({ "include_usage": true });
    let stream = chat_stream(&gw.chat(&token, body).await?)?;
    assert_eq!(stream.text, TEXT, "{kind:?}");
    assert_eq!(stream.finish_reasons, ["stop"], "{kind:?}");
    assert_eq!(stream.usage.len(), 1, "{kind:?}");
    assert_eq!(
        (
            &stream.usage[0]["prompt_tokens"],
            &stream.usage[0]["completion_tokens"],
            &stream.usage[0]["total_tokens"]
        ),
        (&json!(5), &json!(5), &json!(10)),
        "{kind:?}: {}",
        stream.usage[0]
    );
    check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, true)?;

    // A tool call, whole.
    let mut tools = chat_body(model, "hello");
    tools["tools"] = json!([openai_tool()]);
    let reply = gw.chat(&token, tools.clone()).await?;
    ensure!(reply.status == 200, "{kind:?}: {}", reply.text());
    let answer = reply.json()?;
    let calls = answer
        .pointer("/choices/0/message/tool_calls")
        .and_then(Value::as_array)
        .with_context(|| format!("{kind:?}: no tool calls: {answer}"))?;
    assert_eq!(calls.len(), 1, "{answer}");
    assert_eq!(calls[0]["type"], "function");
    assert!(
        calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{answer}"
    );
    assert_eq!(
        calls[0].pointer("/function/name"),
        Some(&json!("get_weather"))
    );
    let arguments: Value = serde_json::from_str(
        calls[0]
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .context("arguments")?,
    )?;
    assert_eq!(arguments, tool_arguments(), "{kind:?}");
    assert_eq!(
        answer.pointer("/choices/0/finish_reason"),
        Some(&json!("tool_calls"))
    );
    let body = check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, false)?;
    check_tool_declared(kind, &body)?;

    // A tool call, streamed.
    tools["stream"] = json!(true);
    let stream = chat_stream(&gw.chat(&token, tools).await?)?;
    assert_eq!(stream.tool_name.as_deref(), Some("get_weather"), "{kind:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&stream.tool_arguments)?,
        tool_arguments()
    );
    assert_eq!(stream.finish_reasons, ["tool_calls"], "{kind:?}");
    assert_eq!(stream.text, "", "{kind:?}");
    let body = check_chat_upstream(&only_upstream(&gw.mock)?, kind, model, key, &token, true)?;
    check_tool_declared(kind, &body)?;

    let logs = gw.request_logs().await?;
    let endpoint = "/v1/chat/completions";
    assert_eq!(
        logs.iter().map(row).collect::<Vec<_>>(),
        [false, true, true, false, true].map(|stream| ok_row(endpoint, name, 5, 5, stream)),
        "{kind:?}"
    );
    assert!(
        logs.iter()
            .all(|log| log.upstream_model.as_deref() == Some(model))
    );
    gw.stop().await
}

/// OpenAI chat → Anthropic Messages (`x-api-key`, `anthropic-version`).
async fn openai_client_reaches_an_anthropic_provider(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::Anthropic, "anth", "claude-m").await
}

/// OpenAI chat → Gemini `generateContent` / `streamGenerateContent?alt=sse`
/// (`x-goog-api-key`, the model in the path).
async fn openai_client_reaches_a_gemini_provider(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::Gemini, "gem", "gemini-m").await
}

/// OpenAI chat → Azure: `/openai/deployments/{model}/chat/completions` with
/// `api-version`, the key in `api-key` and no `authorization` header.
async fn openai_client_reaches_an_azure_deployment(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::AzureOpenai, "azure", "mock-gpt").await
}

/// OpenAI chat → Zhipu's v4 API (bearer key below `/api/paas/v4`).
async fn openai_client_reaches_a_zhipu_provider(backend: Backend) -> anyhow::Result<()> {
    openai_client_suite(backend, ProviderKind::Zhipu, "glm", "glm-m").await
}
