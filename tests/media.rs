//! The JSON media doors (issue 15, item 3): `/v1/images/generations`,
//! `/v1/audio/speech` and `/v1/rerank` served by the mock over real
//! sockets, each call one usage row costed in its own unit (per image, per
//! character, per search unit, plus tokens) exactly; failover, budgets,
//! hostile upstreams and bad client input.
//!
//! Each row's units are asserted, and its cost against one rate per unit
//! (`[[prices]]`), so `cost_nanos` = units x rate exactly.

pub mod common;

use anyhow::Context;
use common::billing::{Billed, assert_billing_identity};
use common::{Reply, TestGateway, kind_provider, mock_provider};
use mock_upstream::{ABSURD_SEARCH_UNITS, EXTRA_IMAGES, IMAGE_OUTPUT_TOKENS, speech_bytes};
use serde_json::{Value, json};
use switchyard::config::{Backend, PriceSettings, ProviderKind, Settings};

on_both_backends!(
    images_are_billed_per_image_and_per_token,
    speech_is_audio_billed_per_character_counted_by_the_gateway,
    rerank_is_billed_per_search_unit_in_cohere_and_jina_shapes,
    a_failing_first_provider_fails_over_to_the_second,
    a_200_without_the_payload_fails_over,
    an_upstream_client_error_is_relayed_without_failover,
    hostile_figures_are_bounded_by_the_request,
    a_spent_money_budget_refuses_media_calls_before_the_upstream,
    media_calls_keep_the_billing_identity,
);

const IMAGE_MODEL: &str = "mock-image";
const TTS_MODEL: &str = "mock-tts";
const RERANK_MODEL: &str = "mock-rerank";
/// Answered in Jina's shape by the mock (`usage.total_tokens`).
const JINA_MODEL: &str = "jina-rerank";

/// $0.04 per image.
const PER_IMAGE_MICROS: i64 = 40_000;
/// $15 per million characters.
const PER_MCHAR_MICROS: i64 = 15_000_000;
/// $0.002 per search unit.
const PER_SEARCH_MICROS: i64 = 2_000;
/// $5 / $40 per million input / output tokens (gpt-image-1's text and image
/// rates, near enough).
const INPUT_MICROS: i64 = 5_000_000;
const OUTPUT_MICROS: i64 = 40_000_000;

/// The media models on one `ok-` provider named `mock`, priced.
fn media_models(settings: &mut Settings, mock: &mock_upstream::MockUpstream) {
    settings.providers = vec![mock_provider(
        mock,
        "mock",
        &[IMAGE_MODEL, TTS_MODEL, RERANK_MODEL, JINA_MODEL],
        &["ok-1"],
    )];
    settings.prices = media_prices();
}

/// Each media model's rates, declared in the settings' `[[prices]]` (USD).
fn media_prices() -> Vec<PriceSettings> {
    let usd = |micros: i64| micros as f64 / 1e6;
    let price = |model: &str| PriceSettings {
        model: model.to_owned(),
        ..Default::default()
    };
    vec![
        PriceSettings {
            per_image: usd(PER_IMAGE_MICROS),
            input_per_mtok: usd(INPUT_MICROS),
            output_per_mtok: usd(OUTPUT_MICROS),
            ..price(IMAGE_MODEL)
        },
        PriceSettings {
            per_mchar: usd(PER_MCHAR_MICROS),
            ..price(TTS_MODEL)
        },
        PriceSettings {
            per_search: usd(PER_SEARCH_MICROS),
            ..price(RERANK_MODEL)
        },
        PriceSettings {
            per_search: usd(PER_SEARCH_MICROS),
            input_per_mtok: usd(INPUT_MICROS),
            ..price(JINA_MODEL)
        },
    ]
}

async fn post(gw: &TestGateway, token: &str, path: &str, body: &Value) -> anyhow::Result<Reply> {
    gw.post_raw(path, Some(token), serde_json::to_vec(body)?)
        .await
}

fn image_body(n: i64) -> Value {
    json!({ "model": IMAGE_MODEL, "prompt": "a red fox", "n": n, "size": "1024x1024" })
}

fn speech_body(input: &str) -> Value {
    json!({ "model": TTS_MODEL, "input": input, "voice": "alloy" })
}

fn rerank_body(model: &str, documents: Value) -> Value {
    json!({ "model": model, "query": "fox", "documents": documents })
}

