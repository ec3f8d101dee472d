//! Requests both ways: an OpenAI chat body as an Anthropic Messages body
//! (the gateway's clients sent to `anthropic` upstreams), and an Anthropic
//! Messages body as an OpenAI one (the `/v1/messages` front door served by
//! any other kind).

use crate::providers::translate::{
    ToolChoice, TranslateError, copy_field, openai_content_text, openai_function_tools,
    openai_max_tokens, parse_data_url, parse_openai_tool_choice, parse_tool_arguments,
    request_object, stop_list,
};
use serde_json::{Map, Value, json};

/// Anthropic requires `max_tokens`; OpenAI clients often omit it.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

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
    openai_object_to_anthropic_request(request_object(body)?, options)
}

/// [`openai_to_anthropic_request`] of a body already known to be an object
/// (the gateway's parsed request: no copy of it is made to translate it).
pub fn openai_object_to_anthropic_request(
    body: &Map<String, Value>,
    options: &AnthropicRequestOptions,
) -> Result<Value, TranslateError> {
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
    Ok(openai_function_tools(tools, "an Anthropic model")?
        .into_iter()
        .map(|tool| {
            let mut out = Map::new();
            out.insert("name".to_owned(), json!(tool.name));
            if let Some(description) = tool.description {
                out.insert("description".to_owned(), json!(description));
            }
            let schema = tool
                .parameters
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            out.insert("input_schema".to_owned(), schema);
            Value::Object(out)
        })
        .collect())
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
    anthropic_object_to_openai_request(request_object(body)?)
}

/// [`anthropic_to_openai_request`] of a body already known to be an object
/// (the Anthropic door's parsed request: no copy of it is made to translate it).
pub fn anthropic_object_to_openai_request(
    body: &Map<String, Value>,
) -> Result<Value, TranslateError> {
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
