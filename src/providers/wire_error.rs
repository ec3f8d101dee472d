//! The three error bodies clients and providers exchange, each built in one
//! place: OpenAI's, Anthropic's and Gemini's (Google's). Every error the
//! gateway answers or relays in a client's format, whole or as a stream
//! event, is built here, so a shape cannot drift between the handler that
//! refuses a request, the translator that rewrites an upstream's error and
//! the relay that ends a broken stream.
//!
//! The constructors return JSON values rather than bytes: half of their
//! callers nest them further (an SSE frame, a translated error compared as
//! JSON), the other half serialise them once on the way out.

use serde_json::{Value, json};

/// OpenAI's shape, `{"error":{"message","type","param","code"}}`, which
/// the gateway's own routes answer with too. `param` and `code` are `null`
/// when absent, as OpenAI sends them.
pub fn openai(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({
        "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": code,
        }
    })
}

/// Anthropic's shape, `{"type":"error","error":{"type","message"}}`, for
/// the `/v1/messages` front door and Anthropic streams' `error` events.
pub fn anthropic(kind: &str, message: &str) -> Value {
    json!({
        "type": "error",
        "error": {
            "type": kind,
            "message": message,
        }
    })
}

/// Gemini's shape (Google's API error), `{"error":{"code","message","status"}}`:
/// `code` is the HTTP status, `status` its canonical name
/// ([`gemini_status_for_code`]).
pub fn gemini(code: u16, message: &str, status: &str) -> Value {
    json!({
        "error": {
            "code": code,
            "message": message,
            "status": status,
        }
    })
}

/// The Anthropic error `type` for an HTTP status.
pub fn anthropic_type_for_status(status: u16) -> &'static str {
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

/// Error code of a stream the gateway ended because the upstream fell silent
/// for `upstream.stream_idle_timeout`.
pub const STREAM_IDLE_TIMEOUT: &str = "stream_idle_timeout";
/// Error code (and the request log's error class) of a stream cut by the
/// server's shutdown (`server.shutdown_timeout`).
pub const SERVER_SHUTTING_DOWN: &str = "server_shutting_down";

/// The HTTP status a stream the gateway cut stands for, by the cut's error
/// code, for the in-band errors that carry a status (Gemini's `code` and
/// `status`) or a type named after one (Anthropic's): a silent upstream is a
/// timeout (504), a stopping server unavailable (503), anything else (an
/// upstream that broke off, an event too large or untranslatable) 500.
pub fn stream_cut_status(code: &str) -> u16 {
    match code {
        STREAM_IDLE_TIMEOUT => 504,
        SERVER_SHUTTING_DOWN => 503,
        _ => 500,
    }
}

/// Google's canonical status name for an HTTP status, as Gemini reports it
/// in `error.status`.
pub fn gemini_status_for_code(code: u16) -> &'static str {
    match code {
        401 => "UNAUTHENTICATED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        400..=499 => "INVALID_ARGUMENT",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_bodies_carry_all_four_fields_with_nulls_for_the_absent() {
        assert_eq!(
            openai("slow down", "rate_limit_error", None, Some("rate_limited")),
            json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limited"}})
        );
        assert_eq!(
            openai("bad", "invalid_request_error", Some("model"), None),
            json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": null}})
        );
    }

    #[test]
    fn anthropic_bodies_are_typed_errors() {
        assert_eq!(
            anthropic("not_found_error", "no such model"),
            json!({"type": "error", "error": {"type": "not_found_error", "message": "no such model"}})
        );
    }

    #[test]
    fn gemini_bodies_carry_the_status_code_and_its_name() {
        assert_eq!(
            gemini(429, "quota", gemini_status_for_code(429)),
            json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})
        );
        assert_eq!(gemini_status_for_code(400), "INVALID_ARGUMENT");
        assert_eq!(gemini_status_for_code(404), "NOT_FOUND");
        assert_eq!(gemini_status_for_code(422), "INVALID_ARGUMENT");
        assert_eq!(gemini_status_for_code(502), "INTERNAL");
        assert_eq!(gemini_status_for_code(503), "UNAVAILABLE");
    }

    #[test]
    fn cut_streams_carry_the_status_of_their_cause() {
        assert_eq!(stream_cut_status(STREAM_IDLE_TIMEOUT), 504);
        assert_eq!(stream_cut_status(SERVER_SHUTTING_DOWN), 503);
        assert_eq!(stream_cut_status("stream_interrupted"), 500);
        assert_eq!(gemini_status_for_code(504), "DEADLINE_EXCEEDED");
        assert_eq!(anthropic_type_for_status(504), "timeout_error");
    }

    #[test]
    fn anthropic_types_follow_the_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (408, "invalid_request_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(anthropic_type_for_status(status), kind, "{status}");
        }
    }
}
