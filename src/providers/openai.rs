//! The OpenAI chat-completions wire format, spoken by the `openai` and
//! `openai-compatible` kinds: the client's request passes through with only
//! `model` rewritten (and usage requested for streams), so fields the gateway
//! does not know still reach the provider.

use super::{Adapter, Media, RequestError, Wire, bearer};
use bytes::Bytes;
use memchr::memmem::Finder;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;
use switchyard_actors::ProviderSpec;

/// `openai` and `openai-compatible`: OpenAI's paths below the base URL and
/// a bearer key.
pub struct OpenAiAdapter;

impl Adapter for OpenAiAdapter {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn auth_headers(&self, _: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)> {
        vec![bearer(secret)]
    }

    fn chat_path(&self, _: &ProviderSpec, _model: &str, _stream: bool) -> String {
        "chat/completions".to_owned()
    }

    fn completions_path(&self, _: &ProviderSpec, _model: &str) -> Option<String> {
        Some("completions".to_owned())
    }

    fn embeddings_path(&self, _: &ProviderSpec, _model: &str) -> Option<String> {
        Some("embeddings".to_owned())
    }

    /// All of them: OpenAI serves images and audio; rerank is for the
    /// OpenAI-compatible servers that have it (vLLM, TEI, Jina), and an
    /// upstream without it answers its own 404.
    fn media_path(&self, _: &ProviderSpec, _model: &str, media: Media) -> Option<String> {
        Some(media.path().to_owned())
    }
}

