//! The command line: `serve`, `migrate`, and `admin ...` (an HTTP client of
//! the admin API: one module per resource, tables by default, `--json` for
//! the API's answer; `admin rotate-secret` works on the database like
//! `migrate`). Errors come back as one line, never a stack trace.
//!
//! Admin commands authenticate with, in this order: `--master-key` (or
//! `SWITCHYARD_MASTER_KEY`); the session `admin login` stored (when it is for
//! the same server and unexpired); the master key from settings or its key
//! file (unless `admin.master_key_enabled` is false).

pub mod admin_plane;
mod billing;
pub mod install;
mod logs;
mod prices;
mod providers;
pub mod session_file;
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
    /// Install as a hardened systemd service: user, unit, settings file,
    /// data directory (docs/install.md).
    Install(install::InstallArgs),
    /// Remove what `install` made; never the data directory.
    Uninstall(install::UninstallArgs),
    /// Exit 0 when the gateway's /healthz answers 2xx, else 1 (container
    /// HEALTHCHECK: the runtime image has no curl).
    Health {
        /// What to ask; default: /healthz on `server.listen` from settings.
        #[arg(long)]
        url: Option<String>,
    },
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
    /// Gateway base URL; defaults to the stored session's server, else the
    /// `server.listen` address.
    #[arg(long, global = true, env = "SWITCHYARD_URL")]
    pub server: Option<String>,
    /// Master key; defaults to the stored session, else `admin.master_key`
    /// or its key file.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_MASTER_KEY",
        hide_env_values = true
    )]
    pub master_key: Option<String>,
    /// Print raw JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub resource: AdminResource,
}

#[derive(Debug, Subcommand)]
pub enum AdminResource {
    /// Log in with an Ed25519 admin key; later admin commands use the session.
    ///
    /// Challenge-response against `--server`; the session is kept in
    /// $XDG_CONFIG_HOME/switchyard/session.json (else ~/.config/switchyard/),
    /// mode 0600.
    Login {
        /// The private key: PKCS#8 PEM, as written to `admin.key_file` on
        /// first start or by `admin keys generate`.
        #[arg(long)]
        key: PathBuf,
    },
    /// Revoke the stored session and forget it.
    Logout,
    /// Gateway tokens: create with limits, update, rotate.
    Tokens {
        #[command(subcommand)]
        action: tokens::TokenAction,
    },
    /// Admin keys (who can log in).
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Admin sessions.
    Sessions {
        #[command(subcommand)]
        action: SessionAction,
    },
    /// The operation log: who changed what, newest first.
    OperationLogs {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
        /// Only this actor (`master-key` or a key fingerprint).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (`token.create`, `admin_key.disable`, ...).
        #[arg(long)]
        action: Option<String>,
    },
    /// Rotate the master secret (re-wraps the data key; no downtime).
    ///
    /// Works on the database directly (settings' `database.url`); running
    /// gateways keep working. The current secret comes from settings
    /// (`security.secret_key` or its file), the new one from
    /// --new-secret-file or SWITCHYARD_NEW_SECRET_KEY; when the current one
    /// lives in `security.secret_key_file` and no new one is given, one is
    /// generated, and the file is updated either way.
    RotateSecret {
        /// File holding the new master secret.
        #[arg(long)]
        new_secret_file: Option<PathBuf>,
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
    /// Make the gateway re-read its settings files (like SIGHUP): providers,
    /// keys, models, redirects, prices and limits change live; settings that
    /// need a restart are named.
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// List admin keys (fingerprints).
    List,
    /// Register a public key.
    Add {
        /// A label: who holds the key.
        #[arg(long)]
        name: String,
        /// base64url of the 32-byte public key.
        #[arg(
            long,
            conflicts_with = "key_file",
            required_unless_present = "key_file"
        )]
        public_key: Option<String>,
        /// A PEM public key, or a private key file whose public half is sent.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// What the key may do: admin (everything), operator (tokens,
        /// users, providers, models, prices; not admin keys) or viewer
        /// (read only). The server's default is admin.
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: Option<String>,
    },
    /// Change a key's role (admin, operator or viewer); its sessions follow
    /// at once.
    SetRole {
        id: i64,
        #[arg(value_parser = ["admin", "operator", "viewer"])]
        role: String,
    },
    /// Disable a key (its sessions stop working).
    Disable { id: i64 },
    /// Re-enable a key.
    Enable { id: i64 },
    /// Remove a key and its sessions.
    Remove { id: i64 },
    /// Create a new key pair locally (no server involved).
    ///
    /// The private key goes to --out (mode 0600, PKCS#8 PEM); the public key
    /// is printed for `keys add`.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionAction {
    /// List sessions.
    List,
    /// Revoke a session.
    Revoke { id: i64 },
}

