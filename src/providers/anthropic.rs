//! The Anthropic Messages format, both ways: the gateway's OpenAI-format
//! requests sent to `anthropic` upstreams, and the `/v1/messages` front door
//! (Claude Code) served by OpenAI-kind upstreams.
//!
//! Requests, non-stream responses and streams (event by event) translate in
//! both directions. Top-level request fields are whitelisted, since both APIs
//! reject parameters they do not know; nested values they share (JSON
//! schemas, tool inputs) pass through untouched.

use super::openai::Usage;
use super::translate::{
    ChunkWriter, OPENAI_DONE, StreamTranslator, ToolChoice, TranslateError, anthropic_sse,
    copy_field, openai_content_text, openai_error_chunk, openai_max_tokens, parse_data_url,
    parse_event, parse_openai_tool_choice, parse_tool_arguments, request_object, response_object,
    stop_list,
};
use super::{Adapter, Wire};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use switchyard_actors::ProviderSpec;

/// Anthropic requires `max_tokens`; OpenAI clients often omit it.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The `anthropic-version` header sent upstream.
pub const API_VERSION: &str = "2023-06-01";

/// How OpenAI-format requests become Anthropic ones.
#[derive(Debug, Clone)]
pub struct AnthropicRequestOptions {
    /// `max_tokens` when the client gave neither `max_tokens` nor
    /// `max_completion_tokens`.
    pub default_max_tokens: u64,
}

