//! Usage accounting that nothing a client or an upstream sends can stop or
//! bend: strings PostgreSQL refuses, a record the database refuses, and usage
//! figures that are negative or absurdly large.

pub mod common;

use anyhow::Context;
use common::{TestGateway, chat_body, kind_provider, mock_provider};
use serde_json::json;
use std::time::Duration;
use switchyard::config::{Backend, PriceSettings, ProviderKind, Settings};

on_both_backends!(
    a_nul_byte_in_client_strings_does_not_stop_accounting,
    a_record_the_database_refuses_is_set_aside_and_the_rest_stored,
    negative_upstream_usage_is_zero_and_flagged,
    huge_upstream_usage_is_clamped_and_never_wraps,
    cache_and_reasoning_tokens_are_recorded_and_priced_at_their_own_rates,
    media_units_are_priced_and_request_logs_rollups_and_billing_agree,
);

/// One token = 1,000,000 nano-USD ($1,000 per million tokens, both ways).
fn priced(settings: &mut Settings) {
    settings.prices = vec![PriceSettings {
        model: "mock-gpt".to_owned(),
        input_per_mtok: 1000.0,
        output_per_mtok: 1000.0,
        ..Default::default()
    }];
}

/// Holds records for one batch: nothing is written until the test flushes.
fn one_batch(settings: &mut Settings) {
    settings.usage.flush_interval = Duration::from_secs(3600);
    settings.usage.flush_max_records = 10_000;
}

async fn token_id(gw: &TestGateway, token: &str) -> anyhow::Result<i64> {
    let (_, tokens) = gw
        .admin(awc::http::Method::GET, "/admin/tokens", None)
        .await?;
    let prefix: String = token.chars().take(11).collect();
    tokens["data"]
        .as_array()
        .or_else(|| tokens.as_array())
        .context("token list")?
        .iter()
        .find(|t| t["prefix"].as_str() == Some(prefix.as_str()))
        .and_then(|t| t["id"].as_i64())
        .with_context(|| format!("no token {prefix} in {tokens}"))
}

/// A model name with a NUL byte (PostgreSQL refuses it in TEXT) and a proxy
/// path with one, without a credential: both still leave a row, and every
/// later request is metered and charged as usual.
async fn a_nul_byte_in_client_strings_does_not_stop_accounting(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, _| {
        priced(s);
        one_batch(s);
    })
    .await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let id = token_id(&gw, &token).await?;

    let reply = gw.chat(&token, chat_body("mock\u{0}gpt", "hi")).await?;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    let reply = gw
        .send(awc::http::Method::GET, "/proxy/%00/x", &[], None)
        .await?;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    for _ in 0..5 {
        let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    let logs = gw.request_logs().await?;
    assert_eq!(logs.iter().filter(|row| row.status == 200).count(), 5);
    let odd = logs
        .iter()
        .find(|row| {
            row.requested_model
                .as_deref()
                .is_some_and(|m| m.starts_with("mock") && m.ends_with("gpt") && m != "mock-gpt")
        })
        .context("the NUL model's row")?;
    let model = odd.requested_model.as_deref().unwrap_or_default();
    assert!(!model.contains('\0'), "{model:?}");
    assert!(
        logs.iter().all(|row| !row.endpoint.contains('\0')),
        "a NUL reached a row"
    );
    assert_eq!(logs.len(), 7, "{:?}", common::outcomes(&logs));

    // The good requests were charged: 2 prompt + 5 completion tokens each.
    let row = gw.gateway()?.db.get_token(id).await?.context("token")?;
    assert_eq!(row.request_count, 6);
    assert_eq!(row.spent_tokens, 5 * 7);
    assert_eq!(row.spent_nanos, 5 * 7 * 1_000_000);

    // Accounting goes on after that batch.
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(gw.request_logs().await?.len(), 8);
    gw.stop().await
}

