//! A client that leaves cancels its upstream request at once
//! (`upstream.cancel_on_client_disconnect`, on by default), on both backends.
//!
//! The clients here speak raw HTTP/1.1 over a socket so that the way they
//! leave is exact: closing a socket with nothing unread sends a FIN, which
//! actix-http by default takes as a half-close and ignores until the handler
//! ends; the setting turns half-closes off. The last test shows the old
//! behaviour with the setting off.

pub mod common;

use anyhow::Context;
use awc::http::Method;
use common::{TestGateway, chat_body, mock_provider, stream_chat_body};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchyard::config::{Backend, Settings};
use switchyard::db::RequestLog;

on_both_backends!(
    a_client_leaving_a_hung_request_is_noticed_at_once,
    a_client_half_closing_a_silent_stream_is_noticed_at_once,
    without_cancelling_a_leaving_client_waits_for_the_upstream,
);

async fn gateway(
    backend: Backend,
    key: &str,
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, |settings, mock| {
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &[key]);
        provider.retry.max_attempts = 1;
        settings.providers = vec![provider];
        settings.upstream.first_byte_timeout = Duration::from_secs(30);
        settings.upstream.stream_idle_timeout = Duration::from_secs(30);
        configure(settings);
    })
    .await
}

/// Sends a chat request on a fresh connection and returns the socket.
fn send_raw(addr: SocketAddr, token: &str, body: &Value) -> anyhow::Result<TcpStream> {
    let body = serde_json::to_vec(body)?;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    Ok(stream)
}

/// Polls the database until one usage row exists: the usage actor writes it
/// on its own `flush_interval` (200 ms in tests).
async fn wait_for_row(gw: &TestGateway, deadline: Duration) -> anyhow::Result<RequestLog> {
    let until = Instant::now() + deadline;
    loop {
        let mut logs = gw.gateway()?.db.list_request_logs(10, 0).await?;
        if let Some(row) = logs.pop() {
            anyhow::ensure!(logs.is_empty(), "more than one row");
            return Ok(row);
        }
        anyhow::ensure!(Instant::now() < until, "no usage row within {deadline:?}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the health route until the key's lease has been given back.
async fn wait_until_idle(gw: &TestGateway) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, answer) = gw
            .admin(Method::GET, "/admin/providers/mock/health", None)
            .await?;
        let in_flight = answer.pointer("/keys/0/in_flight").cloned();
        if in_flight == Some(json!(0)) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the lease was never released: {answer}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_client_leaving_a_hung_request_is_noticed_at_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, "hang-leave", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "leaver" })).await?;
    let socket = send_raw(gw.gateway()?.addr, &token, &chat_body("mock-gpt", "hi"))?;
    // The upstream has the request and will never answer.
    gw.wait_for_upstream_calls(1).await?;
    let left = Instant::now();
    drop(socket);
    let row = wait_for_row(&gw, Duration::from_secs(10)).await?;
    // Noticed at once, not at the 30 s first-byte timeout.
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "{:?}",
        left.elapsed()
    );
    assert_eq!(
        (
            row.status,
            row.error_class.as_deref(),
            row.attempts,
            row.stream
        ),
        (499, Some("client_disconnected"), 1, false)
    );
    // The handler was dropped with its upstream call: the lease came back.
    wait_until_idle(&gw).await?;
    assert_eq!(gw.mock.calls("hang-leave"), 1);
    gw.stop().await
}

async fn a_client_half_closing_a_silent_stream_is_noticed_at_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, "streamhang-half", |_| {}).await?;
    let token = gw.create_token(json!({ "name": "leaver" })).await?;
    let body = stream_chat_body("mock-gpt", "hi");
    let mut socket = send_raw(gw.gateway()?.addr, &token, &body)?;
    // Read until the first content delta has arrived; then the upstream is silent.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("\"content\":\"one") {
        let n = socket.read(&mut buffer).context("reading the stream")?;
        anyhow::ensure!(
            n > 0,
            "closed early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(buffer.get(..n).unwrap_or_default());
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    // Half-close: the client is done sending (FIN) but still reads.
    let left = Instant::now();
    socket.shutdown(Shutdown::Write)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let closed = loop {
        match socket.read(&mut buffer) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the gateway kept the connection open");
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "{:?}",
        left.elapsed()
    );
    let row = wait_for_row(&gw, Duration::from_secs(10)).await?;
    assert_eq!(
        (
            row.status,
            row.error_class.as_deref(),
            row.attempts,
            row.stream
        ),
        (499, Some("client_disconnected"), 1, true)
    );
    wait_until_idle(&gw).await?;
    assert_eq!(gw.mock.calls("streamhang-half"), 1);
    gw.stop().await
}

/// With the setting off, actix's default applies: the half-closed client is
/// served to the end, here the first-byte timeout.
async fn without_cancelling_a_leaving_client_waits_for_the_upstream(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend, "hang-stay", |settings| {
        settings.upstream.cancel_on_client_disconnect = false;
        settings.upstream.first_byte_timeout = Duration::from_millis(500);
    })
    .await?;
    let token = gw.create_token(json!({ "name": "leaver" })).await?;
    let sent = Instant::now();
    let socket = send_raw(gw.gateway()?.addr, &token, &chat_body("mock-gpt", "hi"))?;
    gw.wait_for_upstream_calls(1).await?;
    drop(socket);
    let row = wait_for_row(&gw, Duration::from_secs(10)).await?;
    assert!(
        sent.elapsed() >= Duration::from_millis(500),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(
        (row.status, row.error_class.as_deref(), row.attempts),
        (504, Some("upstream_timeout"), 1)
    );
    assert_eq!(gw.mock.calls("hang-stay"), 1);
    gw.stop().await
}
