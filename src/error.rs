//! The client-facing error type.
//!
//! Policy:
//! - Every failure a client can see is an [`ApiError`] variant with a fixed
//!   status and OpenAI's wire shape `{"error":{"message","type","param","code"}}`.
//!   The `x-request-id` header (set by middleware on every response) ties it
//!   to the server's log line.
//! - Messages say what the client can act on. Internal detail (database
//!   errors, upstream bodies of 5xx answers) is logged where handled, never
//!   returned.
//! - Modules use their own `thiserror` enums (`DbError`, `SettingsError`,
//!   the providers' `RequestError` and `TranslateError`) and convert here on
//!   purpose: a pool or connection failure is 503, not 500. This module
//!   depends on theirs, never the reverse.
//! - Bodies are built by `providers::wire_error`, one constructor per wire
//!   shape (OpenAI's here, Anthropic's for `/v1/messages`, Gemini's for
//!   `/v1beta`).
//! - `anyhow` is for start-up and the CLI only.

use crate::db::DbError;
use crate::providers::{RequestError, TranslateError, wire_error};
use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or invalid.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<&'static str>,
    },
    /// 401: no token, or not a valid, enabled, unexpired one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed (model not on the token's list).
    #[error("{0}")]
    Forbidden(String),
    /// 403: a dashboard (cookie) session's change without its CSRF token,
    /// or with a wrong one (`admin::session_cookie`).
    #[error("{0}")]
    CsrfRejected(String),
    /// 403: an admin credential whose role is below what the route needs
    /// (`crate::auth::Role`); the message names the role needed.
    #[error("{0}")]
    RoleRequired(String),
    /// 402: a budget or the owner's prepaid balance is exhausted (or cannot
    /// be enforced, for an unpriced model).
    #[error("{message}")]
    PaymentRequired { message: String, code: &'static str },
    /// 404: no such model.
    #[error("The model `{0}` does not exist or is not served by this gateway")]
    ModelNotFound(String),
    /// 404: no such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path is served, but not for this method; `allow` lists the
    /// methods it takes (sent as `Allow`).
    #[error("`{method}` is not served on this path; it takes {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// 409: the change conflicts with the resource's state (a name taken,
    /// a user that still owns tokens).
    #[error("{0}")]
    Conflict(String),
    /// 408: the body did not arrive within `server.body_read_timeout`.
    #[error("The request body did not arrive within {}s", .0.as_secs())]
    RequestTimeout(Duration),
    /// 413: the body exceeds `server.max_body_bytes`.
    #[error("Request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 429: rate limited (a limit of ours, or every upstream key cooling down).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 502: the upstream failed on every attempt.
    #[error("{0}")]
    UpstreamFailed(String),
    /// 503: no usable key, or the database is unreachable.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 503: the gateway's database cannot be reached; what this request
    /// needed from it (a token not in the cache, a budget reservation, an
    /// admin change) cannot be done now.
    #[error("{0}")]
    DatabaseUnavailable(String),
    /// 503: `server.max_concurrent_requests` requests are already being served.
    #[error("The gateway is serving as many requests as it is allowed to; retry shortly")]
    ConcurrencyLimit,
    /// 503: every key that could serve the model is at its
    /// `max_in_flight_per_key` cap.
    #[error("Every upstream key for `{0}` is serving as many requests as it may; retry shortly")]
    AllKeysBusy(String),
    /// 503: request bodies being read already hold
    /// `server.max_body_bytes_in_flight`.
    #[error("The gateway is reading as many request bytes as it may hold; retry shortly")]
    BodiesInFlight,
    /// 504: the upstream did not answer in time.
    #[error("{0}")]
    UpstreamTimeout(String),
    /// An upstream 4xx that the client caused (bad parameters for that
    /// model): relayed with the upstream's status and JSON body.
    #[error("upstream rejected the request with status {status}")]
    UpstreamRejected { status: StatusCode, body: Bytes },
    /// 500: a bug or an unexpected state; details are in the log.
    #[error("Internal error; see the gateway log for this request id")]
    Internal,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn bad_param(param: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param: Some(param),
        }
    }

    /// OpenAI's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest { .. }
            | Self::RequestTimeout(_)
            | Self::PayloadTooLarge(_)
            | Self::ModelNotFound(_)
            | Self::NotFound(_)
            | Self::MethodNotAllowed { .. }
            | Self::Conflict(_) => "invalid_request_error",
            Self::Unauthorized(_) => "authentication_error",
            Self::Forbidden(_) | Self::CsrfRejected(_) | Self::RoleRequired(_) => {
                "permission_error"
            }
            Self::PaymentRequired { .. } => "insufficient_quota",
            Self::RateLimited { .. } => "rate_limit_error",
            Self::UpstreamFailed(_) | Self::UpstreamTimeout(_) | Self::UpstreamRejected { .. } => {
                "upstream_error"
            }
            Self::Unavailable { .. }
            | Self::ConcurrencyLimit
            | Self::DatabaseUnavailable(_)
            | Self::AllKeysBusy(_)
            | Self::BodiesInFlight => "service_unavailable",
            Self::Internal => "server_error",
        }
    }

    /// OpenAI's `error.code`, also the `error_class` of the usage row.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "invalid_request",
            Self::Unauthorized(_) => "invalid_api_key",
            Self::Forbidden(_) => "model_not_allowed",
            Self::CsrfRejected(_) => "csrf_token_invalid",
            Self::RoleRequired(_) => "role_required",
            Self::PaymentRequired { code, .. } => code,
            Self::ModelNotFound(_) => "model_not_found",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::RequestTimeout(_) => "request_timeout",
            Self::PayloadTooLarge(_) => "request_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::UpstreamFailed(_) => "upstream_failed",
            Self::Unavailable { .. } => "no_healthy_upstream",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::ConcurrencyLimit => "concurrency_limit",
            Self::AllKeysBusy(_) => "all_keys_busy",
            Self::BodiesInFlight => "bodies_in_flight",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::UpstreamRejected { .. } => "upstream_rejected",
            Self::Internal => "internal_error",
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            Self::BadRequest { param, .. } => *param,
            Self::ModelNotFound(_) | Self::Forbidden(_) => Some("model"),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            // The slot (or the body bytes) free as soon as any request in
            // flight ends.
            Self::ConcurrencyLimit | Self::AllKeysBusy(_) | Self::BodiesInFlight => {
                Some(Duration::from_secs(1))
            }
            // The usage writer retries every second at most: about when
            // the database is back, it is seen back.
            Self::DatabaseUnavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The JSON body in OpenAI's shape.
    pub fn body(&self) -> serde_json::Value {
        wire_error::openai(
            &self.to_string(),
            self.kind(),
            self.param(),
            Some(self.code()),
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::CsrfRejected(_) | Self::RoleRequired(_) => {
                StatusCode::FORBIDDEN
            }
            Self::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::ModelNotFound(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable { .. }
            | Self::ConcurrencyLimit
            | Self::DatabaseUnavailable(_)
            | Self::AllKeysBusy(_)
            | Self::BodiesInFlight => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamRejected { status, .. } => *status,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(wait) = self.retry_after() {
            // Whole seconds, rounded up, at least 1.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((RETRY_AFTER, seconds.max(1).to_string()));
        }
        if let Self::MethodNotAllowed { allow, .. } = self {
            response.insert_header((ALLOW, allow.as_str()));
        }
        match self {
            Self::UpstreamRejected { body, .. }
                if serde_json::from_slice::<serde_json::Value>(body).is_ok() =>
            {
                response
                    .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                    .body(body.clone())
            }
            _ => response.json(self.body()),
        }
    }
}

impl ApiError {
    /// The same error in Anthropic's shape (`{"type":"error","error":{type,
    /// message}}`), for the `/v1/messages` front door: same status, same
    /// `Retry-After`. An upstream's own Anthropic-shaped error is relayed.
    pub fn anthropic_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if let Some(wait) = self.retry_after() {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((RETRY_AFTER, seconds.max(1).to_string()));
        }
        if let Self::UpstreamRejected { body, .. } = self
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
            && value.get("type").and_then(serde_json::Value::as_str) == Some("error")
        {
            return response
                .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                .body(body.clone());
        }
        let message = match self {
            Self::UpstreamRejected { body, .. } => {
                serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|value| {
                        value
                            .pointer("/error/message")
                            .and_then(serde_json::Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| format!("The upstream refused the request ({status})"))
            }
            other => other.to_string(),
        };
        response.json(wire_error::anthropic(
            wire_error::anthropic_type_for_status(status.as_u16()),
            &message,
        ))
    }
}

impl ApiError {
    /// The same error in Gemini's (Google's) shape
    /// (`{"error":{"code","message","status"}}`), for the `/v1beta` front
    /// door: same status, same `Retry-After`. An upstream's own
    /// Gemini-shaped error is relayed.
    pub fn gemini_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if let Some(wait) = self.retry_after() {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((RETRY_AFTER, seconds.max(1).to_string()));
        }
        let upstream = match self {
            Self::UpstreamRejected { body, .. } => {
                serde_json::from_slice::<serde_json::Value>(body).ok()
            }
            _ => None,
        };
        if let (Self::UpstreamRejected { body, .. }, Some(value)) = (self, &upstream)
            && value
                .pointer("/error/status")
                .is_some_and(serde_json::Value::is_string)
        {
            return response
                .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                .body(body.clone());
        }
        let message = match self {
            Self::UpstreamRejected { .. } => upstream
                .as_ref()
                .and_then(|value| value.pointer("/error/message"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("The upstream refused the request ({status})")),
            other => other.to_string(),
        };
        response.json(wire_error::gemini(
            status.as_u16(),
            &message,
            wire_error::gemini_status_for_code(status.as_u16()),
        ))
    }
}

impl From<TranslateError> for ApiError {
    fn from(error: TranslateError) -> Self {
        match error {
            TranslateError::Upstream(_) => Self::UpstreamFailed(error.to_string()),
            // The answer's `param` stays null, as it always was: the path
            // (`messages[2].content`) is not one of the field names
            // `BadRequest` carries.
            TranslateError::InvalidRequest { message, .. }
            | TranslateError::Unsupported { message, .. } => Self::bad_request(message),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Invalid { param, message } => Self::BadRequest { message, param },
            RequestError::Translate(error) => error.into(),
            RequestError::Encode => Self::Internal,
        }
    }
}

impl From<crate::auth::session::AuthError> for ApiError {
    fn from(error: crate::auth::session::AuthError) -> Self {
        use crate::auth::KeyError;
        use crate::auth::session::AuthError;
        match error {
            AuthError::Malformed(key) => {
                let param = match key {
                    KeyError::PublicKey | KeyError::WeakPublicKey | KeyError::PublicKeyFile => {
                        Some("public_key")
                    }
                    KeyError::Signature => Some("signature"),
                    KeyError::Nonce => Some("nonce"),
                    KeyError::PrivateKeyFile => None,
                };
                Self::BadRequest {
                    message: key.to_string(),
                    param,
                }
            }
            AuthError::TooManyChallenges { retry_after } => Self::RateLimited {
                message: error.to_string(),
                retry_after: Some(retry_after),
            },
            AuthError::Db(db) => db.into(),
            AuthError::UnknownKey
            | AuthError::KeyDisabled
            | AuthError::UnknownChallenge
            | AuthError::ChallengeUsed
            | AuthError::ChallengeExpired
            | AuthError::BadSignature
            | AuthError::UnknownSession
            | AuthError::SessionExpired
            | AuthError::SessionRevoked
            | AuthError::SessionKeyDisabled => Self::Unauthorized(error.to_string()),
        }
    }
}

impl ApiError {
    /// A database failure on the request path: always 503 with
    /// `Retry-After`, never 500, whatever the failure (the detail is the
    /// caller's to log).
    pub fn database_unavailable(_: &DbError) -> Self {
        Self::DatabaseUnavailable(
            "The gateway's database is unreachable; try again shortly".to_owned(),
        )
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound => Self::NotFound("No such resource".to_owned()),
            // A unique constraint: the change collides with a row that
            // exists (issue 11: once a 400, as if the body were malformed).
            DbError::Conflict(what) => Self::Conflict(format!("Already exists: {what}")),
            error if error.is_unavailable() => Self::database_unavailable(&error),
            _ => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    /// One instance of every variant: adding a variant without extending this
    /// list fails to compile the match below.
    fn every_variant() -> Vec<(ApiError, u16)> {
        let all = vec![
            (ApiError::bad_request("x"), 400),
            (ApiError::Unauthorized("x".into()), 401),
            (ApiError::Forbidden("x".into()), 403),
            (ApiError::CsrfRejected("x".into()), 403),
            (ApiError::RoleRequired("x".into()), 403),
            (
                ApiError::PaymentRequired {
                    message: "x".into(),
                    code: "budget_exhausted",
                },
                402,
            ),
            (ApiError::ModelNotFound("m".into()), 404),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::Conflict("x".into()), 409),
            (ApiError::RequestTimeout(Duration::from_secs(60)), 408),
            (ApiError::PayloadTooLarge(10), 413),
            (
                ApiError::RateLimited {
                    message: "x".into(),
                    retry_after: Some(Duration::from_millis(1500)),
                },
                429,
            ),
            (ApiError::UpstreamFailed("x".into()), 502),
            (
                ApiError::Unavailable {
                    message: "x".into(),
                    retry_after: None,
                },
                503,
            ),
            (ApiError::ConcurrencyLimit, 503),
            (ApiError::DatabaseUnavailable("x".into()), 503),
            (ApiError::AllKeysBusy("m".into()), 503),
            (ApiError::BodiesInFlight, 503),
            (ApiError::UpstreamTimeout("x".into()), 504),
            (
                ApiError::UpstreamRejected {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body: Bytes::from_static(b"{\"error\":{\"message\":\"bad\"}}"),
                },
                422,
            ),
            (
                ApiError::MethodNotAllowed {
                    method: "PUT".into(),
                    allow: "GET".into(),
                },
                405,
            ),
            (ApiError::Internal, 500),
        ];
        for (error, _) in &all {
            match error {
                ApiError::BadRequest { .. }
                | ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::CsrfRejected(_)
                | ApiError::RoleRequired(_)
                | ApiError::PaymentRequired { .. }
                | ApiError::ModelNotFound(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed { .. }
                | ApiError::Conflict(_)
                | ApiError::RequestTimeout(_)
                | ApiError::PayloadTooLarge(_)
                | ApiError::RateLimited { .. }
                | ApiError::UpstreamFailed(_)
                | ApiError::Unavailable { .. }
                | ApiError::ConcurrencyLimit
                | ApiError::DatabaseUnavailable(_)
                | ApiError::AllKeysBusy(_)
                | ApiError::BodiesInFlight
                | ApiError::UpstreamTimeout(_)
                | ApiError::UpstreamRejected { .. }
                | ApiError::Internal => {}
            }
        }
        all
    }

    #[test]
    fn status_table_and_wire_shape_hold() -> Result<(), Box<dyn std::error::Error>> {
        for (error, status) in every_variant() {
            let response = error.error_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            let body = response
                .into_body()
                .try_into_bytes()
                .map_err(|_| "streaming body")?;
            let json: serde_json::Value = serde_json::from_slice(&body)?;
            let object = json.get("error").ok_or("no error object")?;
            assert!(
                object.get("message").and_then(|m| m.as_str()).is_some(),
                "{json}"
            );
            if !matches!(error, ApiError::UpstreamRejected { .. }) {
                assert_eq!(
                    object.get("code").and_then(|c| c.as_str()),
                    Some(error.code())
                );
                assert_eq!(
                    object.get("type").and_then(|c| c.as_str()),
                    Some(error.kind())
                );
            }
        }
        Ok(())
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let response = ApiError::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(1500)),
        }
        .error_response();
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
    }

    #[test]
    fn the_concurrency_limit_asks_for_a_retry_in_one_second() {
        let response = ApiError::ConcurrencyLimit.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }

    #[test]
    fn refused_logins_map_to_400_401_and_429() {
        use crate::auth::KeyError;
        use crate::auth::session::AuthError;
        let cases = [
            (
                AuthError::Malformed(KeyError::PublicKey),
                400,
                Some("public_key"),
            ),
            (
                AuthError::Malformed(KeyError::WeakPublicKey),
                400,
                Some("public_key"),
            ),
            (
                AuthError::Malformed(KeyError::Signature),
                400,
                Some("signature"),
            ),
            (AuthError::Malformed(KeyError::Nonce), 400, Some("nonce")),
            (AuthError::UnknownKey, 401, None),
            (AuthError::KeyDisabled, 401, None),
            (AuthError::UnknownChallenge, 401, None),
            (AuthError::ChallengeUsed, 401, None),
            (AuthError::ChallengeExpired, 401, None),
            (AuthError::BadSignature, 401, None),
            (AuthError::UnknownSession, 401, None),
            (AuthError::SessionExpired, 401, None),
            (AuthError::SessionRevoked, 401, None),
            (AuthError::SessionKeyDisabled, 401, None),
            (
                AuthError::TooManyChallenges {
                    retry_after: Duration::from_secs(60),
                },
                429,
                None,
            ),
            (AuthError::Db(DbError::Pool("down".into())), 503, None),
        ];
        for (error, status, param) in cases {
            let message = error.to_string();
            let api: ApiError = error.into();
            assert_eq!(api.status_code().as_u16(), status, "{message}");
            assert_eq!(api.param(), param, "{message}");
            if status != 503 {
                assert_eq!(api.to_string(), message);
            }
        }
    }

    #[test]
    fn provider_refusals_keep_their_status_class_and_param() {
        let cases = [
            (
                RequestError::invalid_param("max_tokens", "too small"),
                400,
                Some("max_tokens"),
            ),
            (RequestError::invalid("not JSON"), 400, None),
            (
                RequestError::Translate(TranslateError::invalid("messages[1].content", "bad part")),
                400,
                None,
            ),
            (
                RequestError::Translate(TranslateError::unsupported("n", "one choice only")),
                400,
                None,
            ),
            (
                RequestError::Translate(TranslateError::upstream("not an object")),
                502,
                None,
            ),
            (RequestError::Encode, 500, None),
        ];
        for (error, status, param) in cases {
            assert_eq!(error.status_code(), status, "{error:?}");
            let api: ApiError = error.clone().into();
            assert_eq!(api.status_code().as_u16(), status, "{error:?}");
            assert_eq!(api.param(), param, "{error:?}");
            if status == 400 {
                assert_eq!(api.to_string(), error.to_string());
            }
        }
    }

    #[test]
    fn anthropic_answers_carry_the_type_of_their_status() -> Result<(), Box<dyn std::error::Error>>
    {
        let response = ApiError::ModelNotFound("m".into()).anthropic_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = response
            .into_body()
            .try_into_bytes()
            .map_err(|_| "streaming body")?;
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(
            json,
            wire_error::anthropic(
                "not_found_error",
                &ApiError::ModelNotFound("m".into()).to_string()
            )
        );
        Ok(())
    }

    #[test]
    fn database_outages_are_503_not_500() {
        let error: ApiError = DbError::Pool("timed out".into()).into();
        assert_eq!(error.status_code(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