/// A record the database refuses (here a trigger stands in for whatever a
/// database may refuse) is set aside in `usage_dead_letters`, counted in
/// `/metrics`; every other record of its batch is stored.
async fn a_record_the_database_refuses_is_set_aside_and_the_rest_stored(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, mock| {
        one_batch(s);
        s.providers.push(mock_provider(
            mock,
            "poison",
            &["poison-model"],
            &["ok-poison"],
        ));
    })
    .await?;
    match backend {
        Backend::Sqlite => {
            gw.sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs \
                 WHEN NEW.requested_model = 'poison-model' \
                 BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
            )
            .await?;
        }
        Backend::Postgres => {
            gw.sql(
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.requested_model = 'poison-model' THEN RAISE EXCEPTION 'poison refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await?;
            gw.sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs \
                 FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            )
            .await?;
        }
    }
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let mut poison_id = String::new();
    for i in 0..9 {
        let model = if i == 4 { "poison-model" } else { "mock-gpt" };
        let reply = gw.chat(&token, chat_body(model, "hi")).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if i == 4 {
            poison_id = reply.header("x-request-id").context("id")?.to_owned();
        }
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 8, "{:?}", common::outcomes(&logs));
    assert!(logs.iter().all(|row| row.request_id != poison_id));
    let dead = gw.gateway()?.db.list_dead_letters(10).await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead.first().map(|d| d.request_id.as_str()),
        Some(poison_id.as_str())
    );
    assert!(
        dead.first()
            .is_some_and(|d| d.error.contains("poison refused")),
        "{dead:?}"
    );
    let text = gw.metrics().await?;
    assert_eq!(
        common::metric(&text, "switchyard_usage_dead_letters_total"),
        1.0,
        "{text}"
    );
    // Accounting goes on.
    let reply = gw.chat(&token, chat_body("mock-gpt", "hi")).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(gw.request_logs().await?.len(), 9);
    gw.stop().await
}

/// Starts a gateway whose only key reports usage as `figure` (the mock's
/// `negusage-`/`hugeusage-` keys), with a priced model and a postpaid owner.
async fn hostile_usage_gateway(backend: Backend, key: &str) -> anyhow::Result<TestGateway> {
    let key = key.to_owned();
    TestGateway::start(backend, move |s, mock| {
        priced(s);
        s.providers = vec![mock_provider(mock, "mock", &["mock-gpt"], &[key.as_str()])];
    })
    .await
}

/// An upstream reporting -1e9 tokens: the row, the token's counters and the
/// owner's balance never go the wrong way; the row says why.
async fn negative_upstream_usage_is_zero_and_flagged(backend: Backend) -> anyhow::Result<()> {
    let gw = hostile_usage_gateway(backend, "negusage-1").await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let id = token_id(&gw, &token).await?;
    for stream in [false, true] {
        let mut body = chat_body("mock-gpt", "hi");
        body["stream"] = json!(stream);
        body["max_tokens"] = json!(5);
        let reply = gw.chat(&token, body).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 2);
    for row in &logs {
        assert!(
            row.prompt_tokens >= 0 && row.completion_tokens >= 0,
            "{row:?}"
        );
        assert!(row.cost_nanos >= 0, "{row:?}");
        assert!(
            row.usage_flags
                .as_deref()
                .is_some_and(|flags| flags.contains("usage_negative")),
            "{row:?}"
        );
    }
    let db = &gw.gateway()?.db;
    let token_row = db.get_token(id).await?.context("token")?;
    assert!(token_row.spent_nanos >= 0, "{token_row:?}");
    assert!(token_row.spent_tokens >= 0, "{token_row:?}");
    let owner = db
        .get_user(token_row.user_id.context("owner")?)
        .await?
        .context("user")?;
    assert!(
        owner.balance_nanos <= 0,
        "the owner gained money: {owner:?}"
    );
    let text = gw.metrics().await?;
    assert_eq!(
        common::metric(
            &text,
            "switchyard_usage_flagged_total{flag=\"usage_negative\"}"
        ),
        2.0,
        "{text}"
    );
    gw.stop().await
}

