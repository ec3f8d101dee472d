//! From a request to a plan: which answer, and how the key's behaviour bends it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::behaviour::Behaviour;
use crate::http::{self, Head};
use crate::media::Bend;
use crate::{anthropic, gemini, media, openai, passthrough, responses, uploads};

/// The completion every endpoint returns, one token per word.
pub(crate) const WORDS: [&str; 5] = ["one", " two", " three", " four", " five"];

/// Request header that sets a pause between stream chunks, in milliseconds.
pub(crate) const CHUNK_DELAY_HEADER: &str = "x-mock-chunk-delay-ms";

/// What an endpoint answers before the behaviour is applied.
pub(crate) enum Answer {
    Full {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// A chunked 200, each event one chunk (SSE events, or raw bytes for `stream-bytes`);
    /// `first_content` is the index of the first event that carries generated content (where
    /// `streamdie` and `streamhang` cut the stream).
    Stream {
        content_type: &'static str,
        events: Vec<Vec<u8>>,
        first_content: usize,
    },
}

impl Answer {
    pub(crate) fn json(status: u16, body: &Value) -> Answer {
        Answer::Full {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// A `text/event-stream` answer.
    pub(crate) fn sse(events: Vec<Vec<u8>>, first_content: usize) -> Answer {
        Answer::Stream {
            content_type: "text/event-stream",
            events,
            first_content,
        }
    }
}

/// Whether an answer reports token usage: `nousage-` keys get answers without any, as from a
/// provider that does not meter, so the gateway's own estimation can be tested.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Usage {
    Report,
    Omit,
}

impl Usage {
    pub(crate) fn reported(self) -> bool {
        self == Usage::Report
    }
}

/// Removes `key` from a JSON object when usage is not reported.
pub(crate) fn strip_usage(mut value: Value, key: &str, usage: Usage) -> Value {
    if !usage.reported()
        && let Some(object) = value.as_object_mut()
    {
        object.remove(key);
    }
    value
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
    /// A chunked response, one write per event.
    Stream {
        content_type: &'static str,
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
    /// Send this many events, then end cleanly (no end marker).
    CloseAfter(usize),
    /// Send this many events and the first half of the next one, then end cleanly.
    CloseMidEvent(usize),
    /// Send this many events, then one endless event (`HUGE_EVENT_BYTES`, no blank line), then
    /// end cleanly.
    HugeEventAfter(usize),
}

impl StreamEnd {
    /// How many whole events go out.
    pub(crate) fn whole_events(&self, total: usize) -> usize {
        match *self {
            StreamEnd::Finish => total,
            StreamEnd::ResetAfter(n)
            | StreamEnd::HangAfter(n)
            | StreamEnd::CloseAfter(n)
            | StreamEnd::CloseMidEvent(n)
            | StreamEnd::HugeEventAfter(n) => n.min(total),
        }
    }
}

pub(crate) struct Plan {
    /// Pause before the first response byte (`slow<MS>-` keys).
    pub(crate) first_byte_delay: Option<Duration>,
    /// Pause between stream chunks (`x-mock-chunk-delay-ms`).
    pub(crate) chunk_delay: Option<Duration>,
    /// Send stream events one byte per chunk (`drip-` keys).
    pub(crate) drip: bool,
    pub(crate) action: Action,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Chat,
    Completions,
    Embeddings,
    Models,
    Messages,
    CountTokens,
    /// `POST …/models/{model}:generateContent`.
    GeminiGenerate,
    /// `POST …/models/{model}:streamGenerateContent`.
    GeminiStream,
    /// `POST …/models/{model}:countTokens`.
    GeminiCountTokens,
    /// `GET …/v1beta/…/models`.
    GeminiModels,
    /// `POST …/audio/speech`.
    Speech,
    /// `POST …/images/generations`.
    ImageGenerations,
    /// `POST …/rerank`.
    Rerank,
    /// `POST …/audio/transcriptions` (multipart).
    Transcriptions,
    /// `POST …/audio/translations` (multipart).
    Translations,
    /// `POST …/images/edits` (multipart).
    ImageEdits,
    /// Any method on a path with an `echo` segment.
    Echo,
    /// `GET …/stream-bytes`.
    StreamBytes,
    /// `POST …/responses` (OpenAI's Responses API).
    Responses,
    /// `GET` or `DELETE …/responses/{id}`.
    StoredResponse,
    Unknown,
}

/// A path with a segment exactly `echo` (`/v1/echo`, `/v1/echo/anything`).
fn is_echo(path: &str) -> bool {
    path.split('/').any(|segment| segment == "echo")
}

/// Paths whose clients expect Google's error shape: a `models/{model}:{method}` call, or anything
/// under `/v1beta/` except Gemini's OpenAI-compatible `/v1beta/openai/` surface.
fn is_gemini_path(path: &str) -> bool {
    gemini::call(path).is_some() || (path.contains("/v1beta/") && !path.contains("/openai/"))
}

impl Route {
    fn of(method: &str, path: &str) -> Route {
        let path = path.trim_end_matches('/');
        if is_echo(path) {
            return Route::Echo;
        }
        let route = if let Some((_, call)) = gemini::call(path) {
            match call {
                gemini::GENERATE => Route::GeminiGenerate,
                gemini::STREAM => Route::GeminiStream,
                gemini::COUNT_TOKENS => Route::GeminiCountTokens,
                _ => Route::Unknown,
            }
        } else if path.ends_with("/chat/completions") {
            Route::Chat
        } else if path.ends_with("/completions") {
            Route::Completions
        } else if path.ends_with("/embeddings") {
            Route::Embeddings
        } else if path.ends_with("/models") {
            if is_gemini_path(path) {
                Route::GeminiModels
            } else {
                Route::Models
            }
        } else if path.ends_with("/messages/count_tokens") {
            Route::CountTokens
        } else if path.ends_with("/messages") {
            Route::Messages
        } else if path.ends_with("/audio/speech") {
            Route::Speech
        } else if path.ends_with("/images/generations") {
            Route::ImageGenerations
        } else if path.ends_with("/rerank") {
            Route::Rerank
        } else if path.ends_with("/audio/transcriptions") {
            Route::Transcriptions
        } else if path.ends_with("/audio/translations") {
            Route::Translations
        } else if path.ends_with("/images/edits") {
            Route::ImageEdits
        } else if path.ends_with("/stream-bytes") {
            Route::StreamBytes
        } else if path.ends_with("/responses") {
            Route::Responses
        } else if responses::stored_id(path).is_some() {
            return if method == "GET" || method == "DELETE" {
                Route::StoredResponse
            } else {
                Route::Unknown
            };
        } else {
            Route::Unknown
        };
        let expected = match route {
            Route::Models | Route::GeminiModels | Route::StreamBytes => "GET",
            _ => "POST",
        };
        if route == Route::Unknown || method != expected {
            Route::Unknown
        } else {
            route
        }
    }
}

/// Which error shape a path's clients expect.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Shape {
    fn of(route: Route, path: &str) -> Shape {
        let path = path.trim_end_matches('/');
        match route {
            Route::Messages | Route::CountTokens => Shape::Anthropic,
            Route::GeminiGenerate
            | Route::GeminiStream
            | Route::GeminiCountTokens
            | Route::GeminiModels => Shape::Gemini,
            Route::Unknown
                if path.ends_with("/messages") || path.ends_with("/messages/count_tokens") =>
            {
                Shape::Anthropic
            }
            Route::Unknown if is_gemini_path(path) => Shape::Gemini,
            _ => Shape::OpenAi,
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
        (Shape::Gemini, Failure::RateLimited) => (
            429,
            gemini::error_body(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota) (mock)",
            ),
        ),
        (Shape::Gemini, Failure::ServerError) => (
            500,
            gemini::error_body(500, "INTERNAL", "An internal error has occurred (mock)"),
        ),
        (Shape::Gemini, Failure::Unauthorized) => (
            401,
            gemini::error_body(
                401,
                "UNAUTHENTICATED",
                "API key not valid. Please pass a valid API key (mock)",
            ),
        ),
        (Shape::Gemini, Failure::BadRequest(message)) => {
            (400, gemini::error_body(400, "INVALID_ARGUMENT", message))
        }
        (Shape::Gemini, Failure::NotFound) => (
            404,
            gemini::error_body(
                404,
                "NOT_FOUND",
                &format!("Not found: {} {}", head.method, head.path()),
            ),
        ),
    };
    Answer::json(status, &body)
}

/// A request body without its `tools` (a body that is not a JSON object as it is).
fn without_tools(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut object)) => {
            object.remove("tools");
            serde_json::to_vec(&Value::Object(object)).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

/// The endpoint's normal answer.
fn answer(head: &Head, body: &[u8], usage: Usage) -> Answer {
    bent_answer(head, body, usage, Bend::Straight)
}

/// The endpoint's answer, a media answer bent by the key (other endpoints ignore `bend`).
fn bent_answer(head: &Head, body: &[u8], usage: Usage, bend: Bend) -> Answer {
    let path = head.path();
    let route = Route::of(&head.method, path);
    let shape = Shape::of(route, path);
    let json = match route {
        Route::Unknown => return error_answer(shape, Failure::NotFound, head),
        Route::Models => return openai::models(),
        Route::GeminiModels => return gemini::models(),
        Route::Speech if bend == Bend::NoPayload => return media::speech_error(),
        Route::Speech => return passthrough::speech(),
        Route::Transcriptions | Route::Translations => {
            let content_type = head.header("content-type").unwrap_or_default();
            return uploads::transcript(content_type, body, route == Route::Translations, usage);
        }
        Route::ImageEdits => {
            let content_type = head.header("content-type").unwrap_or_default();
            return uploads::image_edits(content_type, body, usage);
        }
        Route::Echo => return passthrough::echo(head, body),
        Route::StoredResponse => {
            return responses::stored_id(path.trim_end_matches('/'))
                .and_then(|id| responses::stored(&head.method, id))
                .unwrap_or_else(|| error_answer(shape, Failure::NotFound, head));
        }
        Route::StreamBytes => {
            return match passthrough::stream_bytes_answer(head.query()) {
                Ok(answer) => answer,
                Err(message) => error_answer(shape, Failure::BadRequest(&message), head),
            };
        }
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
        Route::Chat => openai::chat(&json, usage),
        Route::Responses => responses::create(&json, usage),
        Route::Completions => openai::completions(&json, usage),
        Route::Embeddings => openai::embeddings(&json, usage),
        Route::Messages => anthropic::messages(&json, usage),
        Route::CountTokens => anthropic::count_tokens(&json),
        Route::GeminiGenerate | Route::GeminiStream => gemini::generate(
            gemini::model(path),
            &json,
            route == Route::GeminiStream,
            usage,
        ),
        Route::GeminiCountTokens => gemini::count_tokens(&json),
        Route::ImageGenerations => media::image_generations(&json, usage, bend),
        Route::Rerank => media::rerank(&json, usage, bend),
        Route::Models
        | Route::GeminiModels
        | Route::Speech
        | Route::Transcriptions
        | Route::Translations
        | Route::ImageEdits
        | Route::Echo
        | Route::StreamBytes
        | Route::StoredResponse
        | Route::Unknown => error_answer(shape, Failure::NotFound, head),
    }
}

/// The figure every usage field reports for `negusage-` keys.
pub(crate) const NEGATIVE_USAGE: i64 = -1_000_000_000;
/// The figure every usage field reports for `hugeusage-` keys (two of them overflow an `i64`).
pub(crate) const HUGE_USAGE: i64 = 9_200_000_000_000_000_000;

/// Token-count fields of the three wire formats' usage objects.
const USAGE_FIELDS: [&str; 8] = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
];

/// Sets every usage field in `value` (at any depth) to `figure`.
fn set_usage_fields(value: &mut Value, figure: i64) {
    match value {
        Value::Object(object) => {
            for (key, field) in object.iter_mut() {
                if field.is_number() && USAGE_FIELDS.contains(&key.as_str()) {
                    *field = Value::from(figure);
                } else {
                    set_usage_fields(field, figure);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| set_usage_fields(item, figure)),
        _ => {}
    }
}

/// Reasoning tokens a `cached-` answer adds to its completion.
pub(crate) const CACHED_REASONING_TOKENS: i64 = 3;

/// Gives every usage object in `value` (at any depth) the prompt-cache and reasoning figures of a
/// `cached-` answer, keeping each wire's convention for what the totals include:
/// - OpenAI (`prompt_tokens`): half the prompt (rounded down) was cached
///   (`prompt_tokens_details.cached_tokens`, inside `prompt_tokens`); the completion gains
///   [`CACHED_REASONING_TOKENS`] (`completion_tokens_details.reasoning_tokens`, inside it).
/// - Anthropic (`input_tokens`): of the prompt P, P/2 are cache reads and P/4 cache writes,
///   reported apart (`cache_read_input_tokens`, `cache_creation_input_tokens`) and no longer in
///   `input_tokens`.
/// - Gemini (`promptTokenCount`): `cachedContentTokenCount` P/2 (inside the prompt count) and
///   `thoughtsTokenCount` [`CACHED_REASONING_TOKENS`] (apart from `candidatesTokenCount`).
fn add_cache_usage(value: &mut Value) {
    let read = |object: &serde_json::Map<String, Value>, key: &str| {
        object.get(key).and_then(Value::as_i64)
    };
    match value {
        Value::Object(object) => {
            if let Some(prompt) = read(object, "prompt_tokens") {
                object.insert(
                    "prompt_tokens_details".into(),
                    json!({"cached_tokens": prompt / 2}),
                );
                if let Some(completion) = read(object, "completion_tokens") {
                    object.insert(
                        "completion_tokens".into(),
                        json!(completion + CACHED_REASONING_TOKENS),
                    );
                    object.insert(
                        "completion_tokens_details".into(),
                        json!({"reasoning_tokens": CACHED_REASONING_TOKENS}),
                    );
                    object.insert(
                        "total_tokens".into(),
                        json!(prompt + completion + CACHED_REASONING_TOKENS),
                    );
                }
            } else if let Some(prompt) = read(object, "input_tokens") {
                let (cache_read, cache_write) = (prompt / 2, prompt / 4);
                object.insert(
                    "input_tokens".into(),
                    json!(prompt - cache_read - cache_write),
                );
                object.insert("cache_read_input_tokens".into(), json!(cache_read));
                object.insert("cache_creation_input_tokens".into(), json!(cache_write));
            } else if let Some(prompt) = read(object, "promptTokenCount") {
                let total = read(object, "totalTokenCount").unwrap_or(prompt);
                object.insert("cachedContentTokenCount".into(), json!(prompt / 2));
                object.insert("thoughtsTokenCount".into(), json!(CACHED_REASONING_TOKENS));
                object.insert(
                    "totalTokenCount".into(),
                    json!(total + CACHED_REASONING_TOKENS),
                );
            } else {
                object.values_mut().for_each(add_cache_usage);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(add_cache_usage),
        _ => {}
    }
}

/// The answer with its usage figures replaced: a whole JSON body, or each SSE event's `data:`
/// JSON (other lines, and data that is not JSON, such as `[DONE]`, pass unchanged).
fn rewrite_usage(answer: Answer, figure: i64) -> Answer {
    rewrite_answer_json(answer, |value| set_usage_fields(value, figure))
}

/// The answer with `rewrite` applied to its JSON: a whole JSON body, or each SSE event's `data:`
/// JSON (other lines, and data that is not JSON, such as `[DONE]`, pass unchanged).
fn rewrite_answer_json(answer: Answer, rewrite: impl Fn(&mut Value)) -> Answer {
    let rewrite_json = |bytes: &[u8]| -> Option<Vec<u8>> {
        let mut value = serde_json::from_slice::<Value>(bytes).ok()?;
        rewrite(&mut value);
        serde_json::to_vec(&value).ok()
    };
    match answer {
        Answer::Full {
            status,
            content_type,
            body,
        } => Answer::Full {
            status,
            content_type,
            body: rewrite_json(&body).unwrap_or(body),
        },
        Answer::Stream {
            content_type,
            events,
            first_content,
        } => Answer::Stream {
            content_type,
            events: events
                .into_iter()
                .map(|event| {
                    let text = String::from_utf8_lossy(&event).into_owned();
                    let mut out = Vec::with_capacity(event.len());
                    for line in text.split_inclusive('\n') {
                        match line
                            .strip_prefix("data: ")
                            .map(|data| (data, rewrite_json(data.trim_end().as_bytes())))
                        {
                            Some((data, Some(json))) => {
                                out.extend_from_slice(b"data: ");
                                out.extend_from_slice(&json);
                                out.extend_from_slice(&data.as_bytes()[data.trim_end().len()..]);
                            }
                            _ => out.extend_from_slice(line.as_bytes()),
                        }
                    }
                    out
                })
                .collect(),
            first_content,
        },
    }
}

/// A stream with `n` content events: copies of the first one (the first word, never the one that
/// carries a finish marker) inserted before it. Usage figures stay those of the normal answer.
fn with_content_chunks(answer: Answer, n: usize) -> Answer {
    match answer {
        Answer::Stream {
            content_type,
            mut events,
            first_content,
        } if n > WORDS.len() => {
            if let Some(first) = events.get(first_content).cloned() {
                let copies = std::iter::repeat_n(first, n - WORDS.len());
                events.splice(first_content..first_content, copies);
            }
            Answer::Stream {
                content_type,
                events,
                first_content,
            }
        }
        other => other,
    }
}

fn write(answer: Answer, extra_headers: &[(&str, &str)], keep_alive: bool) -> Action {
    match answer {
        Answer::Full {
            status,
            content_type,
            body,
        } => Action::Write(http::response(
            status,
            content_type,
            extra_headers,
            &body,
            keep_alive,
        )),
        Answer::Stream {
            content_type,
            events,
            ..
        } => Action::Stream {
            content_type,
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
    let shape = Shape::of(Route::of(&head.method, head.path()), head.path());
    let mut first_byte_delay = None;
    let behaviour = Behaviour::from_key(key);
    // A stream cut after its first content delta; other answers as they are.
    let cut = |end: fn(usize) -> StreamEnd| match answer(head, body, Usage::Report) {
        Answer::Stream {
            content_type,
            events,
            first_content,
        } => Action::Stream {
            content_type,
            events,
            end: end(first_content + 1),
        },
        full @ Answer::Full { .. } => write(full, &[], keep_alive),
    };
    let action = match behaviour {
        Behaviour::RateLimited { retry_after_secs } => write(
            error_answer(shape, Failure::RateLimited, head),
            &[("retry-after", &retry_after_secs.to_string())],
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
            write(answer(head, body, Usage::Report), &[], keep_alive)
        }
        Behaviour::Normal | Behaviour::Drip => {
            write(answer(head, body, Usage::Report), &[], keep_alive)
        }
        Behaviour::ExtraUnits => write(
            bent_answer(head, body, Usage::Report, Bend::ExtraUnits),
            &[],
            keep_alive,
        ),
        Behaviour::NoPayload => write(
            bent_answer(head, body, Usage::Report, Bend::NoPayload),
            &[],
            keep_alive,
        ),
        Behaviour::TextOnly => write(
            answer(head, &without_tools(body), Usage::Report),
            &[],
            keep_alive,
        ),
        Behaviour::Chunks(n) => write(
            with_content_chunks(answer(head, body, Usage::Report), n),
            &[],
            keep_alive,
        ),
        Behaviour::TruncateClean => cut(StreamEnd::CloseAfter),
        Behaviour::TruncateMidEvent => cut(StreamEnd::CloseMidEvent),
        Behaviour::HugeEvent => cut(StreamEnd::HugeEventAfter),
        Behaviour::NoUsage => write(answer(head, body, Usage::Omit), &[], keep_alive),
        Behaviour::NegativeUsage => write(
            rewrite_usage(answer(head, body, Usage::Report), NEGATIVE_USAGE),
            &[],
            keep_alive,
        ),
        Behaviour::HugeUsage => write(
            rewrite_usage(answer(head, body, Usage::Report), HUGE_USAGE),
            &[],
            keep_alive,
        ),
        Behaviour::CachedUsage => write(
            rewrite_answer_json(answer(head, body, Usage::Report), add_cache_usage),
            &[],
            keep_alive,
        ),
        Behaviour::StreamDie => match answer(head, body, Usage::Report) {
            Answer::Stream {
                content_type,
                events,
                first_content,
            } => Action::Stream {
                content_type,
                events,
                end: StreamEnd::ResetAfter(first_content + 1),
            },
            Answer::Full { .. } => Action::Reset,
        },
        Behaviour::RoleDie => match answer(head, body, Usage::Report) {
            Answer::Stream {
                content_type,
                events,
                first_content,
            } => Action::Stream {
                content_type,
                events,
                end: StreamEnd::ResetAfter(first_content),
            },
            Answer::Full { .. } => Action::Reset,
        },
        Behaviour::StreamHang => match answer(head, body, Usage::Report) {
            Answer::Stream {
                content_type,
                events,
                first_content,
            } => Action::Stream {
                content_type,
                events,
                end: StreamEnd::HangAfter(first_content + 1),
            },
            Answer::Full { .. } => Action::Hang,
        },
    };
    Plan {
        first_byte_delay,
        chunk_delay,
        drip: behaviour == Behaviour::Drip,
        action,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::http::{Parsed, parse_head};

    fn head(method: &str, target: &str) -> Head {
        let wire = format!("{method} {target} HTTP/1.1\r\nhost: mock\r\n\r\n");
        match parse_head(wire.as_bytes()) {
            Parsed::Complete(head) => head,
            Parsed::Partial | Parsed::Invalid(_) => panic!("bad test head {wire:?}"),
        }
    }

    fn route(method: &str, path: &str) -> Route {
        Route::of(method, path)
    }

    /// Status and JSON of a full answer (`Value::Null` when it is a stream or not JSON).
    fn full(answer: Answer) -> (u16, Value) {
        match answer {
            Answer::Full { status, body, .. } => {
                (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
            Answer::Stream { .. } => (0, Value::Null),
        }
    }

    /// The events of a stream answer as text.
    fn events(answer: Answer) -> Vec<String> {
        match answer {
            Answer::Stream { events, .. } => events
                .iter()
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect(),
            Answer::Full { .. } => Vec::new(),
        }
    }

    fn post(path: &str, body: &Value, usage: Usage) -> Answer {
        let body = serde_json::to_vec(body).unwrap_or_default();
        answer(&head("POST", path), &body, usage)
    }

    #[test]
    fn existing_routes_are_unchanged() {
        assert_eq!(route("POST", "/v1/chat/completions"), Route::Chat);
        assert_eq!(route("POST", "/v1/completions"), Route::Completions);
        assert_eq!(route("POST", "/v1/embeddings"), Route::Embeddings);
        assert_eq!(route("GET", "/v1/models"), Route::Models);
        assert_eq!(route("GET", "/v1/models/"), Route::Models);
        assert_eq!(route("GET", "/v1beta/openai/models"), Route::Models);
        assert_eq!(route("POST", "/v1/messages"), Route::Messages);
        assert_eq!(
            route("POST", "/v1/messages/count_tokens"),
            Route::CountTokens
        );
        assert_eq!(route("POST", "/v1/models"), Route::Unknown);
        assert_eq!(route("GET", "/v1/chat/completions"), Route::Unknown);
        assert_eq!(route("POST", "/v1/images/variations"), Route::Unknown);
    }

    #[test]
    fn media_routes_are_recognised_below_any_prefix() {
        assert_eq!(
            route("POST", "/v1/images/generations"),
            Route::ImageGenerations
        );
        assert_eq!(
            route("POST", "/openai/deployments/d/images/generations"),
            Route::ImageGenerations
        );
        assert_eq!(route("POST", "/v1/rerank"), Route::Rerank);
        assert_eq!(route("POST", "/api/paas/v4/rerank"), Route::Rerank);
        assert_eq!(route("GET", "/v1/rerank"), Route::Unknown);
    }

    #[test]
    fn new_routes_are_recognised() {
        let generate = "/v1/v1beta/models/gemini-2.0-flash:generateContent";
        let stream = "/v1beta/models/m:streamGenerateContent";
        assert_eq!(route("POST", generate), Route::GeminiGenerate);
        assert_eq!(route("POST", stream), Route::GeminiStream);
        assert_eq!(route("GET", generate), Route::Unknown);
        assert_eq!(
            route("POST", "/v1beta/models/m:countTokens"),
            Route::GeminiCountTokens
        );
        assert_eq!(
            route("POST", "/v1beta/models/m:embedContent"),
            Route::Unknown
        );
        assert_eq!(route("GET", "/v1/v1beta/models"), Route::GeminiModels);
        assert_eq!(route("POST", "/v1/audio/speech"), Route::Speech);
        assert_eq!(route("GET", "/v1/audio/speech"), Route::Unknown);
        assert_eq!(route("GET", "/v1/stream-bytes"), Route::StreamBytes);
        assert_eq!(route("POST", "/v1/stream-bytes"), Route::Unknown);
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            assert_eq!(route(method, "/v1/echo"), Route::Echo);
            assert_eq!(route(method, "/v1/echo/chat/completions"), Route::Echo);
        }
        assert_eq!(route("POST", "/v1/echoes"), Route::Unknown);
    }

    #[test]
    fn error_shapes_follow_the_route() {
        let shape = |method: &str, path: &str| Shape::of(route(method, path), path);
        assert_eq!(shape("POST", "/v1/chat/completions"), Shape::OpenAi);
        assert_eq!(shape("POST", "/v1/images"), Shape::OpenAi);
        assert_eq!(shape("POST", "/v1/messages"), Shape::Anthropic);
        assert_eq!(shape("GET", "/v1/messages"), Shape::Anthropic);
        assert_eq!(
            shape("POST", "/v1beta/models/m:generateContent"),
            Shape::Gemini
        );
        assert_eq!(
            shape("GET", "/v1beta/models/m:generateContent"),
            Shape::Gemini
        );
        assert_eq!(shape("GET", "/v1beta/models"), Shape::Gemini);
        assert_eq!(shape("GET", "/v1beta/models/m"), Shape::Gemini);
        assert_eq!(
            shape("POST", "/v1beta/openai/chat/completions"),
            Shape::OpenAi
        );
        assert_eq!(shape("POST", "/v1/audio/speech"), Shape::OpenAi);
        assert_eq!(shape("GET", "/v1/echo/x"), Shape::OpenAi);
    }

    #[test]
    fn gemini_paths_get_google_errors() {
        let path = "/v1beta/models/m:generateContent";
        for (failure, status, name) in [
            (Failure::RateLimited, 429, "RESOURCE_EXHAUSTED"),
            (Failure::ServerError, 500, "INTERNAL"),
            (Failure::Unauthorized, 401, "UNAUTHENTICATED"),
            (Failure::BadRequest("bad"), 400, "INVALID_ARGUMENT"),
            (Failure::NotFound, 404, "NOT_FOUND"),
        ] {
            let (code, json) = full(error_answer(Shape::Gemini, failure, &head("POST", path)));
            assert_eq!(code, status);
            assert_eq!(json["error"]["code"], status);
            assert_eq!(json["error"]["status"], name);
            assert!(json["error"]["message"].is_string());
        }
        let (status, json) = full(answer(&head("POST", path), b"not json", Usage::Report));
        assert_eq!(status, 400);
        assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");
        let (status, json) = full(answer(&head("GET", path), b"", Usage::Report));
        assert_eq!(status, 404);
        assert_eq!(json["error"]["status"], "NOT_FOUND");
    }

    #[test]
    fn gemini_models_only_under_v1beta() {
        let (_, json) = full(answer(
            &head("GET", "/v1/v1beta/models"),
            b"",
            Usage::Report,
        ));
        assert_eq!(json["models"][0]["name"], "models/mock-gemini");
        let (_, json) = full(answer(&head("GET", "/v1/models"), b"", Usage::Report));
        assert_eq!(json["data"][0]["id"], "mock-gpt");
    }

    #[test]
    fn gemini_answers_name_the_model_of_the_path() {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]});
        let (status, json) = full(post(
            "/v1/v1beta/models/gemini-x:generateContent",
            &body,
            Usage::Report,
        ));
        assert_eq!(status, 200);
        assert_eq!(json["modelVersion"], "gemini-x");
        assert_eq!(json["usageMetadata"]["promptTokenCount"], 5);
        let events = events(post(
            "/v1beta/models/gemini-y:streamGenerateContent",
            &body,
            Usage::Report,
        ));
        assert_eq!(events.len(), WORDS.len());
        assert!(
            events
                .iter()
                .all(|e| e.contains(r#""modelVersion":"gemini-y""#))
        );
        assert!(events.iter().all(|e| !e.contains("[DONE]")));
    }

    #[test]
    fn omitted_usage_leaves_openai_answers_without_usage() {
        let chat = json!({"messages": [{"role": "user", "content": "hello"}]});
        let (status, json) = full(post("/v1/chat/completions", &chat, Usage::Omit));
        assert_eq!(status, 200);
        assert!(json.get("usage").is_none());
        assert_eq!(json["choices"][0]["message"]["content"], WORDS.concat());

        let streamed = json!({
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hello"}],
        });
        let with = events(post("/v1/chat/completions", &streamed, Usage::Report));
        let without = events(post("/v1/chat/completions", &streamed, Usage::Omit));
        assert!(with.iter().any(|e| e.contains(r#""usage""#)));
        assert!(without.iter().all(|e| !e.contains("usage")));
        assert_eq!(without.len() + 1, with.len());
        assert_eq!(without.last().map(String::as_str), Some("data: [DONE]\n\n"));

        let legacy = json!({"prompt": "hello"});
        let (_, json) = full(post("/v1/completions", &legacy, Usage::Omit));
        assert!(json.get("usage").is_none());
        assert_eq!(json["choices"][0]["text"], WORDS.concat());
        let legacy =
            json!({"prompt": "hi", "stream": true, "stream_options": {"include_usage": true}});
        let streamed = events(post("/v1/completions", &legacy, Usage::Omit));
        assert!(streamed.iter().all(|e| !e.contains("usage")));

        let embeddings = json!({"input": ["a", "b"]});
        let (_, json) = full(post("/v1/embeddings", &embeddings, Usage::Omit));
        assert!(json.get("usage").is_none());
        assert_eq!(json["data"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn omitted_usage_leaves_anthropic_answers_without_usage() {
        let body = json!({"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]});
        let (status, json) = full(post("/v1/messages", &body, Usage::Omit));
        assert_eq!(status, 200);
        assert!(json.get("usage").is_none());
        assert_eq!(json["content"][0]["text"], WORDS.concat());

        let body = json!({"model": "c", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
        let with = events(post("/v1/messages", &body, Usage::Report));
        let without = events(post("/v1/messages", &body, Usage::Omit));
        assert_eq!(with.len(), without.len());
        assert!(with.iter().any(|e| e.contains("usage")));
        assert!(without.iter().all(|e| !e.contains("usage")));
        assert!(
            without
                .iter()
                .any(|e| e.contains(r#""stop_reason":"end_turn""#))
        );
    }

    #[test]
    fn nousage_keys_plan_answers_without_usage() {
        let body = serde_json::to_vec(&json!({"messages": [{"role": "user", "content": "hello"}]}))
            .unwrap_or_default();
        let plan = plan(
            &head("POST", "/v1/chat/completions"),
            &body,
            "nousage-1",
            true,
        );
        let Action::Write(response) = plan.action else {
            panic!("expected a full answer");
        };
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("one two three four five"));
        assert!(!text.contains("usage"));
    }

    #[test]
    fn cached_keys_report_cache_and_reasoning_usage_in_each_wire_convention() {
        let body = |stream: bool| {
            serde_json::to_vec(&json!({
                "model": "m", "max_tokens": 10, "stream": stream,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "forty bytes of prompt text, give or take"}],
            }))
            .unwrap_or_default()
        };
        let text = |path: &str, stream: bool| -> String {
            match plan(&head("POST", path), &body(stream), "cached-1", true).action {
                Action::Write(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Action::Stream { events, .. } => events
                    .iter()
                    .map(|e| String::from_utf8_lossy(e).into_owned())
                    .collect(),
                _ => String::new(),
            }
        };
        for stream in [false, true] {
            let openai = text("/v1/chat/completions", stream);
            assert!(openai.contains(r#""cached_tokens":20"#), "{openai}");
            assert!(openai.contains(r#""reasoning_tokens":3"#), "{openai}");
            assert!(openai.contains(r#""completion_tokens":8"#), "{openai}");
            let anthropic = text("/v1/messages", stream);
            assert!(anthropic.contains(r#""input_tokens":10"#), "{anthropic}");
            assert!(
                anthropic.contains(r#""cache_read_input_tokens":20"#),
                "{anthropic}"
            );
            assert!(
                anthropic.contains(r#""cache_creation_input_tokens":10"#),
                "{anthropic}"
            );
        }
    }

    #[test]
    fn chunks_keys_stretch_text_streams() {
        // (path, a marker only content events carry)
        let cases = [
            ("/v1/chat/completions", r#""content":""#),
            ("/v1/messages", r#""text_delta""#),
        ];
        for (path, marker) in cases {
            let body = serde_json::to_vec(&json!({
                "model": "m", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "hello"}],
            }))
            .unwrap_or_default();
            let count = |key: &str| {
                let plan = plan(&head("POST", path), &body, key, true);
                let Action::Stream { events, end, .. } = plan.action else {
                    panic!("expected a stream for {key} on {path}");
                };
                assert!(matches!(end, StreamEnd::Finish), "{key} on {path}");
                let text: Vec<String> = events
                    .iter()
                    .map(|e| String::from_utf8_lossy(e).into_owned())
                    .collect();
                let content = text.iter().filter(|e| e.contains(marker)).count();
                (content, text)
            };
            let (normal, normal_text) = count("ok-1");
            let (stretched, stretched_text) = count("chunks20-1");
            let (short, _) = count("chunks3-1");
            // The OpenAI role chunk also carries `"content":""`.
            let extra = normal - WORDS.len();
            assert_eq!(stretched, 20 + extra, "{path}");
            assert_eq!(short, normal, "{path}");
            assert_eq!(stretched_text.len(), normal_text.len() + 15, "{path}");
            // The end of the stream (finish, usage, end marker) is untouched.
            assert_eq!(stretched_text.last(), normal_text.last(), "{path}");
        }
    }

    #[test]
    fn passthrough_routes_obey_the_key_behaviours() {
        for target in ["/v1/echo/x", "/v1/stream-bytes?n=2"] {
            let head = head("GET", target);
            let Action::Write(response) = plan(&head, b"", "r429-a", true).action else {
                panic!("expected a 429 for {target}");
            };
            assert!(response.starts_with(b"HTTP/1.1 429 "), "{target}");
            assert!(matches!(
                plan(&head, b"", "reset-a", true).action,
                Action::Reset
            ));
            assert!(matches!(
                plan(&head, b"", "hang-a", true).action,
                Action::Hang
            ));
        }
        let head = head("GET", "/v1/stream-bytes?n=4");
        match plan(&head, b"", "streamdie-a", true).action {
            Action::Stream {
                content_type,
                events,
                end: StreamEnd::ResetAfter(1),
            } => {
                assert_eq!(content_type, "application/octet-stream");
                assert_eq!(events.len(), 4);
            }
            _ => panic!("streamdie must cut stream-bytes after one chunk"),
        }
    }
}
