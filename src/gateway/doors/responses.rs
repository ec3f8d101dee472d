//! OpenAI's Responses API (the newer SDK surface, Codex CLI), served by any
//! provider kind through `providers::responses`, with the chat door's auth,
//! limits, failover, metering and error shape (OpenAI's):
//!
//! - `POST /v1/responses`, streamed or not: passed through to `openai`
//!   providers, translated to chat for the others.
//! - `GET` and `DELETE /v1/responses/{id}`: an id an OpenAI upstream stored
//!   is only known to the provider (and project) that made it, so the
//!   gateway remembers who made each one (`db::responses`, shared by every
//!   instance) and sends these calls there, with the key that made it when
//!   it is usable. Only the token that made an id can read or delete it;
//!   any other id is a 404.
//! - `previous_response_id` is routed to the provider holding that id; a
//!   request translated for another kind is refused (400).

use crate::db::responses::ResponseOwner;
use crate::error::ApiError;
use crate::gateway::auth::GatewayAuth;
use crate::gateway::failover::{Answer, MalformedAnswer, Served, StreamStart, UpstreamRequest};
use crate::gateway::meter::Meter;
use crate::gateway::pipeline::{ClientCall, FrontDoor, PROVIDER_HEADER, serve};
use crate::gateway::relay::StreamMode;
use crate::gateway::{AppState, accept};
use crate::http::context::RequestCtx;
use crate::providers::anthropic::AnthropicRequestOptions;
use crate::providers::exchange::ClientFormat;
use crate::providers::openai::Usage;
use crate::providers::responses::{RESPONSES_PATH, ResponsesExchange};
use crate::providers::sse::{SseSplitter, event_data};
use crate::providers::translate::unix_now;
use crate::tokens::TokenInfo;
use crate::upstream::{UpstreamClient, send_error_summary, send_failure, status_failure};
use actix_web::http::Method;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::{self, Bytes, Data, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::Value;
use switchyard_actors::{Lease, Outcome, ProviderSpec, RouteError, Tried};

/// The route recorded on usage rows of `POST /v1/responses`.
pub const ENDPOINT: &str = "/v1/responses";
/// The route recorded on usage rows of `GET`/`DELETE /v1/responses/{id}`.
pub const STORED_ENDPOINT: &str = "/v1/responses/{id}";

/// One `POST /v1/responses` call: the exchange, and the provider that holds
/// its `previous_response_id` when the gateway knows it.
pub struct ResponsesCall {
    exchange: ResponsesExchange,
    holder: Option<ResponseOwner>,
}

impl UpstreamRequest for ResponsesCall {
    fn path(&self, spec: &ProviderSpec, upstream_model: &str) -> Result<String, ApiError> {
        Ok(self.exchange.path(spec, upstream_model)?)
    }

    fn body(&mut self, spec: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        Ok(self.exchange.upstream_body(spec, upstream_model)?)
    }

    fn stream(&self) -> bool {
        self.exchange.request.stream
    }

    fn is_content_event(&self, spec: &ProviderSpec, data: &[u8]) -> bool {
        self.exchange.is_content_event(spec, data)
    }

    fn parse_answer(
        &self,
        spec: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer> {
        self.exchange
            .client_answer(spec, body)
            .map_err(|_| MalformedAnswer)
    }

    fn client_error(&self, spec: &ProviderSpec, status: u16, body: &[u8]) -> Option<Bytes> {
        self.exchange.client_error(spec, status, body)
    }
}

impl FrontDoor for ResponsesCall {
    type Route = ();

    fn endpoint((): ()) -> &'static str {
        ENDPOINT
    }

    fn parse((): (), raw: &Bytes, _: &HttpRequest, state: &AppState) -> Result<Self, ApiError> {
        let options = AnthropicRequestOptions {
            default_max_tokens: state.settings.upstream.default_max_tokens,
        };
        // A translated answer's id; OpenAI upstreams name their own.
        let id = format!("resp_{}", hex::encode(rand::random::<[u8; 24]>()));
        Ok(Self {
            exchange: ResponsesExchange::new(raw, options, id, unix_now())?,
            holder: None,
        })
    }

    fn model(&self) -> &str {
        &self.exchange.request.model
    }

    fn max_tokens(&self) -> Option<i64> {
        self.exchange.request.max_output_tokens
    }

    fn stream_mode(&self, (): (), start: &StreamStart) -> StreamMode {
        StreamMode::Translated {
            translator: self.exchange.stream_translator(&start.lease.provider),
            client: ClientFormat::OpenAi,
        }
    }

    async fn prepare(&mut self, state: &AppState, token: &TokenInfo) -> Result<(), ApiError> {
        if let Some(previous) = self
            .exchange
            .request
            .previous_response_id
            .as_deref()
            .filter(|id| plausible_id(id))
        {
            self.holder = state
                .db
                .response_owner(previous, token.id)
                .await?
                .filter(|owner| state.router.routes_provider(&owner.provider));
        }
        Ok(())
    }

    /// Pinned to the holder of `previous_response_id` (`provider/model`),
    /// which alone can continue it.
    fn route_model(&self) -> String {
        let model = self.model();
        match &self.holder {
            Some(owner) if !model.starts_with(&format!("{}/", owner.provider)) => {
                format!("{}/{model}", owner.provider)
            }
            _ => model.to_owned(),
        }
    }

    async fn served(&self, state: &AppState, token: &TokenInfo, served: &Served, key_id: &str) {
        if self.exchange.request.body.get("store") == Some(&Value::Bool(false)) {
            return;
        }
        let id = match &served.answer {
            Answer::Json { body, .. } => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|answer| answer.get("id")?.as_str().map(str::to_owned)),
            Answer::Stream(start) => streamed_response_id(&start.first_chunk),
        };
        // A translated answer carries the gateway's own id: nothing stored.
        let Some(id) = id.filter(|id| *id != self.exchange.frame.id) else {
            return;
        };
        // Awaited, so a GET right after the answer finds the owner; a
        // failed write costs only that later GET (a 404), not this answer.
        if let Err(error) = state
            .db
            .record_response_owner(&id, &served.provider, key_id, token.id)
            .await
        {
            slog::warn!(state.log, "responses.owner_not_stored";
                "provider" => &served.provider, "error" => %error);
        }
    }
}

