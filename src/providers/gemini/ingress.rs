//! The Gemini front door's translations (`/v1beta/models/{model}:generateContent`,
//! used by Google's SDKs and the Gemini CLI): a Gemini `GenerateContentRequest`
//! as an OpenAI chat body, and OpenAI answers, whole or streamed, back as
//! Gemini ones. Anthropic upstreams reach this door through OpenAI's format
//! (two translators chained); Gemini upstreams are passed through, and
//! [`GeminiPassthroughStream`] only watches their streams for the end marker
//! and the usage.

use super::response::usage_of;
use crate::providers::openai::Usage;
use crate::providers::translate::{
    EventReader, StreamTranslator, TranslateError, data_sse, request_object, response_object,
};
use crate::providers::wire_error;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A Gemini `GenerateContentRequest` (the model and the streaming choice
/// come from the URL) as an OpenAI `/v1/chat/completions` body.
///
/// `systemInstruction` becomes a system message; `model` turns are
/// assistant messages (thought parts dropped), their `functionCall` parts
/// tool calls; `functionResponse` parts become tool messages answering the
/// call with the same `id`, else the earliest unanswered call of the same
/// name. Gemini calls carry no id before API v1beta's `id` field, so calls
/// without one get `call_{turn}_{n}`. Gemini's own tools (Google Search,
/// code execution, ...) have no OpenAI equivalent: `Unsupported`.
pub fn gemini_to_openai_request(
    body: &Value,
    model: &str,
    stream: bool,
) -> Result<Value, TranslateError> {
    let body = request_object(body)?;
    let contents = match body.get("contents") {
        Some(Value::Array(contents)) if !contents.is_empty() => contents,
        Some(Value::Array(_)) => {
            return Err(TranslateError::invalid(
                "contents",
                "contents must not be empty",
            ));
        }
        _ => {
            return Err(TranslateError::invalid(
                "contents",
                "`contents` must be an array of Content objects",
            ));
        }
    };
    let mut messages = Vec::new();
    if let Some(system) = body
        .get("systemInstruction")
        .or_else(|| body.get("system_instruction"))
        .filter(|system| !system.is_null())
    {
        let text = match system {
            Value::String(text) => text.clone(),
            other => parts_text(other.get("parts"), "systemInstruction.parts")?,
        };
        if !text.is_empty() {
            messages.push(json!({ "role": "system", "content": text }));
        }
    }
    // Calls of the latest model turn not answered yet: (id, name).
    let mut pending: VecDeque<(String, String)> = VecDeque::new();
    for (turn, content) in contents.iter().enumerate() {
        let at = |field: &str| format!("contents[{turn}].{field}");
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .ok_or_else(|| TranslateError::invalid(at("parts"), "`parts` must be an array"))?;
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        match role {
            // "function" is the role of function results in older clients.
            "user" | "function" => {
                let mut user = Vec::new();
                for (index, part) in parts.iter().enumerate() {
                    let param = || at(&format!("parts[{index}]"));
                    if let Some(result) = part
                        .get("functionResponse")
                        .or_else(|| part.get("function_response"))
                    {
                        let name = result.get("name").and_then(Value::as_str).unwrap_or("");
                        let id = result.get("id").and_then(Value::as_str);
                        let position = pending
                            .iter()
                            .position(|(call_id, _)| Some(call_id.as_str()) == id)
                            .or_else(|| pending.iter().position(|(_, call)| call == name))
                            .ok_or_else(|| {
                                TranslateError::invalid(
                                    param(),
                                    format!(
                                        "no earlier functionCall in a model turn matches the functionResponse `{name}`"
                                    ),
                                )
                            })?;
                        let (call_id, _) = pending.remove(position).unwrap_or_default();
                        let output = result.get("response").cloned().unwrap_or(json!({}));
                        messages.push(json!({
                            "role": "tool",
                            "tool_call_id": call_id,
                            "content": output.to_string(),
                        }));
                    } else if let Some(part) = user_part(part, param)? {
                        user.push(part);
                    }
                }
                if !user.is_empty() {
                    let content = match user.as_slice() {
                        [only] if only.get("type") == Some(&json!("text")) => {
                            only.get("text").cloned().unwrap_or_default()
                        }
                        _ => Value::Array(user),
                    };
                    messages.push(json!({ "role": "user", "content": content }));
                }
            }
            "model" | "assistant" => {
                pending.clear();
                let mut text = String::new();
                let mut calls = Vec::new();
                for (index, part) in parts.iter().enumerate() {
                    if part.get("thought").and_then(Value::as_bool) == Some(true) {
                        continue;
                    }
                    if let Some(piece) = part.get("text").and_then(Value::as_str) {
                        text.push_str(piece);
                    }
                    if let Some(call) = part
                        .get("functionCall")
                        .or_else(|| part.get("function_call"))
                    {
                        let name = call.get("name").and_then(Value::as_str).ok_or_else(|| {
                            TranslateError::invalid(
                                at(&format!("parts[{index}].functionCall.name")),
                                "a functionCall needs a name",
                            )
                        })?;
                        let id = call
                            .get("id")
                            .and_then(Value::as_str)
                            .filter(|id| !id.is_empty())
                            .map_or_else(|| format!("call_{turn}_{}", calls.len()), str::to_owned);
                        let args = call.get("args").cloned().unwrap_or(json!({}));
                        pending.push_back((id.clone(), name.to_owned()));
                        calls.push(json!({
                            "id": id,
                            "type": "function",
                            "function": { "name": name, "arguments": args.to_string() },
                        }));
                    }
                }
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                let mut message = Map::new();
                message.insert("role".to_owned(), json!("assistant"));
                message.insert(
                    "content".to_owned(),
                    if text.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    message.insert("tool_calls".to_owned(), Value::Array(calls));
                }
                messages.push(Value::Object(message));
            }
            other => {
                return Err(TranslateError::invalid(
                    at("role"),
                    format!("unknown role `{other}`: a Content's role is `user` or `model`"),
                ));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".to_owned(), json!(model));
    out.insert("messages".to_owned(), Value::Array(messages));
    if stream {
        out.insert("stream".to_owned(), json!(true));
        out.insert(
            "stream_options".to_owned(),
            json!({ "include_usage": true }),
        );
    }
    if let Some(config) = body
        .get("generationConfig")
        .or_else(|| body.get("generation_config"))
    {
        generation_config(config, &mut out)?;
    }
    if let Some(tools) = body.get("tools").filter(|tools| !tools.is_null()) {
        let tools = openai_tools(tools)?;
        if !tools.is_empty() {
            out.insert("tools".to_owned(), Value::Array(tools));
            let config = body.get("toolConfig").or_else(|| body.get("tool_config"));
            if let Some(choice) = tool_choice(config) {
                out.insert("tool_choice".to_owned(), choice);
            }
        }
    }
    Ok(Value::Object(out))
}

/// The text of a `parts` list (system instructions), joined by newlines.
fn parts_text(parts: Option<&Value>, param: &str) -> Result<String, TranslateError> {
    let parts = parts
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid(param, "`parts` must be an array"))?;
    Ok(parts
        .iter()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// One part of a user turn as an OpenAI content part; `None` for parts
/// that carry nothing to send (an empty part, a thought).
fn user_part(part: &Value, param: impl Fn() -> String) -> Result<Option<Value>, TranslateError> {
    if part.get("thought").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        return Ok(Some(json!({ "type": "text", "text": text })));
    }
    if let Some(inline) = part.get("inlineData").or_else(|| part.get("inline_data")) {
        let mime_type = inline
            .get("mimeType")
            .or_else(|| inline.get("mime_type"))
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream");
        let data = inline
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(param(), "`inlineData.data` is missing"))?;
        let url = format!("data:{mime_type};base64,{data}");
        return Ok(Some(if mime_type.starts_with("image/") {
            json!({ "type": "image_url", "image_url": { "url": url } })
        } else if let Some(format) =
            mime_type
                .strip_prefix("audio/")
                .and_then(|format| match format {
                    "wav" | "x-wav" => Some("wav"),
                    "mp3" | "mpeg" => Some("mp3"),
                    _ => None,
                })
        {
            json!({ "type": "input_audio", "input_audio": { "data": data, "format": format } })
        } else {
            json!({ "type": "file", "file": { "file_data": url } })
        }));
    }
    if let Some(file) = part.get("fileData").or_else(|| part.get("file_data")) {
        let uri = file
            .get("fileUri")
            .or_else(|| file.get("file_uri"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mime_type = file
            .get("mimeType")
            .or_else(|| file.get("mime_type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if (uri.starts_with("https://") || uri.starts_with("http://"))
            && (mime_type.is_empty() || mime_type.starts_with("image/"))
        {
            return Ok(Some(
                json!({ "type": "image_url", "image_url": { "url": uri } }),
            ));
        }
        return Err(TranslateError::unsupported(
            param(),
            "only images given by an http(s) `fileData.fileUri` can be sent to a model that is not Gemini",
        ));
    }
    let known = ["executableCode", "codeExecutionResult", "videoMetadata"];
    if let Some(kind) = known.iter().find(|kind| part.get(**kind).is_some()) {
        return Err(TranslateError::unsupported(
            param(),
            format!("`{kind}` parts can only be sent to a Gemini model"),
        ));
    }
    // An empty part (or only a thought signature): nothing to send.
    Ok(None)
}

/// `generationConfig` as OpenAI sampling fields. `topK` and
/// `thinkingConfig` have no OpenAI equivalent and are left out.
fn generation_config(config: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let Some(config) = config.as_object() else {
        return Err(TranslateError::invalid(
            "generationConfig",
            "`generationConfig` must be an object",
        ));
    };
    let read = |camel: &str, snake: &str| {
        config
            .get(camel)
            .or_else(|| config.get(snake))
            .filter(|value| !value.is_null())
    };
    for (camel, snake, to) in [
        ("temperature", "temperature", "temperature"),
        ("topP", "top_p", "top_p"),
        ("candidateCount", "candidate_count", "n"),
        ("maxOutputTokens", "max_output_tokens", "max_tokens"),
        ("presencePenalty", "presence_penalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty", "frequency_penalty"),
        ("seed", "seed", "seed"),
    ] {
        if let Some(value) = read(camel, snake) {
            if !value.is_number() {
                return Err(TranslateError::invalid(
                    format!("generationConfig.{camel}"),
                    format!("`{camel}` must be a number"),
                ));
            }
            out.insert(to.to_owned(), value.clone());
        }
    }
    if let Some(stops) = read("stopSequences", "stop_sequences").and_then(Value::as_array)
        && !stops.is_empty()
    {
        out.insert("stop".to_owned(), Value::Array(stops.clone()));
    }
    if read("responseMimeType", "response_mime_type").and_then(Value::as_str)
        == Some("application/json")
    {
        let schema = read("responseJsonSchema", "response_json_schema")
            .cloned()
            .or_else(|| read("responseSchema", "response_schema").map(openai_schema));
        out.insert(
            "response_format".to_owned(),
            match schema {
                Some(schema) => json!({
                    "type": "json_schema",
                    "json_schema": { "name": "response", "schema": schema },
                }),
                None => json!({ "type": "json_object" }),
            },
        );
    }
    Ok(())
}

/// Gemini `tools` as OpenAI function tools.
fn openai_tools(tools: &Value) -> Result<Vec<Value>, TranslateError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "`tools` must be an array"))?;
    let mut out = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let Some(tool) = tool.as_object() else {
            return Err(TranslateError::invalid(
                format!("tools[{index}]"),
                "a tool must be an object",
            ));
        };
        for (kind, value) in tool {
            if kind != "functionDeclarations" && kind != "function_declarations" {
                return Err(TranslateError::unsupported(
                    format!("tools[{index}].{kind}"),
                    format!("the Gemini tool `{kind}` can only be sent to a Gemini model"),
                ));
            }
            let declarations = value.as_array().ok_or_else(|| {
                TranslateError::invalid(
                    format!("tools[{index}].{kind}"),
                    "`functionDeclarations` must be an array",
                )
            })?;
            for (number, declaration) in declarations.iter().enumerate() {
                let name = declaration
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(
                            format!("tools[{index}].{kind}[{number}].name"),
                            "a function declaration needs a name",
                        )
                    })?;
                // `parametersJsonSchema` is JSON Schema already;
                // `parameters` is Gemini's OpenAPI subset.
                let parameters = declaration
                    .get("parametersJsonSchema")
                    .or_else(|| declaration.get("parameters_json_schema"))
                    .filter(|schema| schema.is_object())
                    .cloned()
                    .or_else(|| {
                        declaration
                            .get("parameters")
                            .filter(|schema| schema.is_object())
                            .map(openai_schema)
                    })
                    .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
                let mut function = Map::new();
                function.insert("name".to_owned(), json!(name));
                if let Some(description) = declaration.get("description").and_then(Value::as_str) {
                    function.insert("description".to_owned(), json!(description));
                }
                function.insert("parameters".to_owned(), parameters);
                out.push(json!({ "type": "function", "function": function }));
            }
        }
    }
    Ok(out)
}

/// Gemini's OpenAPI-subset schema (`"type": "OBJECT"`, `nullable`) as JSON
/// Schema: types in lower case, `nullable` as a `null` type, Gemini-only
/// keywords dropped.
fn openai_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => {
            let mut out = Map::new();
            let nullable = object.get("nullable").and_then(Value::as_bool) == Some(true);
            for (key, value) in object {
                match key.as_str() {
                    "nullable" | "propertyOrdering" | "property_ordering" => {}
                    "type" => {
                        let kind = value
                            .as_str()
                            .map(str::to_ascii_lowercase)
                            .map_or_else(|| value.clone(), Value::String);
                        let kind = match (nullable, kind) {
                            (true, Value::String(kind)) => json!([kind, "null"]),
                            (_, kind) => kind,
                        };
                        out.insert(key.clone(), kind);
                    }
                    "properties" => {
                        let properties = value
                            .as_object()
                            .map(|properties| {
                                properties
                                    .iter()
                                    .map(|(name, schema)| (name.clone(), openai_schema(schema)))
                                    .collect::<Map<_, _>>()
                            })
                            .map_or_else(|| value.clone(), Value::Object);
                        out.insert(key.clone(), properties);
                    }
                    "items" => {
                        out.insert(key.clone(), openai_schema(value));
                    }
                    "anyOf" | "any_of" => {
                        let schemas = value
                            .as_array()
                            .map(|schemas| schemas.iter().map(openai_schema).collect::<Vec<_>>())
                            .map_or_else(|| value.clone(), Value::Array);
                        out.insert("anyOf".to_owned(), schemas);
                    }
                    _ => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// `toolConfig.functionCallingConfig` as an OpenAI `tool_choice`.
fn tool_choice(config: Option<&Value>) -> Option<Value> {
    let calling = config?
        .get("functionCallingConfig")
        .or_else(|| config?.get("function_calling_config"))?;
    let mode = calling.get("mode").and_then(Value::as_str)?;
    let allowed = calling
        .get("allowedFunctionNames")
        .or_else(|| calling.get("allowed_function_names"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Some(match mode.to_ascii_uppercase().as_str() {
        "NONE" => json!("none"),
        "ANY" => match allowed {
            [Value::String(name)] => json!({ "type": "function", "function": { "name": name } }),
            _ => json!("required"),
        },
        // AUTO, VALIDATED, MODE_UNSPECIFIED.
        _ => json!("auto"),
    })
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// An OpenAI `finish_reason` as Gemini's `finishReason`.
pub fn gemini_finish_reason(reason: &str) -> &'static str {
    match reason {
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        // stop, tool_calls, function_call
        "stop" | "tool_calls" | "function_call" => "STOP",
        _ => "OTHER",
    }
}

/// OpenAI usage as Gemini `usageMetadata`: reasoning tokens are Gemini's
/// `thoughtsTokenCount`, outside `candidatesTokenCount`; cached prompt
/// tokens its `cachedContentTokenCount`.
fn usage_metadata(usage: &Value) -> Value {
    let read = |pointer: &str| usage.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let prompt = read("/prompt_tokens");
    let completion = read("/completion_tokens");
    let thoughts = read("/completion_tokens_details/reasoning_tokens");
    let cached = read("/prompt_tokens_details/cached_tokens");
    let mut metadata = Map::new();
    metadata.insert("promptTokenCount".to_owned(), json!(prompt));
    metadata.insert(
        "candidatesTokenCount".to_owned(),
        json!((completion - thoughts).max(0)),
    );
    metadata.insert("totalTokenCount".to_owned(), json!(prompt + completion));
    if cached > 0 {
        metadata.insert("cachedContentTokenCount".to_owned(), json!(cached));
    }
    if thoughts > 0 {
        metadata.insert("thoughtsTokenCount".to_owned(), json!(thoughts));
    }
    Value::Object(metadata)
}

/// OpenAI tool call arguments (a JSON string) as Gemini's `args` object.
fn call_args(arguments: Option<&Value>) -> Result<Value, TranslateError> {
    match arguments {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::Object(object)) => Ok(Value::Object(object.clone())),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(json!({})),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => Ok(Value::Object(object)),
            _ => Err(TranslateError::upstream(
                "a tool call's arguments are not a JSON object",
            )),
        },
        Some(_) => Err(TranslateError::upstream(
            "a tool call's arguments are not a JSON string",
        )),
    }
}

fn function_call_part(id: &str, name: &str, args: Value) -> Value {
    let mut call = Map::new();
    if !id.is_empty() {
        call.insert("id".to_owned(), json!(id));
    }
    call.insert("name".to_owned(), json!(name));
    call.insert("args".to_owned(), args);
    json!({ "functionCall": call })
}

/// An OpenAI `chat.completion` as a Gemini `GenerateContentResponse`;
/// `model` is reported when the answer names none. Tool calls keep their
/// OpenAI ids (Gemini's `functionCall.id`), so the client's
/// `functionResponse` finds its call again.
pub fn openai_to_gemini_response(body: &Value, model: &str) -> Result<Value, TranslateError> {
    let response = response_object(body)?;
    let choices = response
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::upstream("the response has no `choices`"))?;
    let mut candidates = Vec::with_capacity(choices.len());
    for (position, choice) in choices.iter().enumerate() {
        let message = choice.get("message").unwrap_or(&Value::Null);
        let mut parts = Vec::new();
        if let Some(thought) = message
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
        {
            parts.push(json!({ "text": thought, "thought": true }));
        }
        let text = crate::providers::translate::openai_content_text(message.get("content"), "");
        if !text.is_empty() {
            parts.push(json!({ "text": text }));
        }
        for call in message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            let args = call_args(call.pointer("/function/arguments"))?;
            parts.push(function_call_part(id, name, args));
        }
        if parts.is_empty() {
            parts.push(json!({ "text": "" }));
        }
        let reason = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map_or("STOP", gemini_finish_reason);
        candidates.push(json!({
            "content": { "role": "model", "parts": parts },
            "finishReason": reason,
            "index": choice.get("index").and_then(Value::as_u64).unwrap_or(position as u64),
        }));
    }
    let mut out = Map::new();
    out.insert("candidates".to_owned(), Value::Array(candidates));
    if let Some(usage) = response.get("usage").filter(|usage| usage.is_object()) {
        out.insert("usageMetadata".to_owned(), usage_metadata(usage));
    }
    out.insert(
        "modelVersion".to_owned(),
        response.get("model").cloned().unwrap_or(json!(model)),
    );
    if let Some(id) = response.get("id").and_then(Value::as_str) {
        out.insert("responseId".to_owned(), json!(id));
    }
    Ok(Value::Object(out))
}

/// An error body in OpenAI's shape as Gemini's, for the HTTP `status`.
pub fn openai_error_to_gemini(body: &Value, status: u16) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream returned an error");
    wire_error::gemini(status, message, wire_error::gemini_status_for_code(status))
}

/// The in-band error event that ends a Gemini stream the gateway cut, with
/// the status of its cause (a silent upstream 504 `DEADLINE_EXCEEDED`, a
/// stopping server 503 `UNAVAILABLE`, the rest 500 `INTERNAL`).
pub fn stream_error_event(message: &str, code: &str) -> Bytes {
    let status = wire_error::stream_cut_status(code);
    data_sse(&wire_error::gemini(
        status,
        &format!("{message} ({code})"),
        wire_error::gemini_status_for_code(status),
    ))
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// One streamed tool call being assembled from OpenAI's argument pieces.
#[derive(Debug, Default)]
struct PendingCall {
    id: String,
    name: String,
    arguments: String,
}

/// Translates OpenAI `chat.completion.chunk` events into Gemini
/// `streamGenerateContent?alt=sse` events. Text goes out as it comes; tool
/// calls, which OpenAI streams in argument pieces while Gemini sends whole
/// `functionCall`s, go out with the last event, which also carries the
/// `finishReason` and the `usageMetadata`. OpenAI's usage chunk follows its
/// finish, so that last event waits for `[DONE]` (or the upstream's end,
/// [`StreamTranslator::finish`]).
#[derive(Debug, Default)]
pub struct OpenAiToGeminiStream {
    model: String,
    response_id: String,
    /// (choice index, call index) -> the call so far.
    calls: BTreeMap<(u64, u64), PendingCall>,
    /// Choice index -> OpenAI finish reason.
    finishes: BTreeMap<u64, String>,
    usage: Option<Value>,
    done: bool,
    failed: bool,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl OpenAiToGeminiStream {
    /// `model`: reported when the upstream's chunks name none.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            ..Self::default()
        }
    }

    fn event(&self, candidates: Vec<Value>, usage: bool) -> Bytes {
        let mut out = Map::new();
        out.insert("candidates".to_owned(), Value::Array(candidates));
        if usage && let Some(usage) = &self.usage {
            out.insert("usageMetadata".to_owned(), usage_metadata(usage));
        }
        out.insert("modelVersion".to_owned(), json!(self.model));
        if !self.response_id.is_empty() {
            out.insert("responseId".to_owned(), json!(self.response_id));
        }
        data_sse(&Value::Object(out))
    }

    /// The closing event: every finished choice with its tool calls and
    /// finish reason, and the usage.
    fn closing(&mut self) -> Result<Bytes, TranslateError> {
        self.done = true;
        let mut candidates = Vec::new();
        for (index, reason) in &self.finishes {
            let mut parts = Vec::new();
            for ((_, _), call) in self.calls.range((*index, 0)..=(*index, u64::MAX)) {
                let args = call_args(Some(&json!(call.arguments)))?;
                parts.push(function_call_part(&call.id, &call.name, args));
            }
            if parts.is_empty() {
                parts.push(json!({ "text": "" }));
            }
            candidates.push(json!({
                "content": { "role": "model", "parts": parts },
                "finishReason": gemini_finish_reason(reason),
                "index": index,
            }));
        }
        Ok(self.event(candidates, true))
    }
}

impl StreamTranslator for OpenAiToGeminiStream {
    fn on_event(
        &mut self,
        _event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        let data = data.trim_ascii();
        if data.is_empty() || self.done || self.failed {
            return Ok(Vec::new());
        }
        if data == b"[DONE]" {
            if self.finishes.is_empty() {
                return Ok(Vec::new());
            }
            return Ok(vec![self.closing()?]);
        }
        let chunk = self.events.parse(data)?;
        if let Some(error) = chunk.get("error") {
            self.failed = true;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream stream failed");
            return Ok(vec![data_sse(&wire_error::gemini(
                500, message, "INTERNAL",
            ))]);
        }
        if self.response_id.is_empty()
            && let Some(id) = chunk.get("id").and_then(Value::as_str)
        {
            self.response_id = id.to_owned();
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str)
            && !model.is_empty()
        {
            self.model = model.to_owned();
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = Some(usage.clone());
        }
        let mut out = Vec::new();
        let choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (position, choice) in choices.iter().enumerate() {
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            let mut parts = Vec::new();
            if let Some(thought) = delta
                .get("reasoning_content")
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
            {
                parts.push(json!({ "text": thought, "thought": true }));
            }
            if let Some(text) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
            {
                parts.push(json!({ "text": text }));
            }
            if !parts.is_empty() {
                out.push(self.event(
                    vec![json!({ "content": { "role": "model", "parts": parts }, "index": index })],
                    false,
                ));
            }
            for (number, call) in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let call_index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(number as u64);
                let pending = self.calls.entry((index, call_index)).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    pending.id = id.to_owned();
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    pending.name.push_str(name);
                }
                if let Some(piece) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    pending.arguments.push_str(piece);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finishes.insert(index, reason.to_owned());
            }
        }
        Ok(out)
    }

    fn take_text_chars(&mut self) -> Option<usize> {
        self.events.take_text_chars()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        // Some servers close after the finish without `[DONE]`.
        if self.done || self.failed || self.finishes.is_empty() {
            return Vec::new();
        }
        match self.closing() {
            Ok(event) => vec![event],
            Err(error) => {
                self.failed = true;
                vec![stream_error_event(
                    &error.to_string(),
                    "stream_untranslatable",
                )]
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        // The cached and reasoning parts come along (`openai::usage_fields`).
        crate::providers::openai::usage_fields(self.usage.as_ref()?)
    }

    fn is_complete(&self) -> bool {
        self.done && !self.failed
    }
}

/// A Gemini upstream's stream to a Gemini client: each event's own bytes,
/// re-framed, while the usage and the end marker (a `finishReason`, or a
/// blocked prompt) are read on the way. Gemini sends no `[DONE]`, so only
/// a finish reason makes the stream complete.
#[derive(Debug, Default)]
pub struct GeminiPassthroughStream {
    usage: Option<Usage>,
    finished: bool,
    failed: bool,
    /// Reads the upstream's events (and counts the last one's text).
    events: EventReader,
}

impl StreamTranslator for GeminiPassthroughStream {
    fn on_event(
        &mut self,
        _event_name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<Bytes>, TranslateError> {
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk = Value::Object(self.events.parse(data)?);
        if chunk.get("error").is_some() {
            self.failed = true;
        }
        if let Some(usage) = usage_of(&chunk) {
            self.usage = Some(usage);
        }
        let ends = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .is_some_and(|candidates| {
                candidates
                    .iter()
                    .any(|candidate| candidate.get("finishReason").is_some())
            })
            || chunk.pointer("/promptFeedback/blockReason").is_some();
        if ends {
            self.finished = true;
        }
        let mut out = Vec::with_capacity(data.len() + 8);
        out.extend_from_slice(b"data: ");
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
        self.usage
    }

    fn is_complete(&self) -> bool {
        self.finished && !self.failed
    }
}

/// The prompt of a `countTokens` body, as a `generateContent` body: either
/// the `generateContentRequest` it wraps or its own `contents`.
pub fn count_tokens_request(body: &Value) -> Result<Value, TranslateError> {
    let body = request_object(body)?;
    if let Some(inner) = body
        .get("generateContentRequest")
        .or_else(|| body.get("generate_content_request"))
        .filter(|inner| !inner.is_null())
    {
        if !inner.is_object() {
            return Err(TranslateError::invalid(
                "generateContentRequest",
                "`generateContentRequest` must be an object",
            ));
        }
        return Ok(inner.clone());
    }
    Ok(Value::Object(body.clone()))
}
