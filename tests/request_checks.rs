//! Request fields the gateway reads or rewrites are type-checked like the
//! API it imitates: 400 in the client's error shape, nothing sent upstream.
//! Also `HEAD /healthz`.

pub mod common;

use awc::http::Method;
use common::{Reply, TestGateway, stream_chat_body};
use serde_json::{Value, json};
use switchyard::config::Backend;

on_both_backends!(
    openai_chat_fields_of_the_wrong_type_are_400,
    completion_max_tokens_below_one_is_400,
    anthropic_fields_of_the_wrong_type_are_400_in_anthropic_shape,
    healthz_answers_head_like_get,
);

fn expect_openai_400(reply: &Reply, param: &str, body: &Value) -> anyhow::Result<()> {
    anyhow::ensure!(
        reply.status == 400,
        "{body}: {} {}",
        reply.status,
        reply.text()
    );
    let answer = reply.json()?;
    anyhow::ensure!(
        answer["error"]["param"] == param
            && answer["error"]["type"] == "invalid_request_error"
            && answer["error"]["message"].is_string(),
        "{body}: {answer}"
    );
    Ok(())
}

async fn openai_chat_fields_of_the_wrong_type_are_400(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "checks" })).await?;
    let with = |field: &str, value: Value| {
        let mut body = stream_chat_body("mock-gpt", "hello");
        body[field] = value;
        body
    };
    let refused = [
        (
            with("stream_options", json!("include_usage")),
            "stream_options",
        ),
        (
            with("stream_options", json!({ "include_usage": "yes" })),
            "stream_options",
        ),
        (with("max_tokens", json!(-5)), "max_tokens"),
        (with("max_tokens", json!("100")), "max_tokens"),
        (
            with("max_completion_tokens", json!(0)),
            "max_completion_tokens",
        ),
        (with("temperature", json!("warm")), "temperature"),
        (with("stop", json!(7)), "stop"),
    ];
    for (body, param) in &refused {
        let reply = gw.chat(&token, body.clone()).await?;
        expect_openai_400(&reply, param, body)?;
    }
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "a refused request reached the upstream"
    );
    // The same fields with the right types are served.
    let mut fine = with("stream_options", json!({ "include_usage": true }));
    fine["max_tokens"] = json!(16);
    let reply = gw.chat(&token, fine).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.stop().await
}

async fn completion_max_tokens_below_one_is_400(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "checks" })).await?;
    for (body, param) in [
        (
            json!({ "model": "mock-gpt", "prompt": "hi", "max_tokens": -1 }),
            "max_tokens",
        ),
        (
            json!({ "model": "mock-gpt", "prompt": "hi", "stream": true, "stream_options": "include_usage" }),
            "stream_options",
        ),
    ] {
        let reply = gw
            .post_raw("/v1/completions", Some(&token), serde_json::to_vec(&body)?)
            .await?;
        expect_openai_400(&reply, param, &body)?;
    }
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "a refused request reached the upstream"
    );
    gw.stop().await
}

async fn anthropic_fields_of_the_wrong_type_are_400_in_anthropic_shape(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "checks" })).await?;
    let with = |field: &str, value: Value| {
        let mut body = json!({
            "model": "mock-gpt",
            "max_tokens": 64,
            "messages": [{ "role": "user", "content": "hello" }],
        });
        body[field] = value;
        body
    };
    for body in [
        with("max_tokens", json!(0)),
        with("max_tokens", json!(-20)),
        with("system", json!(5)),
        with("stop_sequences", json!("END")),
        with("temperature", json!("0.5")),
    ] {
        let reply = gw
            .post_with_headers(
                "/v1/messages",
                &[
                    ("x-api-key", token.as_str()),
                    ("anthropic-version", "2023-06-01"),
                ],
                &body,
            )
            .await?;
        anyhow::ensure!(
            reply.status == 400,
            "{body}: {} {}",
            reply.status,
            reply.text()
        );
        let answer = reply.json()?;
        anyhow::ensure!(
            answer["type"] == "error"
                && answer["error"]["type"] == "invalid_request_error"
                && answer["error"]["message"].is_string(),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "a refused request reached the upstream"
    );
    gw.stop().await
}

async fn healthz_answers_head_like_get(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let get = gw.send(Method::GET, "/healthz", &[], None).await?;
    let head = gw.send(Method::HEAD, "/healthz", &[], None).await?;
    assert_eq!(get.status, 200);
    assert_eq!(head.status, 200, "{}", head.text());
    assert!(head.body.is_empty(), "HEAD answered a body");
    assert_eq!(
        head.header("content-type"),
        get.header("content-type"),
        "HEAD and GET disagree on the content type"
    );
    gw.stop().await
}
