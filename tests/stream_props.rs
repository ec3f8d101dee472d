//! Properties of the SSE splitter and of every stream translator, over
//! generated streams: arbitrary chunk boundaries give the same events and
//! the same client bytes, arbitrary truncation never yields a clean end
//! (only the protocol's end marker finishes a stream), and arbitrary bytes
//! never panic. Each pipeline here does what the relay (`src/http/relay.rs`)
//! does with an upstream stream: split, translate event by event, drop an
//! unterminated tail at the end, `finish()`, then ask `is_complete()`.

use proptest::prelude::*;
use serde_json::json;
use switchyard::providers::anthropic::{
    AnthropicPassthroughStream, AnthropicToOpenAiStream, OpenAiToAnthropicStream,
};
use switchyard::providers::gemini::GeminiToOpenAiStream;
use switchyard::providers::openai::ChatStreamState;
use switchyard::providers::sse::{SseSplitter, event_data, event_name};
use switchyard::providers::translate::{ChainedStream, OPENAI_DONE, StreamTranslator};

/// Cases per property: enough variety, a few seconds per property.
const CASES: u32 = 128;

#[derive(Clone, Copy, Debug)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

/// What the client is sent for one upstream wire.
#[derive(Clone, Copy, Debug)]
enum Pipeline {
    /// OpenAI to OpenAI: events pass through (`ChatStreamState`).
    Native,
    OpenAiToAnthropic,
    AnthropicToOpenAi,
    AnthropicPassthrough,
    GeminiToOpenAi,
    GeminiToAnthropic,
}

const PIPELINES: [Pipeline; 6] = [
    Pipeline::Native,
    Pipeline::OpenAiToAnthropic,
    Pipeline::AnthropicToOpenAi,
    Pipeline::AnthropicPassthrough,
    Pipeline::GeminiToOpenAi,
    Pipeline::GeminiToAnthropic,
];

impl Pipeline {
    fn wire(self) -> Wire {
        match self {
            Self::Native | Self::OpenAiToAnthropic => Wire::OpenAi,
            Self::AnthropicToOpenAi | Self::AnthropicPassthrough => Wire::Anthropic,
            Self::GeminiToOpenAi | Self::GeminiToAnthropic => Wire::Gemini,
        }
    }

    fn translator(self) -> Option<Box<dyn StreamTranslator>> {
        Some(match self {
            Self::Native => return None,
            Self::OpenAiToAnthropic => Box::new(OpenAiToAnthropicStream::new(Some("m".into()))),
            Self::AnthropicToOpenAi => Box::new(AnthropicToOpenAiStream::new(1, true)),
            Self::AnthropicPassthrough => Box::new(AnthropicPassthroughStream::default()),
            Self::GeminiToOpenAi => Box::new(GeminiToOpenAiStream::new("m", 1, true)),
            Self::GeminiToAnthropic => Box::new(ChainedStream {
                first: GeminiToOpenAiStream::new("m", 1, true),
                second: OpenAiToAnthropicStream::new(Some("m".into())),
            }),
        })
    }
}

