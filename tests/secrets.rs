//! Provider keys at rest: envelope encryption under a data key wrapped by
//! the master secret, the upgrade of rows earlier releases wrote (`v1:`),
//! and a start with the wrong secret, on both backends. Rotation through
//! the CLI is in tests/cli_admin.rs.

pub mod common;

use anyhow::{Context, ensure};
use common::{TestGateway, chat_body};
use switchyard::config::{Backend, Secret};
use switchyard::crypto::{SecretCipher, fingerprint};
use switchyard::db::NewProviderKey;

on_both_backends!(
    keys_are_stored_under_the_data_key_and_v1_rows_are_upgraded,
    a_start_with_another_secret_stops_and_changes_nothing,
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
            key.secret_ciphertext.starts_with("v2:") && !key.secret_ciphertext.contains("ok-"),
            "{}",
            key.secret_ciphertext
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
        upgraded.secret_ciphertext.starts_with("v2:"),
        "{}",
        upgraded.secret_ciphertext
    );
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