/// A row's media units: [images, characters, audio_ms, search_units].
fn units(row: &switchyard::db::RequestLog) -> [i64; 4] {
    [row.images, row.characters, row.audio_ms, row.search_units]
}

/// Nano-USD of `tokens` at `micros` per million tokens.
fn token_nanos(tokens: i64, micros: i64) -> i64 {
    tokens * micros / 1000
}

async fn images_are_billed_per_image_and_per_token(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, media_models).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;

    let reply = post(&gw, &token, "/v1/images/generations", &image_body(2)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let answer = reply.json()?;
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2), "{answer}");
    // The body went upstream as sent, to the images endpoint.
    let seen = gw.mock.last_request().context("the mock saw nothing")?;
    assert_eq!(seen.path, "/v1/images/generations");
    let sent = seen.json().context("not JSON upstream")?;
    assert_eq!(
        (sent["model"].as_str(), sent["size"].as_str()),
        (Some(IMAGE_MODEL), Some("1024x1024"))
    );

    let rows = gw.request_logs().await?;
    let [row] = rows.as_slice() else {
        anyhow::bail!("expected one row, got {}", rows.len());
    };
    assert_eq!(row.endpoint, "/v1/images/generations");
    assert_eq!(row.requested_model.as_deref(), Some(IMAGE_MODEL));
    assert_eq!((row.status, row.attempts), (200, 1));
    // gpt-image-style usage: the prompt's 9 bytes in, 100 tokens per image out.
    let output = 2 * IMAGE_OUTPUT_TOKENS as i64;
    assert_eq!((row.prompt_tokens, row.completion_tokens), (9, output));
    assert!(!row.tokens_estimated, "a media answer is never estimated");
    assert_eq!(units(row), [2, 0, 0, 0]);
    assert_eq!(
        row.cost_nanos,
        2 * PER_IMAGE_MICROS * 1000
            + token_nanos(9, INPUT_MICROS)
            + token_nanos(output, OUTPUT_MICROS)
    );

    // Without `n`, one image.
    let one = json!({ "model": IMAGE_MODEL, "prompt": "a red fox", "response_format": "b64_json" });
    let reply = post(&gw, &token, "/v1/images/generations", &one).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()?["data"][0]["b64_json"].is_string());
    let rows = gw.request_logs().await?;
    let last = rows.last().context("no row")?;
    assert_eq!(units(last), [1, 0, 0, 0]);
    assert_eq!(
        last.cost_nanos,
        PER_IMAGE_MICROS * 1000
            + token_nanos(9, INPUT_MICROS)
            + token_nanos(IMAGE_OUTPUT_TOKENS as i64, OUTPUT_MICROS)
    );
    gw.stop().await
}

async fn speech_is_audio_billed_per_character_counted_by_the_gateway(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, media_models).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;

    // 13 characters (Unicode scalar values), 18 bytes.
    let input = "héllo wörld 👋";
    let reply = post(&gw, &token, "/v1/audio/speech", &speech_body(input)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("audio/mpeg"));
    assert!(
        reply.body == speech_bytes(),
        "the audio bytes changed on the way"
    );

    let mut wav = speech_body("twelve chars");
    wav["response_format"] = json!("wav");
    let reply = post(&gw, &token, "/v1/audio/speech", &wav).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("audio/wav"));

    let rows = gw.request_logs().await?;
    let costs: Vec<_> = rows
        .iter()
        .map(|row| (row.endpoint.as_str(), row.status, row.cost_nanos))
        .collect();
    assert_eq!(
        costs,
        [
            ("/v1/audio/speech", 200, token_nanos(13, PER_MCHAR_MICROS)),
            ("/v1/audio/speech", 200, token_nanos(12, PER_MCHAR_MICROS)),
        ]
    );
    let characters: Vec<_> = rows.iter().map(units).collect();
    assert_eq!(characters, [[0, 13, 0, 0], [0, 12, 0, 0]]);
    for row in &rows {
        assert_eq!((row.prompt_tokens, row.completion_tokens), (0, 0));
        assert!(
            !row.tokens_estimated,
            "audio bytes are not text to estimate"
        );
    }
    gw.stop().await
}