/// A well-formed upstream stream carrying `texts`, and the byte offset just
/// past its end marker (the earliest point where the answer is whole).
fn upstream_stream(wire: Wire, texts: &[String]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let marker_end;
    match wire {
        Wire::OpenAi => {
            let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                let value = json!({
                    "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
                });
                format!("data: {value}\n\n")
            };
            out.extend(chunk(json!({ "role": "assistant", "content": "" }), None).bytes());
            for text in texts {
                out.extend(chunk(json!({ "content": text }), None).bytes());
            }
            out.extend(chunk(json!({}), Some("stop")).bytes());
            marker_end = out.len();
            let usage = json!({
                "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [],
                "usage": { "prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8 },
            });
            out.extend(format!("data: {usage}\n\n").bytes());
            out.extend_from_slice(OPENAI_DONE);
        }
        Wire::Anthropic => {
            let event =
                |name: &str, value: serde_json::Value| format!("event: {name}\ndata: {value}\n\n");
            out.extend(
                event(
                    "message_start",
                    json!({ "type": "message_start", "message": {
                        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                        "content": [], "usage": { "input_tokens": 3, "output_tokens": 1 },
                    }}),
                )
                .bytes(),
            );
            out.extend(
                event(
                    "content_block_start",
                    json!({ "type": "content_block_start", "index": 0,
                        "content_block": { "type": "text", "text": "" } }),
                )
                .bytes(),
            );
            out.extend(event("ping", json!({ "type": "ping" })).bytes());
            for text in texts {
                out.extend(
                    event(
                        "content_block_delta",
                        json!({ "type": "content_block_delta", "index": 0,
                            "delta": { "type": "text_delta", "text": text } }),
                    )
                    .bytes(),
                );
            }
            out.extend(
                event(
                    "content_block_stop",
                    json!({ "type": "content_block_stop", "index": 0 }),
                )
                .bytes(),
            );
            out.extend(
                event(
                    "message_delta",
                    json!({ "type": "message_delta",
                        "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                        "usage": { "output_tokens": 5 } }),
                )
                .bytes(),
            );
            out.extend(event("message_stop", json!({ "type": "message_stop" })).bytes());
            marker_end = out.len();
        }
        Wire::Gemini => {
            // Google frames its events with CRLF.
            for (index, text) in texts.iter().enumerate() {
                let mut candidate = json!({
                    "content": { "parts": [{ "text": text }], "role": "model" }, "index": 0,
                });
                let mut response = json!({ "responseId": "r1" });
                if index + 1 == texts.len() {
                    candidate["finishReason"] = json!("STOP");
                    response["usageMetadata"] = json!({
                        "promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8,
                    });
                }
                response["candidates"] = json!([candidate]);
                out.extend(format!("data: {response}\r\n\r\n").bytes());
            }
            marker_end = out.len();
        }
    }
    (out, marker_end)
}

/// What reached the client, and whether the stream ended cleanly.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    client_bytes: Vec<u8>,
    complete: bool,
}

/// Runs `chunks` through `pipeline` as the relay does.
fn run<'a>(
    pipeline: Pipeline,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    max_event_bytes: usize,
) -> Outcome {
    let mut splitter = SseSplitter::with_limit(max_event_bytes);
    let mut translator = pipeline.translator();
    let mut native = ChatStreamState::new(false);
    let mut client_bytes = Vec::new();
    let incomplete = |client_bytes| Outcome {
        client_bytes,
        complete: false,
    };
    for chunk in chunks {
        splitter.push(chunk);
        while let Some(event) = splitter.next_event() {
            let data = event_data(&event);
            match translator.as_mut() {
                None => {
                    if data.as_deref().is_none_or(|data| native.on_data(data)) {
                        client_bytes.extend_from_slice(&event);
                    }
                }
                Some(translator) => {
                    let Some(data) = data else { continue };
                    match translator.on_event(event_name(&event), &data) {
                        Ok(events) => events
                            .iter()
                            .for_each(|event| client_bytes.extend_from_slice(event)),
                        Err(_) => return incomplete(client_bytes),
                    }
                }
            }
        }
        if splitter.oversized() {
            return incomplete(client_bytes);
        }
    }
    // The unterminated tail is dropped, as the relay drops it.
    let _ = splitter.take_rest();
    let complete = match translator.as_mut() {
        None => {
            if native.finished && !native.done {
                client_bytes.extend_from_slice(OPENAI_DONE);
                native.done = true;
            }
            native.done
        }
        Some(translator) => {
            translator
                .finish()
                .iter()
                .for_each(|event| client_bytes.extend_from_slice(event));
            translator.is_complete()
        }
    };
    Outcome {
        client_bytes,
        complete,
    }
}

/// `bytes` cut at the given points (taken modulo its length, sorted).
fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        pieces.push(bytes.get(start..point).unwrap_or_default().to_vec());
        start = point;
    }
    pieces
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    // Quotes, backslashes, newlines and non-ASCII exercise escaping and
    // multi-byte characters cut between chunks.
    prop::collection::vec("[a-z \"\\\\\\n\u{e9}\u{4e2d}]{0,12}", 1..6)
}

fn pipeline() -> impl Strategy<Value = Pipeline> {
    prop::sample::select(PIPELINES.to_vec())
}

