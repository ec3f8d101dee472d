//! Server-sent events: splitting a byte stream into whole events.
//!
//! Upstreams usually send one event per chunk, but nothing guarantees it: a
//! chunk may hold several events or end mid-line. The splitter buffers only
//! the unfinished tail, so relaying stays incremental.

use bytes::{Buf, Bytes, BytesMut};
use std::borrow::Cow;

#[derive(Default)]
pub struct SseSplitter {
    buffer: BytesMut,
}

impl SseSplitter {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete event, terminator included, if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        let end = find_event_end(&self.buffer)?;
        Some(self.buffer.split_to(end).freeze())
    }

    /// Whatever is left (an unterminated final event), emptying the buffer.
    pub fn take_rest(&mut self) -> Bytes {
        let rest = self.buffer.split().freeze();
        if rest.iter().all(u8::is_ascii_whitespace) {
            Bytes::new()
        } else {
            rest
        }
    }

    pub fn buffered(&self) -> usize {
        self.buffer.remaining()
    }
}

/// Index just past the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`).
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    let mut index = 0;
    while index < buffer.len() {
        match buffer.get(index..) {
            Some([b'\n', b'\n', ..]) | Some([b'\r', b'\r', ..]) => return Some(index + 2),
            Some([b'\r', b'\n', b'\r', b'\n', ..]) => return Some(index + 4),
            _ => index += 1,
        }
    }
    None
}

/// The `data` of one event: its `data:` lines joined by `\n`; `None` when it
/// has none (comments, `event:`-only events).
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut lines = event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value));
    let first = lines.next()?;
    match lines.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            for line in std::iter::once(second).chain(lines) {
                joined.push(b'\n');
                joined.extend_from_slice(line);
            }
            Some(Cow::Owned(joined))
        }
    }
}

/// The `event:` name of one event, if any.
pub fn event_name(event: &[u8]) -> Option<&str> {
    event
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(b"event:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value))
        .map(|value| value.strip_suffix(b"\r").unwrap_or(value))
        .find_map(|value| std::str::from_utf8(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_arbitrary_chunk_boundaries() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: comment\n\ndata: [DONE]\n\n";
        for cut in 1..stream.len() {
            let mut splitter = SseSplitter::default();
            let mut events = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                splitter.push(part);
                while let Some(event) = splitter.next_event() {
                    events.push(event);
                }
            }
            assert_eq!(events.len(), 4, "cut at {cut}");
            let data: Vec<Option<Vec<u8>>> = events
                .iter()
                .map(|e| event_data(e).map(|d| d.to_vec()))
                .collect();
            assert_eq!(
                data,
                vec![
                    Some(b"{\"a\":1}".to_vec()),
                    Some(b"{\"b\":2}".to_vec()),
                    None,
                    Some(b"[DONE]".to_vec())
                ]
            );
            assert!(splitter.take_rest().is_empty());
        }
    }

    #[test]
    fn multi_line_data_is_joined_and_names_are_read() {
        let event = b"event: message_delta\ndata: line1\ndata: line2\n\n";
        assert_eq!(event_data(event).as_deref(), Some(&b"line1\nline2"[..]));
        assert_eq!(event_name(event), Some("message_delta"));
    }

    #[test]
    fn unterminated_tail_is_returned_at_the_end() {
        let mut splitter = SseSplitter::default();
        splitter.push(b"data: partial");
        assert!(splitter.next_event().is_none());
        assert_eq!(splitter.take_rest(), Bytes::from_static(b"data: partial"));
    }
}
