//! Start-up of the admin plane: the deployment's `server_id`, and the first
//! admin key of a deployment that has none.

use super::AdminSigningKey;
use crate::db::{Db, NewAdminKey};
use anyhow::Context as _;
use slog::{Logger, warn};
use std::path::Path;

/// `system_values` name of the deployment id signed into every login.
pub const SERVER_ID: &str = "server_id";
/// `system_values` marker: the first admin key was generated (once per
/// deployment, by whichever instance got there first).
const ADMIN_BOOTSTRAP: &str = "admin_bootstrap";
/// The name the generated key is registered under.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap";

/// The deployment's id: generated once and stored, so every instance sharing
/// the database signs logins for the same id.
pub async fn server_id(db: &Db) -> anyhow::Result<String> {
    let fresh = format!("sy-{}", hex::encode(rand::random::<[u8; 16]>()));
    db.insert_system_value(SERVER_ID, &fresh)
        .await
        .context("storing the server id")?;
    db.get_system_value(SERVER_ID)
        .await
        .context("reading the server id")?
        .context("the server id vanished from system_values")
}

/// On the first start of a deployment without admin keys: generates an
/// Ed25519 key, writes its private half to `key_file` (PKCS#8 PEM, mode
/// 0600), registers the public half and logs only the fingerprint. A key
/// file already there (a database reset, a key made with openssl) is
/// registered instead of being overwritten. Answers whether this call
/// registered it (the deployment's first start).
pub async fn ensure_admin_key(db: &Db, key_file: &str, log: &Logger) -> anyhow::Result<bool> {
    if !db.list_admin_keys().await?.is_empty() {
        return Ok(false);
    }
    let stamp = db.now_ms().to_string();
    if !db.insert_system_value(ADMIN_BOOTSTRAP, &stamp).await? {
        warn!(log, "admin.no_admin_key";
            "hint" => "every admin key was removed; add one with the master key (switchyard admin keys add)");
        return Ok(false);
    }
    let path = Path::new(key_file);
    let (key, written) = match std::fs::read_to_string(path) {
        Ok(pem) => (
            AdminSigningKey::from_pem(&pem)
                .with_context(|| format!("{key_file} (admin.key_file)"))?,
            false,
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = AdminSigningKey::generate();
            crate::write_private_file(path, key.to_pem()?.trim_end())
                .with_context(|| format!("writing {key_file} (admin.key_file)"))?;
            (key, true)
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {key_file} (admin.key_file)"));
        }
    };
    let public = key.public_key();
    db.create_admin_key(&NewAdminKey {
        name: BOOTSTRAP_KEY_NAME.to_owned(),
        public_key: public.to_text(),
        fingerprint: public.fingerprint(),
        enabled: true,
        // The first key must be able to register the others.
        role: crate::auth::Role::Admin.as_str().to_owned(),
    })
    .await
    .context("registering the first admin key")?;
    // Warning level, like a generated secret: the operator must notice the
    // new file and keep it safe.
    warn!(log, "admin.key_bootstrapped"; "fingerprint" => public.fingerprint(),
        "file" => key_file, "generated" => written);
    Ok(true)
}
