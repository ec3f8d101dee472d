//! The command line: `serve`, `migrate`, and `admin ...` (an HTTP client of
//! the admin API). Errors come back as one line, never a stack trace.

use crate::config::Settings;
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
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
    Admin(AdminArgs),
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
    /// Gateway tokens.
    Tokens {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token; it is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Allowed model (repeatable; globs allowed). Default: all.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Unix time (seconds) after which the token stops working.
        #[arg(long)]
        expires_at: Option<i64>,
        /// Owner user id.
        #[arg(long)]
        user_id: Option<i64>,
    },
    /// List tokens.
    List,
    /// Disable a token.
    Disable { id: i64 },
    /// Re-enable a token.
    Enable { id: i64 },
    /// Delete a token.
    Delete { id: i64 },
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
        Command::Admin(args) => actix_rt::System::new().block_on(admin(settings, args)),
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
        AdminResource::Tokens { action } => tokens(&client, action, args.json).await,
    }
}

struct AdminClient {
    base: String,
    key: String,
    http: awc::Client,
}

impl AdminClient {
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
}

async fn tokens(client: &AdminClient, action: TokenAction, as_json: bool) -> anyhow::Result<()> {
    use awc::http::Method;
    let answer = match action {
        TokenAction::Create {
            name,
            models,
            expires_at,
            user_id,
        } => {
            let mut body = json!({ "name": name });
            if !models.is_empty() {
                body["allowed_models"] = json!(models);
            }
            if let Some(expires_at) = expires_at {
                body["expires_at"] = json!(expires_at);
            }
            if let Some(user_id) = user_id {
                body["user_id"] = json!(user_id);
            }
            let created = client
                .call(Method::POST, "/admin/tokens", Some(body))
                .await?;
            if !as_json {
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
            created
        }
        TokenAction::List => {
            let listed = client.call(Method::GET, "/admin/tokens", None).await?;
            if !as_json {
                print_token_table(&listed);
                return Ok(());
            }
            listed
        }
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
            if !as_json {
                println!("Deleted token {id}.");
                return Ok(());
            }
            json!({ "deleted": id })
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print_token_table(&json!({ "data": [answer] }));
    }
    Ok(())
}

fn print_token_table(listed: &Value) {
    let rows = listed["data"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<6} {:<24} {:<14} {:<8} {:>10} {:>12}",
        "ID", "NAME", "PREFIX", "ENABLED", "REQUESTS", "SPENT_USD"
    );
    for row in rows {
        println!(
            "{:<6} {:<24} {:<14} {:<8} {:>10} {:>12.6}",
            row["id"],
            row["name"].as_str().unwrap_or(""),
            row["prefix"].as_str().unwrap_or(""),
            row["enabled"],
            row["request_count"],
            row["spent_usd"].as_f64().unwrap_or(0.0),
        );
    }
}
