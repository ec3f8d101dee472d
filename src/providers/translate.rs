//! Shared pieces of the format translation between the OpenAI chat format
//! and the Anthropic Messages and Gemini formats: the error type, the stream
//! translator interface, SSE framing and small content helpers.
//!
//! The translators themselves live with their provider kinds:
//! [`super::anthropic`] (both ways) and [`super::gemini`].

use super::openai::Usage;
use super::wire_error;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a body could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The client's request is malformed in a way the target format cannot
    /// absorb (400).
    #[error("{message}")]
    InvalidRequest {
        /// Where in the request, e.g. `messages[2].tool_calls[0].function.arguments`.
        param: Option<String>,
        message: String,
    },
    /// The client's request is valid in its own format but asks for
    /// something the target format has no equivalent for (400).
    #[error("{message}")]
    Unsupported {
        param: Option<String>,
        message: String,
    },
    /// The upstream answered something that cannot be read as its own
    /// format (502).
    #[error("The upstream response could not be translated: {0}")]
    Upstream(String),
}

impl TranslateError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            param: Some(param.into()),
            message: message.into(),
        }
    }

    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unsupported {
            param: Some(param.into()),
            message: message.into(),
        }
    }

    pub fn upstream(message: impl Into<String>) -> Self {
        Self::Upstream(message.into())
    }

    /// The HTTP status a handler answers with: 400 for the client's input,
    /// 502 for the upstream's output.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::InvalidRequest { .. } | Self::Unsupported { .. } => 400,
            Self::Upstream(_) => 502,
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { param, .. } | Self::Unsupported { param, .. } => {
                param.as_deref()
            }
            Self::Upstream(_) => None,
        }
    }

    /// The error in Anthropic's shape, for the `/v1/messages` front door.
    pub fn anthropic_body(&self) -> Value {
        let kind = match self {
            Self::InvalidRequest { .. } | Self::Unsupported { .. } => "invalid_request_error",
            Self::Upstream(_) => "api_error",
        };
        wire_error::anthropic(kind, &self.to_string())
    }
}

/// A stream translator: fed one upstream SSE event at a time (as split by
/// [`super::sse::SseSplitter`]), it answers the client-format SSE bytes to
/// send right away. Nothing is buffered beyond the current event.
///
/// A handler's loop: for every event, `on_event(sse::event_name(e),
/// &sse::event_data(e))`; at the upstream's end, `finish()`; then, when
/// `!is_complete()`, the stream was cut and the client gets an error event.
pub trait StreamTranslator {
    /// One upstream event (`event:` name if any, joined `data:` lines).
    fn on_event(
        &mut self,
        event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError>;
    /// The text characters ([`crate::providers::estimate::text_chars`]) of the event
    /// last passed to [`Self::on_event`], if the translator parsed it: the
    /// relay's completion estimate then need not parse it again. `None`:
    /// the relay counts them itself.
    fn take_text_chars(&mut self) -> Option<usize> {
        None
    }
    /// The upstream stream ended: whatever closes the client stream, if
    /// the upstream's own end marker was implicit (Gemini) or missing.
    fn finish(&mut self) -> Vec<Bytes>;
    /// Token counts seen so far (the last report wins).
    fn usage(&self) -> Option<Usage>;
    /// The upstream finished the answer properly (not cut, no error event).
    fn is_complete(&self) -> bool;
    /// The event that ends a broken stream in the client's format, when the
    /// translator's client format has its own (`None`: the relay uses the
    /// client format's default, see `exchange::ClientFormat`).
    fn error_event(&self, _message: &str, _code: &str) -> Option<Bytes> {
        None
    }
}

/// A boxed translator is one too, so boxes chain ([`ChainedStream`]).
impl StreamTranslator for Box<dyn StreamTranslator> {
    fn on_event(
        &mut self,
        event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        (**self).on_event(event_name, data)
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        (**self).take_text_chars()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        (**self).finish()
    }

    fn usage(&self) -> Option<Usage> {
        (**self).usage()
    }

    fn is_complete(&self) -> bool {
        (**self).is_complete()
    }

    fn error_event(&self, message: &str, code: &str) -> Option<Bytes> {
        (**self).error_event(message, code)
    }
}

/// An OpenAI `tool_choice`, read once for every target format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// `required`: some tool must be called.
    Required,
    /// `{"type":"function","function":{"name":...}}`.
    Named(String),
}

