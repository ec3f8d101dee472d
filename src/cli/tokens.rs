//! `switchyard admin tokens ...`.

use super::table::{self, text, time, usd};
use super::{AdminClient, Setting, print_json};
use anyhow::{Context as _, bail};
use awc::http::Method;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token; it is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Owner: a user id or name. Default: the `default` user.
        #[arg(long, alias = "user-id")]
        user: Option<String>,
        /// Allowed model (repeatable; globs allowed). Default: all.
        #[arg(long = "model")]
        models: Vec<String>,
        #[command(flatten)]
        limits: CreateLimits,
        /// Unix time (seconds) after which the token stops working.
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<i64>,
        /// Lifetime from now (`30d`, `12h`, `90m`).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a token's name, owner or limits (`none` lifts a limit).
    Update {
        id: i64,
        #[arg(long)]
        name: Option<String>,
        /// New owner: a user id or name.
        #[arg(long, alias = "user-id")]
        user: Option<String>,
        /// Replace the allowed models (repeatable; globs allowed).
        #[arg(long = "model", conflicts_with = "all_models")]
        models: Vec<String>,
        /// Allow every model again.
        #[arg(long)]
        all_models: bool,
        #[command(flatten)]
        limits: UpdateLimits,
        /// Remove every quota.
        #[arg(long, conflicts_with = "quotas")]
        no_quotas: bool,
        /// Unix time (seconds) after which the token stops working, or `none`.
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<Setting<i64>>,
        /// Lifetime from now (`30d`, `12h`, `90m`).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Replace a token's secret; the new one is printed once and the old one
    /// keeps working for the grace period.
    Rotate {
        id: i64,
        /// How long the old token keeps working: seconds or a duration
        /// (`90s`, `2h`); default one hour, at most 30 days.
        #[arg(long, value_parser = parse_grace)]
        grace: Option<u64>,
    },
    /// List tokens.
    List,
    /// Show one token with all its limits.
    Show { id: i64 },
    /// Disable a token.
    Disable { id: i64 },
    /// Re-enable a token.
    Enable { id: i64 },
    /// Delete a token.
    Delete { id: i64 },
}

/// The limit flags of `tokens create`.
#[derive(Debug, Args)]
pub struct CreateLimits {
    /// Lifetime spend limit in USD.
    #[arg(long, allow_negative_numbers = true)]
    budget_usd: Option<f64>,
    /// Lifetime limit in tokens (prompt + completion).
    #[arg(long, allow_negative_numbers = true)]
    budget_tokens: Option<i64>,
    /// Requests per minute.
    #[arg(long, allow_negative_numbers = true)]
    rpm: Option<i64>,
    /// Tokens per minute.
    #[arg(long, allow_negative_numbers = true)]
    tpm: Option<i64>,
    /// Requests in flight at once.
    #[arg(long, allow_negative_numbers = true)]
    max_parallel: Option<i64>,
    /// PERIOD:KIND:LIMIT, repeatable: period minute|hour|day|month, kind
    /// requests|tokens|cost (cost in USD), e.g. `day:requests:1000`,
    /// `month:cost:25`.
    #[arg(long = "quota", value_parser = parse_quota)]
    quotas: Vec<Value>,
    /// Price multiplier (1.2 = list price + 20 %).
    #[arg(long, allow_negative_numbers = true)]
    multiplier: Option<f64>,
}

/// The limit flags of `tokens update`: each also takes `none`.
#[derive(Debug, Args)]
pub struct UpdateLimits {
    /// Lifetime spend limit in USD, or `none`.
    #[arg(long, allow_negative_numbers = true)]
    budget_usd: Option<Setting<f64>>,
    /// Lifetime limit in tokens, or `none`.
    #[arg(long, allow_negative_numbers = true)]
    budget_tokens: Option<Setting<i64>>,
    /// Requests per minute, or `none`.
    #[arg(long, allow_negative_numbers = true)]
    rpm: Option<Setting<i64>>,
    /// Tokens per minute, or `none`.
    #[arg(long, allow_negative_numbers = true)]
    tpm: Option<Setting<i64>>,
    /// Requests in flight at once, or `none`.
    #[arg(long, allow_negative_numbers = true)]
    max_parallel: Option<Setting<i64>>,
    /// Replace the quotas with these (repeatable), PERIOD:KIND:LIMIT.
    #[arg(long = "quota", value_parser = parse_quota)]
    quotas: Vec<Value>,
    /// Price multiplier, or `none` (list price).
    #[arg(long, allow_negative_numbers = true)]
    multiplier: Option<Setting<f64>>,
}

/// `30d`, `12h`, `90s`...
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime_serde::re::humantime::parse_duration(text).map_err(|error| error.to_string())
}

