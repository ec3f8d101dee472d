//! `switchyard admin billing ...`.

use super::table::{self, text, time, usd};
use super::{AdminClient, encode, print_json};
use clap::Subcommand;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum BillingAction {
    /// Billing records, newest first.
    List {
        /// Only this user's (id or name).
        #[arg(long)]
        user: Option<String>,
        /// Only this token's.
        #[arg(long)]
        token: Option<i64>,
        /// `request` or `topup`.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
}

pub(super) async fn run(
    client: &AdminClient,
    action: BillingAction,
    as_json: bool,
) -> anyhow::Result<()> {
    let BillingAction::List {
        user,
        token,
        kind,
        limit,
        offset,
    } = action;
    let mut query = format!("limit={limit}&offset={offset}");
    if let Some(user) = user {
        query.push_str(&format!("&user_id={}", client.user_id(&user).await?));
    }
    if let Some(token) = token {
        query.push_str(&format!("&token_id={token}"));
    }
    if let Some(kind) = kind {
        query.push_str(&format!("&kind={}", encode(&kind)));
    }
    let listed = client.get(&format!("/admin/billing?{query}")).await?;
    if as_json {
        return print_json(&listed);
    }
    let rows: Vec<Vec<String>> = listed["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|record| {
            let what = if record["kind"] == "topup" {
                text(&record["note"])
            } else {
                format!(
                    "{} ({}+{} tokens{}{})",
                    text(&record["model"]),
                    text(&record["prompt_tokens"]),
                    text(&record["completion_tokens"]),
                    media_units(record),
                    if record["priced"] == false {
                        ", unpriced"
                    } else {
                        ""
                    }
                )
            };
            vec![
                text(&record["id"]),
                time(&record["created_at"]),
                text(&record["kind"]),
                text(&record["user_id"]),
                text(&record["token_id"]),
                usd(&record["amount_usd"]),
                what,
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "TIME",
            "KIND",
            "USER",
            "TOKEN",
            " AMOUNT_USD",
            "DETAIL",
        ],
        &rows,
    );
    println!("{} of {} records", rows.len(), text(&listed["total"]));
    Ok(())
}

/// The media units a charge paid for, as `, 2 images`; empty when none.
fn media_units(record: &Value) -> String {
    [
        ("images", "images"),
        ("characters", "chars"),
        ("audio_ms", "ms audio"),
        ("search_units", "searches"),
    ]
    .iter()
    .filter_map(|(field, unit)| {
        record[*field]
            .as_i64()
            .filter(|n| *n > 0)
            .map(|n| format!(", {n} {unit}"))
    })
    .collect()
}
