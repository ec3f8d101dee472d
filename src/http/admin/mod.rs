//! `/admin/*`: management routes, all behind [`super::auth::AdminAuth`].

pub mod admin_keys;
pub mod billing;
pub mod fields;
pub mod logs;
pub mod metrics;
pub mod models;
pub mod oplog;
pub mod prices;
pub mod provider_edit;
pub mod providers;
pub mod range;
pub mod sessions;
pub mod tokens;
pub mod users;

use actix_web::web;

/// Admin bodies are small; this bounds them independently of the client API.
pub const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tokens", web::post().to(tokens::create))
        .route("/tokens", web::get().to(tokens::list))
        .route("/tokens/{id}", web::get().to(tokens::get))
        .route("/tokens/{id}", web::patch().to(tokens::update))
        .route("/tokens/{id}", web::delete().to(tokens::delete))
        .route("/tokens/{id}/disable", web::post().to(tokens::disable))
        .route("/tokens/{id}/enable", web::post().to(tokens::enable))
        .route("/tokens/{id}/rotate", web::post().to(tokens::rotate))
        .route("/users", web::post().to(users::create))
        .route("/users", web::get().to(users::list))
        .route("/users/{id}", web::get().to(users::get))
        .route("/users/{id}", web::patch().to(users::update))
        .route("/users/{id}", web::delete().to(users::delete))
        .route("/users/{id}/topup", web::post().to(users::topup))
        .route("/billing", web::get().to(billing::list))
        .route("/model-prices", web::get().to(prices::list))
        .route("/model-prices/{model:.*}", web::put().to(prices::put))
        .route("/model-prices/{model:.*}", web::delete().to(prices::delete))
        .route("/unpriced-models", web::get().to(prices::unpriced))
        .route("/request-logs", web::get().to(logs::list))
        .route("/operation-logs", web::get().to(oplog::list))
        .route("/admin-keys", web::get().to(admin_keys::list))
        .route("/admin-keys", web::post().to(admin_keys::create))
        .route("/admin-keys/{id}", web::delete().to(admin_keys::delete))
        .route(
            "/admin-keys/{id}/disable",
            web::post().to(admin_keys::disable),
        )
        .route(
            "/admin-keys/{id}/enable",
            web::post().to(admin_keys::enable),
        )
        .route("/sessions", web::get().to(sessions::list))
        .route("/sessions/{id}", web::delete().to(sessions::revoke))
        .route("/metrics/summary", web::get().to(metrics::summary))
        .route(
            "/metrics/models-distribution",
            web::get().to(metrics::models_distribution),
        )
        .route("/metrics/timeseries", web::get().to(metrics::timeseries))
        .route("/models", web::get().to(models::list))
        .route(
            "/models/{provider}/refresh",
            web::post().to(models::refresh),
        )
        .route("/redirects", web::get().to(models::list_redirects))
        .route("/redirects/{from:.*}", web::put().to(models::put_redirect))
        .route(
            "/redirects/{from:.*}",
            web::delete().to(models::delete_redirect),
        )
        .route("/providers", web::get().to(providers::list))
        .route("/providers", web::post().to(provider_edit::create))
        .route("/providers/{name}", web::get().to(provider_edit::show))
        .route("/providers/{name}", web::patch().to(provider_edit::update))
        .route("/providers/{name}", web::delete().to(provider_edit::delete))
        .route("/providers/{name}/health", web::get().to(providers::health))
        .route("/providers/{name}/keys", web::post().to(providers::add_key))
        .route(
            "/providers/{name}/keys/{id}/enable",
            web::post().to(providers::enable_key),
        )
        .route(
            "/providers/{name}/keys/{id}/disable",
            web::post().to(providers::disable_key),
        )
        .route(
            "/providers/{name}/keys/{id}",
            web::delete().to(providers::delete_key),
        );
}
