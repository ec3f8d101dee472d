//! A Responses API request (`POST /v1/responses`): read and validated once,
//! then either passed through to an OpenAI upstream (only `model` rewritten)
//! or translated to a chat-completions request for every other provider kind.
//!
//! The translation keeps what chat can express (input items, instructions,
//! function tools and their calls, sampling, output limits, structured
//! output) and refuses, with a 400 naming the field, what only a stateful
//! OpenAI upstream can do (`previous_response_id`, `conversation`,
//! `background`, built-in tools such as `web_search`).

use super::super::RequestError;
use super::super::translate::{TranslateError, copy_field};
use serde_json::{Map, Value, json};

/// A validated client Responses request.
#[derive(Debug, Clone)]
pub struct ResponsesRequest {
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// `max_output_tokens`, when given.
    pub max_output_tokens: Option<i64>,
    /// The stored response this one continues (only an OpenAI upstream that
    /// holds it can honour it).
    pub previous_response_id: Option<String>,
}

/// Parses and validates a `/v1/responses` body: the fields the gateway
/// reads itself. The rest is the upstream's (or the translation's) to judge.
pub fn parse_responses_request(raw: &[u8]) -> Result<ResponsesRequest, RequestError> {
    let (body, model) = super::super::openai::object_with_model(raw)?;
    match body.get("input") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(items)) => {
            if let Some(index) = items.iter().position(|item| !item.is_object()) {
                return Err(RequestError::invalid_param(
                    "input",
                    format!("`input[{index}]` must be an object"),
                ));
            }
        }
        Some(_) => {
            return Err(RequestError::invalid_param(
                "input",
                "`input` must be a string or an array of items",
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
    let max_output_tokens = match body.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_i64() {
            Some(tokens) if tokens >= 1 => Some(tokens),
            _ => {
                return Err(RequestError::invalid_param(
                    "max_output_tokens",
                    "`max_output_tokens` must be an integer of at least 1",
                ));
            }
        },
    };
    for field in ["instructions", "previous_response_id"] {
        match body.get(field) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => {
                let param = if field == "instructions" {
                    "instructions"
                } else {
                    "previous_response_id"
                };
                return Err(RequestError::invalid_param(
                    param,
                    format!("`{field}` must be a string"),
                ));
            }
        }
    }
    match body.get("tools") {
        None | Some(Value::Null | Value::Array(_)) => {}
        Some(_) => {
            return Err(RequestError::invalid_param(
                "tools",
                "`tools` must be an array",
            ));
        }
    }
    let previous_response_id = body
        .get("previous_response_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(ResponsesRequest {
        body,
        model,
        stream,
        max_output_tokens,
        previous_response_id,
    })
}

/// The body for an OpenAI upstream: the client's, with the upstream model.
pub fn passthrough_body(request: &ResponsesRequest, upstream_model: &str) -> Value {
    let mut body = request.body.clone();
    body.insert("model".to_owned(), json!(upstream_model));
    Value::Object(body)
}

/// Fields a chat upstream cannot honour, with why.
const STATEFUL_FIELDS: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "`previous_response_id` continues a response stored by an OpenAI upstream; this model is \
         served by a provider without stored responses, so send the whole conversation in `input`",
    ),
    (
        "conversation",
        "`conversation` needs an OpenAI upstream that stores conversations; this model is served \
         by another provider, so send the whole conversation in `input`",
    ),
    (
        "background",
        "`background` responses need an OpenAI upstream; this model is served by another provider",
    ),
];

/// The Responses request as a chat-completions request (OpenAI's chat
/// format, the gateway's own), for every upstream that is not OpenAI.
pub fn responses_to_chat_request(body: &Map<String, Value>) -> Result<Value, TranslateError> {
    for (field, message) in STATEFUL_FIELDS {
        let set = match body.get(*field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(text)) => !text.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(TranslateError::unsupported(*field, *message));
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str)
        && !instructions.is_empty()
    {
        messages.push(json!({ "role": "system", "content": instructions }));
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({ "role": "user", "content": text })),
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                input_item(item, index, &mut messages)?;
            }
        }
        _ => {}
    }
    if messages.is_empty() {
        return Err(TranslateError::invalid(
            "input",
            "`input` must hold at least one message",
        ));
    }
    let mut out = Map::new();
    out.insert(
        "model".to_owned(),
        body.get("model").cloned().unwrap_or(Value::Null),
    );
    out.insert("messages".to_owned(), Value::Array(messages));
    for field in ["temperature", "top_p", "parallel_tool_calls", "user"] {
        copy_field(body, field, &mut out, field);
    }
    copy_field(body, "max_output_tokens", &mut out, "max_tokens");
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|reasoning| reasoning.get("effort"))
        .filter(|effort| effort.is_string())
    {
        out.insert("reasoning_effort".to_owned(), effort.clone());
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        let tools = tools
            .iter()
            .enumerate()
            .map(|(index, tool)| function_tool(tool, index))
            .collect::<Result<Vec<_>, _>>()?;
        out.insert("tools".to_owned(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice(body.get("tool_choice"))? {
        out.insert("tool_choice".to_owned(), choice);
    }
    if let Some(format) = response_format(body.get("text").and_then(|text| text.get("format")))? {
        out.insert("response_format".to_owned(), format);
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".to_owned(), json!(true));
        // The answer is metered from the chat usage chunk.
        out.insert(
            "stream_options".to_owned(),
            json!({ "include_usage": true }),
        );
    }
    Ok(Value::Object(out))
}

/// One input item appended as chat messages. Consecutive function calls
/// join one assistant message, as chat carries them.
fn input_item(item: &Value, index: usize, messages: &mut Vec<Value>) -> Result<(), TranslateError> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = item.get("role").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid(format!("input[{index}].role"), "a message needs a `role`")
            })?;
            let content = item.get("content").unwrap_or(&Value::Null);
            match role {
                "user" => messages.push(json!({
                    "role": "user",
                    "content": user_content(content, index)?,
                })),
                "system" | "developer" => messages.push(json!({
                    "role": "system",
                    "content": content_text(content),
                })),
                "assistant" => messages.push(json!({
                    "role": "assistant",
                    "content": content_text(content),
                })),
                other => {
                    return Err(TranslateError::invalid(
                        format!("input[{index}].role"),
                        format!("unknown role `{other}`"),
                    ));
                }
            }
        }
        "function_call" => {
            let field = |name: &str| {
                item.get(name).and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid(
                        format!("input[{index}].{name}"),
                        format!("a function_call item needs `{name}`"),
                    )
                })
            };
            let call = json!({
                "id": field("call_id")?,
                "type": "function",
                "function": {
                    "name": field("name")?,
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
                },
            });
            let joins_previous = messages.last().is_some_and(|last| {
                last.get("role").and_then(Value::as_str) == Some("assistant")
                    && last.get("tool_calls").is_some()
            });
            match messages.last_mut() {
                Some(Value::Object(last)) if joins_previous => {
                    if let Some(Value::Array(calls)) = last.get_mut("tool_calls") {
                        calls.push(call);
                    }
                }
                _ => messages.push(json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [call],
                })),
            }
        }
        "function_call_output" => {
            let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid(
                    format!("input[{index}].call_id"),
                    "a function_call_output item needs `call_id`",
                )
            })?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(other @ Value::Array(_)) => content_text(other),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            messages.push(json!({ "role": "tool", "tool_call_id": call_id, "content": output }));
        }
        // Reasoning a model did earlier: chat has no place for it, and
        // the answer does not depend on it being sent back.
        "reasoning" => {}
        other => {
            return Err(TranslateError::unsupported(
                format!("input[{index}].type"),
                format!(
                    "input items of type `{other}` need an OpenAI upstream; this model is served \
                     by another provider"
                ),
            ));
        }
    }
    Ok(())
}

