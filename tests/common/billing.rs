//! The billing identity (issue 15, item 5): whatever a token's calls were,
//! its request logs, its counters, its billing records and both usage
//! rollups agree with each other and with the figures worked out by hand.

use super::TestGateway;
use anyhow::Context;
use switchyard::db::BillingFilter;
use switchyard::db::rollups::Rollup;

/// What a token's calls add up to, worked out by hand.
#[derive(Debug, Clone, Copy)]
pub struct Billed {
    pub requests: i64,
    /// `[images, characters, audio_ms, search_units]`.
    pub units: [i64; 4],
    /// Prompt plus completion tokens.
    pub tokens: i64,
    pub cost_nanos: i64,
}

fn sum(rows: impl Iterator<Item = [i64; 4]>) -> [i64; 4] {
    rows.fold([0; 4], |sum, row| {
        [
            sum[0] + row[0],
            sum[1] + row[1],
            sum[2] + row[2],
            sum[3] + row[3],
        ]
    })
}

/// Asserts that every place the gateway keeps `token_id`'s spend says
/// `want`, from figures an honest upstream reported (no row flagged).
pub async fn assert_billing_identity(
    gw: &TestGateway,
    token_id: i64,
    want: Billed,
) -> anyhow::Result<()> {
    let logs = gw.request_logs().await?;
    assert_eq!(i64::try_from(logs.len())?, want.requests, "request logs");
    // The calls' figures were all believed (none clamped or negative).
    for row in &logs {
        assert_eq!(row.usage_flags, None, "{row:?}");
    }
    let logged = sum(logs
        .iter()
        .map(|row| [row.images, row.characters, row.audio_ms, row.search_units]));
    let logged_tokens: i64 = logs
        .iter()
        .map(|row| row.prompt_tokens + row.completion_tokens)
        .sum();
    let logged_cost: i64 = logs.iter().map(|row| row.cost_nanos).sum();
    assert_eq!(
        (logged, logged_tokens, logged_cost),
        (want.units, want.tokens, want.cost_nanos),
        "request logs: units, tokens, cost"
    );

    let db = &gw.gateway()?.db;
    let token = db.get_token(token_id).await?.context("token")?;
    assert_eq!(
        (token.spent_tokens, token.spent_nanos, token.request_count),
        (want.tokens, want.cost_nanos, want.requests),
        "token counters"
    );

    let filter = BillingFilter {
        token_id: Some(token_id),
        ..Default::default()
    };
    let (charges, total) = db.list_billing(&filter, 1000, 0).await?;
    assert_eq!(total, want.requests, "billing records");
    let charged = sum(charges
        .iter()
        .map(|c| [c.images, c.characters, c.audio_ms, c.search_units]));
    let charged_cost: i64 = charges.iter().map(|charge| charge.amount_nanos).sum();
    assert_eq!(
        (charged, charged_cost),
        (want.units, want.cost_nanos),
        "billing records: units, cost"
    );

    for rollup in [Rollup::Hourly, Rollup::Daily] {
        let rows = db.list_rollups(rollup).await?;
        let rolled = sum(rows.iter().map(|row| {
            let f = &row.figures;
            [f.images, f.characters, f.audio_ms, f.search_units]
        }));
        let cost: i64 = rows.iter().map(|row| row.figures.cost_nanos).sum();
        assert_eq!(
            (rolled, cost),
            (want.units, want.cost_nanos),
            "{rollup:?} rollup: units, cost"
        );
    }
    Ok(())
}
