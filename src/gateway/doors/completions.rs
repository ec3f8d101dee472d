//! `POST /v1/completions` (legacy text completions, streamed or not) and
//! `POST /v1/embeddings` (float or base64 vectors). Both are OpenAI-only
//! APIs: the body passes through with `model` rewritten to providers whose
//! adapter has the endpoint; a provider without it answers a clear 400.

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::failover::{MalformedAnswer, StreamStart, UpstreamRequest};
use crate::gateway::pipeline::{ClientCall, FrontDoor, serve};
use crate::gateway::relay::StreamMode;
use crate::providers::adapter_of;
use crate::providers::openai::{self, ChatStreamState, Usage};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};
use switchyard_actors::ProviderSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Completions,
    Embeddings,
}

impl Endpoint {
    fn route(self) -> &'static str {
        match self {
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
        }
    }

    /// The field that carries the input, required by OpenAI.
    fn input_field(self) -> &'static str {
        match self {
            Self::Completions => "prompt",
            Self::Embeddings => "input",
        }
    }
}

/// A validated completions or embeddings request.
struct OpenAiOnly {
    endpoint: Endpoint,
    body: Map<String, Value>,
    model: String,
    stream: bool,
    client_wants_usage: bool,
}

impl OpenAiOnly {
    fn parse(endpoint: Endpoint, raw: &[u8]) -> Result<Self, ApiError> {
        let (body, model) = openai::object_with_model(raw)?;
        let field = endpoint.input_field();
        match body.get(field) {
            Some(Value::String(_) | Value::Array(_)) => {}
            None | Some(Value::Null) => {
                return Err(ApiError::bad_param(
                    field,
                    format!("You must provide a `{field}` parameter"),
                ));
            }
            Some(_) => {
                return Err(ApiError::bad_param(
                    field,
                    format!("`{field}` must be a string or an array"),
                ));
            }
        }
        let stream = match (endpoint, body.get("stream")) {
            (_, None | Some(Value::Null)) => false,
            (Endpoint::Completions, Some(Value::Bool(stream))) => *stream,
            (Endpoint::Embeddings, Some(_)) => {
                return Err(ApiError::bad_param(
                    "stream",
                    "Embeddings cannot be streamed",
                ));
            }
            (_, Some(_)) => {
                return Err(ApiError::bad_param("stream", "`stream` must be a boolean"));
            }
        };
        if endpoint == Endpoint::Completions {
            crate::providers::checks::openai_common(&body)?;
        }
        let client_wants_usage = body
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            endpoint,
            body,
            model,
            stream,
            client_wants_usage,
        })
    }
}

impl UpstreamRequest for OpenAiOnly {
    fn path(&self, spec: &ProviderSpec, upstream_model: &str) -> Result<String, ApiError> {
        let adapter = adapter_of(spec);
        let path = match self.endpoint {
            Endpoint::Completions => adapter.completions_path(spec, upstream_model),
            Endpoint::Embeddings => adapter.embeddings_path(spec, upstream_model),
        };
        path.ok_or_else(|| super::no_such_endpoint(&self.model, spec, self.endpoint.route()))
    }

    fn body(&mut self, _: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        if self.stream && !self.client_wants_usage {
            // Every stream is metered from its usage chunk (hidden again
            // from clients that did not ask for it).
            self.body.insert(
                "stream_options".to_owned(),
                json!({ "include_usage": true }),
            );
        }
        super::with_upstream_model(&mut self.body, upstream_model)
    }

    fn stream(&self) -> bool {
        self.stream
    }

    /// Completion chunks carry `choices[].text`, not chat deltas.
    fn is_content_event(&self, _: &ProviderSpec, data: &[u8]) -> bool {
        if data == b"[DONE]" {
            return true;
        }
        let Ok(value) = serde_json::from_slice::<Value>(data) else {
            return true;
        };
        value.get("error").is_some()
            || value
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(|choices| {
                    choices.iter().any(|choice| {
                        choice
                            .get("text")
                            .and_then(Value::as_str)
                            .is_some_and(|text| !text.is_empty())
                            || choice
                                .get("finish_reason")
                                .is_some_and(|reason| !reason.is_null())
                    })
                })
    }

    fn parse_answer(
        &self,
        _: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer> {
        let value: Value = serde_json::from_slice(&body).map_err(|_| MalformedAnswer)?;
        let well_formed = match self.endpoint {
            Endpoint::Completions => value.get("choices").is_some_and(Value::is_array),
            Endpoint::Embeddings => value.get("data").is_some_and(Value::is_array),
        };
        if !well_formed {
            return Err(MalformedAnswer);
        }
        Ok((body, openai::usage_of(&value)))
    }
}

impl FrontDoor for OpenAiOnly {
    type Route = Endpoint;

    fn endpoint(endpoint: Endpoint) -> &'static str {
        endpoint.route()
    }

    fn parse(
        endpoint: Endpoint,
        raw: &Bytes,
        _: &HttpRequest,
        _: &AppState,
    ) -> Result<Self, ApiError> {
        OpenAiOnly::parse(endpoint, raw)
    }

    fn model(&self) -> &str {
        &self.model
    }

    /// Embeddings generate no tokens; completions at most `max_tokens`.
    fn max_tokens(&self) -> Option<i64> {
        match self.endpoint {
            Endpoint::Embeddings => Some(0),
            Endpoint::Completions => self.body.get("max_tokens").and_then(Value::as_i64),
        }
    }

    /// OpenAI events pass through, the injected usage chunk hidden from
    /// clients that did not ask for it.
    fn stream_mode(&self, _: Endpoint, _: &StreamStart) -> StreamMode {
        StreamMode::Native(ChatStreamState::new(
            self.stream && !self.client_wants_usage,
        ))
    }
}

/// `POST /v1/completions`.
pub async fn completions(call: ClientCall) -> HttpResponse {
    serve::<OpenAiOnly>(Endpoint::Completions, call).await
}

/// `POST /v1/embeddings`.
pub async fn embeddings(call: ClientCall) -> HttpResponse {
    serve::<OpenAiOnly>(Endpoint::Embeddings, call).await
}