/// Model ids of an OpenAI-shaped list (`{"data":[{"id":...}]}`, which
/// Anthropic's `/v1/models` shares).
pub fn model_ids(body: &Value) -> Vec<String> {
    body.get("data")
        .and_then(Value::as_array)
        .map(|models| {
            models
                .iter()
                .filter_map(|model| model.get("id").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A validated client chat request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client itself asked for the usage chunk (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// `max_tokens` / `max_completion_tokens`, when given.
    pub max_tokens: Option<i64>,
}

/// The first checks of an OpenAI-style body (chat, Responses): JSON, an
/// object, and a non-empty string `model`, refused in OpenAI's words.
pub fn object_with_model(raw: &[u8]) -> Result<(Map<String, Value>, String), RequestError> {
    let value: Value = serde_json::from_slice(raw).map_err(|error| {
        RequestError::invalid(format!("The request body is not valid JSON: {error}"))
    })?;
    let Value::Object(body) = value else {
        return Err(RequestError::invalid(
            "The request body must be a JSON object",
        ));
    };
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.trim().is_empty() => model.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(RequestError::invalid_param(
                "model",
                "You must provide a model parameter",
            ));
        }
        Some(_) => {
            return Err(RequestError::invalid_param(
                "model",
                "`model` must be a string",
            ));
        }
    };
    Ok((body, model))
}

/// Parses and validates a `/v1/chat/completions` body.
pub fn parse_chat_request(raw: &[u8]) -> Result<ChatRequest, RequestError> {
    let (body, model) = object_with_model(raw)?;
    match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {
            if let Some(index) = messages.iter().position(|message| !message.is_object()) {
                return Err(RequestError::invalid_param(
                    "messages",
                    format!("`messages[{index}]` must be an object with a role"),
                ));
            }
        }
        Some(Value::Array(_)) => {
            return Err(RequestError::invalid_param(
                "messages",
                "`messages` must not be empty",
            ));
        }
        None | Some(Value::Null) => {
            return Err(RequestError::invalid_param(
                "messages",
                "You must provide a messages parameter",
            ));
        }
        Some(_) => {
            return Err(RequestError::invalid_param(
                "messages",
                "`messages` must be an array",
            ));
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => {
            return Err(RequestError::invalid_param(
                "stream",
                "`stream` must be a boolean",
            ));
        }
    };
    super::checks::openai_chat(&body)?;
    let client_wants_usage = body
        .get("stream_options")
        .and_then(|options| options.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| body.get(*field).and_then(Value::as_i64));
    Ok(ChatRequest {
        body,
        model,
        stream,
        client_wants_usage,
        max_tokens,
    })
}

/// The body sent upstream: the client's, with the upstream model name and,
/// for streams, usage requested so every stream can be metered.
pub fn upstream_chat_body(
    request: &mut ChatRequest,
    upstream_model: &str,
) -> Result<Bytes, RequestError> {
    request
        .body
        .insert("model".to_owned(), Value::String(upstream_model.to_owned()));
    if request.stream && !request.client_wants_usage {
        let options = request
            .body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        match options {
            Value::Object(options) => {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
            other => *other = json!({ "include_usage": true }),
        }
    }
    serde_json::to_vec(&request.body)
        .map(Bytes::from)
        .map_err(|_| RequestError::Encode)
}

/// Token counts of a response or stream chunk, if it reports them, in
/// OpenAI's convention whatever the wire: the totals include the parts
/// priced apart, so adding the parts to the totals would count them twice
/// (docs/billing.md, "Prompt caching and reasoning").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every input token: uncached, read from the prompt cache and written
    /// to it (Anthropic's `input_tokens` excludes the last two; they are
    /// added back).
    pub prompt_tokens: i64,
    /// Every output token, reasoning included.
    pub completion_tokens: i64,
    /// Of `prompt_tokens`, read from the provider's prompt cache (OpenAI
    /// `cached_tokens`, Anthropic `cache_read_input_tokens`, Gemini
    /// `cachedContentTokenCount`).
    pub cache_read_tokens: i64,
    /// Of `prompt_tokens`, written to the prompt cache (Anthropic
    /// `cache_creation_input_tokens`; the others do not report it).
    pub cache_write_tokens: i64,
    /// Of `completion_tokens`, spent reasoning (OpenAI `reasoning_tokens`,
    /// Gemini `thoughtsTokenCount`; Anthropic does not report it apart).
    pub reasoning_tokens: i64,
    /// Media units (issue 15, item 3), priced apart from tokens and on top
    /// of them (a `gpt-image-1` answer reports both). Images generated or
    /// edited (`/v1/images/*`: the answer's `data` entries).
    pub images: i64,
    /// Characters of text turned into speech (`/v1/audio/speech`).
    pub characters: i64,
    /// Milliseconds of audio transcribed or translated
    /// (`/v1/audio/transcriptions`, `/v1/audio/translations`).
    pub audio_ms: i64,
    /// Rerank search units (`/v1/rerank`: Cohere's `billed_units`; one per
    /// call when the upstream does not say).
    pub search_units: i64,
}

impl Usage {
    /// Totals without any part priced apart.
    pub fn tokens(prompt_tokens: i64, completion_tokens: i64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            ..Self::default()
        }
    }
}

pub fn usage_of(value: &Value) -> Option<Usage> {
    usage_fields(value.get("usage")?)
}

/// The counts of an OpenAI `usage` object itself (`None` if not an object).
pub fn usage_fields(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let count = |field: &str| usage.get(field).and_then(Value::as_i64).unwrap_or(0);
    let detail = |details: &str, field: &str| {
        usage
            .get(details)
            .and_then(|details| details.get(field))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    Some(Usage {
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
        cache_read_tokens: detail("prompt_tokens_details", "cached_tokens"),
        cache_write_tokens: 0,
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
        ..Usage::default()
    })
}

/// Reads a relayed chat stream event by event: finds the usage, tells which
/// events to pass on, and notices the end.
#[derive(Debug, Default)]
pub struct ChatStreamState {
    /// Drop the usage-only chunk: the gateway asked for it, not the client.
    pub hide_usage_chunk: bool,
    pub usage: Option<Usage>,
    /// `[DONE]` came.
    pub done: bool,
    /// A choice's `finish_reason` came (the answer is whole even if the
    /// upstream then closes without `[DONE]`).
    pub finished: bool,
    /// The text characters of the last event, when it was parsed for its
    /// usage ([`Self::take_text_chars`]).
    parsed_text_chars: Option<usize>,
}

impl ChatStreamState {
    pub fn new(hide_usage_chunk: bool) -> Self {
        Self {
            hide_usage_chunk,
            ..Self::default()
        }
    }

    /// The text characters of the event [`Self::on_data`] saw last, if it
    /// parsed it (OpenAI's chunks carry `"usage": null` when usage is asked
    /// for, so every one is parsed): the relay's completion estimate then
    /// need not parse it again.
    pub fn take_text_chars(&mut self) -> Option<usize> {
        self.parsed_text_chars.take()
    }

    /// Inspects one event's `data`; answers whether to forward the event.
    pub fn on_data(&mut self, data: &[u8]) -> bool {
        if data == b"[DONE]" {
            self.done = true;
            return true;
        }
        // Only the last chunk names a finish reason: parse just that one.
        if !self.finished && names_finish_reason(data) {
            self.finished = finish_reason_of_chunk(data);
        }
        // Most chunks carry no usage: skip parsing them unless they mention it.
        if USAGE_KEY.find(data).is_none() {
            return true;
        }
        let Ok(value) = serde_json::from_slice::<Value>(data) else {
            return true;
        };
        self.parsed_text_chars = value
            .as_object()
            .map(crate::providers::estimate::object_text_chars);
        let has_choices = value
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|choices| !choices.is_empty());
        if let Some(usage) = usage_of(&value) {
            self.usage = Some(usage);
            if self.hide_usage_chunk && !has_choices {
                return false;
            }
        }
        true
    }
}

/// Whether a stream event commits the answer: text, a tool call, a finish
/// reason, an error or the end. Role-only and empty deltas do not, so the
/// gateway can still fail over invisibly while it has seen only those.
pub fn carries_content(data: &[u8]) -> bool {
    if data == b"[DONE]" {
        return true;
    }
    // Read into borrowed structs first: a `Value` per held event cost 2-3%
    // of a relayed stream (bench/README.md). What they cannot read as the
    // `Value` below would read it (not an object, a member of another
    // type, a key twice) is read that way.
    if data.trim_ascii_start().first() == Some(&b'{')
        && let Ok(chunk) = serde_json::from_slice::<ContentProbe>(data)
    {
        return chunk.commits();
    }
    carries_content_in_value(data)
}

/// [`carries_content`] read from a `Value`: the rule itself, for every
/// event [`ContentProbe`] cannot read.
fn carries_content_in_value(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        // Unreadable: let the relay and the client see it.
        return true;
    };
    if value.get("error").is_some() {
        return true;
    }
    let Some(choices) = value.get("choices").and_then(Value::as_array) else {
        return false;
    };
    choices.iter().any(|choice| {
        let delta = choice.get("delta");
        let text = delta
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .is_some_and(|text| !text.is_empty());
        let tools = delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
            .is_some_and(|calls| !calls.is_empty());
        let finished = choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null());
        text || tools || finished
    })
}

