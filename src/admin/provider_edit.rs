//! Providers created, shown, changed and deleted through the admin API, live:
//! each change is written to the database, then the router is brought in
//! line with the stored provider (`UpsertProvider`, or `RemoveProvider` when
//! it is deleted or disabled), so the next request follows it.
//!
//! - Bodies take what a `[[providers]]` table of the settings takes, checked
//!   by the same [`ProviderSettings::validate`], but never expand `${VAR}`:
//!   an admin API must not read the server's environment, so a key or header
//!   value containing `${` is refused.
//! - Header values and keys are secrets: stored encrypted (like settings),
//!   shown masked, never returned whole or logged.
//! - `PATCH` is a JSON merge patch (RFC 7396) of the provider's document:
//!   `headers` and `retry` merge field by field (`null` removes a header),
//!   other fields are replaced. The name cannot change, and keys have their
//!   own routes (`/admin/providers/{name}/keys`).
//! - A provider declared in settings is upserted again at every start: an
//!   admin's change to it (or its deletion) lasts until the next start.
//!   Answers say where a provider comes from (`"source": "settings"|"api"`).
//! - Applying a change reloads the provider from the database, so concurrent
//!   changes leave the router with whatever the database holds last.

use super::ADMIN_BODY_LIMIT;
use super::providers::{key_json, live_health, provider_row, valid_key_id};
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::config::{
    KeySettings, ProviderKind, ProviderSettings, RetrySettings, Secret, mask,
    providers::valid_provider_name,
};
use crate::config_store;
use crate::crypto::{SecretCipher, SecretRow, fingerprint_digits};
use crate::db::providers::{NewProviderKey, Provider};
use crate::error::ApiError;
use crate::http::body::read_json;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use switchyard_actors::{KeyHealthView, KeyStrategy, RemoveProvider, UpsertProvider};

/// The longest provider name taken (it prefixes model names).
const MAX_NAME_CHARS: usize = 100;

/// The key strategies, as written in bodies and settings.
const STRATEGIES: &str =
    "first-available, round-robin, random, weighted, least-in-flight or latency";

/// `POST /admin/providers`, and a provider's document under `PATCH`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    pub name: String,
    /// `openai`, `openai-compatible`, `azure-openai`, `anthropic`, `gemini`,
    /// `zhipu` or `echo`.
    pub kind: String,
    /// Required by every kind but `echo` (checked with the settings' rules).
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    /// Extra headers sent upstream; values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default = "one")]
    pub weight: i64,
    #[serde(default)]
    pub max_in_flight_per_key: i64,
    /// Like `[providers.retry]`: durations as `250ms`, `30s`.
    #[serde(default)]
    pub retry: Option<Value>,
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub keys: Vec<KeyBody>,
}

/// One key of a `POST /admin/providers` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    pub key: String,
    /// Defaults to `key-` and 8 hex digits of the secret's hash.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "one")]
    pub weight: i64,
    #[serde(default)]
    pub priority: i32,
}

fn one() -> i64 {
    1
}

fn enabled() -> bool {
    true
}

/// The top-level body field a validation error is about (`param` is static).
fn param_of(field: &str) -> Option<&'static str> {
    const FIELDS: [&str; 12] = [
        "name",
        "kind",
        "base_url",
        "api_version",
        "models",
        "headers",
        "strategy",
        "weight",
        "max_in_flight_per_key",
        "retry",
        "enabled",
        "keys",
    ];
    let top = field.split(['.', '[']).next().unwrap_or(field);
    FIELDS.into_iter().find(|known| *known == top)
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    let message = format!("`{field}` {message}");
    match param_of(field) {
        Some(param) => ApiError::bad_param(param, message),
        None => ApiError::bad_request(message),
    }
}

/// A secret from the body: the value itself, never an environment reference.
fn literal_secret(field: &str, value: &str) -> Result<Secret, ApiError> {
    if value.contains("${") {
        return Err(invalid(
            field,
            "contains `${`: the admin API stores values as given and never reads the \
             server's environment; send the value itself",
        ));
    }
    Ok(Secret::new(value))
}

