//! Calling upstream with failover.
//!
//! Each attempt asks the router for a lease that excludes keys this request
//! already tried, so a failure moves to another key, then to the next
//! provider serving the model. By default (`max_attempts = 0`, the first
//! candidate provider's policy) a request fails only when every usable key of
//! every candidate has been tried once. An explicit `max_attempts` caps the
//! attempts instead; when every candidate key has been tried and attempts
//! remain, the request backs off and starts over with the keys that are still
//! healthy.
//!
//! `upstream.request_timeout` is the request's overall deadline: each
//! attempt gets the lesser of its own timeout and what is left, pauses and
//! cooldown waits never cross it, and once it passes the request is answered
//! 504, however many keys remain.
//!
//! Retried: 429, 401/403 (the key is disabled, in the actor at once and in
//! the database by a spawned write, so the verdict survives a restart), 408,
//! 5xx, timeouts, connection failures and malformed answers. Never retried:
//! other 4xx, which the client caused; those are relayed as they are. Streams
//! are held until their first chunk arrives, so an upstream that fails before
//! that fails over invisibly.
//!
//! When every candidate key is cooling down, the request waits for the
//! earliest one as long as its waits add up to at most
//! `upstream.max_cooldown_wait` (and attempts remain); otherwise it is
//! answered at once: 429 when the keys rest after rate limits, 503 when they
//! rest after errors, both with `Retry-After`.

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::meter::Meter;
use crate::providers;
use crate::providers::openai::Usage;
use crate::providers::sse::{SseSplitter, event_data};
use crate::upstream::{UpstreamClient, send_error_summary, send_failure, status_failure};
use actix_web::http::Method;
use actix_web::web::Bytes;
use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use std::time::{Duration, Instant};
use switchyard_actors::{Failure, Lease, Outcome, ProviderSpec, RetryPolicy, RouteError, Tried};

/// An upstream answer, body read (JSON) or first chunk in hand (stream).
pub enum Answer {
    Json { body: Bytes, usage: Option<Usage> },
    Stream(StreamStart),
}

pub type UpstreamBody = LocalBoxStream<'static, Result<Bytes, awc::error::PayloadError>>;

/// A stream whose first chunk has arrived; the lease is still out.
pub struct StreamStart {
    pub lease: Lease,
    pub first_chunk: Bytes,
    pub rest: UpstreamBody,
    pub attempt_started: Instant,
}

pub struct Served {
    pub answer: Answer,
    pub provider: String,
    pub attempts: i32,
}

