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
pub mod openapi;
pub mod prometheus;
pub mod proxy;
pub mod proxy_usage;
pub mod relay;
pub mod routes;
pub mod self_service;
pub mod shutdown;
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
use switchyard_actors::{Router, RouterActor, UsageQueue};

/// Everything handlers share, built once at start (not per worker).
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    /// The router actor: changes, admin views, supervision.
    pub router: Addr<RouterActor>,
    /// Routes requests on the calling worker (no message per attempt).
    pub routing: Router,
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
    /// Bytes held by request bodies being read (`server.max_body_bytes_in_flight`).
    pub bodies: body::BodyBudget,
    /// Failed gateway-token authentications per client address.
    pub throttle: throttle::AuthThrottle,
    /// Failed admin authentications per client address, counted apart so
    /// client traffic never bears on admin guesses or the reverse.
    pub admin_throttle: throttle::AuthThrottle,
    /// Token limits: admission before the call, settlement after.
    pub enforcer: Arc<crate::enforce::Enforcer>,
    /// Fired when a graceful stop's `server.shutdown_timeout` runs out: open
    /// streams end with an error event (`shutdown::StreamCutoff`).
    pub stream_cutoff: shutdown::StreamCutoff,
}

/// The route table (declared in [`routes`], documented at `/openapi.json`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::register(cfg);
}

/// Unknown routes answer in the API's error shape too.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        "Unknown route; see the README for the API".to_owned(),
    ))
}
