//! What a `/proxy` call costs: which endpoints carry token usage, the
//! pseudo-models per-call prices are set on, and the usage read from the
//! answer as it streams by (a JSON answer, bounded, parsed once at its
//! end; an SSE answer event by event), never holding a stream back.

use crate::providers::openai::Usage;
use crate::providers::sse::{SseSplitter, event_data};
use actix_web::http::Method;
use serde_json::Value;

/// Endpoints (below the provider's base URL, with or without a `v1/`)
/// whose requests name a model and whose answers report token usage: chat,
/// legacy completions, embeddings, OpenAI responses, Anthropic messages.
const TOKEN_ENDPOINTS: &[&str] = &[
    "chat/completions",
    "completions",
    "embeddings",
    "responses",
    "messages",
];

/// Request fields that cap the answer's tokens, by endpoint family.
const MAX_TOKEN_FIELDS: &[&str] = &["max_completion_tokens", "max_tokens", "max_output_tokens"];

/// Whether `method tail` is a call billed from its token usage. The tail
/// is compared decoded, without empty segments and in lowercase, as
/// lenient upstreams route it: `chat//completions` or `Chat%2Fcompletions`
/// must not pass as a per-call endpoint.
pub fn bills_tokens(method: &Method, tail: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(tail)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    let path = decoded
        .split(['/', '\\'])
        .filter(|segment| !segment.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let path = path.strip_prefix("v1/").unwrap_or(&path);
    method == Method::POST && TOKEN_ENDPOINTS.contains(&path)
}

/// The pseudo-model a per-call price of `tail` is set on.
pub fn per_call_model(provider: &str, tail: &str) -> String {
    format!("proxy:{provider}:{}", tail.trim_matches('/'))
}

/// The pseudo-model priced for every other endpoint of `provider`.
pub fn per_call_fallback(provider: &str) -> String {
    format!("proxy:{provider}:*")
}

/// What a token-billed request body says about its cost.
pub struct TokenCall {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<i64>,
}

/// The model, stream flag and token cap of a request body; `None` when it
/// is not a JSON object naming a model (the call cannot be priced by tokens).
pub fn token_call(body: &[u8]) -> Option<TokenCall> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let model = value.get("model")?.as_str()?;
    if model.is_empty() {
        return None;
    }
    Some(TokenCall {
        model: model.to_owned(),
        stream: value
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_tokens: MAX_TOKEN_FIELDS
            .iter()
            .find_map(|field| value.get(*field).and_then(Value::as_i64)),
    })
}

/// Merges the token counts `value` reports into `usage`. Each endpoint
/// family keeps them somewhere else: `usage` (chat, completions,
/// embeddings, Anthropic messages and `message_delta` events),
/// `response.usage` (a responses stream's `response.completed`),
/// `message.usage` (Anthropic's `message_start`). Fields absent from this
/// document keep what earlier events said.
fn merge_usage(value: &Value, usage: &mut Option<Usage>) {
    let Some(found) = value
        .get("usage")
        .filter(|usage| usage.is_object())
        .or_else(|| value.pointer("/response/usage"))
        .or_else(|| value.pointer("/message/usage"))
        .and_then(Value::as_object)
    else {
        return;
    };
    let read = |field: &str| found.get(field).and_then(Value::as_i64);
    // OpenAI's details: `prompt_tokens_details` (chat) or
    // `input_tokens_details` (responses), and their output twins.
    let detail = |objects: [&str; 2], field: &str| {
        objects
            .iter()
            .find_map(|object| found.get(*object)?.get(field)?.as_i64())
    };
    let counts = usage.get_or_insert_with(Usage::default);
    if let Some(prompt) = read("prompt_tokens").or_else(|| read("input_tokens")) {
        let cache_read = read("cache_read_input_tokens");
        let cache_write = read("cache_creation_input_tokens");
        if cache_read.is_some() || cache_write.is_some() {
            // Anthropic counts cache reads and writes apart from `input_tokens`.
            counts.cache_read_tokens = cache_read.unwrap_or(0);
            counts.cache_write_tokens = cache_write.unwrap_or(0);
            counts.prompt_tokens = prompt
                .saturating_add(counts.cache_read_tokens)
                .saturating_add(counts.cache_write_tokens);
        } else {
            // OpenAI's prompt count includes its cached tokens.
            counts.prompt_tokens = prompt;
            counts.cache_read_tokens = detail(
                ["prompt_tokens_details", "input_tokens_details"],
                "cached_tokens",
            )
            .unwrap_or(0);
            counts.cache_write_tokens = 0;
        }
    }
    if let Some(completion) = read("completion_tokens").or_else(|| read("output_tokens")) {
        counts.completion_tokens = completion;
        if let Some(reasoning) = detail(
            ["completion_tokens_details", "output_tokens_details"],
            "reasoning_tokens",
        ) {
            counts.reasoning_tokens = reasoning;
        }
    }
}