impl Default for AnthropicRequestOptions {
    fn default() -> Self {
        Self {
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

/// Anthropic's API: `x-api-key` plus the `anthropic-version` header (the
/// provider's `api_version`, else [`API_VERSION`]).
pub struct AnthropicAdapter;

impl Adapter for AnthropicAdapter {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn auth_headers(&self, spec: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", secret.to_owned()),
            (
                "anthropic-version",
                spec.api_version
                    .as_deref()
                    .unwrap_or(API_VERSION)
                    .to_owned(),
            ),
        ]
    }

    fn chat_path(&self, _: &ProviderSpec, _model: &str, _stream: bool) -> String {
        "messages".to_owned()
    }
}

// ---------------------------------------------------------------------------
// Requests: OpenAI chat -> Anthropic Messages
// ---------------------------------------------------------------------------

/// Message content while a conversation is rebuilt: Anthropic accepts a
/// plain string or a list of blocks; merging needs blocks.
enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl Content {
    fn into_blocks(self) -> Vec<Value> {
        match self {
            Content::Text(text) => vec![json!({ "type": "text", "text": text })],
            Content::Blocks(blocks) => blocks,
        }
    }

    fn into_value(self) -> Value {
        match self {
            Content::Text(text) => Value::String(text),
            Content::Blocks(blocks) => Value::Array(blocks),
        }
    }
}

/// An OpenAI `/v1/chat/completions` body as an Anthropic `/v1/messages` body.
///
/// `system`/`developer` messages (anywhere) become the top-level `system`;
/// consecutive messages of one role are merged (Anthropic wants turns to
/// alternate); `tool` messages become `tool_result` blocks of a user turn.
/// Fields Anthropic has no use for (`n`=1, `stream_options`, `seed`,
/// `logprobs`, penalties, `response_format`, ...) are dropped.
pub fn openai_to_anthropic_request(
    body: &Value,
    options: &AnthropicRequestOptions,
) -> Result<Value, TranslateError> {
    let body = request_object(body)?;
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::unsupported(
            "n",
            "Anthropic models return one choice per request; `n` must be 1",
        ));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages", "`messages` must be an array"))?;

    let mut out = Map::new();
    copy_field(body, "model", &mut out, "model");
    out.insert(
        "max_tokens".to_owned(),
        json!(openai_max_tokens(body).unwrap_or(options.default_max_tokens)),
    );

    let (system, turns) = openai_messages_to_anthropic(messages)?;
    if let Some(system) = system {
        out.insert("system".to_owned(), system);
    }
    out.insert("messages".to_owned(), Value::Array(turns));

    if let Some(stops) = stop_list(body.get("stop")) {
        out.insert("stop_sequences".to_owned(), Value::Array(stops));
    }
    if let Some(temperature) = body.get("temperature").and_then(Value::as_f64) {
        // OpenAI allows 0..=2, Anthropic 0..=1.
        out.insert("temperature".to_owned(), json!(temperature.clamp(0.0, 1.0)));
    }
    copy_field(body, "top_p", &mut out, "top_p");
    // Fields some OpenAI clients send for Anthropic models (extra_body).
    copy_field(body, "top_k", &mut out, "top_k");
    copy_field(body, "thinking", &mut out, "thinking");
    if let Some(stream) = body.get("stream").and_then(Value::as_bool) {
        out.insert("stream".to_owned(), Value::Bool(stream));
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".to_owned(), json!({ "user_id": user }));
    }

    let tools = match body.get("tools") {
        Some(Value::Array(tools)) => openai_tools_to_anthropic(tools)?,
        _ => Vec::new(),
    };
    if !tools.is_empty() {
        out.insert("tools".to_owned(), Value::Array(tools));
        let parallel = body.get("parallel_tool_calls").and_then(Value::as_bool);
        if let Some(choice) = openai_tool_choice_to_anthropic(body.get("tool_choice"), parallel)? {
            out.insert("tool_choice".to_owned(), choice);
        }
    }
    Ok(Value::Object(out))
}

/// Returns the top-level `system` (a string for one plain system message,
/// else text blocks) and the alternating turns.
fn openai_messages_to_anthropic(
    messages: &[Value],
) -> Result<(Option<Value>, Vec<Value>), TranslateError> {
    let mut system: Vec<Content> = Vec::new();
    let mut turns: Vec<(&'static str, Content)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let param = || format!("messages[{index}]");
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(param(), "every message needs a `role`"))?;
        let content = message.get("content");
        let (role, converted) = match role {
            "system" | "developer" => {
                match content {
                    Some(Value::String(text)) => system.push(Content::Text(text.clone())),
                    Some(Value::Array(_)) => system.push(Content::Blocks(vec![
                        json!({ "type": "text", "text": openai_content_text(content, "\n") }),
                    ])),
                    _ => {}
                }
                continue;
            }
            "user" => ("user", openai_user_content(content, index)?),
            "assistant" => match openai_assistant_content(message, index)? {
                Some(content) => ("assistant", content),
                None => continue,
            },
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(
                            format!("messages[{index}].tool_call_id"),
                            "a tool message needs a `tool_call_id`",
                        )
                    })?;
                let result = match content {
                    Some(Value::Array(parts)) => Value::Array(
                        parts
                            .iter()
                            .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                            .map(|part| json!({ "type": "text", "text": part.get("text") }))
                            .collect(),
                    ),
                    Some(Value::String(text)) => Value::String(text.clone()),
                    _ => Value::String(String::new()),
                };
                (
                    "user",
                    Content::Blocks(vec![json!({
                        "type": "tool_result",
                        "tool_use_id": id,
                        "content": result,
                    })]),
                )
            }
            other => {
                return Err(TranslateError::unsupported(
                    format!("messages[{index}].role"),
                    format!("messages with role `{other}` cannot be sent to an Anthropic model"),
                ));
            }
        };
        match turns.last_mut() {
            Some((last_role, last)) if *last_role == role => {
                let previous = std::mem::replace(last, Content::Blocks(Vec::new()));
                let mut blocks = previous.into_blocks();
                blocks.extend(converted.into_blocks());
                *last = Content::Blocks(blocks);
            }
            _ => turns.push((role, converted)),
        }
    }
    let system = match system.len() {
        0 => None,
        1 if matches!(system.first(), Some(Content::Text(_))) => {
            system.pop().map(Content::into_value)
        }
        _ => Some(Value::Array(
            system.into_iter().flat_map(Content::into_blocks).collect(),
        )),
    };
    let turns = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content.into_value() }))
        .collect();
    Ok((system, turns))
}

