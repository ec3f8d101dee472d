//! Liveness and readiness.

use crate::gateway::AppState;
use actix_web::HttpResponse;
use actix_web::web::Data;
use serde_json::json;
use switchyard_actors::KeyHealthView;

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
/// should send no traffic to an instance that answers 503 here. During the
/// drain period after SIGTERM (`server.drain_period`) the first problem is
/// `"draining"`: the instance still serves, but is about to stop.
pub async fn readyz(state: Data<AppState>) -> HttpResponse {
    let mut problems: Vec<String> = Vec::new();
    if state.draining.is_draining() {
        problems.push("draining".to_owned());
    }
    let database = match state.db.ping().await {
        Ok(()) => true,
        Err(error) => {
            slog::warn!(state.log, "readyz.database_unreachable"; "error" => %error);
            problems.push("the database does not answer".to_owned());
            false
        }
    };
    let usable_keys = state.router.usable_keys();
    if usable_keys == 0 {
        problems.push(no_usable_key(&state.router.health_all()));
    }
    let ready = problems.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database { "ok" } else { "unreachable" },
        "usable_keys": usable_keys,
        "problems": problems,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Why no key can take a request: how many providers and keys there are,
/// and the state each key is in ("2 disabled, 1 cooling_down").
fn no_usable_key(providers: &[(String, Vec<KeyHealthView>)]) -> String {
    let keys: Vec<&KeyHealthView> = providers.iter().flat_map(|(_, keys)| keys).collect();
    if providers.is_empty() {
        return "no usable upstream key: no provider is configured".to_owned();
    }
    if keys.is_empty() {
        return format!(
            "no usable upstream key: {} provider(s), none with a key configured",
            providers.len()
        );
    }
    let mut states: Vec<(&str, usize)> = Vec::new();
    for key in &keys {
        let state = if key.enabled { key.state } else { "disabled" };
        match states.iter_mut().find(|(name, _)| *name == state) {
            Some((_, count)) => *count += 1,
            None => states.push((state, 1)),
        }
    }
    let states: Vec<String> = states
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    format!(
        "no usable upstream key: {} provider(s), {} key(s): {}",
        providers.len(),
        keys.len(),
        states.join(", ")
    )
}
