//! Relaying an upstream SSE stream to the client, event by event.
//!
//! The relay forwards each complete event as soon as it arrives (never
//! buffering the whole answer), reads the usage chunk on the way (hiding it
//! from clients that did not ask for it), enforces the idle timeout, and
//! settles the lease and the usage record exactly once: at the end of the
//! stream, on an upstream failure (after sending an error event, so the cut
//! never looks like a clean end), or when the client goes away (`Drop`).

use super::limits::ConcurrencySlot;
use super::meter::{self, Meter};
use super::upstream::{StreamStart, UpstreamBody};
use crate::providers::openai::{ChatStreamState, stream_error_event};
use crate::providers::sse::{SseSplitter, event_data};
use actix_web::web::Bytes;
use futures_util::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_actors::{Failure, Lease, Outcome};
use tokio::time::{Instant, Sleep};

pub struct ChatStreamRelay {
    upstream: UpstreamBody,
    splitter: SseSplitter,
    state: ChatStreamState,
    out: VecDeque<Bytes>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
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
        hide_usage_chunk: bool,
        idle_timeout: Duration,
        slot: ConcurrencySlot,
    ) -> Self {
        meter.first_byte();
        let mut relay = Self {
            upstream: start.rest,
            splitter: SseSplitter::default(),
            state: ChatStreamState::new(hide_usage_chunk),
            out: VecDeque::new(),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
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
        self.splitter.push(chunk);
        while let Some(event) = self.splitter.next_event() {
            let forward = match event_data(&event) {
                Some(data) => self.state.on_data(&data),
                None => true,
            };
            if forward {
                self.out.push_back(event);
            }
        }
    }

    /// The upstream ended cleanly.
    fn complete(&mut self) {
        let rest = self.splitter.take_rest();
        if !rest.is_empty() {
            let mut terminated = rest.to_vec();
            terminated.extend_from_slice(b"\n\n");
            self.ingest(&terminated);
        }
        if !self.state.done && self.state.content_events == 0 {
            return self.fail(
                "upstream ended the stream without content",
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
            meter.succeed(200, self.state.usage);
        }
        self.finished = true;
    }

    /// The upstream broke mid-stream: tell the client in-band, then end.
    fn fail(&mut self, message: &str, class: &str, failure: Failure) {
        self.out.push_back(stream_error_event(message, class));
        if let Some(lease) = self.lease.take() {
            lease.fail(failure);
        }
        if let Some(meter) = self.meter.take() {
            meter.interrupted(class, self.state.usage);
        }
        self.finished = true;
    }
}

impl Stream for ChatStreamRelay {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.finished {
                this.slot = None;
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let deadline = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
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
                        this.fail(
                            "upstream stream stalled",
                            "stream_idle_timeout",
                            Failure::Timeout,
                        );
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for ChatStreamRelay {
    fn drop(&mut self) {
        // The client went away mid-stream: dropping the upstream body cancels
        // the upstream request; keep the usage learned so far.
        if let Some(meter) = self.meter.take() {
            meter::drop_with_usage(meter, self.state.usage);
        }
    }
}

use std::future::Future;
