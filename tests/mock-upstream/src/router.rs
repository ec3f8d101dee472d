//! From a request to a plan: which answer, and how the key's behaviour bends it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::behaviour::Behaviour;
use crate::http::{self, Head};
use crate::{anthropic, openai};

/// The completion every endpoint returns, one token per word.
pub(crate) const WORDS: [&str; 5] = ["one", " two", " three", " four", " five"];

/// Request header that sets a pause between stream chunks, in milliseconds.
pub(crate) const CHUNK_DELAY_HEADER: &str = "x-mock-chunk-delay-ms";

/// What an endpoint answers before the behaviour is applied.
pub(crate) enum Answer {
    Full {
        status: u16,
        body: Vec<u8>,
    },
    /// SSE events, each one chunk; `first_content` is the index of the first event that carries
    /// generated content (where `streamdie` and `streamhang` cut the stream).
    Stream {
        events: Vec<Vec<u8>>,
        first_content: usize,
    },
}

impl Answer {
    pub(crate) fn json(status: u16, body: &Value) -> Answer {
        Answer::Full {
            status,
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }
}

/// `data: JSON\n\n`.
pub(crate) fn sse_data(data: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    // Serializing a `Value` cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    out
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the connection does with the request.
pub(crate) enum Action {
    /// One write of a complete response.
    Write(Vec<u8>),
    /// A chunked SSE response, one write per event.
    Stream {
        events: Vec<Vec<u8>>,
        end: StreamEnd,
    },
    /// Never answer; wait for the client to close.
    Hang,
    /// Reset the connection without answering.
    Reset,
}

pub(crate) enum StreamEnd {
    /// All events, then the last chunk.
    Finish,
    /// Send this many events, then reset.
    ResetAfter(usize),
    /// Send this many events, then stall.
    HangAfter(usize),
}

pub(crate) struct Plan {
    /// Pause before the first response byte (`slow<MS>-` keys).
    pub(crate) first_byte_delay: Option<Duration>,
    /// Pause between stream chunks (`x-mock-chunk-delay-ms`).
    pub(crate) chunk_delay: Option<Duration>,
    pub(crate) action: Action,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Embeddings,
    Models,
    Messages,
    CountTokens,
    Unknown,
}

impl Route {
    fn of(method: &str, path: &str) -> Route {
        let path = path.trim_end_matches('/');
        let route = if path.ends_with("/chat/completions") {
            Route::Chat
        } else if path.ends_with("/completions") {
            Route::Completions
        } else if path.ends_with("/embeddings") {
            Route::Embeddings
        } else if path.ends_with("/models") {
            Route::Models
        } else if path.ends_with("/messages/count_tokens") {
            Route::CountTokens
        } else if path.ends_with("/messages") {
            Route::Messages
        } else {
            Route::Unknown
        };
        let expected = if route == Route::Models {
            "GET"
        } else {
            "POST"
        };
        if route == Route::Unknown || method != expected {
            Route::Unknown
        } else {
            route
        }
    }
}

/// Which error shape a path's clients expect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    OpenAi,
    Anthropic,
}

impl Shape {
    fn of(path: &str) -> Shape {
        let path = path.trim_end_matches('/');
        if path.ends_with("/messages") || path.ends_with("/messages/count_tokens") {
            Shape::Anthropic
        } else {
            Shape::OpenAi
        }
    }
}

enum Failure<'a> {
    RateLimited,
    ServerError,
    Unauthorized,
    BadRequest(&'a str),
    NotFound,
}

fn error_answer(shape: Shape, failure: Failure<'_>, head: &Head) -> Answer {
    let (status, body) = match (shape, failure) {
        (Shape::OpenAi, Failure::RateLimited) => (
            429,
            openai::error_body(
                "Rate limit reached for requests (mock)",
                "requests",
                Some("rate_limit_exceeded"),
            ),
        ),
        (Shape::OpenAi, Failure::ServerError) => (
            500,
            openai::error_body(
                "The server had an error while processing your request (mock)",
                "server_error",
                None,
            ),
        ),
        (Shape::OpenAi, Failure::Unauthorized) => (
            401,
            openai::error_body(
                "Incorrect API key provided (mock)",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
        ),
        (Shape::OpenAi, Failure::BadRequest(message)) => (
            400,
            openai::error_body(message, "invalid_request_error", None),
        ),
        (Shape::OpenAi, Failure::NotFound) => (
            404,
            openai::error_body(
                &format!("Unknown request URL: {} {}", head.method, head.path()),
                "invalid_request_error",
                Some("unknown_url"),
            ),
        ),
        (Shape::Anthropic, Failure::RateLimited) => (
            429,
            anthropic::error_body(
                "rate_limit_error",
                "Number of requests has exceeded your rate limit (mock)",
            ),
        ),
        (Shape::Anthropic, Failure::ServerError) => (
            500,
            anthropic::error_body("api_error", "Internal server error (mock)"),
        ),
        (Shape::Anthropic, Failure::Unauthorized) => (
            401,
            anthropic::error_body("authentication_error", "invalid x-api-key (mock)"),
        ),
        (Shape::Anthropic, Failure::BadRequest(message)) => {
            (400, anthropic::error_body("invalid_request_error", message))
        }
        (Shape::Anthropic, Failure::NotFound) => (
            404,
            anthropic::error_body("not_found_error", &format!("Not found: {}", head.path())),
        ),
    };
    Answer::json(status, &body)
}

/// The endpoint's normal answer.
fn answer(head: &Head, body: &[u8]) -> Answer {
    let path = head.path();
    let shape = Shape::of(path);
    let route = Route::of(&head.method, path);
    let json = match route {
        Route::Unknown => return error_answer(shape, Failure::NotFound, head),
        Route::Models => return openai::models(),
        _ => match serde_json::from_slice::<Value>(body) {
            Ok(json @ Value::Object(_)) => json,
            Ok(_) => {
                return error_answer(
                    shape,
                    Failure::BadRequest("the request body must be a JSON object"),
                    head,
                );
            }
            Err(_) => {
                return error_answer(
                    shape,
                    Failure::BadRequest("the request body is not valid JSON"),
                    head,
                );
            }
        },
    };
    match route {
        Route::Chat => openai::chat(&json),
        Route::Completions => openai::completions(&json),
        Route::Embeddings => openai::embeddings(&json),
        Route::Messages => anthropic::messages(&json),
        Route::CountTokens => anthropic::count_tokens(&json),
        Route::Models | Route::Unknown => error_answer(shape, Failure::NotFound, head),
    }
}

fn write(answer: Answer, extra_headers: &[(&str, &str)], keep_alive: bool) -> Action {
    match answer {
        Answer::Full { status, body } => Action::Write(http::response(
            status,
            "application/json",
            extra_headers,
            &body,
            keep_alive,
        )),
        Answer::Stream { events, .. } => Action::Stream {
            events,
            end: StreamEnd::Finish,
        },
    }
}

/// Decides what to do with a fully read request carrying `key`.
pub(crate) fn plan(head: &Head, body: &[u8], key: &str, keep_alive: bool) -> Plan {
    let chunk_delay = head
        .header(CHUNK_DELAY_HEADER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    let shape = Shape::of(head.path());
    let mut first_byte_delay = None;
    let action = match Behaviour::from_key(key) {
        Behaviour::RateLimited => write(
            error_answer(shape, Failure::RateLimited, head),
            &[("retry-after", "2")],
            keep_alive,
        ),
        Behaviour::ServerError => write(
            error_answer(shape, Failure::ServerError, head),
            &[],
            keep_alive,
        ),
        Behaviour::Unauthorized => write(
            error_answer(shape, Failure::Unauthorized, head),
            &[],
            keep_alive,
        ),
        Behaviour::Hang => Action::Hang,
        Behaviour::Reset => Action::Reset,
        Behaviour::BadJson => Action::Write(http::response(
            200,
            "application/json",
            &[],
            br#"{"id": "x", "choices": ["#,
            keep_alive,
        )),
        Behaviour::Slow(delay) => {
            first_byte_delay = Some(delay);
            write(answer(head, body), &[], keep_alive)
        }
        Behaviour::Normal => write(answer(head, body), &[], keep_alive),
        Behaviour::StreamDie => match answer(head, body) {
            Answer::Stream {
                events,
                first_content,
            } => Action::Stream {
                events,
                end: StreamEnd::ResetAfter(first_content + 1),
            },
            Answer::Full { .. } => Action::Reset,
        },
        Behaviour::RoleDie => match answer(head, body) {
            Answer::Stream {
                events,
                first_content,
            } => Action::Stream {
                events,
                end: StreamEnd::ResetAfter(first_content),
            },
            Answer::Full { .. } => Action::Reset,
        },
        Behaviour::StreamHang => match answer(head, body) {
            Answer::Stream {
                events,
                first_content,
            } => Action::Stream {
                events,
                end: StreamEnd::HangAfter(first_content + 1),
            },
            Answer::Full { .. } => Action::Hang,
        },
    };
    Plan {
        first_byte_delay,
        chunk_delay,
        action,
    }
}