/// Whether `id` can be a response id (OpenAI's are `resp_` and hex): what
/// cannot is unknown without asking the database, which keeps strings
/// PostgreSQL refuses (a NUL byte) away from it.
fn plausible_id(id: &str) -> bool {
    (1..=256).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
}

/// The response id in the first events of an OpenAI Responses stream
/// (`response.created` comes first and is held until content arrives).
fn streamed_response_id(first_chunk: &[u8]) -> Option<String> {
    let mut splitter = SseSplitter::default();
    splitter.push(first_chunk);
    while let Some(event) = splitter.next_event() {
        let Some(data) = event_data(&event) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<Value>(&data) else {
            continue;
        };
        if let Some(id) = value.pointer("/response/id").and_then(Value::as_str) {
            return Some(id.to_owned());
        }
    }
    None
}

/// `POST /v1/responses`.
pub async fn create(call: ClientCall) -> HttpResponse {
    serve::<ResponsesCall>((), call).await
}

/// `GET /v1/responses/{id}`: the stored response, from the provider that
/// made it.
pub async fn retrieve(
    ctx: RequestCtx,
    state: Data<AppState>,
    client: Data<awc::Client>,
    auth: Result<GatewayAuth, ApiError>,
    request: HttpRequest,
    payload: Payload,
    id: web::Path<String>,
) -> HttpResponse {
    stored(Method::GET, ctx, state, client, auth, request, payload, id).await
}

/// `DELETE /v1/responses/{id}`: deletes it at the provider that made it;
/// the gateway then forgets the id.
pub async fn delete(
    ctx: RequestCtx,
    state: Data<AppState>,
    client: Data<awc::Client>,
    auth: Result<GatewayAuth, ApiError>,
    request: HttpRequest,
    payload: Payload,
    id: web::Path<String>,
) -> HttpResponse {
    stored(
        Method::DELETE,
        ctx,
        state,
        client,
        auth,
        request,
        payload,
        id,
    )
    .await
}

