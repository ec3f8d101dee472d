//! Failure modes chosen by key prefix, observed from the client side of the socket.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use serde_json::{Value, json};

use crate::client::{Client, TIMEOUT, TestResult, post, request};

const SHORT: Duration = Duration::from_millis(300);

fn chat(stream: bool) -> Value {
    json!({"model": "mock-gpt", "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
}

fn send_chat(client: &mut Client, key: &str, stream: bool) -> std::io::Result<()> {
    let auth = format!("Bearer {key}");
    client.send(
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &serde_json::to_vec(&chat(stream))?,
    )
}

fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[test]
fn r429_is_rate_limited_with_retry_after() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(mock.addr(), "/v1/chat/completions", "r429-a", &chat(false))?;
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("2"));
    let json = response.json()?;
    assert_eq!(json["error"]["code"], "rate_limit_exceeded");
    assert!(json["error"]["message"].is_string());
    // Every route answers the key's behaviour.
    let models = request(
        mock.addr(),
        "GET",
        "/v1/models",
        &[("authorization", "Bearer r429-a")],
        b"",
    )?;
    assert_eq!(models.status, 429);
    Ok(())
}

#[test]
fn e500_and_e401_answer_openai_errors() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(mock.addr(), "/v1/chat/completions", "e500-a", &chat(false))?;
    assert_eq!(response.status, 500);
    assert_eq!(response.json()?["error"]["type"], "server_error");
    let response = post(mock.addr(), "/v1/chat/completions", "e401-a", &chat(false))?;
    assert_eq!(response.status, 401);
    assert_eq!(response.json()?["error"]["code"], "invalid_api_key");
    Ok(())
}

#[test]
fn reset_key_resets_the_connection_without_a_response() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    send_chat(&mut client, "reset-a", false)?;
    let error = client.read_to_end();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    assert_eq!(mock.calls("reset-a"), 1);
    Ok(())
}

#[test]
fn hang_key_never_answers() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut client = Client::connect(mock.addr(), SHORT)?;
    send_chat(&mut client, "hang-a", false)?;
    let error = client.read_to_end();
    assert!(is_timeout(error.kind()), "{error}");
    assert_eq!(mock.calls("hang-a"), 1);
    Ok(())
}

/// Waits (bounded) for the mock to have read `n` requests with `key`.
fn wait_for_calls(mock: &MockUpstream, key: &str, n: u64) -> TestResult {
    let deadline = Instant::now() + TIMEOUT;
    while mock.calls(key) < n {
        if Instant::now() > deadline {
            return Err(format!("{key}: the mock never saw {n} calls").into());
        }
        std::thread::yield_now();
    }
    Ok(())
}

#[test]
fn stopping_the_mock_releases_hung_connections() -> TestResult {
    let mock = MockUpstream::start()?;
    let addr = mock.addr();
    let mut client = Client::connect(addr, TIMEOUT)?;
    send_chat(&mut client, "hang-a", false)?;
    wait_for_calls(&mock, "hang-a", 1)?;
    let started = Instant::now();
    drop(mock);
    let error = client.read_to_end();
    assert!(
        matches!(
            error.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
        ),
        "{error}"
    );
    assert!(started.elapsed() < TIMEOUT);
    let refused = std::net::TcpStream::connect_timeout(&addr, TIMEOUT);
    assert!(refused.is_err(), "the listener is closed");
    Ok(())
}

#[test]
fn badjson_is_a_200_with_truncated_json() -> TestResult {
    let mock = MockUpstream::start()?;
    let response = post(
        mock.addr(),
        "/v1/chat/completions",
        "badjson-a",
        &chat(false),
    )?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.body, br#"{"id": "x", "choices": ["#);
    assert!(response.json().is_err());
    Ok(())
}

#[test]
fn slow_key_delays_a_normal_answer() -> TestResult {
    let mock = MockUpstream::start()?;
    let started = Instant::now();
    let response = post(
        mock.addr(),
        "/v1/chat/completions",
        "slow150-a",
        &chat(false),
    )?;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(response.status, 200);
    assert_eq!(response.json()?["usage"]["total_tokens"], 10);
    Ok(())
}

#[test]
fn streamdie_sends_the_first_content_then_resets() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    send_chat(&mut client, "streamdie-a", true)?;
    let (status, headers) = client.read_head()?;
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-type".into(), "text/event-stream".into())));
    let role = client.read_chunk()?.ok_or("no role chunk")?;
    assert!(String::from_utf8_lossy(&role).contains(r#""role":"assistant""#));
    let content = client.read_chunk()?.ok_or("no content chunk")?;
    assert!(String::from_utf8_lossy(&content).contains(r#""content":"one""#));
    let error = client
        .read_chunk()
        .err()
        .ok_or("the stream went on after the first word")?;
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");

    // Without stream it is a plain reset.
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    send_chat(&mut client, "streamdie-a", false)?;
    assert_eq!(client.read_to_end().kind(), ErrorKind::ConnectionReset);
    Ok(())
}

#[test]
fn streamhang_sends_the_first_content_then_stalls() -> TestResult {
    let mock = MockUpstream::start()?;
    let mut client = Client::connect(mock.addr(), SHORT)?;
    send_chat(&mut client, "streamhang-a", true)?;
    let (status, _) = client.read_head()?;
    assert_eq!(status, 200);
    client.read_chunk()?.ok_or("no role chunk")?;
    let content = client.read_chunk()?.ok_or("no content chunk")?;
    assert!(String::from_utf8_lossy(&content).contains(r#""content":"one""#));
    let error = client
        .read_chunk()
        .err()
        .ok_or("the stream went on after the first word")?;
    assert!(is_timeout(error.kind()), "{error}");

    // Without stream it hangs before any byte.
    let mut client = Client::connect(mock.addr(), SHORT)?;
    send_chat(&mut client, "streamhang-a", false)?;
    let error = client.read_to_end();
    assert!(is_timeout(error.kind()), "{error}");
    Ok(())
}

#[test]
fn good_and_bad_keys_mix_on_one_mock() -> TestResult {
    let mock = MockUpstream::start()?;
    let statuses: Vec<u16> = ["ok-1", "r429-1", "ok-2", "e500-1"]
        .iter()
        .map(|key| post(mock.addr(), "/v1/chat/completions", key, &chat(false)).map(|r| r.status))
        .collect::<Result<_, _>>()?;
    assert_eq!(statuses, [200, 429, 200, 500]);
    Ok(())
}
