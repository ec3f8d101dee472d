//! Provider keys at rest: envelope encryption under a data key wrapped by
//! the master secret, each ciphertext bound to its row (`v3:`), keyed
//! fingerprints, the upgrade of rows earlier releases wrote (`v1:`, `v2:`,
//! bare SHA-256 fingerprints), and a start with the wrong secret, on both
//! backends. Rotation through the CLI is in tests/cli_admin.rs. Files at
//! rest: the admin key file reads in OpenSSL 3, the SQLite files are 0600.

pub mod common;

use anyhow::{Context, ensure};
use common::{TestGateway, chat_body};
use switchyard::config::{Backend, Secret};
use switchyard::crypto::{DataKey, SecretCipher, SecretRow, fingerprint, is_keyed_fingerprint};
use switchyard::db::NewProviderKey;

on_both_backends!(
    keys_are_stored_under_the_data_key_and_v1_rows_are_upgraded,
    v2_rows_are_bound_to_their_row_and_fingerprints_keyed_at_start,
    a_start_with_another_secret_stops_and_changes_nothing,
    an_upgrade_with_the_wrong_secret_stops_before_creating_a_data_key,
);

async fn keys_are_stored_under_the_data_key_and_v1_rows_are_upgraded(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut first = TestGateway::start(backend, |_, _| {}).await?;
    let token = first
        .create_token(serde_json::json!({ "name": "t" }))
        .await?;
    let db = first.gateway()?.db.clone();
    let wrapped = db
        .get_system_value(switchyard::secrets::DATA_KEY)
        .await?
        .context("no data key stored")?;
    ensure!(wrapped.starts_with("k1:"), "{wrapped}");
    let provider = db
        .get_provider_by_name("mock")
        .await?
        .context("no provider")?;
    for key in db.list_provider_keys(provider.id).await? {
        ensure!(
            key.secret_ciphertext.starts_with("v3:") && !key.secret_ciphertext.contains("ok-"),
            "{}",
            key.secret_ciphertext
        );
        ensure!(
            is_keyed_fingerprint(&key.secret_fingerprint)
                && !key.secret_fingerprint.contains(&fingerprint("ok-1"))
                && !key.secret_fingerprint.contains(&fingerprint("ok-2")),
            "{}",
            key.secret_fingerprint
        );
    }
    // A row as an earlier release wrote it: v1, under SHA-256 of the secret.
    let legacy = SecretCipher::new("test-secret-key");
    let v1 = legacy.encrypt("ok-legacy")?;
    db.upsert_provider_key(&NewProviderKey {
        provider_id: provider.id,
        key_id: "legacy".to_owned(),
        secret_ciphertext: v1.clone(),
        secret_hint: "ok-l…gacy".to_owned(),
        secret_fingerprint: fingerprint("ok-legacy"),
        weight: 1,
        priority: -10,
        enabled: true,
    })
    .await?;
    if let Some(gateway) = first.gateway.take() {
        gateway.stop().await?;
    }

    // The next start rewrites it as v2 under the data key, and serves with it.
    let second = TestGateway::start(backend, {
        let database = first.database();
        move |settings, _| {
            settings.database = database;
            if let Some(provider) = settings.providers.first_mut() {
                provider.strategy = switchyard_actors::KeyStrategy::FirstAvailable;
            }
        }
    })
    .await?;
    let keys = second.gateway()?.db.list_provider_keys(provider.id).await?;
    let upgraded = keys
        .iter()
        .find(|key| key.key_id == "legacy")
        .context("legacy key gone")?;
    ensure!(
        upgraded.secret_ciphertext.starts_with("v3:"),
        "{}",
        upgraded.secret_ciphertext
    );
    ensure!(is_keyed_fingerprint(&upgraded.secret_fingerprint));
    ensure!(legacy.decrypt(&upgraded.secret_ciphertext).is_err());
    // `first-available` prefers the lowest priority: the upgraded key.
    let reply = second.chat(&token, chat_body("mock-gpt", "hi")).await?;
    ensure!(reply.status == 200, "{} {}", reply.status, reply.text());
    ensure!(
        second.mock.calls("ok-legacy") == 1,
        "the upgraded key did not serve"
    );
    ensure!(
        second
            .gateway()?
            .db
            .get_system_value(switchyard::secrets::DATA_KEY)
            .await?
            == Some(wrapped),
        "the data key changed across restarts"
    );
    second.stop().await?;
    first.stop().await
}

