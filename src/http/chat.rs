//! `POST /v1/chat/completions`, streamed or not.

use super::AppState;
use super::auth::GatewayAuth;
use super::body::read_body;
use super::context::RequestCtx;
use super::limits::ConcurrencySlot;
use super::meter::Meter;
use super::relay::ChatStreamRelay;
use super::upstream::{Answer, MalformedAnswer, Served, UpstreamRequest, call_with_failover};
use crate::error::ApiError;
use crate::providers::openai::{self, ChatRequest, Usage};
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::{Bytes, Data, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use switchyard_actors::ProviderSpec;

pub const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";
pub const PROVIDER_HEADER: &str = "x-switchyard-provider";

impl UpstreamRequest for ChatRequest {
    fn path(&self, _: &ProviderSpec) -> String {
        "chat/completions".to_owned()
    }

    fn body(&mut self, _: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        openai::upstream_chat_body(self, upstream_model)
    }

    fn stream(&self) -> bool {
        self.stream
    }

    fn is_content_event(&self, data: &[u8]) -> bool {
        openai::carries_content(data)
    }

    fn parse_answer(&self, body: &[u8]) -> Result<Option<Usage>, MalformedAnswer> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| MalformedAnswer)?;
        if !value.is_object() {
            return Err(MalformedAnswer);
        }
        Ok(openai::usage_of(&value))
    }
}

pub async fn chat_completions(
    ctx: RequestCtx,
    state: Data<AppState>,
    client: Data<awc::Client>,
    auth: Result<GatewayAuth, ApiError>,
    request: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let mut meter = Meter::start(&state, &ctx, "/v1/chat/completions");
    match serve(&state, &client, &mut meter, auth, &request, payload).await {
        Ok((served, hide_usage_chunk, slot)) => {
            respond(&state, served, meter, hide_usage_chunk, slot)
        }
        Err(error) => {
            slog::debug!(ctx.log, "chat.failed"; "code" => error.code(), "error" => %error);
            meter.fail(&error);
            error.error_response()
        }
    }
}

async fn serve(
    state: &AppState,
    client: &awc::Client,
    meter: &mut Meter,
    auth: Result<GatewayAuth, ApiError>,
    request: &HttpRequest,
    payload: Payload,
) -> Result<(Served, bool, ConcurrencySlot), ApiError> {
    let GatewayAuth(token) = auth?;
    meter.token(&token);
    // Refused before the body is read: a gateway at its limit sheds load
    // at once. The slot lives until the answer (or the stream) is done.
    let slot = state
        .concurrency
        .try_acquire()
        .ok_or(ApiError::ConcurrencyLimit)?;
    let raw = read_body(request, payload, state.settings.server.max_body_bytes).await?;
    let mut chat = openai::parse_chat_request(&raw)?;
    meter.request(&chat.model, chat.stream);
    if !token.allows_model(&chat.model) {
        return Err(ApiError::Forbidden(format!(
            "This token may not use the model `{}`",
            chat.model
        )));
    }
    let model = chat.model.clone();
    let hide_usage_chunk = chat.stream && !chat.client_wants_usage;
    let served = call_with_failover(state, client, meter, &model, &mut chat).await?;
    Ok((served, hide_usage_chunk, slot))
}

fn respond(
    state: &AppState,
    served: Served,
    meter: Meter,
    hide_usage_chunk: bool,
    slot: ConcurrencySlot,
) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((ATTEMPTS_HEADER, served.attempts.to_string()))
        .insert_header((PROVIDER_HEADER, served.provider));
    match served.answer {
        Answer::Json { body, usage } => {
            meter.succeed(200, usage);
            drop(slot);
            response
                .insert_header((CONTENT_TYPE, "application/json"))
                .body(body)
        }
        Answer::Stream(start) => {
            let relay = ChatStreamRelay::new(
                start,
                meter,
                hide_usage_chunk,
                state.settings.upstream.stream_idle_timeout,
                slot,
            );
            response
                .insert_header((CONTENT_TYPE, "text/event-stream"))
                .insert_header((CACHE_CONTROL, "no-cache"))
                // Ask reverse proxies (nginx) not to buffer the stream.
                .insert_header(("x-accel-buffering", "no"))
                .streaming(relay)
        }
    }
}