/// An upstream reporting 9.2e18 tokens (twice: the sum overflows an i64):
/// the request is answered, its row is clamped to what the request could
/// produce and flagged, and the counters stay small and positive.
async fn huge_upstream_usage_is_clamped_and_never_wraps(backend: Backend) -> anyhow::Result<()> {
    let gw = hostile_usage_gateway(backend, "hugeusage-1").await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let id = token_id(&gw, &token).await?;
    for stream in [false, true, false] {
        let mut body = chat_body("mock-gpt", "hi");
        body["stream"] = json!(stream);
        body["max_tokens"] = json!(5);
        let reply = gw.chat(&token, body).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 3);
    let allowance = gw.settings.usage.prompt_token_allowance;
    for row in &logs {
        // At most max_tokens out; in, at most the request's bytes plus the
        // allowance for what bytes do not show (images by URL, templates).
        assert_eq!(row.completion_tokens, 5, "{row:?}");
        assert!(
            row.prompt_tokens > 0 && row.prompt_tokens <= 4096 + allowance,
            "{row:?}"
        );
        assert!(
            row.usage_flags
                .as_deref()
                .is_some_and(|flags| flags.contains("usage_clamped")),
            "{row:?}"
        );
    }
    let token_row = gw.gateway()?.db.get_token(id).await?.context("token")?;
    let logged_tokens: i64 = logs
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    let logged_cost: i64 = logs.iter().map(|r| r.cost_nanos).sum();
    assert_eq!(token_row.spent_tokens, logged_tokens);
    assert_eq!(token_row.spent_nanos, logged_cost);
    assert!(token_row.spent_nanos > 0);
    gw.stop().await
}

/// Nano-USD per token of each kind for the `cache-*` models: $1,000 per
/// million input and output tokens, $100 per million cache reads, $1,250
/// per million cache writes, $2,000 per million reasoning tokens.
const INPUT: i64 = 1_000_000;
const OUTPUT: i64 = 1_000_000;
const CACHE_READ: i64 = 100_000;
const CACHE_WRITE: i64 = 1_250_000;
const REASONING: i64 = 2_000_000;

fn cache_price(model: &str) -> PriceSettings {
    PriceSettings {
        model: model.to_owned(),
        input_per_mtok: 1000.0,
        output_per_mtok: 1000.0,
        cache_read_per_mtok: Some(100.0),
        cache_write_per_mtok: Some(1250.0),
        reasoning_per_mtok: Some(2000.0),
        ..Default::default()
    }
}

/// What one row must say: (prompt, cache reads, cache writes, completion,
/// reasoning) and its cost at the `cache-*` rates.
fn expected(prompt: i64, read: i64, write: i64, completion: i64, reasoning: i64) -> [i64; 6] {
    let cost = (prompt - read - write) * INPUT
        + read * CACHE_READ
        + write * CACHE_WRITE
        + (completion - reasoning) * OUTPUT
        + reasoning * REASONING;
    [prompt, read, write, completion, reasoning, cost]
}

fn figures(row: &switchyard::db::RequestLog) -> [i64; 6] {
    [
        row.prompt_tokens,
        row.cache_read_tokens,
        row.cache_write_tokens,
        row.completion_tokens,
        row.reasoning_tokens,
        row.cost_nanos,
    ]
}