/// Parses an OpenAI `tool_choice`; `None` when absent or null.
pub fn parse_openai_tool_choice(
    choice: Option<&Value>,
) -> Result<Option<ToolChoice>, TranslateError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(TranslateError::invalid(
                "tool_choice",
                format!("unknown tool_choice `{other}`"),
            )),
        },
        Some(choice) => choice
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|name| Some(ToolChoice::Named(name.to_owned())))
            .ok_or_else(|| {
                TranslateError::invalid("tool_choice", "a named tool_choice needs `function.name`")
            }),
    }
}

/// An OpenAI function tool, read once for every target format.
pub(crate) struct FunctionTool<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    /// `function.parameters`, when it is a JSON object.
    pub parameters: Option<&'a Value>,
}

/// Reads OpenAI `tools`. Only `function` tools translate; `target` ("an
/// Anthropic model") names where the others cannot go.
pub(crate) fn openai_function_tools<'a>(
    tools: &'a [Value],
    target: &str,
) -> Result<Vec<FunctionTool<'a>>, TranslateError> {
    tools
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            let kind = tool
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("function");
            if kind != "function" {
                return Err(TranslateError::unsupported(
                    format!("tools[{index}].type"),
                    format!("tools of type `{kind}` cannot be sent to {target}"),
                ));
            }
            let function = tool.get("function").ok_or_else(|| {
                TranslateError::invalid(format!("tools[{index}].function"), "missing `function`")
            })?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TranslateError::invalid(format!("tools[{index}].function.name"), "missing name")
                })?;
            Ok(FunctionTool {
                name,
                description: function.get("description").and_then(Value::as_str),
                parameters: function
                    .get("parameters")
                    .filter(|schema| schema.is_object()),
            })
        })
        .collect()
}

/// Seconds since the epoch, for `created`.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `data: {json}\n\n`: the frame of OpenAI's streams and Gemini's
/// (`alt=sse`).
pub fn data_sse(value: &Value) -> Bytes {
    sse_frame(&[b"data: "], value)
}

/// One SSE frame: the `prefix` pieces, `value` as compact JSON, a blank
/// line. Serialised straight into the frame's buffer: every translated
/// event is written through here, and `format!` with `Value`'s `Display`
/// went through the formatting machinery a few bytes at a time.
pub(crate) fn sse_frame(prefix: &[&[u8]], value: &impl serde::Serialize) -> Bytes {
    let mut frame = Vec::with_capacity(256);
    for piece in prefix {
        frame.extend_from_slice(piece);
    }
    let start = frame.len();
    if serde_json::to_writer(&mut frame, value).is_err() {
        // Only a map with non-string keys fails, and none is written here.
        frame.truncate(start);
        frame.extend_from_slice(b"{}");
    }
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// The OpenAI stream terminator.
pub const OPENAI_DONE: &[u8] = b"data: [DONE]\n\n";

/// `event: {name}\ndata: {json}\n\n`
pub fn anthropic_sse(event: &str, value: &Value) -> Bytes {
    sse_frame(&[b"event: ", event.as_bytes(), b"\ndata: "], value)
}

/// Writes OpenAI `chat.completion.chunk` events with a fixed id, model and
/// creation time.
///
/// Every chunk ends with the same fields (`created`, `id`, `model`,
/// `object`, in the alphabetical order `serde_json`'s map wrote them in), so
/// that end is serialised once, when the id or model is set, and copied into
/// each chunk: re-serialising it per chunk was a third of the writer's cost
/// on a translated stream (bench/README.md).
#[derive(Debug, Clone)]
pub(crate) struct ChunkWriter {
    id: String,
    model: String,
    created: i64,
    /// `"created":…,"id":…,"model":…,"object":"chat.completion.chunk"}`.
    tail: Vec<u8>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new(String::new(), String::new(), 0)
    }
}

/// What every chunk starts with, up to its one choice.
const CHUNK_HEAD: &[u8] = b"data: {\"choices\":[";

impl ChunkWriter {
    pub fn new(id: String, model: String, created: i64) -> Self {
        let mut writer = Self {
            id,
            model,
            created,
            tail: Vec::new(),
        };
        writer.write_tail();
        writer
    }

    pub fn created(&self) -> i64 {
        self.created
    }

    /// The id to report from now on (known only once the upstream's
    /// first event arrived).
    pub fn set_id(&mut self, id: String) {
        self.id = id;
        self.write_tail();
    }

