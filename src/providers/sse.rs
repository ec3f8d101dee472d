//! Server-sent events: splitting a byte stream into whole events.
//!
//! Upstreams usually send one event per chunk, but nothing guarantees it: a
//! chunk may hold several events or end mid-line. The splitter buffers only
//! the unfinished tail, so relaying stays incremental.

use bytes::{Bytes, BytesMut};
use std::borrow::Cow;

/// Default for `upstream.max_stream_event_bytes`: one event larger than
/// this ends the stream (real events are a few hundred bytes to a few KiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Splits a byte stream into events in linear time: each byte is examined
/// once for the blank line that ends an event (a resumed search starts where
/// the last one stopped), and one event may not grow past `max_event_bytes`.
pub struct SseSplitter {
    buffer: BytesMut,
    /// Bytes of `buffer` already searched without finding an event's end.
    scanned: usize,
    max_event_bytes: usize,
    oversized: bool,
}

impl Default for SseSplitter {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseSplitter {
    /// A splitter that refuses events longer than `max_event_bytes`
    /// (terminator included).
    pub fn with_limit(max_event_bytes: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            scanned: 0,
            max_event_bytes,
            oversized: false,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        // Past the limit the stream is over: keep memory bounded.
        if !self.oversized {
            self.buffer.extend_from_slice(chunk);
        }
    }

    /// The next complete event, terminator included, if one is buffered.
    /// `None` once an event has outgrown the limit (see [`Self::oversized`]).
    pub fn next_event(&mut self) -> Option<Bytes> {
        self.next_event_mut().map(BytesMut::freeze)
    }

    /// [`Self::next_event`], still mutable: consecutive events are
    /// consecutive pieces of one buffer, so a relay can join them again
    /// without copying (`BytesMut::unsplit`).
    pub fn next_event_mut(&mut self) -> Option<BytesMut> {
        if self.oversized {
            return None;
        }
        match find_event_end(&self.buffer, self.scanned) {
            Some(end) if end > self.max_event_bytes => {
                self.overflow();
                None
            }
            Some(end) => {
                self.scanned = 0;
                Some(self.buffer.split_to(end))
            }
            None => {
                if self.buffer.len() > self.max_event_bytes {
                    self.overflow();
                } else {
                    // A terminator may straddle this chunk and the next:
                    // resume three bytes back (`\r\n\r\n` is four long).
                    self.scanned = self.buffer.len().saturating_sub(3);
                }
                None
            }
        }
    }

    fn overflow(&mut self) {
        self.oversized = true;
        self.buffer = BytesMut::new();
        self.scanned = 0;
    }

    /// One event outgrew the limit: the stream cannot be relayed further.
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    /// Whatever is left (an unterminated final event), emptying the buffer.
    pub fn take_rest(&mut self) -> Bytes {
        self.scanned = 0;
        let rest = self.buffer.split().freeze();
        if rest.iter().all(u8::is_ascii_whitespace) {
            Bytes::new()
        } else {
            rest
        }
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

/// Index just past the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`)
/// starting at or after `from`, linear in the bytes examined.
fn find_event_end(buffer: &[u8], from: usize) -> Option<usize> {
    let mut index = from;
    loop {
        let rest = buffer.get(index..)?;
        index += memchr::memchr2(b'\n', b'\r', rest)?;
        match buffer.get(index..) {
            Some([b'\n', b'\n', ..]) | Some([b'\r', b'\r', ..]) => return Some(index + 2),
            Some([b'\r', b'\n', b'\r', b'\n', ..]) => return Some(index + 4),
            _ => index += 1,
        }
    }
}

/// The `data` of one event: its `data:` lines joined by `\n`; `None` when it
/// has none (comments, `event:`-only events).
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut lines = lines(event)
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

/// An event's lines, split at each `\n` (as `split` would, the piece after
/// the last one included), found with memchr: every event of every stream
/// is read through here at least twice.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(event);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current) {
            Some(at) => {
                let (line, after) = current.split_at(at);
                rest = after.get(1..);
                Some(line)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// The `event:` name of one event, if any.
pub fn event_name(event: &[u8]) -> Option<&str> {
    lines(event)
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

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// `lines` splits exactly as `split` at `\n` does.
            #[test]
            fn lines_split_as_split_does(
                bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..64)
            ) {
                let ours: Vec<&[u8]> = lines(&bytes).collect();
                let std: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                prop_assert_eq!(ours, std);
            }
        }
    }
}