fn openai_user_content(content: Option<&Value>, index: usize) -> Result<Content, TranslateError> {
    let parts = match content {
        Some(Value::String(text)) => return Ok(Content::Text(text.clone())),
        Some(Value::Array(parts)) => parts,
        None | Some(Value::Null) => return Ok(Content::Text(String::new())),
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("messages[{index}].content"),
                "`content` must be a string or an array of parts",
            ));
        }
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (part_index, part) in parts.iter().enumerate() {
        let param = || format!("messages[{index}].content[{part_index}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                blocks.push(json!({ "type": "text", "text": part.get("text").and_then(Value::as_str).unwrap_or_default() }));
            }
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|image| image.get("url").or(Some(image)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(param(), "`image_url.url` is missing")
                    })?;
                blocks.push(image_block(url, param)?);
            }
            Some("file") => {
                let data = part
                    .get("file")
                    .and_then(|file| file.get("file_data"))
                    .and_then(Value::as_str)
                    .and_then(parse_data_url);
                match data {
                    Some((media_type @ "application/pdf", data)) => blocks.push(json!({
                        "type": "document",
                        "source": { "type": "base64", "media_type": media_type, "data": data },
                    })),
                    _ => {
                        return Err(TranslateError::unsupported(
                            param(),
                            "only PDF files given inline as `file_data` can be sent to an Anthropic model",
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(TranslateError::unsupported(
                    param(),
                    format!("content parts of type `{other}` cannot be sent to an Anthropic model"),
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
    Ok(Content::Blocks(blocks))
}

fn image_block(url: &str, param: impl Fn() -> String) -> Result<Value, TranslateError> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(TranslateError::invalid(
        param(),
        "an image URL must be an http(s) URL or a base64 data URL",
    ))
}

/// `None` for an assistant message with nothing to say (Anthropic rejects
/// empty turns).
fn openai_assistant_content(
    message: &Value,
    index: usize,
) -> Result<Option<Content>, TranslateError> {
    let content = message.get("content");
    let text = openai_content_text(content, "");
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .filter(|calls| !calls.is_empty());
    let Some(tool_calls) = tool_calls else {
        return Ok(match content {
            _ if text.is_empty() => None,
            Some(Value::String(_)) => Some(Content::Text(text)),
            _ => Some(Content::Blocks(vec![
                json!({ "type": "text", "text": text }),
            ])),
        });
    };
    let mut blocks = Vec::with_capacity(tool_calls.len() + 1);
    if !text.is_empty() {
        blocks.push(json!({ "type": "text", "text": text }));
    }
    for (call_index, call) in tool_calls.iter().enumerate() {
        let param = |field: &str| format!("messages[{index}].tool_calls[{call_index}].{field}");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(param("id"), "a tool call needs an `id`"))?;
        let function = call.get("function");
        let name = function
            .and_then(|function| function.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TranslateError::invalid(param("function.name"), "a tool call needs a name")
            })?;
        let input = parse_tool_arguments(
            function.and_then(|function| function.get("arguments")),
            || param("function.arguments"),
        )?;
        blocks.push(json!({ "type": "tool_use", "id": id, "name": name, "input": input }));
    }
    Ok(Some(Content::Blocks(blocks)))
}

fn openai_tools_to_anthropic(tools: &[Value]) -> Result<Vec<Value>, TranslateError> {
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
                    format!("tools of type `{kind}` cannot be sent to an Anthropic model"),
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
            let mut out = Map::new();
            out.insert("name".to_owned(), json!(name));
            if let Some(description) = function.get("description").and_then(Value::as_str) {
                out.insert("description".to_owned(), json!(description));
            }
            let schema = function
                .get("parameters")
                .filter(|schema| schema.is_object())
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            out.insert("input_schema".to_owned(), schema);
            Ok(Value::Object(out))
        })
        .collect()
}

fn openai_tool_choice_to_anthropic(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, TranslateError> {
    let mut out = parse_openai_tool_choice(choice)?.map(|choice| match choice {
        ToolChoice::Auto => json!({ "type": "auto" }),
        ToolChoice::None => json!({ "type": "none" }),
        ToolChoice::Required => json!({ "type": "any" }),
        ToolChoice::Named(name) => json!({ "type": "tool", "name": name }),
    });
    if parallel == Some(false) {
        let choice = out.get_or_insert_with(|| json!({ "type": "auto" }));
        if choice.get("type").and_then(Value::as_str) != Some("none")
            && let Some(choice) = choice.as_object_mut()
        {
            choice.insert("disable_parallel_tool_use".to_owned(), Value::Bool(true));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Requests: Anthropic Messages -> OpenAI chat
// ---------------------------------------------------------------------------

/// An Anthropic `/v1/messages` body as an OpenAI `/v1/chat/completions` body.
///
/// `system` (string or blocks) becomes a leading system message, a `system`
/// role inside `messages` stays a system message in place, `tool_result`
/// blocks become `tool` messages, `tool_use` blocks become `tool_calls`.
/// `cache_control`, `thinking` blocks and parameters, `top_k`,
/// `context_management` and server tools (web search, ...) are dropped.
/// Streams ask for the usage chunk (`stream_options.include_usage`).
pub fn anthropic_to_openai_request(body: &Value) -> Result<Value, TranslateError> {
    let body = request_object(body)?;
    let mut out = Map::new();
    copy_field(body, "model", &mut out, "model");

    let mut messages = Vec::new();
    match body.get("system") {
        Some(Value::String(text)) => messages.push(json!({ "role": "system", "content": text })),
        Some(Value::Array(blocks)) if !blocks.is_empty() => messages.push(json!({
            "role": "system",
            "content": anthropic_text(blocks, "\n\n"),
        })),
        _ => {}
    }
    let turns = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages", "`messages` must be an array"))?;
    for (index, turn) in turns.iter().enumerate() {
        anthropic_turn_to_openai(turn, index, &mut messages)?;
    }
    out.insert("messages".to_owned(), Value::Array(messages));

    copy_field(body, "max_tokens", &mut out, "max_tokens");
    copy_field(body, "temperature", &mut out, "temperature");
    copy_field(body, "top_p", &mut out, "top_p");
    if let Some(stops) = stop_list(body.get("stop_sequences")) {
        out.insert("stop".to_owned(), Value::Array(stops));
    }
    if let Some(stream) = body.get("stream").and_then(Value::as_bool) {
        out.insert("stream".to_owned(), Value::Bool(stream));
        if stream {
            out.insert(
                "stream_options".to_owned(),
                json!({ "include_usage": true }),
            );
        }
    }
    if let Some(user) = body
        .get("metadata")
        .and_then(|metadata| metadata.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".to_owned(), json!(user));
    }

    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| tools.iter().filter_map(anthropic_tool_to_openai).collect())
        .unwrap_or_default();
    if !tools.is_empty() {
        out.insert("tools".to_owned(), Value::Array(tools));
        if let Some(choice) = body.get("tool_choice") {
            match choice.get("type").and_then(Value::as_str) {
                Some("auto") => {
                    out.insert("tool_choice".to_owned(), json!("auto"));
                }
                Some("any") => {
                    out.insert("tool_choice".to_owned(), json!("required"));
                }
                Some("none") => {
                    out.insert("tool_choice".to_owned(), json!("none"));
                }
                Some("tool") => {
                    let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| {
                        TranslateError::invalid("tool_choice.name", "missing tool name")
                    })?;
                    out.insert(
                        "tool_choice".to_owned(),
                        json!({ "type": "function", "function": { "name": name } }),
                    );
                }
                _ => {}
            }
            if choice
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                == Some(true)
            {
                out.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
            }
        }
    }
    Ok(Value::Object(out))
}

/// The text of Anthropic content (a string or blocks), text blocks joined.
fn anthropic_text(blocks: &[Value], separator: &str) -> String {
    blocks
        .iter()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(separator)
}

fn anthropic_content_text(content: Option<&Value>, separator: &str) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => anthropic_text(blocks, separator),
        _ => String::new(),
    }
}

/// An Anthropic image block as an OpenAI `image_url` part.
fn anthropic_image_to_openai(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type").and_then(Value::as_str)? {
        "base64" => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str)?,
            source.get("data").and_then(Value::as_str)?
        ),
        "url" => source.get("url").and_then(Value::as_str)?.to_owned(),
        _ => return None,
    };
    Some(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// An Anthropic document block as an OpenAI part: base64 (PDF) documents
/// become `file` parts, plain-text documents text parts; others are dropped.
fn anthropic_document_to_openai(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let field = |name: &str| source.get(name).and_then(Value::as_str);
    match field("type")? {
        "base64" => {
            let filename = block
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("document.pdf");
            let media_type = field("media_type").unwrap_or("application/pdf");
            let data = field("data")?;
            Some(json!({
                "type": "file",
                "file": { "filename": filename, "file_data": format!("data:{media_type};base64,{data}") },
            }))
        }
        "text" => Some(json!({ "type": "text", "text": field("data")? })),
        _ => None,
    }
}

fn anthropic_turn_to_openai(
    turn: &Value,
    index: usize,
    messages: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let role = turn
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("messages[{index}]"), "missing `role`"))?;
    let content = turn.get("content");
    match role {
        "system" => {
            messages.push(
                json!({ "role": "system", "content": anthropic_content_text(content, "\n\n") }),
            );
        }
        "user" => {
            let blocks = match content {
                Some(Value::String(text)) => {
                    messages.push(json!({ "role": "user", "content": text }));
                    return Ok(());
                }
                Some(Value::Array(blocks)) => blocks,
                _ => {
                    return Err(TranslateError::invalid(
                        format!("messages[{index}].content"),
                        "`content` must be a string or an array of blocks",
                    ));
                }
            };
            let mut parts = Vec::new();
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        parts.push(json!({ "type": "text", "text": block.get("text") }))
                    }
                    Some("image") => parts.extend(anthropic_image_to_openai(block)),
                    Some("document") => parts.extend(anthropic_document_to_openai(block)),
                    Some("tool_result") => {
                        let id = block
                            .get("tool_use_id")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                TranslateError::invalid(
                                    format!("messages[{index}].content"),
                                    "a tool_result needs a `tool_use_id`",
                                )
                            })?;
                        let result = block.get("content");
                        // OpenAI tool messages carry text only; images go
                        // into the user message that follows.
                        if let Some(Value::Array(inner)) = result {
                            parts.extend(
                                inner
                                    .iter()
                                    .filter(|b| {
                                        b.get("type").and_then(Value::as_str) == Some("image")
                                    })
                                    .filter_map(anthropic_image_to_openai),
                            );
                        }
                        messages.push(json!({
                            "role": "tool",
                            "tool_call_id": id,
                            "content": anthropic_content_text(result, "\n"),
                        }));
                    }
                    // thinking, search results, container uploads...
                    _ => {}
                }
            }
            if !parts.is_empty() {
                messages.push(json!({ "role": "user", "content": parts }));
            }
        }
        "assistant" => {
            let (text, tool_calls) = match content {
                Some(Value::String(text)) => (Some(text.clone()), Vec::new()),
                Some(Value::Array(blocks)) => {
                    let mut text: Option<String> = None;
                    let mut tool_calls = Vec::new();
                    for block in blocks {
                        match block.get("type").and_then(Value::as_str) {
                            Some("text") => text
                                .get_or_insert_with(String::new)
                                .push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
                            Some("tool_use") => tool_calls.push(json!({
                                "id": block.get("id"),
                                "type": "function",
                                "function": {
                                    "name": block.get("name"),
                                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                                },
                            })),
                            _ => {}
                        }
                    }
                    (text, tool_calls)
                }
                _ => (None, Vec::new()),
            };
            let mut message = Map::new();
            message.insert("role".to_owned(), json!("assistant"));
            if tool_calls.is_empty() {
                message.insert("content".to_owned(), json!(text.unwrap_or_default()));
            } else {
                message.insert("content".to_owned(), json!(text));
                message.insert("tool_calls".to_owned(), Value::Array(tool_calls));
            }
            messages.push(Value::Object(message));
        }
        other => {
            return Err(TranslateError::invalid(
                format!("messages[{index}].role"),
                format!("unknown role `{other}`"),
            ));
        }
    }
    Ok(())
}

