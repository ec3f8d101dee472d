//! `/proxy/{provider}/{path...}`: any other endpoint of a provider (audio,
//! images, files, batches) relayed byte for byte, streaming both ways.
//!
//! The key comes from the provider's pool, the provider's `headers` are
//! added, and the client's hop-by-hop and credential headers never reach the
//! upstream (nor the upstream's `set-cookie` the client). Bodies are not
//! buffered: the request body streams up (bounded by `server.max_body_bytes`)
//! and the answer streams down as it arrives, neither decompressed nor
//! re-encoded. A streamed request body cannot be replayed, so there is one
//! attempt and no failover; the outcome still feeds the key's health, but
//! only for what the upstream did: a client's broken body or unsendable
//! request is the client's 4xx.
//!
//! Calls are admitted and billed like the front doors' (`proxy_usage`):
//! the known token endpoints (chat, completions, embeddings, responses,
//! messages) read the (small, JSON) request body for its model, reserve
//! its estimate, and are billed from the usage the answer reports, read as
//! it streams by. Every other endpoint is priced per call by the
//! pseudo-model `proxy:{provider}:{path}` (else `proxy:{provider}:*`); a
//! token with a money budget or a prepaid owner is refused (402) a call
//! that has no price, never served for free.
//!
//! A token restricted to a model list may use the proxy of a provider only
//! when its list allows `{provider}/*`.

use crate::config::ProxySettings;
use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::auth::GatewayAuth;
use crate::gateway::doors::proxy_usage::{
    UsageScan, bills_tokens, per_call_fallback, per_call_model, token_call,
};
use crate::gateway::meter::{Meter, drop_with_usage};
use crate::gateway::slots::ConcurrencySlot;
use crate::http::body::read_body;
use crate::http::context::RequestCtx;
use crate::providers::STRIPPED_HEADERS;
use crate::providers::openai::Usage;
use crate::tokens::TokenInfo;
use crate::upstream::{UpstreamClient, send_failure, status_failure};
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use awc::error::{PayloadError, SendRequestError};
use futures_util::Stream;
use futures_util::stream::LocalBoxStream;
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use switchyard_actors::{Failure, Lease, Outcome, RouteError, Tried};
use tokio::time::Sleep;

pub async fn proxy(
    ctx: RequestCtx,
    state: Data<AppState>,
    client: Data<awc::Client>,
    auth: Result<GatewayAuth, ApiError>,
    path: Path<(String, String)>,
    request: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let (provider, tail) = path.into_inner();
    let mut meter = Meter::start(&state, &ctx, &format!("/proxy/{provider}"));
    match relay(
        &state, &client, &mut meter, auth, &provider, &tail, &request, payload,
    )
    .await
    {
        Ok(response) => response.into_response(meter, &state),
        Err(error) => {
            meter.fail(&error);
            error.error_response()
        }
    }
}

/// The path below `/proxy/{provider}/` exactly as it came on the wire (still
/// percent-encoded); `None` if the URI does not have that shape.
fn raw_tail(request: &HttpRequest) -> Option<&str> {
    let (_provider, tail) = request
        .uri()
        .path()
        .strip_prefix("/proxy/")?
        .split_once('/')?;
    Some(tail)
}

/// Whether any segment of `tail` (still percent-encoded) is `.` or `..`
/// once decoded, or decodes to a path with such a segment (`..%2F`,
/// `..%5C`): upstream servers and URL libraries resolve them, which would
/// take the request, and the pool key, outside the provider's `base_url`.
fn has_dot_segment(tail: &str) -> bool {
    tail.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded
            .split(['/', '\\'])
            .any(|part| part == "." || part == "..")
    })
}

/// Client headers always kept from the upstream besides
/// [`STRIPPED_HEADERS`]: `Expect` (the gateway answers `100 Continue`
/// itself; forwarded, it made the upstream send fail and was blamed on the
/// key) and the legacy `Proxy-Connection`.
const PROXY_DROPPED: &[&str] = &["expect", "proxy-connection"];

/// The client's claimed address, forwarded only when
/// `proxy.forward_client_address` is set.
const CLIENT_ADDRESS_HEADERS: &[&str] = &["x-forwarded-for", "forwarded", "x-real-ip"];

/// Forwarded only when `proxy.forward_openai_organization` is set: the pool
/// key's calls belong to the gateway's organization and project.
const OPENAI_ORGANIZATION_HEADERS: &[&str] = &["openai-organization", "openai-project"];