async fn rerank_is_billed_per_search_unit_in_cohere_and_jina_shapes(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, media_models).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;

    let mut cohere = rerank_body(RERANK_MODEL, json!(["a fox", { "text": "a dog" }, "a cat"]));
    cohere["top_n"] = json!(2);
    let reply = post(&gw, &token, "/v1/rerank", &cohere).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()?;
    assert_eq!(
        answer["results"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert_eq!(
        gw.mock.last_request().map(|seen| seen.path),
        Some("/v1/rerank".to_owned())
    );

    // Jina: tokens (query 3 bytes + documents 5 + 5), one search unit.
    let jina = rerank_body(JINA_MODEL, json!(["a fox", "a dog"]));
    let reply = post(&gw, &token, "/v1/rerank", &jina).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let rows = gw.request_logs().await?;
    let billed: Vec<_> = rows
        .iter()
        .map(|row| (row.endpoint.as_str(), row.prompt_tokens, row.cost_nanos))
        .collect();
    assert_eq!(
        billed,
        [
            ("/v1/rerank", 0, PER_SEARCH_MICROS * 1000),
            (
                "/v1/rerank",
                13,
                PER_SEARCH_MICROS * 1000 + token_nanos(13, INPUT_MICROS)
            ),
        ]
    );
    let search_units: Vec<_> = rows.iter().map(units).collect();
    assert_eq!(search_units, [[0, 0, 0, 1], [0, 0, 0, 1]]);
    gw.stop().await
}

/// Per door: a provider whose key fails (500 or 429) listed first, then a
/// good one: the call is served by the second, one row, two attempts.
async fn a_failing_first_provider_fails_over_to_the_second(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            mock_provider(mock, "bad-images", &[IMAGE_MODEL], &["e500-images"]),
            mock_provider(mock, "bad-speech", &[TTS_MODEL], &["r429-speech"]),
            mock_provider(mock, "bad-rerank", &[RERANK_MODEL], &["e500-rerank"]),
            mock_provider(
                mock,
                "good",
                &[IMAGE_MODEL, TTS_MODEL, RERANK_MODEL],
                &["ok-1"],
            ),
        ];
        settings.prices = media_prices();
    })
    .await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let calls = [
        (
            "/v1/images/generations",
            image_body(1),
            PER_IMAGE_MICROS * 1000,
        ),
        (
            "/v1/audio/speech",
            speech_body("hello"),
            token_nanos(5, PER_MCHAR_MICROS),
        ),
        (
            "/v1/rerank",
            rerank_body(RERANK_MODEL, json!(["a"])),
            PER_SEARCH_MICROS * 1000,
        ),
    ];
    for (path, body, _) in &calls {
        let reply = post(&gw, &token, path, body).await?;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.header("x-switchyard-attempts"), Some("2"), "{path}");
        assert_eq!(
            reply.header("x-switchyard-provider"),
            Some("good"),
            "{path}"
        );
    }
    for key in ["e500-images", "r429-speech", "e500-rerank", "ok-1"] {
        let expected = if key == "ok-1" { 3 } else { 1 };
        assert_eq!(gw.mock.calls(key), expected, "{key}");
    }
    let rows = gw.request_logs().await?;
    assert_eq!(rows.len(), 3);
    for ((path, _, cost), row) in calls.iter().zip(&rows) {
        assert_eq!(row.endpoint, *path);
        assert_eq!((row.status, row.attempts), (200, 2), "{path}");
        assert_eq!(row.provider.as_deref(), Some("good"), "{path}");
        // Images: 1 image + 9 prompt tokens + 100 output tokens.
        let tokens = if *path == "/v1/images/generations" {
            token_nanos(9, INPUT_MICROS) + token_nanos(IMAGE_OUTPUT_TOKENS as i64, OUTPUT_MICROS)
        } else {
            0
        };
        assert_eq!(row.cost_nanos, cost + tokens, "{path}");
    }
    let billed: Vec<_> = rows.iter().map(units).collect();
    assert_eq!(billed, [[1, 0, 0, 0], [0, 5, 0, 0], [0, 0, 0, 1]]);
    gw.stop().await
}

