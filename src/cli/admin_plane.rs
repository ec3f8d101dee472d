//! `switchyard admin login|logout|keys|sessions|operation-logs|rotate-secret`.

use super::session_file::{self, StoredSession, replace_private_file};
use super::{AdminClient, KeyAction, SessionAction};
use crate::auth::{AdminPublicKey, AdminSigningKey, login_message};
use crate::config::Settings;
use anyhow::{Context as _, bail};
use awc::http::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// Environment variable that may carry the new secret for `rotate-secret`.
pub const NEW_SECRET_ENV: &str = "SWITCHYARD_NEW_SECRET_KEY";
/// Shortest master secret `rotate-secret` accepts.
const MIN_SECRET_CHARS: usize = 16;

/// Unix seconds as RFC 3339 (UTC).
pub fn format_time(unix_seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_seconds).unwrap_or(0));
    humantime_serde::re::humantime::format_rfc3339_seconds(time).to_string()
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

fn read_signing_key(path: &Path) -> anyhow::Result<AdminSigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    AdminSigningKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
}

/// `admin login --key FILE`: challenge, sign, verify, store the session.
pub async fn login(client: &AdminClient, key_file: &Path, as_json: bool) -> anyhow::Result<()> {
    let key = read_signing_key(key_file)?;
    let public_key = key.public_key().to_text();
    let challenge = client
        .call(
            Method::POST,
            "/auth/challenge",
            Some(json!({ "public_key": public_key })),
        )
        .await
        .context("login refused")?;
    let nonce = text(&challenge, "nonce");
    let server_id = text(&challenge, "server_id");
    let expires_at_ms = challenge
        .get("expires_at_ms")
        .and_then(Value::as_i64)
        .context("the challenge has no expiry; is this a Switchyard gateway?")?;
    // Sign what we built from the parts, never whatever text was sent: the
    // server cannot make this key sign anything but a login for itself.
    let message = login_message(server_id, &public_key, nonce, expires_at_ms);
    if text(&challenge, "message") != message
        || text(&challenge, "public_key") != public_key
        || server_id.is_empty()
    {
        bail!("the server's challenge is not a login challenge for this key; nothing was signed");
    }
    let granted = client
        .call(
            Method::POST,
            "/auth/verify",
            Some(json!({
                "public_key": public_key,
                "nonce": nonce,
                "signature": key.sign(&message).to_text(),
            })),
        )
        .await
        .context("login refused")?;
    let session = StoredSession {
        server: client.base().to_owned(),
        token: text(&granted, "token").to_owned(),
        session_id: granted["session_id"].as_i64().unwrap_or_default(),
        fingerprint: text(&granted, "fingerprint").to_owned(),
        expires_at: granted["expires_at"].as_i64().unwrap_or_default(),
    };
    if !session.token.starts_with(crate::auth::SESSION_TOKEN_PREFIX) {
        bail!("the server answered the login without a session token");
    }
    let path = session_file::save(&session)?;
    if as_json {
        return print_json(&json!({
            "server": session.server,
            "session_id": session.session_id,
            "fingerprint": session.fingerprint,
            "expires_at": session.expires_at,
            "session_file": path.display().to_string(),
        }));
    }
    println!(
        "Logged in to {} as {} (session {}, until {}).",
        session.server,
        session.fingerprint,
        session.session_id,
        format_time(session.expires_at)
    );
    println!("Session stored in {}.", path.display());
    Ok(())
}

/// `admin logout`: revokes the stored session (if the server still knows
/// it) and deletes the file.
pub async fn logout(as_json: bool) -> anyhow::Result<()> {
    let Some(session) = session_file::load()? else {
        bail!("not logged in (no stored session)");
    };
    let client = AdminClient::new(&session.server, Some(session.token.clone()));
    let revoked = client
        .call(
            Method::DELETE,
            &format!("/admin/sessions/{}", session.session_id),
            None,
        )
        .await;
    session_file::remove()?;
    // An expired or already revoked session is as logged out as can be; a
    // server that cannot be reached is not, so say so.
    let note = match &revoked {
        Ok(_) => "revoked".to_owned(),
        Err(error) if error.to_string().ends_with("(401)") => "already invalid".to_owned(),
        Err(error) => format!("not revoked on the server: {error:#}"),
    };
    if as_json {
        return print_json(
            &json!({ "session_id": session.session_id, "server": session.server, "result": note }),
        );
    }
    println!(
        "Logged out of {} (session {}: {note}).",
        session.server, session.session_id
    );
    Ok(())
}

