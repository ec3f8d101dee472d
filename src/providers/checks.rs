//! Type checks of the documented request fields the gateway reads or
//! rewrites, answered 400 as the API it imitates would.
//!
//! Without them a wrong type slipped through: `"stream_options":
//! "include_usage"` was overwritten with an object and served, a negative
//! `max_tokens` was sent upstream (and reserved against budgets). Fields the
//! gateway neither reads nor rewrites are left to the provider, which
//! answers in its own words. Messages follow each API's wording: OpenAI's
//! "Invalid type for 'x'", Anthropic's "x: Input should be ...".

use super::RequestError;
use serde_json::{Map, Value};

/// The JSON type names OpenAI's messages use.
fn openai_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn openai_wrong_type(param: &'static str, expected: &str, value: &Value) -> RequestError {
    RequestError::invalid_param(
        param,
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            openai_type(value)
        ),
    )
}

/// `null`, or an integer of at least `min`.
fn openai_integer(
    body: &Map<String, Value>,
    param: &'static str,
    min: i64,
) -> Result<(), RequestError> {
    match body.get(param) {
        None | Some(Value::Null) => Ok(()),
        Some(value) => match value.as_i64() {
            Some(number) if number >= min => Ok(()),
            Some(number) => Err(RequestError::invalid_param(
                param,
                format!(
                    "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {number} instead."
                ),
            )),
            // Integers past i64 are far above any minimum.
            None if value.is_u64() => Ok(()),
            None => Err(openai_wrong_type(param, "an integer", value)),
        },
    }
}

/// `null`, or a number.
fn openai_number(body: &Map<String, Value>, param: &'static str) -> Result<(), RequestError> {
    match body.get(param) {
        None | Some(Value::Null | Value::Number(_)) => Ok(()),
        Some(value) => Err(openai_wrong_type(param, "a decimal", value)),
    }
}

/// `stream_options` and `max_tokens`, which the gateway reads or rewrites on
/// every OpenAI-shaped request (chat, legacy completions).
pub fn openai_common(body: &Map<String, Value>) -> Result<(), RequestError> {
    match body.get("stream_options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => match options.get("include_usage") {
            None | Some(Value::Null | Value::Bool(_)) => {}
            Some(value) => {
                return Err(RequestError::invalid_param(
                    "stream_options",
                    format!(
                        "Invalid type for 'stream_options.include_usage': expected a boolean, but got {} instead.",
                        openai_type(value)
                    ),
                ));
            }
        },
        Some(value) => return Err(openai_wrong_type("stream_options", "an object", value)),
    }
    openai_integer(body, "max_tokens", 1)
}

/// A chat completion's fields: the common ones, plus those the gateway
/// reads to translate the request for other provider kinds.
pub fn openai_chat(body: &Map<String, Value>) -> Result<(), RequestError> {
    openai_common(body)?;
    openai_integer(body, "max_completion_tokens", 1)?;
    openai_integer(body, "n", 1)?;
    openai_number(body, "temperature")?;
    openai_number(body, "top_p")?;
    match body.get("stop") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {}
        Some(value) => {
            return Err(openai_wrong_type(
                "stop",
                "a string or an array of strings",
                value,
            ));
        }
    }
    match body.get("tools") {
        None | Some(Value::Null | Value::Array(_)) => {}
        Some(value) => return Err(openai_wrong_type("tools", "an array", value)),
    }
    match body.get("tool_choice") {
        None | Some(Value::Null | Value::String(_) | Value::Object(_)) => Ok(()),
        Some(value) => Err(openai_wrong_type(
            "tool_choice",
            "a string or an object",
            value,
        )),
    }
}

fn anthropic_invalid(param: &'static str, should: &str) -> RequestError {
    RequestError::invalid_param(param, format!("{param}: Input should be {should}"))
}

