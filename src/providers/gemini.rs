//! The Gemini `generateContent` format: the gateway's OpenAI-format requests
//! sent to `gemini` upstreams, and their answers (whole or streamed with
//! `streamGenerateContent?alt=sse`) read back as OpenAI ones.

use super::openai::Usage;
use super::translate::{
    ChunkWriter, OPENAI_DONE, StreamTranslator, ToolChoice, TranslateError, openai_content_text,
    openai_error_chunk, openai_max_tokens, parse_data_url, parse_event, parse_openai_tool_choice,
    parse_tool_arguments, request_object, response_object, stop_list,
};
use super::{Adapter, Wire};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use switchyard_actors::ProviderSpec;

/// The API path (below the provider's base URL) for a model, whole or
/// streamed as SSE.
pub fn api_path(model: &str, stream: bool) -> String {
    let model = super::path_segment(model.strip_prefix("models/").unwrap_or(model));
    if stream {
        format!("models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("models/{model}:generateContent")
    }
}

/// Gemini's API: keys in `x-goog-api-key` (never in the URL, where they
/// would end up in logs), model lists as `{"models":[{"name":"models/ID"}]}`.
pub struct GeminiAdapter;

impl Adapter for GeminiAdapter {
    fn wire(&self) -> Wire {
        Wire::Gemini
    }

    fn auth_headers(&self, _: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)> {
        vec![("x-goog-api-key", secret.to_owned())]
    }

    fn chat_path(&self, _: &ProviderSpec, model: &str, stream: bool) -> String {
        api_path(model, stream)
    }

    fn parse_models(&self, body: &Value) -> Vec<String> {
        body.get("models")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|model| model.get("name").and_then(Value::as_str))
                    .map(|name| name.strip_prefix("models/").unwrap_or(name).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// An OpenAI `/v1/chat/completions` body as a Gemini `GenerateContentRequest`
/// (the model and `stream` go in the URL: [`api_path`]).
///
/// System and developer messages become `systemInstruction`; assistant
/// turns are `model` turns; tool results become `functionResponse` parts of
/// a user turn, named after the call they answer. Consecutive turns of one
/// role are merged.
pub fn openai_to_gemini_request(body: &Value) -> Result<Value, TranslateError> {
    let body = request_object(body)?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages", "`messages` must be an array"))?;

    let mut system_parts = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (index, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            TranslateError::invalid(format!("messages[{index}]"), "every message needs a `role`")
        })?;
        let content = message.get("content");
        let (role, parts) = match role {
            "system" | "developer" => {
                let text = openai_content_text(content, "\n");
                if !text.is_empty() {
                    system_parts.push(json!({ "text": text }));
                }
                continue;
            }
            "user" => ("user", user_parts(content, index)?),
            "assistant" => {
                let mut parts = Vec::new();
                let text = openai_content_text(content, "");
                if !text.is_empty() {
                    parts.push(json!({ "text": text }));
                }
                let calls = message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for (call_index, call) in calls.iter().enumerate() {
                    let param =
                        |field: &str| format!("messages[{index}].tool_calls[{call_index}].{field}");
                    let name = call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            TranslateError::invalid(
                                param("function.name"),
                                "a tool call needs a name",
                            )
                        })?;
                    let args = parse_tool_arguments(call.pointer("/function/arguments"), || {
                        param("function.arguments")
                    })?;
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        call_names.insert(id.to_owned(), name.to_owned());
                    }
                    parts.push(json!({ "functionCall": { "name": name, "args": args } }));
                }
                if parts.is_empty() {
                    continue;
                }
                ("model", parts)
            }
            "tool" => {
                let param = format!("messages[{index}].tool_call_id");
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(
                            param.clone(),
                            "a tool message needs a `tool_call_id`",
                        )
                    })?;
                let name = call_names.get(id).ok_or_else(|| {
                    TranslateError::invalid(
                        param,
                        format!("no earlier assistant tool call has the id `{id}`"),
                    )
                })?;
                let text = openai_content_text(content, "\n");
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(object)) => Value::Object(object),
                    _ => json!({ "output": text }),
                };
                (
                    "user",
                    vec![json!({ "functionResponse": { "name": name, "response": response } })],
                )
            }
            other => {
                return Err(TranslateError::unsupported(
                    format!("messages[{index}].role"),
                    format!("messages with role `{other}` cannot be sent to a Gemini model"),
                ));
            }
        };
        match contents.last_mut() {
            Some((last_role, last)) if *last_role == role => last.extend(parts),
            _ => contents.push((role, parts)),
        }
    }

    let mut out = Map::new();
    out.insert(
        "contents".to_owned(),
        contents
            .into_iter()
            .map(|(role, parts)| json!({ "role": role, "parts": parts }))
            .collect(),
    );
    if !system_parts.is_empty() {
        out.insert(
            "systemInstruction".to_owned(),
            json!({ "parts": system_parts }),
        );
    }
    let config = generation_config(body);
    if !config.is_empty() {
        out.insert("generationConfig".to_owned(), Value::Object(config));
    }
    let declarations = match body.get("tools") {
        Some(Value::Array(tools)) => function_declarations(tools)?,
        _ => Vec::new(),
    };
    if !declarations.is_empty() {
        out.insert(
            "tools".to_owned(),
            json!([{ "functionDeclarations": declarations }]),
        );
        if let Some(config) = tool_config(body.get("tool_choice"))? {
            out.insert("toolConfig".to_owned(), config);
        }
    }
    Ok(Value::Object(out))
}