async fn a_start_with_another_secret_stops_and_changes_nothing(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut first = TestGateway::start(backend, |_, _| {}).await?;
    let db = first.gateway()?.db.clone();
    let provider = db
        .get_provider_by_name("mock")
        .await?
        .context("no provider")?;
    let before: Vec<String> = db
        .list_provider_keys(provider.id)
        .await?
        .into_iter()
        .map(|key| key.secret_ciphertext)
        .collect();
    if let Some(gateway) = first.gateway.take() {
        gateway.stop().await?;
    }
    let refused = TestGateway::start(backend, {
        let database = first.database();
        move |settings, _| {
            settings.database = database;
            settings.security.secret_key = Secret::new("some-other-secret");
        }
    })
    .await;
    let error = match refused {
        Ok(_) => anyhow::bail!("the gateway started with the wrong secret"),
        Err(error) => format!("{error:#}"),
    };
    ensure!(
        error.contains("security.secret_key does not unlock the stored data key")
            && !error.contains('\n'),
        "{error}"
    );
    let after: Vec<String> = db
        .list_provider_keys(provider.id)
        .await?
        .into_iter()
        .map(|key| key.secret_ciphertext)
        .collect();
    ensure!(before == after, "a refused start rewrote keys");
    first.stop().await
}

/// A database from an earlier release (v1 keys, no data key) started with a
/// secret that opens none of its keys: wrapping a new data key under that
/// secret would lock the right one out, so the start stops first.
async fn an_upgrade_with_the_wrong_secret_stops_before_creating_a_data_key(
    backend: Backend,
) -> anyhow::Result<()> {
    let test_db = common::db::TestDb::new(backend).await?;
    let db = switchyard::db::connect(&test_db.settings).await?;
    let provider = db
        .upsert_provider(&switchyard::db::NewProvider {
            name: "old".to_owned(),
            kind: "openai-compatible".to_owned(),
            base_url: Some("http://127.0.0.1:1".to_owned()),
            config_json: "{}".to_owned(),
            enabled: false,
        })
        .await?;
    let v1 = SecretCipher::new("the-old-release-secret").encrypt("ok-old")?;
    db.upsert_provider_key(&NewProviderKey {
        provider_id: provider.id,
        key_id: "k".to_owned(),
        secret_ciphertext: v1,
        secret_hint: "ok-o…-old".to_owned(),
        secret_fingerprint: fingerprint("ok-old"),
        weight: 1,
        priority: 0,
        enabled: true,
    })
    .await?;
    let refused = TestGateway::start(backend, {
        let database = test_db.settings.clone();
        move |settings, _| {
            settings.database = database;
            settings.security.secret_key = Secret::new("not-the-old-secret");
        }
    })
    .await;
    let error = match refused {
        Ok(_) => anyhow::bail!("started with a secret that opens no stored key"),
        Err(error) => format!("{error:#}"),
    };
    ensure!(
        error.contains("decrypts none of the 1 stored provider keys"),
        "{error}"
    );
    ensure!(
        db.get_system_value(switchyard::secrets::DATA_KEY)
            .await?
            .is_none(),
        "a data key was created under the wrong secret"
    );
    let started = TestGateway::start(backend, {
        let database = test_db.settings.clone();
        move |settings, _| {
            settings.database = database;
            settings.security.secret_key = Secret::new("the-old-release-secret");
        }
    })
    .await?;
    let keys = db.list_provider_keys(provider.id).await?;
    ensure!(
        keys.iter()
            .all(|key| key.secret_ciphertext.starts_with("v3:"))
    );
    started.stop().await
}