/// An Anthropic Messages request's fields the gateway reads or translates
/// (`model` and `messages` are checked by the caller).
pub fn anthropic_messages(body: &Map<String, Value>) -> Result<(), RequestError> {
    match body.get("max_tokens") {
        // Absent: the gateway sends `upstream.default_max_tokens`.
        None | Some(Value::Null) => {}
        Some(value) => match value.as_i64() {
            Some(number) if number >= 1 => {}
            Some(_) => {
                return Err(anthropic_invalid(
                    "max_tokens",
                    "greater than or equal to 1",
                ));
            }
            None if value.is_u64() => {}
            None => return Err(anthropic_invalid("max_tokens", "a valid integer")),
        },
    }
    match body.get("stream") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(_) => return Err(anthropic_invalid("stream", "a valid boolean")),
    }
    match body.get("system") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(blocks)) if blocks.iter().all(Value::is_object) => {}
        Some(_) => {
            return Err(anthropic_invalid(
                "system",
                "a valid string or a list of text blocks",
            ));
        }
    }
    match body.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(anthropic_invalid(
                "stop_sequences",
                "a valid list of strings",
            ));
        }
    }
    for param in ["temperature", "top_p"] {
        if body
            .get(param)
            .is_some_and(|value| !value.is_null() && !value.is_number())
        {
            return Err(anthropic_invalid(param, "a valid number"));
        }
    }
    match body.get("top_k") {
        None | Some(Value::Null) => {}
        Some(value) if value.as_u64().is_some() => {}
        Some(_) => {
            return Err(anthropic_invalid(
                "top_k",
                "a valid integer greater than or equal to 0",
            ));
        }
    }
    match body.get("metadata") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(_) => return Err(anthropic_invalid("metadata", "a valid dictionary")),
    }
    match body.get("tools") {
        None | Some(Value::Null | Value::Array(_)) => {}
        Some(_) => return Err(anthropic_invalid("tools", "a valid list")),
    }
    match body.get("tool_choice") {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(_) => Err(anthropic_invalid("tool_choice", "a valid dictionary")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn param_of(result: Result<(), RequestError>) -> Option<&'static str> {
        match result {
            Err(RequestError::Invalid { param, .. }) => param,
            _ => None,
        }
    }

    #[test]
    fn openai_fields_are_type_checked() {
        let refused = [
            (json!({"stream_options": "include_usage"}), "stream_options"),
            (
                json!({"stream_options": {"include_usage": "yes"}}),
                "stream_options",
            ),
            (json!({"max_tokens": -5}), "max_tokens"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": "10"}), "max_tokens"),
            (json!({"max_tokens": 1.5}), "max_tokens"),
            (
                json!({"max_completion_tokens": -1}),
                "max_completion_tokens",
            ),
            (json!({"n": 0}), "n"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"stop": 3}), "stop"),
            (json!({"stop": ["a", 1]}), "stop"),
            (json!({"tools": {}}), "tools"),
            (json!({"tool_choice": 1}), "tool_choice"),
        ];
        for (body, param) in refused {
            assert_eq!(
                param_of(openai_chat(&object(body.clone()))),
                Some(param),
                "{body}"
            );
        }
        let accepted = json!({
            "stream_options": {"include_usage": true}, "max_tokens": 16,
            "max_completion_tokens": null, "n": 1, "temperature": 0.2, "top_p": 1,
            "stop": ["\n"], "tools": [], "tool_choice": "auto",
        });
        assert!(openai_chat(&object(accepted)).is_ok());
        assert!(openai_chat(&object(json!({"max_tokens": u64::MAX}))).is_ok());
    }

    #[test]
    fn anthropic_fields_are_type_checked() {
        let refused = [
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": -3}), "max_tokens"),
            (json!({"max_tokens": "1024"}), "max_tokens"),
            (json!({"stream": "true"}), "stream"),
            (json!({"system": 5}), "system"),
            (json!({"system": ["text"]}), "system"),
            (json!({"stop_sequences": "END"}), "stop_sequences"),
            (json!({"temperature": "0.5"}), "temperature"),
            (json!({"top_k": -1}), "top_k"),
            (json!({"metadata": "x"}), "metadata"),
            (json!({"tools": "x"}), "tools"),
            (json!({"tool_choice": "auto"}), "tool_choice"),
        ];
        for (body, param) in refused {
            assert_eq!(
                param_of(anthropic_messages(&object(body.clone()))),
                Some(param),
                "{body}"
            );
        }
        let accepted = json!({
            "max_tokens": 1024, "stream": false, "system": [{"type": "text", "text": "hi"}],
            "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "top_k": 5,
            "metadata": {"user_id": "u"}, "tools": [], "tool_choice": {"type": "auto"},
        });
        assert!(anthropic_messages(&object(accepted)).is_ok());
    }
}
