//! Responses API streams: chat-completion chunks (OpenAI's, or another
//! wire's already translated to them) turned into Responses events, and an
//! OpenAI upstream's own Responses events passed through and read.
//!
//! Every event is `event: {type}` plus its JSON, with a `sequence_number`
//! counting from 0. A translated stream opens with `response.created` and
//! `response.in_progress`; text arrives as `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`…, closed by
//! `…output_text.done`, `…content_part.done`, `…output_item.done`; a tool
//! call as an item with `response.function_call_arguments.delta`/`.done`;
//! the stream ends with `response.completed` (or `response.incomplete`)
//! carrying the whole output and the usage.

use super::super::openai::{self, Usage};
use super::super::translate::{EventReader, StreamTranslator, TranslateError, sse_frame};
use super::response::{
    ResponseFrame, call_item, message_item, output_text_part, responses_usage, status_of,
};
use bytes::Bytes;
use serde_json::{Value, json};

/// `event: {type}\ndata: {json}\n\n`, the Responses framing.
fn sse(kind: &str, value: &Value) -> Bytes {
    sse_frame(&[b"event: ", kind.as_bytes(), b"\ndata: "], value)
}

/// The function call being streamed.
struct OpenCall {
    /// The chat tool call's `index`.
    chat_index: u64,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
    output_index: usize,
}