/// Prompt-cache reads and writes and reasoning tokens, as each wire reports
/// them (the mock's `cached-` keys: OpenAI counts cached tokens inside
/// `prompt_tokens` and reasoning inside `completion_tokens`, Anthropic
/// reports cache reads and writes apart from `input_tokens`, Gemini
/// `cachedContentTokenCount` and `thoughtsTokenCount`), whole and streamed,
/// translated and passed through: every row holds the same "parts inside
/// the totals" figures, each part is charged at its own rate, and the
/// request logs, the token's counters, the billing records and the rollups
/// agree. A rate set to null falls back to the total's rate.
async fn cache_and_reasoning_tokens_are_recorded_and_priced_at_their_own_rates(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |s, mock| {
        s.prices = ["cache-gpt", "cache-claude", "cache-gemini"]
            .map(cache_price)
            .to_vec();
        s.providers = vec![
            kind_provider(
                mock,
                "oa",
                ProviderKind::Openai,
                &["cache-gpt"],
                &["cached-1"],
            ),
            kind_provider(
                mock,
                "an",
                ProviderKind::Anthropic,
                &["cache-claude"],
                &["cached-1"],
            ),
            kind_provider(
                mock,
                "ge",
                ProviderKind::Gemini,
                &["cache-gemini"],
                &["cached-1"],
            ),
        ];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "app" })).await?;
    let id = token_id(&gw, &token).await?;
    // 40 bytes of prompt: the mock counts one token per byte.
    let prompt = "forty bytes of prompt text, give or take";
    assert_eq!(prompt.len(), 40);

    for model in ["cache-gpt", "cache-claude", "cache-gemini"] {
        for stream in [false, true] {
            let mut body = chat_body(model, prompt);
            body["stream"] = json!(stream);
            let reply = gw.chat(&token, body).await?;
            assert_eq!(reply.status, 200, "{model} {stream}: {}", reply.text());
        }
    }
    // An Anthropic client to an Anthropic upstream: passed through.
    for stream in [false, true] {
        let body = json!({
            "model": "cache-claude",
            "max_tokens": 100,
            "stream": stream,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": prompt}],
        });
        let reply = gw
            .post_raw("/v1/messages", Some(&token), serde_json::to_vec(&body)?)
            .await?;
        assert_eq!(reply.status, 200, "messages {stream}: {}", reply.text());
        // Passed through: the upstream saw the client's cache_control.
        let seen = gw.mock.last_request().context("a request")?;
        let seen: serde_json::Value = serde_json::from_slice(&seen.body)?;
        assert_eq!(seen["system"][0]["cache_control"]["type"], "ephemeral");
    }

    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 8, "{:?}", common::outcomes(&logs));
    // OpenAI: half of 40 cached, 5 words + 3 reasoning tokens out.
    let openai = expected(40, 20, 0, 8, 3);
    // Anthropic: 10 uncached + 20 read + 10 written = 40 in; 5 out.
    let anthropic = expected(40, 20, 10, 5, 0);
    // Gemini: 20 of 40 cached; 5 candidates + 3 thoughts out.
    let gemini = expected(40, 20, 0, 8, 3);
    // The passed-through Anthropic requests count `system` too.
    let anthropic_native = expected(43, 21, 10, 5, 0);
    let want = [
        openai,
        openai,
        anthropic,
        anthropic,
        gemini,
        gemini,
        anthropic_native,
        anthropic_native,
    ];
    for (row, want) in logs.iter().zip(want) {
        assert_eq!(
            figures(row),
            want,
            "{:?} stream {}: {row:?}",
            row.requested_model,
            row.stream
        );
        assert!(row.priced && row.usage_flags.is_none(), "{row:?}");
    }

    // Request logs = token counters = billing records = rollups.
    let db = &gw.gateway()?.db;
    let logged_tokens: i64 = logs
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    let logged_cost: i64 = logs.iter().map(|r| r.cost_nanos).sum();
    let token_row = db.get_token(id).await?.context("token")?;
    assert_eq!(
        (token_row.spent_tokens, token_row.spent_nanos),
        (logged_tokens, logged_cost)
    );
    let filter = switchyard::db::BillingFilter {
        token_id: Some(id),
        ..Default::default()
    };
    let (charges, _) = db.list_billing(&filter, 1000, 0).await?;
    assert_eq!(charges.len(), logs.len());
    assert_eq!(
        charges.iter().map(|c| c.amount_nanos).sum::<i64>(),
        logged_cost
    );
    let parts = |rows: &[switchyard::db::RequestLog]| {
        rows.iter().fold([0i64; 3], |sum, r| {
            [
                sum[0] + r.cache_read_tokens,
                sum[1] + r.cache_write_tokens,
                sum[2] + r.reasoning_tokens,
            ]
        })
    };
    for rollup in [
        switchyard::db::rollups::Rollup::Hourly,
        switchyard::db::rollups::Rollup::Daily,
    ] {
        let rows = db.list_rollups(rollup).await?;
        let sums = rows.iter().fold([0i64; 4], |sum, row| {
            let f = &row.figures;
            [
                sum[0] + f.cache_read_tokens,
                sum[1] + f.cache_write_tokens,
                sum[2] + f.reasoning_tokens,
                sum[3] + f.cost_nanos,
            ]
        });
        let [read, write, reasoning] = parts(&logs);
        assert_eq!(sums, [read, write, reasoning, logged_cost], "{rollup:?}");
    }
    // The admin API shows the parts of a row and the sums.
    let admin = gw.admin_client();
    let summary = admin.get("/admin/metrics/summary").await?;
    assert_eq!(
        summary["cache_read_tokens"],
        json!(parts(&logs)[0]),
        "{summary}"
    );
    assert_eq!(
        summary["reasoning_tokens"],
        json!(parts(&logs)[2]),
        "{summary}"
    );

    // A rate set to null: reasoning is charged at the output rate again.
    let price = admin
        .put(
            "/admin/model-prices/cache-gpt",
            json!({
                "input_per_mtok": 1000, "output_per_mtok": 1000,
                "cache_read_per_mtok": 100, "reasoning_per_mtok": null,
            }),
        )
        .await?;
    assert_eq!(price["cache_read_per_mtok_micros"], 100_000_000, "{price}");
    assert!(price["reasoning_per_mtok"].is_null(), "{price}");
    assert!(price["cache_write_per_mtok"].is_null(), "{price}");
    let reply = gw.chat(&token, chat_body("cache-gpt", prompt)).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let logs = gw.request_logs().await?;
    let last = logs.last().context("the last row")?;
    assert_eq!(
        figures(last),
        [40, 20, 0, 8, 3, 20 * INPUT + 20 * CACHE_READ + 8 * OUTPUT]
    );
    // A negative rate is refused, naming the field.
    let refused = admin
        .call(
            awc::http::Method::PUT,
            "/admin/model-prices/cache-gpt",
            Some(json!({"input_per_mtok": 1, "output_per_mtok": 1, "cache_write_per_mtok": -1})),
        )
        .await?;
    assert_eq!(refused.0, 400, "{:?}", refused.1);
    assert_eq!(refused.1["error"]["param"], "cache_write_per_mtok");
    gw.stop().await
}