fn text_field(field: &str, value: &str, max_chars: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max_chars || value.chars().any(char::is_control)
    {
        return Err(invalid(
            field,
            format!("must be 1 to {max_chars} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

fn positive_u32(field: &str, value: i64) -> Result<u32, ApiError> {
    u32::try_from(value)
        .ok()
        .filter(|value| *value >= 1)
        .ok_or_else(|| invalid(field, "must be a positive integer"))
}

/// A checked body as provider settings, plus its keys ready to store.
struct Checked {
    settings: ProviderSettings,
    /// (id, secret, weight, priority)
    keys: Vec<(String, String, i32, i32)>,
}

/// Checks a body the way settings are checked, then some: kinds, strategies
/// and retry fields name the field, secrets are literal, keys are unique.
fn check(body: ProviderBody, cipher: &SecretCipher) -> Result<Checked, ApiError> {
    let name = body.name.trim().to_owned();
    if !valid_provider_name(&name) || name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!(
                "must be 1 to {MAX_NAME_CHARS} letters, digits, '-', '_' or '.' (it prefixes \
                 model names: `{{name}}/model`)"
            ),
        ));
    }
    let kind = ProviderKind::parse(body.kind.trim()).ok_or_else(|| {
        invalid(
            "kind",
            format!("{:?} is not one of {}", body.kind, ProviderKind::names()),
        )
    })?;
    let base_url = body.base_url.trim().to_owned();
    if base_url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("base_url", "must be a URL without spaces"));
    }
    let api_version = body
        .api_version
        .as_deref()
        .map(|version| text_field("api_version", version, 100))
        .transpose()?;
    let mut models = Vec::new();
    for (index, model) in body.models.iter().enumerate() {
        let model = text_field(&format!("models[{index}]"), model, 200)?;
        if !models.contains(&model) {
            models.push(model);
        }
    }
    let mut headers = BTreeMap::new();
    for (header, value) in &body.headers {
        headers.insert(
            header.clone(),
            literal_secret(&format!("headers.{header}"), value)?,
        );
    }
    let strategy = match body.strategy.as_deref() {
        None => KeyStrategy::default(),
        Some(strategy) => serde_json::from_value(Value::String(strategy.trim().to_owned()))
            .map_err(|_| {
                invalid(
                    "strategy",
                    format!("{strategy:?} is not one of {STRATEGIES}"),
                )
            })?,
    };
    let retry: RetrySettings = match body.retry {
        None | Some(Value::Null) => RetrySettings::default(),
        Some(retry) => serde_json::from_value(retry).map_err(|error| invalid("retry", error))?,
    };
    let weight = positive_u32("weight", body.weight)?;
    let max_in_flight_per_key = u32::try_from(body.max_in_flight_per_key)
        .map_err(|_| invalid("max_in_flight_per_key", "must be 0 (no limit) or more"))?;
    let mut keys = Vec::new();
    let mut fingerprints = HashSet::new();
    for (index, key) in body.keys.iter().enumerate() {
        let field = format!("keys[{index}]");
        let secret = key.key.trim();
        if secret.is_empty() || secret.len() > 4096 || secret.chars().any(char::is_control) {
            return Err(invalid(
                &format!("{field}.key"),
                "must be 1 to 4096 printable characters",
            ));
        }
        literal_secret(&format!("{field}.key"), secret)?;
        // Keyed, because a default id shows part of it (crate::crypto).
        let secret_fingerprint = cipher.fingerprint(secret);
        if !fingerprints.insert(secret_fingerprint.clone()) {
            return Err(invalid(&format!("{field}.key"), "is given twice"));
        }
        let id = match key.id.as_deref().map(str::trim) {
            Some(id) if !valid_key_id(id) => {
                return Err(invalid(
                    &format!("{field}.id"),
                    "must be 1 to 100 letters, digits, '-', '_', '.' or ':'",
                ));
            }
            Some(id) => id.to_owned(),
            None => format!(
                "key-{}",
                fingerprint_digits(&secret_fingerprint)
                    .get(..8)
                    .unwrap_or("0")
            ),
        };
        let weight = positive_u32(&format!("{field}.weight"), key.weight)?;
        keys.push((
            id,
            secret.to_owned(),
            i32::try_from(weight).unwrap_or(i32::MAX),
            key.priority,
        ));
    }
    let settings = ProviderSettings {
        name,
        kind,
        base_url,
        api_version,
        keys: keys
            .iter()
            .map(|(id, secret, weight, priority)| KeySettings::Detailed {
                key: Secret::new(secret.as_str()),
                id: Some(id.clone()),
                weight: u32::try_from(*weight).unwrap_or(1),
                priority: *priority,
            })
            .collect(),
        models,
        headers,
        strategy,
        retry,
        weight,
        max_in_flight_per_key,
        enabled: body.enabled,
    };
    settings
        .validate()
        .map_err(|error| invalid(&error.field, error.message))?;
    Ok(Checked { settings, keys })
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// `retry` as a body takes it (durations in milliseconds).
fn retry_json(retry: &RetrySettings) -> Value {
    let mut value = json!({
        "max_attempts": retry.max_attempts,
        "backoff_base": millis(retry.backoff_base),
        "backoff_max": millis(retry.backoff_max),
        "rate_limit_cooldown": millis(retry.rate_limit_cooldown),
        "error_cooldown": millis(retry.error_cooldown),
        "failure_threshold": retry.failure_threshold,
    });
    if let (Some(object), Some(timeout)) = (value.as_object_mut(), retry.attempt_timeout) {
        object.insert("attempt_timeout".to_owned(), Value::String(millis(timeout)));
    }
    value
}

/// The stored provider as a body (secrets in the clear): what `PATCH`
/// merges into. Never sent to a client.
fn document(settings: &ProviderSettings) -> Value {
    let headers: Map<String, Value> = settings
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.expose().to_owned())))
        .collect();
    json!({
        "name": settings.name,
        "kind": settings.kind.as_str(),
        "base_url": settings.base_url,
        "api_version": settings.api_version,
        "models": settings.models,
        "headers": headers,
        "strategy": config_store::strategy_name(settings.strategy),
        "weight": settings.weight,
        "max_in_flight_per_key": settings.max_in_flight_per_key,
        "retry": retry_json(&settings.retry),
        "enabled": settings.enabled,
    })
}

