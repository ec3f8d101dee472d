//! The data plane: one client call, from the front door to its usage row.
//!
//! A call passes through small stages, each in its own module:
//!
//! 1. **accept** ([`accept`]): the gateway token ([`auth`]), a concurrency
//!    slot ([`slots`]) and the body (`crate::http::body`, bounded);
//! 2. **admit** ([`meter::Meter::admit`]): the token's limits and budgets
//!    (`crate::enforce`);
//! 3. **route** and 4. **attempt** ([`failover`]): a lease from the router
//!    (`switchyard_actors::Router`, on this worker), the upstream call, and
//!    the failover loop over keys and providers;
//! 5. **relay** ([`relay`]): a JSON answer as received, or a stream event by
//!    event;
//! 6. **settle** ([`meter`]): the usage record, exactly one per call, and
//!    the limits' hold replaced by the real spend.
//!
//! The model front doors ([`doors`]: chat and messages, completions and
//! embeddings) are thin adapters: each implements [`pipeline::FrontDoor`]
//! (parse its format, pick its stream relay and error shape) and
//! [`pipeline::serve`] runs the stages for it. The proxy, models and
//! self-service doors use the stages they need directly. The admin plane
//! (`crate::admin`) has its own state and never reaches into this one.

pub mod auth;
pub mod doors;
pub mod failover;
pub mod meter;
pub mod multipart;
pub mod pipeline;
pub mod relay;
pub mod slots;

use crate::config::Settings;
use crate::db::Db;
use crate::error::ApiError;
use crate::metering::PriceTable;
use crate::tokens::{TokenCache, TokenInfo};
use actix_web::HttpRequest;
use actix_web::web::{Bytes, Payload};
use auth::GatewayAuth;
use meter::Meter;
use slog::Logger;
use slots::ConcurrencySlot;
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
    pub concurrency: slots::ConcurrencyLimit,
    /// Wall-clock time for expiries, limits and quotas.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The admin master key's token hash (`crate::tokens::hash`), so that
    /// a client sending it as a gateway token is told what it sent.
    pub master_key_hash: Option<String>,
    /// Failed gateway-token authentications per client address.
    pub throttle: crate::http::throttle::AuthThrottle,
    /// Token limits: admission before the call, settlement after.
    pub enforcer: Arc<crate::enforce::Enforcer>,
    /// Fired when a graceful stop's `server.shutdown_timeout` runs out: open
    /// streams end with an error event (`shutdown::StreamCutoff`).
    pub stream_cutoff: crate::http::shutdown::StreamCutoff,
    /// Set during the drain period after SIGTERM: `/readyz` answers 503.
    pub draining: crate::http::shutdown::Draining,
}

/// What every metered client call starts with: the token (recorded on the
/// meter), a concurrency slot, then the body. The slot is taken before the
/// body is read, so a gateway at its limit sheds load at once; it lives
/// until the answer (or the stream) is done.
pub async fn accept(
    state: &AppState,
    meter: &mut Meter,
    auth: Result<GatewayAuth, ApiError>,
    request: &HttpRequest,
    payload: Payload,
) -> Result<(Arc<TokenInfo>, ConcurrencySlot, Bytes), ApiError> {
    let GatewayAuth(token) = auth?;
    meter.token(&token);
    let slot = state
        .concurrency
        .try_acquire()
        .ok_or(ApiError::ConcurrencyLimit)?;
    let raw = crate::http::body::read_body(request, payload, state.settings.server.max_body_bytes)
        .await?;
    Ok((token, slot, raw))
}

/// 403 unless the token's model list allows `model`.
pub fn require_model(token: &TokenInfo, model: &str) -> Result<(), ApiError> {
    if token.allows_model(model) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "This token may not use the model `{model}`"
        )))
    }
}