/// Lowercase names of the client headers not to forward: the fixed lists,
/// the optional ones the settings do not opt in to, and every header the
/// client named in `Connection` or `Proxy-Connection` (hop-by-hop by
/// RFC 9110 section 7.6.1).
fn dropped_headers(request: &HttpRequest, settings: &ProxySettings) -> Vec<String> {
    let mut dropped: Vec<String> = STRIPPED_HEADERS
        .iter()
        .chain(PROXY_DROPPED)
        .map(|name| (*name).to_owned())
        .collect();
    if !settings.forward_client_address {
        dropped.extend(CLIENT_ADDRESS_HEADERS.iter().map(|name| (*name).to_owned()));
    }
    if !settings.forward_openai_organization {
        dropped.extend(
            OPENAI_ORGANIZATION_HEADERS
                .iter()
                .map(|name| (*name).to_owned()),
        );
    }
    for connection in ["connection", "proxy-connection"] {
        for value in request.headers().get_all(connection) {
            let Ok(value) = value.to_str() else { continue };
            dropped.extend(
                value
                    .split(',')
                    .map(|name| name.trim().to_ascii_lowercase())
                    .filter(|name| !name.is_empty()),
            );
        }
    }
    dropped
}

/// An upstream answer whose body is still to be streamed.
struct Relayed {
    status: StatusCode,
    headers: Vec<(String, Vec<u8>)>,
    body: LocalBoxStream<'static, Result<Bytes, PayloadError>>,
    lease: Lease,
    failure: Option<Failure>,
    started: Instant,
    slot: ConcurrencySlot,
    scan: Option<UsageScan>,
}

#[expect(
    clippy::too_many_arguments,
    reason = "an actix handler's extracted parts"
)]
async fn relay(
    state: &AppState,
    client: &awc::Client,
    meter: &mut Meter,
    auth: Result<GatewayAuth, ApiError>,
    provider: &str,
    tail: &str,
    request: &HttpRequest,
    payload: Payload,
) -> Result<Relayed, ApiError> {
    let GatewayAuth(token) = auth?;
    meter.token(&token);
    if !token.allows_model(&format!("{provider}/*")) {
        return Err(ApiError::Forbidden(format!(
            "This token may not use the proxy of provider `{provider}` (its model list must allow `{provider}/*`)"
        )));
    }
    // The tail as the client sent it, still percent-encoded: the decoded
    // `Path` value would turn `%20` into a space (an invalid URL, blamed on
    // the key as a connection failure) and `%3F` into the start of a query.
    let tail = raw_tail(request).unwrap_or(tail);
    if has_dot_segment(tail) {
        return Err(ApiError::bad_request(
            "The proxied path may not contain `.` or `..` segments (raw or percent-encoded): it must stay below the provider's base URL",
        ));
    }
    let slot = state
        .concurrency
        .try_acquire()
        .ok_or(ApiError::ConcurrencyLimit)?;
    let limit = state.settings.server.max_body_bytes;
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    // A token endpoint's body is a small JSON document naming the model:
    // read whole (it is sent with its length), the rest streams up.
    let (buffered, payload) = if bills_tokens(request.method(), tail) {
        (Some(read_body(request, payload, limit).await?), None)
    } else {
        (None, Some(payload))
    };
    let billing = admit(state, meter, &token, provider, tail, buffered.as_ref()).await?;
    let lease = match state.router.route_pinned(provider, &Tried::default()) {
        Ok(lease) => lease,
        Err(RouteError::UnknownProvider(_) | RouteError::UnknownModel(_)) => {
            return Err(ApiError::NotFound(format!(
                "No provider named `{provider}`"
            )));
        }
        Err(RouteError::NoUsableKey {
            retry_after,
            rate_limited,
            configured,
            ..
        }) => {
            return Err(if configured == 0 {
                ApiError::Unavailable {
                    message: format!(
                        "Provider `{provider}` has no key configured; add one in the settings \
                         or with `switchyard admin provider-keys add`"
                    ),
                    retry_after: None,
                }
            } else if rate_limited {
                ApiError::RateLimited {
                    message: format!("Every key of provider `{provider}` is cooling down"),
                    retry_after,
                }
            } else {
                ApiError::Unavailable {
                    message: format!("No healthy key of provider `{provider}` is available"),
                    retry_after,
                }
            });
        }
    };
    let spec = lease.provider.clone();
    if crate::providers::echo::is_echo(&spec) {
        // Not the key's doing: the lease goes back untouched.
        drop(lease);
        return Err(ApiError::bad_request(format!(
            "Provider `{provider}` (kind echo) answers only chat completions; it has no HTTP API to proxy"
        )));
    }
    meter.attempt(&spec.name, &lease.key_id, billing.model());
    let timeout = spec
        .policy
        .attempt_timeout
        .unwrap_or(state.settings.upstream.first_byte_timeout);
    let dropped = dropped_headers(request, &state.settings.proxy);
    let upstream = UpstreamClient::new(client).request(
        request.method().clone(),
        &lease,
        tail,
        request.query_string(),
        Some(timeout),
        |mut upstream| {
            // Relay the bytes as the upstream encoded them.
            upstream = upstream.no_decompress();
            for (name, value) in request.headers() {
                if !dropped.iter().any(|drop| drop == name.as_str()) {
                    upstream = upstream.append_header((name.clone(), value.clone()));
                }
            }
            if matches!(billing, Billing::Tokens(_)) {
                // The usage is read from the answer: it must come uncompressed.
                upstream = upstream.insert_header(("accept-encoding", "identity"));
            }
            upstream
        },
    );
    let started = Instant::now();
    let overflowed = Rc::new(Cell::new(false));
    // Framed as the client framed it: a declared length stays a length
    // (some upstreams refuse chunked uploads with 411), a chunked body stays
    // chunked, and a request without a body gets none.
    let chunked = request
        .headers()
        .get("transfer-encoding")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    let sent = match (buffered, payload) {
        (Some(body), _) => upstream.send_body(body).await,
        (None, Some(payload)) => {
            let body = LimitedBody {
                payload,
                limit,
                seen: 0,
                overflowed: overflowed.clone(),
            };
            match declared {
                Some(length) => {
                    upstream
                        .send_body(SizedStream::new(length as u64, body))
                        .await
                }
                None if chunked => upstream.send_stream(body).await,
                None => upstream.send().await,
            }
        }
        (None, None) => upstream.send().await,
    };
    let response = match sent {
        Ok(response) => response,
        // The client's body outgrew the limit or broke off, or its request
        // cannot be sent as it is: the client's fault, not the key's (the
        // lease is given back without an outcome).
        Err(SendRequestError::Body(_)) if overflowed.get() => {
            drop(lease);
            return Err(ApiError::PayloadTooLarge(limit));
        }
        Err(SendRequestError::Body(_)) => {
            drop(lease);
            return Err(ApiError::bad_request(
                "The request body ended before it was complete",
            ));
        }
        Err(SendRequestError::Url(_) | SendRequestError::Http(_)) => {
            drop(lease);
            return Err(ApiError::bad_request(
                "The request cannot be relayed as it is (invalid path or header)",
            ));
        }
        Err(error) => {
            let failure = send_failure(&error);
            lease.fail(failure);
            return Err(if failure == Failure::Timeout {
                ApiError::UpstreamTimeout(format!(
                    "Provider `{provider}` did not answer within {timeout:?}"
                ))
            } else {
                ApiError::UpstreamFailed(format!("Could not reach provider `{provider}`"))
            });
        }
    };
    let status = response.status();
    let failure = status_failure(&response);
    let scan = match billing {
        Billing::Tokens(_) => Some(UsageScan::for_answer(
            response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok()),
            state.settings.upstream.max_response_bytes,
        )),
        Billing::PerCall(_) => None,
    };
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| !STRIPPED_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    Ok(Relayed {
        status,
        headers,
        body: Box::pin(response),
        lease,
        failure,
        started,
        slot,
        scan,
    })
}