/// An upstream 4xx is the client's mistake (an image size the model does
/// not offer): relayed as it is, with the upstream's status and body, and
/// never retried on another key or provider.
async fn an_upstream_client_error_is_relayed_without_failover(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            mock_provider(mock, "a-first", &[IMAGE_MODEL], &["ok-1", "ok-2"]),
            mock_provider(mock, "b-second", &[IMAGE_MODEL], &["ok-3"]),
        ];
        settings.prices = media_prices();
    })
    .await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let mut body = image_body(1);
    body["size"] = json!("7x7");
    let reply = post(&gw, &token, "/v1/images/generations", &body).await?;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = reply.json()?;
    assert_eq!(error["error"]["code"], "invalid_value", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("'size'")),
        "{error}"
    );
    assert_eq!(gw.mock.total_calls(), 1, "a client error was retried");
    let rows = gw.request_logs().await?;
    let outcomes: Vec<_> = rows
        .iter()
        .map(|row| (row.status, row.attempts, row.cost_nanos))
        .collect();
    assert_eq!(outcomes, [(400, 1, 0)]);
    assert_eq!(rows.iter().map(units).collect::<Vec<_>>(), [[0, 0, 0, 0]]);
    gw.stop().await
}

/// A 200 that is not the API's answer (images without `data` or not JSON,
/// rerank without `results`, speech as a JSON error object) is a failure
/// of that provider: the call fails over.
async fn a_200_without_the_payload_fails_over(backend: Backend) -> anyhow::Result<()> {
    // Providers serving a model are tried in the order of their names.
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![
            mock_provider(
                mock,
                "a-hollow",
                &[IMAGE_MODEL, TTS_MODEL, RERANK_MODEL],
                &["nopayload-1"],
            ),
            mock_provider(mock, "b-garbled", &[IMAGE_MODEL], &["badjson-1"]),
            mock_provider(
                mock,
                "c-good",
                &[IMAGE_MODEL, TTS_MODEL, RERANK_MODEL],
                &["ok-1"],
            ),
        ];
        // Each bad provider is tried on every call (no circuit opens).
        for provider in &mut settings.providers {
            provider.retry.failure_threshold = 100;
        }
    })
    .await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let calls = [
        ("/v1/images/generations", image_body(1), "3"),
        ("/v1/audio/speech", speech_body("hello"), "2"),
        ("/v1/rerank", rerank_body(RERANK_MODEL, json!(["a"])), "2"),
    ];
    for (path, body, attempts) in &calls {
        let reply = post(&gw, &token, path, body).await?;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(
            reply.header("x-switchyard-attempts"),
            Some(*attempts),
            "{path}"
        );
        assert_eq!(
            reply.header("x-switchyard-provider"),
            Some("c-good"),
            "{path}"
        );
    }
    for (key, calls) in [("nopayload-1", 3), ("badjson-1", 1), ("ok-1", 3)] {
        assert_eq!(gw.mock.calls(key), calls, "{key}");
    }
    let rows = gw.request_logs().await?;
    let outcomes: Vec<_> = rows
        .iter()
        .map(|row| (row.endpoint.as_str(), row.status, row.attempts))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/v1/images/generations", 200, 3),
            ("/v1/audio/speech", 200, 2),
            ("/v1/rerank", 200, 2),
        ]
    );
    gw.stop().await
}

