//! OpenAI's Responses API (`POST /v1/responses`), served by any provider
//! kind: passed through to `openai` upstreams, which speak it (and keep
//! responses for `GET`/`DELETE` and `previous_response_id`), translated to
//! chat completions for every other kind, composed with the chat
//! translations (`super::exchange`) for Anthropic and Gemini.
//!
//! - [`request`]: the client's request read, and turned into a chat request;
//! - [`response`]: a chat completion turned into a `response` object;
//! - [`stream`]: chat chunks turned into Responses events, and an OpenAI
//!   upstream's own events read on their way through.

pub mod request;
pub mod response;
pub mod stream;

pub use request::{ResponsesRequest, parse_responses_request, responses_to_chat_request};
pub use response::{ResponseFrame, chat_to_responses_response, responses_usage, usage_of};
pub use stream::{
    ChatToResponsesStream, ResponsesPassthroughStream, carries_content, responses_error_event,
};

use super::anthropic::AnthropicRequestOptions;
use super::exchange::ChatExchange;
use super::openai::Usage;
use super::translate::{ChainedStream, StreamTranslator, TranslateError};
use super::{RequestError, kind_of};
use crate::config::ProviderKind;
use bytes::Bytes;
use serde_json::Value;
use switchyard_actors::ProviderSpec;

/// The path of the Responses endpoint below an OpenAI base URL.
pub const RESPONSES_PATH: &str = "responses";

/// Whether `spec`'s provider speaks the Responses API itself (OpenAI's own
/// API; OpenAI-compatible servers mostly offer only chat).
pub fn speaks_responses(spec: &ProviderSpec) -> bool {
    kind_of(spec) == ProviderKind::Openai
}

/// A client's Responses request, ready for any provider kind.
#[derive(Debug, Clone)]
pub struct ResponsesExchange {
    pub request: ResponsesRequest,
    /// The request as chat, for providers that do not speak Responses;
    /// an `Err` (a built-in tool, `previous_response_id`) is answered only
    /// if such a provider is chosen.
    chat: Result<ChatExchange, RequestError>,
    /// Ids and echoed fields of a translated answer.
    pub frame: ResponseFrame,
}

impl ResponsesExchange {
    /// Reads the client's body; `response_id` and `created_at` name the
    /// answer if it is translated (an OpenAI upstream names its own).
    pub fn new(
        raw: &[u8],
        options: AnthropicRequestOptions,
        response_id: String,
        created_at: i64,
    ) -> Result<Self, RequestError> {
        let request = parse_responses_request(raw)?;
        let chat = responses_to_chat_request(&request.body)
            .map_err(RequestError::from)
            .and_then(|chat| {
                let bytes = serde_json::to_vec(&chat).map_err(|_| RequestError::Encode)?;
                ChatExchange::from_openai(&bytes, options)
            });
        let frame = ResponseFrame::new(
            response_id,
            created_at,
            request.model.clone(),
            &request.body,
        );
        Ok(Self {
            request,
            chat,
            frame,
        })
    }

    fn chat(&self) -> Result<&ChatExchange, RequestError> {
        self.chat.as_ref().map_err(Clone::clone)
    }

    /// The path below `spec`'s base URL.
    pub fn path(&self, spec: &ProviderSpec, upstream_model: &str) -> Result<String, RequestError> {
        if speaks_responses(spec) {
            return Ok(RESPONSES_PATH.to_owned());
        }
        let chat = self.chat()?;
        Ok(super::adapter_of(spec).chat_path(spec, upstream_model, chat.stream()))
    }

    /// The body for `spec`, for the upstream model name.
    pub fn upstream_body(
        &mut self,
        spec: &ProviderSpec,
        upstream_model: &str,
    ) -> Result<Bytes, RequestError> {
        if speaks_responses(spec) {
            let body = request::passthrough_body(&self.request, upstream_model);
            return serde_json::to_vec(&body)
                .map(Bytes::from)
                .map_err(|_| RequestError::Encode);
        }
        match self.chat.as_mut() {
            Ok(chat) => chat.upstream_body(spec, upstream_model),
            Err(error) => Err(error.clone()),
        }
    }

    /// Whether a stream event from `spec` commits the answer.
    pub fn is_content_event(&self, spec: &ProviderSpec, data: &[u8]) -> bool {
        if speaks_responses(spec) {
            return carries_content(data);
        }
        self.chat
            .as_ref()
            .map_or(true, |chat| chat.is_content_event(spec, data))
    }

    /// A whole upstream answer as a `response` object, with its usage.
    pub fn client_answer(
        &self,
        spec: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), TranslateError> {
        if speaks_responses(spec) {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|_| TranslateError::upstream("the answer is not JSON"))?;
            if !value.is_object() {
                return Err(TranslateError::upstream("the answer is not a JSON object"));
            }
            return Ok((body, usage_of(&value)));
        }
        let chat = self
            .chat()
            .map_err(|_| TranslateError::upstream("no chat request"))?;
        let (chat_body, usage) = chat
            .client_answer(spec, body)
            .map_err(|_| TranslateError::upstream("the answer could not be read"))?;
        let value: Value = serde_json::from_slice(&chat_body)
            .map_err(|_| TranslateError::upstream("the answer is not JSON"))?;
        let response = chat_to_responses_response(&value, &self.frame)?;
        let bytes = serde_json::to_vec(&response)
            .map_err(|_| TranslateError::upstream("the answer could not be encoded"))?;
        Ok((Bytes::from(bytes), usage))
    }

    /// An upstream 4xx body in OpenAI's error shape (`None`: as it came).
    pub fn client_error(&self, spec: &ProviderSpec, status: u16, body: &[u8]) -> Option<Bytes> {
        if speaks_responses(spec) {
            return None;
        }
        self.chat
            .as_ref()
            .ok()
            .and_then(|chat| chat.client_error(spec, status, body))
    }

    /// The translator from `spec`'s stream to Responses events.
    pub fn stream_translator(&self, spec: &ProviderSpec) -> Box<dyn StreamTranslator> {
        if speaks_responses(spec) {
            return Box::new(ResponsesPassthroughStream::default());
        }
        let to_responses = ChatToResponsesStream::new(self.frame.clone());
        match self
            .chat
            .as_ref()
            .ok()
            .and_then(|chat| chat.stream_translator(spec))
        {
            Some(to_chat) => Box::new(ChainedStream {
                first: to_chat,
                second: to_responses,
            }),
            None => Box::new(to_responses),
        }
    }
}