fn user_parts(content: Option<&Value>, index: usize) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        Some(Value::String(text)) => return Ok(vec![json!({ "text": text })]),
        Some(Value::Array(parts)) => parts,
        None | Some(Value::Null) => return Ok(vec![json!({ "text": "" })]),
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("messages[{index}].content"),
                "`content` must be a string or an array of parts",
            ));
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (part_index, part) in parts.iter().enumerate() {
        let param = || format!("messages[{index}].content[{part_index}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => out.push(json!({ "text": part.get("text") })),
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|image| image.get("url").or(Some(image)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(param(), "`image_url.url` is missing")
                    })?;
                if let Some((mime_type, data)) = parse_data_url(url) {
                    out.push(json!({ "inlineData": { "mimeType": mime_type, "data": data } }));
                } else if url.starts_with("https://") || url.starts_with("http://") {
                    out.push(json!({
                        "fileData": { "mimeType": mime_type_of_url(url), "fileUri": url }
                    }));
                } else {
                    return Err(TranslateError::invalid(
                        param(),
                        "an image URL must be an http(s) URL or a base64 data URL",
                    ));
                }
            }
            Some("input_audio") => {
                let audio = part.get("input_audio");
                let data = audio
                    .and_then(|audio| audio.get("data"))
                    .and_then(Value::as_str);
                let format = audio
                    .and_then(|audio| audio.get("format"))
                    .and_then(Value::as_str)
                    .unwrap_or("wav");
                let data = data.ok_or_else(|| {
                    TranslateError::invalid(param(), "`input_audio.data` is missing")
                })?;
                out.push(json!({ "inlineData": { "mimeType": format!("audio/{format}"), "data": data } }));
            }
            Some("file") => {
                let (mime_type, data) = part
                    .pointer("/file/file_data")
                    .and_then(Value::as_str)
                    .and_then(parse_data_url)
                    .ok_or_else(|| {
                        TranslateError::unsupported(
                            param(),
                            "only files given inline as a base64 `file_data` URL can be sent to a Gemini model",
                        )
                    })?;
                out.push(json!({ "inlineData": { "mimeType": mime_type, "data": data } }));
            }
            Some(other) => {
                return Err(TranslateError::unsupported(
                    param(),
                    format!("content parts of type `{other}` cannot be sent to a Gemini model"),
                ));
            }
            None => {
                return Err(TranslateError::invalid(
                    param(),
                    "a content part needs a `type`",
                ));
            }
        }
    }
    Ok(out)
}

/// Gemini wants a MIME type with every file reference.
fn mime_type_of_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}

fn generation_config(body: &Map<String, Value>) -> Map<String, Value> {
    let mut config = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ] {
        if let Some(value) = body.get(from).filter(|value| value.is_number()) {
            config.insert(to.to_owned(), value.clone());
        }
    }
    if let Some(max_tokens) = openai_max_tokens(body) {
        config.insert("maxOutputTokens".to_owned(), json!(max_tokens));
    }
    if let Some(stops) = stop_list(body.get("stop")) {
        config.insert("stopSequences".to_owned(), Value::Array(stops));
    }
    match body
        .get("response_format")
        .and_then(|format| format.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => {
            config.insert("responseMimeType".to_owned(), json!("application/json"));
        }
        Some("json_schema") => {
            config.insert("responseMimeType".to_owned(), json!("application/json"));
            if let Some(schema) = body
                .get("response_format")
                .and_then(|format| format.pointer("/json_schema/schema"))
            {
                config.insert("responseJsonSchema".to_owned(), schema.clone());
            }
        }
        _ => {}
    }
    config
}