/// An upstream claiming more than the request could produce is billed what
/// the request bounds: images at most `n`, search units at most one per
/// document.
async fn hostile_figures_are_bounded_by_the_request(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |settings, mock| {
        settings.providers = vec![mock_provider(
            mock,
            "hostile",
            &[IMAGE_MODEL, RERANK_MODEL],
            &["extraunits-1"],
        )];
        settings.prices = media_prices();
    })
    .await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;

    let reply = post(&gw, &token, "/v1/images/generations", &image_body(2)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let drawn = reply.json()?["data"].as_array().map_or(0, Vec::len);
    assert_eq!(drawn as u64, 2 + EXTRA_IMAGES, "the mock drew extra images");

    let documents = json!(["a", "b", "c"]);
    let reply = post(
        &gw,
        &token,
        "/v1/rerank",
        &rerank_body(RERANK_MODEL, documents),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let claimed = reply.json()?["meta"]["billed_units"]["search_units"].as_u64();
    assert_eq!(claimed, Some(ABSURD_SEARCH_UNITS));

    let rows = gw.request_logs().await?;
    let [images, rerank] = rows.as_slice() else {
        anyhow::bail!("expected two rows, got {}", rows.len());
    };
    // The extra images' output tokens are billed as reported (tokens are
    // bounded by the usual limits, not by `n`); the images are not.
    let output = (2 + EXTRA_IMAGES as i64) * IMAGE_OUTPUT_TOKENS as i64;
    assert_eq!(images.completion_tokens, output);
    assert_eq!(
        images.cost_nanos,
        2 * PER_IMAGE_MICROS * 1000
            + token_nanos(9, INPUT_MICROS)
            + token_nanos(output, OUTPUT_MICROS)
    );
    assert_eq!(rerank.cost_nanos, 3 * PER_SEARCH_MICROS * 1000);
    assert_eq!((units(images), units(rerank)), ([2, 0, 0, 0], [0, 0, 0, 3]));
    // Each row says its upstream's figure was not believed.
    for row in [images, rerank] {
        assert!(
            row.usage_flags
                .as_deref()
                .is_some_and(|flags| flags.contains("usage_clamped")),
            "{row:?}"
        );
    }
    gw.stop().await
}

/// Media units are held against a money budget before the call, like a
/// chat's `max_tokens`: with $0.10 left, three images ($0.12) are refused
/// outright, a $0.06 speech call is served, and the next one is refused
/// (only $0.04 left), each refusal a 402 that never reaches the upstream.
async fn a_spent_money_budget_refuses_media_calls_before_the_upstream(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, media_models).await?;
    let token = gw
        .create_token(json!({ "name": "budget", "budget_usd": 0.10 }))
        .await?;
    let refused = |reply: &Reply| {
        assert_eq!(reply.status, 402, "{}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some("budget_exhausted"));
    };
    refused(&post(&gw, &token, "/v1/images/generations", &image_body(3)).await?);
    assert_eq!(
        gw.mock.total_calls(),
        0,
        "a refused call reached the upstream"
    );
    // 4000 characters at $15 per million: $0.06.
    let speech = speech_body(&"x".repeat(4000));
    let reply = post(&gw, &token, "/v1/audio/speech", &speech).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    refused(&post(&gw, &token, "/v1/audio/speech", &speech).await?);
    assert_eq!(
        gw.mock.total_calls(),
        1,
        "a refused call reached the upstream"
    );
    let rows = gw.request_logs().await?;
    let outcomes: Vec<_> = rows
        .iter()
        .map(|row| (row.status, row.cost_nanos))
        .collect();
    assert_eq!(
        outcomes,
        [
            (402, 0),
            (200, token_nanos(4000, PER_MCHAR_MICROS)),
            (402, 0)
        ]
    );
    let characters: Vec<_> = rows.iter().map(units).collect();
    assert_eq!(characters, [[0, 0, 0, 0], [0, 4000, 0, 0], [0, 0, 0, 0]]);
    gw.stop().await
}

/// The billing identity over the real doors (issue 15, item 5): after
/// images, speech and both rerank shapes, the request logs, the token's
/// counters, the billing records and both rollups agree on every media unit
/// and on the cost, which is what the rates make of the units by hand.
async fn media_calls_keep_the_billing_identity(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, media_models).await?;
    let created = gw
        .admin_client()
        .create_token(json!({ "name": "media" }))
        .await?;
    let (token, id) = (created.token, created.id);
    let mut cohere = rerank_body(RERANK_MODEL, json!(["a", "b", "c"]));
    cohere["top_n"] = json!(1);
    let calls = [
        ("/v1/images/generations", image_body(3)),
        ("/v1/audio/speech", speech_body("héllo wörld 👋")),
        ("/v1/rerank", cohere),
        (
            "/v1/rerank",
            rerank_body(JINA_MODEL, json!(["a fox", "a dog"])),
        ),
    ];
    for (path, body) in &calls {
        let reply = post(&gw, &token, path, body).await?;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    // By hand: 3 images, 9 prompt and 300 output tokens; 13 characters;
    // one search unit; one search unit and 13 tokens.
    let want_units = [3, 13, 0, 2];
    let want_tokens = 9 + 300 + 13;
    let want_cost = 3 * PER_IMAGE_MICROS * 1000
        + token_nanos(9, INPUT_MICROS)
        + token_nanos(300, OUTPUT_MICROS)
        + token_nanos(13, PER_MCHAR_MICROS)
        + PER_SEARCH_MICROS * 1000
        + PER_SEARCH_MICROS * 1000
        + token_nanos(13, INPUT_MICROS);
    assert_billing_identity(
        &gw,
        id,
        Billed {
            requests: 4,
            units: want_units,
            tokens: want_tokens,
            cost_nanos: want_cost,
        },
    )
    .await?;
    // `/metrics` counts the same units, per unit (read with the admin
    // credential, after the usage above was written).
    let metrics = gw.get("/metrics", Some(common::MASTER_KEY)).await?;
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let counted = |model: &str, unit: &str| {
        let series = format!(
            "switchyard_media_units_total{{provider=\"mock\",model=\"{model}\",token=\"{id}\",unit=\"{unit}\"}} "
        );
        metrics
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.parse::<i64>().ok())
    };
    assert_eq!(counted(IMAGE_MODEL, "images"), Some(3));
    assert_eq!(counted(TTS_MODEL, "characters"), Some(13));
    assert_eq!(counted(RERANK_MODEL, "search_units"), Some(1));
    assert_eq!(counted(JINA_MODEL, "search_units"), Some(1));
    assert_eq!(counted(IMAGE_MODEL, "characters"), None);
    gw.stop().await
}

