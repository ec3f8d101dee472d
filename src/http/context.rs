//! Per-request context: a request id (the client's `x-request-id` when it is
//! sane, else a fresh one), a child logger carrying it, and the arrival time.
//! The middleware sets `x-request-id` on every response and writes one
//! access line per request.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, web};
use rand::Rng;
use slog::{Logger, info, o};
use std::future::{Ready, ready};
use std::time::Instant;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct RequestCtx {
    pub id: String,
    /// Unique per request and never the client's: the usage row's
    /// idempotency key (`id` may repeat when clients reuse theirs).
    pub record_id: String,
    pub started: Instant,
    pub log: Logger,
    /// The request's span when tracing is on (`crate::telemetry`).
    pub trace: Option<crate::telemetry::Trace>,
}

fn client_request_id(request: &ServiceRequest) -> Option<String> {
    let value = request.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    sane.then(|| value.to_owned())
}

/// `req_` + 12 hex digits of Unix milliseconds + 20 random hex digits (80
/// bits). Time-ordered so that the `request_logs.request_id` index grows at
/// its end: random ids dirtied hundreds of index pages per usage batch.
fn new_request_id() -> String {
    let random: u128 = rand::rng().random::<u128>() & ((1u128 << 80) - 1);
    // Milliseconds since 1970 fit 48 bits until the year 10889.
    let millis = u128::from(crate::clock::system_now_ms().max(0).unsigned_abs());
    let mut id = String::with_capacity(REQUEST_ID_LEN);
    id.push_str("req_");
    push_hex(&mut id, millis, 12);
    push_hex(&mut id, random, 20);
    id
}

const REQUEST_ID_LEN: usize = 4 + 12 + 20;

/// The low `digits` hex digits of `value`, zero-padded, lower case. Written
/// by hand: `format!` went through the formatting machinery for every
/// request (0.7% of the gateway's CPU in the bench's profile).
fn push_hex(out: &mut String, value: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for position in (0..digits).rev() {
        let nibble = (value >> (position * 4)) & 0xf;
        out.push(char::from(HEX[nibble as usize]));
    }
}

/// What the middleware logs with (registered as app data).
pub struct RequestLogging {
    /// The root logger; each request gets a child carrying its id.
    pub log: Logger,
    /// `logging.access_log`: one line per finished request.
    pub access_log: bool,
    /// `None` when tracing is off: then a request pays one branch for it.
    pub telemetry: Option<std::sync::Arc<crate::telemetry::Telemetry>>,
}

/// The middleware, installed with `middleware::from_fn`.
pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let record_id = new_request_id();
    let id = client_request_id(&request).unwrap_or_else(|| record_id.clone());
    let Some(logging) = request.app_data::<web::Data<RequestLogging>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError(
            "request logging settings missing",
        ));
    };
    let log = logging.log.new(o!("req_id" => id.clone()));
    let started = Instant::now();
    let trace = logging.telemetry.as_ref().map(|telemetry| {
        telemetry.request(
            request.headers(),
            request.method().as_str(),
            request.path(),
            &id,
        )
    });
    request.extensions_mut().insert(RequestCtx {
        id: id.clone(),
        record_id,
        started,
        log: log.clone(),
        trace: trace.clone(),
    });
    // Only the access line needs them: no copy of the path otherwise.
    let access = logging
        .access_log
        .then(|| (request.method().clone(), request.path().to_owned()));
    let mut response = next.call(request).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    // At the response head (a stream's span ends before its last event;
    // its attempts' spans say how long the upstream took).
    if let Some(trace) = &trace {
        trace.finish_request(response.status().as_u16());
    }
    if let Some((method, path)) = access {
        // For streams this is the time to the response head; the usage row
        // has the full duration.
        info!(log, "request.finished";
            "method" => %method,
            "path" => path,
            "status" => response.status().as_u16(),
            "duration_ms" => started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(response)
}

impl FromRequest for RequestCtx {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<RequestCtx>()
                .cloned()
                .ok_or_else(|| {
                    actix_web::error::ErrorInternalServerError("request context missing")
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_arrival_millisecond_then_80_random_bits() -> Result<(), String> {
        let before = crate::clock::system_now_ms();
        let id = new_request_id();
        let after = crate::clock::system_now_ms();
        assert_eq!(id.len(), REQUEST_ID_LEN, "{id}");
        let hex = id.strip_prefix("req_").ok_or(format!("no prefix: {id}"))?;
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}"
        );
        let millis = i64::from_str_radix(&hex[..12], 16).map_err(|e| e.to_string())?;
        assert!(
            (before..=after).contains(&millis),
            "{millis} not in {before}..={after}"
        );
        assert_ne!(new_request_id()[16..], id[16..], "the random part repeats");
        Ok(())
    }

    #[test]
    fn hex_digits_are_what_format_writes() {
        for value in [0u128, 1, 0xabc, 0x0123_4567_89ab_cdef, (1 << 80) - 1] {
            let mut written = String::new();
            push_hex(&mut written, value, 20);
            assert_eq!(written, format!("{value:020x}"));
        }
    }
}
