//! Relaying an upstream SSE stream to the client, event by event.
//!
//! The relay forwards each complete event as soon as it arrives (never
//! buffering the whole answer; events that arrived together go out in one
//! piece), reads the usage chunk on the way (hiding it
//! from clients that did not ask for it), enforces the idle timeout, and
//! settles the lease and the usage record exactly once: at the end of the
//! stream, on an upstream failure (after sending an error event, so the cut
//! never looks like a clean end), or when the client goes away (`Drop`).
//!
//! Only the protocol's end marker finishes a stream (`[DONE]` or a
//! `finish_reason` for OpenAI, `message_stop` for Anthropic, a
//! `finishReason` for Gemini): an upstream that closes cleanly without it
//! was cut, and the client gets the error event. An unterminated trailing
//! event is never forwarded, and one event larger than
//! `upstream.max_stream_event_bytes` ends the stream.
//!
//! When a graceful stop runs out of time (`server.shutdown_timeout`), each
//! open relay ends its stream with the error event `server_shutting_down`
//! and records the request as cut by the server (see [`crate::http::shutdown`]).

use crate::gateway::AppState;
use crate::gateway::failover::{StreamStart, UpstreamBody};
use crate::gateway::meter::{self, Meter};
use crate::gateway::slots::ConcurrencySlot;
use crate::providers::exchange::ClientFormat;
use crate::providers::openai::{ChatStreamState, Usage};
use crate::providers::sse::{SseSplitter, event_data, event_name};
use crate::providers::translate::{OPENAI_DONE, StreamTranslator};
use crate::providers::wire_error::{SERVER_SHUTTING_DOWN, STREAM_IDLE_TIMEOUT};
use actix_web::web::{Bytes, BytesMut};
use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_actors::{Failure, Lease, Outcome};
use tokio::time::{Instant, Sleep};

/// How upstream events become client events.
pub enum StreamMode {
    /// OpenAI to OpenAI: events pass through as they are.
    Native(ChatStreamState),
    /// Another wire or client format: each event goes through a translator.
    Translated {
        translator: Box<dyn StreamTranslator>,
        client: ClientFormat,
    },
}

impl StreamMode {
    fn usage(&self) -> Option<Usage> {
        match self {
            Self::Native(state) => state.usage,
            Self::Translated { translator, .. } => translator.usage(),
        }
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        match self {
            Self::Native(_) => ClientFormat::OpenAi.stream_error_event(message, code),
            Self::Translated { translator, client } => translator
                .error_event(message, code)
                .unwrap_or_else(|| client.stream_error_event(message, code)),
        }
    }
}

/// The settings a relay reads once, at its start.
pub struct RelayLimits {
    /// Longest silence between two upstream chunks.
    pub idle_timeout: Duration,
    /// Largest single upstream event.
    pub max_event_bytes: usize,
    /// Resolves when the server cuts open streams at shutdown.
    pub cutoff: Pin<Box<dyn Future<Output = ()>>>,
}

impl RelayLimits {
    pub fn of(state: &AppState) -> Self {
        Self {
            idle_timeout: state.settings.upstream.stream_idle_timeout,
            max_event_bytes: state.settings.upstream.max_stream_event_bytes,
            cutoff: state.stream_cutoff.wait(),
        }
    }
}

/// Client bytes the relay holds back while the upstream has more ready:
/// past this much they go out even so.
const MAX_HELD_OUT_BYTES: usize = 32 * 1024;

pub struct ChatStreamRelay {
    upstream: UpstreamBody,
    splitter: SseSplitter,
    mode: StreamMode,
    /// The client's bytes of every event that arrived since the relay last
    /// yielded, joined: they go out as one piece when the upstream has
    /// nothing more ready. Each piece the relay yields costs actix a chunk
    /// of its own (a size line formatted, a turn of its dispatcher), and
    /// the upstream's events arrive one decoded chunk each, so yielding
    /// event by event cost that twenty times for a 20-chunk answer
    /// (bench/README.md). An event still goes out before the relay waits
    /// for the next: joining only ever spans what had already arrived.
    out: BytesMut,
    idle_timeout: Duration,
    /// Fires at the idle deadline it was last set to; when it does, the
    /// deadline is counted again from `last_chunk` and the timer re-armed
    /// if a chunk came since (resetting it for every chunk cost ~1% of a
    /// relayed stream's CPU in tokio's timer wheel, bench/README.md).
    idle: Pin<Box<Sleep>>,
    last_chunk: Instant,
    cutoff: Pin<Box<dyn Future<Output = ()>>>,
    lease: Option<Lease>,
    meter: Option<Meter>,
    attempt_started: std::time::Instant,
    finished: bool,
    /// Held until the stream ends or is dropped (`server.max_concurrent_requests`).
    slot: Option<ConcurrencySlot>,
}

impl ChatStreamRelay {
    pub fn new(
        start: StreamStart,
        mut meter: Meter,
        mode: StreamMode,
        limits: RelayLimits,
        slot: ConcurrencySlot,
    ) -> Self {
        let idle_timeout = limits.idle_timeout;
        meter.first_byte();
        let mut relay = Self {
            upstream: start.rest,
            splitter: SseSplitter::with_limit(limits.max_event_bytes),
            mode,
            out: BytesMut::new(),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            last_chunk: Instant::now(),
            cutoff: limits.cutoff,
            lease: Some(start.lease),
            meter: Some(meter),
            attempt_started: start.attempt_started,
            finished: false,
            slot: Some(slot),
        };
        relay.ingest(&start.first_chunk);
        relay
    }