/// What one attempt needs from the endpoint; the provider kind's differences
/// live behind it (see `providers::exchange`).
pub trait UpstreamRequest {
    /// The path below the provider's base URL; `Err` when the provider
    /// cannot serve this endpoint at all (answered as it is, not retried).
    fn path(&self, provider: &ProviderSpec, upstream_model: &str) -> Result<String, ApiError>;
    fn body(&mut self, provider: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError>;
    fn stream(&self) -> bool;
    /// The request body's media type (a multipart upload names its
    /// boundary).
    fn content_type(&self) -> &str {
        "application/json"
    }
    /// Whether a stream event's `data` commits the answer to the client
    /// (see `openai::carries_content`). Events before the first one that
    /// does are held, so a failure among them still fails over.
    fn is_content_event(&self, _provider: &ProviderSpec, _data: &[u8]) -> bool {
        true
    }
    /// A non-streamed answer in the client's format, with its usage; `Err`
    /// when it is malformed.
    fn parse_answer(
        &self,
        provider: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer>;
    /// Headers of the client's request that this provider must see too
    /// (`anthropic-beta` on an Anthropic passthrough).
    fn forwarded_headers(&self, _provider: &ProviderSpec) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// An upstream 4xx body in the client's error shape, when the provider
    /// speaks another format (`None`: relay it as it is).
    fn client_error(&self, _provider: &ProviderSpec, _status: u16, _body: &[u8]) -> Option<Bytes> {
        None
    }
}

/// The reason stored with a key the upstream refused (as the key pool says it).
pub const REJECTED_KEY_REASON: &str = "upstream rejected the key (401/403)";

/// Events held before the first content are bounded: past this the stream is
/// committed anyway rather than buffered without limit.
const MAX_HELD_STREAM_BYTES: usize = 1024 * 1024;

/// An upstream 2xx answer that is not what its API promises.
#[derive(Debug, Clone, Copy)]
pub struct MalformedAnswer;

enum AttemptError {
    /// Try again elsewhere; this error is returned if nothing else works.
    Retryable(ApiError),
    /// Give up now (the client's own mistake).
    Final(ApiError),
}

pub async fn call_with_failover(
    state: &AppState,
    client: &awc::Client,
    meter: &mut Meter,
    model: &str,
    request: &mut impl UpstreamRequest,
) -> Result<Served, ApiError> {
    let mut tried = Tried::default();
    // The first candidate provider's policy governs the whole request.
    let mut policy: Option<RetryPolicy> = None;
    let mut attempts: u32 = 0;
    let mut last_error: Option<ApiError> = None;
    let wait_budget = state.settings.upstream.max_cooldown_wait;
    let mut waited = Duration::ZERO;
    let deadline = Deadline::after(state.settings.upstream.request_timeout);
    loop {
        if deadline.passed() {
            return Err(deadline.error(model));
        }
        let routed = match state.router.route(model, &tried) {
            Ok(routed) => routed,
            Err(RouteError::UnknownModel(name) | RouteError::UnknownProvider(name)) => {
                return Err(ApiError::ModelNotFound(name));
            }
            Err(RouteError::NoUsableKey {
                retry_after,
                rate_limited,
                busy,
                configured,
            }) => {
                let attempts_left = policy
                    .as_ref()
                    .is_none_or(|policy| policy.attempts_left(attempts));
                // A zero wait means a key that is unusable for another reason
                // (a half-open probe in flight): waiting would only spin.
                if let Some(wait) = retry_after
                    && !wait.is_zero()
                    && attempts_left
                    && waited + wait <= wait_budget
                    && deadline.allows(wait)
                {
                    slog::debug!(state.log, "upstream.cooldown_wait";
                        "model" => model, "wait_ms" => wait.as_millis() as u64);
                    actix_rt::time::sleep(wait).await;
                    waited += wait;
                    continue;
                }
                if let Some(error) = last_error.take() {
                    if let Some(policy) = &policy
                        && policy.retries_tried_keys(attempts)
                        && !tried.is_empty()
                    {
                        // Every candidate key tried once and the policy asks
                        // for more attempts: pause, then retry whichever keys
                        // are still healthy.
                        let pause = policy.backoff(attempts + 1);
                        if deadline.allows(pause) {
                            actix_rt::time::sleep(pause).await;
                            tried = Tried::default();
                            last_error = Some(error);
                            continue;
                        }
                    }
                    return Err(error);
                }
                if busy {
                    return Err(ApiError::AllKeysBusy(model.to_owned()));
                }
                // Keys resting after a 429 are a rate limit (429); keys
                // resting after errors are unhealthy (503), both with a wait.
                return Err(match retry_after {
                    Some(wait) if rate_limited => ApiError::RateLimited {
                        message: format!(
                            "Every upstream key for `{model}` is cooling down; retry in {}s",
                            wait.as_secs().max(1)
                        ),
                        retry_after: Some(wait),
                    },
                    Some(wait) => ApiError::Unavailable {
                        message: format!(
                            "Every upstream key for `{model}` is failing and resting; retry in {}s",
                            wait.as_secs().max(1)
                        ),
                        retry_after: Some(wait),
                    },
                    None if configured == 0 => ApiError::Unavailable {
                        message: format!(
                            "No upstream key is configured for `{model}`: its provider has none \
                             (a key list of unset `${{VAR:-}}` references is empty); add one in \
                             the settings or with `switchyard admin provider-keys add`"
                        ),
                        retry_after: None,
                    },
                    None => ApiError::Unavailable {
                        message: format!(
                            "No healthy upstream key is available for `{model}`: every key is \
                             disabled or was tried"
                        ),
                        retry_after: None,
                    },
                });
            }
        };
        let lease = routed.lease;
        let policy = policy.get_or_insert_with(|| lease.provider.policy.clone());
        attempts += 1;
        tried.add(&lease.provider.name, &lease.key_id);
        meter.attempt(&lease.provider.name, &lease.key_id, &routed.upstream_model);
        let provider = lease.provider.name.clone();
        let span = meter
            .trace
            .as_ref()
            .map(|trace| trace.attempt(&provider, &lease.key_id, &routed.upstream_model, attempts));
        let traceparent = span.as_ref().and_then(|span| span.traceparent());
        let outcome = attempt(
            state,
            client,
            request,
            lease,
            &routed.upstream_model,
            &deadline,
            traceparent.as_deref(),
        )
        .await;
        if let Some(span) = span {
            span.finish_attempt(match &outcome {
                Ok(_) => Ok(()),
                Err(AttemptError::Final(error) | AttemptError::Retryable(error)) => {
                    Err(error.to_string())
                }
            });
        }
        match outcome {
            Ok(answer) => {
                return Ok(Served {
                    answer,
                    provider,
                    attempts: meter.attempts(),
                });
            }
            Err(AttemptError::Final(error)) => return Err(error),
            Err(AttemptError::Retryable(error)) => {
                meter.attempt_failed(error.code());
                slog::info!(state.log, "upstream.attempt_failed";
                    "provider" => &provider, "attempt" => attempts, "error" => %error);
                if !policy.attempts_left(attempts) {
                    return Err(error);
                }
                last_error = Some(error);
            }
        }
    }
}

/// A request's overall deadline (`upstream.request_timeout`; none when zero).
struct Deadline {
    at: Option<Instant>,
    limit: Duration,
}

impl Deadline {
    fn after(limit: Duration) -> Self {
        Self {
            at: (!limit.is_zero()).then(|| Instant::now() + limit),
            limit,
        }
    }

    fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn passed(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }

    /// Whether waiting `wait` still leaves time for an attempt.
    fn allows(&self, wait: Duration) -> bool {
        self.remaining().is_none_or(|left| wait < left)
    }

    /// `timeout`, shortened to what is left of the deadline.
    fn bound(&self, timeout: Duration) -> Duration {
        self.remaining().map_or(timeout, |left| timeout.min(left))
    }

    fn error(&self, model: &str) -> ApiError {
        ApiError::UpstreamTimeout(format!(
            "No upstream answered for `{model}` within the request's deadline of {}s",
            self.limit.as_secs_f64()
        ))
    }
}

async fn attempt(
    state: &AppState,
    client: &awc::Client,
    request: &mut impl UpstreamRequest,
    lease: Lease,
    upstream_model: &str,
    deadline: &Deadline,
    traceparent: Option<&str>,
) -> Result<Answer, AttemptError> {
    let spec = lease.provider.clone();
    let limits = &state.settings.upstream;
    let attempt_timeout = deadline.bound(
        spec.policy
            .attempt_timeout
            .unwrap_or(limits.first_byte_timeout),
    );
    let body = request
        .body(&spec, upstream_model)
        .map_err(AttemptError::Final)?;
    let path = request
        .path(&spec, upstream_model)
        .map_err(AttemptError::Final)?;
    if providers::echo::is_echo(&spec) {
        return echo(request, lease, &path, &body);
    }
    let upstream = UpstreamClient::new(client).request(
        Method::POST,
        &lease,
        &path,
        "",
        Some(attempt_timeout),
        |mut upstream| {
            upstream = upstream.insert_header(("content-type", request.content_type()));
            for header in request.forwarded_headers(&spec) {
                upstream = upstream.insert_header(header);
            }
            if request.stream() {
                upstream = upstream.insert_header(("accept", "text/event-stream"));
            }
            if let Some(traceparent) = traceparent {
                upstream = upstream.insert_header(("traceparent", traceparent));
            }
            upstream
        },
    );
    let started = Instant::now();
    let mut response = match upstream.send_body(body).await {
        Ok(response) => response,
        Err(error) => {
            let failure = send_failure(&error);
            lease.fail(failure);
            return Err(AttemptError::Retryable(if failure == Failure::Timeout {
                ApiError::UpstreamTimeout(format!(
                    "Provider `{}` did not answer within {:?}",
                    spec.name, attempt_timeout
                ))
            } else {
                ApiError::UpstreamFailed(format!(
                    "Could not reach provider `{}`: {}",
                    spec.name,
                    send_error_summary(&error)
                ))
            }));
        }
    };
    let status = response.status();
    if let Some(failure) = status_failure(&response) {
        let body = read_limited(
            &mut response,
            limits.max_response_bytes.min(64 * 1024),
            limits.stream_idle_timeout,
        )
        .await
        .unwrap_or_default();
        match failure {
            Failure::Unauthorized => persist_rejected_key(state, &spec.name, &lease.key_id),
            Failure::RateLimited {
                retry_after: Some(rest),
            } => share_key_rest(state, &spec.name, &lease.key_id, rest),
            _ => {}
        }
        lease.fail(failure);
        return Err(match failure {
            Failure::ClientError => {
                let body = request
                    .client_error(&spec, status.as_u16(), &body)
                    .unwrap_or(body);
                AttemptError::Final(ApiError::UpstreamRejected { status, body })
            }
            Failure::RateLimited { retry_after } => {
                AttemptError::Retryable(ApiError::RateLimited {
                    message: format!(
                        "Provider `{}` is rate limiting this gateway's keys",
                        spec.name
                    ),
                    retry_after,
                })
            }
            _ => AttemptError::Retryable(ApiError::UpstreamFailed(format!(
                "Provider `{}` answered {}",
                spec.name,
                status.as_u16()
            ))),
        });
    }
    if request.stream() {
        let mut rest: UpstreamBody = response.boxed_local();
        // Hold events until one carries content (the role-only first chunk
        // does not): until then nothing has reached the client and a failure
        // still fails over invisibly.
        let mut held = actix_web::web::BytesMut::new();
        let mut splitter = SseSplitter::default();
        // Counted from the head, but never past the request's deadline.
        let committed_by = Instant::now() + deadline.bound(attempt_timeout);
        loop {
            let wait = limits
                .stream_idle_timeout
                .min(committed_by.saturating_duration_since(Instant::now()));
            match actix_rt::time::timeout(wait, rest.next()).await {
                Ok(Some(Ok(chunk))) => {
                    held.extend_from_slice(&chunk);
                    splitter.push(&chunk);
                    let mut committed = held.len() > MAX_HELD_STREAM_BYTES;
                    // Only until the first content event: the relay splits
                    // the held bytes again, and an upstream often sends many
                    // events in its first chunk (each of them was parsed
                    // here: ~3% of a relayed stream's CPU, bench/README.md).
                    while !committed && let Some(event) = splitter.next_event() {
                        committed = event_data(&event)
                            .is_some_and(|data| request.is_content_event(&spec, &data));
                    }
                    if committed {
                        return Ok(Answer::Stream(StreamStart {
                            lease,
                            first_chunk: held.freeze(),
                            rest,
                            attempt_started: started,
                        }));
                    }
                }
                Ok(Some(Err(_)) | None) => {
                    lease.fail(Failure::Connection);
                    return Err(AttemptError::Retryable(ApiError::UpstreamFailed(format!(
                        "Provider `{}` closed the stream before sending any content",
                        spec.name
                    ))));
                }
                Err(_) => {
                    lease.fail(Failure::Timeout);
                    return Err(AttemptError::Retryable(ApiError::UpstreamTimeout(format!(
                        "Provider `{}` sent no stream content within {:?}",
                        spec.name, wait
                    ))));
                }
            }
        }
    }
    // The whole body must arrive within the deadline too, not only each chunk
    // within the idle timeout.
    let whole_body = read_limited(
        &mut response,
        limits.max_response_bytes,
        limits.stream_idle_timeout,
    );
    let read = match deadline.remaining() {
        Some(left) => actix_rt::time::timeout(left, whole_body)
            .await
            .unwrap_or(Err(Failure::Timeout)),
        None => whole_body.await,
    };
    let body = match read {
        Ok(body) => body,
        Err(failure) => {
            lease.fail(failure);
            return Err(AttemptError::Retryable(match failure {
                Failure::Timeout => ApiError::UpstreamTimeout(format!(
                    "Provider `{}` stalled mid-answer",
                    spec.name
                )),
                _ => ApiError::UpstreamFailed(format!(
                    "Provider `{}` broke off its answer",
                    spec.name
                )),
            }));
        }
    };
    whole_answer(request, &spec, lease, body, started)
}

/// A whole answer read back for the client: the lease succeeds, or fails as
/// a server error when the answer is not what the API promises.
fn whole_answer(
    request: &impl UpstreamRequest,
    spec: &ProviderSpec,
    lease: Lease,
    body: Bytes,
    started: Instant,
) -> Result<Answer, AttemptError> {
    match request.parse_answer(spec, body) {
        Ok((body, usage)) => {
            lease.finish(Outcome::Success {
                latency: started.elapsed(),
            });
            Ok(Answer::Json { body, usage })
        }
        Err(MalformedAnswer) => {
            lease.fail(Failure::ServerError);
            Err(AttemptError::Retryable(ApiError::UpstreamFailed(format!(
                "Provider `{}` sent a malformed answer",
                spec.name
            ))))
        }
    }
}

/// The `echo` provider's attempt: the answer is made in-process
/// (`providers::echo`) where the upstream call would be, then read back
/// exactly like an upstream's, so translation, metering and the usage row
/// are those of any provider.
fn echo(
    request: &mut impl UpstreamRequest,
    lease: Lease,
    path: &str,
    body: &[u8],
) -> Result<Answer, AttemptError> {
    let started = Instant::now();
    if path != providers::echo::CHAT_PATH {
        return Err(AttemptError::Final(ApiError::bad_request(format!(
            "Provider `{}` (kind echo) answers only chat completions",
            lease.provider.name
        ))));
    }
    let answer = providers::echo::answer(body)
        .map_err(|refused| AttemptError::Final(ApiError::bad_request(refused.0)))?;
    if request.stream() {
        return Ok(Answer::Stream(StreamStart {
            lease,
            first_chunk: answer,
            rest: futures_util::stream::empty().boxed_local(),
            attempt_started: started,
        }));
    }
    let spec = lease.provider.clone();
    whole_answer(request, &spec, lease, answer, started)
}

/// Records in the database that the upstream refused a key (401/403), so it
/// stays disabled across restarts until an admin enables it. Spawned: the
/// request moves on to the next key without waiting for the write (which
/// runs on the database's own runtime, so nothing here can cancel it).
fn persist_rejected_key(state: &AppState, provider: &str, key_id: &str) {
    let db = state.db.clone();
    let log = state.log.clone();
    let provider = provider.to_owned();
    let key_id = key_id.to_owned();
    actix_rt::spawn(async move {
        let stored: Result<bool, crate::db::DbError> = async {
            let Some(row) = db.get_provider_by_name(&provider).await? else {
                return Ok(false);
            };
            db.set_provider_key_enabled(row.id, &key_id, false, Some(REJECTED_KEY_REASON))
                .await
        }
        .await;
        match stored {
            Ok(true) => slog::warn!(log, "provider.key_disabled";
                "provider" => &provider, "key_id" => &key_id, "reason" => REJECTED_KEY_REASON),
            Ok(false) => slog::warn!(log, "provider.key_disabled_not_stored";
                "provider" => &provider, "key_id" => &key_id, "error" => "no such key in the database"),
            Err(error) => slog::error!(log, "provider.key_disabled_not_stored";
                "provider" => &provider, "key_id" => &key_id, "error" => %error),
        }
    });
}

/// Rests shorter than this are not shared: they end about when the other
/// instances would hear of them.
const SHORTEST_SHARED_REST: Duration = Duration::from_secs(1);

/// Tells the other instances that the upstream put a key to rest (a 429
/// with `Retry-After`), through the change feed (`crate::change_feed`), so
/// they do not each spend a request to learn it (issue 14). Spawned like
/// [`persist_rejected_key`]: the request does not wait for the write. At
/// most one write per key per rest and instance in the common case: the
/// rested key is not leased here again until its rest ends.
fn share_key_rest(state: &AppState, provider: &str, key_id: &str, rest: Duration) {
    if rest < SHORTEST_SHARED_REST || state.db.backend() != crate::config::Backend::Postgres {
        return;
    }
    let db = state.db.clone();
    let log = state.log.clone();
    let provider = provider.to_owned();
    let key_id = key_id.to_owned();
    let rest_ms = i64::try_from(rest.as_millis()).unwrap_or(i64::MAX);
    actix_rt::spawn(async move {
        if let Err(error) = db.record_key_rest(&provider, &key_id, rest_ms).await {
            slog::warn!(log, "provider.key_rest_not_shared";
                "provider" => &provider, "key_id" => &key_id, "error" => %error);
        }
    });
}

/// Reads a whole upstream body, at most `limit` bytes, failing if it stalls
/// for longer than `idle`.
async fn read_limited(
    response: &mut awc::ClientResponse<
        impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
    >,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, Failure> {
    let mut body = actix_web::web::BytesMut::new();
    loop {
        match actix_rt::time::timeout(idle, response.next()).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(None) => return Ok(body.freeze()),
            Ok(Some(Err(_))) => return Err(Failure::Connection),
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::ServerError);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}