/// What the client got wrong is a 400 in OpenAI's error shape naming the
/// parameter, before any upstream call.
#[actix_rt::test]
async fn bad_client_input_is_refused_in_openai_shape() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, media_models).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let images = "/v1/images/generations";
    let speech = "/v1/audio/speech";
    let rerank = "/v1/rerank";
    let cases: Vec<(&str, Value, Option<&str>, &str)> = vec![
        (
            images,
            json!({ "prompt": "a fox" }),
            Some("model"),
            "You must provide a model parameter",
        ),
        (
            images,
            json!({ "model": "", "prompt": "a fox" }),
            Some("model"),
            "model parameter",
        ),
        (
            images,
            json!({ "model": 7, "prompt": "a fox" }),
            Some("model"),
            "must be a string",
        ),
        (
            images,
            json!({ "model": IMAGE_MODEL }),
            Some("prompt"),
            "`prompt`",
        ),
        (
            images,
            json!({ "model": IMAGE_MODEL, "prompt": "" }),
            Some("prompt"),
            "`prompt`",
        ),
        (
            images,
            json!({ "model": IMAGE_MODEL, "prompt": "x", "n": 0 }),
            Some("n"),
            "from 1 to 10",
        ),
        (
            images,
            json!({ "model": IMAGE_MODEL, "prompt": "x", "n": 11 }),
            Some("n"),
            "from 1 to 10",
        ),
        (
            images,
            json!({ "model": IMAGE_MODEL, "prompt": "x", "n": "2" }),
            Some("n"),
            "from 1 to 10",
        ),
        (
            images,
            json!({ "model": IMAGE_MODEL, "prompt": "x", "n": 1.5 }),
            Some("n"),
            "from 1 to 10",
        ),
        (
            images,
            json!({ "model": IMAGE_MODEL, "prompt": "x", "stream": true }),
            Some("stream"),
            "not supported by this gateway yet",
        ),
        (
            speech,
            json!({ "input": "hi", "voice": "alloy" }),
            Some("model"),
            "You must provide a model parameter",
        ),
        (
            speech,
            json!({ "model": TTS_MODEL, "voice": "alloy" }),
            Some("input"),
            "`input`",
        ),
        (
            speech,
            json!({ "model": TTS_MODEL, "input": "x".repeat(4097), "voice": "alloy" }),
            Some("input"),
            "the most is 4096",
        ),
        (
            speech,
            json!({ "model": TTS_MODEL, "input": "hi" }),
            Some("voice"),
            "`voice`",
        ),
        (
            speech,
            json!({ "model": TTS_MODEL, "input": "hi", "voice": 3 }),
            Some("voice"),
            "`voice`",
        ),
        (
            speech,
            json!({ "model": TTS_MODEL, "input": "hi", "voice": "alloy", "response_format": "mp4" }),
            Some("response_format"),
            "mp3, opus, aac, flac, wav, pcm",
        ),
        (
            speech,
            json!({ "model": TTS_MODEL, "input": "hi", "voice": "alloy", "stream_format": "sse" }),
            Some("stream_format"),
            "not supported by this gateway yet",
        ),
        (
            rerank,
            json!({ "query": "q", "documents": ["a"] }),
            Some("model"),
            "You must provide a model parameter",
        ),
        (
            rerank,
            json!({ "model": RERANK_MODEL, "documents": ["a"] }),
            Some("query"),
            "`query`",
        ),
        (
            rerank,
            json!({ "model": RERANK_MODEL, "query": "q" }),
            Some("documents"),
            "non-empty `documents`",
        ),
        (
            rerank,
            json!({ "model": RERANK_MODEL, "query": "q", "documents": [] }),
            Some("documents"),
            "non-empty `documents`",
        ),
        (
            rerank,
            json!({ "model": RERANK_MODEL, "query": "q", "documents": [1] }),
            Some("documents"),
            "a string or an object",
        ),
        (
            rerank,
            json!({ "model": RERANK_MODEL, "query": "q", "documents": [{ "title": "a" }] }),
            Some("documents"),
            "a string or an object",
        ),
        (
            rerank,
            json!({ "model": RERANK_MODEL, "query": "q", "documents": ["a"], "top_n": 0 }),
            Some("top_n"),
            "positive integer",
        ),
        (rerank, json!([1, 2]), None, "must be a JSON object"),
    ];
    for (path, body, param, message) in cases {
        let reply = post(&gw, &token, path, &body).await?;
        assert_eq!(reply.status, 400, "{path} {body}: {}", reply.text());
        let error = reply.json()?;
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert_eq!(
            error["error"]["param"].as_str(),
            param,
            "{path} {body}: {error}"
        );
        let text = error["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{path} {body}: {text}");
    }
    for path in [images, speech, rerank] {
        let reply = gw
            .post_raw(path, Some(&token), b"{not json".to_vec())
            .await?;
        assert_eq!(reply.status, 400, "{path}");
        let text = reply.json()?["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(text.contains("not valid JSON"), "{path}: {text}");
    }
    assert_eq!(gw.mock.total_calls(), 0, "bad input reached the upstream");
    gw.stop().await
}

