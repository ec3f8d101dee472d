//! Streams, event by event: Anthropic events as OpenAI chunks, OpenAI
//! chunks as Anthropic events, and Anthropic events passed through to an
//! Anthropic client while their usage and end are read.

use super::response::{AnthropicUsage, finish_reason_of, stop_reason_of};
use crate::providers::openai::Usage;
use crate::providers::translate::{
    ChunkWriter, EventReader, OPENAI_DONE, StreamTranslator, TranslateError, anthropic_sse,
    openai_error_chunk,
};
use crate::providers::wire_error;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// Streams: Anthropic events -> OpenAI chunks
// ---------------------------------------------------------------------------

/// Translates an Anthropic Messages event stream into OpenAI
/// `chat.completion.chunk` events as it arrives.
#[derive(Debug, Default)]
pub struct AnthropicToOpenAiStream {
    writer: ChunkWriter,
    include_usage: bool,
    started: bool,
    /// Anthropic content block index -> OpenAI tool call index.
    tool_indices: HashMap<u64, u64>,
    next_tool_index: u64,
    usage: AnthropicUsage,
    saw_usage: bool,
    complete: bool,
    failed: bool,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl AnthropicToOpenAiStream {
    /// `include_usage`: the client asked for the usage chunk
    /// (`stream_options.include_usage`). `created`: the Unix time to report.
    pub fn new(created: i64, include_usage: bool) -> Self {
        Self {
            writer: ChunkWriter::new(String::new(), String::new(), created),
            include_usage,
            ..Self::default()
        }
    }

    /// An `error` event arrived (`is_complete` stays false).
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(
                self.writer
                    .chunk(0, &json!({ "role": "assistant", "content": "" }), None),
            );
        }
    }
}