/// A client tool as an OpenAI function tool; `None` for Anthropic server
/// tools (`web_search_*`, `bash_*`, ...), which only Anthropic runs.
fn anthropic_tool_to_openai(tool: &Value) -> Option<Value> {
    match tool.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(_) => return None,
    }
    let mut function = Map::new();
    function.insert("name".to_owned(), tool.get("name")?.clone());
    copy_field(
        tool.as_object()?,
        "description",
        &mut function,
        "description",
    );
    function.insert(
        "parameters".to_owned(),
        tool.get("input_schema")
            .cloned()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
    );
    Some(json!({ "type": "function", "function": function }))
}

// ---------------------------------------------------------------------------
// Responses, non-stream
// ---------------------------------------------------------------------------

/// Anthropic `stop_reason` as an OpenAI `finish_reason`.
pub fn finish_reason_of(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// OpenAI `finish_reason` as an Anthropic `stop_reason`.
pub fn stop_reason_of(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage counts (input excludes cache reads and writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AnthropicUsage {
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
}

impl AnthropicUsage {
    /// Reads the fields present in `usage`, keeping the others.
    fn update(&mut self, usage: &Value) {
        let read = |field: &str| usage.get(field).and_then(Value::as_i64);
        if let Some(input) = read("input_tokens") {
            self.input = input;
        }
        if let Some(output) = read("output_tokens") {
            self.output = output;
        }
        if let Some(cache_read) = read("cache_read_input_tokens") {
            self.cache_read = cache_read;
        }
        if let Some(cache_write) = read("cache_creation_input_tokens") {
            self.cache_write = cache_write;
        }
    }

    fn prompt_tokens(&self) -> i64 {
        self.input + self.cache_read + self.cache_write
    }

    fn gateway(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens(),
            completion_tokens: self.output,
        }
    }

    fn openai(&self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens(),
            "completion_tokens": self.output,
            "total_tokens": self.prompt_tokens() + self.output,
        });
        if self.cache_read > 0
            && let Some(usage) = usage.as_object_mut()
        {
            usage.insert(
                "prompt_tokens_details".to_owned(),
                json!({ "cached_tokens": self.cache_read }),
            );
        }
        usage
    }

    /// From OpenAI usage: cached prompt tokens become cache reads.
    fn from_openai(usage: &Value) -> Self {
        let read = |pointer: &str| usage.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
        let cached = read("/prompt_tokens_details/cached_tokens");
        Self {
            input: (read("/prompt_tokens") - cached).max(0),
            output: read("/completion_tokens"),
            cache_read: cached,
            cache_write: 0,
        }
    }

    fn anthropic(&self) -> Value {
        let mut usage = json!({ "input_tokens": self.input, "output_tokens": self.output });
        if self.cache_read > 0
            && let Some(usage) = usage.as_object_mut()
        {
            usage.insert("cache_read_input_tokens".to_owned(), json!(self.cache_read));
        }
        usage
    }
}

