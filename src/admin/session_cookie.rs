//! The dashboard's credential: the admin session token in an `HttpOnly`
//! cookie, and the CSRF token that must accompany every change made with it.
//!
//! Policy:
//! - The cookie holds the same session token the CLI gets from
//!   `/auth/verify` (a row of `admin_sessions`), so listing, expiry and
//!   revocation are the same for both; it is only set when the login asks
//!   for it (`"cookie": true`, or the master-key login of the dashboard).
//! - `HttpOnly` (scripts never see the token), `SameSite=Strict` (no other
//!   site's page sends it), `Path=/`, `Max-Age` of the session, and `Secure`
//!   when the request came over TLS (directly or, as reported by
//!   `Forwarded`/`X-Forwarded-Proto`, through a TLS-terminating proxy).
//! - A header credential (`Authorization`, `x-api-key`) wins over the
//!   cookie: the CLI and scripts never meet CSRF checks.
//! - A cookie-authenticated request other than GET/HEAD/OPTIONS must carry
//!   `X-CSRF-Token`, else 403 `csrf_token_invalid`. The token is derived from
//!   the session token (a domain-separated SHA-256), so every instance
//!   sharing the database computes the same one without storing it, it dies
//!   with the session, and knowing it reveals nothing about the session
//!   token. `SameSite=Strict` already stops cross-site sends; the token is
//!   the second lock the issue asks for (old browsers, same-site subdomains).

use crate::auth::SESSION_TOKEN_PREFIX;
use crate::error::ApiError;
use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::Method;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "switchyard_session";
/// The header that carries the CSRF token on changes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Separates CSRF tokens from every other use of SHA-256 over a session token.
const CSRF_DOMAIN: &[u8] = b"switchyard.dashboard.csrf.v1\0";

/// The CSRF token of a session token.
pub fn csrf_token(session_token: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(CSRF_DOMAIN);
    digest.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.finalize())
}

/// Compares digests so the time taken does not depend on where the inputs differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether the client reached us over TLS (`Secure` cookies).
pub fn over_tls(request: &HttpRequest) -> bool {
    request.connection_info().scheme() == "https"
}

/// The `Set-Cookie` of a new session, valid for `max_age_ms`.
pub fn session_cookie(request: &HttpRequest, token: &str, max_age_ms: i64) -> Cookie<'static> {
    Cookie::build(COOKIE_NAME, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_tls(request))
        .max_age(time::Duration::milliseconds(max_age_ms.max(0)))
        .finish()
}

/// The `Set-Cookie` that removes the session cookie (logout).
pub fn removal_cookie(request: &HttpRequest) -> Cookie<'static> {
    let mut cookie = session_cookie(request, "", 0);
    cookie.make_removal();
    cookie
}

/// A session token read from the cookie.
#[derive(Debug)]
pub struct CookieCredential {
    pub token: String,
    /// The CSRF verdict, applied once the session is known to be valid (so
    /// an expired cookie is still a 401 the dashboard answers with its
    /// login page): `Err` (403) for a change without the matching token.
    pub csrf: Result<(), ApiError>,
}

/// The session cookie's token. `None`: no cookie, or one that does not hold
/// a session token (the server only ever sets those; the master key, say,
/// is never taken from a cookie).
pub fn cookie_credential(request: &HttpRequest) -> Option<CookieCredential> {
    let token = request.cookie(COOKIE_NAME)?.value().to_owned();
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return None;
    }
    let csrf = if [Method::GET, Method::HEAD, Method::OPTIONS].contains(request.method()) {
        Ok(())
    } else {
        match request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
        {
            Some(presented) if same(presented.trim(), &csrf_token(&token)) => Ok(()),
            Some(_) => Err(ApiError::CsrfRejected(
                "The X-CSRF-Token header does not match this session; reload the dashboard"
                    .to_owned(),
            )),
            None => Err(ApiError::CsrfRejected(
                "A change made with the dashboard's session cookie needs the X-CSRF-Token header"
                    .to_owned(),
            )),
        }
    };
    Some(CookieCredential { token, csrf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_per_session_and_do_not_contain_it() {
        let a = csrf_token("sya-aaaa");
        assert_eq!(a, csrf_token("sya-aaaa"));
        assert_ne!(a, csrf_token("sya-aaab"));
        assert!(!a.contains("aaaa"));
        assert_eq!(a.len(), 43);
    }
}
