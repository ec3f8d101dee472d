//! `streamGenerateContent?alt=sse` as OpenAI chunks, event by event.

use super::response::{
    call_id, candidate_index, candidate_parts, completion_id, finish_reason_of, openai_usage,
};
use crate::providers::openai::Usage;
use crate::providers::translate::{
    ChunkWriter, EventReader, OPENAI_DONE, StreamTranslator, TranslateError, openai_error_chunk,
};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// Translates `streamGenerateContent?alt=sse` (each event a whole
/// `GenerateContentResponse` holding the next piece) into OpenAI
/// `chat.completion.chunk` events. Gemini has no end marker: the chunk with
/// a `finishReason` ends the answer, and [`StreamTranslator::finish`] (at
/// the upstream's end) sends the usage chunk and `[DONE]`.
#[derive(Debug, Default)]
pub struct GeminiToOpenAiStream {
    writer: ChunkWriter,
    include_usage: bool,
    started: bool,
    call_ids: String,
    /// Candidate index -> tool calls sent so far.
    tool_calls: HashMap<u64, u64>,
    usage: Option<Value>,
    finished: bool,
    done: bool,
    failed: bool,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl GeminiToOpenAiStream {
    /// `model`: the name to report; `created`: the Unix time;
    /// `include_usage`: the client asked for the usage chunk.
    pub fn new(model: &str, created: i64, include_usage: bool) -> Self {
        Self {
            writer: ChunkWriter::new(String::new(), model.to_owned(), created),
            include_usage,
            ..Self::default()
        }
    }

    /// An error event arrived (`is_complete` stays false).
    pub fn failed(&self) -> bool {
        self.failed
    }
}

impl StreamTranslator for GeminiToOpenAiStream {
    fn on_event(
        &mut self,
        _event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        let mut out = Vec::new();
        let data = data.trim_ascii();
        if data.is_empty() || self.done {
            return Ok(out);
        }
        let chunk = self.events.parse(data)?;
        if let Some(error) = chunk.get("error") {
            self.failed = true;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream stream failed");
            out.push(openai_error_chunk(message, "upstream_error"));
            return Ok(out);
        }
        if !self.started {
            self.started = true;
            let response_id = chunk
                .get("responseId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.call_ids = response_id.to_owned();
            self.writer
                .set_id(completion_id(response_id, self.writer.created()));
            out.push(
                self.writer
                    .chunk(0, &json!({ "role": "assistant", "content": "" }), None),
            );
        }
        if let Some(metadata) = chunk.get("usageMetadata") {
            self.usage = Some(openai_usage(metadata));
        }
        let candidates = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (position, candidate) in candidates.iter().enumerate() {
            let index = candidate_index(candidate, position);
            let parts = candidate_parts(candidate);
            if let Some(text) = parts.text.filter(|text| !text.is_empty()) {
                out.push(self.writer.text(index, &text));
            }
            for (name, args) in parts.calls {
                let sent = self.tool_calls.entry(index).or_insert(0);
                let number = *sent;
                *sent += 1;
                out.push(self.writer.chunk(
                    index,
                    &json!({ "tool_calls": [{
                        "index": number,
                        "id": call_id(&self.call_ids, number),
                        "type": "function",
                        "function": { "name": name, "arguments": args.to_string() },
                    }] }),
                    None,
                ));
            }
            if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
                let reason = match finish_reason_of(reason) {
                    "stop" if self.tool_calls.get(&index).is_some_and(|sent| *sent > 0) => {
                        "tool_calls"
                    }
                    mapped => mapped,
                };
                out.push(self.writer.chunk(index, &json!({}), Some(reason)));
                self.finished = true;
            }
        }
        if candidates.is_empty()
            && chunk
                .get("promptFeedback")
                .is_some_and(|feedback| feedback.get("blockReason").is_some())
        {
            out.push(self.writer.chunk(0, &json!({}), Some("content_filter")));
            self.finished = true;
        }
        Ok(out)
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        self.events.take_text_chars()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.finished && !self.done && !self.failed {
            self.done = true;
            if self.include_usage
                && let Some(usage) = &self.usage
            {
                out.push(self.writer.usage_chunk(usage.clone()));
            }
            out.push(Bytes::from_static(OPENAI_DONE));
        }
        out
    }

    fn usage(&self) -> Option<Usage> {
        crate::providers::openai::usage_fields(self.usage.as_ref()?)
    }

    fn is_complete(&self) -> bool {
        self.done && !self.failed
    }
}
