//! The HTTP layer: state shared by handlers, the request-context middleware
//! and the route table. Handlers are thin: validate, authenticate, ask the
//! router for a lease, do the upstream I/O, report outcome and usage.

pub mod admin;
pub mod auth;
pub mod body;
pub mod chat;
pub mod completions;
pub mod context;
pub mod health;
pub mod limits;
pub mod login;
pub mod meter;
pub mod models;
pub mod prometheus;
pub mod proxy;
pub mod relay;
pub mod self_service;
pub mod throttle;
pub mod upstream;

use crate::config::{Secret, Settings};
use crate::crypto::SecretCipher;
use crate::db::Db;
use crate::error::ApiError;
use crate::metering::PriceTable;
use crate::tokens::TokenCache;
use actix::Addr;
use actix_web::{HttpResponse, web};
use slog::Logger;
use std::sync::Arc;
use switchyard_actors::{RouterActor, UsageQueue};

/// Everything handlers share, built once at start (not per worker).
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub router: Addr<RouterActor>,
    /// Where finished requests' usage records go (see `UsageQueue`).
    pub usage: UsageQueue,
    pub tokens: TokenCache,
    pub prices: PriceTable,
    /// `None` when master-key authentication is turned off.
    pub master_key: Option<Secret>,
    /// Admin login and session lookup (`crate::auth::session`).
    pub sessions: Addr<crate::auth::session::SessionActor>,
    pub log: Logger,
    /// Encrypts keys added through the admin API, decrypts them on reload.
    pub cipher: Arc<SecretCipher>,
    /// `server.max_concurrent_requests`, shared by every worker.
    pub concurrency: limits::ConcurrencyLimit,
    /// Providers' own model lists (`crate::model_cache`).
    pub models: crate::model_cache::ModelCache,
    /// Wall-clock time for expiries, limits and quotas.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Failed authentications per client address.
    pub throttle: throttle::AuthThrottle,
    /// Token limits: admission before the call, settlement after.
    pub enforcer: Arc<crate::enforce::Enforcer>,
}

/// The route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(health::root))
        .route("/", web::head().to(health::root))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(prometheus::metrics))
        .service(
            web::scope("/v1")
                .route("/chat/completions", web::post().to(chat::chat_completions))
                .route("/completions", web::post().to(completions::completions))
                .route("/embeddings", web::post().to(completions::embeddings))
                .route("/messages", web::post().to(chat::messages))
                .route("/messages/count_tokens", web::post().to(chat::count_tokens))
                .route("/models", web::get().to(models::list_models))
                .route("/token/balance", web::get().to(self_service::balance))
                .route("/token/usage", web::get().to(self_service::usage)),
        )
        .route("/proxy/{provider}/{tail:.*}", web::route().to(proxy::proxy))
        .service(
            web::scope("/auth")
                .route("/challenge", web::post().to(login::challenge))
                .route("/verify", web::post().to(login::verify)),
        )
        .service(web::scope("/admin").configure(admin::routes));
}

/// Unknown routes answer in the API's error shape too.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        "Unknown route; see the README for the API".to_owned(),
    ))
}
