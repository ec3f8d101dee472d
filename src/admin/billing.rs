//! `GET /admin/billing`: the billing ledger (request charges and top-ups),
//! newest first, filtered by user, token and kind.

use super::fields;
use super::users::billing_json;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::billing::{BillingFilter, KIND_REQUEST, KIND_TOPUP};
use crate::error::ApiError;
use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListBilling {
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub token_id: Option<i64>,
    /// `request` or `topup`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
}

/// `GET /admin/billing?user_id&token_id&kind&limit&offset`.
pub async fn list(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<ListBilling>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let (limit, offset) = fields::paging(query.limit, query.offset)?;
    if let Some(kind) = &query.kind
        && kind != KIND_REQUEST
        && kind != KIND_TOPUP
    {
        return Err(ApiError::bad_param(
            "kind",
            format!("`kind` must be `{KIND_REQUEST}` or `{KIND_TOPUP}`"),
        ));
    }
    let filter = BillingFilter {
        user_id: query.user_id,
        token_id: query.token_id,
        kind: query.kind,
    };
    let (rows, total) = state.db.list_billing(&filter, limit, offset).await?;
    let data: Vec<Value> = rows.iter().map(billing_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data, "total": total })))
}