/// RFC 7396: objects merge recursively, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                merge_patch(target.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

/// Reads a stored provider back as settings; a row that cannot be read
/// (wrong `security.secret_key`, a kind this build does not know) is an
/// internal error, logged.
fn stored(state: &AdminState, row: &Provider) -> Result<ProviderSettings, ApiError> {
    config_store::stored_settings(row, &state.cipher).map_err(|error| {
        slog::error!(state.log, "admin.provider_unreadable"; "provider" => &row.name,
            "error" => format!("{error:#}"));
        ApiError::Internal
    })
}

/// The public view of a provider: secrets masked, keys with live health.
async fn provider_json(state: &AdminState, row: &Provider) -> Result<Value, ApiError> {
    let settings = stored(state, row)?;
    let keys = state.db.list_provider_keys(row.id).await?;
    let health = live_health(state, &row.name);
    let running = health.is_some();
    let live: HashMap<String, KeyHealthView> = health.unwrap_or_default();
    let headers: Map<String, Value> = settings
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(mask(value.expose()))))
        .collect();
    let declared = state
        .settings
        .providers
        .iter()
        .any(|provider| provider.name == row.name);
    Ok(json!({
        "name": row.name,
        "kind": row.kind,
        "base_url": settings.base_url,
        "api_version": settings.api_version,
        "models": settings.models,
        "headers": headers,
        "strategy": config_store::strategy_name(settings.strategy),
        "weight": settings.weight,
        "max_in_flight_per_key": settings.max_in_flight_per_key,
        "retry": retry_json(&settings.retry),
        "enabled": row.enabled,
        "running": running,
        "source": if declared { "settings" } else { "api" },
        "keys": keys
            .iter()
            .map(|key| key_json(key, live.get(&key.key_id)))
            .collect::<Vec<_>>(),
        "created_at": row.created_at / 1000,
        "updated_at": row.updated_at / 1000,
    }))
}

/// Brings the router in line with the stored provider `name`: routed with
/// its current settings and keys when it exists and is enabled, taken out
/// of routing otherwise (start-up skips disabled providers the same way).
async fn apply(state: &AdminState, name: &str) -> Result<(), ApiError> {
    let row = state.db.get_provider_by_name(name).await?;
    let unavailable = || ApiError::Unavailable {
        message: "The router did not take the change; it is stored and applies at the next \
                  start"
            .to_owned(),
        retry_after: Some(Duration::from_secs(1)),
    };
    match row {
        Some(row) if row.enabled => {
            let loaded =
                config_store::load_provider_by_name(&state.db, name, &state.cipher, &state.log)
                    .await
                    .map_err(|error| {
                        slog::error!(state.log, "admin.provider_load_failed"; "provider" => name,
                        "error" => format!("{error:#}"));
                        ApiError::Internal
                    })?
                    .ok_or_else(|| ApiError::NotFound(format!("No provider named `{name}`")))?;
            let outcome = state
                .router
                .actor()
                .send(UpsertProvider {
                    spec: loaded.spec,
                    keys: loaded.keys,
                    models: loaded.models,
                    weight: loaded.weight,
                })
                .await
                .map_err(|_| unavailable())?;
            slog::info!(state.log, "admin.provider_applied"; "provider" => name,
                "outcome" => ?outcome);
        }
        _ => {
            let removed = state
                .router
                .actor()
                .send(RemoveProvider(name.to_owned()))
                .await
                .map_err(|_| unavailable())?;
            slog::info!(state.log, "admin.provider_unrouted"; "provider" => name,
                "was_routed" => removed);
        }
    }
    Ok(())
}