/// The members of a stream chunk that say whether it commits the answer
/// ([`carries_content`]); the rest are skipped unbuilt. serde refuses a
/// member named twice, where a `Value` keeps the last: such a chunk is
/// read as a `Value`.
#[derive(serde::Deserialize)]
struct ContentProbe {
    /// `Some` whatever its value, `null` included.
    #[serde(default, deserialize_with = "present")]
    error: Option<()>,
    /// `None` for `null`, which commits nothing, as a missing member.
    #[serde(default)]
    choices: Option<Vec<ChoiceProbe>>,
}

#[derive(serde::Deserialize)]
struct ChoiceProbe {
    #[serde(default)]
    delta: Option<DeltaProbe>,
    /// `Some` for any value but `null`.
    #[serde(default)]
    finish_reason: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct DeltaProbe {
    #[serde(default)]
    content: Option<NonEmptyText>,
    #[serde(default)]
    tool_calls: Option<Vec<serde::de::IgnoredAny>>,
}

impl ContentProbe {
    fn commits(&self) -> bool {
        self.error.is_some()
            || self.choices.iter().flatten().any(|choice| {
                let delta = choice.delta.as_ref();
                let text = delta.is_some_and(|d| d.content.as_ref().is_some_and(|t| t.0));
                let tools =
                    delta.is_some_and(|d| d.tool_calls.as_ref().is_some_and(|c| !c.is_empty()));
                text || tools || choice.finish_reason.is_some()
            })
    }
}

/// Whether a string is non-empty, read without copying it; any other
/// type is an error (the chunk is then read as a `Value`).
struct NonEmptyText(bool);

impl<'de> serde::Deserialize<'de> for NonEmptyText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = NonEmptyText;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<NonEmptyText, E> {
                Ok(NonEmptyText(!text.is_empty()))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// A member that is there, whatever its value (`null` included): serde's
/// `Option` reads `null` as missing.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<()>, D::Error> {
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(deserializer).map(|_| Some(()))
}

/// Whether a chunk's text has `"finish_reason"` with a value other than
/// `null`: a cheap filter before parsing (inside a JSON string the quotes
/// would be escaped, so a match is a key).
fn names_finish_reason(data: &[u8]) -> bool {
    let key_len = FINISH_REASON_KEY.needle().len();
    let mut rest = data;
    while let Some(at) = FINISH_REASON_KEY.find(rest) {
        rest = rest.get(at + key_len..).unwrap_or_default();
        let value = rest
            .trim_ascii_start()
            .strip_prefix(b":")
            .unwrap_or_default()
            .trim_ascii_start();
        if !value.is_empty() && !value.starts_with(b"null") {
            return true;
        }
    }
    false
}

/// Whether a chunk (chat or legacy completions) finishes a choice.
fn finish_reason_of_chunk(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    value
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| {
            choices
                .iter()
                .any(|choice| choice.get("finish_reason").is_some_and(Value::is_string))
        })
}