/// Plain seconds or a duration.
fn parse_grace(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .or_else(|_| parse_duration(text).map(|duration| duration.as_secs()))
}

/// `PERIOD:KIND:LIMIT` as the API's quota object (cost limits in USD).
fn parse_quota(text: &str) -> Result<Value, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [period, kind, limit] = parts.as_slice() else {
        return Err("expected PERIOD:KIND:LIMIT, e.g. day:requests:1000".to_owned());
    };
    if *kind == "cost" {
        let usd: f64 = limit
            .parse()
            .map_err(|_| format!("`{limit}` is not an amount of USD"))?;
        Ok(json!({ "period": period, "kind": kind, "limit_usd": usd }))
    } else {
        let count: i64 = limit
            .parse()
            .map_err(|_| format!("`{limit}` is not a whole number"))?;
        Ok(json!({ "period": period, "kind": kind, "limit": count }))
    }
}

fn expires_in(duration: Duration) -> anyhow::Result<i64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    i64::try_from((now + duration).as_secs()).context("--expires-in is too far away")
}

fn insert<T: serde::Serialize>(body: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        body.insert(key.to_owned(), json!(value));
    }
}

fn insert_setting<T: serde::Serialize>(
    body: &mut Map<String, Value>,
    key: &str,
    value: Option<Setting<T>>,
) {
    if let Some(value) = value {
        body.insert(key.to_owned(), value.json());
    }
}

pub(super) async fn run(
    client: &AdminClient,
    action: TokenAction,
    as_json: bool,
) -> anyhow::Result<()> {
    let answer = match action {
        TokenAction::Create {
            name,
            user,
            models,
            limits,
            expires_at,
            expires_in: lifetime,
            disabled,
        } => {
            let mut body = Map::new();
            body.insert("name".to_owned(), json!(name));
            if let Some(user) = user {
                body.insert("user_id".to_owned(), json!(client.user_id(&user).await?));
            }
            if !models.is_empty() {
                body.insert("allowed_models".to_owned(), json!(models));
            }
            insert(&mut body, "budget_usd", limits.budget_usd);
            insert(&mut body, "budget_tokens", limits.budget_tokens);
            insert(&mut body, "rpm", limits.rpm);
            insert(&mut body, "tpm", limits.tpm);
            insert(&mut body, "max_parallel", limits.max_parallel);
            if !limits.quotas.is_empty() {
                body.insert("quotas".to_owned(), Value::Array(limits.quotas));
            }
            insert(&mut body, "price_multiplier", limits.multiplier);
            let expires_at = match lifetime {
                Some(duration) => Some(self::expires_in(duration)?),
                None => expires_at,
            };
            insert(&mut body, "expires_at", expires_at);
            if disabled {
                body.insert("enabled".to_owned(), json!(false));
            }
            let created = client
                .call(Method::POST, "/admin/tokens", Some(Value::Object(body)))
                .await?;
            if as_json {
                return print_json(&created);
            }
            println!(
                "Created token {} ({}).",
                created["id"],
                created["name"].as_str().unwrap_or("")
            );
            println!(
                "Token (shown once, store it now): {}",
                created["token"].as_str().unwrap_or("")
            );
            return Ok(());
        }
        TokenAction::Update {
            id,
            name,
            user,
            models,
            all_models,
            limits,
            no_quotas,
            expires_at,
            expires_in: lifetime,
        } => {
            let mut body = Map::new();
            insert(&mut body, "name", name);
            if let Some(user) = user {
                body.insert("user_id".to_owned(), json!(client.user_id(&user).await?));
            }
            if all_models {
                body.insert("allowed_models".to_owned(), Value::Null);
            } else if !models.is_empty() {
                body.insert("allowed_models".to_owned(), json!(models));
            }
            insert_setting(&mut body, "budget_usd", limits.budget_usd);
            insert_setting(&mut body, "budget_tokens", limits.budget_tokens);
            insert_setting(&mut body, "rpm", limits.rpm);
            insert_setting(&mut body, "tpm", limits.tpm);
            insert_setting(&mut body, "max_parallel", limits.max_parallel);
            if no_quotas {
                body.insert("quotas".to_owned(), Value::Null);
            } else if !limits.quotas.is_empty() {
                body.insert("quotas".to_owned(), Value::Array(limits.quotas));
            }
            insert_setting(&mut body, "price_multiplier", limits.multiplier);
            match lifetime {
                Some(duration) => {
                    body.insert("expires_at".to_owned(), json!(self::expires_in(duration)?));
                }
                None => insert_setting(&mut body, "expires_at", expires_at),
            }
            if body.is_empty() {
                bail!("nothing to change: give at least one option (see --help)");
            }
            client
                .call(
                    Method::PATCH,
                    &format!("/admin/tokens/{id}"),
                    Some(Value::Object(body)),
                )
                .await?
        }
        TokenAction::Rotate { id, grace } => {
            let body = grace.map(|grace| json!({ "grace_seconds": grace }));
            let rotated = client
                .call(
                    Method::POST,
                    &format!("/admin/tokens/{id}/rotate"),
                    Some(body.unwrap_or_else(|| json!({}))),
                )
                .await?;
            if as_json {
                return print_json(&rotated);
            }
            println!(
                "Rotated token {id}; the old token works until {}.",
                time(&rotated["previous_token_expires_at"])
            );
            println!(
                "New token (shown once, store it now): {}",
                rotated["token"].as_str().unwrap_or("")
            );
            return Ok(());
        }
        TokenAction::List => {
            let listed = client.get("/admin/tokens").await?;
            if as_json {
                return print_json(&listed);
            }
            print_list(&listed);
            return Ok(());
        }
        TokenAction::Show { id } => client.get(&format!("/admin/tokens/{id}")).await?,
        TokenAction::Disable { id } => {
            client
                .call(Method::POST, &format!("/admin/tokens/{id}/disable"), None)
                .await?
        }
        TokenAction::Enable { id } => {
            client
                .call(Method::POST, &format!("/admin/tokens/{id}/enable"), None)
                .await?
        }
        TokenAction::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/admin/tokens/{id}"), None)
                .await?;
            if as_json {
                return print_json(&json!({ "deleted": id }));
            }
            println!("Deleted token {id}.");
            return Ok(());
        }
    };
    if as_json {
        print_json(&answer)
    } else {
        print_details(&answer);
        Ok(())
    }
}

