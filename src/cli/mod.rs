//! The command line: `serve`, `migrate`, and `admin ...` (an HTTP client of
//! the admin API: one module per resource, tables by default, `--json` for
//! the API's answer). Errors come back as one line, never a stack trace.

mod billing;
mod logs;
mod prices;
mod providers;
mod table;
mod tokens;
mod users;

use crate::config::Settings;
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "A self-hosted AI API gateway")]
pub struct Cli {
    /// Settings file layered over settings/default.toml.
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (migrations run first).
    Serve,
    /// Apply or revert database migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Manage a running gateway through its admin API.
    Admin(Box<AdminArgs>),
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply pending migrations (the default).
    Run,
    /// Revert the latest migration.
    Revert,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Gateway base URL; defaults to the `server.listen` address.
    #[arg(long, env = "SWITCHYARD_URL")]
    pub server: Option<String>,
    /// Master key; defaults to `admin.master_key` or its key file.
    #[arg(long, env = "SWITCHYARD_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Print raw JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub resource: AdminResource,
}

#[derive(Debug, Subcommand)]
pub enum AdminResource {
    /// Gateway tokens: create with limits, update, rotate.
    Tokens {
        #[command(subcommand)]
        action: tokens::TokenAction,
    },
    /// Users: owners of tokens, with balances.
    Users {
        #[command(subcommand)]
        action: users::UserAction,
    },
    /// Model prices (USD per million tokens).
    Prices {
        #[command(subcommand)]
        action: prices::PriceAction,
    },
    /// The billing ledger (charges and top-ups).
    Billing {
        #[command(subcommand)]
        action: billing::BillingAction,
    },
    /// Upstream providers: add, change, remove (live).
    Providers {
        #[command(subcommand)]
        action: providers::ProviderAction,
    },
    /// A provider's API keys: add, enable, disable, remove (live).
    ProviderKeys {
        #[command(subcommand)]
        action: providers::KeyAction,
    },
    /// Request logs, newest first, with filters.
    Logs(logs::LogsArgs),
    /// Metrics over the request logs: summary, models, time series.
    Metrics {
        #[command(subcommand)]
        action: logs::MetricsAction,
    },
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let (log, guard) = crate::logging::root_logger(&settings.logging);
            let result = actix_rt::System::new().block_on(crate::run(settings, log));
            drop(guard);
            result
        }
        Command::Migrate { action } => actix_rt::System::new().block_on(async move {
            match action.unwrap_or(MigrateAction::Run) {
                MigrateAction::Run => {
                    let applied = crate::db::migrate_run(&settings.database).await?;
                    if applied.is_empty() {
                        println!("database is up to date");
                    }
                    for version in applied {
                        println!("applied {version}");
                    }
                }
                MigrateAction::Revert => match crate::db::migrate_revert(&settings.database).await?
                {
                    Some(version) => println!("reverted {version}"),
                    None => println!("nothing to revert"),
                },
            }
            Ok(())
        }),
        Command::Admin(args) => actix_rt::System::new().block_on(admin(settings, *args)),
    }
}

fn default_server(settings: &Settings) -> String {
    let listen = settings.server.listen.replace("0.0.0.0", "127.0.0.1");
    format!("http://{listen}")
}

fn master_key(settings: &Settings, given: Option<String>) -> anyhow::Result<String> {
    if let Some(key) = given.filter(|key| !key.is_empty()) {
        return Ok(key);
    }
    if !settings.admin.master_key.is_empty() {
        return Ok(settings.admin.master_key.expose().to_owned());
    }
    let file = &settings.admin.master_key_file;
    let key = std::fs::read_to_string(file).with_context(|| {
        format!("no master key given and {file} is unreadable; pass --master-key")
    })?;
    Ok(key.trim().to_owned())
}

async fn admin(settings: Settings, args: AdminArgs) -> anyhow::Result<()> {
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| default_server(&settings));
    let key = master_key(&settings, args.master_key.clone())?;
    let client = AdminClient {
        base: server.trim_end_matches('/').to_owned(),
        key,
        http: awc::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .finish(),
    };
    match args.resource {
        AdminResource::Tokens { action } => tokens::run(&client, action, args.json).await,
        AdminResource::Users { action } => users::run(&client, action, args.json).await,
        AdminResource::Prices { action } => prices::run(&client, action, args.json).await,
        AdminResource::Billing { action } => billing::run(&client, action, args.json).await,
        AdminResource::Providers { action } => providers::run(&client, action, args.json).await,
        AdminResource::ProviderKeys { action } => {
            providers::run_keys(&client, action, args.json).await
        }
        AdminResource::Logs(logs) => logs::run_logs(&client, logs, args.json).await,
        AdminResource::Metrics { action } => logs::run_metrics(&client, action, args.json).await,
    }
}

/// The admin API over HTTP with the master key.
struct AdminClient {
    base: String,
    key: String,
    http: awc::Client,
}

impl AdminClient {
    /// Calls `method path` with an optional JSON body; a non-2xx answer is
    /// an error carrying the API's message and the status.
    async fn call(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .insert_header(("authorization", format!("Bearer {}", self.key)));
        let sent = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        };
        let mut response =
            sent.map_err(|error| anyhow::anyhow!("cannot reach {}: {error}", self.base))?;
        let status = response.status();
        let bytes = response.body().await.context("reading the answer")?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if !status.is_success() {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("{} ({})", message, status.as_u16());
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(awc::http::Method::GET, path, None).await
    }

    /// A user id from an id or a name (`--user alice`).
    async fn user_id(&self, user: &str) -> anyhow::Result<i64> {
        if let Ok(id) = user.parse::<i64>() {
            return Ok(id);
        }
        let found = self
            .get(&format!("/admin/users?name={}", encode(user)))
            .await?;
        found
            .pointer("/data/0/id")
            .and_then(Value::as_i64)
            .with_context(|| format!("no user named `{user}`"))
    }
}

/// Percent-encodes a path segment or query value (`/` kept: model names
/// such as `openai/gpt-4o` map onto the `{model:.*}` routes).
fn encode(text: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(text, KEEP).to_string()
}

/// A flag value that may also be `none` (lift the limit): `--rpm 60`,
/// `--rpm none`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting<T> {
    Set(T),
    Clear,
}

impl<T: std::str::FromStr> std::str::FromStr for Setting<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("none") {
            return Ok(Setting::Clear);
        }
        text.parse()
            .map(Setting::Set)
            .map_err(|error| format!("{error} (or `none` to remove the limit)"))
    }
}

impl<T: serde::Serialize> Setting<T> {
    /// The JSON a PATCH body takes: the value, or `null` to clear.
    fn json(&self) -> Value {
        match self {
            Setting::Set(value) => serde_json::to_value(value).unwrap_or(Value::Null),
            Setting::Clear => Value::Null,
        }
    }
}

/// Prints `value` as pretty JSON (`--json`).
fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
