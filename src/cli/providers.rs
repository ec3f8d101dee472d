//! `switchyard admin providers ...` and `switchyard admin provider-keys ...`.
//!
//! Keys and header values are secrets: give them in a file (`--keys-file`,
//! one key per line) rather than on the command line when other users of
//! the machine can list processes. Answers show them masked.

use super::table::{self, text, time};
use super::{AdminClient, encode, print_json};
use anyhow::{Context as _, bail};
use awc::http::Method;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ProviderAction {
    /// List providers.
    List,
    /// Show a provider: settings (secrets masked) and keys with live health.
    Show { name: String },
    /// Add a provider; it serves the next request.
    Add {
        name: String,
        /// openai, openai-compatible, azure-openai, anthropic, gemini, zhipu
        /// or echo (the offline demo upstream).
        #[arg(long)]
        kind: String,
        /// API root, e.g. https://api.openai.com/v1 (not used by echo).
        #[arg(long, default_value = "")]
        base_url: String,
        /// A model it serves by bare name (repeatable).
        #[arg(long = "model")]
        models: Vec<String>,
        /// An upstream key (repeatable; visible to `ps`, prefer --keys-file).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// A file of upstream keys, one per line (`#` starts a comment).
        #[arg(long)]
        keys_file: Option<PathBuf>,
        /// Start disabled (stored, not routed).
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        settings: ProviderFlags,
    },
    /// Change a provider; only the given settings change.
    Update {
        name: String,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        base_url: Option<String>,
        /// The models it serves (repeatable; replaces the list).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Serve no model by bare name (pinned `name/model` only).
        #[arg(long, conflicts_with = "models")]
        no_models: bool,
        /// Remove an upstream header (repeatable).
        #[arg(long = "remove-header")]
        remove_headers: Vec<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Take it out of routing (kept in the database).
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        settings: ProviderFlags,
    },
    /// Delete a provider and its keys (a provider declared in settings
    /// comes back at the next start).
    Remove { name: String },
}

/// Settings shared by `add` and `update`.
#[derive(Debug, Args)]
pub struct ProviderFlags {
    /// An upstream header `NAME=VALUE` (repeatable; the value is a secret).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Key strategy: first-available, round-robin, random, weighted,
    /// least-in-flight or latency.
    #[arg(long)]
    strategy: Option<String>,
    /// Share of traffic under a model's `weighted` strategy.
    #[arg(long)]
    weight: Option<u32>,
    /// Requests each key may have in flight (0: no limit).
    #[arg(long)]
    max_in_flight_per_key: Option<u32>,
    /// Azure `api-version` or `anthropic-version`.
    #[arg(long)]
    api_version: Option<String>,
    /// Upstream attempts per client request.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Limit for one attempt to answer, e.g. `30s`.
    #[arg(long)]
    attempt_timeout: Option<String>,
}

impl ProviderFlags {
    /// Adds the given flags to a request body.
    fn apply(self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        if !self.headers.is_empty() {
            let mut headers = Map::new();
            for header in self.headers {
                let (name, value) = header
                    .split_once('=')
                    .with_context(|| format!("--header {header:?}: expected NAME=VALUE"))?;
                headers.insert(name.trim().to_owned(), Value::String(value.to_owned()));
            }
            body.insert("headers".to_owned(), Value::Object(headers));
        }
        let mut retry = Map::new();
        if let Some(attempts) = self.max_attempts {
            retry.insert("max_attempts".to_owned(), json!(attempts));
        }
        if let Some(timeout) = self.attempt_timeout {
            retry.insert("attempt_timeout".to_owned(), json!(timeout));
        }
        if !retry.is_empty() {
            body.insert("retry".to_owned(), Value::Object(retry));
        }
        for (field, value) in [
            ("strategy", self.strategy.map(Value::String)),
            ("weight", self.weight.map(|weight| json!(weight))),
            (
                "max_in_flight_per_key",
                self.max_in_flight_per_key.map(|max| json!(max)),
            ),
            ("api_version", self.api_version.map(Value::String)),
        ] {
            if let Some(value) = value {
                body.insert(field.to_owned(), value);
            }
        }
        Ok(())
    }
}