/// A model served by a provider whose kind has no such endpoint is a clear
/// 400 naming the provider and its kind; kinds that have it are reached at
/// their own paths (Azure's deployments, Zhipu's `/api/paas/v4`).
#[actix_rt::test]
async fn providers_without_the_endpoint_are_named_and_others_reached_at_their_paths()
-> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        settings.providers = vec![
            kind_provider(
                mock,
                "claude",
                ProviderKind::Anthropic,
                &["claude-image"],
                &["ok-c"],
            ),
            kind_provider(
                mock,
                "azure",
                ProviderKind::AzureOpenai,
                &["azure-tts", "azure-rerank"],
                &["ok-a"],
            ),
            kind_provider(
                mock,
                "zhipu",
                ProviderKind::Zhipu,
                &["glm-tts", "glm-rerank"],
                &["ok-z"],
            ),
        ];
        settings.providers[1].api_version = Some("2025-04-01-preview".to_owned());
    })
    .await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let refused = [
        (
            "/v1/images/generations",
            json!({ "model": "claude-image", "prompt": "x" }),
            "`claude` (anthropic)",
        ),
        (
            "/v1/rerank",
            rerank_body("azure-rerank", json!(["a"])),
            "`azure` (azure-openai)",
        ),
        (
            "/v1/audio/speech",
            json!({ "model": "glm-tts", "input": "hi", "voice": "v" }),
            "`zhipu` (zhipu)",
        ),
    ];
    for (path, body, named) in refused {
        let reply = post(&gw, &token, path, &body).await?;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        let text = reply.json()?["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(text.contains(named) && text.contains(path), "{text}");
    }
    assert_eq!(gw.mock.total_calls(), 0);

    let reply = post(
        &gw,
        &token,
        "/v1/audio/speech",
        &json!({ "model": "azure-tts", "input": "hi", "voice": "alloy" }),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.mock.last_request().context("the mock saw nothing")?;
    assert!(
        seen.path
            .starts_with("/openai/deployments/azure-tts/audio/speech?api-version="),
        "{}",
        seen.path
    );
    let reply = post(
        &gw,
        &token,
        "/v1/rerank",
        &rerank_body("glm-rerank", json!(["a", "b"])),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.mock.last_request().context("the mock saw nothing")?;
    assert_eq!(seen.path, "/api/paas/v4/rerank");
    gw.stop().await
}
