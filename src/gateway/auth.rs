//! Authentication extractors.
//!
//! - [`GatewayAuth`]: a client's gateway token, from `Authorization: Bearer`,
//!   `x-api-key` (Anthropic clients), `x-goog-api-key` or `?key=` (Gemini
//!   clients, `/v1beta` only) or `x-gw-token`; checked against the
//!   token cache, falling back to the database on a miss.
//!
//! The admin credential is checked by `crate::admin::auth::AdminAuth`.
//!
//! Every refusal is the same kind of 401 with a message that says what to
//! fix, never whether a guessed token exists but is disabled versus unknown
//! beyond what the holder of a real token needs to know.

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::http::throttle::AuthThrottle;
use crate::tokens::{self, Cached, TokenInfo};
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use std::sync::Arc;
use std::time::Instant;

/// The credential a client presented, if any.
pub fn presented_token(request: &HttpRequest) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    ["x-api-key", "x-goog-api-key", "x-gw-token"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .or_else(|| query_key(request))
}

/// Google's `?key=` on the Gemini door (`/v1beta/...`, and `/v1/models...`
/// where Google's v1 lives), which its clients may send instead of
/// `x-goog-api-key`. Only there: a key in a URL ends up in proxies' logs,
/// so other doors do not invite it. (The gateway's own access log and
/// traces record the path without the query.)
pub fn query_key(request: &HttpRequest) -> Option<&str> {
    let path = request.path();
    if !(path.starts_with("/v1beta/") || path.starts_with("/v1/models")) {
        return None;
    }
    request
        .query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        // Gateway tokens are alphanumeric: no percent-decoding needed.
        .filter(|token| !token.is_empty())
}

/// Why an unknown token was refused. Admin credentials presented here are
/// named (the master key and session tokens look like gateway tokens to a
/// new user); anything else is simply invalid.
fn unknown_token_message(state: &AppState, token: &str, hash: &str) -> String {
    if state.master_key_hash.as_deref() == Some(hash) {
        return "This is the admin master key, not a gateway token: create a gateway token \
                (`switchyard admin tokens create --name NAME`, or POST /admin/tokens with the master \
                key) and send that"
            .to_owned();
    }
    if token.starts_with(crate::auth::SESSION_TOKEN_PREFIX) {
        return "This is an admin session token, not a gateway token: create a gateway token \
                (`switchyard admin tokens create --name NAME`) and send that"
            .to_owned();
    }
    "Invalid gateway token".to_owned()
}

/// An authenticated gateway token.
#[derive(Debug, Clone)]
pub struct GatewayAuth(pub Arc<TokenInfo>);

impl GatewayAuth {
    /// Reads a token (and its owner) from the database into the cache.
    async fn load(
        state: &AppState,
        hash: &str,
    ) -> Result<Option<Arc<TokenInfo>>, crate::db::DbError> {
        let info = match state.db.find_token_by_hash(hash).await? {
            Some(row) => {
                let user = match row.user_id {
                    Some(id) => state.db.get_user(id).await?,
                    None => None,
                };
                let mut info = TokenInfo::from_row(&row, user.as_ref());
                // Found by the hash it had before a rotation.
                if row.token_hash != hash {
                    info.grace_until_ms = Some(row.previous_expires_at.unwrap_or(0));
                }
                Some(Arc::new(info))
            }
            None => None,
        };
        state
            .tokens
            .put(hash.to_owned(), info.clone(), Instant::now());
        Ok(info)
    }

    async fn authenticate(
        state: web::Data<AppState>,
        presented: Option<String>,
    ) -> Result<Self, ApiError> {
        let Some(token) = presented else {
            return Err(ApiError::Unauthorized(
                "Missing gateway token: send `Authorization: Bearer <token>`".to_owned(),
            ));
        };
        let hash = tokens::hash(&token);
        let info = match state.tokens.get(&hash, Instant::now()) {
            Cached::Found(info) => Some(info),
            Cached::Missing => None,
            // The last checkout found no database: do not hold this request
            // for `connect_timeout` again (a partition makes every checkout
            // wait that long). Served as last read; one request a second
            // reads it again in the background, and a success there ends
            // this.
            Cached::Stale(stale) if state.db.is_failing() => {
                if state.db.may_try_while_failing() {
                    let (state, hash) = (state.clone(), hash.clone());
                    actix_rt::spawn(async move {
                        let _ = Self::load(&state, &hash).await;
                    });
                }
                Some(stale)
            }
            Cached::Stale(stale) => match Self::load(&state, &hash).await {
                Ok(info) => info,
                // The database is away: the token was valid when last read
                // (within `stale_token_grace`). Tokens that need the
                // database for their budget are refused by the enforcer.
                Err(error) if error.is_unavailable() => Some(stale),
                Err(error) => return Err(ApiError::database_unavailable(&error)),
            },
            Cached::Unknown => Self::load(&state, &hash)
                .await
                .map_err(|error| ApiError::database_unavailable(&error))?,
        };
        let Some(info) = info else {
            return Err(ApiError::Unauthorized(unknown_token_message(
                &state, &token, &hash,
            )));
        };
        if !info.enabled {
            return Err(ApiError::Unauthorized(
                "This gateway token has been disabled".to_owned(),
            ));
        }
        let now = state.clock.now_ms();
        if info.expires_at_ms.is_some_and(|expiry| expiry <= now) {
            return Err(ApiError::Unauthorized(
                "This gateway token has expired".to_owned(),
            ));
        }
        if info.grace_until_ms.is_some_and(|until| until <= now) {
            return Err(ApiError::Unauthorized(
                "This gateway token was rotated and its grace period is over; use the new token"
                    .to_owned(),
            ));
        }
        if info.user_suspended {
            return Err(ApiError::Unauthorized(
                "The owner of this gateway token is suspended".to_owned(),
            ));
        }
        Ok(Self(info))
    }
}

impl FromRequest for GatewayAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let presented = presented_token(request).map(str::to_owned);
        let peer = request.peer_addr().map(|addr| addr.ip());
        Box::pin(async move {
            let state = state.ok_or(ApiError::Internal)?;
            let Some(ip) = peer else {
                return Self::authenticate(state, presented).await;
            };
            throttled(&state.throttle, &state, ip)?;
            let guessed = presented.is_some();
            // A success leaves the count alone (see `throttle`).
            match Self::authenticate(state.clone(), presented).await {
                Err(error @ ApiError::Unauthorized(_)) if guessed => {
                    let delay = state.throttle.failure(ip, state.clock.now_ms());
                    if !delay.is_zero() {
                        actix_rt::time::sleep(delay).await;
                    }
                    Err(error)
                }
                other => other,
            }
        })
    }
}

/// 429 while `ip` is blocked by `throttle` after too many failed
/// authentications.
pub(crate) fn throttled(
    throttle: &AuthThrottle,
    state: &AppState,
    ip: std::net::IpAddr,
) -> Result<(), ApiError> {
    throttle
        .check(ip, state.clock.now_ms())
        .map_err(|wait| ApiError::RateLimited {
            message: format!(
                "Too many failed authentications from your address; retry in {}s",
                wait.as_secs().max(1)
            ),
            retry_after: Some(wait),
        })
}
