//! What browsers need: CORS (`server.cors`) and the security headers every
//! answer carries.
//!
//! Policy:
//! - CORS is `actix-cors`, the actix project's own middleware, rather than
//!   code of ours: the Fetch standard's preflight rules (`Vary: Origin`,
//!   credentials never with `*`, method and header lists) are easy to get
//!   subtly wrong and it is well kept. Empty `allowed_origins`: no CORS
//!   middleware at all, browsers refuse cross-origin calls.
//! - A preflight (`OPTIONS` with `Access-Control-Request-Method`) from a
//!   listed origin is answered by the middleware before routing, so before
//!   any authentication; an `OPTIONS` without that header is an ordinary
//!   request and gets the route table's 405 with `Allow`.
//! - Only listed origins get `Access-Control-Allow-Origin` (their own
//!   origin, never `*`) and `Access-Control-Allow-Credentials: true`; other
//!   origins are served as if CORS were off (a curl with any `Origin` still
//!   works), and their preflights are refused in the API's error shape.
//! - Every answer, errors included, carries `X-Content-Type-Options: nosniff`
//!   and `Referrer-Policy: no-referrer`, and over TLS `Strict-Transport-Security`.
//!   The dashboard's own stricter headers (CSP, framing) are set by `crate::ui`.

use crate::config::CorsSettings;
use crate::error::ApiError;
use crate::gateway::pipeline::{ATTEMPTS_HEADER, PROVIDER_HEADER};
use crate::http::context::REQUEST_ID;
use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

/// Request headers a browser page may send: credentials of every front door
/// and what the SDKs add.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "x-goog-api-key",
    "x-request-id",
    "x-csrf-token",
];

/// How long a browser may cache a preflight answer (seconds).
const PREFLIGHT_MAX_AGE: usize = 600;

/// The CORS middleware for `cors`, or `None` when no origin is listed.
pub fn cors(cors: &CorsSettings) -> Option<Cors> {
    if cors.allowed_origins.is_empty() {
        return None;
    }
    let mut middleware = Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers(ALLOWED_HEADERS.iter().copied())
        .expose_headers([
            REQUEST_ID,
            HeaderName::from_static(ATTEMPTS_HEADER),
            HeaderName::from_static(PROVIDER_HEADER),
            header::RETRY_AFTER,
        ])
        .supports_credentials()
        .max_age(PREFLIGHT_MAX_AGE)
        .block_on_origin_mismatch(false);
    for origin in &cors.allowed_origins {
        middleware = middleware.allowed_origin(origin);
    }
    Some(middleware)
}

/// Whether answers carry HSTS (the listener serves TLS).
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls(pub bool);

/// The outermost middleware: the security headers on every answer, and a
/// refused preflight's plain-text answer turned into the API's error shape.
pub async fn security_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let tls = request
        .app_data::<web::Data<ServedOverTls>>()
        .is_some_and(|tls| tls.0);
    let mut response = match next.call(request).await {
        Ok(response) => match cors_refusal(&response) {
            Some(refusal) => {
                let mut answer = refusal.error_response();
                if let Some(vary) = response.headers().get(header::VARY) {
                    answer.headers_mut().insert(header::VARY, vary.clone());
                }
                response.into_response(answer).map_into_right_body()
            }
            None => response.map_into_left_body(),
        },
        // Whatever an inner layer failed with gets the headers when actix
        // turns it into an answer.
        Err(mut error) => {
            error.add_response_mapper(move |mut answer| {
                add_headers(answer.headers_mut(), tls);
                answer
            });
            return Err(error);
        }
    };
    add_headers(response.headers_mut(), tls);
    Ok(response)
}

fn add_headers(headers: &mut HeaderMap, tls: bool) {
    // actix-cors adds these to every answer; they belong only with an
    // allowed origin (credentials only for listed origins).
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(crate::http::tls::HSTS),
        );
    }
}

/// The error of a preflight actix-cors refused, as the API answers errors.
fn cors_refusal<B>(response: &ServiceResponse<B>) -> Option<ApiError> {
    let error = response.response().error()?;
    let refusal = error.as_error::<actix_cors::CorsError>()?;
    Some(ApiError::bad_request(format!(
        "CORS preflight refused: {refusal} (see server.cors.allowed_origins)"
    )))
}