/// `switchyard health`: one GET with a short timeout.
async fn health(url: &str) -> anyhow::Result<()> {
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .finish();
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{url}: {error}"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status().as_u16());
    }
    println!("{url}: {}", response.status().as_u16());
    Ok(())
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> anyhow::Result<()> {
    // These read no settings (an install writes them).
    match cli.command {
        Command::Install(args) => return install::install(args),
        Command::Uninstall(args) => return install::uninstall(args),
        _ => {}
    }
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Install(_) | Command::Uninstall(_) => Ok(()),
        Command::Health { url } => {
            let url = url.unwrap_or_else(|| format!("{}/healthz", default_server(&settings)));
            actix_rt::System::new().block_on(health(&url))
        }
        Command::Serve => {
            let (log, guard) = crate::logging::root_logger(&settings.logging);
            let result =
                actix_rt::System::new().block_on(crate::run(settings, cli.config.clone(), log));
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

/// The master key from settings or its key file, if master-key access is on.
fn configured_master_key(settings: &Settings) -> anyhow::Result<String> {
    if !settings.admin.master_key_enabled {
        bail!("master-key access is turned off (admin.master_key_enabled)");
    }
    if !settings.admin.master_key.is_empty() {
        return Ok(settings.admin.master_key.expose().to_owned());
    }
    let file = &settings.admin.master_key_file;
    let key = std::fs::read_to_string(file)
        .with_context(|| format!("no master key given and {file} is unreadable"))?;
    Ok(key.trim().to_owned())
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The server and the bearer credential for an admin call (module docs).
fn admin_client(settings: &Settings, args: &AdminArgs) -> anyhow::Result<AdminClient> {
    let given_server = args.server.clone();
    let fallback_server = || {
        given_server
            .clone()
            .unwrap_or_else(|| default_server(settings))
    };
    if let Some(key) = args.master_key.clone().filter(|key| !key.is_empty()) {
        return Ok(AdminClient::new(&fallback_server(), Some(key)));
    }
    let stored = session_file::load()?.filter(|session| {
        given_server
            .as_deref()
            .is_none_or(|server| same_server(server, &session.server))
    });
    if let Some(session) = &stored
        && !session.expired()
    {
        return Ok(AdminClient::new(
            &session.server,
            Some(session.token.clone()),
        ));
    }
    match configured_master_key(settings) {
        Ok(key) => Ok(AdminClient::new(&fallback_server(), Some(key))),
        Err(error) => match stored {
            Some(session) => bail!(
                "the admin session for {} expired at {}; run `switchyard admin login --key FILE`",
                session.server,
                admin_plane::format_time(session.expires_at)
            ),
            None => bail!(
                "no admin credential: run `switchyard admin login --key FILE` or pass \
                 --master-key ({error:#})"
            ),
        },
    }
}

async fn admin(settings: Settings, args: AdminArgs) -> anyhow::Result<()> {
    let as_json = args.json;
    match &args.resource {
        AdminResource::Login { key } => {
            let server = args
                .server
                .clone()
                .unwrap_or_else(|| default_server(&settings));
            return admin_plane::login(&AdminClient::new(&server, None), key, as_json).await;
        }
        AdminResource::Logout => return admin_plane::logout(as_json).await,
        AdminResource::RotateSecret { new_secret_file } => {
            return admin_plane::rotate_secret(&settings, new_secret_file.as_deref()).await;
        }
        AdminResource::Keys {
            action: KeyAction::Generate { out },
        } => return admin_plane::generate_key(out, as_json),
        _ => {}
    }
    let client = admin_client(&settings, &args)?;
    match args.resource {
        AdminResource::Tokens { action } => tokens::run(&client, action, as_json).await,
        AdminResource::Users { action } => users::run(&client, action, as_json).await,
        AdminResource::Prices { action } => prices::run(&client, action, as_json).await,
        AdminResource::Billing { action } => billing::run(&client, action, as_json).await,
        AdminResource::Providers { action } => providers::run(&client, action, as_json).await,
        AdminResource::ProviderKeys { action } => {
            providers::run_keys(&client, action, as_json).await
        }
        AdminResource::Logs(logs) => logs::run_logs(&client, logs, as_json).await,
        AdminResource::Metrics { action } => logs::run_metrics(&client, action, as_json).await,
        AdminResource::Reload => reload(&client, as_json).await,
        AdminResource::Keys { action } => admin_plane::keys(&client, action, as_json).await,
        AdminResource::Sessions { action } => admin_plane::sessions(&client, action, as_json).await,
        AdminResource::OperationLogs {
            limit,
            offset,
            actor,
            action,
        } => admin_plane::operation_logs(&client, limit, offset, actor, action, as_json).await,
        AdminResource::Login { .. }
        | AdminResource::Logout
        | AdminResource::RotateSecret { .. } => Ok(()),
    }
}

/// `admin reload`: what the gateway applied, and what needs a restart.
async fn reload(client: &AdminClient, as_json: bool) -> anyhow::Result<()> {
    let answer = client
        .call(awc::http::Method::POST, "/admin/reload", None)
        .await
        .context("reloading the settings")?;
    if as_json {
        println!("{answer:#}");
        return Ok(());
    }
    let providers: Vec<String> = answer["providers"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|provider| {
                    format!(
                        "{} ({})",
                        provider["name"].as_str().unwrap_or("?"),
                        provider["outcome"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "Settings reloaded: providers {}; {} model routes, {} redirects, {} prices.",
        if providers.is_empty() {
            "none declared".to_owned()
        } else {
            providers.join(", ")
        },
        answer["models"],
        answer["redirects"],
        answer["prices"]
    );
    if let Some(keys) = answer["restart_needed"]
        .as_array()
        .filter(|keys| !keys.is_empty())
    {
        let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        println!(
            "Changed, but applied only after a restart: {}",
            keys.join(", ")
        );
    }
    Ok(())
}

/// An HTTP client of one gateway's admin API.
pub struct AdminClient {
    base: String,
    /// The bearer credential (none for the login routes).
    key: Option<String>,
    http: awc::Client,
}

impl AdminClient {
    pub fn new(base: &str, key: Option<String>) -> Self {
        AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            key,
            http: awc::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .finish(),
        }
    }

    /// The gateway's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Calls `path`; a non-2xx answer becomes an error carrying the API's
    /// message and the status.
    pub async fn call(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.insert_header(("authorization", format!("Bearer {key}")));
        }
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
            bail!("{} ({})", message.replace('\n', " "), status.as_u16());
        }
        Ok(value)
    }

    /// GETs `path` and copies its body into `out` as it arrives (an export
    /// of any size in bounded memory); returns the bytes written. A non-2xx
    /// answer is an error as with [`AdminClient::call`]; a body cut short
    /// (the server failed half-way) is an error too.
    pub async fn download(&self, path: &str, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
        use futures_util::StreamExt as _;
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.insert_header(("authorization", format!("Bearer {key}")));
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("cannot reach {}: {error}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.body().await.context("reading the answer")?;
            let value: Value = serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("{} ({})", message.replace('\n', " "), status.as_u16());
        }
        let mut written = 0u64;
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|error| {
                anyhow::anyhow!("the export stopped half-way ({error}); see the gateway log")
            })?;
            out.write_all(&chunk).context("writing the export")?;
            written += chunk.len() as u64;
        }
        Ok(written)
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
