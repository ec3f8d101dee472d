//! The HTTP/1.1 wire: request heads parsed with `httparse`, responses written by hand.

use std::fmt::Write as _;

/// Largest request head accepted (larger gets 431 and the connection is closed).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body accepted (larger gets 413 and the connection is closed).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const MAX_HEADERS: usize = 128;

/// A parsed request head with owned parts.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// Request target as sent (path and query).
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    /// Names lowercased.
    pub(crate) headers: Vec<(String, String)>,
    /// Length of the head in bytes, the blank line included.
    pub(crate) len: usize,
}

impl Head {
    /// First value of a header; `name` must be lowercase.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub(crate) fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The query string without `?` (empty when absent).
    pub(crate) fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }

    /// `Content-Length`, 0 when absent; `None` when it is not a number.
    pub(crate) fn content_length(&self) -> Option<usize> {
        match self.header("content-length") {
            Some(value) => value.trim().parse().ok(),
            None => Some(0),
        }
    }

    pub(crate) fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub(crate) fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 closes it unless
    /// `Connection: keep-alive`.
    pub(crate) fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        match connection.as_deref() {
            Some(v) if v.contains("close") => false,
            Some(v) if v.contains("keep-alive") => true,
            _ => self.minor_version >= 1,
        }
    }
}

pub(crate) enum Parsed {
    Complete(Head),
    Partial,
    /// A malformed head: answer with this status and close.
    Invalid(u16),
}

pub(crate) fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Parsed::Complete(Head {
            method: request.method.unwrap_or("").to_owned(),
            target: request.path.unwrap_or("").to_owned(),
            minor_version: request.version.unwrap_or(1),
            headers: request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            len,
        }),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Invalid(431),
        Err(_) => Parsed::Invalid(400),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// A complete response with a `Content-Length` body, ready for a single write.
