//! The chat front doors, streamed or not: `POST /v1/chat/completions`
//! (OpenAI's format) and `POST /v1/messages` (Anthropic's), each served by
//! any provider kind through `providers::exchange`.

use crate::error::ApiError;
use crate::gateway::auth::GatewayAuth;
use crate::gateway::failover::{
    Answer, MalformedAnswer, Served, StreamStart, UpstreamRequest, call_with_failover,
};
use crate::gateway::meter::Meter;
use crate::gateway::pipeline::{ClientCall, FrontDoor, counted_answer, serve};
use crate::gateway::relay::StreamMode;
use crate::gateway::{AppState, accept, require_model};
use crate::http::context::RequestCtx;
use crate::providers::anthropic::AnthropicRequestOptions;
use crate::providers::exchange::{ChatExchange, ClientFormat};
use crate::providers::openai::{ChatStreamState, Usage};
use crate::providers::{Wire, adapter_of};
use actix_web::web::{Bytes, Data, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use std::cell::Cell;
use switchyard_actors::ProviderSpec;

impl UpstreamRequest for ChatExchange {
    fn path(&self, spec: &ProviderSpec, upstream_model: &str) -> Result<String, ApiError> {
        Ok(adapter_of(spec).chat_path(spec, upstream_model, self.stream()))
    }

    fn body(&mut self, spec: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        Ok(self.upstream_body(spec, upstream_model)?)
    }

    fn stream(&self) -> bool {
        ChatExchange::stream(self)
    }

    fn is_content_event(&self, spec: &ProviderSpec, data: &[u8]) -> bool {
        ChatExchange::is_content_event(self, spec, data)
    }

    fn parse_answer(
        &self,
        spec: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer> {
        self.client_answer(spec, body).map_err(|_| MalformedAnswer)
    }

    fn client_error(&self, spec: &ProviderSpec, status: u16, body: &[u8]) -> Option<Bytes> {
        ChatExchange::client_error(self, spec, status, body)
    }

    fn forwarded_headers(&self, spec: &ProviderSpec) -> Vec<(&'static str, String)> {
        ChatExchange::forwarded_headers(self, spec)
    }
}

impl FrontDoor for ChatExchange {
    type Route = ClientFormat;

    fn endpoint(format: ClientFormat) -> &'static str {
        match format {
            ClientFormat::OpenAi => "/v1/chat/completions",
            ClientFormat::Anthropic => "/v1/messages",
            // Streamed or not: the usage row's `stream` says which.
            ClientFormat::Gemini => super::gemini::GENERATE_ENDPOINT,
        }
    }

    fn parse(
        format: ClientFormat,
        raw: &Bytes,
        request: &HttpRequest,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let options = AnthropicRequestOptions {
            default_max_tokens: state.settings.upstream.default_max_tokens,
        };
        Ok(match format {
            ClientFormat::OpenAi => ChatExchange::from_openai(raw, options)?,
            ClientFormat::Anthropic => ChatExchange::from_anthropic(raw, options)?
                .with_anthropic_beta(
                    request
                        .headers()
                        .get("anthropic-beta")
                        .and_then(|value| value.to_str().ok()),
                ),
            ClientFormat::Gemini => {
                let (model, method) = super::gemini::model_and_method(request)?;
                ChatExchange::from_gemini(raw, model, method.streams(), options)?
            }
        })
    }

    fn model(&self) -> &str {
        ChatExchange::model(self)
    }

    fn max_tokens(&self) -> Option<i64> {
        ChatExchange::max_tokens(self)
    }

    fn stream_mode(&self, format: ClientFormat, start: &StreamStart) -> StreamMode {
        match self.stream_translator(&start.lease.provider) {
            Some(translator) => StreamMode::Translated {
                translator,
                client: format,
            },
            None => StreamMode::Native(ChatStreamState::new(!self.openai.client_wants_usage)),
        }
    }

    fn error_response(format: ClientFormat, error: &ApiError) -> HttpResponse {
        match format {
            ClientFormat::OpenAi => error.error_response(),
            ClientFormat::Anthropic => error.anthropic_response(),
            ClientFormat::Gemini => error.gemini_response(),
        }
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(call: ClientCall) -> HttpResponse {
    serve::<ChatExchange>(ClientFormat::OpenAi, call).await
}

/// `POST /v1/messages`: the Anthropic-compatible front door (Claude Code
/// with `ANTHROPIC_BASE_URL` pointing here). Any provider serves it; errors
/// come back in Anthropic's shape.
pub async fn messages(call: ClientCall) -> HttpResponse {
    serve::<ChatExchange>(ClientFormat::Anthropic, call).await
}

/// `POST /v1/messages/count_tokens`: Anthropic upstreams count exactly
/// (the request is passed through); for every other provider kind the
/// gateway estimates from the text (`crate::providers::estimate`), as those APIs have
/// no equivalent. Answers `{"input_tokens": N}`. It takes a concurrency
/// slot like every client call, and a call that reaches an upstream counts
/// against the token's rate limits (a local estimate gives its place back).
pub async fn count_tokens(
    ctx: RequestCtx,
    state: Data<AppState>,
    client: Data<awc::Client>,
    auth: Result<GatewayAuth, ApiError>,
    request: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let mut meter = Meter::start(&state, &ctx, "/v1/messages/count_tokens");
    let counted = count(&state, &client, &mut meter, auth, &request, payload).await;
    counted_answer(meter, counted, ApiError::anthropic_response)
}

async fn count(
    state: &AppState,
    client: &awc::Client,
    meter: &mut Meter,
    auth: Result<GatewayAuth, ApiError>,
    request: &HttpRequest,
    payload: Payload,
) -> Result<Bytes, ApiError> {
    let (token, _slot, raw) = accept(state, meter, auth, request, payload).await?;
    // Validated as a Messages request (same rules, same errors).
    let exchange = ChatExchange::from_anthropic(&raw, AnthropicRequestOptions::default())?;
    meter.request(exchange.model(), false);
    require_model(&token, exchange.model())?;
    let model = exchange.model().to_owned();
    let mut counting = CountTokens {
        body: exchange.anthropic_body().clone(),
        estimate_locally: Cell::new(false),
    };
    // Held here rather than by the meter: a count carries no tokens, and
    // one answered locally gives its place in the rate window back.
    let mut admission = state.enforcer.admit_call(&token).await?;
    let counted = call_with_failover(state, client, meter, &model, &mut counting).await;
    if counting.estimate_locally.get() {
        state.enforcer.release(admission);
    } else {
        state.enforcer.settle(&mut admission, 0, 0);
    }
    match counted {
        Ok(Served {
            answer: Answer::Json { body, .. },
            ..
        }) => Ok(body),
        Ok(_) => Err(ApiError::Internal),
        Err(_) if counting.estimate_locally.get() => {
            let tokens = crate::providers::estimate::tokens_for_chars(
                crate::providers::estimate::text_chars(&raw),
            );
            Ok(Bytes::from(
                serde_json::json!({ "input_tokens": tokens }).to_string(),
            ))
        }
        Err(error) => Err(error),
    }
}

/// A count_tokens request on its way to an Anthropic upstream.
struct CountTokens {
    body: serde_json::Map<String, serde_json::Value>,
    /// Set when the routed provider cannot count (not Anthropic).
    estimate_locally: Cell<bool>,
}

impl UpstreamRequest for CountTokens {
    fn path(&self, spec: &ProviderSpec, _: &str) -> Result<String, ApiError> {
        if adapter_of(spec).wire() == Wire::Anthropic {
            Ok("messages/count_tokens".to_owned())
        } else {
            self.estimate_locally.set(true);
            Err(ApiError::bad_request("counted locally"))
        }
    }

    fn body(&mut self, _: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        super::with_upstream_model(&mut self.body, upstream_model)
    }

    fn stream(&self) -> bool {
        false
    }

    fn parse_answer(
        &self,
        _: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer> {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| MalformedAnswer)?;
        if value
            .get("input_tokens")
            .and_then(serde_json::Value::as_i64)
            .is_none()
        {
            return Err(MalformedAnswer);
        }
        Ok((body, None))
    }
}