fn print_key_table(rows: &[Value]) {
    println!(
        "{:<5} {:<20} {:<9} {:<8} {:<51} {:<20}",
        "ID", "NAME", "ROLE", "ENABLED", "FINGERPRINT", "LAST_LOGIN"
    );
    for row in rows {
        println!(
            "{:<5} {:<20} {:<9} {:<8} {:<51} {:<20}",
            row["id"].to_string(),
            text(row, "name"),
            text(row, "role"),
            row["enabled"].to_string(),
            text(row, "fingerprint"),
            row["last_login_at"]
                .as_i64()
                .map(format_time)
                .unwrap_or_else(|| "-".to_owned()),
        );
    }
}

/// `admin keys ...`
pub async fn keys(client: &AdminClient, action: KeyAction, as_json: bool) -> anyhow::Result<()> {
    let answer = match action {
        KeyAction::List => {
            let listed = client.call(Method::GET, "/admin/admin-keys", None).await?;
            if !as_json {
                print_key_table(listed["data"].as_array().map_or(&[], Vec::as_slice));
                return Ok(());
            }
            listed
        }
        KeyAction::Add {
            name,
            public_key,
            key_file,
            role,
        } => {
            let public_key = match (public_key, key_file) {
                (Some(text), _) => AdminPublicKey::parse_text_or_pem(&text)?,
                (None, Some(file)) => {
                    let content = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    match AdminSigningKey::from_pem(&content) {
                        Ok(private) => private.public_key(),
                        Err(_) => AdminPublicKey::parse_text_or_pem(&content)
                            .with_context(|| format!("{}", file.display()))?,
                    }
                }
                (None, None) => bail!("give --public-key or --key-file"),
            };
            let mut body = json!({ "name": name, "public_key": public_key.to_text() });
            if let Some(role) = role {
                body["role"] = json!(role);
            }
            client
                .call(Method::POST, "/admin/admin-keys", Some(body))
                .await?
        }
        KeyAction::SetRole { id, role } => {
            client
                .call(
                    Method::PATCH,
                    &format!("/admin/admin-keys/{id}"),
                    Some(json!({ "role": role })),
                )
                .await?
        }
        KeyAction::Disable { id } => {
            client
                .call(
                    Method::POST,
                    &format!("/admin/admin-keys/{id}/disable"),
                    None,
                )
                .await?
        }
        KeyAction::Enable { id } => {
            client
                .call(
                    Method::POST,
                    &format!("/admin/admin-keys/{id}/enable"),
                    None,
                )
                .await?
        }
        KeyAction::Remove { id } => {
            client
                .call(Method::DELETE, &format!("/admin/admin-keys/{id}"), None)
                .await?;
            if !as_json {
                println!("Removed admin key {id}.");
                return Ok(());
            }
            json!({ "removed": id })
        }
        KeyAction::Generate { out } => return generate_key(&out, as_json),
    };
    if as_json {
        return print_json(&answer);
    }
    print_key_table(std::slice::from_ref(&answer));
    Ok(())
}

/// `admin keys generate --out FILE`
pub fn generate_key(out: &Path, as_json: bool) -> anyhow::Result<()> {
    let key = AdminSigningKey::generate();
    crate::write_private_file(out, key.to_pem()?.trim_end())
        .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    let public = key.public_key();
    if as_json {
        return print_json(&json!({
            "file": out.display().to_string(),
            "public_key": public.to_text(),
            "fingerprint": public.fingerprint(),
        }));
    }
    println!("Private key written to {} (mode 0600).", out.display());
    println!("Public key:  {}", public.to_text());
    println!("Fingerprint: {}", public.fingerprint());
    println!(
        "Register it with: switchyard admin keys add --name NAME --public-key {}",
        public.to_text()
    );
    Ok(())
}

/// `admin sessions ...`
pub async fn sessions(
    client: &AdminClient,
    action: SessionAction,
    as_json: bool,
) -> anyhow::Result<()> {
    match action {
        SessionAction::List => {
            let listed = client.call(Method::GET, "/admin/sessions", None).await?;
            if as_json {
                return print_json(&listed);
            }
            println!(
                "{:<6} {:<8} {:<14} {:<51} {:<20}",
                "ID", "STATE", "PREFIX", "FINGERPRINT", "EXPIRES"
            );
            for row in listed["data"].as_array().map_or(&[][..], Vec::as_slice) {
                let state = if row["current"] == Value::Bool(true) {
                    format!("{}*", text(row, "state"))
                } else {
                    text(row, "state").to_owned()
                };
                println!(
                    "{:<6} {:<8} {:<14} {:<51} {:<20}",
                    row["id"].to_string(),
                    state,
                    text(row, "prefix"),
                    text(row, "fingerprint"),
                    format_time(row["expires_at"].as_i64().unwrap_or_default()),
                );
            }
            Ok(())
        }
        SessionAction::Revoke { id } => {
            client
                .call(Method::DELETE, &format!("/admin/sessions/{id}"), None)
                .await?;
            if as_json {
                return print_json(&json!({ "revoked": id }));
            }
            println!("Revoked session {id}.");
            Ok(())
        }
    }
}