/// The token counts of an Anthropic message (non-stream), for metering a
/// passed-through answer.
pub fn usage_of(message: &Value) -> Option<Usage> {
    let usage = message.get("usage")?;
    let mut counts = AnthropicUsage::default();
    counts.update(usage);
    Some(counts.gateway())
}

/// An Anthropic message as an OpenAI `chat.completion`. `created` is the
/// Unix time to report ([`super::translate::unix_now`]).
pub fn anthropic_to_openai_response(body: &Value, created: i64) -> Result<Value, TranslateError> {
    let message = response_object(body)?;
    if message.get("type").and_then(Value::as_str) == Some("error") {
        return Err(TranslateError::upstream(format!(
            "the upstream answered an error: {}",
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
        )));
    }
    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::upstream("the message has no `content` list"))?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text
                .get_or_insert_with(String::new)
                .push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id"),
                "type": "function",
                "function": {
                    "name": block.get("name"),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut reply = Map::new();
    reply.insert("role".to_owned(), json!("assistant"));
    reply.insert("content".to_owned(), json!(text));
    if !tool_calls.is_empty() {
        reply.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    let finish_reason = message
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(finish_reason_of);
    let mut usage = AnthropicUsage::default();
    if let Some(reported) = message.get("usage") {
        usage.update(reported);
    }
    Ok(json!({
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": usage.openai(),
    }))
}

/// An OpenAI `chat.completion` as an Anthropic message (first choice).
pub fn openai_to_anthropic_response(body: &Value) -> Result<Value, TranslateError> {
    let completion = response_object(body)?;
    let choice = completion
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| TranslateError::upstream("the completion has no choices"))?;
    let reply = choice.get("message");
    let mut content = Vec::new();
    let text = openai_content_text(reply.and_then(|reply| reply.get("content")), "");
    if !text.is_empty() {
        content.push(json!({ "type": "text", "text": text }));
    }
    let calls = reply
        .and_then(|reply| reply.get("tool_calls"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for call in calls {
        let input = parse_tool_arguments(call.pointer("/function/arguments"), String::new)
            .map_err(|error| TranslateError::upstream(error.to_string()))?;
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id"),
            "name": call.pointer("/function/name"),
            "input": input,
        }));
    }
    let stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(stop_reason_of);
    let usage = completion
        .get("usage")
        .map(AnthropicUsage::from_openai)
        .unwrap_or_default();
    Ok(json!({
        "id": completion.get("id"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage.anthropic(),
    }))
}