fn function_declarations(tools: &[Value]) -> Result<Vec<Value>, TranslateError> {
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
                    format!("tools of type `{kind}` cannot be sent to a Gemini model"),
                ));
            }
            let name = tool
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TranslateError::invalid(format!("tools[{index}].function.name"), "missing name")
                })?;
            let mut declaration = Map::new();
            declaration.insert("name".to_owned(), json!(name));
            if let Some(description) = tool
                .pointer("/function/description")
                .and_then(Value::as_str)
            {
                declaration.insert("description".to_owned(), json!(description));
            }
            // Gemini refuses an object schema without properties.
            if let Some(parameters) = tool.pointer("/function/parameters").filter(|schema| {
                schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|properties| !properties.is_empty())
            }) {
                declaration.insert("parameters".to_owned(), clean_schema(parameters));
            }
            Ok(Value::Object(declaration))
        })
        .collect()
}

/// A JSON schema without the keywords Gemini's schema subset rejects.
fn clean_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "$schema" | "additionalProperties" | "strict" => {}
            "properties" => {
                let properties = value
                    .as_object()
                    .map(|properties| {
                        properties
                            .iter()
                            .map(|(name, schema)| (name.clone(), clean_schema(schema)))
                            .collect::<Map<_, _>>()
                    })
                    .map_or_else(|| value.clone(), Value::Object);
                out.insert(key.clone(), properties);
            }
            "items" => {
                out.insert(key.clone(), clean_schema(value));
            }
            "anyOf" | "oneOf" | "allOf" => {
                let schemas = value
                    .as_array()
                    .map(|schemas| schemas.iter().map(clean_schema).collect::<Vec<_>>())
                    .map_or_else(|| value.clone(), Value::Array);
                out.insert(key.clone(), schemas);
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

fn tool_config(choice: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let Some(choice) = parse_openai_tool_choice(choice)? else {
        return Ok(None);
    };
    let config = match choice {
        ToolChoice::Auto => json!({ "mode": "AUTO" }),
        ToolChoice::None => json!({ "mode": "NONE" }),
        ToolChoice::Required => json!({ "mode": "ANY" }),
        ToolChoice::Named(name) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// Gemini `finishReason` as an OpenAI `finish_reason`.
pub fn finish_reason_of(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        // STOP, OTHER, MALFORMED_FUNCTION_CALL, LANGUAGE, ...
        _ => "stop",
    }
}

/// Gemini `usageMetadata` as OpenAI usage; thinking tokens count as output.
fn openai_usage(metadata: &Value) -> Value {
    let read = |field: &str| metadata.get(field).and_then(Value::as_i64).unwrap_or(0);
    let prompt = read("promptTokenCount");
    let thoughts = read("thoughtsTokenCount");
    let completion = read("candidatesTokenCount") + thoughts;
    let mut usage = Map::new();
    usage.insert("prompt_tokens".to_owned(), json!(prompt));
    usage.insert("completion_tokens".to_owned(), json!(completion));
    usage.insert("total_tokens".to_owned(), json!(prompt + completion));
    let cached = read("cachedContentTokenCount");
    if cached > 0 {
        usage.insert(
            "prompt_tokens_details".to_owned(),
            json!({ "cached_tokens": cached }),
        );
    }
    if thoughts > 0 {
        usage.insert(
            "completion_tokens_details".to_owned(),
            json!({ "reasoning_tokens": thoughts }),
        );
    }
    Value::Object(usage)
}

/// The token counts of a Gemini response or stream chunk.
pub fn usage_of(body: &Value) -> Option<Usage> {
    let metadata = body.get("usageMetadata")?;
    let usage = openai_usage(metadata);
    let read = |field: &str| usage.get(field).and_then(Value::as_i64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: read("prompt_tokens"),
        completion_tokens: read("completion_tokens"),
    })
}

/// What one candidate (or chunk of one) says.
struct CandidateParts {
    text: Option<String>,
    calls: Vec<(String, Value)>,
}

fn candidate_parts(candidate: &Value) -> CandidateParts {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for part in parts {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(piece) = part.get("text").and_then(Value::as_str) {
            text.get_or_insert_with(String::new).push_str(piece);
        }
        if let Some(call) = part.get("functionCall") {
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            calls.push((name, args));
        }
    }
    CandidateParts { text, calls }
}

fn call_id(call_ids: &str, number: u64) -> String {
    if call_ids.is_empty() {
        format!("call_{number}")
    } else {
        format!("call_{call_ids}_{number}")
    }
}

fn candidate_index(candidate: &Value, position: usize) -> u64 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

/// A Gemini `GenerateContentResponse` as an OpenAI `chat.completion`.
/// `model` is the name to report; `created` the Unix time. Tool calls get
/// ids `call_{responseId}_{n}`, as Gemini's calls have none.
pub fn gemini_to_openai_response(
    body: &Value,
    model: &str,
    created: i64,
) -> Result<Value, TranslateError> {
    let response = response_object(body)?;
    if let Some(error) = response.get("error") {
        return Err(TranslateError::upstream(format!(
            "the upstream answered an error: {}",
            error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
        )));
    }
    let response_id = response
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let candidates = response
        .get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut choices = Vec::with_capacity(candidates.len().max(1));
    for (position, candidate) in candidates.iter().enumerate() {
        let parts = candidate_parts(candidate);
        let mut message = Map::new();
        message.insert("role".to_owned(), json!("assistant"));
        message.insert("content".to_owned(), json!(parts.text));
        let has_calls = !parts.calls.is_empty();
        if has_calls {
            let calls: Vec<Value> = parts
                .calls
                .into_iter()
                .zip(0u64..)
                .map(|((name, args), number)| {
                    json!({
                        "id": call_id(response_id, number),
                        "type": "function",
                        "function": { "name": name, "arguments": args.to_string() },
                    })
                })
                .collect();
            message.insert("tool_calls".to_owned(), Value::Array(calls));
        }
        let finish_reason = candidate
            .get("finishReason")
            .and_then(Value::as_str)
            .map(|reason| match finish_reason_of(reason) {
                "stop" if has_calls => "tool_calls",
                mapped => mapped,
            });
        choices.push(json!({
            "index": candidate_index(candidate, position),
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason,
        }));
    }
    if choices.is_empty() {
        if body.pointer("/promptFeedback/blockReason").is_none() {
            return Err(TranslateError::upstream("the response has no candidates"));
        }
        choices.push(json!({
            "index": 0,
            "message": { "role": "assistant", "content": null },
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    let mut completion = json!({
        "id": completion_id(response_id, created),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let (Some(metadata), Some(completion)) =
        (response.get("usageMetadata"), completion.as_object_mut())
    {
        completion.insert("usage".to_owned(), openai_usage(metadata));
    }
    Ok(completion)
}

fn completion_id(response_id: &str, created: i64) -> String {
    if response_id.is_empty() {
        format!("chatcmpl-gemini-{created}")
    } else {
        format!("chatcmpl-{response_id}")
    }
}

/// A Gemini error body (`{"error":{code,message,status}}`) in OpenAI's shape.
pub fn gemini_error_to_openai(body: &Value) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream returned an error");
    let status = body
        .pointer("/error/status")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN");
    json!({ "error": { "message": message, "type": "upstream_error", "param": null, "code": status } })
}

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
}

impl GeminiToOpenAiStream {
    /// `model`: the name to report; `created`: the Unix time;
    /// `include_usage`: the client asked for the usage chunk.
    pub fn new(model: &str, created: i64, include_usage: bool) -> Self {
        Self {
            writer: ChunkWriter {
                id: String::new(),
                model: model.to_owned(),
                created,
            },
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
        let chunk = parse_event(data)?;
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
            self.writer.id = completion_id(response_id, self.writer.created);
            out.push(
                self.writer
                    .chunk(0, json!({ "role": "assistant", "content": "" }), None),
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
                out.push(self.writer.chunk(index, json!({ "content": text }), None));
            }
            for (name, args) in parts.calls {
                let sent = self.tool_calls.entry(index).or_insert(0);
                let number = *sent;
                *sent += 1;
                out.push(self.writer.chunk(
                    index,
                    json!({ "tool_calls": [{
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
                out.push(self.writer.chunk(index, json!({}), Some(reason)));
                self.finished = true;
            }
        }
        if candidates.is_empty()
            && chunk
                .get("promptFeedback")
                .is_some_and(|feedback| feedback.get("blockReason").is_some())
        {
            out.push(self.writer.chunk(0, json!({}), Some("content_filter")));
            self.finished = true;
        }
        Ok(out)
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
        let usage = self.usage.as_ref()?;
        let read = |field: &str| usage.get(field).and_then(Value::as_i64).unwrap_or(0);
        Some(Usage {
            prompt_tokens: read("prompt_tokens"),
            completion_tokens: read("completion_tokens"),
        })
    }

    fn is_complete(&self) -> bool {
        self.done && !self.failed
    }
}
