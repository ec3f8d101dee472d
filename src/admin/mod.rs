//! The admin plane: `/admin/*`, the admin login (`/auth/*`) and the
//! [`AdminAuth`](auth::AdminAuth) extractor, with a state of their own
//! ([`AdminState`]).
//!
//! The data plane (`crate::http`, the client pipeline) and the admin plane
//! share the database and a few live structures the admin API must keep in
//! line with what it writes (the router, the token cache, the enforcer's
//! per-token counters, the price table, the model cache). Admin handlers
//! reach those through [`AdminState`], never through the data plane's
//! `AppState`, so what an admin change can touch is listed in one place and
//! the client pipeline carries nothing it does not use (the sessions, the
//! master key, the admin throttle). Routes are still declared once, in the
//! route table (`crate::http::routes`).

pub mod admin_keys;
pub mod auth;
pub mod billing;
pub mod export;
pub mod fields;
pub mod login;
pub mod logs;
pub mod metrics;
pub mod models;
pub mod oplog;
pub mod prices;
pub mod provider_edit;
pub mod providers;
pub mod range;
pub mod reload;
pub mod session_cookie;
pub mod sessions;
pub mod tokens;
pub mod users;

use crate::auth::session::SessionActor;
use crate::clock::Clock;
use crate::config::{Secret, Settings};
use crate::crypto::SecretCipher;
use crate::db::Db;
use crate::enforce::Enforcer;
use crate::http::throttle::AuthThrottle;
use crate::metering::PriceTable;
use crate::model_cache::ModelCache;
use crate::tokens::TokenCache;
use actix::Addr;
use slog::Logger;
use std::sync::Arc;
use switchyard_actors::Router;

/// Admin bodies are small; this bounds them independently of the client API.
pub const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

/// Everything the admin handlers use, built once at start (not per worker)
/// and registered as its own `web::Data`.
pub struct AdminState {
    /// Read for what settings declare (a provider's `source`).
    pub settings: Arc<Settings>,
    pub db: Db,
    /// Encrypts keys added through the admin API, decrypts them on reload.
    pub cipher: Arc<SecretCipher>,
    /// Provider changes are applied to it live.
    pub router: Router,
    /// Admin login and session lookup (`crate::auth::session`).
    pub sessions: Addr<SessionActor>,
    /// `None` when master-key authentication is turned off.
    pub master_key: Option<Secret>,
    /// Failed admin authentications per client address, counted apart from
    /// the gateway's so client traffic never bears on admin guesses or the
    /// reverse.
    pub throttle: AuthThrottle,
    /// The data plane's token cache: token and user changes invalidate it.
    pub tokens: TokenCache,
    /// The data plane's limits: a deleted or changed token is forgotten.
    pub enforcer: Arc<Enforcer>,
    /// Reloaded when prices change.
    pub prices: PriceTable,
    /// Providers' own model lists (`crate::model_cache`).
    pub models: ModelCache,
    /// The gateway's one wall clock (`crate::clock`).
    pub clock: Arc<dyn Clock>,
    pub log: Logger,
}
