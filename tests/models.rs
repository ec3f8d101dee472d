//! The model cache (providers' own model lists, refreshed through the admin
//! API) and redirect rules managed through the admin API, end to end.

pub mod common;

use anyhow::Context;
use awc::http::Method;
use common::{Reply, TestGateway, chat_body, mock_provider};
use serde_json::{Value, json};
use switchyard::config::{Backend, ProviderKind};

on_both_backends!(
    refresh_fills_the_cache_and_makes_listed_models_routable,
    gemini_model_list_is_read_in_its_own_shape,
    failed_refresh_keeps_the_previous_list_and_says_why,
    redirects_are_managed_live_and_stored,
);

fn model_ids(reply: &Reply) -> anyhow::Result<Vec<String>> {
    let body = reply.json()?;
    let mut ids: Vec<String> = body["data"]
        .as_array()
        .context("no data")?
        .iter()
        .filter_map(|model| model["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

/// A refresh reads the provider's `/models`; the listed models then appear
/// in `/v1/models` and route by bare name, the fetch used a pool key.
async fn refresh_fills_the_cache_and_makes_listed_models_routable(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "models" })).await?;
    // Before: only the declared model.
    assert_eq!(
        model_ids(&gw.get("/v1/models", Some(&token)).await?)?,
        vec!["mock-gpt"]
    );
    let reply = gw.chat(&token, chat_body("mock-gpt-mini", "hi")).await?;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(gw.mock.total_calls(), 0);

    let (status, answer) = gw
        .admin(Method::POST, "/admin/models/mock/refresh", None)
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["models"], json!(["mock-gpt", "mock-gpt-mini"]));
    let fetch = gw.mock.last_request().context("no upstream request")?;
    assert_eq!(fetch.method, "GET");
    assert!(fetch.path.ends_with("/v1/models"), "{}", fetch.path);
    assert_eq!(fetch.header("authorization"), Some("Bearer ok-1"));

    assert_eq!(
        model_ids(&gw.get("/v1/models", Some(&token)).await?)?,
        vec!["mock-gpt", "mock-gpt-mini"]
    );
    let reply = gw.chat(&token, chat_body("mock-gpt-mini", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = gw
        .mock
        .last_request()
        .and_then(|r| r.json())
        .context("json")?;
    assert_eq!(sent["model"], "mock-gpt-mini");

    let (status, listing) = gw.admin(Method::GET, "/admin/models", None).await?;
    assert_eq!(status, 200);
    assert_eq!(
        listing["cache"]["mock"]["models"],
        json!(["mock-gpt", "mock-gpt-mini"])
    );
    assert!(listing["cache"]["mock"]["fetched_at_ms"].as_i64() > Some(0));
    // A token limited to one model sees only that one.
    let narrow = gw
        .create_token(json!({ "name": "narrow", "allowed_models": ["mock-gpt"] }))
        .await?;
    assert_eq!(
        model_ids(&gw.get("/v1/models", Some(&narrow)).await?)?,
        vec!["mock-gpt"]
    );
    gw.stop().await
}

/// Gemini lists `{"models":[{"name":"models/ID"}]}` under its versioned
/// base URL, with the key in `x-goog-api-key`.
async fn gemini_model_list_is_read_in_its_own_shape(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut gemini = mock_provider(mock, "gem", &["mock-gemini"], &["ok-gem"]);
        gemini.kind = ProviderKind::Gemini;
        gemini.base_url = format!("http://{}/v1beta", mock.addr());
        settings.providers.push(gemini);
    })
    .await?;
    let (status, answer) = gw
        .admin(Method::POST, "/admin/models/gem/refresh", None)
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["models"], json!(["mock-gemini", "mock-gemini-pro"]));
    let fetch = gw.mock.last_request().context("no upstream request")?;
    assert_eq!(fetch.path, "/v1beta/models");
    assert_eq!(fetch.header("x-goog-api-key"), Some("ok-gem"));
    assert_eq!(fetch.header("authorization"), None);
    gw.stop().await
}