/// Events split from `chunks`, in order.
fn split_all(chunks: &[Vec<u8>], limit: usize) -> (Vec<Vec<u8>>, bool, Vec<u8>) {
    let mut splitter = SseSplitter::with_limit(limit);
    let mut events = Vec::new();
    for chunk in chunks {
        splitter.push(chunk);
        while let Some(event) = splitter.next_event() {
            events.push(event.to_vec());
        }
    }
    let oversized = splitter.oversized();
    (events, oversized, splitter.take_rest().to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// However the bytes are cut into chunks, the splitter yields the same
    /// events and the same unterminated tail.
    #[test]
    fn splitter_events_do_not_depend_on_chunk_boundaries(
        events in prop::collection::vec(
            ("[a-z:{} \"]{0,20}", prop::sample::select(vec!["\n\n", "\r\n\r\n", "\r\r"])),
            0..8,
        ),
        tail in "[a-z: ]{0,10}",
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (body, end) in &events {
            stream.extend_from_slice(format!("data: {body}{end}").as_bytes());
        }
        stream.extend_from_slice(tail.as_bytes());
        let whole = split_all(&[stream.clone()], usize::MAX);
        let pieces = split_all(&chunked(&stream, &cuts), usize::MAX);
        prop_assert_eq!(&whole, &pieces);
        prop_assert_eq!(whole.0.len(), events.len());
        prop_assert_eq!(whole.0.concat(), stream.get(..stream.len() - tail.len()).unwrap_or_default());
    }

    /// No event longer than the limit is ever returned; one that would be
    /// ends the splitting, whatever the chunking.
    #[test]
    fn splitter_never_returns_an_event_past_its_limit(
        sizes in prop::collection::vec(0usize..200, 1..8),
        limit in 8usize..150,
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for size in &sizes {
            stream.extend_from_slice(b"data: ");
            stream.extend(std::iter::repeat_n(b'x', *size));
            stream.extend_from_slice(b"\n\n");
        }
        let (events, oversized, _) = split_all(&chunked(&stream, &cuts), limit);
        prop_assert!(events.iter().all(|event| event.len() <= limit));
        let first_too_big = sizes.iter().position(|size| size + 8 > limit);
        prop_assert_eq!(oversized, first_too_big.is_some());
        prop_assert_eq!(events.len(), first_too_big.unwrap_or(sizes.len()));
    }

    /// Arbitrary bytes in arbitrary chunks never panic the splitter or the
    /// event readers.
    #[test]
    fn splitter_survives_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        limit in 1usize..600,
    ) {
        let (events, _, rest) = split_all(&chunked(&bytes, &cuts), limit);
        for event in events.iter().chain([&rest]) {
            let _ = event_data(event);
            let _ = event_name(event);
        }
    }

    /// Every translator sends the client the same bytes however the
    /// upstream stream is cut into chunks, and a whole stream ends cleanly.
    #[test]
    fn translators_do_not_depend_on_chunk_boundaries(
        pipeline in pipeline(),
        texts in texts(),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let (stream, _) = upstream_stream(pipeline.wire(), &texts);
        let whole = run(pipeline, [stream.as_slice()], 1 << 20);
        prop_assert!(whole.complete, "{:?}: {}", pipeline, String::from_utf8_lossy(&whole.client_bytes));
        let pieces = chunked(&stream, &cuts);
        let chunked = run(pipeline, pieces.iter().map(Vec::as_slice), 1 << 20);
        prop_assert_eq!(whole, chunked);
    }

    /// A stream cut anywhere before its end marker is never complete; cut
    /// after it, it is. The client never gets a half event.
    #[test]
    fn truncation_never_yields_a_clean_end(
        pipeline in pipeline(),
        texts in texts(),
        cut in any::<usize>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (stream, marker_end) = upstream_stream(pipeline.wire(), &texts);
        let cut = cut % (stream.len() + 1);
        let truncated = stream.get(..cut).unwrap_or_default();
        let outcome = run(pipeline, chunked(truncated, &cuts).iter().map(Vec::as_slice), 1 << 20);
        prop_assert_eq!(outcome.complete, cut >= marker_end, "{:?} cut at {} of {}", pipeline, cut, stream.len());
        // Whatever went out is whole events.
        let sent = outcome.client_bytes;
        prop_assert!(sent.is_empty() || sent.ends_with(b"\n\n"), "{}", String::from_utf8_lossy(&sent));
    }

    /// Arbitrary bytes, as one event's data or as a whole stream, never
    /// panic a translator.
    #[test]
    fn translators_survive_arbitrary_bytes(
        pipeline in pipeline(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let _ = run(pipeline, chunked(&bytes, &cuts).iter().map(Vec::as_slice), 128);
        if let Some(mut translator) = pipeline.translator() {
            let _ = translator.on_event(Some("message_delta"), &bytes);
            let _ = translator.on_event(None, &bytes);
            let _ = translator.finish();
            let _ = translator.usage();
        }
    }
}

/// One 20 MB event, pushed 4 KiB at a time, is split in linear time (a
/// rescan of the whole buffer per chunk was quadratic: minutes for this).
#[test]
fn a_huge_event_is_split_in_linear_time() {
    let started = std::time::Instant::now();
    let mut splitter = SseSplitter::with_limit(usize::MAX);
    let piece = vec![b'x'; 4096];
    splitter.push(b"data: ");
    for _ in 0..5_000 {
        splitter.push(&piece);
        assert!(splitter.next_event().is_none());
    }
    splitter.push(b"\n\n");
    let event = splitter.next_event();
    assert_eq!(event.map(|event| event.len()), Some(6 + 5_000 * 4096 + 2));
    // Generous for a loaded debug build; the quadratic scan needed minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
