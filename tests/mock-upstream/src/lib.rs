//! A scriptable fake AI provider for Switchyard's integration tests and load benchmark.
//!
//! The server is a raw `tokio::net::TcpListener` with `httparse` for HTTP/1.1 request parsing, so
//! it controls the wire completely: it can answer in one write, stream SSE chunk by chunk, hang,
//! or reset the connection. It runs on its own thread with its own multi-threaded tokio runtime,
//! so it works the same under an actix-rt `System`, a `#[tokio::test]` or plain threads.
//!
//! Behaviour is chosen per request by the prefix of the API key (see [`Behaviour`]), so one key
//! pool can mix good and bad keys. The key is read from `Authorization: Bearer <key>`, else
//! `x-api-key`, else `api-key`, else `x-goog-api-key`, else the `key` query parameter.
//!
//! | prefix | answer |
//! |---|---|
//! | `ok-`, other, none | the normal answer |
//! | `r429-` / `r429long-` | 429 with `Retry-After: 2` / `600` |
//! | `e500-` / `e401-` | 500 / 401 |
//! | `hang-` | never answers |
//! | `reset-` | TCP reset, no bytes |
//! | `badjson-` | 200 with truncated JSON |
//! | `slow<MS>-` | the normal answer after MS ms |
//! | `streamdie-` / `streamhang-` | a stream up to its first content event, then reset / stall |
//! | `roledie-` | a stream's events before the first content, then reset |
//! | `nousage-` | the normal answer without any usage (`usage`, `usageMetadata`) |
//! | `cached-` | the normal answer, its usage with prompt-cache reads/writes and reasoning tokens |
//! | `truncclean-` | a stream up to its first content event, then a clean end without end marker |
//! | `truncmid-` | like `truncclean-`, plus the first half of the next event |
//! | `hugeevent-` | a stream up to its first content event, then a 4 MiB event with no blank line |
//! | `drip-` | the normal stream, one byte per chunk with short pauses |
//! | `textonly-` | the normal text answer even when the request offers tools |
//! | `chunks<N>-` | a text stream with N content chunks (the first word repeated), for the benchmark |
//! | `extraunits-` | media answers claim more than asked: extra images, absurd rerank search units |
//! | `nopayload-` | media answers are a 200 without their payload (no `data`, no `results`, JSON for audio) |
//!
//! Errors come in the shape the path's clients expect: OpenAI's `{"error":{message,type,…}}`,
//! Anthropic's `{"type":"error",…}` on `…/messages`, Google's
//! `{"error":{code,message,status}}` on Gemini paths.
//!
//! Endpoints match on the path's suffix (any prefix, query string ignored):
//! - OpenAI: `POST …/chat/completions`, `POST …/completions`, `POST …/embeddings`,
//!   `GET …/models`; the Responses API: `POST …/responses` (whole or streamed, a function call
//!   when `tools` are offered), `GET`/`DELETE …/responses/{id}` for the ids it made
//!   (`resp_mock_…`; it stores nothing).
//! - Anthropic: `POST …/messages` and `POST …/messages/count_tokens`.
//! - Gemini (v1beta): `POST …/models/{model}:generateContent`,
//!   `POST …/models/{model}:streamGenerateContent` (SSE, as with `?alt=sse`),
//!   `POST …/models/{model}:countTokens` (`{"totalTokens": P}`), and `GET …/models`
//!   when the path contains `/v1beta/` (Google's model list).
//! - Media (`media` module): `POST …/images/generations` (`n` entries, gpt-image-style token
//!   usage) and `POST …/rerank` (Cohere's shape, Jina's for models named `jina…`).
//! - Passthrough checks for the gateway's `/proxy/…` relay: `POST …/audio/speech` (binary
//!   `audio/mpeg`, [`speech_bytes`]), any method on a path with an `echo` segment (a JSON
//!   description of the request with the body's length and [`fnv1a64`]), and
//!   `GET …/stream-bytes?n=K` (K chunks of 1 KiB of [`stream_bytes`]).
//! - Uploads (`multipart/form-data`): `POST …/audio/transcriptions`, `POST …/audio/translations`
//!   and `POST …/images/edits`, answered from what the form holds ([`uploads`]).
//!
//! Anything else is a 404. Request bodies may use `Content-Length` or `Transfer-Encoding:
//! chunked`, up to 64 MiB. Stream answers are paced by the `x-mock-chunk-delay-ms` request header
//! (milliseconds between chunks).
//!
//! Usage is deterministic so tests can assert exact figures: the prompt count `P` is the total
//! byte length of the request's text (chat: every string `content` of `messages`, plus the `text`
//! of text parts when `content` is a list; Anthropic: the same plus `system`; Gemini: the `text`
//! of every part of `contents` plus `systemInstruction`; legacy completions: `prompt`;
//! embeddings: `input`), and the completion is always the five words `one two three four five`,
//! counted as 5 tokens.