/// The Anthropic error `type` for an HTTP status.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// An Anthropic error body (`{"type":"error","error":{type,message}}`) in
/// OpenAI's shape.
pub fn anthropic_error_to_openai(body: &Value) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream returned an error");
    let kind = body
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })
}

/// An OpenAI error body in Anthropic's shape, typed by the HTTP status.
pub fn openai_error_to_anthropic(body: &Value, status: u16) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream returned an error");
    json!({ "type": "error", "error": { "type": error_type_for_status(status), "message": message } })
}

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
}

impl AnthropicToOpenAiStream {
    /// `include_usage`: the client asked for the usage chunk
    /// (`stream_options.include_usage`). `created`: the Unix time to report.
    pub fn new(created: i64, include_usage: bool) -> Self {
        Self {
            writer: ChunkWriter {
                created,
                ..ChunkWriter::default()
            },
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
                    .chunk(0, json!({ "role": "assistant", "content": "" }), None),
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
        let event = parse_event(data)?;
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
                self.writer.id = field("id").unwrap_or_default();
                self.writer.model = field("model").unwrap_or_default();
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
                            out.push(self.writer.chunk(0, json!({ "content": text }), None));
                        }
                    }
                    Some("tool_use") => {
                        let tool_index = self.next_tool_index;
                        self.next_tool_index += 1;
                        self.tool_indices.insert(index, tool_index);
                        out.push(self.writer.chunk(
                            0,
                            json!({ "tool_calls": [{
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
                            out.push(self.writer.chunk(0, json!({ "content": text }), None));
                        }
                    }
                    Some("input_json_delta") => {
                        let partial = field("partial_json");
                        if let Some(tool_index) = self.tool_indices.get(&index)
                            && !partial.is_empty()
                        {
                            out.push(self.writer.chunk(
                                0,
                                json!({ "tool_calls": [{
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
                            .chunk(0, json!({}), Some(finish_reason_of(stop_reason))),
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
        let chunk = parse_event(data)?;
        if let Some(error) = chunk.get("error") {
            self.failed = true;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream stream failed");
            out.push(anthropic_sse(
                "error",
                &json!({ "type": "error", "error": { "type": "api_error", "message": message } }),
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
        let event = parse_event(data)?;
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
    let Ok(event) = serde_json::from_slice::<Value>(data) else {
        // Unreadable: let the relay and the client see it.
        return true;
    };
    matches!(
        event.get("type").and_then(Value::as_str),
        Some("content_block_delta" | "message_delta" | "message_stop" | "error")
    )
}