/// What the previous release wrote under the data key (`v2:`, fixed AAD,
/// bare SHA-256 fingerprint) is rewritten at start as `v3:` bound to its
/// row, with a keyed fingerprint; nothing stored becomes unreadable, and the
/// rewritten ciphertext opens only for its own row.
async fn v2_rows_are_bound_to_their_row_and_fingerprints_keyed_at_start(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut first = TestGateway::start(backend, |_, _| {}).await?;
    let token = first
        .create_token(serde_json::json!({ "name": "t" }))
        .await?;
    let db = first.gateway()?.db.clone();
    let master = first.settings.security.secret_key.expose().to_owned();
    let wrapped = db
        .get_system_value(switchyard::secrets::DATA_KEY)
        .await?
        .context("no data key stored")?;
    let cipher = SecretCipher::with_data_key(&DataKey::unwrap(&wrapped, &master)?, &master);
    let provider = db
        .get_provider_by_name("mock")
        .await?
        .context("no provider")?;
    let v2 = cipher.encrypt("ok-previous")?;
    ensure!(v2.starts_with("v2:"), "{v2}");
    db.upsert_provider_key(&NewProviderKey {
        provider_id: provider.id,
        key_id: "previous".to_owned(),
        secret_ciphertext: v2,
        secret_hint: "ok-p…ious".to_owned(),
        secret_fingerprint: fingerprint("ok-previous"),
        weight: 1,
        priority: -10,
        enabled: true,
    })
    .await?;
    if let Some(gateway) = first.gateway.take() {
        gateway.stop().await?;
    }

    let second = TestGateway::start(backend, {
        let database = first.database();
        move |settings, _| {
            settings.database = database;
            if let Some(provider) = settings.providers.first_mut() {
                provider.strategy = switchyard_actors::KeyStrategy::FirstAvailable;
            }
        }
    })
    .await?;
    let keys = second.gateway()?.db.list_provider_keys(provider.id).await?;
    let upgraded = keys
        .iter()
        .find(|key| key.key_id == "previous")
        .context("previous key gone")?;
    ensure!(
        upgraded.secret_ciphertext.starts_with("v3:"),
        "{}",
        upgraded.secret_ciphertext
    );
    ensure!(
        upgraded.secret_fingerprint == cipher.fingerprint("ok-previous"),
        "{}",
        upgraded.secret_fingerprint
    );
    let own = SecretRow::ProviderKey {
        provider: "mock",
        key_id: "previous",
    };
    ensure!(cipher.decrypt_for(own, &upgraded.secret_ciphertext)? == "ok-previous");
    let other = SecretRow::ProviderKey {
        provider: "mock",
        key_id: "key-1",
    };
    ensure!(
        cipher
            .decrypt_for(other, &upgraded.secret_ciphertext)
            .is_err(),
        "a ciphertext opened for another row"
    );
    // The same key added again is recognised by its keyed fingerprint: a
    // conflict, 409 (issue 11; once a 400).
    let (status, answer) = second
        .admin(
            awc::http::Method::POST,
            "/admin/providers/mock/keys",
            Some(serde_json::json!({ "key": "ok-previous" })),
        )
        .await?;
    ensure!(
        status == 409 && answer["error"]["code"] == "conflict",
        "{status} {answer}"
    );
    // It serves: `first-available` prefers the lowest priority.
    let reply = second.chat(&token, chat_body("mock-gpt", "hi")).await?;
    ensure!(reply.status == 200, "{} {}", reply.status, reply.text());
    ensure!(second.mock.calls("ok-previous") == 1);
    second.stop().await?;
    first.stop().await
}

/// Loads the PEM file named by argv[1]; exits 0 when `cryptography` is not
/// installed (it is optional; OpenSSL is required).
const LOAD_WITH_CRYPTOGRAPHY: &str = r#"
import sys
try:
    from cryptography.hazmat.primitives import serialization
except ImportError:
    sys.exit(0)
serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
"#;

/// The admin key file the first start writes reads in OpenSSL 3 (and in
/// Python's `cryptography`, when installed), and the SQLite database, its
/// WAL and shared-memory files are readable by their owner only.
#[actix_rt::test]
async fn files_at_rest_are_private_and_the_key_file_reads_in_openssl() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let gw = TestGateway::start(Backend::Sqlite, |_, _| {}).await?;
    gw.create_token(serde_json::json!({ "name": "writes" }))
        .await?;
    let key_file = gw.data_dir().join("admin_ed25519.key");
    let openssl = std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&key_file)
        .output()?;
    ensure!(
        openssl.status.success(),
        "openssl pkey refused the key file: {}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    let python = std::process::Command::new("python3")
        .args(["-c", LOAD_WITH_CRYPTOGRAPHY])
        .arg(&key_file)
        .output();
    if let Ok(python) = python {
        ensure!(
            python.status.success(),
            "cryptography refused the key file: {}",
            String::from_utf8_lossy(&python.stderr)
        );
    }
    let database = gw.database();
    let path = database.sqlite_path().to_owned();
    for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
        let mode = std::fs::metadata(&file)
            .with_context(|| format!("{file} missing"))?
            .permissions()
            .mode();
        ensure!(mode & 0o777 == 0o600, "{file} has mode {:o}", mode & 0o777);
    }
    gw.stop().await
}
