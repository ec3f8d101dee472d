//! Endpoints for testing the gateway's `/proxy/{provider}/{path…}` relay, which forwards
//! requests and answers it does not interpret: they check that bytes pass through untouched
//! (binary, non-UTF-8, large, chunked) and that streams are relayed as they arrive.
//!
//! - `POST …/audio/speech`: 200 `audio/mpeg`, the [`speech_bytes`] (not valid UTF-8).
//! - any method on a path with an `echo` segment: 200 JSON describing the request as the mock
//!   received it, with the body's length and [`fnv1a64`] checksum instead of the body.
//! - `GET …/stream-bytes?n=K`: a chunked `application/octet-stream` of K chunks of
//!   [`STREAM_CHUNK_BYTES`], paced by `x-mock-chunk-delay-ms`; the body is [`stream_bytes`]`(K)`.

use serde_json::{Map, Value, json};

use crate::http::Head;
use crate::router::Answer;

/// Length of the `audio/speech` answer.
pub const SPEECH_BYTES: usize = 64 * 1024;

/// Size of each chunk of a `stream-bytes` answer.
pub const STREAM_CHUNK_BYTES: usize = 1024;

/// Most chunks a `stream-bytes` answer sends (16 MiB); a larger `n` is a 400.
pub const MAX_STREAM_CHUNKS: usize = 16 * 1024;

/// Chunks sent when `stream-bytes` has no `n`.
const DEFAULT_STREAM_CHUNKS: usize = 16;

/// The deterministic byte pattern of the binary answers: byte `i` is `(i * 31 + 7) % 251`. It
/// covers 0..=250, so it is not valid UTF-8, and its period (251) is prime to every chunk size.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i.wrapping_mul(31).wrapping_add(7)) % 251) as u8)
        .collect()
}

/// The body of every `…/audio/speech` answer: [`SPEECH_BYTES`] bytes of the pattern
/// `(i * 31 + 7) % 251`.
pub fn speech_bytes() -> Vec<u8> {
    pattern(SPEECH_BYTES)
}

/// The whole body of a `…/stream-bytes?n={chunks}` answer: the same pattern as
/// [`speech_bytes`], `chunks * STREAM_CHUNK_BYTES` long (so `stream_bytes(64) == speech_bytes()`).
pub fn stream_bytes(chunks: usize) -> Vec<u8> {
    pattern(chunks.saturating_mul(STREAM_CHUNK_BYTES))
}

/// 64-bit FNV-1a, the checksum the echo endpoint reports for the body.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

pub(crate) fn speech() -> Answer {
    Answer::Full {
        status: 200,
        content_type: "audio/mpeg",
        body: speech_bytes(),
    }
}

/// `{"method","path","query","headers","body_len","body_checksum"}`: `path` without the query,
/// `query` without `?` (empty when absent), header names lowercased with repeated headers joined
/// by `", "`, and the checksum a decimal string (a u64 does not fit a JSON double).
pub(crate) fn echo(head: &Head, body: &[u8]) -> Answer {
    let mut headers = Map::new();
    for (name, value) in &head.headers {
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    Answer::json(
        200,
        &json!({
            "method": head.method,
            "path": head.path(),
            "query": head.query(),
            "headers": headers,
            "body_len": body.len(),
            "body_checksum": fnv1a64(body).to_string(),
        }),
    )
}

/// The chunks for `query`'s `n`; `Err` is the message of a 400.
pub(crate) fn stream_bytes_answer(query: &str) -> Result<Answer, String> {
    let chunks = match query.split('&').find_map(|pair| pair.strip_prefix("n=")) {
        None => DEFAULT_STREAM_CHUNKS,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n <= MAX_STREAM_CHUNKS => n,
            _ => {
                return Err(format!(
                    "'n' must be a number of chunks from 0 to {MAX_STREAM_CHUNKS}, not {n:?}"
                ));
            }
        },
    };
    let events = stream_bytes(chunks)
        .chunks(STREAM_CHUNK_BYTES)
        .map(<[u8]>::to_vec)
        .collect();
    Ok(Answer::Stream {
        content_type: "application/octet-stream",
        events,
        first_content: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Parsed, parse_head};

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn speech_is_64_kib_of_the_pattern_and_not_utf8() {
        let bytes = speech_bytes();
        assert_eq!(bytes.len(), 65_536);
        assert_eq!(bytes.get(..3), Some(&[7, 38, 69][..]));
        for (i, &byte) in bytes.iter().enumerate() {
            assert_eq!(usize::from(byte), (i * 31 + 7) % 251, "byte {i}");
        }
        assert!(std::str::from_utf8(&bytes).is_err());
        match speech() {
            Answer::Full {
                status,
                content_type,
                body,
            } => {
                assert_eq!((status, content_type), (200, "audio/mpeg"));
                assert_eq!(body, bytes);
            }
            Answer::Stream { .. } => panic!("speech must be a full answer"),
        }
    }

    #[test]
    fn echo_describes_the_request() -> Result<(), serde_json::Error> {
        let Parsed::Complete(head) = parse_head(
            b"PUT /proxy/x/v1/echo/a/b?x=1&key=k HTTP/1.1\r\nHost: mock\r\nX-Dup: a\r\n\
              x-dup: b\r\nContent-Length: 3\r\n\r\n",
        ) else {
            panic!("head not parsed");
        };
        let Answer::Full { status, body, .. } = echo(&head, b"abc") else {
            panic!("echo must be a full answer");
        };
        assert_eq!(status, 200);
        let json: Value = serde_json::from_slice(&body)?;
        assert_eq!(
            json,
            json!({
                "method": "PUT",
                "path": "/proxy/x/v1/echo/a/b",
                "query": "x=1&key=k",
                "headers": {"host": "mock", "x-dup": "a, b", "content-length": "3"},
                "body_len": 3,
                "body_checksum": fnv1a64(b"abc").to_string(),
            })
        );
        Ok(())
    }

    #[test]
    fn stream_bytes_sends_n_chunks_of_1_kib() -> Result<(), String> {
        for (query, chunks) in [("n=3", 3), ("key=ok-1&n=64", 64), ("", 16), ("n=0", 0)] {
            let Answer::Stream {
                content_type,
                events,
                first_content,
            } = stream_bytes_answer(query)?
            else {
                panic!("stream-bytes must stream");
            };
            assert_eq!(content_type, "application/octet-stream");
            assert_eq!(first_content, 0);
            assert_eq!(events.len(), chunks, "{query}");
            assert!(events.iter().all(|e| e.len() == STREAM_CHUNK_BYTES));
            assert_eq!(events.concat(), stream_bytes(chunks));
        }
        assert_eq!(stream_bytes(64), speech_bytes());
        for query in ["n=x", "n=-1", "n=16385"] {
            assert!(stream_bytes_answer(query).is_err(), "{query}");
        }
        Ok(())
    }
}
