//! `switchyard admin users ...`.

use super::table::{self, text, time, usd};
use super::{AdminClient, Setting, print_json};
use anyhow::bail;
use awc::http::Method;
use clap::Subcommand;
use serde_json::{Map, Value, json};

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user.
    Create {
        #[arg(long)]
        name: String,
        /// Refuse its tokens' requests once the balance is spent.
        #[arg(long)]
        prepaid: bool,
        /// Opening balance in USD (recorded as a top-up).
        #[arg(long, allow_negative_numbers = true)]
        balance_usd: Option<f64>,
        /// Price multiplier for all its tokens (1.2 = list price + 20 %).
        #[arg(long, allow_negative_numbers = true)]
        multiplier: Option<f64>,
    },
    /// List users.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show a user (id or name), its tokens and what it was charged.
    Show { user: String },
    /// Change a user (id or name).
    Update {
        user: String,
        #[arg(long)]
        name: Option<String>,
        /// `active` or `suspended` (its tokens are refused at once).
        #[arg(long)]
        status: Option<String>,
        /// `true` or `false`.
        #[arg(long)]
        prepaid: Option<bool>,
        /// Price multiplier, or `none` (list price).
        #[arg(long, allow_negative_numbers = true)]
        multiplier: Option<Setting<f64>>,
    },
    /// Delete a user (id or name) that owns no token.
    Delete { user: String },
    /// Add to a user's balance (id or name).
    Topup {
        user: String,
        #[arg(long, allow_negative_numbers = true)]
        amount_usd: f64,
        #[arg(long)]
        note: Option<String>,
    },
}

pub(super) async fn run(
    client: &AdminClient,
    action: UserAction,
    as_json: bool,
) -> anyhow::Result<()> {
    let answer = match action {
        UserAction::Create {
            name,
            prepaid,
            balance_usd,
            multiplier,
        } => {
            let mut body = json!({ "name": name, "prepaid": prepaid });
            if let Some(balance) = balance_usd {
                body["balance_usd"] = json!(balance);
            }
            if let Some(multiplier) = multiplier {
                body["price_multiplier"] = json!(multiplier);
            }
            client
                .call(Method::POST, "/admin/users", Some(body))
                .await?
        }
        UserAction::List { limit, offset } => {
            let listed = client
                .get(&format!("/admin/users?limit={limit}&offset={offset}"))
                .await?;
            if as_json {
                return print_json(&listed);
            }
            print_list(&listed);
            return Ok(());
        }
        UserAction::Show { user } => {
            let id = client.user_id(&user).await?;
            client.get(&format!("/admin/users/{id}")).await?
        }
        UserAction::Update {
            user,
            name,
            status,
            prepaid,
            multiplier,
        } => {
            let id = client.user_id(&user).await?;
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".to_owned(), json!(name));
            }
            if let Some(status) = status {
                body.insert("status".to_owned(), json!(status));
            }
            if let Some(prepaid) = prepaid {
                body.insert("prepaid".to_owned(), json!(prepaid));
            }
            if let Some(multiplier) = multiplier {
                body.insert("price_multiplier".to_owned(), multiplier.json());
            }
            if body.is_empty() {
                bail!("nothing to change: give at least one option (see --help)");
            }
            client
                .call(
                    Method::PATCH,
                    &format!("/admin/users/{id}"),
                    Some(Value::Object(body)),
                )
                .await?
        }
        UserAction::Delete { user } => {
            let id = client.user_id(&user).await?;
            client
                .call(Method::DELETE, &format!("/admin/users/{id}"), None)
                .await?;
            if as_json {
                return print_json(&json!({ "deleted": id }));
            }
            println!("Deleted user {id}.");
            return Ok(());
        }
        UserAction::Topup {
            user,
            amount_usd,
            note,
        } => {
            let id = client.user_id(&user).await?;
            let mut body = json!({ "amount_usd": amount_usd });
            if let Some(note) = note {
                body["note"] = json!(note);
            }
            let answer = client
                .call(
                    Method::POST,
                    &format!("/admin/users/{id}/topup"),
                    Some(body),
                )
                .await?;
            if as_json {
                return print_json(&answer);
            }
            println!(
                "Added ${} to user {id} ({}); balance now ${}.",
                usd(&answer["record"]["amount_usd"]),
                text(&answer["user"]["name"]),
                usd(&answer["user"]["balance_usd"]),
            );
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

fn print_list(listed: &Value) {
    let rows: Vec<Vec<String>> = listed["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|user| {
            vec![
                text(&user["id"]),
                text(&user["name"]),
                text(&user["status"]),
                text(&user["prepaid"]),
                usd(&user["balance_usd"]),
                usd(&user["reserved_usd"]),
                text(&user["price_multiplier"]),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "NAME",
            "STATUS",
            "PREPAID",
            " BALANCE_USD",
            " RESERVED_USD",
            "MULTIPLIER",
        ],
        &rows,
    );
    println!("{} of {} users", rows.len(), text(&listed["total"]));
}

fn print_details(user: &Value) {
    let mut pairs = vec![
        ("id", text(&user["id"])),
        ("name", text(&user["name"])),
        ("status", text(&user["status"])),
        ("prepaid", text(&user["prepaid"])),
        ("balance usd", usd(&user["balance_usd"])),
        ("reserved usd", usd(&user["reserved_usd"])),
        ("multiplier", text(&user["price_multiplier"])),
        ("created", time(&user["created_at"])),
    ];
    if let Some(tokens) = user["token_ids"].as_array() {
        let ids: Vec<String> = tokens.iter().map(text).collect();
        pairs.push((
            "tokens",
            if ids.is_empty() {
                "-".to_owned()
            } else {
                ids.join(", ")
            },
        ));
        pairs.push(("charged usd", usd(&user["spent_usd"])));
    }
    table::details(&pairs);
}
