//! Liveness and readiness.

use crate::gateway::AppState;
use actix_web::HttpResponse;
use actix_web::web::Data;
use serde_json::json;

/// The process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /` and `HEAD /`: what answers here, without credentials. Claude
/// Code probes its `ANTHROPIC_BASE_URL` with `HEAD /` before anything else.
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "switchyard",
        "version": env!("CARGO_PKG_VERSION"),
        "api": ["/v1/chat/completions", "/v1/messages", "/v1/models"],
    }))
}

/// Ready to serve traffic: the database answers and at least one key of some
/// provider could take a request now (healthy, or half-open and idle). A load balancer
/// should send no traffic to an instance that answers 503 here.
pub async fn readyz(state: Data<AppState>) -> HttpResponse {
    let database = match state.db.ping().await {
        Ok(()) => true,
        Err(error) => {
            slog::warn!(state.log, "readyz.database_unreachable"; "error" => %error);
            false
        }
    };
    let usable_keys = state.router.usable_keys();
    let body = json!({
        "status": if database && usable_keys > 0 { "ready" } else { "not_ready" },
        "database": if database { "ok" } else { "unreachable" },
        "usable_keys": usable_keys,
    });
    if database && usable_keys > 0 {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