/// A user message's content: text stays a string; parts become chat parts.
fn user_content(content: &Value, index: usize) -> Result<Value, TranslateError> {
    let Value::Array(parts) = content else {
        return Ok(json!(content_text(content)));
    };
    parts
        .iter()
        .enumerate()
        .map(|(part_index, part)| {
            let param = || format!("input[{index}].content[{part_index}]");
            match part.get("type").and_then(Value::as_str) {
                Some("input_text" | "output_text" | "text") => Ok(json!({
                    "type": "text",
                    "text": part.get("text").and_then(Value::as_str).unwrap_or_default(),
                })),
                Some("input_image") => {
                    let url = part
                        .get("image_url")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            TranslateError::unsupported(
                                param(),
                                "only images given by `image_url` can be sent to this provider",
                            )
                        })?;
                    let mut image = json!({ "url": url });
                    if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                        image["detail"] = detail.clone();
                    }
                    Ok(json!({ "type": "image_url", "image_url": image }))
                }
                Some(other) => Err(TranslateError::unsupported(
                    param(),
                    format!("content parts of type `{other}` cannot be sent to this provider"),
                )),
                None => Err(TranslateError::invalid(
                    param(),
                    "a content part needs a `type`",
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// The text of Responses content: a string, or its text parts joined.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| {
                part.get("text")
                    .or_else(|| part.get("refusal"))
                    .and_then(Value::as_str)
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A Responses function tool (`{type, name, description, parameters,
/// strict}`) as a chat tool (`{type, function: {...}}`).
fn function_tool(tool: &Value, index: usize) -> Result<Value, TranslateError> {
    let kind = tool
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function");
    if kind != "function" {
        return Err(TranslateError::unsupported(
            format!("tools[{index}].type"),
            format!(
                "tools of type `{kind}` are built into OpenAI's Responses API; this model is \
                 served by another provider, which offers only function tools"
            ),
        ));
    }
    let name = tool.get("name").and_then(Value::as_str).ok_or_else(|| {
        TranslateError::invalid(
            format!("tools[{index}].name"),
            "a function tool needs a `name`",
        )
    })?;
    let mut function = Map::new();
    function.insert("name".to_owned(), json!(name));
    let object = tool.as_object().cloned().unwrap_or_default();
    for field in ["description", "parameters", "strict"] {
        copy_field(&object, field, &mut function, field);
    }
    Ok(json!({ "type": "function", "function": function }))
}

/// `tool_choice`: the modes pass; a named function gets chat's shape.
fn tool_choice(choice: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(mode @ Value::String(_)) => Ok(Some(mode.clone())),
        Some(choice) => {
            let kind = choice.get("type").and_then(Value::as_str);
            match (kind, choice.get("name").and_then(Value::as_str)) {
                (Some("function"), Some(name)) => Ok(Some(
                    json!({ "type": "function", "function": { "name": name } }),
                )),
                _ => Err(TranslateError::unsupported(
                    "tool_choice",
                    "only `auto`, `none`, `required` or a named function can be sent to this \
                     provider",
                )),
            }
        }
    }
}

/// `text.format` as chat's `response_format`.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let Some(format) = format.filter(|format| !format.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let object = format.as_object().cloned().unwrap_or_default();
            let mut schema = Map::new();
            for field in ["name", "description", "schema", "strict"] {
                copy_field(&object, field, &mut schema, field);
            }
            Ok(Some(
                json!({ "type": "json_schema", "json_schema": schema }),
            ))
        }
        _ => Err(TranslateError::unsupported(
            "text.format",
            "`text.format` must be `text`, `json_object` or `json_schema`",
        )),
    }
}