/// How a proxied call is priced: by the usage of `model`, or per call of
/// a pseudo-model.
enum Billing {
    Tokens(String),
    PerCall(String),
}

impl Billing {
    fn model(&self) -> &str {
        match self {
            Billing::Tokens(model) | Billing::PerCall(model) => model,
        }
    }
}

/// Admits the call against every limit of the token, like the front doors:
/// a token endpoint's body by its model and estimate, any other call by its
/// per-call price. A money-limited token is refused a call without a price.
async fn admit(
    state: &AppState,
    meter: &mut Meter,
    token: &TokenInfo,
    provider: &str,
    tail: &str,
    body: Option<&Bytes>,
) -> Result<Billing, ApiError> {
    if let Some(raw) = body
        && let Some(call) = token_call(raw)
    {
        // The model goes into the usage row: a NUL makes PostgreSQL refuse
        // the batch (DESIGN.md section 8), and no model name has controls.
        if call.model.chars().any(char::is_control) {
            return Err(ApiError::bad_param(
                "model",
                "The `model` may not contain control characters",
            ));
        }
        meter.request(&call.model, call.stream);
        meter.estimate_prompt(raw);
        meter.admit(token, &call.model, call.max_tokens).await?;
        return Ok(Billing::Tokens(call.model));
    }
    let exact = per_call_model(provider, tail);
    let fallback = per_call_fallback(provider);
    let priced = [&exact, &fallback]
        .into_iter()
        .find(|model| state.prices.contains(model));
    let money_limited = token.budget_nanos.is_some() || token.user_prepaid;
    if priced.is_none() && money_limited && !state.enforcer.limits().allow_unpriced {
        return Err(ApiError::PaymentRequired {
            message: format!(
                "This proxied call has no price, so this token's money budget (or its owner's balance) cannot be enforced; an admin must set a per-call price on `{exact}` or `{fallback}` (`PUT /admin/model-prices/...` with `per_call`){}",
                if body.is_some() {
                    ", or the request body must name its `model`"
                } else {
                    ""
                }
            ),
            code: "proxy_unpriced",
        });
    }
    let model = priced.unwrap_or(&exact).clone();
    meter.request(&model, false);
    // No tokens: the estimate is the per-call price alone.
    meter.admit(token, &model, Some(0)).await?;
    Ok(Billing::PerCall(model))
}

