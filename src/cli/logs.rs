//! `switchyard admin logs` and `switchyard admin metrics ...`: read-only
//! views of the request logs.

use super::table::{self, text, time, usd};
use super::{AdminClient, encode, print_json};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::Write as _;

/// `switchyard admin logs [filters]`: request logs, newest first;
/// `switchyard admin logs export ...`: a time range of them to a file.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LogsArgs {
    #[command(subcommand)]
    action: Option<LogsAction>,
    /// From this time: unix seconds or RFC 3339 (`2026-01-01T00:00:00Z`).
    #[arg(long)]
    from: Option<String>,
    /// Before this time (exclusive).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    token_id: Option<i64>,
    #[arg(long)]
    user_id: Option<i64>,
    /// The requested or the upstream model.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    /// Exactly this HTTP status.
    #[arg(long)]
    status: Option<u16>,
    /// 2xx, 3xx, 4xx or 5xx.
    #[arg(long, conflicts_with = "status")]
    status_class: Option<String>,
    /// Only streamed (`true`) or only non-streamed (`false`) requests.
    #[arg(long)]
    stream: Option<bool>,
    #[arg(long, default_value_t = 50)]
    limit: i64,
    #[arg(long, default_value_t = 0)]
    offset: i64,
}

#[derive(Debug, Subcommand)]
pub enum LogsAction {
    /// Export the request logs of a time range as JSON lines or CSV
    /// (oldest first; streamed, so any range fits), e.g. before
    /// `usage.retention` deletes them.
    Export(ExportArgs),
}

/// `switchyard admin logs export --since ... [--until ...]`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// From this time (inclusive): unix seconds or RFC 3339 (`2026-01-01`).
    #[arg(long)]
    since: String,
    /// Before this time (exclusive); default: now.
    #[arg(long)]
    until: Option<String>,
    /// `jsonl` (one JSON object per line) or `csv` (a header row first).
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
    format: String,
    /// Write here instead of standard output (removed again if the export
    /// fails half-way).
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
    #[arg(long)]
    token_id: Option<i64>,
    #[arg(long)]
    user_id: Option<i64>,
    /// The requested or the upstream model.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    /// Exactly this HTTP status.
    #[arg(long)]
    status: Option<u16>,
    /// 2xx, 3xx, 4xx or 5xx.
    #[arg(long, conflicts_with = "status")]
    status_class: Option<String>,
    /// Only streamed (`true`) or only non-streamed (`false`) requests.
    #[arg(long)]
    stream: Option<bool>,
}

async fn run_export(client: &AdminClient, args: ExportArgs) -> anyhow::Result<()> {
    let query = query(&[
        ("since", Some(args.since)),
        ("until", args.until),
        ("format", Some(args.format)),
        ("token_id", args.token_id.map(|id| id.to_string())),
        ("user_id", args.user_id.map(|id| id.to_string())),
        ("model", args.model),
        ("provider", args.provider),
        ("status", args.status.map(|status| status.to_string())),
        ("status_class", args.status_class),
        ("stream", args.stream.map(|stream| stream.to_string())),
    ]);
    let path = format!("/admin/request-logs/export?{query}");
    match args.output {
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            client.download(&path, &mut out).await?;
            Ok(())
        }
        Some(file) => {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&file)
                    .with_context(|| format!("cannot create {}", file.display()))?,
            );
            let written = client.download(&path, &mut out).await.and_then(|bytes| {
                out.flush()
                    .with_context(|| format!("writing {}", file.display()))?;
                Ok(bytes)
            });
            match written {
                Ok(bytes) => {
                    eprintln!("wrote {} ({bytes} bytes)", file.display());
                    Ok(())
                }
                Err(error) => {
                    drop(out);
                    let _ = std::fs::remove_file(&file);
                    Err(error)
                }
            }
        }
    }
}

