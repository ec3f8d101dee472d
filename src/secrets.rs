//! The master secret and the data key (see `crate::crypto` for the formats).
//!
//! - At start, [`open_cipher`] unwraps the stored data key with the master
//!   secret, or creates it on the first start; a master secret that does not
//!   unwrap it stops the start with one clear line (nothing is decrypted
//!   with the wrong key, nothing is written).
//! - Then [`upgrade_stored_secrets`] rewrites what earlier releases stored
//!   as `v1:` or `v2:` (provider keys, provider headers) as `v3:` under the
//!   data key, bound to its row, and replaces bare SHA-256 key fingerprints
//!   with keyed ones. Each row is replaced only if unchanged since it was
//!   read, so instances starting together do not fight.
//! - [`rotate`] re-wraps the data key under a new master secret: one row
//!   changes, compare-and-swap. Running servers keep the data key in memory
//!   and carry on; the next start needs the new secret.

use crate::crypto::{CryptoError, DataKey, SecretCipher, SecretRow, is_keyed_fingerprint};
use crate::db::Db;
use anyhow::Context as _;
use slog::{Logger, info, warn};

/// `system_values` name of the wrapped data key.
pub const DATA_KEY: &str = "data_key";

/// The gateway's cipher: the data key, unwrapped (or created) with `master`.
pub async fn open_cipher(db: &Db, master: &str, log: &Logger) -> anyhow::Result<SecretCipher> {
    let stored = match db.get_system_value(DATA_KEY).await? {
        Some(wrapped) => wrapped,
        None => {
            // Upgrading from v1: a secret that opens none of the stored
            // secrets is the wrong one, and wrapping a new data key under it
            // would lock the right one out later.
            refuse_if_v1_unreadable(db, master).await?;
            let fresh = DataKey::generate();
            if db
                .insert_system_value(DATA_KEY, &fresh.wrap(master)?)
                .await?
            {
                info!(log, "secrets.data_key_created");
            }
            // Another instance may have created it first: use the stored one.
            db.get_system_value(DATA_KEY)
                .await?
                .context("the data key vanished from system_values")?
        }
    };
    let data_key = DataKey::unwrap(&stored, master)?;
    let cipher = SecretCipher::with_data_key(&data_key, master);
    upgrade_stored_secrets(db, &cipher, log).await?;
    Ok(cipher)
}

/// Fails when provider keys were stored as `v1:` and `master` decrypts none.
async fn refuse_if_v1_unreadable(db: &Db, master: &str) -> anyhow::Result<()> {
    let legacy = SecretCipher::new(master);
    let (mut stored, mut readable) = (0, 0);
    for provider in db.list_providers().await? {
        for key in db.list_provider_keys(provider.id).await? {
            if key.secret_ciphertext.starts_with("v1:") {
                stored += 1;
                readable += usize::from(legacy.decrypt(&key.secret_ciphertext).is_ok());
            }
        }
    }
    anyhow::ensure!(
        stored == 0 || readable > 0,
        "security.secret_key decrypts none of the {stored} stored provider keys: it is not the \
         secret they were stored with"
    );
    Ok(())
}

/// Re-encrypts every secret not in the current form (`v1:`, `v2:`) as
/// `v3:` bound to its row, and keys every provider-key fingerprint; returns
/// how many rows it rewrote. A secret that cannot be decrypted is left as
/// it is (and logged).
pub async fn upgrade_stored_secrets(
    db: &Db,
    cipher: &SecretCipher,
    log: &Logger,
) -> anyhow::Result<usize> {
    let mut upgraded = 0;
    for provider in db.list_providers().await? {
        if let Ok(mut config) = serde_json::from_str::<serde_json::Value>(&provider.config_json)
            && let Some(headers) = config
                .get("headers_ciphertext")
                .and_then(serde_json::Value::as_str)
                .filter(|stored| !cipher.is_current(stored))
        {
            let row = SecretRow::ProviderHeaders {
                provider: &provider.name,
            };
            match cipher.decrypt_for(row, headers) {
                Ok(plain) => {
                    config["headers_ciphertext"] = cipher.encrypt_for(row, &plain)?.into();
                    if db
                        .replace_provider_config(
                            provider.id,
                            &provider.config_json,
                            &config.to_string(),
                        )
                        .await?
                    {
                        upgraded += 1;
                    }
                }
                Err(error) => {
                    warn!(log, "secrets.headers_undecryptable"; "provider" => &provider.name, "error" => %error)
                }
            }
        }
        for key in db.list_provider_keys(provider.id).await? {
            let current = cipher.is_current(&key.secret_ciphertext);
            if current && is_keyed_fingerprint(&key.secret_fingerprint) {
                continue;
            }
            let row = SecretRow::ProviderKey {
                provider: &provider.name,
                key_id: &key.key_id,
            };
            match cipher.decrypt_for(row, &key.secret_ciphertext) {
                Ok(plain) => {
                    let ciphertext = if current {
                        key.secret_ciphertext.clone()
                    } else {
                        cipher.encrypt_for(row, &plain)?
                    };
                    if db
                        .replace_provider_key_secret(
                            key.id,
                            &key.secret_ciphertext,
                            &ciphertext,
                            &cipher.fingerprint(&plain),
                        )
                        .await?
                    {
                        upgraded += 1;
                    }
                }
                Err(error) => {
                    warn!(log, "secrets.key_undecryptable"; "provider" => &provider.name,
                        "key_id" => &key.key_id, "error" => %error)
                }
            }
        }
    }
    if upgraded > 0 {
        info!(log, "secrets.upgraded_to_v3"; "rows" => upgraded);
    }
    Ok(upgraded)
}

/// What [`rotate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The data key is now wrapped under the new secret.
    Rotated,
    /// It already was (a repeated run): nothing changed.
    AlreadyRotated,
}

/// Re-wraps the data key from `current` to `new`.
pub async fn rotate(db: &Db, current: &str, new: &str) -> anyhow::Result<Rotation> {
    anyhow::ensure!(
        current != new,
        "the new secret is the current one; nothing to rotate"
    );
    let stored = db.get_system_value(DATA_KEY).await?.context(
        "no data key is stored yet: start the gateway once (it creates one), then rotate",
    )?;
    let data_key = match DataKey::unwrap(&stored, current) {
        Ok(key) => key,
        Err(CryptoError::WrongMasterSecret) if DataKey::unwrap(&stored, new).is_ok() => {
            return Ok(Rotation::AlreadyRotated);
        }
        Err(CryptoError::WrongMasterSecret) => anyhow::bail!(
            "the current secret (security.secret_key) does not unlock the stored data key; \
             nothing was changed"
        ),
        Err(error) => return Err(error.into()),
    };
    let rewrapped = data_key.wrap(new)?;
    anyhow::ensure!(
        db.replace_system_value(DATA_KEY, &stored, &rewrapped)
            .await?,
        "the data key changed while rotating (another rotation?); nothing was changed, run it again"
    );
    Ok(Rotation::Rotated)
}
