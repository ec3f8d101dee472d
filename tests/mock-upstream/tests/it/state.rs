//! Call counting per key, the request log and resets.

use mock_upstream::{MockUpstream, RECORDED_REQUESTS_LIMIT};

use crate::client::{Client, TIMEOUT, TestResult, request};

#[test]
fn calls_are_counted_per_key_from_every_key_header() -> TestResult {
    let mock = MockUpstream::start()?;
    let addr = mock.addr();
    request(
        addr,
        "GET",
        "/v1/models",
        &[("authorization", "Bearer ok-a")],
        b"",
    )?;
    request(
        addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer ok-a")],
        b"",
    )?;
    request(addr, "GET", "/v1/models", &[("x-api-key", "ok-b")], b"")?;
    request(addr, "GET", "/v1/models", &[("api-key", "ok-c")], b"")?;
    request(
        addr,
        "GET",
        "/v1/models",
        &[("x-goog-api-key", "ok-d")],
        b"",
    )?;
    request(addr, "GET", "/v1beta/models?alt=sse&key=ok-e", &[], b"")?;
    request(addr, "GET", "/v1/models", &[], b"")?;
    // Bearer wins over the other headers.
    request(
        addr,
        "GET",
        "/v1/models",
        &[("x-api-key", "ok-b"), ("authorization", "Bearer ok-a")],
        b"",
    )?;
    assert_eq!(mock.calls("ok-a"), 3);
    assert_eq!(mock.calls("ok-b"), 1);
    assert_eq!(mock.calls("ok-c"), 1);
    assert_eq!(mock.calls("ok-d"), 1);
    assert_eq!(mock.calls("ok-e"), 1);
    assert_eq!(mock.calls("never-used"), 0);
    assert_eq!(mock.total_calls(), 8);
    Ok(())
}

#[test]
fn the_last_request_is_recorded_whole() -> TestResult {
    let mock = MockUpstream::start()?;
    assert_eq!(mock.last_request(), None);
    let body = br#"{"model":"mock-gpt","messages":[]}"#;
    request(
        mock.addr(),
        "POST",
        "/v1/chat/completions?trace=1",
        &[("Authorization", "Bearer ok-1"), ("X-Custom", "Value")],
        body,
    )?;
    let recorded = mock.last_request().ok_or("nothing recorded")?;
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/v1/chat/completions?trace=1");
    assert_eq!(recorded.header("x-custom"), Some("Value"));
    assert!(
        recorded
            .headers
            .contains(&("authorization".into(), "Bearer ok-1".into()))
    );
    assert!(recorded.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    assert_eq!(recorded.body, body);
    assert_eq!(
        recorded.json(),
        Some(serde_json::json!({"model": "mock-gpt", "messages": []}))
    );
    Ok(())
}

#[test]
fn the_request_log_keeps_the_last_thousand() -> TestResult {
    let mock = MockUpstream::start()?;
    let extra = 5;
    let mut client = Client::connect(mock.addr(), TIMEOUT)?;
    for n in 0..RECORDED_REQUESTS_LIMIT + extra {
        client.send("GET", &format!("/v1/models?n={n}"), &[], b"")?;
        assert_eq!(client.read_response()?.status, 200);
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), RECORDED_REQUESTS_LIMIT);
    assert_eq!(
        requests.first().map(|r| r.path.as_str()),
        Some(format!("/v1/models?n={extra}").as_str())
    );
    assert_eq!(
        requests.last().map(|r| r.path.as_str()),
        Some(format!("/v1/models?n={}", RECORDED_REQUESTS_LIMIT + extra - 1).as_str())
    );
    assert_eq!(mock.total_calls(), (RECORDED_REQUESTS_LIMIT + extra) as u64);
    Ok(())
}

#[test]
fn reset_counts_forgets_counts_and_requests() -> TestResult {
    let mock = MockUpstream::start()?;
    request(
        mock.addr(),
        "GET",
        "/v1/models",
        &[("x-api-key", "ok-1")],
        b"",
    )?;
    assert_eq!(mock.calls("ok-1"), 1);
    mock.reset_counts();
    assert_eq!(mock.calls("ok-1"), 0);
    assert_eq!(mock.total_calls(), 0);
    assert!(mock.requests().is_empty());
    request(
        mock.addr(),
        "GET",
        "/v1/models",
        &[("x-api-key", "ok-1")],
        b"",
    )?;
    assert_eq!(mock.calls("ok-1"), 1);
    assert_eq!(mock.total_calls(), 1);
    Ok(())
}

#[test]
fn base_url_points_at_v1() -> TestResult {
    let mock = MockUpstream::start()?;
    assert_eq!(
        mock.base_url(),
        format!("http://127.0.0.1:{}/v1", mock.addr().port())
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let other = MockUpstream::start_on(addr)?;
    assert_ne!(other.addr().port(), 0);
    assert_ne!(other.addr(), mock.addr());
    Ok(())
}
