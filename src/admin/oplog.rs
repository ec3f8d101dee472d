//! The operation log: [`record`] is called by every admin change, after the
//! change succeeded, with masked views of the resource before and after;
//! `GET /admin/operation-logs` reads it back.
//!
//! The views handlers pass are already the public ones (token prefix, key
//! hint, fingerprint); [`mask_secrets`] masks any field that is named like a
//! secret on top, so a view that grows a secret field later still cannot
//! write it here. A failed write is logged (`admin.operation_log_failed`)
//! and does not fail the change, which has already happened.

use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::{NewOperationLog, OperationLog, OperationLogFilter};
use crate::error::ApiError;
use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;
use serde_json::{Value, json};

/// Field names whose values never reach the log.
const SECRET_FIELDS: [&str; 12] = [
    "key",
    "secret",
    "token",
    "token_hash",
    "secret_ciphertext",
    "secret_fingerprint",
    "password",
    "master_key",
    "api_key",
    "signature",
    "private_key",
    "headers",
];

/// What a masked value is replaced with.
pub const MASKED: &str = "***";

/// `value` with every secret-named field's value replaced by [`MASKED`],
/// at any depth.
pub fn mask_secrets(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .map(|(name, value)| {
                    if SECRET_FIELDS.contains(&name.to_ascii_lowercase().as_str())
                        && !value.is_null()
                    {
                        (name, Value::String(MASKED.to_owned()))
                    } else {
                        (name, mask_secrets(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_secrets).collect()),
        other => other,
    }
}

/// Appends one entry: `admin` did `action` (`resource.verb`) to `target`.
pub async fn record(
    state: &AdminState,
    admin: &AdminAuth,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) {
    let entry = NewOperationLog {
        actor: admin.actor.clone(),
        session_id: admin.session.as_ref().map(|session| session.session_id),
        action: action.to_owned(),
        target: target.to_owned(),
        before_json: before.map(|value| mask_secrets(value).to_string()),
        after_json: after.map(|value| mask_secrets(value).to_string()),
        request_id: admin.request_id.clone(),
    };
    if let Err(error) = state.db.insert_operation_log(&entry).await {
        slog::error!(state.log, "admin.operation_log_failed"; "action" => action,
            "target" => target, "error" => %error);
    }
}

/// `GET /admin/operation-logs` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationLogQuery {
    #[serde(default = "default_limit")]
    pub limit: i64,
    #[serde(default)]
    pub offset: i64,
    /// `master-key` or a key fingerprint.
    #[serde(default)]
    pub actor: Option<String>,
    /// `resource.verb`, e.g. `token.create`.
    #[serde(default)]
    pub action: Option<String>,
}

fn default_limit() -> i64 {
    100
}

fn parse_json(text: Option<&str>) -> Value {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

/// The API view of an entry.
pub fn entry_json(row: &OperationLog) -> Value {
    json!({
        "id": row.id,
        "created_at": row.created_at / 1000,
        "created_at_ms": row.created_at,
        "actor": row.actor,
        "session_id": row.session_id,
        "action": row.action,
        "target": row.target,
        "before": parse_json(row.before_json.as_deref()),
        "after": parse_json(row.after_json.as_deref()),
        "request_id": row.request_id,
    })
}

/// `GET /admin/operation-logs?limit&offset&actor&action`, newest first.
pub async fn list(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<OperationLogQuery>,
) -> Result<HttpResponse, ApiError> {
    if !(1..=1000).contains(&query.limit) || query.offset < 0 {
        return Err(ApiError::bad_request(
            "`limit` must be 1..=1000 and `offset` non-negative",
        ));
    }
    let filter = OperationLogFilter {
        actor: query.actor.clone().filter(|actor| !actor.is_empty()),
        action: query.action.clone().filter(|action| !action.is_empty()),
    };
    let (rows, total) = state
        .db
        .list_operation_logs(&filter, query.limit, query.offset)
        .await?;
    let data: Vec<Value> = rows.iter().map(entry_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data, "total": total })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_named_fields_are_masked_at_any_depth() {
        let masked = mask_secrets(json!({
            "name": "ci",
            "token": "sy-secret",
            "nested": [{ "Key": "sk-live", "secret_hint": "sk-l…live", "weight": 1 }],
            "headers": { "x-api-key": "v" },
            "secret": null,
        }));
        assert_eq!(
            masked,
            json!({
                "name": "ci",
                "token": "***",
                "nested": [{ "Key": "***", "secret_hint": "sk-l…live", "weight": 1 }],
                "headers": "***",
                "secret": null,
            })
        );
    }
}
