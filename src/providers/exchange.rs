//! One chat exchange between a client format and whichever provider kind
//! serves it: the request turned into the provider's wire format, the answer
//! (whole, streamed or an error) turned back into the client's.
//!
//! Clients speak OpenAI chat (`/v1/chat/completions`), Anthropic Messages
//! (`/v1/messages`) or Gemini (`/v1beta/models/{model}:generateContent`);
//! providers speak one of three wires ([`Wire`]). Same
//! format on both sides passes through with only `model` rewritten; the
//! other pairs go through OpenAI's format, the gateway's own, so Gemini to an
//! Anthropic client is two translators chained event by event.

use super::anthropic::{
    self, AnthropicPassthroughStream, AnthropicRequestOptions, AnthropicToOpenAiStream,
    OpenAiToAnthropicStream,
};
use super::gemini::{self, GeminiPassthroughStream, GeminiToOpenAiStream, OpenAiToGeminiStream};
use super::openai::{self, ChatRequest, Usage};
use super::translate::{ChainedStream, StreamTranslator, TranslateError, unix_now};
use super::{RequestError, Wire, adapter_of};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use switchyard_actors::ProviderSpec;

/// The format a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    OpenAi,
    Anthropic,
    Gemini,
}

impl ClientFormat {
    /// The in-band error event that ends a broken stream, so the cut never
    /// looks like a clean end.
    pub fn stream_error_event(self, message: &str, code: &str) -> Bytes {
        match self {
            Self::OpenAi => openai::stream_error_event(message, code),
            Self::Anthropic => super::translate::anthropic_sse(
                "error",
                &super::wire_error::anthropic(
                    super::wire_error::anthropic_type_for_status(
                        super::wire_error::stream_cut_status(code),
                    ),
                    message,
                ),
            ),
            Self::Gemini => gemini::stream_error_event(message, code),
        }
    }
}

/// A client's chat request, ready to be sent to any provider kind.
#[derive(Debug, Clone)]
pub struct ChatExchange {
    pub client: ClientFormat,
    /// The request in OpenAI's format: the client's own, or translated from
    /// Anthropic's once at parse time.
    pub openai: ChatRequest,
    /// An Anthropic client's original body, passed to Anthropic upstreams
    /// as it is (fields the gateway does not know survive).
    anthropic: Option<Map<String, Value>>,
    /// A Gemini client's original body, passed to Gemini upstreams as it is.
    gemini: Option<Map<String, Value>>,
    /// Why a Gemini client's request cannot go to another wire (Gemini's
    /// own tools, files by URI): raised only if it is routed to one.
    gemini_only: Option<super::TranslateError>,
    options: AnthropicRequestOptions,
    created: i64,
    /// The client's `anthropic-beta` header, for Anthropic upstreams.
    anthropic_beta: Option<String>,
}

/// An upstream answer that is not what its API promises.
#[derive(Debug, Clone, Copy)]
pub struct Malformed;

impl ChatExchange {
    /// An OpenAI client's request (`/v1/chat/completions`).
    pub fn from_openai(raw: &[u8], options: AnthropicRequestOptions) -> Result<Self, RequestError> {
        Ok(Self {
            client: ClientFormat::OpenAi,
            openai: openai::parse_chat_request(raw)?,
            anthropic: None,
            gemini: None,
            gemini_only: None,
            options,
            created: unix_now(),
            anthropic_beta: None,
        })
    }