/// `day:requests:1000, month:cost:$25.000000`.
fn quotas(token: &Value) -> String {
    let list: Vec<String> = token["quotas"]
        .as_array()
        .map(|quotas| {
            quotas
                .iter()
                .map(|quota| {
                    let limit = if quota["kind"] == "cost" {
                        format!("${}", usd(&quota["limit_usd"]))
                    } else {
                        text(&quota["limit"])
                    };
                    format!(
                        "{}:{}:{limit}",
                        text(&quota["period"]),
                        text(&quota["kind"])
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(", ")
    }
}

/// `rpm=60 tpm=- parallel=4` and quotas, for the list.
fn limits(token: &Value) -> String {
    let mut parts = Vec::new();
    for (label, key) in [("rpm", "rpm"), ("tpm", "tpm"), ("parallel", "max_parallel")] {
        if !token[key].is_null() {
            parts.push(format!("{label}={}", text(&token[key])));
        }
    }
    if token["quotas"].as_array().is_some_and(|q| !q.is_empty()) {
        parts.push(quotas(token));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

fn print_list(listed: &Value) {
    let rows: Vec<Vec<String>> = listed["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|token| {
            vec![
                text(&token["id"]),
                text(&token["name"]),
                text(&token["prefix"]),
                text(&token["user_id"]),
                text(&token["enabled"]),
                text(&token["request_count"]),
                usd(&token["spent_usd"]),
                usd(&token["budget_usd"]),
                limits(token),
                time(&token["expires_at"]),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "NAME",
            "PREFIX",
            "USER",
            "ENABLED",
            " REQUESTS",
            " SPENT_USD",
            " BUDGET_USD",
            "LIMITS",
            "EXPIRES",
        ],
        &rows,
    );
}

fn print_details(token: &Value) {
    let models = match &token["allowed_models"] {
        Value::Array(models) => models.iter().map(text).collect::<Vec<_>>().join(", "),
        _ => "all".to_owned(),
    };
    table::details(&[
        ("id", text(&token["id"])),
        ("name", text(&token["name"])),
        ("prefix", text(&token["prefix"])),
        ("user", text(&token["user_id"])),
        ("enabled", text(&token["enabled"])),
        ("models", models),
        ("expires", time(&token["expires_at"])),
        ("budget usd", usd(&token["budget_usd"])),
        ("budget tokens", text(&token["budget_tokens"])),
        ("rpm", text(&token["rpm"])),
        ("tpm", text(&token["tpm"])),
        ("max parallel", text(&token["max_parallel"])),
        ("quotas", quotas(token)),
        ("multiplier", text(&token["price_multiplier"])),
        ("spent usd", usd(&token["spent_usd"])),
        ("spent tokens", text(&token["spent_tokens"])),
        ("reserved usd", usd(&token["reserved_usd"])),
        ("reserved tokens", text(&token["reserved_tokens"])),
        ("requests", text(&token["request_count"])),
        ("last used", time(&token["last_used_at"])),
        ("old token until", time(&token["previous_token_expires_at"])),
    ]);
}