    /// The model to report from now on.
    pub fn set_model(&mut self, model: String) {
        self.model = model;
        self.write_tail();
    }

    fn write_tail(&mut self) {
        #[derive(serde::Serialize)]
        struct Tail<'a> {
            created: i64,
            id: &'a str,
            model: &'a str,
            object: &'static str,
        }
        let mut tail = Vec::with_capacity(96 + self.id.len() + self.model.len());
        // Strings and integers only: writing them cannot fail.
        let _ = serde_json::to_writer(
            &mut tail,
            &Tail {
                created: self.created,
                id: &self.id,
                model: &self.model,
                object: "chat.completion.chunk",
            },
        );
        // `{"created":…}` becomes `"created":…}`: it follows the choices.
        if tail.first() == Some(&b'{') {
            tail.remove(0);
        }
        self.tail = tail;
    }

    /// `data: {"choices":[`, the choice `write_choice` writes, `],`, the
    /// shared end and a blank line, in one buffer of about `capacity`
    /// bytes more than the frame's fixed parts.
    fn frame(
        &self,
        capacity: usize,
        write_choice: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) -> Bytes {
        let mut frame = Vec::with_capacity(CHUNK_HEAD.len() + capacity + 2 + self.tail.len() + 2);
        frame.extend_from_slice(CHUNK_HEAD);
        if write_choice(&mut frame).is_err() {
            // Only a map with non-string keys fails, and none is written here.
            return Bytes::from_static(b"data: {}\n\n");
        }
        frame.extend_from_slice(b"],");
        frame.extend_from_slice(&self.tail);
        frame.extend_from_slice(b"\n\n");
        Bytes::from(frame)
    }

    pub fn chunk(
        &self,
        index: u64,
        delta: &impl serde::Serialize,
        finish_reason: Option<&str>,
    ) -> Bytes {
        let choice = ChunkChoice {
            delta,
            finish_reason,
            index,
            logprobs: None,
        };
        self.frame(128, |frame| serde_json::to_writer(frame, &choice))
    }

    /// A chunk of text: `{"content": text}` as its delta, written from the
    /// borrowed text rather than a `json!` map (the bytes are the same as
    /// [`Self::chunk`]'s).
    pub fn text(&self, index: u64, text: &str) -> Bytes {
        const DELTA_HEAD: &[u8] = b"{\"delta\":{\"content\":";
        const DELTA_END: &[u8] = b"},\"finish_reason\":null,\"index\":";
        const CHOICE_END: &[u8] = b",\"logprobs\":null}";
        let capacity = DELTA_HEAD.len() + text.len() + 2 + DELTA_END.len() + 20 + CHOICE_END.len();
        self.frame(capacity, |frame| {
            frame.extend_from_slice(DELTA_HEAD);
            serde_json::to_writer(&mut *frame, text)?;
            frame.extend_from_slice(DELTA_END);
            serde_json::to_writer(&mut *frame, &index)?;
            frame.extend_from_slice(CHOICE_END);
            Ok(())
        })
    }

    pub fn usage_chunk(&self, usage: Value) -> Bytes {
        data_sse(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }))
    }
}

/// The one choice of a `chat.completion.chunk`, borrowed from the delta
/// instead of copied into a `json!` tree; fields in alphabetical order, as
/// `serde_json`'s map wrote them.
#[derive(serde::Serialize)]
struct ChunkChoice<'a, D> {
    delta: &'a D,
    finish_reason: Option<&'a str>,
    index: u64,
    /// Always `null`: the gateway translates no log-probabilities.
    logprobs: Option<()>,
}

/// An OpenAI-shaped error event for a failure reported inside a stream.
pub(crate) fn openai_error_chunk(message: &str, kind: &str) -> Bytes {
    data_sse(&wire_error::openai(message, kind, None, None))
}

/// How a stream translator reads its upstream's events: each event's data
/// parsed as a JSON object, and the text characters of the last one kept
/// for [`StreamTranslator::take_text_chars`], so that the relay's
/// completion estimate need not parse the event a second time.
#[derive(Debug, Default)]
pub(crate) struct EventReader {
    text_chars: Option<usize>,
}