    /// A Gemini client's request (`/v1beta/models/{model}:generateContent`,
    /// or `:streamGenerateContent` when `stream`): the model comes from the
    /// URL. Validated and translated to OpenAI's format once; a request
    /// only a Gemini model can serve is kept, and refused (400) only when
    /// routed to another wire.
    pub fn from_gemini(
        raw: &[u8],
        model: &str,
        stream: bool,
        options: AnthropicRequestOptions,
    ) -> Result<Self, RequestError> {
        let value: Value = serde_json::from_slice(raw).map_err(|error| {
            RequestError::invalid(format!("The request body is not valid JSON: {error}"))
        })?;
        let Value::Object(body) = value else {
            return Err(RequestError::invalid(
                "The request body must be a JSON object",
            ));
        };
        if model.trim().is_empty() {
            return Err(RequestError::invalid_param(
                "model",
                "The URL names no model: /v1beta/models/{model}:generateContent",
            ));
        }
        let body_value = Value::Object(body);
        let (translated, gemini_only) =
            match gemini::gemini_to_openai_request(&body_value, model, stream) {
                Ok(translated) => (translated, None),
                Err(error @ TranslateError::Unsupported { .. }) => {
                    // What the gateway itself reads: model, stream, the
                    // output budget.
                    let mut minimal = json!({
                        "model": model,
                        "messages": [{ "role": "user", "content": "" }],
                        "stream": stream,
                    });
                    if let Some(max) = body_value
                        .pointer("/generationConfig/maxOutputTokens")
                        .filter(|max| max.is_u64())
                    {
                        minimal["max_tokens"] = max.clone();
                    }
                    (minimal, Some(error))
                }
                Err(error) => return Err(error.into()),
            };
        let openai = openai::parse_chat_request(
            &serde_json::to_vec(&translated).map_err(|_| RequestError::Encode)?,
        )?;
        let Value::Object(body) = body_value else {
            return Err(RequestError::Encode);
        };
        Ok(Self {
            client: ClientFormat::Gemini,
            openai: ChatRequest {
                // Usage is read from the upstream's own events.
                client_wants_usage: true,
                ..openai
            },
            anthropic: None,
            gemini: Some(body),
            gemini_only,
            options,
            created: unix_now(),
            anthropic_beta: None,
        })
    }

