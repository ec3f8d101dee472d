//! An OpenAI chat body as a Gemini `GenerateContentRequest`.

use crate::providers::translate::{
    ToolChoice, TranslateError, openai_content_text, openai_function_tools, openai_max_tokens,
    parse_data_url, parse_openai_tool_choice, parse_tool_arguments, request_object, stop_list,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// An OpenAI `/v1/chat/completions` body as a Gemini `GenerateContentRequest`
/// (the model and `stream` go in the URL: [`super::api_path`]).
///
/// System and developer messages become `systemInstruction`; assistant
/// turns are `model` turns; tool results become `functionResponse` parts of
/// a user turn, named after the call they answer. Consecutive turns of one
/// role are merged.
pub fn openai_to_gemini_request(body: &Value) -> Result<Value, TranslateError> {
    openai_object_to_gemini_request(request_object(body)?)
}

/// [`openai_to_gemini_request`] of a body already known to be an object (the
/// gateway's parsed request: no copy of it is made to translate it).
pub fn openai_object_to_gemini_request(body: &Map<String, Value>) -> Result<Value, TranslateError> {
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
    Ok(openai_function_tools(tools, "a Gemini model")?
        .into_iter()
        .map(|tool| {
            let mut declaration = Map::new();
            declaration.insert("name".to_owned(), json!(tool.name));
            if let Some(description) = tool.description {
                declaration.insert("description".to_owned(), json!(description));
            }
            // Gemini refuses an object schema without properties.
            if let Some(parameters) = tool.parameters.filter(|schema| {
                schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|properties| !properties.is_empty())
            }) {
                declaration.insert("parameters".to_owned(), clean_schema(parameters));
            }
            Value::Object(declaration)
        })
        .collect())
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