impl EventReader {
    /// Parses one event's data as a JSON object.
    pub(crate) fn parse(&mut self, data: &[u8]) -> Result<Map<String, Value>, TranslateError> {
        let event = match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                return Err(TranslateError::upstream(
                    "a stream event is not a JSON object",
                ));
            }
            Err(error) => {
                return Err(TranslateError::upstream(format!(
                    "a stream event is not valid JSON: {error}"
                )));
            }
        };
        self.text_chars = Some(super::estimate::object_text_chars(&event));
        Ok(event)
    }

    /// An event read another way had `chars` text characters.
    pub(crate) fn counted(&mut self, chars: usize) {
        self.text_chars = Some(chars);
    }

    /// The text characters of the event parsed last, once.
    pub(crate) fn take_text_chars(&mut self) -> Option<usize> {
        self.text_chars.take()
    }
}

/// The body as an object, or a 400.
pub(crate) fn request_object(body: &Value) -> Result<&Map<String, Value>, TranslateError> {
    body.as_object()
        .ok_or_else(|| TranslateError::InvalidRequest {
            param: None,
            message: "The request body must be a JSON object".to_owned(),
        })
}

/// The upstream body as an object, or a 502.
pub(crate) fn response_object(body: &Value) -> Result<&Map<String, Value>, TranslateError> {
    body.as_object()
        .ok_or_else(|| TranslateError::upstream("the response body is not a JSON object"))
}

/// Splits a `data:` URL into its media type and base64 payload.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let media_type = header.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// The text of OpenAI message content: a string, or the `text` of its text
/// parts joined by `separator`.
pub(crate) fn openai_content_text(content: Option<&Value>, separator: &str) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| {
                let kind = part.get("type").and_then(Value::as_str);
                match kind {
                    Some("text") => part.get("text").and_then(Value::as_str),
                    Some("refusal") => part.get("refusal").and_then(Value::as_str),
                    _ => None,
                }
            })
            .collect::<Vec<_>>()
            .join(separator),
        _ => String::new(),
    }
}

/// `stop` as a list: a string becomes a one-element list, nulls vanish.
pub(crate) fn stop_list(stop: Option<&Value>) -> Option<Vec<Value>> {
    match stop {
        Some(Value::String(stop)) => Some(vec![Value::String(stop.clone())]),
        Some(Value::Array(stops)) if !stops.is_empty() => Some(
            stops
                .iter()
                .filter(|stop| stop.is_string())
                .cloned()
                .collect(),
        ),
        _ => None,
    }
}

/// `max_completion_tokens`, else `max_tokens`.
pub(crate) fn openai_max_tokens(body: &Map<String, Value>) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| body.get(*field).and_then(Value::as_u64))
}

/// Tool-call arguments (a JSON string, as OpenAI sends them) as an object.
/// Empty arguments mean no arguments; some clients send an object directly.
pub(crate) fn parse_tool_arguments(
    arguments: Option<&Value>,
    param: impl FnOnce() -> String,
) -> Result<Value, TranslateError> {
    let parsed = match arguments {
        None | Some(Value::Null) => return Ok(Value::Object(Map::new())),
        Some(Value::Object(object)) => return Ok(Value::Object(object.clone())),
        Some(Value::String(text)) if text.trim().is_empty() => {
            return Ok(Value::Object(Map::new()));
        }
        Some(Value::String(text)) => serde_json::from_str::<Value>(text),
        Some(_) => {
            return Err(TranslateError::invalid(
                param(),
                "tool call arguments must be a JSON string",
            ));
        }
    };
    match parsed {
        Ok(Value::Object(object)) => Ok(Value::Object(object)),
        Ok(_) => Err(TranslateError::invalid(
            param(),
            "tool call arguments must encode a JSON object",
        )),
        Err(error) => Err(TranslateError::invalid(
            param(),
            format!("tool call arguments are not valid JSON: {error}"),
        )),
    }
}

/// Copies `from[key]` to `to[target]` when present and not null.
pub(crate) fn copy_field(
    from: &Map<String, Value>,
    key: &str,
    to: &mut Map<String, Value>,
    target: &str,
) {
    if let Some(value) = from.get(key).filter(|value| !value.is_null()) {
        to.insert(target.to_owned(), value.clone());
    }
}

/// Two translators in a row (Gemini -> OpenAI -> Anthropic): every event the
/// first emits is fed to the second at once, so nothing is buffered.
pub struct ChainedStream<A, B> {
    pub first: A,
    pub second: B,
}

