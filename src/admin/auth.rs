//! [`AdminAuth`]: on `/admin/*` (and `GET /metrics`), the master key
//! (unless `admin.master_key_enabled` is false) or an admin session token
//! from the Ed25519 login (`sya-...`, checked by the SessionActor).
//!
//! Every refusal is the same kind of 401, and failures are counted per
//! client address in the admin plane's own throttle (`AdminState::throttle`).
//!
//! Without a header credential, the dashboard's session cookie is taken
//! instead, and a change made with it needs its CSRF token
//! (`super::session_cookie`).
//!
//! Roles: once the caller is known, its role (a session's key's, `admin` for
//! the master key) is held against the least role the matched route
//! declares in the route table ([`crate::http::routes::least_role`]); below
//! it, 403 `role_required` naming the role needed. A route missing from the
//! table needs `admin`, so a forgotten declaration fails closed.

use super::AdminState;
use super::session_cookie;
use crate::auth::session::{AdminIdentity, Authenticate};
use crate::auth::{Role, SESSION_TOKEN_PREFIX};
use crate::error::ApiError;
use crate::gateway::auth::presented_token;
use crate::http::context::RequestCtx;
use crate::http::routes::least_role;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use sha2::{Digest, Sha256};

/// Who performed an admin action (recorded in the operation log).
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// `master-key`, or the fingerprint of the session's admin key.
    pub actor: String,
    /// The session, when the caller logged in with an admin key.
    pub session: Option<AdminIdentity>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// What the caller may do: the session key's role, `admin` for the
    /// master key.
    pub role: Role,
}

/// The operation log's actor for master-key calls.
pub const MASTER_KEY_ACTOR: &str = "master-key";

/// Compares digests so the time taken does not depend on where the inputs differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// 429 while `ip` is blocked after too many failed admin authentications.
fn throttled(state: &AdminState, ip: std::net::IpAddr) -> Result<(), ApiError> {
    state
        .throttle
        .check(ip, state.clock.now_ms())
        .map_err(|wait| ApiError::RateLimited {
            message: format!(
                "Too many failed authentications from your address; retry in {}s",
                wait.as_secs().max(1)
            ),
            retry_after: Some(wait),
        })
}

/// The least role the request's route needs: as the route table declares
/// it for the matched pattern and method, `admin` when the route is not in
/// the table (fail closed).
fn needed_role(request: &HttpRequest) -> Role {
    request
        .match_pattern()
        .and_then(|pattern| least_role(request.method().as_str(), &pattern))
        .unwrap_or(Role::Admin)
}

impl AdminAuth {
    /// `self`, if its role reaches `needed`; else 403 naming the role.
    pub fn require(self, needed: Role) -> Result<Self, ApiError> {
        if self.role.allows(needed) {
            Ok(self)
        } else {
            Err(ApiError::RoleRequired(format!(
                "This needs the `{needed}` admin role; your credential has `{}`",
                self.role
            )))
        }
    }
}

impl FromRequest for AdminAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AdminState>>().cloned();
        let presented = presented_token(request).map(str::to_owned);
        // Dashboard: the session cookie when no header credential came;
        // its CSRF verdict is applied once the session checked out.
        let (presented, csrf) = match presented {
            Some(token) => (Some(token), Ok(())),
            None => session_cookie::cookie_credential(request)
                .map_or((None, Ok(())), |cookie| (Some(cookie.token), cookie.csrf)),
        };
        // End of the dashboard's part.
        let peer = request.peer_addr().map(|addr| addr.ip());
        let request_id = request
            .extensions()
            .get::<RequestCtx>()
            .map(|ctx| ctx.id.clone());
        // Roles (issue 12): the least role of the matched route.
        let needed = needed_role(request);
        Box::pin(async move {
            let state = state.ok_or(ApiError::Internal)?;
            if let Some(ip) = peer {
                throttled(&state, ip)?;
            }
            let presented = presented
                .ok_or_else(|| ApiError::Unauthorized("Missing admin credential".to_owned()))?;
            let outcome = Self::authenticate(&state, presented, request_id).await;
            if let (Some(ip), Err(ApiError::Unauthorized(_))) = (peer, &outcome) {
                // Not delayed, like every admin refusal.
                state.throttle.failure(ip, state.clock.now_ms());
            }
            let admin = outcome?;
            csrf?;
            // Roles (issue 12): a known caller below the route's role.
            admin.require(needed)
        })
    }
}

impl AdminAuth {
    async fn authenticate(
        state: &AdminState,
        presented: String,
        request_id: Option<String>,
    ) -> Result<Self, ApiError> {
        if presented.starts_with(SESSION_TOKEN_PREFIX) {
            let identity = state
                .sessions
                .send(Authenticate { token: presented })
                .await
                .map_err(|_| ApiError::Internal)??;
            master_session_allowed(state, &identity)?;
            return Ok(AdminAuth {
                actor: identity.fingerprint.clone(),
                role: identity.role,
                session: Some(identity),
                request_id,
            });
        }
        match &state.master_key {
            Some(master) if same_secret(&presented, master.expose()) => Ok(AdminAuth {
                actor: MASTER_KEY_ACTOR.to_owned(),
                session: None,
                request_id,
                role: Role::Admin,
            }),
            Some(_) => Err(ApiError::Unauthorized(
                "Invalid admin credential".to_owned(),
            )),
            None => Err(ApiError::Unauthorized(
                "Invalid admin credential (master-key access is turned off; log in with an \
                 admin key)"
                    .to_owned(),
            )),
        }
    }
}

/// A dashboard session opened with the master key (its reserved admin key
/// row, `login::MASTER_KEY_ROW`) works only while master-key access is on.
fn master_session_allowed(state: &AdminState, identity: &AdminIdentity) -> Result<(), ApiError> {
    if identity.fingerprint == MASTER_KEY_ACTOR && state.master_key.is_none() {
        return Err(ApiError::Unauthorized(
            "This session was opened with the master key, and master-key access is turned off"
                .to_owned(),
        ));
    }
    Ok(())
}
