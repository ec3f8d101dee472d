//! Read-only request logs, newest first.

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::AdminAuth;
use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct Paging {
    #[serde(default = "default_limit")]
    pub limit: i64,
    #[serde(default)]
    pub offset: i64,
}

fn default_limit() -> i64 {
    100
}

pub async fn list(
    _: AdminAuth,
    state: Data<AppState>,
    paging: Query<Paging>,
) -> Result<HttpResponse, ApiError> {
    if !(1..=1000).contains(&paging.limit) || paging.offset < 0 {
        return Err(ApiError::bad_request(
            "`limit` must be 1..=1000 and `offset` non-negative",
        ));
    }
    let rows = state
        .db
        .list_request_logs(paging.limit, paging.offset)
        .await?;
    let total = state.db.count_request_logs().await?;
    Ok(HttpResponse::Ok().json(json!({ "data": rows, "total": total })))
}