/// Chat chunks in, Responses events out.
pub struct ChatToResponsesStream {
    frame: ResponseFrame,
    sequence: u64,
    started: bool,
    /// Items already closed, as `response.completed` lists them.
    output: Vec<Value>,
    /// The text of the message item being streamed, if one is open.
    text: Option<String>,
    call: Option<OpenCall>,
    calls_seen: u64,
    finish_reason: Option<String>,
    usage: Option<Value>,
    counted: Option<Usage>,
    completed: bool,
    failed: bool,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl ChatToResponsesStream {
    pub fn new(frame: ResponseFrame) -> Self {
        Self {
            frame,
            sequence: 0,
            started: false,
            output: Vec::new(),
            text: None,
            call: None,
            calls_seen: 0,
            finish_reason: None,
            usage: None,
            counted: None,
            completed: false,
            failed: false,
            events: EventReader::default(),
        }
    }

    fn event(&mut self, kind: &str, mut value: Value) -> Bytes {
        value["type"] = json!(kind);
        value["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        sse(kind, &value)
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.frame.response("in_progress", Vec::new(), None, None);
        out.push(self.event("response.created", json!({ "response": response })));
        out.push(self.event("response.in_progress", json!({ "response": response })));
    }

    fn text_delta(&mut self, delta: &str, out: &mut Vec<Bytes>) {
        self.close_call(out);
        let item_id = self.frame.message_id();
        let output_index = self.output.len();
        if self.text.is_none() {
            self.text = Some(String::new());
            let item = message_item(&item_id, "in_progress", None);
            out.push(self.event(
                "response.output_item.added",
                json!({ "output_index": output_index, "item": item }),
            ));
            out.push(self.event(
                "response.content_part.added",
                json!({
                    "item_id": item_id, "output_index": output_index, "content_index": 0,
                    "part": output_text_part(""),
                }),
            ));
        }
        if let Some(text) = self.text.as_mut() {
            text.push_str(delta);
        }
        out.push(self.event(
            "response.output_text.delta",
            json!({
                "item_id": item_id, "output_index": output_index, "content_index": 0,
                "delta": delta, "logprobs": [],
            }),
        ));
    }

    fn close_text(&mut self, out: &mut Vec<Bytes>) {
        let Some(text) = self.text.take() else {
            return;
        };
        let item_id = self.frame.message_id();
        let output_index = self.output.len();
        out.push(self.event(
            "response.output_text.done",
            json!({
                "item_id": item_id, "output_index": output_index, "content_index": 0,
                "text": text, "logprobs": [],
            }),
        ));
        out.push(self.event(
            "response.content_part.done",
            json!({
                "item_id": item_id, "output_index": output_index, "content_index": 0,
                "part": output_text_part(&text),
            }),
        ));
        let item = message_item(&item_id, "completed", Some(&text));
        out.push(self.event(
            "response.output_item.done",
            json!({ "output_index": output_index, "item": item }),
        ));
        self.output.push(item);
    }

    fn tool_delta(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let function = call.get("function");
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if self
            .call
            .as_ref()
            .is_none_or(|open| open.chat_index != chat_index)
        {
            self.close_text(out);
            self.close_call(out);
            let string = |value: Option<&Value>| {
                value.and_then(Value::as_str).unwrap_or_default().to_owned()
            };
            let open = OpenCall {
                chat_index,
                item_id: self.frame.call_item_id(self.calls_seen),
                call_id: string(call.get("id")),
                name: string(function.and_then(|f| f.get("name"))),
                arguments: String::new(),
                output_index: self.output.len(),
            };
            self.calls_seen += 1;
            let item = call_item(&open.item_id, "in_progress", &open.call_id, &open.name, "");
            out.push(self.event(
                "response.output_item.added",
                json!({ "output_index": open.output_index, "item": item }),
            ));
            self.call = Some(open);
        }
        if arguments.is_empty() {
            return;
        }
        let Some(open) = self.call.as_mut() else {
            return;
        };
        open.arguments.push_str(&arguments);
        let (item_id, output_index) = (open.item_id.clone(), open.output_index);
        out.push(self.event(
            "response.function_call_arguments.delta",
            json!({ "item_id": item_id, "output_index": output_index, "delta": arguments }),
        ));
    }

    fn close_call(&mut self, out: &mut Vec<Bytes>) {
        let Some(call) = self.call.take() else {
            return;
        };
        out.push(self.event(
            "response.function_call_arguments.done",
            json!({
                "item_id": call.item_id, "output_index": call.output_index,
                "name": call.name, "arguments": call.arguments,
            }),
        ));
        let item = call_item(
            &call.item_id,
            "completed",
            &call.call_id,
            &call.name,
            &call.arguments,
        );
        out.push(self.event(
            "response.output_item.done",
            json!({ "output_index": call.output_index, "item": item }),
        ));
        self.output.push(item);
    }

    /// Closes what is open and sends the final `response` event.
    fn complete(&mut self, out: &mut Vec<Bytes>) {
        if self.completed || self.failed {
            return;
        }
        self.start(out);
        self.close_text(out);
        self.close_call(out);
        let (status, incomplete) = status_of(self.finish_reason.as_deref());
        let response =
            self.frame
                .response(status, self.output.clone(), self.usage.clone(), incomplete);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        out.push(self.event(kind, json!({ "response": response })));
        self.completed = true;
    }
}

impl StreamTranslator for ChatToResponsesStream {
    fn on_event(&mut self, _: Option<&str>, data: &[u8]) -> Result<Vec<Bytes>, TranslateError> {
        let mut out = Vec::new();
        if self.completed || self.failed {
            return Ok(out);
        }
        if data == b"[DONE]" {
            if self.finish_reason.is_some() {
                self.complete(&mut out);
            }
            return Ok(out);
        }
        let chunk = Value::Object(self.events.parse(data)?);
        if let Some(error) = chunk.get("error") {
            // The upstream reported a failure in-band: the relay ends the
            // stream with the gateway's error event.
            self.failed = true;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream reported an error");
            return Err(TranslateError::upstream(message.to_owned()));
        }
        self.start(&mut out);
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.counted = openai::usage_of(&chunk);
            self.usage = Some(responses_usage(usage));
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.map(Vec::as_slice).unwrap_or_default() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let delta = choice.get("delta");
            if let Some(text) = delta
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
            {
                self.text_delta(text, &mut out);
            }
            if let Some(calls) = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
            {
                for call in calls {
                    self.tool_delta(call, &mut out);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_owned());
                self.close_text(&mut out);
                self.close_call(&mut out);
            }
        }
        Ok(out)
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        self.events.take_text_chars()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        // Some servers close after the finish without `[DONE]`.
        let mut out = Vec::new();
        if self.finish_reason.is_some() {
            self.complete(&mut out);
        }
        out
    }

    fn usage(&self) -> Option<Usage> {
        self.counted
    }

    fn is_complete(&self) -> bool {
        self.completed
    }

    fn error_event(&self, message: &str, code: &str) -> Option<Bytes> {
        Some(responses_error_event(self.sequence, message, code))
    }
}

/// The Responses stream's `error` event, which ends a broken stream.
pub fn responses_error_event(sequence: u64, message: &str, code: &str) -> Bytes {
    sse(
        "error",
        &json!({
            "type": "error",
            "code": code,
            "message": message,
            "param": null,
            "sequence_number": sequence,
        }),
    )
}

/// An OpenAI upstream's own Responses events, passed on as they came and
/// read on the way: the usage from the final `response`, whether that
/// final event came, and the response's id (which the gateway remembers so
/// `GET /v1/responses/{id}` finds its provider).
#[derive(Debug, Default)]
pub struct ResponsesPassthroughStream {
    usage: Option<Usage>,
    complete: bool,
    response_id: Option<String>,
    sequence: u64,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl ResponsesPassthroughStream {
    /// The id of the response the upstream streamed, once it said.
    pub fn response_id(&self) -> Option<&str> {
        self.response_id.as_deref()
    }
}

/// Whether an upstream Responses event commits the answer: everything but
/// the opening `response.created`/`response.in_progress`, which carry no
/// content, so a failure before the first output still fails over.
pub fn carries_content(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return true;
    };
    !matches!(
        value.get("type").and_then(Value::as_str),
        Some("response.created" | "response.in_progress")
    )
}

impl StreamTranslator for ResponsesPassthroughStream {
    fn on_event(
        &mut self,
        event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        let value = Value::Object(self.events.parse(data)?);
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event_name)
            .unwrap_or_default()
            .to_owned();
        if let Some(sequence) = value.get("sequence_number").and_then(Value::as_u64) {
            self.sequence = sequence + 1;
        }
        if let Some(response) = value.get("response") {
            if self.response_id.is_none() {
                self.response_id = response
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            if let Some(usage) = super::response::usage_of(response) {
                self.usage = Some(usage);
            }
        }
        if matches!(kind.as_str(), "response.completed" | "response.incomplete") {
            self.complete = true;
        }
        let name = event_name.unwrap_or(kind.as_str());
        let mut event = String::with_capacity(data.len() + name.len() + 16);
        event.push_str("event: ");
        event.push_str(name);
        event.push_str("\ndata: ");
        event.push_str(&String::from_utf8_lossy(data));
        event.push_str("\n\n");
        Ok(vec![Bytes::from(event)])
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        self.events.take_text_chars()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn is_complete(&self) -> bool {
        self.complete
    }

    fn error_event(&self, message: &str, code: &str) -> Option<Bytes> {
        Some(responses_error_event(self.sequence, message, code))
    }
}