impl StreamTranslator for AnthropicToOpenAiStream {
    fn on_event(
        &mut self,
        event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        let mut out = Vec::new();
        if data.is_empty() {
            return Ok(out);
        }
        // Tried only for an event named as a text delta (or not named):
        // for the others a failed typed read cost more than the read
        // itself, serde building an "unknown field" error each time
        // (bench/README.md). The `Value` read decides those as it would.
        if event_name.is_none_or(|name| name == "content_block_delta")
            && let Some(text) = text_delta(data)
        {
            // What the `Value` read below does for this event.
            self.events.counted(text.chars().count());
            self.start(&mut out);
            if !text.is_empty() {
                out.push(self.writer.text(0, &text));
            }
            return Ok(out);
        }
        let event = self.events.parse(data)?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .or(event_name)
            .unwrap_or_default();
        match kind {
            "message_start" => {
                let message = event.get("message");
                let field = |name: &str| {
                    message
                        .and_then(|message| message.get(name))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                self.writer.set_id(field("id").unwrap_or_default());
                self.writer.set_model(field("model").unwrap_or_default());
                if let Some(usage) = message.and_then(|message| message.get("usage")) {
                    self.usage.update(usage);
                    self.saw_usage = true;
                }
                self.start(&mut out);
            }
            "content_block_start" => {
                self.start(&mut out);
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = event.get("content_block");
                match block
                    .and_then(|block| block.get("type"))
                    .and_then(Value::as_str)
                {
                    Some("text") => {
                        let text = block
                            .and_then(|block| block.get("text"))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if !text.is_empty() {
                            out.push(self.writer.text(0, text));
                        }
                    }
                    Some("tool_use") => {
                        let tool_index = self.next_tool_index;
                        self.next_tool_index += 1;
                        self.tool_indices.insert(index, tool_index);
                        out.push(self.writer.chunk(
                            0,
                            &json!({ "tool_calls": [{
                                "index": tool_index,
                                "id": block.and_then(|block| block.get("id")),
                                "type": "function",
                                "function": {
                                    "name": block.and_then(|block| block.get("name")),
                                    "arguments": "",
                                },
                            }] }),
                            None,
                        ));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                self.start(&mut out);
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = event.get("delta");
                let field = |name: &str| {
                    delta
                        .and_then(|delta| delta.get(name))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                match delta
                    .and_then(|delta| delta.get("type"))
                    .and_then(Value::as_str)
                {
                    Some("text_delta") => {
                        let text = field("text");
                        if !text.is_empty() {
                            out.push(self.writer.text(0, text));
                        }
                    }
                    Some("input_json_delta") => {
                        let partial = field("partial_json");
                        if let Some(tool_index) = self.tool_indices.get(&index)
                            && !partial.is_empty()
                        {
                            out.push(self.writer.chunk(
                                0,
                                &json!({ "tool_calls": [{
                                    "index": tool_index,
                                    "function": { "arguments": partial },
                                }] }),
                                None,
                            ));
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta
                    _ => {}
                }
            }
            "message_delta" => {
                self.start(&mut out);
                if let Some(usage) = event.get("usage") {
                    self.usage.update(usage);
                    self.saw_usage = true;
                }
                if let Some(stop_reason) = event
                    .get("delta")
                    .and_then(|delta| delta.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    out.push(
                        self.writer
                            .chunk(0, &json!({}), Some(finish_reason_of(stop_reason))),
                    );
                }
            }
            "message_stop" if !self.complete => {
                self.complete = true;
                if self.include_usage {
                    out.push(self.writer.usage_chunk(self.usage.openai()));
                }
                out.push(Bytes::from_static(OPENAI_DONE));
            }
            "error" => {
                self.failed = true;
                let message = event
                    .get("error")
                    .and_then(|error| error.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("The upstream stream failed");
                let kind = event
                    .get("error")
                    .and_then(|error| error.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("api_error");
                out.push(openai_error_chunk(message, kind));
            }
            // ping, content_block_stop and event types added later
            _ => {}
        }
        Ok(out)
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        self.events.take_text_chars()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn usage(&self) -> Option<Usage> {
        self.saw_usage.then(|| self.usage.gateway())
    }

    fn is_complete(&self) -> bool {
        self.complete && !self.failed
    }
}

// ---------------------------------------------------------------------------
// Streams: OpenAI chunks -> Anthropic events
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text(u64),
    Tool(u64),
}

/// Translates an OpenAI chat completion stream (with or without the usage
/// chunk) into the Anthropic Messages event sequence as it arrives.
#[derive(Debug, Default)]
pub struct OpenAiToAnthropicStream {
    model: Option<String>,
    started: bool,
    open: Option<OpenBlock>,
    next_block: u64,
    /// OpenAI tool call index -> Anthropic content block index.
    tool_blocks: HashMap<u64, u64>,
    stop_reason: Option<&'static str>,
    usage: Option<AnthropicUsage>,
    complete: bool,
    failed: bool,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl OpenAiToAnthropicStream {
    /// `model`: the name to report in `message_start` (the client's), else
    /// the upstream chunk's `model`.
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            ..Self::default()
        }
    }

    /// An error event arrived (`is_complete` stays false).
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn start(&mut self, chunk: &Map<String, Value>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let model = self
            .model
            .clone()
            .map(Value::String)
            .or_else(|| chunk.get("model").cloned())
            .unwrap_or(Value::Null);
        out.push(anthropic_sse(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": chunk.get("id"),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": { "input_tokens": 0, "output_tokens": 0 },
                },
            }),
        ));
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        if let Some(OpenBlock::Text(index) | OpenBlock::Tool(index)) = self.open.take() {
            out.push(anthropic_sse(
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            ));
        }
    }

    fn open_block(&mut self, block: Value, out: &mut Vec<Bytes>) -> u64 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        out.push(anthropic_sse(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": block }),
        ));
        index
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        let index = match self.open {
            Some(OpenBlock::Text(index)) => index,
            _ => {
                let index = self.open_block(json!({ "type": "text", "text": "" }), out);
                self.open = Some(OpenBlock::Text(index));
                index
            }
        };
        out.push(anthropic_sse(
            "content_block_delta",
            &json!({
                "type": "content_block_delta",
                "index": index,
                "delta": { "type": "text_delta", "text": text },
            }),
        ));
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let tool_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let block = match self.tool_blocks.get(&tool_index) {
            Some(&block) => block,
            None => {
                let block = self.open_block(
                    json!({
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": call.pointer("/function/name"),
                        "input": {},
                    }),
                    out,
                );
                self.open = Some(OpenBlock::Tool(block));
                self.tool_blocks.insert(tool_index, block);
                block
            }
        };
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !arguments.is_empty() {
            out.push(anthropic_sse(
                "content_block_delta",
                &json!({
                    "type": "content_block_delta",
                    "index": block,
                    "delta": { "type": "input_json_delta", "partial_json": arguments },
                }),
            ));
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        if self.complete {
            return;
        }
        self.close_block(out);
        self.complete = true;
        let usage = self.usage.unwrap_or_default();
        out.push(anthropic_sse(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {
                    "stop_reason": self.stop_reason.unwrap_or("end_turn"),
                    "stop_sequence": null,
                },
                "usage": usage.anthropic(),
            }),
        ));
        out.push(anthropic_sse(
            "message_stop",
            &json!({ "type": "message_stop" }),
        ));
    }
}

impl StreamTranslator for OpenAiToAnthropicStream {
    fn on_event(
        &mut self,
        _event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        let mut out = Vec::new();
        let data = data.trim_ascii();
        if data.is_empty() || self.complete {
            return Ok(out);
        }
        if data == b"[DONE]" {
            if self.started && !self.failed {
                self.end(&mut out);
            }
            return Ok(out);
        }
        let chunk = self.events.parse(data)?;
        if let Some(error) = chunk.get("error") {
            self.failed = true;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream stream failed");
            out.push(anthropic_sse(
                "error",
                &wire_error::anthropic("api_error", message),
            ));
            return Ok(out);
        }
        self.start(&chunk, &mut out);
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = Some(AnthropicUsage::from_openai(usage));
        }
        // Only the first choice is translated: Anthropic has no `n`.
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|choice| choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        if let Some(choice) = choice {
            if let Some(delta) = choice.get("delta") {
                if let Some(text) = delta
                    .get("content")
                    .and_then(Value::as_str)
                    .filter(|text| !text.is_empty())
                {
                    self.text(text, &mut out);
                }
                if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                    for call in calls {
                        self.tool_call(call, &mut out);
                    }
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.close_block(&mut out);
                self.stop_reason = Some(stop_reason_of(reason));
            }
        }
        Ok(out)
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        self.events.take_text_chars()
    }

    /// Ends the message if the upstream finished (`finish_reason` seen) but
    /// closed without `[DONE]`, as some OpenAI-compatible servers do.
    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.stop_reason.is_some() && !self.failed {
            self.end(&mut out);
        }
        out
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.map(|usage| usage.gateway())
    }