/// Reads usage from an answer chunk by chunk.
pub enum UsageScan {
    /// Not read: a per-call price, or an answer neither JSON nor SSE.
    Off,
    /// A JSON answer, kept up to `limit` bytes and parsed at its end.
    Json {
        body: Vec<u8>,
        limit: usize,
        overflowed: bool,
    },
    /// An SSE answer, read event by event.
    Sse {
        splitter: SseSplitter,
        limit: usize,
        usage: Option<Usage>,
        completion_chars: usize,
    },
}

impl UsageScan {
    /// The scan for an answer of `content_type`; `limit` bounds what is kept
    /// (a whole JSON answer, or one unfinished event).
    pub fn for_answer(content_type: Option<&str>, limit: usize) -> Self {
        let media = content_type
            .and_then(|value| value.split(';').next())
            .map(|media| media.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if media == "text/event-stream" {
            UsageScan::Sse {
                splitter: SseSplitter::default(),
                limit,
                usage: None,
                completion_chars: 0,
            }
        } else if media == "application/json" || media.ends_with("+json") {
            UsageScan::Json {
                body: Vec::new(),
                limit,
                overflowed: false,
            }
        } else {
            UsageScan::Off
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            UsageScan::Off => {}
            UsageScan::Json {
                body,
                limit,
                overflowed,
            } => {
                if *overflowed || body.len() + chunk.len() > *limit {
                    // Too large to parse: the meter estimates instead.
                    *overflowed = true;
                    body.clear();
                } else {
                    body.extend_from_slice(chunk);
                }
            }
            UsageScan::Sse {
                splitter,
                limit,
                usage,
                completion_chars,
            } => {
                splitter.push(chunk);
                while let Some(event) = splitter.next_event() {
                    scan_event(&event, usage, completion_chars);
                }
                if splitter.buffered() > *limit {
                    // An event that never ends: drop it rather than grow.
                    splitter.take_rest();
                }
            }
        }
    }

    /// The usage reported (if any) and the characters of answer text seen
    /// (for the meter's estimate when there is no usage).
    pub fn finish(self) -> (Option<Usage>, usize) {
        match self {
            UsageScan::Off => (None, 0),
            UsageScan::Json {
                body, overflowed, ..
            } => {
                if overflowed {
                    return (None, 0);
                }
                let mut usage = None;
                if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                    merge_usage(&value, &mut usage);
                }
                (usage, crate::providers::estimate::text_chars(&body))
            }
            UsageScan::Sse {
                mut splitter,
                mut usage,
                mut completion_chars,
                ..
            } => {
                let rest = splitter.take_rest();
                if !rest.is_empty() {
                    scan_event(&rest, &mut usage, &mut completion_chars);
                }
                (usage, completion_chars)
            }
        }
    }
}