fn encrypt(state: &AdminState, name: &str, key_id: &str, secret: &str) -> Result<String, ApiError> {
    let row = SecretRow::ProviderKey {
        provider: name,
        key_id,
    };
    state.cipher.encrypt_for(row, secret).map_err(|error| {
        slog::error!(state.log, "admin.key_encrypt_failed"; "provider" => name, "error" => %error);
        ApiError::Internal
    })
}

/// `POST /admin/providers`
pub async fn create(
    admin: AdminAuth,
    state: Data<AdminState>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: ProviderBody = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let Checked { settings, keys } = check(body, &state.cipher)?;
    let name = settings.name.clone();
    if state.db.get_provider_by_name(&name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "A provider named `{name}` already exists; change it with PATCH /admin/providers/{name}"
        )));
    }
    let record =
        config_store::provider_record(&settings, None, &state.cipher).map_err(|error| {
            slog::error!(state.log, "admin.provider_encrypt_failed"; "provider" => &name,
            "error" => format!("{error:#}"));
            ApiError::Internal
        })?;
    let mut rows = Vec::new();
    for (key_id, secret, weight, priority) in &keys {
        rows.push(NewProviderKey {
            provider_id: 0,
            key_id: key_id.clone(),
            secret_ciphertext: encrypt(&state, &name, key_id, secret)?,
            secret_hint: mask(secret),
            secret_fingerprint: state.cipher.fingerprint(secret),
            weight: *weight,
            priority: *priority,
            enabled: true,
        });
    }
    let row = match state.db.create_provider(&record, &rows).await {
        Ok(row) => row,
        // Created by a concurrent request since the check above.
        Err(crate::db::DbError::Conflict(_)) => {
            return Err(ApiError::Conflict(format!(
                "A provider named `{name}` already exists"
            )));
        }
        Err(error) => return Err(error.into()),
    };
    slog::info!(state.log, "admin.provider_created"; "provider" => &name,
        "kind" => settings.kind.as_str(), "keys" => rows.len(), "by" => &admin.actor);
    apply(&state, &name).await?;
    let after = provider_json(&state, &row).await?;
    super::oplog::record(
        &state,
        &admin,
        "provider.create",
        &format!("provider:{name}"),
        None,
        Some(after.clone()),
    )
    .await;
    Ok(HttpResponse::Created().json(after))
}

/// `GET /admin/providers/{name}`
pub async fn show(
    _: AdminAuth,
    state: Data<AdminState>,
    name: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = provider_row(&state, &name).await?;
    Ok(HttpResponse::Ok().json(provider_json(&state, &row).await?))
}

