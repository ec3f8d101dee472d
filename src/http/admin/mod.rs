//! `/admin/*`: management routes, all behind [`super::auth::AdminAuth`].

pub mod admin_keys;
pub mod logs;
pub mod models;
pub mod oplog;
pub mod providers;
pub mod sessions;
pub mod tokens;

use actix_web::web;

/// Admin bodies are small; this bounds them independently of the client API.
pub const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tokens", web::post().to(tokens::create))
        .route("/tokens", web::get().to(tokens::list))
        .route("/tokens/{id}", web::get().to(tokens::get))
        .route("/tokens/{id}", web::delete().to(tokens::delete))
        .route("/tokens/{id}/disable", web::post().to(tokens::disable))
        .route("/tokens/{id}/enable", web::post().to(tokens::enable))
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