// Every chunk of a passed-through stream is searched for both keys: memchr's
// SIMD substring search, each searcher built once (building one is costlier
// than searching a chunk with it).
static FINISH_REASON_KEY: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"finish_reason\""));
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

/// An SSE error event in OpenAI's shape, sent when a stream fails after
/// content has gone out: clients must not mistake the cut for a clean end.
pub fn stream_error_event(message: &str, code: &str) -> Bytes {
    super::translate::data_sse(&super::wire_error::openai(
        message,
        "upstream_error",
        None,
        Some(code),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(raw: &str) -> u16 {
        match parse_chat_request(raw.as_bytes()) {
            Ok(_) => 200,
            Err(error) => error.status_code(),
        }
    }

    #[test]
    fn validation_rejects_bad_shapes_with_400() {
        assert_eq!(
            status(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
            200
        );
        for bad in [
            "{not json",
            "[1,2]",
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":42,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","messages":"hi"}"#,
            r#"{"model":"m","messages":[]}"#,
            r#"{"model":"m","messages":["hi"]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#,
        ] {
            assert_eq!(status(bad), 400, "{bad}");
        }
    }

    #[test]
    fn upstream_body_rewrites_model_and_requests_usage_for_streams()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut request = parse_chat_request(
            br#"{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stream":true,"x":1}"#,
        )?;
        let body: Value = serde_json::from_slice(&upstream_chat_body(&mut request, "gpt-4o")?)?;
        assert_eq!(body.get("model"), Some(&json!("gpt-4o")));
        assert_eq!(
            body.pointer("/stream_options/include_usage"),
            Some(&json!(true))
        );
        assert_eq!(
            body.get("x"),
            Some(&json!(1)),
            "unknown fields pass through"
        );
        assert!(!request.client_wants_usage);
        Ok(())
    }

    #[test]
    fn stream_state_hands_over_the_text_of_the_chunks_it_parsed() {
        let mut state = ChatStreamState::new(true);
        // Parsed for its `usage` key: its text counted from that parse, once.
        assert!(state.on_data(br#"{"choices":[{"delta":{"content":"h\u00e9llo"}}],"usage":null}"#));
        assert_eq!(state.take_text_chars(), Some(5));
        assert_eq!(state.take_text_chars(), None);
        // Not parsed (no usage key): the relay counts it itself.
        assert!(state.on_data(br#"{"choices":[{"delta":{"content":"hi"}}]}"#));
        assert_eq!(state.take_text_chars(), None);
        assert!(state.on_data(b"[DONE]"));
        assert_eq!(state.take_text_chars(), None);
    }

    #[test]
    fn stream_state_finds_usage_and_hides_the_injected_chunk() {
        let mut state = ChatStreamState::new(true);
        assert!(state.on_data(br#"{"choices":[{"delta":{"content":"hi"}}]}"#));
        assert!(state.on_data(br#"{"choices":[{"delta":{}}],"usage":null}"#));
        assert!(
            !state.on_data(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#)
        );
        assert!(state.on_data(b"[DONE]"));
        assert_eq!(state.usage, Some(Usage::tokens(3, 5)));
        assert!(state.done);

        let mut client_asked = ChatStreamState::new(false);
        assert!(
            client_asked
                .on_data(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#)
        );
    }

    #[test]
    fn stream_state_sees_a_finish_reason_only_as_a_key() {
        let mut state = ChatStreamState::new(false);
        state.on_data(br#"{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#);
        state.on_data(
            br#"{"choices":[{"delta":{"content":"\"finish_reason\": \"stop\""},"finish_reason" : null}]}"#,
        );
        assert!(!state.finished);
        state.on_data(br#"{"choices":[{"text":"","finish_reason" : "length"}]}"#);
        assert!(state.finished);
        assert!(!state.done);
    }

    #[test]
    fn only_content_commits_a_stream() {
        assert!(!carries_content(
            br#"{"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
        ));
        assert!(!carries_content(br#"{"choices":[],"usage":null}"#));
        assert!(carries_content(
            br#"{"choices":[{"delta":{"content":"hi"}}]}"#
        ));
        assert!(carries_content(
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#
        ));
        assert!(carries_content(
            br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#
        ));
        assert!(carries_content(br#"{"error":{"message":"x"}}"#));
        assert!(carries_content(b"[DONE]"));
    }

    /// The borrowed read decides as the `Value` read does, including the
    /// chunks it hands over to it (a member twice, another type, not an
    /// object, not JSON).
    #[test]
    fn the_quick_read_of_a_chunk_decides_as_the_value_read() {
        let chunks: &[&[u8]] = &[
            br#"{"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            br#"{"choices":[{"delta":{"content":"hi"}}]}"#,
            br#"{"choices":[{"delta":{"content":"\n\u00e9"}}]}"#,
            br#"{"choices":[{"delta":{"content":null}}]}"#,
            br#"{"choices":[{"delta":{"content":["a"]}}]}"#,
            br#"{"choices":[{"delta":{"content":"","tool_calls":[]}}]}"#,
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
            br#"{"choices":[{"delta":{"tool_calls":null}}]}"#,
            br#"{"choices":[{"delta":{"tool_calls":{"index":0}}}]}"#,
            br#"{"choices":[{"delta":null,"finish_reason":"stop"}]}"#,
            br#"{"choices":[{"delta":"x"}]}"#,
            br#"{"choices":[{"finish_reason":0}]}"#,
            br#"{"choices":[7,{"delta":{"content":"a"}}]}"#,
            br#"{"choices":[{"delta":{"content":""}},{"delta":{"content":"b"}}]}"#,
            br#"{"choices":null}"#,
            br#"{"choices":{"0":{"delta":{"content":"a"}}}}"#,
            br#"{"choices":[],"usage":null}"#,
            br#"{"choices":[{"delta":{"content":"a"}}],"choices":[]}"#,
            br#"{"choices":[{"delta":{"content":"","content":"a"}}]}"#,
            br#"{"error":null}"#,
            br#"{"error":{"message":"x"},"choices":[]}"#,
            br#"  {"choices":[{"delta":{"content":"a"}}]}  "#,
            br#"{"choices":[{"delta":{"content":"a"}}]} trailing"#,
            br#"[{"choices":[{"delta":{"content":"a"}}]}]"#,
            br#""text""#,
            b"42",
            b"",
            b"{not json",
        ];
        for chunk in chunks {
            assert_eq!(
                carries_content(chunk),
                carries_content_in_value(chunk),
                "{}",
                String::from_utf8_lossy(chunk)
            );
        }
    }

    mod props {
        use super::*;
        use crate::providers::json_text::object;
        use proptest::prelude::*;

        fn array(items: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
            proptest::collection::vec(items, 0..3)
                .prop_map(|items| format!("[{}]", items.join(",")))
        }

        /// Values of every JSON type, strings with and without escapes.
        fn scalar() -> impl Strategy<Value = String> {
            proptest::sample::select(vec![
                "null",
                "true",
                "0",
                "-1.5",
                r#""""#,
                r#""hi""#,
                r#""a\nb""#,
                r#""\u00e9""#,
                "[]",
                "[1]",
                "{}",
                r#"[{"index":0}]"#,
            ])
            .prop_map(str::to_owned)
        }

        fn chunk() -> impl Strategy<Value = String> {
            let delta = object(&["content", "tool_calls", "role"], scalar());
            let choice = object(
                &["delta", "finish_reason", "index"],
                prop_oneof![delta, scalar()],
            );
            object(
                &["choices", "error", "id", "usage"],
                prop_oneof![array(prop_oneof![choice, scalar()]), scalar()],
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever a chunk holds (members twice, of any type, where
            /// the rule looks and elsewhere), the borrowed read decides as
            /// the `Value` read.
            #[test]
            fn any_chunk_is_decided_as_the_value_read_decides(chunk in chunk()) {
                prop_assert_eq!(
                    carries_content(chunk.as_bytes()),
                    carries_content_in_value(chunk.as_bytes()),
                    "{}", chunk
                );
            }
        }
    }
}
