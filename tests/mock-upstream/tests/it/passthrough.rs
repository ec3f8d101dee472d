//! Endpoints for the gateway's `/proxy/…` relay: a binary speech answer, the echo of large and
//! chunked request bodies, and a byte stream paced chunk by chunk.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use mock_upstream::{MockUpstream, fnv1a64, speech_bytes, stream_bytes};
use serde_json::json;

use crate::client::{Client, TIMEOUT, TestResult, post, request};

/// A body of `len` bytes that is not UTF-8 and not periodic at any small power of two.
fn big_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + i / 4093) % 256) as u8).collect()
}

#[test]
fn speech_is_64_kib_of_binary_audio() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(
        mock.addr(),
        "/proxy/openai/v1/audio/speech",
        "ok-s",
        &json!({"model": "tts-1", "input": "hello", "voice": "alloy"}),
    )?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("audio/mpeg"));
    assert_eq!(response.body.len(), 65_536);
    assert_eq!(response.body, speech_bytes());
    assert!(std::str::from_utf8(&response.body).is_err());
    assert_eq!(mock.calls("ok-s"), 1);
    Ok(())
}

#[test]
fn echo_describes_a_content_length_request() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = big_body(8 * 1024 * 1024);
    let response = request(
        mock.addr(),
        "PUT",
        "/v1/echo/anything/else?x=1&y=two",
        &[("authorization", "Bearer ok-e"), ("X-Custom", "Value 1")],
        &body,
    )?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json()?;
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["path"], "/v1/echo/anything/else");
    assert_eq!(json["query"], "x=1&y=two");
    assert_eq!(json["headers"]["x-custom"], "Value 1");
    assert_eq!(json["headers"]["authorization"], "Bearer ok-e");
    assert_eq!(json["headers"]["content-length"], "8388608");
    assert_eq!(json["body_len"], 8 * 1024 * 1024);
    assert_eq!(json["body_checksum"], fnv1a64(&body).to_string());

    // Any method, and a body-less GET.
    let response = request(mock.addr(), "GET", "/echo", &[("x-api-key", "ok-e")], b"")?;
    let json = response.json()?;
    assert_eq!(json["method"], "GET");
    assert_eq!(json["query"], "");
    assert_eq!(json["body_len"], 0);
    assert_eq!(json["body_checksum"], fnv1a64(b"").to_string());
    assert_eq!(mock.calls("ok-e"), 2);
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded.first().map(|r| r.body.len()), Some(body.len()));
    Ok(())
}

/// A request with a chunked body cut into pieces of `piece` bytes.
fn chunked_request(target: &str, key: &str, body: &[u8], piece: usize) -> Vec<u8> {
    let mut wire = format!(
        "POST {target} HTTP/1.1\r\nhost: mock\r\nauthorization: Bearer {key}\r\n\
         transfer-encoding: chunked\r\ncontent-type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    for data in body.chunks(piece) {
        wire.extend_from_slice(format!("{:x};ext=1\r\n", data.len()).as_bytes());
        wire.extend_from_slice(data);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\nx-trailer: t\r\n\r\n");
    wire
}

#[test]
fn echo_reads_chunked_bodies_on_a_kept_alive_connection() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    for (len, piece) in [(8 * 1024 * 1024, 65_536), (100_000, 999), (0, 1)] {
        let body = big_body(len);
        client.send_raw(&chunked_request(
            "/proxy/p/v1/echo?k=v",
            "ok-c",
            &body,
            piece,
        ))?;
        let response = client.read_response()?;
        assert_eq!(response.status, 200, "{len}");
        let json = response.json()?;
        assert_eq!(json["body_len"], len);
        assert_eq!(json["body_checksum"], fnv1a64(&body).to_string());
        assert_eq!(json["headers"]["transfer-encoding"], "chunked");
        assert_eq!(mock.last_request().map(|r| r.body), Some(body));
    }
    // The chunked framing did not leak into the next request on the connection.
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    client.send(
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer ok-c")],
        &serde_json::to_vec(&chat)?,
    )?;
    let response = client.read_response()?;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()?["usage"]["prompt_tokens"], 5);
    assert_eq!(mock.calls("ok-c"), 4);
    Ok(())
}

#[test]
fn chunked_bodies_reach_the_json_endpoints_too() -> TestResult {
    let mock = MockUpstream::start()?;
    let body = serde_json::to_vec(
        &json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}),
    )?;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    client.send_raw(&chunked_request("/v1/chat/completions", "ok-j", &body, 7))?;
    let response = client.read_response()?;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()?["usage"]["prompt_tokens"], 5);

    // Broken framing is a 400 and the connection closes.
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    client.send_raw(
        b"POST /v1/echo HTTP/1.1\r\nhost: mock\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    )?;
    let response = client.read_response()?;
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    Ok(())
}

#[test]
fn stream_bytes_relays_paced_binary_chunks() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    client.send(
        "GET",
        "/proxy/p/v1/stream-bytes?n=5",
        &[("x-api-key", "ok-b"), ("x-mock-chunk-delay-ms", "80")],
        b"",
    )?;
    let started = Instant::now();
    let (status, headers) = client.read_head()?;
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("application/octet-stream"));
    assert_eq!(header("transfer-encoding"), Some("chunked"));
    let first = client.read_chunk()?.ok_or("no first chunk")?;
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "the first chunk came before the others"
    );
    let mut chunks = vec![first];
    while let Some(chunk) = client.read_chunk()? {
        chunks.push(chunk);
    }
    assert!(started.elapsed() >= Duration::from_millis(4 * 80));
    assert_eq!(chunks.len(), 5);
    assert!(chunks.iter().all(|c| c.len() == 1024));
    assert_eq!(chunks.concat(), stream_bytes(5));

    // The connection stays usable, and a bad `n` is a 400.
    client.send(
        "GET",
        "/v1/stream-bytes?n=lots",
        &[("x-api-key", "ok-b")],
        b"",
    )?;
    assert_eq!(client.read_response()?.status, 400);
    assert_eq!(mock.calls("ok-b"), 2);
    Ok(())
}

#[test]
fn passthrough_endpoints_obey_the_key_behaviours() -> TestResult {
    let mock = MockUpstream::start()?;
    for (method, path) in [
        ("POST", "/v1/audio/speech"),
        ("POST", "/v1/echo/x"),
        ("GET", "/v1/stream-bytes?n=2"),
    ] {
        let response = request(mock.addr(), method, path, &[("api-key", "r429-p")], b"")?;
        assert_eq!(response.status, 429, "{path}");
        assert_eq!(response.header("retry-after"), Some("2"));
        let response = request(mock.addr(), method, path, &[("api-key", "e500-p")], b"")?;
        assert_eq!(response.status, 500, "{path}");
        let mut client = Client::connect(mock.addr(), TIMEOUT)?;
        client.send(method, path, &[("api-key", "reset-p")], b"")?;
        assert_eq!(
            client.read_to_end().kind(),
            ErrorKind::ConnectionReset,
            "{path}"
        );
    }
    assert_eq!(mock.calls("r429-p"), 3);
    assert_eq!(mock.calls("reset-p"), 3);

    // streamdie cuts the byte stream after its first chunk.
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    client.send(
        "GET",
        "/v1/stream-bytes?n=8",
        &[("api-key", "streamdie-p")],
        b"",
    )?;
    assert_eq!(client.read_head()?.0, 200);
    assert_eq!(client.read_chunk()?.map(|c| c.len()), Some(1024));
    let error = client.read_chunk().err().ok_or("the stream went on")?;
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    Ok(())
}
