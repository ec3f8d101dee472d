//! Model prices: a change costs the next request, unpriced models are listed
//! until priced, and the seeded list prices never overwrite an admin's.

use super::chat;
use crate::common::admin::CreatedToken;
use crate::common::{TestGateway, chat_body};
use crate::on_both_backends;
use anyhow::Context;
use awc::http::{Method, StatusCode};
use serde_json::json;
use switchyard::config::Backend;

on_both_backends!(
    a_price_change_costs_the_next_request,
    unpriced_models_are_listed_until_priced,
    list_prices_are_seeded_and_never_overwrite_an_admin_price,
);

async fn a_price_change_costs_the_next_request(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let CreatedToken {
        token: secret, id, ..
    } = admin.create_token(json!({ "name": "costed" })).await?;
    let path = "/admin/model-prices/mock-gpt";
    let set = admin
        .put(
            path,
            json!({ "input_per_mtok": 2.5, "output_per_mtok": 10 }),
        )
        .await?;
    assert_eq!(
        (
            &set["model"],
            &set["input_per_mtok"],
            &set["output_per_mtok"],
            &set["input_per_mtok_micros"],
            &set["output_per_mtok_micros"]
        ),
        (
            &json!("mock-gpt"),
            &json!(2.5),
            &json!(10.0),
            &json!(2_500_000),
            &json!(10_000_000)
        )
    );
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    admin
        .put(path, json!({ "input_per_mtok": 1, "output_per_mtok": 2 }))
        .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    admin
        .update_token(id, json!({ "price_multiplier": 1.5 }))
        .await?;
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    let (status, _) = gw.admin(Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    let logs = gw.request_logs().await?;
    let costs: Vec<(bool, i64)> = logs
        .iter()
        .map(|row| (row.priced, row.cost_nanos))
        .collect();
    // "hello": 5 prompt and 5 completion tokens.
    assert_eq!(
        costs,
        [
            (true, 5 * 2_500 + 5 * 10_000),
            (true, 5 * 1_000 + 5 * 2_000),
            (true, 15_000 * 3 / 2),
            (false, 0)
        ]
    );
    let listed = admin.get("/admin/model-prices").await?;
    assert!(
        !listed.to_string().contains("mock-gpt"),
        "deleted: {listed}"
    );
    admin
        .refused(Method::DELETE, path, None, 404, "not_found")
        .await?;

    // Names with slashes; validation.
    let pinned = admin
        .set_price(
            "openai/gpt-x",
            json!({ "input_per_mtok": 0, "output_per_mtok": 0.5 }),
        )
        .await?;
    assert_eq!(pinned["model"], "openai/gpt-x");
    let listed = admin.get("/admin/model-prices").await?;
    let found = listed["data"]
        .as_array()
        .context("data")?
        .iter()
        .find(|p| p["model"] == "openai/gpt-x")
        .cloned();
    assert_eq!(
        found.map(|p| p["output_per_mtok_micros"].clone()),
        Some(json!(500_000))
    );
    for body in [
        "",
        "{}",
        r#"{"input_per_mtok":1}"#,
        r#"{"input_per_mtok":-1,"output_per_mtok":1}"#,
        r#"{"input_per_mtok":1,"output_per_mtok":"2"}"#,
        r#"{"input_per_mtok":1,"output_per_mtok":1e9}"#,
        r#"{"input_per_mtok":1,"output_per_mtok":1,"cached":1}"#,
    ] {
        let (status, answer) = admin
            .call_raw(Method::PUT, "/admin/model-prices/openai/gpt-x", Some(body))
            .await?;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = gw
        .admin(Method::DELETE, "/admin/model-prices/openai/gpt-x", None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    gw.stop().await
}

async fn unpriced_models_are_listed_until_priced(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let CreatedToken { token: secret, .. } =
        admin.create_token(json!({ "name": "unpriced" })).await?;
    assert_eq!(
        admin.get("/admin/unpriced-models").await?,
        json!({ "data": [] })
    );
    let before = switchyard::clock::system_now_ms() / 1000;
    for _ in 0..2 {
        assert_eq!(chat(&gw, &secret).await?.status, 200);
    }
    // A request refused before reaching an upstream is not counted.
    let refused_reply = gw.chat(&secret, chat_body("no-such-model", "x")).await?;
    assert_eq!(refused_reply.status, 404);
    gw.gateway()?.flush_usage().await?;
    let listed = admin.get("/admin/unpriced-models").await?;
    let rows = listed["data"].as_array().context("data")?;
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(
        (&rows[0]["model"], &rows[0]["requests"]),
        (&json!("mock-gpt"), &json!(2))
    );
    let seen = rows[0]["last_seen_at"].as_i64().context("last_seen_at")?;
    assert!(
        (before..=switchyard::clock::system_now_ms() / 1000).contains(&seen),
        "{seen}"
    );
    admin
        .set_price(
            "mock-gpt",
            json!({ "input_per_mtok": 1, "output_per_mtok": 1 }),
        )
        .await?;
    assert_eq!(
        admin.get("/admin/unpriced-models").await?,
        json!({ "data": [] })
    );
    for query in ["days=0", "days=5000", "days=x"] {
        admin
            .refused(
                Method::GET,
                &format!("/admin/unpriced-models?{query}"),
                None,
                400,
                "invalid_request",
            )
            .await?;
    }
    gw.stop().await
}

async fn list_prices_are_seeded_and_never_overwrite_an_admin_price(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let list = switchyard::config_store::list_prices()?;
    let listed = admin.get("/admin/model-prices").await?;
    let rows = listed["data"].as_array().context("data")?;
    assert_eq!(rows.len(), list.prices.len());
    for model in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "claude-sonnet-4-5",
        "claude-opus-4-1",
        "claude-haiku-4-5",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "deepseek-chat",
        "deepseek-reasoner",
        "glm-4.6",
    ] {
        assert!(
            rows.iter().any(|row| row["model"] == model),
            "{model} not seeded"
        );
    }
    let gpt4o = rows
        .iter()
        .find(|row| row["model"] == "gpt-4o")
        .context("gpt-4o")?;
    assert_eq!(
        (&gpt4o["input_per_mtok"], &gpt4o["output_per_mtok"]),
        (&json!(2.5), &json!(10.0))
    );

    // An admin's price survives a restart (seeding fills gaps only).
    admin
        .set_price(
            "gpt-4o",
            json!({ "input_per_mtok": 1, "output_per_mtok": 1 }),
        )
        .await?;
    gw.restart().await?;
    let admin = gw.admin_client();
    let listed = admin.get("/admin/model-prices").await?;
    let rows = listed["data"].as_array().context("data")?;
    assert_eq!(rows.len(), list.prices.len());
    let gpt4o = rows
        .iter()
        .find(|row| row["model"] == "gpt-4o")
        .context("gpt-4o")?;
    assert_eq!(
        (&gpt4o["input_per_mtok"], &gpt4o["output_per_mtok"]),
        (&json!(1.0), &json!(1.0))
    );
    gw.stop().await?;

    // Seeding can be turned off.
    let gw = TestGateway::start(backend, |settings, _| {
        settings.usage.seed_list_prices = false
    })
    .await?;
    let admin = gw.admin_client();
    assert_eq!(
        admin.get("/admin/model-prices").await?,
        json!({ "data": [] })
    );
    gw.stop().await
}