/// `admin operation-logs`
pub async fn operation_logs(
    client: &AdminClient,
    limit: i64,
    offset: i64,
    actor: Option<String>,
    action: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let mut query = format!("/admin/operation-logs?limit={limit}&offset={offset}");
    let encode = |value: &str| {
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    if let Some(actor) = actor {
        query.push_str(&format!("&actor={}", encode(&actor)));
    }
    if let Some(action) = action {
        query.push_str(&format!("&action={}", encode(&action)));
    }
    let listed = client.call(Method::GET, &query, None).await?;
    if as_json {
        return print_json(&listed);
    }
    println!(
        "{:<6} {:<20} {:<22} {:<28} ACTOR",
        "ID", "WHEN", "ACTION", "TARGET"
    );
    for row in listed["data"].as_array().map_or(&[][..], Vec::as_slice) {
        println!(
            "{:<6} {:<20} {:<22} {:<28} {}",
            row["id"].to_string(),
            format_time(row["created_at"].as_i64().unwrap_or_default()),
            text(row, "action"),
            text(row, "target"),
            text(row, "actor"),
        );
    }
    Ok(())
}

/// `admin rotate-secret [--new-secret-file FILE]` (see its help).
pub async fn rotate_secret(
    settings: &Settings,
    new_secret_file: Option<&Path>,
) -> anyhow::Result<()> {
    let from_file = settings.security.secret_key.is_empty();
    let secret_file = Path::new(&settings.security.secret_key_file);
    let current = if from_file {
        std::fs::read_to_string(secret_file)
            .with_context(|| {
                format!(
                    "security.secret_key is empty and {} is unreadable: no current secret",
                    secret_file.display()
                )
            })?
            .trim()
            .to_owned()
    } else {
        settings.security.secret_key.expose().to_owned()
    };
    let new = match (new_secret_file, std::env::var(NEW_SECRET_ENV).ok()) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .trim()
            .to_owned(),
        (None, Some(value)) => value.trim().to_owned(),
        (None, None) if from_file => format!("sy-{}", hex::encode(rand::random::<[u8; 32]>())),
        (None, None) => bail!(
            "security.secret_key is set in settings: give the new secret with \
             --new-secret-file FILE or {NEW_SECRET_ENV}"
        ),
    };
    if new.chars().count() < MIN_SECRET_CHARS || new.chars().any(char::is_control) {
        bail!("the new secret must be at least {MIN_SECRET_CHARS} printable characters");
    }
    let db = crate::db::connect(&settings.database)
        .await
        .context("opening the database")?;
    let outcome = crate::secrets::rotate(&db, &current, &new).await?;
    if outcome == crate::secrets::Rotation::Rotated {
        let actor = format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
        );
        // The data key rotated; the log row is secondary, so a failure to
        // write it is reported, not fatal.
        if let Err(error) = db
            .insert_operation_log(&crate::db::NewOperationLog {
                actor,
                session_id: None,
                action: "secret.rotate".to_owned(),
                target: "data_key".to_owned(),
                before_json: None,
                after_json: Some(
                    json!({ "secret_source": if from_file { "secret_key_file" } else { "secret_key" } })
                        .to_string(),
                ),
                request_id: None,
            })
            .await
        {
            eprintln!("switchyard: warning: the operation log was not written: {error}");
        }
    }
    if from_file {
        replace_private_file(secret_file, &new).with_context(|| {
            format!(
                "the data key is re-wrapped under the new secret, but {} could not be updated; \
                 put the new secret there before the next start",
                secret_file.display()
            )
        })?;
    }
    match (outcome, from_file) {
        (crate::secrets::Rotation::AlreadyRotated, _) => {
            println!("The data key was already wrapped under the new secret; nothing changed.")
        }
        (crate::secrets::Rotation::Rotated, _) => println!(
            "Rotated: the data key is now wrapped under the new master secret. Running gateways \
             keep working."
        ),
    }
    if from_file {
        println!(
            "The new secret is in {}; start every gateway with it.",
            secret_file.display()
        );
    } else {
        println!(
            "Set security.secret_key (SWITCHYARD__SECURITY__SECRET_KEY) to the new secret \
             before the next start; the old one no longer starts the gateway."
        );
    }
    Ok(())
}