mod anthropic;
mod base64;
mod behaviour;
mod gemini;
mod http;
mod media;
mod openai;
mod passthrough;
mod responses;
mod router;
mod server;
mod state;
pub mod uploads;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use behaviour::Behaviour;
pub use media::{ABSURD_SEARCH_UNITS, EXTRA_IMAGES, IMAGE_OUTPUT_TOKENS};
pub use passthrough::{
    MAX_STREAM_CHUNKS, SPEECH_BYTES, STREAM_CHUNK_BYTES, fnv1a64, speech_bytes, stream_bytes,
};
pub use state::RecordedRequest;

use state::State;

/// How many requests [`MockUpstream::requests`] keeps (the oldest are dropped first).
pub const RECORDED_REQUESTS_LIMIT: usize = 1_000;

/// Settings for [`MockUpstream::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Tokio worker threads of the mock's runtime.
    pub worker_threads: usize,
    /// Keep a copy of every request (method, path, headers, body) for [`MockUpstream::requests`].
    /// The benchmark turns this off; call counts are always kept.
    pub record_requests: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            worker_threads: 2,
            record_requests: true,
        }
    }
}

/// A running mock provider. Dropping it stops the server and closes every open connection.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts a mock on a free port of 127.0.0.1.
    pub fn start() -> std::io::Result<MockUpstream> {
        Self::start_with(Options::default())
    }

    /// Starts a mock on `addr`.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<MockUpstream> {
        Self::start_with(Options {
            addr,
            ..Options::default()
        })
    }

    /// Starts a mock with explicit [`Options`]. Binding and runtime errors are returned here;
    /// once this returns, the port accepts connections.
    pub fn start_with(options: Options) -> std::io::Result<MockUpstream> {
        // Bind on the caller's thread so errors surface synchronously and the address is known
        // before the first client connects (the kernel queues connections until accept runs).
        let listener = TcpListener::bind(options.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.worker_threads.max(1))
            .thread_name("mock-upstream")
            .enable_io()
            .enable_time()
            .build()?;
        let state = Arc::new(State::new(options.record_requests));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let server_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("mock-upstream-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(server::run(listener, server_state, shutdown_rx));
                // Dropping the tasks closes hung and idle connections right away.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(MockUpstream {
            addr,
            state,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL a provider entry points at.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received with this key, on any path (counted when the request has been read,
    /// before any answer, so a hung or reset request counts too).
    pub fn calls(&self, key: &str) -> u64 {
        self.state.calls(key)
    }

    /// All requests received, with or without a key.
    pub fn total_calls(&self) -> u64 {
        self.state.total_calls()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.last_request()
    }

    /// The last [`RECORDED_REQUESTS_LIMIT`] requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Forgets all call counts and recorded requests.
    pub fn reset_counts(&self) {
        self.state.reset();
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the server already stopped; nothing left to signal.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has nothing left to clean up; don't panic in drop.
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
