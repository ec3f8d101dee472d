//! `switchyard admin prices ...`.

use super::table::{self, text, time};
use super::{AdminClient, encode, print_json};
use awc::http::Method;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum PriceAction {
    /// List model prices.
    List,
    /// Set a model's price (USD per million tokens, per media unit, and per
    /// call).
    Set {
        model: String,
        /// USD per million prompt tokens.
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
        input: f64,
        /// USD per million completion tokens.
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
        output: f64,
        /// USD per successful call, on top of the tokens (a `/proxy`
        /// endpoint's price: model `proxy:{provider}:{path}`).
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
        per_call: f64,
        /// USD per million prompt tokens read from the provider's prompt
        /// cache (default: the input price).
        #[arg(long, allow_negative_numbers = true)]
        cache_read: Option<f64>,
        /// USD per million prompt tokens written to the prompt cache
        /// (default: the input price).
        #[arg(long, allow_negative_numbers = true)]
        cache_write: Option<f64>,
        /// USD per million completion tokens spent reasoning (default: the
        /// output price).
        #[arg(long, allow_negative_numbers = true)]
        reasoning: Option<f64>,
        /// USD per image generated or edited, on top of the tokens.
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
        per_image: f64,
        /// USD per million characters of speech input (tts-1: 15).
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
        per_mchar: f64,
        /// USD per second of audio transcribed or translated ($0.006 a
        /// minute is 0.0001).
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
        per_audio_second: f64,
        /// USD per rerank search unit ($2 per 1,000 is 0.002).
        #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
        per_search: f64,
    },
    /// Remove a model's price (its requests are logged unpriced).
    Delete { model: String },
    /// Models served without a price recently.
    Unpriced {
        /// How many days of request logs to look at.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
}

pub(super) async fn run(
    client: &AdminClient,
    action: PriceAction,
    as_json: bool,
) -> anyhow::Result<()> {
    let answer = match action {
        PriceAction::List => client.get("/admin/model-prices").await?,
        PriceAction::Set {
            model,
            input,
            output,
            per_call,
            cache_read,
            cache_write,
            reasoning,
            per_image,
            per_mchar,
            per_audio_second,
            per_search,
        } => {
            let set = client
                .call(
                    Method::PUT,
                    &format!("/admin/model-prices/{}", encode(&model)),
                    Some(json!({
                        "input_per_mtok": input,
                        "output_per_mtok": output,
                        "per_call": per_call,
                        "cache_read_per_mtok": cache_read,
                        "cache_write_per_mtok": cache_write,
                        "reasoning_per_mtok": reasoning,
                        "per_image": per_image,
                        "per_mchar": per_mchar,
                        "per_audio_second": per_audio_second,
                        "per_search": per_search,
                    })),
                )
                .await?;
            json!({ "data": [set] })
        }
        PriceAction::Delete { model } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/admin/model-prices/{}", encode(&model)),
                    None,
                )
                .await?;
            if as_json {
                return print_json(&json!({ "deleted": model }));
            }
            println!("Deleted the price of {model}.");
            return Ok(());
        }
        PriceAction::Unpriced { days } => {
            let listed = client
                .get(&format!("/admin/unpriced-models?days={days}"))
                .await?;
            if as_json {
                return print_json(&listed);
            }
            let rows: Vec<Vec<String>> = rows(&listed)
                .iter()
                .map(|row| {
                    vec![
                        text(&row["model"]),
                        text(&row["requests"]),
                        time(&row["last_seen_at"]),
                    ]
                })
                .collect();
            table::print(&["MODEL", " REQUESTS", "LAST_SEEN"], &rows);
            return Ok(());
        }
    };
    if as_json {
        return print_json(&answer);
    }
    let rows: Vec<Vec<String>> = rows(&answer)
        .iter()
        .map(|row| {
            vec![
                text(&row["model"]),
                per_mtok(&row["input_per_mtok_micros"]),
                per_mtok(&row["output_per_mtok_micros"]),
                per_mtok(&row["cache_read_per_mtok_micros"]),
                per_mtok(&row["cache_write_per_mtok_micros"]),
                per_mtok(&row["reasoning_per_mtok_micros"]),
                media_rates(row),
            ]
        })
        .collect();
    // A part without its own rate shows `-`: charged at the input (cache)
    // or output (reasoning) price. MEDIA lists the media unit rates set
    // (`-`: none).
    table::print(
        &[
            "MODEL",
            " INPUT_PER_MTOK",
            " OUTPUT_PER_MTOK",
            " CACHE_READ",
            " CACHE_WRITE",
            " REASONING",
            "MEDIA",
        ],
        &rows,
    );
    Ok(())
}

fn rows(listed: &Value) -> &[Value] {
    listed["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The media unit rates a price charges, as `$0.04/image, $15.00/M chars`;
/// `-` when it charges none.
fn media_rates(row: &Value) -> String {
    let rates: Vec<String> = [
        ("per_image_micros", "/image"),
        ("per_mchar_micros", "/M chars"),
        ("per_audio_second_micros", "/audio s"),
        ("per_search_micros", "/search"),
    ]
    .iter()
    .filter(|(field, _)| row[*field].as_i64().is_some_and(|micros| micros > 0))
    .map(|(field, unit)| format!("{}{unit}", per_mtok(&row[*field])))
    .collect();
    if rates.is_empty() {
        "-".to_owned()
    } else {
        rates.join(", ")
    }
}

/// Micro-USD (per million tokens, or per unit) as `$2.50`.
fn per_mtok(micros: &Value) -> String {
    micros.as_i64().map_or_else(
        || "-".to_owned(),
        |micros| {
            let text = format!("{:.6}", micros as f64 / 1e6);
            let trimmed = text.trim_end_matches('0');
            let trimmed = if trimmed.ends_with('.') {
                format!("{trimmed}00")
            } else if trimmed.split('.').nth(1).is_some_and(|d| d.len() == 1) {
                format!("{trimmed}0")
            } else {
                trimmed.to_owned()
            };
            format!("${trimmed}")
        },
    )
}
