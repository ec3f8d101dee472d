//! The Gemini front door, Google's Generative Language API (`/v1beta`), for
//! the `google-genai` SDKs and the Gemini CLI (`GOOGLE_GEMINI_BASE_URL`
//! pointing here, a gateway token as the API key):
//!
//! - `POST /v1beta/models/{model}:generateContent` and
//!   `:streamGenerateContent` (answered as SSE, as with `alt=sse`): served
//!   by any provider kind through `providers::exchange` (passed through to
//!   `gemini` providers), with the chat doors' limits, failover and metering;
//! - `POST /v1beta/models/{model}:countTokens`: exact from `gemini`
//!   upstreams, estimated from the text for the others;
//! - `GET /v1beta/models` and `GET /v1beta/models/{model}`: the models the
//!   token may use, in Gemini's shape.
//!
//! The token comes in `x-goog-api-key`, `?key=` or `Authorization: Bearer`
//! (`gateway::auth::presented_token`); every error is in Google's shape,
//! `{"error":{"code","message","status"}}`.

use crate::error::ApiError;
use crate::gateway::auth::GatewayAuth;
use crate::gateway::failover::{
    Answer, MalformedAnswer, Served, UpstreamRequest, call_with_failover,
};
use crate::gateway::meter::Meter;
use crate::gateway::pipeline::{ClientCall, counted_answer, serve};
use crate::gateway::{AppState, accept, require_model};
use crate::providers::anthropic::AnthropicRequestOptions;
use crate::providers::exchange::{ChatExchange, ClientFormat};
use crate::providers::openai::Usage;
use crate::providers::{Wire, adapter_of, gemini, path_segment};
use crate::tokens::TokenInfo;
use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};
use std::cell::Cell;
use switchyard_actors::{ListModels, ProviderSpec};

/// The usage rows' endpoint of generate calls, streamed or not (the row's
/// `stream` says which).
pub const GENERATE_ENDPOINT: &str = "/v1beta/models/{model}:generateContent";
/// The usage rows' endpoint of token counts.
pub const COUNT_ENDPOINT: &str = "/v1beta/models/{model}:countTokens";

/// What a `/v1beta/models/{model}:{method}` call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    Stream,
    CountTokens,
}

impl Method {
    pub fn streams(self) -> bool {
        self == Self::Stream
    }
}

/// The model and method of a `/v1beta/models/{target}` call, `target`
/// being `{model}:{method}`; 404 for a method the gateway does not serve.
pub fn model_and_method(request: &HttpRequest) -> Result<(&str, Method), ApiError> {
    let target = request.match_info().get("target").unwrap_or_default();
    let Some((model, method)) = target.rsplit_once(':') else {
        return Err(ApiError::NotFound(format!(
            "POST /v1beta/models/{target} names no method: call \
             /v1beta/models/{{model}}:generateContent, :streamGenerateContent or :countTokens"
        )));
    };
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "countTokens" => Method::CountTokens,
        other => {
            return Err(ApiError::NotFound(format!(
                "The method `{other}` is not served by this gateway: generateContent, \
                 streamGenerateContent and countTokens are"
            )));
        }
    };
    Ok((model.strip_prefix("models/").unwrap_or(model), method))
}

/// `POST /v1beta/models/{model}:{method}`.
pub async fn model_call(call: ClientCall) -> HttpResponse {
    let method = match model_and_method(&call.4) {
        Ok((_, method)) => method,
        Err(error) => return error.gemini_response(),
    };
    match method {
        Method::CountTokens => count_tokens(call).await,
        Method::Generate | Method::Stream => {
            serve::<ChatExchange>(ClientFormat::Gemini, call).await
        }
    }
}

/// `:countTokens`: passed through to Gemini upstreams (exact); for every
/// other provider kind estimated from the text (`crate::providers::estimate`), as in
/// `/v1/messages/count_tokens`. Answers `{"totalTokens": N}`.
async fn count_tokens(call: ClientCall) -> HttpResponse {
    let (ctx, state, client, auth, request, payload) = call;
    let mut meter = Meter::start(&state, &ctx, COUNT_ENDPOINT);
    let counted = async {
        let (token, _slot, raw) = accept(&state, &mut meter, auth, &request, payload).await?;
        let (model, _) = model_and_method(&request)?;
        count(&state, &client, &mut meter, &token, model, &raw).await
    }
    .await;
    counted_answer(meter, counted, ApiError::gemini_response)
}