pub(crate) fn response(
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    // Writing into a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra_headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !keep_alive {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The head of a chunked 200 response (`text/event-stream` for SSE, or raw bytes).
pub(crate) fn stream_head(content_type: &str, keep_alive: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\n\
         transfer-encoding: chunked\r\n",
    );
    if !keep_alive {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// One chunk of a chunked body.
pub(crate) fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The chunk that ends a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim answer to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Longest chunk-size or trailer line accepted in a chunked request body.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Where [`ChunkedBody`] is in the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPhase {
    /// Expecting a `SIZE[;ext]\r\n` line.
    Size,
    /// Inside a chunk's data, with this many bytes still to come.
    Data(usize),
    /// Expecting the CRLF that closes a chunk's data.
    DataEnd,
    /// After the last (zero) chunk: trailer lines up to an empty one.
    Trailers,
}

/// What [`ChunkedBody::advance`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// The body is complete; the request ends at this offset of the buffer.
    Done(usize),
    /// More bytes are needed.
    NeedMore,
    /// The framing is broken.
    Invalid,
    /// The decoded body would exceed [`MAX_BODY_BYTES`].
    TooLarge,
}

/// An incremental decoder of a `Transfer-Encoding: chunked` request body. It keeps its place in
/// the connection's buffer, so a large body arriving in many reads is decoded once, not re-parsed
/// from the start on every read.
#[derive(Debug)]
pub(crate) struct ChunkedBody {
    /// Offset in the buffer of the first byte not yet decoded.
    pos: usize,
    phase: ChunkPhase,
    /// The decoded body so far.
    pub(crate) body: Vec<u8>,
}

impl ChunkedBody {
    /// A decoder for a body starting at offset `start` of the buffer (the head's length).
    pub(crate) fn new(start: usize) -> ChunkedBody {
        ChunkedBody {
            pos: start,
            phase: ChunkPhase::Size,
            body: Vec::new(),
        }
    }

    /// How many more bytes the current step needs at least (a read-size hint).
    pub(crate) fn wanted(&self) -> usize {
        match self.phase {
            ChunkPhase::Data(remaining) => remaining,
            _ => 0,
        }
    }

    /// The next CRLF-terminated line from `self.pos`, without the CRLF; `Err` is the status to
    /// return when no line can be taken.
    fn line<'a>(&self, buf: &'a [u8]) -> Result<(&'a [u8], usize), Chunked> {
        let rest = buf.get(self.pos..).unwrap_or_default();
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(end) if end > MAX_CHUNK_LINE => Err(Chunked::Invalid),
            Some(end) => Ok((rest.get(..end).unwrap_or_default(), end + 2)),
            None if rest.len() > MAX_CHUNK_LINE => Err(Chunked::Invalid),
            None => Err(Chunked::NeedMore),
        }
    }

    /// Decodes as much of `buf` as has arrived.
    pub(crate) fn advance(&mut self, buf: &[u8]) -> Chunked {
        loop {
            match self.phase {
                ChunkPhase::Size => {
                    let (line, used) = match self.line(buf) {
                        Ok(found) => found,
                        Err(status) => return status,
                    };
                    let text = String::from_utf8_lossy(line);
                    let digits = text.split(';').next().unwrap_or("").trim();
                    let Ok(size) = usize::from_str_radix(digits, 16) else {
                        return Chunked::Invalid;
                    };
                    if self.body.len().saturating_add(size) > MAX_BODY_BYTES {
                        return Chunked::TooLarge;
                    }
                    self.pos += used;
                    self.phase = if size == 0 {
                        ChunkPhase::Trailers
                    } else {
                        self.body.reserve(size);
                        ChunkPhase::Data(size)
                    };
                }
                ChunkPhase::Data(remaining) => {
                    let available = buf.len().saturating_sub(self.pos).min(remaining);
                    if available == 0 {
                        return Chunked::NeedMore;
                    }
                    let end = self.pos + available;
                    self.body
                        .extend_from_slice(buf.get(self.pos..end).unwrap_or_default());
                    self.pos = end;
                    self.phase = if available == remaining {
                        ChunkPhase::DataEnd
                    } else {
                        ChunkPhase::Data(remaining - available)
                    };
                }
                ChunkPhase::DataEnd => match buf.get(self.pos..self.pos + 2) {
                    None => return Chunked::NeedMore,
                    Some(b"\r\n") => {
                        self.pos += 2;
                        self.phase = ChunkPhase::Size;
                    }
                    Some(_) => return Chunked::Invalid,
                },
                ChunkPhase::Trailers => {
                    let (line, used) = match self.line(buf) {
                        Ok(found) => found,
                        Err(status) => return status,
                    };
                    self.pos += used;
                    if line.is_empty() {
                        return Chunked::Done(self.pos);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` to a decoder `step` bytes at a time, as reads would deliver it.
    fn decode_in_steps(wire: &[u8], step: usize) -> (Chunked, Vec<u8>) {
        let mut decoder = ChunkedBody::new(0);
        let mut end = 0;
        loop {
            end = (end + step).min(wire.len());
            let status = decoder.advance(wire.get(..end).unwrap_or_default());
            if status != Chunked::NeedMore || end == wire.len() {
                return (status, decoder.body);
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whole_or_byte_by_byte() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let done_at = wire.len() - 4;
        for step in [1, 2, 3, 7, wire.len()] {
            let (status, body) = decode_in_steps(wire, step);
            assert_eq!(status, Chunked::Done(done_at), "step {step}");
            assert_eq!(body, b"hello, world", "step {step}");
        }
    }

    #[test]
    fn chunked_body_starts_after_the_head() {
        let wire = b"HEAD\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n";
        let mut decoder = ChunkedBody::new(8);
        assert_eq!(decoder.advance(wire), Chunked::Done(wire.len()));
        assert_eq!(decoder.body, b"0123456789");
    }

    #[test]
    fn broken_chunked_framing_is_invalid() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
        ] {
            assert_eq!(ChunkedBody::new(0).advance(wire), Chunked::Invalid);
        }
        let endless = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert_eq!(ChunkedBody::new(0).advance(&endless), Chunked::Invalid);
    }

    #[test]
    fn oversized_chunks_are_too_large() {
        let wire = format!("{:x}\r\n", MAX_BODY_BYTES + 1);
        assert_eq!(
            ChunkedBody::new(0).advance(wire.as_bytes()),
            Chunked::TooLarge
        );
    }

    #[test]
    fn paths_and_queries_split_at_the_question_mark() {
        let Parsed::Complete(head) = parse_head(b"GET /v1/echo/a?x=1&y=2 HTTP/1.1\r\n\r\n") else {
            panic!("head not parsed");
        };
        assert_eq!(head.path(), "/v1/echo/a");
        assert_eq!(head.query(), "x=1&y=2");
    }
}