#[expect(
    clippy::too_many_arguments,
    reason = "the extractors of the two handlers, passed on as they are"
)]
async fn stored(
    method: Method,
    ctx: RequestCtx,
    state: Data<AppState>,
    client: Data<awc::Client>,
    auth: Result<GatewayAuth, ApiError>,
    request: HttpRequest,
    payload: Payload,
    id: web::Path<String>,
) -> HttpResponse {
    let mut meter = Meter::start(&state, &ctx, STORED_ENDPOINT);
    let answer = forward_stored(
        &method, &state, &client, &mut meter, auth, &request, payload, &id,
    )
    .await;
    match answer {
        Ok((status, provider, body)) => {
            meter.succeed(status.as_u16(), Some(Usage::default()));
            HttpResponse::build(status)
                .insert_header((PROVIDER_HEADER, provider))
                .insert_header((CONTENT_TYPE, "application/json"))
                .body(body)
        }
        Err(error) => {
            meter.fail(&error);
            error.error_response()
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call's state, borrowed from the handler"
)]
async fn forward_stored(
    method: &Method,
    state: &AppState,
    client: &awc::Client,
    meter: &mut Meter,
    auth: Result<GatewayAuth, ApiError>,
    request: &HttpRequest,
    payload: Payload,
    id: &str,
) -> Result<(actix_web::http::StatusCode, String, Bytes), ApiError> {
    let (token, _slot, _) = accept(state, meter, auth, request, payload).await?;
    meter.admit_call(&token).await?;
    let unknown = || ApiError::NotFound(format!("Response with id '{id}' not found."));
    if !plausible_id(id) {
        return Err(unknown());
    }
    let owner = state
        .db
        .response_owner(id, token.id)
        .await?
        .ok_or_else(unknown)?;
    let lease = owner_lease(state, &owner)?;
    let spec = lease.provider.clone();
    meter.attempt(&spec.name, &lease.key_id, "");
    let path = format!("{RESPONSES_PATH}/{}", crate::providers::path_segment(id));
    let timeout = spec
        .policy
        .attempt_timeout
        .unwrap_or(state.settings.upstream.first_byte_timeout);
    let started = std::time::Instant::now();
    let sent = UpstreamClient::new(client)
        .request(
            method.clone(),
            &lease,
            &path,
            request.query_string(),
            Some(timeout),
            |upstream| upstream,
        )
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            lease.fail(send_failure(&error));
            return Err(ApiError::UpstreamFailed(format!(
                "Could not reach provider `{}`: {}",
                spec.name,
                send_error_summary(&error)
            )));
        }
    };
    let status = response.status();
    let failure = status_failure(&response);
    let body = match response
        .body()
        .limit(state.settings.upstream.max_response_bytes)
        .await
    {
        Ok(body) => body,
        Err(_) => {
            lease.fail(switchyard_actors::Failure::Connection);
            return Err(ApiError::UpstreamFailed(format!(
                "Provider `{}` broke off its answer",
                spec.name
            )));
        }
    };
    finish(lease, failure, started);
    if status.is_success() && *method == Method::DELETE {
        state.db.delete_response_owner(id).await?;
    }
    if status.is_server_error() {
        return Err(ApiError::UpstreamFailed(format!(
            "Provider `{}` answered {}",
            spec.name,
            status.as_u16()
        )));
    }
    // 2xx and the upstream's own 4xx (an id it no longer has) as they came.
    Ok((status, spec.name.clone(), body))
}

/// The key's outcome: a 404 for an id is not the key's fault.
fn finish(lease: Lease, failure: Option<switchyard_actors::Failure>, started: std::time::Instant) {
    match failure {
        None | Some(switchyard_actors::Failure::ClientError) => lease.finish(Outcome::Success {
            latency: started.elapsed(),
        }),
        Some(failure) => lease.fail(failure),
    }
}

/// A lease on the key that made the response, else on another key of its
/// provider (one project's keys share its stored responses).
fn owner_lease(state: &AppState, owner: &ResponseOwner) -> Result<Lease, ApiError> {
    let others: Tried = {
        let mut tried = Tried::default();
        for key in state.router.health(&owner.provider).unwrap_or_default() {
            if key.id != owner.key_id {
                tried.add(&owner.provider, &key.id);
            }
        }
        tried
    };
    let routed = state
        .router
        .route_pinned(&owner.provider, &others)
        .or_else(|_| {
            state
                .router
                .route_pinned(&owner.provider, &Tried::default())
        });
    routed.map_err(|error| match error {
        RouteError::UnknownModel(_) | RouteError::UnknownProvider(_) => {
            ApiError::NotFound(format!(
                "Response with id '{}' not found: its provider `{}` is no longer configured.",
                owner.response_id, owner.provider
            ))
        }
        RouteError::NoUsableKey {
            retry_after,
            rate_limited: true,
            ..
        } => ApiError::RateLimited {
            message: format!("Every key of provider `{}` is cooling down", owner.provider),
            retry_after,
        },
        RouteError::NoUsableKey { retry_after, .. } => ApiError::Unavailable {
            message: format!(
                "No healthy key of provider `{}` is available",
                owner.provider
            ),
            retry_after,
        },
    })
}
