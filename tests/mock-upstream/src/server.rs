//! The accept loop and the per-connection HTTP/1.1 loop (keep-alive; `Content-Length` and
//! `Transfer-Encoding: chunked` request bodies).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::behaviour::{HUGE_EVENT_BYTES, request_key};
use crate::http::{self, Chunked, ChunkedBody, Head, MAX_BODY_BYTES, MAX_HEAD_BYTES, Parsed};
use crate::openai;
use crate::router::{self, Action, StreamEnd};
use crate::state::{RecordedRequest, State};

/// Serves until `shutdown` fires (or its sender is dropped).
pub(crate) async fn run(
    listener: std::net::TcpListener,
    state: Arc<State>,
    shutdown: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("mock-upstream: cannot register the listener: {error}");
            return;
        }
    };
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, Arc::clone(&state)));
                }
                // Out of file descriptors or a connection aborted before accept: back off a
                // little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::select! {
        () = accept => {}
        _ = shutdown => {}
    }
}

/// Reads more bytes; false on EOF or error.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> bool {
    buf.reserve(want.clamp(4096, 1 << 20));
    matches!(stream.read_buf(buf).await, Ok(n) if n > 0)
}

/// Writes one HTTP chunk and flushes it; false when the peer is gone.
async fn send_chunk(stream: &mut TcpStream, data: &[u8]) -> bool {
    stream.write_all(&http::chunk(data)).await.is_ok() && stream.flush().await.is_ok()
}

/// Writes `data` one byte per HTTP chunk, pausing after every few bytes so
/// that the reader sees them in separate reads.
async fn drip(stream: &mut TcpStream, data: &[u8]) -> bool {
    for (i, byte) in data.iter().enumerate() {
        if !send_chunk(stream, std::slice::from_ref(byte)).await {
            return false;
        }
        if i % 8 == 7 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    true
}

/// One event of `HUGE_EVENT_BYTES` that never reaches its blank line.
async fn huge_event(stream: &mut TcpStream) -> bool {
    const PIECE: usize = 64 * 1024;
    if !send_chunk(stream, b"data: {\"pad\":\"").await {
        return false;
    }
    let piece = vec![b'x'; PIECE];
    for _ in 0..HUGE_EVENT_BYTES / PIECE {
        if !send_chunk(stream, &piece).await {
            return false;
        }
    }
    true
}

/// Answers a protocol error with `status` and closes.
async fn refuse(stream: &mut TcpStream, status: u16, message: &str) {
    let body = serde_json::to_vec(&openai::error_body(message, "invalid_request_error", None))
        .unwrap_or_default();
    let response = http::response(status, "application/json", &[], &body, false);
    // The connection is closed either way.
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

/// Holds the socket, discarding input, until the peer closes it (or the runtime stops).
async fn hang(mut stream: TcpStream) {
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// Closes with a TCP RST: `SO_LINGER` 0, then drop.
fn reset(stream: TcpStream) {
    // Without the option the close is a clean FIN, still a failure for the client.
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Reads a `Transfer-Encoding: chunked` body that follows `head` in `buf`, then drops the request
/// from `buf` (pipelined bytes after it stay). `Err(Some)` is a status and message to refuse with;
/// `Err(None)` means the peer went away.
async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &Head,
) -> Result<Vec<u8>, Option<(u16, &'static str)>> {
    let mut decoder = ChunkedBody::new(head.len);
    let mut continued = false;
    loop {
        match decoder.advance(buf) {
            Chunked::Done(end) => {
                buf.drain(..end);
                return Ok(decoder.body);
            }
            Chunked::Invalid => return Err(Some((400, "malformed chunked request body"))),
            Chunked::TooLarge => return Err(Some((413, "request body too large"))),
            Chunked::NeedMore => {}
        }
        if !continued && head.expects_continue() {
            continued = true;
            stream.write_all(http::CONTINUE).await.map_err(|_| None)?;
        }
        if !read_more(stream, buf, decoder.wanted()).await {
            return Err(None);
        }
    }
}

fn recorded(head: &Head, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        method: head.method.clone(),
        path: head.target.clone(),
        headers: head.headers.clone(),
        body: body.to_vec(),
    }
}

async fn connection(mut stream: TcpStream, state: Arc<State>) {
    // Stream chunks must leave one by one, and small answers must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        let head = loop {
            match http::parse_head(&buf) {
                Parsed::Complete(head) => break head,
                Parsed::Invalid(status) => {
                    return refuse(&mut stream, status, "malformed request head").await;
                }
                Parsed::Partial => {}
            }
            if buf.len() > MAX_HEAD_BYTES {
                return refuse(&mut stream, 431, "request head too large").await;
            }
            if !read_more(&mut stream, &mut buf, 0).await {
                return;
            }
        };
        let body = if head.is_chunked() {
            match read_chunked(&mut stream, &mut buf, &head).await {
                Ok(body) => body,
                Err(Some((status, message))) => {
                    return refuse(&mut stream, status, message).await;
                }
                Err(None) => return,
            }
        } else {
            let Some(body_len) = head.content_length() else {
                return refuse(&mut stream, 400, "invalid content-length").await;
            };
            if body_len > MAX_BODY_BYTES {
                return refuse(&mut stream, 413, "request body too large").await;
            }
            let total = head.len + body_len;
            if buf.len() < total
                && head.expects_continue()
                && stream.write_all(http::CONTINUE).await.is_err()
            {
                return;
            }
            while buf.len() < total {
                let missing = total - buf.len();
                if !read_more(&mut stream, &mut buf, missing).await {
                    return;
                }
            }
            let body = buf
                .get(head.len..total)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            buf.drain(..total);
            body
        };
        let keep_alive = head.keep_alive();
        let key = request_key(&head);
        if state.records() {
            state.record(recorded(&head, &body));
        }
        state.count(key);
        let plan = router::plan(&head, &body, key, keep_alive);

        if let Some(delay) = plan.first_byte_delay {
            tokio::time::sleep(delay).await;
        }
        match plan.action {
            Action::Write(response) => {
                if stream.write_all(&response).await.is_err() {
                    return;
                }
            }
            Action::Stream {
                content_type,
                events,
                end,
            } => {
                if stream
                    .write_all(&http::stream_head(content_type, keep_alive))
                    .await
                    .is_err()
                {
                    return;
                }
                let cut = end.whole_events(events.len());
                for (i, event) in events.iter().take(cut).enumerate() {
                    if i > 0
                        && let Some(delay) = plan.chunk_delay
                    {
                        tokio::time::sleep(delay).await;
                    }
                    let sent = if plan.drip {
                        drip(&mut stream, event).await
                    } else {
                        send_chunk(&mut stream, event).await
                    };
                    if !sent {
                        return;
                    }
                }
                let tail_sent = match end {
                    StreamEnd::ResetAfter(_) => return reset(stream),
                    StreamEnd::HangAfter(_) => return hang(stream).await,
                    StreamEnd::Finish | StreamEnd::CloseAfter(_) => true,
                    StreamEnd::CloseMidEvent(n) => match events.get(n) {
                        Some(event) => {
                            send_chunk(&mut stream, event.get(..event.len() / 2).unwrap_or(event))
                                .await
                        }
                        None => true,
                    },
                    StreamEnd::HugeEventAfter(_) => huge_event(&mut stream).await,
                };
                if !tail_sent || stream.write_all(http::LAST_CHUNK).await.is_err() {
                    return;
                }
            }
            Action::Hang => return hang(stream).await,
            Action::Reset => return reset(stream),
        }
        if !keep_alive {
            let _ = stream.shutdown().await;
            return;
        }
    }
}