/// One media call: its endpoint, (prompt, completion) tokens and (images,
/// characters, audio_ms, search_units), the units on top of the tokens.
type MediaCall = (&'static str, (i64, i64), [i64; 4]);

/// One media request's usage record, as the meter settles it, for the
/// token and user of `owner`.
fn media_record(
    n: i64,
    at_ms: i64,
    owner: (i64, Option<i64>),
    (endpoint, tokens, units): MediaCall,
    price: switchyard::metering::Price,
) -> switchyard_actors::UsageRecord {
    let model = "mock-media";
    let (token_id, user_id) = owner;
    let [images, characters, audio_ms, search_units] = units;
    let usage = switchyard::providers::openai::Usage {
        images,
        characters,
        audio_ms,
        search_units,
        ..switchyard::providers::openai::Usage::tokens(tokens.0, tokens.1)
    };
    let cost = price.usage_cost_nanos(&usage);
    switchyard_actors::UsageRecord {
        created_at_ms: at_ms,
        request_id: format!("req-media-{n}"),
        record_id: format!("rec-media-{n}"),
        token_id: Some(token_id),
        user_id,
        endpoint: endpoint.to_owned(),
        provider: Some("mock".to_owned()),
        key_id: Some("ok-1".to_owned()),
        requested_model: Some(model.to_owned()),
        upstream_model: Some(model.to_owned()),
        status: 200,
        latency_ms: 40,
        prompt_tokens: tokens.0,
        completion_tokens: tokens.1,
        cost_nanos: cost,
        base_cost_nanos: cost,
        priced: true,
        attempts: 1,
        images,
        characters,
        audio_ms,
        search_units,
        ..Default::default()
    }
}

/// The four media units of the admin API's rows and sums, in order.
fn units_of(value: &serde_json::Value) -> [i64; 4] {
    ["images", "characters", "audio_ms", "search_units"]
        .map(|field| value[field].as_i64().unwrap_or(-1))
}

/// Media units (issue 15, item 3) with their prices: a price set through
/// the admin API is listed back in USD and micros and is the one the meter
/// loads; records carrying images, characters, audio and search units (and
/// tokens, as gpt-image-1 reports both) are stored by the usage writer, and
/// the request logs, the token's counters, the billing records and both
/// rollups agree on every unit and on the cost; the admin views (a log row,
/// the summary, the per-model figures, the CSV export) show the units.
/// Driven through the usage writer directly: the media doors' end-to-end
/// accounting test lives with the doors.
async fn media_units_are_priced_and_request_logs_rollups_and_billing_agree(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let id = token_id(&gw, &token).await?;
    let db = &gw.gateway()?.db;
    let user_id = db.get_token(id).await?.context("token")?.user_id;
    let balance_before = match user_id {
        Some(user) => db.get_user(user).await?.context("user")?.balance_nanos,
        None => 0,
    };

    // Set -> listed back -> loaded for the meter.
    let set = admin
        .put(
            "/admin/model-prices/mock-media",
            json!({
                "input_per_mtok": 5, "output_per_mtok": 40,
                "per_image": 0.04, "per_mchar": 15, "per_audio_second": 0.0001,
                "per_search": 0.002,
            }),
        )
        .await?;
    for (field, micros, usd) in [
        ("per_image", 40_000, 0.04),
        ("per_mchar", 15_000_000, 15.0),
        ("per_audio_second", 100, 0.0001),
        ("per_search", 2_000, 0.002),
    ] {
        assert_eq!(set[format!("{field}_micros")], micros, "{field}: {set}");
        assert_eq!(set[field], usd, "{field}: {set}");
    }
    let listed = admin.get("/admin/model-prices").await?;
    let row = listed["data"]
        .as_array()
        .context("data")?
        .iter()
        .find(|row| row["model"] == "mock-media")
        .context("mock-media listed")?;
    assert_eq!(row, &set);
    // The seeded list prices carry media rates too.
    let whisper = listed["data"]
        .as_array()
        .context("data")?
        .iter()
        .find(|row| row["model"] == "whisper-1")
        .context("whisper-1 seeded")?;
    assert_eq!(whisper["per_audio_second_micros"], 100, "{whisper}");
    let prices = switchyard::config_store::load_prices(db).await?;
    let price = *prices.get("mock-media").context("mock-media loaded")?;
    assert_eq!(
        (
            price.per_image_micros,
            price.per_mchar_micros,
            price.per_audio_second_micros,
            price.per_search_micros,
        ),
        (40_000, 15_000_000, 100, 2_000)
    );
    // A bad rate is a 400 naming its field; nothing changes.
    let refused = admin
        .call(
            awc::http::Method::PUT,
            "/admin/model-prices/mock-media",
            Some(json!({"input_per_mtok": 1, "output_per_mtok": 1, "per_audio_second": -0.1})),
        )
        .await?;
    assert_eq!(refused.0, 400, "{:?}", refused.1);
    assert_eq!(refused.1["error"]["param"], "per_audio_second");
    assert_eq!(
        switchyard::config_store::load_prices(db)
            .await?
            .get("mock-media"),
        Some(&price)
    );

    // One record per door kind, an hour apart for two of them (two rollup
    // rows), then the same batch again (stored once).
    let now = switchyard::clock::system_now_ms() - 60_000;
    let calls: [MediaCall; 6] = [
        ("/v1/images/generations", (0, 0), [2, 0, 0, 0]),
        ("/v1/images/generations", (12, 4_160), [1, 0, 0, 0]),
        ("/v1/audio/speech", (0, 0), [0, 1_234, 0, 0]),
        ("/v1/audio/transcriptions", (0, 0), [0, 0, 61_500, 0]),
        ("/v1/audio/translations", (0, 0), [0, 0, 2_001, 0]),
        ("/v1/rerank", (0, 0), [0, 0, 0, 3]),
    ];
    let records: Vec<switchyard_actors::UsageRecord> = (0_i64..)
        .zip(calls)
        .map(|(n, call)| media_record(n, now - n % 2 * 3_600_000, (id, user_id), call, price))
        .collect();
    // By hand, in nano-USD: 3 images x $0.04 = 120,000,000; 12 tokens x
    // $5/M = 60,000 and 4,160 x $40/M = 166,400,000; 1,234 characters x
    // $15/M = 18,510,000; 63.501 s x $0.0001 = 6,350,100; 3 searches x
    // $0.002 = 6,000,000.
    let by_hand = 120_000_000 + 60_000 + 166_400_000 + 18_510_000 + 6_350_100 + 6_000_000;
    let cost: i64 = records.iter().map(|r| r.cost_nanos).sum();
    assert_eq!(cost, by_hand);
    db.write_usage_batch(&records).await?;
    assert!(
        db.write_usage_batch(&records).await?.is_empty(),
        "a record written twice is stored once"
    );

    let units = |rows: &mut dyn Iterator<Item = [i64; 4]>| {
        rows.fold([0i64; 4], |sum, row| {
            [
                sum[0] + row[0],
                sum[1] + row[1],
                sum[2] + row[2],
                sum[3] + row[3],
            ]
        })
    };
    let want = [3, 1_234, 63_501, 3];
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), records.len());
    assert_eq!(
        units(
            &mut logs
                .iter()
                .map(|r| [r.images, r.characters, r.audio_ms, r.search_units])
        ),
        want
    );
    assert_eq!(logs.iter().map(|r| r.cost_nanos).sum::<i64>(), cost);
    // The token's counters: the cost (units are not tokens: only the
    // gpt-image-1-like record's tokens count).
    let token_row = db.get_token(id).await?.context("token")?;
    assert_eq!(
        (
            token_row.spent_nanos,
            token_row.spent_tokens,
            token_row.request_count
        ),
        (cost, 12 + 4_160, 6)
    );
    if let Some(user) = user_id {
        let after = db.get_user(user).await?.context("user")?.balance_nanos;
        assert_eq!(balance_before - after, cost);
    }
    // The billing records: one charge per request, with its units.
    let filter = switchyard::db::BillingFilter {
        token_id: Some(id),
        ..Default::default()
    };
    let (charges, total) = db.list_billing(&filter, 1000, 0).await?;
    assert_eq!(total, 6);
    assert_eq!(charges.iter().map(|c| c.amount_nanos).sum::<i64>(), cost);
    assert_eq!(
        units(
            &mut charges
                .iter()
                .map(|c| [c.images, c.characters, c.audio_ms, c.search_units])
        ),
        want
    );
    // Both rollups.
    for rollup in [
        switchyard::db::rollups::Rollup::Hourly,
        switchyard::db::rollups::Rollup::Daily,
    ] {
        let rows = db.list_rollups(rollup).await?;
        let f = |row: &switchyard::db::rollups::HourlyRow| {
            let f = &row.figures;
            [f.images, f.characters, f.audio_ms, f.search_units]
        };
        assert_eq!(units(&mut rows.iter().map(f)), want, "{rollup:?}");
        let rollup_cost: i64 = rows.iter().map(|row| row.figures.cost_nanos).sum();
        assert_eq!(rollup_cost, cost, "{rollup:?}");
    }

    // The admin views.
    let speech = logs
        .iter()
        .find(|r| r.endpoint == "/v1/audio/speech")
        .context("speech row")?;
    let row = admin
        .get(&format!("/admin/request-logs/{}", speech.id))
        .await?;
    assert_eq!(units_of(&row), [0, 1_234, 0, 0], "{row}");
    let from = (now - 2 * 3_600_000) / 1000;
    let summary = admin
        .get(&format!("/admin/metrics/summary?from={from}"))
        .await?;
    assert_eq!(units_of(&summary), want, "{summary}");
    assert_eq!(summary["cost_nanos"], cost, "{summary}");
    let models = admin
        .get(&format!("/admin/metrics/models-distribution?from={from}"))
        .await?;
    let media = models["data"]
        .as_array()
        .or_else(|| models["models"].as_array())
        .context("models")?
        .iter()
        .find(|row| row["model"] == "mock-media" || row["name"] == "mock-media")
        .with_context(|| format!("mock-media in {models}"))?
        .clone();
    assert_eq!(units_of(&media), want, "{media}");
    let ledger = admin.get(&format!("/admin/billing?token_id={id}")).await?;
    let ledger = ledger["data"].as_array().context("billing data")?;
    assert_eq!(ledger.len(), 6);
    assert_eq!(units(&mut ledger.iter().map(units_of)), want);
    let (status, csv) = admin
        .call(
            awc::http::Method::GET,
            "/admin/request-logs/export?since=0&format=csv",
            None,
        )
        .await?;
    assert_eq!(status, 200, "{csv}");
    let csv = csv.as_str().context("CSV text")?;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers()?.clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let at = ["images", "characters", "audio_ms", "search_units"]
        .map(|name| column(name).unwrap_or(usize::MAX));
    let mut exported = [0i64; 4];
    for record in reader.records() {
        let record = record?;
        for (sum, index) in exported.iter_mut().zip(at) {
            *sum += record.get(index).context("a unit column")?.parse::<i64>()?;
        }
    }
    assert_eq!(exported, want);
    gw.stop().await
}
