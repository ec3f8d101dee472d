//! The HTTP layer: the data plane's state, the request-context middleware
//! and the route table (the admin handlers are `crate::admin`). Handlers are
//! thin: validate, authenticate, ask the router for a lease, do the upstream
//! I/O, report outcome and usage.

pub mod auth;
pub mod body;
pub mod chat;
pub mod completions;
pub mod context;
pub mod health;
pub mod limits;
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

use crate::config::Settings;
use crate::db::Db;
use crate::error::ApiError;
use crate::metering::PriceTable;
use crate::tokens::TokenCache;
use actix_web::{HttpResponse, web};
use slog::Logger;
use std::sync::Arc;
use switchyard_actors::{Router, UsageQueue};

/// Everything the data plane's handlers share, built once at start (not per
/// worker). The admin plane has its own (`crate::admin::AdminState`).
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    /// Routes requests on the calling worker (no message per attempt); its
    /// actor takes changes.
    pub router: Router,
    /// Where finished requests' usage records go (see `UsageQueue`).
    pub usage: UsageQueue,
    pub tokens: TokenCache,
    pub prices: PriceTable,
    pub log: Logger,
    /// `server.max_concurrent_requests`, shared by every worker.
    pub concurrency: limits::ConcurrencyLimit,
    /// Wall-clock time for expiries, limits and quotas.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Bytes held by request bodies being read (`server.max_body_bytes_in_flight`).
    pub bodies: body::BodyBudget,
    /// Failed gateway-token authentications per client address.
    pub throttle: throttle::AuthThrottle,
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