    /// An Anthropic client's request (`/v1/messages`).
    pub fn from_anthropic(
        raw: &[u8],
        options: AnthropicRequestOptions,
    ) -> Result<Self, RequestError> {
        let value: Value = serde_json::from_slice(raw).map_err(|error| {
            RequestError::invalid(format!("The request body is not valid JSON: {error}"))
        })?;
        let Value::Object(body) = value else {
            return Err(RequestError::invalid(
                "The request body must be a JSON object",
            ));
        };
        match body.get("model") {
            Some(Value::String(model)) if !model.trim().is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(RequestError::invalid_param(
                    "model",
                    "model: Field required",
                ));
            }
            Some(_) => {
                return Err(RequestError::invalid_param(
                    "model",
                    "model: must be a string",
                ));
            }
        }
        match body.get("messages") {
            Some(Value::Array(messages)) if !messages.is_empty() => {}
            Some(Value::Array(_)) => {
                return Err(RequestError::invalid_param(
                    "messages",
                    "messages: at least one message is required",
                ));
            }
            None | Some(Value::Null) => {
                return Err(RequestError::invalid_param(
                    "messages",
                    "messages: Field required",
                ));
            }
            Some(_) => {
                return Err(RequestError::invalid_param(
                    "messages",
                    "messages: must be an array",
                ));
            }
        }
        super::checks::anthropic_messages(&body)?;
        let translated = anthropic::anthropic_object_to_openai_request(&body)?;
        let openai = openai::parse_chat_request(
            &serde_json::to_vec(&translated).map_err(|_| RequestError::Encode)?,
        )?;
        Ok(Self {
            client: ClientFormat::Anthropic,
            openai: ChatRequest {
                // Usage is read from the upstream's own events; the client
                // never sees OpenAI chunks, so there is nothing to hide.
                client_wants_usage: true,
                ..openai
            },
            anthropic: Some(body),
            gemini: None,
            gemini_only: None,
            options,
            created: unix_now(),
            anthropic_beta: None,
        })
    }

    /// Beta features an Anthropic client asked for (`anthropic-beta`):
    /// forwarded to Anthropic upstreams, meaningless to the others.
    pub fn with_anthropic_beta(mut self, beta: Option<&str>) -> Self {
        self.anthropic_beta = beta.map(str::to_owned);
        self
    }

    /// Headers of the client's request the provider must see.
    pub fn forwarded_headers(&self, spec: &ProviderSpec) -> Vec<(&'static str, String)> {
        match (&self.anthropic_beta, self.client, adapter_of(spec).wire()) {
            (Some(beta), ClientFormat::Anthropic, Wire::Anthropic) => {
                vec![("anthropic-beta", beta.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// An Anthropic client's body as it came (empty for OpenAI clients).
    pub fn anthropic_body(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.anthropic
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    pub fn model(&self) -> &str {
        &self.openai.model
    }

    pub fn stream(&self) -> bool {
        self.openai.stream
    }

    pub fn max_tokens(&self) -> Option<i64> {
        self.openai.max_tokens
    }

    /// The request body for `spec`'s wire, for the upstream model name.
    pub fn upstream_body(
        &mut self,
        spec: &ProviderSpec,
        upstream_model: &str,
    ) -> Result<Bytes, RequestError> {
        let wire = adapter_of(spec).wire();
        if let (Some(error), false) = (&self.gemini_only, wire == Wire::Gemini) {
            return Err(error.clone().into());
        }
        let body = match (self.client, wire) {
            (ClientFormat::Gemini, Wire::Gemini) => {
                // The model is in the URL; the body goes as it came.
                Value::Object(self.gemini.clone().unwrap_or_default())
            }
            (_, Wire::OpenAi) => {
                return openai::upstream_chat_body(&mut self.openai, upstream_model);
            }
            (ClientFormat::Anthropic, Wire::Anthropic) => {
                let mut body = self.anthropic.clone().unwrap_or_default();
                body.insert("model".to_owned(), json!(upstream_model));
                // Anthropic requires it; other front-door clients may omit it.
                if body.get("max_tokens").is_none_or(Value::is_null) {
                    body.insert(
                        "max_tokens".to_owned(),
                        json!(self.options.default_max_tokens),
                    );
                }
                Value::Object(body)
            }
            (ClientFormat::OpenAi | ClientFormat::Gemini, Wire::Anthropic) => {
                let mut body = anthropic::openai_object_to_anthropic_request(
                    &self.openai.body,
                    &self.options,
                )?;
                body["model"] = json!(upstream_model);
                body
            }
            (_, Wire::Gemini) => gemini::openai_object_to_gemini_request(&self.openai.body)?,
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|_| RequestError::Encode)
    }

    /// Whether a stream event from `spec` commits the answer (see
    /// `openai::carries_content`): events before it are held so a failure
    /// among them still fails over invisibly.
    pub fn is_content_event(&self, spec: &ProviderSpec, data: &[u8]) -> bool {
        match adapter_of(spec).wire() {
            Wire::OpenAi => openai::carries_content(data),
            Wire::Anthropic => anthropic::carries_content(data),
            Wire::Gemini => true,
        }
    }

    /// A whole upstream answer in the client's format, with its usage.
    pub fn client_answer(
        &self,
        spec: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), Malformed> {
        let wire = adapter_of(spec).wire();
        if matches!(
            (wire, self.client),
            (Wire::OpenAi, ClientFormat::OpenAi) | (Wire::Anthropic, ClientFormat::Anthropic)
        ) {
            let usage = passed_through_usage(wire, &body)?;
            return Ok((body, usage));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|_| Malformed)?;
        if !value.is_object() {
            return Err(Malformed);
        }
        if (wire, self.client) == (Wire::Gemini, ClientFormat::Gemini) {
            // Relayed as it came; an answer without candidates is not one.
            if value.get("candidates").is_none() && value.get("promptFeedback").is_none() {
                return Err(Malformed);
            }
            return Ok((body, gemini::usage_of(&value)));
        }
        let usage = match wire {
            Wire::OpenAi => openai::usage_of(&value),
            Wire::Anthropic => anthropic::usage_of(&value),
            Wire::Gemini => gemini::usage_of(&value),
        };
        let translated = match (wire, self.client) {
            (Wire::OpenAi, ClientFormat::OpenAi)
            | (Wire::Anthropic, ClientFormat::Anthropic)
            | (Wire::Gemini, ClientFormat::Gemini) => {
                return Ok((body, usage));
            }
            (Wire::OpenAi, ClientFormat::Gemini) => {
                gemini::openai_to_gemini_response(&value, self.model())
            }
            (Wire::Anthropic, ClientFormat::Gemini) => {
                anthropic::anthropic_to_openai_response(&value, self.created)
                    .and_then(|openai| gemini::openai_to_gemini_response(&openai, self.model()))
            }
            (Wire::OpenAi, ClientFormat::Anthropic) => {
                anthropic::openai_to_anthropic_response(&value)
            }
            (Wire::Anthropic, ClientFormat::OpenAi) => {
                anthropic::anthropic_to_openai_response(&value, self.created)
            }
            (Wire::Gemini, client) => {
                gemini::gemini_to_openai_response(&value, self.model(), self.created).and_then(
                    |openai| match client {
                        ClientFormat::Anthropic => anthropic::openai_to_anthropic_response(&openai),
                        // Gemini to Gemini returned above.
                        ClientFormat::OpenAi | ClientFormat::Gemini => Ok(openai),
                    },
                )
            }
        }
        .map_err(|_: TranslateError| Malformed)?;
        let bytes = serde_json::to_vec(&translated).map_err(|_| Malformed)?;
        Ok((Bytes::from(bytes), usage))
    }

    /// An upstream's 4xx error body in the client's error shape.
    pub fn client_error(&self, spec: &ProviderSpec, status: u16, body: &[u8]) -> Option<Bytes> {
        let wire = adapter_of(spec).wire();
        let same = matches!(
            (wire, self.client),
            (Wire::OpenAi, ClientFormat::OpenAi)
                | (Wire::Anthropic, ClientFormat::Anthropic)
                | (Wire::Gemini, ClientFormat::Gemini)
        );
        if same {
            return None;
        }
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let openai_shape = match wire {
            Wire::OpenAi => value,
            Wire::Anthropic => anthropic::anthropic_error_to_openai(&value),
            Wire::Gemini => gemini::gemini_error_to_openai(&value),
        };
        let out = match self.client {
            ClientFormat::OpenAi => openai_shape,
            ClientFormat::Anthropic => anthropic::openai_error_to_anthropic(&openai_shape, status),
            ClientFormat::Gemini => gemini::openai_error_to_gemini(&openai_shape, status),
        };
        serde_json::to_vec(&out).ok().map(Bytes::from)
    }

    /// The stream translator from `spec`'s wire to the client's format;
    /// `None` for OpenAI to OpenAI, which the relay passes through natively.
    pub fn stream_translator(&self, spec: &ProviderSpec) -> Option<Box<dyn StreamTranslator>> {
        let include_usage = self.openai.client_wants_usage;
        let model = self.model().to_owned();
        Some(match (adapter_of(spec).wire(), self.client) {
            (Wire::OpenAi, ClientFormat::OpenAi) => return None,
            (Wire::Anthropic, ClientFormat::Anthropic) => {
                Box::new(AnthropicPassthroughStream::default())
            }
            (Wire::OpenAi, ClientFormat::Anthropic) => {
                Box::new(OpenAiToAnthropicStream::new(Some(model)))
            }
            (Wire::Anthropic, ClientFormat::OpenAi) => {
                Box::new(AnthropicToOpenAiStream::new(self.created, include_usage))
            }
            (Wire::Gemini, ClientFormat::OpenAi) => Box::new(GeminiToOpenAiStream::new(
                &model,
                self.created,
                include_usage,
            )),
            (Wire::Gemini, ClientFormat::Anthropic) => Box::new(ChainedStream {
                first: GeminiToOpenAiStream::new(&model, self.created, true),
                second: OpenAiToAnthropicStream::new(Some(model)),
            }),
            (Wire::Gemini, ClientFormat::Gemini) => Box::new(GeminiPassthroughStream::default()),
            (Wire::OpenAi, ClientFormat::Gemini) => Box::new(OpenAiToGeminiStream::new(&model)),
            (Wire::Anthropic, ClientFormat::Gemini) => Box::new(ChainedStream {
                first: AnthropicToOpenAiStream::new(self.created, true),
                second: OpenAiToGeminiStream::new(&model),
            }),
        })
    }
}

/// The usage of an answer that goes to the client as it came: the whole
/// body is still checked to be one JSON object, but only its `usage` member
/// is built into a [`Value`]. Parsing the whole answer into a `Value` just
/// to read its usage cost ~3% of the gateway's CPU (issue 11 profile).
fn passed_through_usage(wire: Wire, body: &[u8]) -> Result<Option<Usage>, Malformed> {
    #[derive(serde::Deserialize)]
    struct Answer {
        /// `Some(Value::Null)` for `"usage": null`, as a full parse reads it.
        #[serde(default, deserialize_with = "present")]
        usage: Option<Value>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        serde::Deserialize::deserialize(d).map(Some)
    }
    // serde reads a struct from a JSON array too; the answer must be an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Malformed);
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|_| Malformed)?;
    let Some(usage) = answer.usage else {
        return Ok(None);
    };
    let mut holder = Map::with_capacity(1);
    holder.insert("usage".to_owned(), usage);
    let holder = Value::Object(holder);
    Ok(match wire {
        Wire::OpenAi => openai::usage_of(&holder),
        Wire::Anthropic => anthropic::usage_of(&holder),
        Wire::Gemini => gemini::usage_of(&holder),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::wire_error::{SERVER_SHUTTING_DOWN, STREAM_IDLE_TIMEOUT};

    /// The event's JSON (the last `data:` line of one SSE frame).
    fn event_json(frame: &Bytes) -> Value {
        let text = String::from_utf8_lossy(frame);
        let data = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .next_back()
            .unwrap_or_default();
        serde_json::from_str(data).unwrap_or_default()
    }

    /// A stream the gateway cuts tells Gemini and Anthropic clients why in
    /// their own terms: a silent upstream is a timeout, a stopping server
    /// unavailable, a broken upstream an internal error.
    #[test]
    fn cut_streams_end_with_the_status_of_their_cause() {
        let gemini = |code| event_json(&ClientFormat::Gemini.stream_error_event("cut", code));
        for (code, status, name) in [
            (STREAM_IDLE_TIMEOUT, 504, "DEADLINE_EXCEEDED"),
            (SERVER_SHUTTING_DOWN, 503, "UNAVAILABLE"),
            ("stream_interrupted", 500, "INTERNAL"),
        ] {
            let event = gemini(code);
            assert_eq!(event.pointer("/error/code"), Some(&json!(status)), "{code}");
            assert_eq!(event.pointer("/error/status"), Some(&json!(name)), "{code}");
        }
        let anthropic = |code| event_json(&ClientFormat::Anthropic.stream_error_event("cut", code));
        assert_eq!(
            anthropic(STREAM_IDLE_TIMEOUT).pointer("/error/type"),
            Some(&json!("timeout_error"))
        );
        assert_eq!(
            anthropic("stream_interrupted").pointer("/error/type"),
            Some(&json!("api_error"))
        );
        // OpenAI's event names the code itself.
        let openai =
            event_json(&ClientFormat::OpenAi.stream_error_event("cut", STREAM_IDLE_TIMEOUT));
        assert_eq!(
            openai.pointer("/error/code"),
            Some(&json!(STREAM_IDLE_TIMEOUT))
        );
    }

    /// What the full parse read before: the reference the cheap path keeps.
    fn full_parse(wire: Wire, body: &[u8]) -> Result<Option<Usage>, Malformed> {
        let value: Value = serde_json::from_slice(body).map_err(|_| Malformed)?;
        if !value.is_object() {
            return Err(Malformed);
        }
        Ok(match wire {
            Wire::OpenAi => openai::usage_of(&value),
            Wire::Anthropic => anthropic::usage_of(&value),
            Wire::Gemini => gemini::usage_of(&value),
        })
    }

    #[test]
    fn a_passed_through_answer_reads_as_the_full_parse_did() {
        let bodies: &[&[u8]] = &[
            br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            br#"  {"usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":2}}"#,
            br#"{"usage":null}"#,
            br#"{"usage":{"prompt_tokens":"3","completion_tokens":4.5}}"#,
            br#"{"usage":[1,2]}"#,
            br#"{"choices":[]}"#,
            br#"{"usage":{"prompt_tokens":-7,"completion_tokens":99999999999999}}"#,
            br#"[{"usage":{"prompt_tokens":3}}]"#,
            br#"{"usage":{"prompt_tokens":3}} trailing"#,
            br#"{"usage":{"prompt_tokens":3}"#,
            b"",
            b"null",
        ];
        for wire in [Wire::OpenAi, Wire::Anthropic] {
            for body in bodies {
                let cheap = passed_through_usage(wire, body).map_err(|_| "malformed");
                let full = full_parse(wire, body).map_err(|_| "malformed");
                assert_eq!(cheap, full, "{wire:?} {}", String::from_utf8_lossy(body));
            }
        }
    }
}