async fn count(
    state: &AppState,
    client: &awc::Client,
    meter: &mut Meter,
    token: &TokenInfo,
    model: &str,
    raw: &Bytes,
) -> Result<Bytes, ApiError> {
    let value: Value = serde_json::from_slice(raw).map_err(|error| {
        ApiError::bad_request(format!("The request body is not valid JSON: {error}"))
    })?;
    let prompt = gemini::count_tokens_request(&value)?;
    // Validated as a generate request (same rules, same errors).
    let encoded = serde_json::to_vec(&prompt).map_err(|_| ApiError::Internal)?;
    ChatExchange::from_gemini(&encoded, model, false, AnthropicRequestOptions::default())?;
    meter.request(model, false);
    require_model(token, model)?;
    let Value::Object(body) = value else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object",
        ));
    };
    let mut counting = CountTokens {
        body,
        estimate_locally: Cell::new(false),
    };
    // Held here rather than by the meter: a count carries no tokens, and
    // one answered locally gives its place in the rate window back.
    let mut admission = state.enforcer.admit_call(token).await?;
    let counted = call_with_failover(state, client, meter, model, &mut counting).await;
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
                crate::providers::estimate::text_chars(&encoded),
            );
            Ok(Bytes::from(json!({ "totalTokens": tokens }).to_string()))
        }
        Err(error) => Err(error),
    }
}

/// A countTokens request on its way to a Gemini upstream.
struct CountTokens {
    body: Map<String, Value>,
    /// Set when the routed provider cannot count (not Gemini).
    estimate_locally: Cell<bool>,
}

impl UpstreamRequest for CountTokens {
    fn path(&self, spec: &ProviderSpec, upstream_model: &str) -> Result<String, ApiError> {
        if adapter_of(spec).wire() == Wire::Gemini {
            let model = upstream_model
                .strip_prefix("models/")
                .unwrap_or(upstream_model);
            Ok(format!("models/{}:countTokens", path_segment(model)))
        } else {
            self.estimate_locally.set(true);
            Err(ApiError::bad_request("counted locally"))
        }
    }

    fn body(&mut self, _: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        // A wrapped generate request names its model: the upstream's.
        if let Some(Value::Object(inner)) = self.body.get_mut("generateContentRequest") {
            let model = upstream_model
                .strip_prefix("models/")
                .unwrap_or(upstream_model);
            inner.insert("model".to_owned(), json!(format!("models/{model}")));
        }
        serde_json::to_vec(&self.body)
            .map(Bytes::from)
            .map_err(|_| ApiError::Internal)
    }

    fn stream(&self) -> bool {
        false
    }

    fn parse_answer(
        &self,
        _: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer> {
        let value: Value = serde_json::from_slice(&body).map_err(|_| MalformedAnswer)?;
        if value.get("totalTokens").and_then(Value::as_i64).is_none() {
            return Err(MalformedAnswer);
        }
        Ok((body, None))
    }
}

/// A served model in Gemini's `Model` shape.
fn model_entry(id: &str, owned_by: &str) -> Value {
    json!({
        "name": format!("models/{id}"),
        "baseModelId": id,
        "version": "switchyard",
        "displayName": id,
        "description": format!("{id}, served by Switchyard ({owned_by})"),
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

/// The models the token may use: (id, owned_by).
async fn allowed_models(
    state: &AppState,
    auth: &GatewayAuth,
) -> Result<Vec<(String, String)>, ApiError> {
    let models = state
        .router
        .actor()
        .send(ListModels)
        .await
        .map_err(|_| ApiError::Internal)?;
    Ok(models
        .into_iter()
        .filter(|model| auth.0.allows_model(&model.id))
        .map(|model| (model.id, model.owned_by))
        .collect())
}

/// `GET /v1beta/models`: every model the token may use, in one page.
pub async fn list_models(
    state: Data<AppState>,
    auth: Result<GatewayAuth, ApiError>,
) -> HttpResponse {
    let listed = async {
        let models = allowed_models(&state, &auth?).await?;
        let models: Vec<Value> = models
            .iter()
            .map(|(id, owned_by)| model_entry(id, owned_by))
            .collect();
        Ok::<_, ApiError>(json!({ "models": models }))
    }
    .await;
    match listed {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(error) => error.gemini_response(),
    }
}

/// `GET /v1beta/models/{model}`: one model, 404 when the token may not use
/// it or nobody serves it.
pub async fn get_model(
    state: Data<AppState>,
    auth: Result<GatewayAuth, ApiError>,
    request: HttpRequest,
) -> HttpResponse {
    let target = request.match_info().get("target").unwrap_or_default();
    let wanted = target.strip_prefix("models/").unwrap_or(target);
    let found = async {
        let models = allowed_models(&state, &auth?).await?;
        models
            .iter()
            .find(|(id, _)| id == wanted)
            .map(|(id, owned_by)| model_entry(id, owned_by))
            .ok_or_else(|| ApiError::ModelNotFound(wanted.to_owned()))
    }
    .await;
    match found {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(error) => error.gemini_response(),
    }
}