impl Relayed {
    fn into_response(self, mut meter: Meter, state: &AppState) -> HttpResponse {
        meter.first_byte();
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.append_header((name.as_str(), value.as_slice()));
        }
        let idle_timeout = state.settings.upstream.stream_idle_timeout;
        response.streaming(ProxyBody {
            body: self.body,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            settle: Some(Settle {
                lease: self.lease,
                meter,
                status: self.status.as_u16(),
                failure: self.failure,
                started: self.started,
                scan: self.scan,
            }),
            _slot: self.slot,
        })
    }
}

/// What is reported once the answer ends, breaks or is abandoned.
struct Settle {
    lease: Lease,
    meter: Meter,
    status: u16,
    failure: Option<Failure>,
    started: Instant,
    /// Reads a token-billed answer's usage; `None` for per-call prices.
    scan: Option<UsageScan>,
}

impl Settle {
    /// The usage to bill: what the answer reported; else, for a token call
    /// that produced an answer, `None` with the answer's text measured (the
    /// meter estimates); no tokens for a per-call price or an error answer.
    fn usage(meter: &mut Meter, scan: Option<UsageScan>, answered: bool) -> Option<Usage> {
        let (usage, chars) = scan.map_or((None, 0), UsageScan::finish);
        if usage.is_some() || !answered {
            return usage.or(Some(Usage::default()));
        }
        meter.add_completion_chars(chars);
        None
    }

    fn done(mut self) {
        match self.failure {
            Some(failure) => self.lease.fail(failure),
            None => self.lease.finish(Outcome::Success {
                latency: self.started.elapsed(),
            }),
        }
        let answered = self.scan.is_some() && (200..300).contains(&self.status);
        let usage = Self::usage(&mut self.meter, self.scan, answered);
        self.meter.succeed(self.status, usage);
    }

    fn broken(mut self, failure: Failure, class: &str) {
        self.lease.fail(failure);
        let answered = self.scan.is_some();
        let usage = Self::usage(&mut self.meter, self.scan, answered);
        self.meter.interrupted(class, usage);
    }

    /// The client went away mid-answer: bill what was learned (the lease
    /// is given back without an outcome).
    fn abandoned(mut self) {
        let answered = self.scan.is_some();
        let usage = Self::usage(&mut self.meter, self.scan, answered);
        drop_with_usage(self.meter, usage);
    }
}

/// The upstream answer streamed to the client, settled exactly once.
struct ProxyBody {
    body: LocalBoxStream<'static, Result<Bytes, PayloadError>>,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    settle: Option<Settle>,
    _slot: ConcurrencySlot,
}

impl Stream for ProxyBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let deadline = tokio::time::Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                if let Some(scan) = this.settle.as_mut().and_then(|settle| settle.scan.as_mut()) {
                    scan.feed(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(settle) = this.settle.take() {
                    settle.broken(Failure::Connection, "stream_interrupted");
                }
                Poll::Ready(Some(Err(actix_web::error::ErrorBadGateway(error))))
            }
            Poll::Ready(None) => {
                if let Some(settle) = this.settle.take() {
                    settle.done();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if std::future::Future::poll(this.idle.as_mut(), cx).is_ready() {
                    if let Some(settle) = this.settle.take() {
                        settle.broken(
                            Failure::Timeout,
                            crate::providers::wire_error::STREAM_IDLE_TIMEOUT,
                        );
                    }
                    return Poll::Ready(Some(Err(actix_web::error::ErrorGatewayTimeout(
                        "upstream stalled",
                    ))));
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.abandoned();
        }
    }
}

/// The client's request body on its way up, cut off past the limit.
struct LimitedBody {
    payload: Payload,
    limit: usize,
    seen: usize,
    /// Set when the body outgrew `limit` (a 413, not a broken body's 400).
    overflowed: Rc<Cell<bool>>,
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.payload).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len();
                if this.seen > this.limit {
                    this.overflowed.set(true);
                    return Poll::Ready(Some(Err(std::io::Error::other("request body too large"))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(std::io::Error::other(error.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