    fn ingest(&mut self, chunk: &[u8]) {
        if self.finished {
            return;
        }
        self.splitter.push(chunk);
        while let Some(event) = self.splitter.next_event_mut() {
            // Comments and keep-alives carry no data.
            let Some(data) = event_data(&event) else {
                if let StreamMode::Native(_) = self.mode {
                    self.out.unsplit(event);
                }
                continue;
            };
            // The event's text, for the completion estimate if no usage
            // comes: from the parse the usage search or the translator made
            // of it, else counted later, if at all. A native event itself
            // goes on (but for the usage chunk the client did not ask for);
            // a translated one's translation went on already.
            let (counted, pass_on) = match &mut self.mode {
                StreamMode::Native(state) => {
                    let pass_on = state.on_data(&data);
                    (state.take_text_chars(), pass_on)
                }
                StreamMode::Translated { translator, .. } => {
                    match translator.on_event(event_name(&event), &data) {
                        Ok(translated) => append_all(&mut self.out, translated),
                        Err(error) => {
                            let message = error.to_string();
                            return self.fail(
                                &message,
                                "stream_untranslatable",
                                Failure::ServerError,
                            );
                        }
                    }
                    (translator.take_text_chars(), false)
                }
            };
            if let Some(meter) = self.meter.as_mut() {
                match counted {
                    Some(chars) => meter.add_completion_chars(chars),
                    None => meter.add_completion_event(&data),
                }
            }
            if pass_on {
                // Without a copy when it follows the last one passed on in
                // the splitter's buffer, as it does unless an event between
                // them was held back.
                self.out.unsplit(event);
            }
        }
        if self.splitter.oversized() {
            self.fail(
                "an upstream stream event exceeded upstream.max_stream_event_bytes",
                "stream_event_too_large",
                Failure::ServerError,
            );
        }
    }

    /// The upstream closed the connection cleanly: finished only if the
    /// protocol's end marker came.
    fn complete(&mut self) {
        if self.finished {
            return;
        }
        // An event without its blank line was cut: it is never forwarded.
        drop(self.splitter.take_rest());
        let complete = match &mut self.mode {
            StreamMode::Native(state) => {
                if state.finished && !state.done {
                    // Some servers close after the finish without `[DONE]`;
                    // OpenAI clients expect it.
                    state.done = true;
                    self.out.extend_from_slice(OPENAI_DONE);
                }
                state.done
            }
            StreamMode::Translated { translator, .. } => {
                append_all(&mut self.out, translator.finish());
                translator.is_complete()
            }
        };
        if !complete {
            return self.fail(
                "upstream ended the stream without finishing the answer",
                "stream_interrupted",
                Failure::ServerError,
            );
        }
        if let Some(lease) = self.lease.take() {
            lease.finish(Outcome::Success {
                latency: self.attempt_started.elapsed(),
            });
        }
        if let Some(meter) = self.meter.take() {
            meter.succeed(200, self.mode.usage());
        }
        self.finished = true;
    }

    /// The server is stopping and the stream's time is up: tell the client
    /// in-band and end. Not the key's fault: the lease is dropped
    /// (abandoned), not failed.
    fn cut_by_shutdown(&mut self) {
        let event = self.mode.error_event(
            "the server is shutting down; the answer was cut",
            SERVER_SHUTTING_DOWN,
        );
        self.out.extend_from_slice(&event);
        self.lease = None;
        if let Some(meter) = self.meter.take() {
            meter.interrupted(SERVER_SHUTTING_DOWN, self.mode.usage());
        }
        self.finished = true;
    }

    /// The upstream broke mid-stream: tell the client in-band, then end.
    fn fail(&mut self, message: &str, class: &str, failure: Failure) {
        let event = self.mode.error_event(message, class);
        self.out.extend_from_slice(&event);
        if let Some(lease) = self.lease.take() {
            lease.fail(failure);
        }
        if let Some(meter) = self.meter.take() {
            meter.interrupted(class, self.mode.usage());
        }
        self.finished = true;
    }
}

/// Appends a translator's events to the client's bytes.
fn append_all(out: &mut BytesMut, events: Vec<Bytes>) {
    for event in events {
        out.extend_from_slice(&event);
    }
}

impl Stream for ChatStreamRelay {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // Once a call, not once an upstream chunk: polling it registers the
        // task's waker again each time.
        if !this.finished && this.cutoff.as_mut().poll(cx).is_ready() {
            this.cut_by_shutdown();
        }
        // Everything the upstream has ready, then out in one piece.
        while !this.finished && this.out.len() < MAX_HELD_OUT_BYTES {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.last_chunk = Instant::now();
                    this.ingest(&chunk);
                }
                Poll::Ready(Some(Err(_))) => {
                    this.fail(
                        "upstream connection broke mid-stream",
                        "stream_interrupted",
                        Failure::Connection,
                    );
                }
                Poll::Ready(None) => this.complete(),
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        let deadline = this.last_chunk + this.idle_timeout;
                        if deadline > Instant::now() {
                            // A chunk came after the timer was set.
                            this.idle.as_mut().reset(deadline);
                            continue;
                        }
                        this.fail(
                            "upstream stream stalled",
                            STREAM_IDLE_TIMEOUT,
                            Failure::Timeout,
                        );
                        continue;
                    }
                    break;
                }
            }
        }
        if !this.out.is_empty() {
            return Poll::Ready(Some(Ok(this.out.split().freeze())));
        }
        if this.finished {
            this.slot = None;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Drop for ChatStreamRelay {
    fn drop(&mut self) {
        // The client went away mid-stream: dropping the upstream body cancels
        // the upstream request; keep the usage learned so far.
        if let Some(meter) = self.meter.take() {
            meter::drop_with_usage(meter, self.mode.usage());
        }
    }
}