/// Keys given on the command line and in a file.
fn read_keys(keys: Vec<String>, file: Option<PathBuf>) -> anyhow::Result<Vec<String>> {
    let mut all = keys;
    if let Some(file) = file {
        let content = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        all.extend(
            content
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(all)
}

fn path(name: &str) -> String {
    format!("/admin/providers/{}", encode(name))
}

pub(super) async fn run(
    client: &AdminClient,
    action: ProviderAction,
    as_json: bool,
) -> anyhow::Result<()> {
    let answer = match action {
        ProviderAction::List => {
            let listed = client.get("/admin/providers").await?;
            if as_json {
                return print_json(&listed);
            }
            let rows: Vec<Vec<String>> = rows(&listed)
                .iter()
                .map(|row| {
                    vec![
                        text(&row["name"]),
                        text(&row["kind"]),
                        text(&row["base_url"]),
                        list(&row["models"]),
                        format!("{}/{}", text(&row["enabled_keys"]), text(&row["keys"])),
                        text(&row["enabled"]),
                        text(&row["running"]),
                    ]
                })
                .collect();
            table::print(
                &[
                    "NAME", "KIND", "BASE_URL", "MODELS", " KEYS", "ENABLED", "RUNNING",
                ],
                &rows,
            );
            return Ok(());
        }
        ProviderAction::Show { name } => client.get(&path(&name)).await?,
        ProviderAction::Add {
            name,
            kind,
            base_url,
            models,
            keys,
            keys_file,
            disabled,
            settings,
        } => {
            let mut body = Map::new();
            body.insert("name".to_owned(), json!(name));
            body.insert("kind".to_owned(), json!(kind));
            body.insert("base_url".to_owned(), json!(base_url));
            body.insert("models".to_owned(), json!(models));
            body.insert("enabled".to_owned(), json!(!disabled));
            let keys: Vec<Value> = read_keys(keys, keys_file)?
                .into_iter()
                .map(|key| json!({ "key": key }))
                .collect();
            body.insert("keys".to_owned(), Value::Array(keys));
            settings.apply(&mut body)?;
            client
                .call(Method::POST, "/admin/providers", Some(Value::Object(body)))
                .await?
        }
        ProviderAction::Update {
            name,
            kind,
            base_url,
            models,
            no_models,
            remove_headers,
            enable,
            disable,
            settings,
        } => {
            let mut body = Map::new();
            settings.apply(&mut body)?;
            if !remove_headers.is_empty() {
                let headers = body
                    .entry("headers")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(headers) = headers {
                    for header in remove_headers {
                        headers.insert(header, Value::Null);
                    }
                }
            }
            if let Some(kind) = kind {
                body.insert("kind".to_owned(), json!(kind));
            }
            if let Some(base_url) = base_url {
                body.insert("base_url".to_owned(), json!(base_url));
            }
            if no_models {
                body.insert("models".to_owned(), json!([]));
            } else if !models.is_empty() {
                body.insert("models".to_owned(), json!(models));
            }
            if enable || disable {
                body.insert("enabled".to_owned(), json!(enable));
            }
            if body.is_empty() {
                bail!("nothing to change; see `switchyard admin providers update --help`");
            }
            client
                .call(Method::PATCH, &path(&name), Some(Value::Object(body)))
                .await?
        }
        ProviderAction::Remove { name } => {
            client.call(Method::DELETE, &path(&name), None).await?;
            if as_json {
                return print_json(&json!({ "deleted": name }));
            }
            println!("Deleted provider {name} and its keys.");
            return Ok(());
        }
    };
    if as_json {
        return print_json(&answer);
    }
    print_provider(&answer);
    Ok(())
}

fn rows(listed: &Value) -> &[Value] {
    listed["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A JSON array of strings as `a, b`.
fn list(value: &Value) -> String {
    match value.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(text).collect::<Vec<_>>().join(", "),
        _ => "-".to_owned(),
    }
}

fn print_provider(provider: &Value) {
    let headers = provider["headers"]
        .as_object()
        .filter(|headers| !headers.is_empty())
        .map_or_else(
            || "-".to_owned(),
            |headers| {
                headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {}", text(value)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
    let retry = &provider["retry"];
    table::details(&[
        ("name", text(&provider["name"])),
        ("kind", text(&provider["kind"])),
        ("base_url", text(&provider["base_url"])),
        ("api_version", text(&provider["api_version"])),
        ("models", list(&provider["models"])),
        ("headers", headers),
        ("strategy", text(&provider["strategy"])),
        ("weight", text(&provider["weight"])),
        (
            "max_in_flight_per_key",
            text(&provider["max_in_flight_per_key"]),
        ),
        (
            "retry",
            format!(
                "{} attempts, backoff {}..{}, cooldowns {} (429) / {} (errors), circuit after {}",
                text(&retry["max_attempts"]),
                text(&retry["backoff_base"]),
                text(&retry["backoff_max"]),
                text(&retry["rate_limit_cooldown"]),
                text(&retry["error_cooldown"]),
                text(&retry["failure_threshold"]),
            ),
        ),
        ("enabled", text(&provider["enabled"])),
        ("running", text(&provider["running"])),
        ("source", text(&provider["source"])),
        ("updated", time(&provider["updated_at"])),
    ]);
    let keys = provider["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !keys.is_empty() {
        println!();
        print_keys(keys);
    }
}

fn print_keys(keys: &[Value]) {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                text(&key["id"]),
                text(&key["secret_hint"]),
                text(&key["state"]),
                text(&key["weight"]),
                text(&key["priority"]),
                text(&key["in_flight"]),
                text(&key["successes"]),
                text(&key["failures"]),
                text(&key["disabled_reason"]),
            ]
        })
        .collect();
    table::print(
        &[
            "KEY",
            "SECRET",
            "STATE",
            " WEIGHT",
            " PRIORITY",
            " IN_FLIGHT",
            " OK",
            " FAILED",
            "REASON",
        ],
        &rows,
    );
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// List a provider's keys with their live health.
    List {
        #[arg(long)]
        provider: String,
    },
    /// Add a key to a provider; it takes traffic at once.
    Add {
        #[arg(long)]
        provider: String,
        /// The upstream key (visible to `ps`; prefer --key-file).
        #[arg(
            long,
            required_unless_present = "key_file",
            conflicts_with = "key_file"
        )]
        key: Option<String>,
        /// A file holding the key (its first non-empty line).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// A label; defaults to `key-` and 8 hex digits of the key's hash.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        weight: Option<u32>,
        /// Lower is preferred by `first-available`.
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
    },
    /// Put a disabled key back into rotation.
    Enable {
        #[arg(long)]
        provider: String,
        id: String,
    },
    /// Take a key out of rotation (kept, with the reason).
    Disable {
        #[arg(long)]
        provider: String,
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a key.
    Remove {
        #[arg(long)]
        provider: String,
        id: String,
    },
}

pub(super) async fn run_keys(
    client: &AdminClient,
    action: KeyAction,
    as_json: bool,
) -> anyhow::Result<()> {
    let keys_path = |provider: &str| format!("{}/keys", path(provider));
    let key_path = |provider: &str, id: &str| format!("{}/keys/{}", path(provider), encode(id));
    let answer = match action {
        KeyAction::List { provider } => {
            let health = client.get(&format!("{}/health", path(&provider))).await?;
            if as_json {
                return print_json(&health);
            }
            print_keys(
                health["keys"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            );
            return Ok(());
        }
        KeyAction::Add {
            provider,
            key,
            key_file,
            id,
            weight,
            priority,
        } => {
            let key = match (key, key_file) {
                (Some(key), _) => key,
                (None, Some(file)) => read_keys(Vec::new(), Some(file))?
                    .into_iter()
                    .next()
                    .context("the key file holds no key")?,
                (None, None) => bail!("give --key or --key-file"),
            };
            let mut body = Map::new();
            body.insert("key".to_owned(), json!(key));
            if let Some(id) = id {
                body.insert("id".to_owned(), json!(id));
            }
            if let Some(weight) = weight {
                body.insert("weight".to_owned(), json!(weight));
            }
            if let Some(priority) = priority {
                body.insert("priority".to_owned(), json!(priority));
            }
            client
                .call(
                    Method::POST,
                    &keys_path(&provider),
                    Some(Value::Object(body)),
                )
                .await?
        }
        KeyAction::Enable { provider, id } => {
            client
                .call(
                    Method::POST,
                    &format!("{}/enable", key_path(&provider, &id)),
                    None,
                )
                .await?
        }
        KeyAction::Disable {
            provider,
            id,
            reason,
        } => {
            let body = reason.map(|reason| json!({ "reason": reason }));
            client
                .call(
                    Method::POST,
                    &format!("{}/disable", key_path(&provider, &id)),
                    body,
                )
                .await?
        }
        KeyAction::Remove { provider, id } => {
            client
                .call(Method::DELETE, &key_path(&provider, &id), None)
                .await?;
            if as_json {
                return print_json(&json!({ "deleted": id, "provider": provider }));
            }
            println!("Deleted key {id} of provider {provider}.");
            return Ok(());
        }
    };
    if as_json {
        return print_json(&answer);
    }
    print_keys(std::slice::from_ref(&answer));
    Ok(())
}