    fn is_complete(&self) -> bool {
        self.complete && !self.failed
    }
}

// ---------------------------------------------------------------------------
// Streams: Anthropic events passed through to an Anthropic client
// ---------------------------------------------------------------------------

/// Passes an Anthropic event stream through unchanged while reading its
/// usage (`message_start`, `message_delta`) and its end (`message_stop`).
#[derive(Debug, Default)]
pub struct AnthropicPassthroughStream {
    usage: AnthropicUsage,
    saw_usage: bool,
    complete: bool,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl StreamTranslator for AnthropicPassthroughStream {
    fn on_event(
        &mut self,
        event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let event = self.events.parse(data)?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .or(event_name)
            .unwrap_or_default();
        let usage = match kind {
            "message_start" => event
                .get("message")
                .and_then(|message| message.get("usage")),
            "message_delta" => event.get("usage"),
            _ => None,
        };
        if let Some(usage) = usage {
            self.usage.update(usage);
            self.saw_usage = true;
        }
        match kind {
            "message_stop" => self.complete = true,
            "error" => self.complete = false,
            _ => {}
        }
        // The upstream's own bytes, re-framed: nothing is re-serialised.
        let mut out = Vec::with_capacity(data.len() + kind.len() + 16);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\n\n");
        Ok(vec![Bytes::from(out)])
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        self.events.take_text_chars()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn usage(&self) -> Option<Usage> {
        self.saw_usage.then(|| self.usage.gateway())
    }

    fn is_complete(&self) -> bool {
        self.complete
    }
}

/// Whether an Anthropic stream event commits the answer: generated content,
/// the end, or an error. `message_start`, `ping` and an empty block's start
/// do not, so a failure right after them still fails over invisibly.
pub fn carries_content(data: &[u8]) -> bool {
    // The type read alone first, as `openai::carries_content` does; an
    // event it cannot read as the `Value` below would is read that way.
    if data.trim_ascii_start().first() == Some(&b'{')
        && let Ok(event) = serde_json::from_slice::<TypeProbe>(data)
    {
        return commits(event.kind);
    }
    carries_content_in_value(data)
}

/// [`carries_content`] read from a `Value`.
fn carries_content_in_value(data: &[u8]) -> bool {
    let Ok(event) = serde_json::from_slice::<Value>(data) else {
        // Unreadable: let the relay and the client see it.
        return true;
    };
    commits(event.get("type").and_then(Value::as_str))
}

fn commits(kind: Option<&str>) -> bool {
    matches!(
        kind,
        Some("content_block_delta" | "message_delta" | "message_stop" | "error")
    )
}

/// An event's `type`, the other members skipped unbuilt. A `type` that is
/// not a plain string (another type, escapes) or comes twice is an error.
#[derive(serde::Deserialize)]
struct TypeProbe<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a str>,
}

/// The event an Anthropic stream sends most, a text block's next piece,
/// with exactly these members. Read without building a `Value`: parsing
/// every event into one was ~10% of a translated stream's CPU
/// (bench/README.md). Any other event, or this one with another member, a
/// member twice or of another type, is read as a `Value`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    /// Unused for text, but a number, as a `Value` read requires nothing
    /// of it: anything else goes the `Value` way, where its text counts.
    #[serde(rename = "index")]
    _index: u64,
    #[serde(borrow)]
    delta: TextDelta<'a>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TextDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// The text of a `content_block_delta` event of a `text_delta`, when the
/// event is exactly that ([`TextDeltaEvent`]).
fn text_delta(data: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let event: TextDeltaEvent = serde_json::from_slice(data).ok()?;
    (event.kind == "content_block_delta" && event.delta.kind == "text_delta")
        .then_some(event.delta.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE_START: &[u8] =
        br#"{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":3}}}"#;

    /// A text delta read without a `Value` reaches the client as the same
    /// bytes, and the estimate as the same characters, as when it is read
    /// into one: the same event with one more member (a number, so no
    /// text) is read that way.
    #[test]
    fn a_text_delta_read_quickly_translates_as_one_read_into_a_value() -> Result<(), TranslateError>
    {
        for text in ["hello", "", r#"caf\u00e9 \n \"quoted\" \\"#, "日本語 🙂"] {
            let quick = format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#
            );
            let slow = format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}},"extra":1}}"#
            );
            assert!(text_delta(quick.as_bytes()).is_some(), "{quick}");
            assert!(text_delta(slow.as_bytes()).is_none(), "{slow}");
            for opened in [false, true] {
                let mut fast = AnthropicToOpenAiStream::new(7, true);
                let mut value = AnthropicToOpenAiStream::new(7, true);
                if opened {
                    for stream in [&mut fast, &mut value] {
                        stream.on_event(None, MESSAGE_START)?;
                        stream.take_text_chars();
                    }
                }
                let fast_out = fast.on_event(None, quick.as_bytes())?;
                let value_out = value.on_event(None, slow.as_bytes())?;
                assert_eq!(fast_out, value_out, "{text}");
                // Nothing but an empty delta into an opened stream.
                assert_eq!(fast_out.is_empty(), opened && text.is_empty(), "{text}");
                assert_eq!(fast.take_text_chars(), value.take_text_chars(), "{text}");
            }
        }
        Ok(())
    }

    /// A text delta under another event name is read the `Value` way (no
    /// typed attempt), and reaches the client as the same bytes.
    #[test]
    fn a_text_delta_under_another_name_translates_the_same() -> Result<(), TranslateError> {
        let delta = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#;
        for name in [None, Some("ping"), Some("message_delta")] {
            let mut named = AnthropicToOpenAiStream::new(7, true);
            let mut plain = AnthropicToOpenAiStream::new(7, true);
            for stream in [&mut named, &mut plain] {
                stream.on_event(Some("message_start"), MESSAGE_START)?;
            }
            assert_eq!(
                named.on_event(name, delta)?,
                plain.on_event(Some("content_block_delta"), delta)?,
                "{name:?}"
            );
            assert_eq!(named.take_text_chars(), plain.take_text_chars(), "{name:?}");
        }
        Ok(())
    }

    /// Events that are not exactly a text delta go the `Value` way.
    #[test]
    fn only_an_exact_text_delta_is_read_quickly() {
        for event in [
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#.as_slice(),
            br#"{"type":"content_block_start","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            br#"{"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"a"}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","text":"b"}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":null}}"#,
            br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}"#,
            br#"[{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}]"#,
        ] {
            assert!(text_delta(event).is_none(), "{}", String::from_utf8_lossy(event));
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// An event's text: members with keys from a small set (a key may
        /// come twice), `type` among them, values of every JSON type.
        fn event() -> impl Strategy<Value = String> {
            let value = proptest::sample::select(vec![
                r#""content_block_delta""#,
                r#""message_stop""#,
                r#""ping""#,
                r#""error""#,
                r#""message\u005fdelta""#,
                r#""""#,
                "null",
                "0",
                "[]",
                r#"{"type":"message_stop"}"#,
            ])
            .prop_map(str::to_owned);
            crate::providers::json_text::object(&["type", "index", "delta"], value)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Whatever an event holds, the quick read of its type decides
            /// as the `Value` read.
            #[test]
            fn any_event_is_decided_as_the_value_read_decides(event in event()) {
                prop_assert_eq!(
                    carries_content(event.as_bytes()),
                    carries_content_in_value(event.as_bytes()),
                    "{}", event
                );
            }
        }
    }

    /// The quick read of an event's type decides as the `Value` read.
    #[test]
    fn the_quick_read_of_an_event_decides_as_the_value_read() {
        for event in [
            MESSAGE_START,
            br#"{"type":"ping"}"#,
            br#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
            br#"{"type":"message_stop"}"#,
            br#"{"type":"error","error":{"type":"overloaded_error"}}"#,
            br#"{"type":null}"#,
            br#"{"type":7}"#,
            br#"{"type":"ping","type":"message_stop"}"#,
            br#"{"type":"message\u005fstop"}"#,
            br#"{}"#,
            br#"[]"#,
            b"\"message_stop\"",
            b"{broken",
            b"",
        ] {
            assert_eq!(
                carries_content(event),
                carries_content_in_value(event),
                "{}",
                String::from_utf8_lossy(event)
            );
        }
    }
}