fn scan_event(event: &[u8], usage: &mut Option<Usage>, completion_chars: &mut usize) {
    let Some(data) = event_data(event) else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(&data) else {
        return;
    };
    merge_usage(&value, usage);
    *completion_chars += crate::providers::estimate::text_chars(&data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(content_type: &str, chunks: &[&[u8]]) -> (Option<Usage>, usize) {
        let mut scan = UsageScan::for_answer(Some(content_type), 1 << 20);
        for chunk in chunks {
            scan.feed(chunk);
        }
        scan.finish()
    }

    fn usage(prompt_tokens: i64, completion_tokens: i64) -> Option<Usage> {
        Some(Usage::tokens(prompt_tokens, completion_tokens))
    }

    #[test]
    fn known_endpoints_bill_tokens() {
        assert!(bills_tokens(&Method::POST, "chat/completions"));
        assert!(bills_tokens(&Method::POST, "v1/messages"));
        assert!(bills_tokens(&Method::POST, "/embeddings/"));
        assert!(bills_tokens(&Method::POST, "chat//completions"));
        assert!(bills_tokens(&Method::POST, "v1/Chat%2Fcompletions"));
        assert!(!bills_tokens(&Method::GET, "chat/completions"));
        assert!(!bills_tokens(&Method::POST, "threads/t1/messages"));
        assert!(!bills_tokens(&Method::POST, "images/generations"));
    }

    #[test]
    fn json_answers_of_each_family() {
        let chat = br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}"#;
        assert_eq!(
            scan("application/json", &[&chat[..9], &chat[9..]]).0,
            usage(7, 5)
        );
        let embeddings = br#"{"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(
            scan("application/json; charset=utf-8", &[embeddings]).0,
            usage(4, 0)
        );
        let anthropic = br#"{"usage":{"input_tokens":3,"cache_read_input_tokens":2,"cache_creation_input_tokens":4,"output_tokens":9}}"#;
        assert_eq!(
            scan("application/json", &[anthropic]).0,
            Some(Usage {
                cache_read_tokens: 2,
                cache_write_tokens: 4,
                ..Usage::tokens(9, 9)
            })
        );
        let responses = br#"{"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":6},"output_tokens":8,"output_tokens_details":{"reasoning_tokens":5}}}"#;
        assert_eq!(
            scan("application/json", &[responses]).0,
            Some(Usage {
                cache_read_tokens: 6,
                reasoning_tokens: 5,
                ..Usage::tokens(10, 8)
            })
        );
        assert_eq!(scan("application/json", &[b"not json"]).0, None);
    }

    #[test]
    fn sse_answers_split_anywhere() {
        let openai = b"data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}]}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5}}\n\ndata: [DONE]\n\n";
        for split in [1, 17, 60, openai.len() - 1] {
            let (found, chars) = scan("text/event-stream", &[&openai[..split], &openai[split..]]);
            assert_eq!((found, chars), (usage(7, 5), 4), "split at {split}");
        }
        let anthropic = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":13,\"output_tokens\":1}}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n";
        assert_eq!(scan("text/event-stream", &[anthropic]).0, usage(13, 5));
        let responses = b"data: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n\
            data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":6,\"output_tokens\":2}}}\n\n";
        assert_eq!(scan("text/event-stream", &[responses]).0, usage(6, 2));
        let no_usage = b"data: {\"choices\":[{\"delta\":{\"content\":\"abcdefgh\"}}]}\n\n";
        assert_eq!(scan("text/event-stream", &[no_usage]), (None, 8));
    }

    #[test]
    fn oversized_answers_are_not_kept() {
        let mut scan = UsageScan::for_answer(Some("application/json"), 8);
        scan.feed(br#"{"usage":"#);
        scan.feed(br#"{"prompt_tokens":1}}"#);
        assert_eq!(scan.finish(), (None, 0));
    }

    #[test]
    fn request_bodies_name_the_model() {
        let call = token_call(br#"{"model":"m","stream":true,"max_tokens":9}"#);
        assert_eq!(
            call.map(|c| (c.model, c.stream, c.max_tokens)),
            Some(("m".to_owned(), true, Some(9)))
        );
        assert!(token_call(br#"{"model":""}"#).is_none());
        assert!(token_call(b"[1]").is_none());
    }
}