impl<A: StreamTranslator, B: StreamTranslator> ChainedStream<A, B> {
    fn feed(&mut self, events: Vec<Bytes>) -> Result<Vec<Bytes>, TranslateError> {
        let mut out = Vec::new();
        for event in events {
            let data = super::sse::event_data(&event).unwrap_or_default();
            out.extend(
                self.second
                    .on_event(super::sse::event_name(&event), &data)?,
            );
        }
        Ok(out)
    }
}

impl<A: StreamTranslator, B: StreamTranslator> StreamTranslator for ChainedStream<A, B> {
    fn on_event(
        &mut self,
        event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        let events = self.first.on_event(event_name, data)?;
        self.feed(events)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let events = self.first.finish();
        let mut out = self.feed(events).unwrap_or_default();
        out.extend(self.second.finish());
        out
    }

    /// The upstream's own report, read by the first translator.
    fn usage(&self) -> Option<Usage> {
        self.first.usage()
    }

    /// The upstream's event, which only the first translator reads.
    fn take_text_chars(&mut self) -> Option<usize> {
        self.first.take_text_chars()
    }

    fn is_complete(&self) -> bool {
        self.first.is_complete() && self.second.is_complete()
    }

    /// The client sees the second translator's format.
    fn error_event(&self, message: &str, code: &str) -> Option<Bytes> {
        self.second.error_event(message, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed chunk writes the bytes the `json!` tree wrote (clients and
    /// the golden files see no change), for every finish reason, with the
    /// id and model given at the start or set later (the shared end of the
    /// chunks, written once, follows them).
    #[test]
    fn typed_chunks_are_byte_for_byte_the_json_tree_ones() {
        let (id, model, created) = ("chatcmpl-\"x\"\u{e9}", "m\\1", 1_700_000_000);
        let given = ChunkWriter::new(id.to_owned(), model.to_owned(), created);
        // As the Anthropic translator learns both at `message_start`.
        let mut set_later = ChunkWriter::new(String::new(), "first".to_owned(), created);
        let _ = set_later.text(0, "before");
        set_later.set_id(id.to_owned());
        set_later.set_model(model.to_owned());
        // As the Gemini translator learns the id from the first event.
        let mut id_later = ChunkWriter::new(String::new(), model.to_owned(), created);
        let _ = id_later.text(0, "before");
        id_later.set_id(id.to_owned());
        let delta = json!({"content": "a\nb", "role": "assistant"});
        let text = "a\nb \"q\" \u{e9}\u{1f600}\\";
        for writer in [&given, &set_later, &id_later] {
            let tree = |index: u64, delta: &Value, finish_reason: Option<&str>| {
                let tree = json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{
                        "index": index,
                        "delta": delta,
                        "logprobs": null,
                        "finish_reason": finish_reason,
                    }],
                });
                Bytes::from(format!("data: {tree}\n\n"))
            };
            for finish_reason in [None, Some("stop"), Some("tool_calls")] {
                assert_eq!(
                    writer.chunk(3, &delta, finish_reason),
                    tree(3, &delta, finish_reason)
                );
            }
            for index in [0, 3, u64::MAX] {
                assert_eq!(
                    writer.text(index, text),
                    tree(index, &json!({ "content": text }), None)
                );
            }
            assert_eq!(writer.text(0, ""), tree(0, &json!({ "content": "" }), None));
        }
        let error = wire_error::anthropic("api_error", "x");
        assert_eq!(
            anthropic_sse("error", &error),
            Bytes::from(format!("event: error\ndata: {error}\n\n"))
        );
    }

    #[test]
    fn data_urls_split_into_media_type_and_payload() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBOR"),
            Some(("image/png", "iVBOR"))
        );
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
        assert_eq!(parse_data_url("https://example.com/a.png"), None);
    }

    #[test]
    fn tool_arguments_must_be_a_json_object() {
        let param = || "p".to_owned();
        assert_eq!(
            parse_tool_arguments(Some(&json!("{\"a\":1}")), param),
            Ok(json!({"a": 1}))
        );
        assert_eq!(parse_tool_arguments(Some(&json!("")), param), Ok(json!({})));
        assert!(parse_tool_arguments(Some(&json!("{\"a\":")), param).is_err());
        assert!(parse_tool_arguments(Some(&json!("[1]")), param).is_err());
        let error = parse_tool_arguments(Some(&json!("nope")), param);
        assert_eq!(
            error.as_ref().map_err(TranslateError::status_code),
            Err(400)
        );
    }
}
