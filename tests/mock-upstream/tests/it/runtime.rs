//! The mock brings its own runtime: it starts, serves and stops from inside a caller's
//! single-threaded runtime (as in an actix-rt `System`) without touching it.

use mock_upstream::MockUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::TestResult;

#[test]
fn works_from_inside_a_current_thread_runtime() -> TestResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mock = MockUpstream::start()?;
        let mut stream = tokio::net::TcpStream::connect(mock.addr()).await?;
        stream
            .write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(String::from_utf8_lossy(&response).contains("mock-gpt-mini"));
        assert_eq!(mock.total_calls(), 1);
        // Dropping inside the caller's runtime must not panic or block it for long.
        drop(mock);
        Ok(())
    })
}
