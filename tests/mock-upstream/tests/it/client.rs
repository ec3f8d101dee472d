//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, so the tests see the wire exactly:
//! separate chunks, resets, and read timeouts.

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub type TestResult = Result<(), Box<dyn Error>>;

/// Generous default so a loaded machine does not fail tests; hang tests set a short one.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// For chunked answers, each chunk as received (the body is their concatenation).
    pub chunks: Vec<Vec<u8>>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

impl Client {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: mock\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            request.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)
    }

    /// Writes bytes as they are (a hand-made request head, chunked framing, …).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads at least one more byte into the buffer; EOF is an `UnexpectedEof` error.
    fn fill(&mut self) -> io::Result<()> {
        let mut tmp = [0u8; 8192];
        let n = self.stream.read(&mut tmp)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
        Ok(())
    }

    /// Reads until `n` bytes are buffered, then takes them.
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(pos + 2)?;
                return Ok(line.get(..pos).unwrap_or_default().to_vec());
            }
            self.fill()?;
        }
    }

    /// Status and headers (names lowercased).
    pub fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.ok_or_else(|| invalid("no status"))?;
                    let headers = response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..len);
                    return Ok((status, headers));
                }
                Ok(httparse::Status::Partial) => self.fill()?,
                Err(e) => return Err(invalid(&format!("bad response head: {e}"))),
            }
        }
    }

    /// The next chunk of a chunked body; `None` after the last (empty) chunk.
    pub fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size_line = self.line()?;
        let size_text = String::from_utf8_lossy(&size_line);
        let size = usize::from_str_radix(size_text.trim(), 16)
            .map_err(|_| invalid(&format!("bad chunk size {size_text:?}")))?;
        let data = self.take(size)?;
        if self.line()?.is_empty() {
            Ok((size > 0).then_some(data))
        } else {
            Err(invalid("chunk not followed by CRLF"))
        }
    }

    /// A whole response: `Content-Length` or chunked.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let (status, headers) = self.read_head()?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut chunks = Vec::new();
        let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            while let Some(chunk) = self.read_chunk()? {
                chunks.push(chunk);
            }
            chunks.concat()
        } else {
            let len = header("content-length")
                .ok_or_else(|| invalid("no content-length"))?
                .trim()
                .parse::<usize>()
                .map_err(|_| invalid("bad content-length"))?;
            self.take(len)?
        };
        Ok(Response {
            status,
            headers,
            body,
            chunks,
        })
    }

    /// Reads whatever arrives until the connection ends; the error says how it ended.
    pub fn read_to_end(&mut self) -> io::Error {
        loop {
            if let Err(error) = self.fill() {
                return error;
            }
        }
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut client = Client::connect(addr, TIMEOUT)?;
    client.send(method, path, headers, body)?;
    client.read_response()
}

/// `POST path` with `Authorization: Bearer key` and a JSON body.
pub fn post(
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: &serde_json::Value,
) -> io::Result<Response> {
    let auth = format!("Bearer {key}");
    request(
        addr,
        "POST",
        path,
        &[("authorization", &auth)],
        &serde_json::to_vec(body)?,
    )
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// The `event:` names of an SSE body, in order.
pub fn sse_events(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}