/// Unknown providers are 404, providers that cannot list are 400, a failing
/// upstream is 502 and leaves the cached list as it was.
async fn failed_refresh_keeps_the_previous_list_and_says_why(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        let mut azure = mock_provider(mock, "azure", &["gpt-deploy"], &["ok-az"]);
        azure.kind = ProviderKind::AzureOpenai;
        settings.providers.push(azure);
        // Serves its model list once (ok- key), then the key breaks.
        settings.providers.push(mock_provider(
            mock,
            "flaky",
            &["flaky-model"],
            &["ok-flaky"],
        ));
    })
    .await?;
    let (status, answer) = gw
        .admin(Method::POST, "/admin/models/nope/refresh", None)
        .await?;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = gw
        .admin(Method::POST, "/admin/models/azure/refresh", None)
        .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot list")),
        "{answer}"
    );
    let (status, _) = gw
        .admin(Method::POST, "/admin/models/flaky/refresh", None)
        .await?;
    assert_eq!(status, 200);
    // Swap the key for a failing one through the admin API.
    let (status, answer) = gw
        .admin(
            Method::POST,
            "/admin/providers/flaky/keys",
            Some(json!({ "key": "e500-flaky", "id": "broken" })),
        )
        .await?;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = gw
        .admin(Method::DELETE, "/admin/providers/flaky/keys/key-1", None)
        .await?;
    assert!(status.is_success(), "{status} {answer}");
    let (status, answer) = gw
        .admin(Method::POST, "/admin/models/flaky/refresh", None)
        .await?;
    assert_eq!(status, 502, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("500")),
        "{answer}"
    );
    let (_, listing) = gw.admin(Method::GET, "/admin/models", None).await?;
    assert_eq!(
        listing["cache"]["flaky"]["models"],
        json!(["mock-gpt", "mock-gpt-mini"])
    );
    gw.stop().await
}

/// Redirects set through the admin API take effect at once, are stored,
/// show in `/v1/models`, and stop when deleted.
async fn redirects_are_managed_live_and_stored(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let token = gw.create_token(json!({ "name": "alias" })).await?;
    let reply = gw.chat(&token, chat_body("my-alias", "hi")).await?;
    assert_eq!(reply.status, 404);

    let (status, row) = gw
        .admin(
            Method::PUT,
            "/admin/redirects/my-alias",
            Some(json!({ "to": "mock-gpt" })),
        )
        .await?;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["from_model"], "my-alias");
    let reply = gw.chat(&token, chat_body("my-alias", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = gw
        .mock
        .last_request()
        .and_then(|r| r.json())
        .context("json")?;
    assert_eq!(sent["model"], "mock-gpt");
    assert!(
        model_ids(&gw.get("/v1/models", Some(&token)).await?)?.contains(&"my-alias".to_owned())
    );

    // Pinned targets and names with a slash work too.
    let (status, _) = gw
        .admin(
            Method::PUT,
            "/admin/redirects/team/fast",
            Some(json!({ "to": "mock/mock-gpt" })),
        )
        .await?;
    assert_eq!(status, 200);
    let reply = gw.chat(&token, chat_body("team/fast", "hi")).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let (status, listing) = gw.admin(Method::GET, "/admin/redirects", None).await?;
    assert_eq!(status, 200);
    let mut stored: Vec<(String, String)> = listing["data"]
        .as_array()
        .context("data")?
        .iter()
        .map(|row: &Value| {
            (
                row["from_model"].as_str().unwrap_or_default().to_owned(),
                row["to_model"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        vec![
            ("my-alias".to_owned(), "mock-gpt".to_owned()),
            ("team/fast".to_owned(), "mock/mock-gpt".to_owned()),
        ]
    );

    // Invalid bodies are refused in the API's error shape.
    let (status, answer) = gw
        .admin(
            Method::PUT,
            "/admin/redirects/loop",
            Some(json!({ "to": "loop" })),
        )
        .await?;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = gw
        .admin(Method::PUT, "/admin/redirects/x", Some(json!({ "to": 5 })))
        .await?;
    assert_eq!(status, 400);

    let (status, _) = gw
        .admin(Method::DELETE, "/admin/redirects/my-alias", None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/redirects/my-alias", None)
        .await?;
    assert_eq!(status, 404);
    let reply = gw.chat(&token, chat_body("my-alias", "hi")).await?;
    assert_eq!(reply.status, 404);
    assert_eq!(gw.gateway()?.db.list_redirects().await?.len(), 1);
    gw.stop().await
}