/// `PATCH /admin/providers/{name}`: a merge patch of any field but the name
/// and the keys.
pub async fn update(
    admin: AdminAuth,
    state: Data<AdminState>,
    name: Path<String>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let patch: Value = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let Some(fields) = patch.as_object() else {
        return Err(ApiError::bad_request(
            "The body must be a JSON object of the fields to change",
        ));
    };
    let row = provider_row(&state, &name).await?;
    if fields
        .get("name")
        .is_some_and(|given| given.as_str() != Some(row.name.as_str()))
    {
        return Err(ApiError::bad_param(
            "name",
            "A provider cannot be renamed (clients pin it as `name/model`); create another \
             and delete this one",
        ));
    }
    if fields.contains_key("keys") {
        return Err(ApiError::bad_param(
            "keys",
            format!(
                "Keys are changed through /admin/providers/{}/keys (add, enable, disable, \
                 delete)",
                row.name
            ),
        ));
    }
    let changed = fields.keys().cloned().collect::<Vec<_>>().join(",");
    let current = stored(&state, &row)?;
    let mut merged = document(&current);
    merge_patch(&mut merged, patch);
    let body: ProviderBody = serde_json::from_value(merged)
        .map_err(|error| ApiError::bad_request(format!("Invalid change: {error}")))?;
    let Checked { settings, .. } = check(body, &state.cipher)?;
    let position = config_store::declared_position(&row);
    let record =
        config_store::provider_record(&settings, position, &state.cipher).map_err(|error| {
            slog::error!(state.log, "admin.provider_encrypt_failed"; "provider" => &row.name,
            "error" => format!("{error:#}"));
            ApiError::Internal
        })?;
    let updated = state
        .db
        .update_provider(row.id, &record)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No provider named `{}`", row.name)))?;
    if current.kind != settings.kind || current.base_url != settings.base_url {
        // Its own model list came from the old API.
        state.models.forget(&row.name);
    }
    slog::info!(state.log, "admin.provider_updated"; "provider" => &row.name,
        "fields" => changed, "by" => &admin.actor);
    apply(&state, &row.name).await?;
    let before = provider_json(&state, &row).await?;
    let after = provider_json(&state, &updated).await?;
    super::oplog::record(
        &state,
        &admin,
        "provider.update",
        &format!("provider:{}", row.name),
        Some(before),
        Some(after.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(after))
}

/// `DELETE /admin/providers/{name}`: the provider and its keys.
pub async fn delete(
    admin: AdminAuth,
    state: Data<AdminState>,
    name: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = provider_row(&state, &name).await?;
    let before = provider_json(&state, &row).await?;
    if !state.db.delete_provider(row.id).await? {
        return Err(ApiError::NotFound(format!(
            "No provider named `{}`",
            row.name
        )));
    }
    state.models.forget(&row.name);
    slog::info!(state.log, "admin.provider_deleted"; "provider" => &row.name,
        "by" => &admin.actor);
    apply(&state, &row.name).await?;
    super::oplog::record(
        &state,
        &admin,
        "provider.delete",
        &format!("provider:{}", row.name),
        Some(before),
        None,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Result<ProviderBody, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn check_plain(body: ProviderBody) -> Result<Checked, ApiError> {
        check(body, &SecretCipher::new("test"))
    }

    fn param(error: &ApiError) -> Option<&'static str> {
        match error {
            ApiError::BadRequest { param, .. } => *param,
            _ => None,
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": 1, "h": {"x": "1", "y": "2"}, "m": [1, 2]});
        merge_patch(
            &mut target,
            json!({"a": null, "h": {"x": null, "z": "3"}, "m": [3]}),
        );
        assert_eq!(target, json!({"h": {"y": "2", "z": "3"}, "m": [3]}));
    }

    #[test]
    fn bodies_are_checked_field_by_field() -> anyhow::Result<()> {
        let base = json!({"name": "p", "kind": "openai", "base_url": "https://x.example/v1"});
        let checked = check_plain(body(base.clone())?)?;
        assert_eq!(checked.settings.weight, 1);
        assert!(checked.settings.enabled);
        let cases = [
            (json!({"name": "a b"}), "name"),
            (json!({"kind": "openai2"}), "kind"),
            (json!({"base_url": "ftp://x"}), "base_url"),
            (json!({"strategy": "fastest"}), "strategy"),
            (json!({"retry": {"max_attempts": -1}}), "retry"),
            (json!({"retry": {"backoff_base": "soon"}}), "retry"),
            (json!({"weight": 0}), "weight"),
            (json!({"headers": {"X-Key": "${HOME}"}}), "headers"),
            (json!({"headers": {"bad header": "v"}}), "headers"),
            (json!({"models": [" "]}), "models"),
            (json!({"keys": [{"key": "${OPENAI_API_KEY}"}]}), "keys"),
            (json!({"keys": [{"key": "a"}, {"key": "a"}]}), "keys"),
            (
                json!({"keys": [{"key": "a", "id": "k"}, {"key": "b", "id": "k"}]}),
                "keys",
            ),
            (json!({"keys": [{"key": "a", "id": "no spaces"}]}), "keys"),
        ];
        for (change, expected) in cases {
            let mut value = base.clone();
            merge_patch(&mut value, change.clone());
            let outcome = check_plain(body(value)?);
            let error = outcome
                .err()
                .ok_or_else(|| anyhow::anyhow!("{change} accepted"))?;
            assert_eq!(param(&error), Some(expected), "{change}: {error}");
        }
        Ok(())
    }

    #[test]
    fn the_document_reads_back_as_the_same_settings() -> anyhow::Result<()> {
        let checked = check_plain(body(json!({
            "name": "p", "kind": "anthropic", "base_url": "https://x.example/v1",
            "api_version": "2023-06-01", "models": ["m1", "m2"],
            "headers": {"X-Title": "secret-title-value"}, "strategy": "least-in-flight",
            "weight": 3, "max_in_flight_per_key": 4,
            "retry": {"max_attempts": 2, "attempt_timeout": "1500ms"}, "enabled": false,
        }))?)?;
        let again = check_plain(body(document(&checked.settings))?)?;
        assert_eq!(document(&again.settings), document(&checked.settings));
        assert_eq!(
            again.settings.retry.policy(),
            checked.settings.retry.policy()
        );
        assert_eq!(
            again.settings.retry.attempt_timeout,
            Some(Duration::from_millis(1500))
        );
        Ok(())
    }
}