/// `name=value&...` of the given parameters, values percent-encoded.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(name, value)| {
            value
                .as_ref()
                .map(|value| format!("{name}={}", encode(value)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub(super) async fn run_logs(
    client: &AdminClient,
    args: LogsArgs,
    as_json: bool,
) -> anyhow::Result<()> {
    if let Some(LogsAction::Export(export)) = args.action {
        return run_export(client, export).await;
    }
    let query = query(&[
        ("from", args.from),
        ("to", args.to),
        ("token_id", args.token_id.map(|id| id.to_string())),
        ("user_id", args.user_id.map(|id| id.to_string())),
        ("model", args.model),
        ("provider", args.provider),
        ("status", args.status.map(|status| status.to_string())),
        ("status_class", args.status_class),
        ("stream", args.stream.map(|stream| stream.to_string())),
        ("limit", Some(args.limit.to_string())),
        ("offset", Some(args.offset.to_string())),
    ]);
    let page = client.get(&format!("/admin/request-logs?{query}")).await?;
    if as_json {
        return print_json(&page);
    }
    let rows: Vec<Vec<String>> = data(&page)
        .iter()
        .map(|row| {
            let model = match (
                row["requested_model"].as_str(),
                row["upstream_model"].as_str(),
            ) {
                (Some(requested), Some(upstream)) if requested != upstream => {
                    format!("{requested} -> {upstream}")
                }
                _ => text(&row["requested_model"]),
            };
            vec![
                time(&Value::from(row["created_at"].as_i64().map(|ms| ms / 1000))),
                text(&row["status"]),
                model,
                text(&row["provider"]),
                text(&row["key_id"]),
                text(&row["token_id"]),
                text(&row["prompt_tokens"]),
                text(&row["completion_tokens"]),
                media_units(row),
                usd(&Value::from(
                    row["cost_nanos"].as_i64().map(|n| n as f64 / 1e9),
                )),
                text(&row["latency_ms"]),
                if row["stream"] == true { "yes" } else { "no" }.to_owned(),
                text(&row["request_id"]),
            ]
        })
        .collect();
    table::print(
        &[
            "TIME",
            " STATUS",
            "MODEL",
            "PROVIDER",
            "KEY",
            " TOKEN",
            " PROMPT",
            " COMPLETION",
            "MEDIA",
            " COST_USD",
            " LATENCY_MS",
            "STREAM",
            "REQUEST_ID",
        ],
        &rows,
    );
    println!(
        "{} of {} (offset {})",
        rows.len(),
        text(&page["total"]),
        text(&page["offset"])
    );
    Ok(())
}

/// The media units a log row or a summary counts, as `2 images, 61.5 s
/// audio`; `-` when none (a chat request).
fn media_units(row: &Value) -> String {
    let count = |field: &str| row[field].as_i64().filter(|n| *n > 0);
    let mut units = Vec::new();
    if let Some(images) = count("images") {
        units.push(format!("{images} images"));
    }
    if let Some(characters) = count("characters") {
        units.push(format!("{characters} chars"));
    }
    if let Some(ms) = count("audio_ms") {
        units.push(format!("{:.1} s audio", ms as f64 / 1000.0));
    }
    if let Some(searches) = count("search_units") {
        units.push(format!("{searches} searches"));
    }
    if units.is_empty() {
        "-".to_owned()
    } else {
        units.join(", ")
    }
}

fn data(page: &Value) -> &[Value] {
    page["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A time range (`--from`, `--to`).
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// From this time: unix seconds or RFC 3339 (default: 24 hours ago;
    /// 30 days for daily series).
    #[arg(long)]
    from: Option<String>,
    /// Before this time (default: now).
    #[arg(long)]
    to: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MetricsAction {
    /// Requests, success rate, errors, tokens, cost and latency percentiles.
    Summary {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Requests, tokens and cost per requested model.
    Models {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Requests, errors, tokens, cost and p50 latency per hour or day (UTC).
    Timeseries {
        /// `hour` or `day`.
        #[arg(long, default_value = "hour")]
        bucket: String,
        #[command(flatten)]
        range: RangeArgs,
    },
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_owned(), |share| format!("{:.1}%", share * 100.0))
}

pub(super) async fn run_metrics(
    client: &AdminClient,
    action: MetricsAction,
    as_json: bool,
) -> anyhow::Result<()> {
    let range = |range: RangeArgs| vec![("from", range.from), ("to", range.to)];
    match action {
        MetricsAction::Summary { range: args } => {
            let summary = client
                .get(&format!("/admin/metrics/summary?{}", query(&range(args))))
                .await?;
            if as_json {
                return print_json(&summary);
            }
            let latency = &summary["latency_ms"];
            let errors = &summary["errors"];
            table::details(&[
                ("from", time(&summary["from"])),
                ("to", time(&summary["to"])),
                ("requests", text(&summary["requests"])),
                ("successes", text(&summary["successes"])),
                ("success_rate", percent(&summary["success_rate"])),
                (
                    "errors",
                    format!(
                        "{} 4xx, {} 5xx, {} other",
                        text(&errors["4xx"]),
                        text(&errors["5xx"]),
                        text(&errors["other"])
                    ),
                ),
                (
                    "tokens",
                    format!(
                        "{} ({} prompt, {} completion)",
                        text(&summary["total_tokens"]),
                        text(&summary["prompt_tokens"]),
                        text(&summary["completion_tokens"])
                    ),
                ),
                ("media", media_units(&summary)),
                ("cost_usd", usd(&summary["cost_usd"])),
                (
                    "latency_ms",
                    format!(
                        "p50 {}, p90 {}, p99 {}",
                        text(&latency["p50"]),
                        text(&latency["p90"]),
                        text(&latency["p99"])
                    ),
                ),
                (
                    "ttft_ms",
                    format!("p50 {}", text(&summary["ttft_ms"]["p50"])),
                ),
                ("unpriced_requests", text(&summary["unpriced_requests"])),
            ]);
        }
        MetricsAction::Models { range: args } => {
            let models = client
                .get(&format!(
                    "/admin/metrics/models-distribution?{}",
                    query(&range(args))
                ))
                .await?;
            if as_json {
                return print_json(&models);
            }
            let rows: Vec<Vec<String>> = data(&models)
                .iter()
                .map(|row| {
                    vec![
                        text(&row["model"]),
                        text(&row["requests"]),
                        percent(&row["share"]),
                        text(&row["successes"]),
                        text(&row["total_tokens"]),
                        usd(&row["cost_usd"]),
                    ]
                })
                .collect();
            table::print(
                &[
                    "MODEL",
                    " REQUESTS",
                    " SHARE",
                    " SUCCESSES",
                    " TOKENS",
                    " COST_USD",
                ],
                &rows,
            );
        }
        MetricsAction::Timeseries {
            bucket,
            range: args,
        } => {
            let mut pairs = range(args);
            pairs.push(("bucket", Some(bucket)));
            let series = client
                .get(&format!("/admin/metrics/timeseries?{}", query(&pairs)))
                .await?;
            if as_json {
                return print_json(&series);
            }
            let rows: Vec<Vec<String>> = data(&series)
                .iter()
                .map(|row| {
                    vec![
                        time(&row["start"]),
                        text(&row["requests"]),
                        text(&row["errors"]),
                        text(&row["tokens"]),
                        usd(&row["cost_usd"]),
                        text(&row["p50_latency_ms"]),
                    ]
                })
                .collect();
            table::print(
                &[
                    "START",
                    " REQUESTS",
                    " ERRORS",
                    " TOKENS",
                    " COST_USD",
                    " P50_LATENCY_MS",
                ],
                &rows,
            );
        }
    }
    Ok(())
}
