//! What a request's key asks the mock to do.

use std::time::Duration;

use crate::http::Head;

/// The behaviour chosen by the key's prefix (the part before the first `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `ok-…`, any unknown prefix, or no key: normal answers.
    Normal,
    /// `r429-…`: 429 with `Retry-After: 2` and a rate-limit error body;
    /// `r429long-…`: the same with `Retry-After: 600` (a key that stays
    /// resting for the whole of a test, however slow the machine).
    RateLimited { retry_after_secs: u32 },
    /// `e500-…`: 500 with a server error body.
    ServerError,
    /// `e401-…`: 401 invalid key.
    Unauthorized,
    /// `hang-…`: reads the request and never answers; the socket stays open until the client
    /// closes it or the mock stops.
    Hang,
    /// `reset-…`: reads the request, then resets the connection (TCP RST, no response bytes).
    Reset,
    /// `badjson-…`: 200 `application/json` with a truncated body.
    BadJson,
    /// `slow<MS>-…`: a normal answer after MS milliseconds before the first byte.
    Slow(Duration),
    /// `streamdie-…`: a stream sends its headers and events up to the first content delta, then
    /// the connection is reset. A non-stream request is reset like [`Behaviour::Reset`].
    StreamDie,
    /// `streamhang-…`: a stream sends its headers and events up to the first content delta, then
    /// stalls forever. A non-stream request hangs like [`Behaviour::Hang`].
    StreamHang,
    /// `nousage-…`: a normal answer without any usage: no OpenAI `usage` (and no usage chunk even
    /// when `stream_options.include_usage` asks for one), no Anthropic `usage` in the message or
    /// its `message_start`/`message_delta` events, no Gemini `usageMetadata`. For testing the
    /// gateway's token estimation.
    NoUsage,
    /// `roledie-…`: a stream sends its headers and the events before the first content (the
    /// role-only chunk), then the connection is reset. A non-stream request is reset.
    RoleDie,
    /// `negusage-`: a normal answer whose every usage figure is negative (minus a billion tokens),
    /// as from a broken or hostile upstream.
    NegativeUsage,
    /// `hugeusage-`: a normal answer whose every usage figure is 9.2e18 tokens (close to
    /// `i64::MAX`), so any unchecked sum wraps.
    HugeUsage,
    /// `cached-`: a normal answer whose usage also reports prompt-cache reads (and, on
    /// Anthropic's wire, writes) and reasoning tokens, each wire in its own convention (see
    /// `add_cache_usage` in the router).
    CachedUsage,
    /// `truncclean-…`: a stream sends its events up to the first content delta, then ends
    /// cleanly (last chunk) without its end marker (`[DONE]`, `finish_reason`, `message_stop`,
    /// Gemini's `finishReason`). A non-stream request is answered normally.
    TruncateClean,
    /// `truncmid-…`: like `truncclean-`, but the first half of the next event (no blank line)
    /// goes out before the clean end.
    TruncateMidEvent,
    /// `hugeevent-…`: a stream sends its events up to the first content delta, then one event of
    /// [`HUGE_EVENT_BYTES`] without a blank line (in 64 KiB chunks), then ends cleanly.
    HugeEvent,
    /// `drip-…`: the whole normal stream, one byte per HTTP chunk, with a short pause after
    /// every few bytes. A non-stream request is answered normally.
    Drip,
    /// `chunks<N>-…` (N from 1 to [`MAX_CONTENT_CHUNKS`]): a normal answer, but a text stream
    /// carries N content chunks instead of one per word: the first word's event is repeated
    /// before the others (N below the word count leaves the stream as it is). Non-stream answers
    /// are normal. For the benchmark's longer streams.
    Chunks(usize),
    /// `textonly-…`: the normal text answer even when the request offers tools (which otherwise
    /// get a call of the first one): for agents such as the Gemini CLI, which always send their
    /// tools and would run the call.
    TextOnly,
    /// `extraunits-…`: media answers claim more than was asked: images draw `n` +
    /// `media::EXTRA_IMAGES` entries, a Cohere-shaped rerank bills `media::ABSURD_SEARCH_UNITS`
    /// search units. Other answers are normal.
    ExtraUnits,
    /// `nopayload-…`: media answers are a 200 without their payload: images without `data`,
    /// rerank without `results`, speech a JSON error object. Other answers are normal.
    NoPayload,
}

/// The most content chunks a `chunks<N>-` key may ask for.
pub const MAX_CONTENT_CHUNKS: usize = 10_000;

/// How long the `hugeevent-` event grows.
pub(crate) const HUGE_EVENT_BYTES: usize = 4 * 1024 * 1024;

impl Behaviour {
    /// The behaviour for a key.
    pub fn from_key(key: &str) -> Behaviour {
        let prefix = key.split('-').next().unwrap_or(key);
        match prefix {
            "r429" => Behaviour::RateLimited {
                retry_after_secs: 2,
            },
            "r429long" => Behaviour::RateLimited {
                retry_after_secs: 600,
            },
            "e500" => Behaviour::ServerError,
            "e401" => Behaviour::Unauthorized,
            "hang" => Behaviour::Hang,
            "reset" => Behaviour::Reset,
            "badjson" => Behaviour::BadJson,
            "streamdie" => Behaviour::StreamDie,
            "streamhang" => Behaviour::StreamHang,
            "roledie" => Behaviour::RoleDie,
            "nousage" => Behaviour::NoUsage,
            "negusage" => Behaviour::NegativeUsage,
            "hugeusage" => Behaviour::HugeUsage,
            "cached" => Behaviour::CachedUsage,
            "truncclean" => Behaviour::TruncateClean,
            "truncmid" => Behaviour::TruncateMidEvent,
            "hugeevent" => Behaviour::HugeEvent,
            "drip" => Behaviour::Drip,
            "textonly" => Behaviour::TextOnly,
            "extraunits" => Behaviour::ExtraUnits,
            "nopayload" => Behaviour::NoPayload,
            other => {
                if let Some(Ok(ms)) = other.strip_prefix("slow").map(str::parse::<u64>) {
                    Behaviour::Slow(Duration::from_millis(ms))
                } else if let Some(Ok(n)) = other.strip_prefix("chunks").map(str::parse::<usize>)
                    && (1..=MAX_CONTENT_CHUNKS).contains(&n)
                {
                    Behaviour::Chunks(n)
                } else {
                    Behaviour::Normal
                }
            }
        }
    }
}

/// The request's key: `Authorization: Bearer`, `x-api-key`, `api-key`, `x-goog-api-key`, then the
/// `key` query parameter. Empty when there is none.
pub(crate) fn request_key(head: &Head) -> &str {
    if let Some(auth) = head.header("authorization") {
        let auth = auth.trim();
        if let Some(key) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        {
            return key.trim();
        }
    }
    for name in ["x-api-key", "api-key", "x-goog-api-key"] {
        if let Some(key) = head.header(name) {
            return key.trim();
        }
    }
    head.query()
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_pick_behaviours() {
        assert_eq!(Behaviour::from_key("ok-1"), Behaviour::Normal);
        assert_eq!(Behaviour::from_key("sk-whatever"), Behaviour::Normal);
        assert_eq!(Behaviour::from_key(""), Behaviour::Normal);
        assert_eq!(
            Behaviour::from_key("r429-a"),
            Behaviour::RateLimited {
                retry_after_secs: 2
            }
        );
        assert_eq!(
            Behaviour::from_key("r429long-a"),
            Behaviour::RateLimited {
                retry_after_secs: 600
            }
        );
        assert_eq!(Behaviour::from_key("e500-a"), Behaviour::ServerError);
        assert_eq!(Behaviour::from_key("e401-a"), Behaviour::Unauthorized);
        assert_eq!(Behaviour::from_key("hang-a"), Behaviour::Hang);
        assert_eq!(Behaviour::from_key("reset-a"), Behaviour::Reset);
        assert_eq!(Behaviour::from_key("badjson-a"), Behaviour::BadJson);
        assert_eq!(
            Behaviour::from_key("slow200-a"),
            Behaviour::Slow(Duration::from_millis(200))
        );
        assert_eq!(Behaviour::from_key("slowx-a"), Behaviour::Normal);
        assert_eq!(Behaviour::from_key("streamdie-a"), Behaviour::StreamDie);
        assert_eq!(Behaviour::from_key("streamhang-a"), Behaviour::StreamHang);
        assert_eq!(Behaviour::from_key("roledie-a"), Behaviour::RoleDie);
        assert_eq!(Behaviour::from_key("nousage-a"), Behaviour::NoUsage);
        assert_eq!(Behaviour::from_key("negusage-a"), Behaviour::NegativeUsage);
        assert_eq!(Behaviour::from_key("hugeusage-a"), Behaviour::HugeUsage);
        assert_eq!(Behaviour::from_key("cached-a"), Behaviour::CachedUsage);
        assert_eq!(
            Behaviour::from_key("truncclean-a"),
            Behaviour::TruncateClean
        );
        assert_eq!(
            Behaviour::from_key("truncmid-a"),
            Behaviour::TruncateMidEvent
        );
        assert_eq!(Behaviour::from_key("hugeevent-a"), Behaviour::HugeEvent);
        assert_eq!(Behaviour::from_key("drip-a"), Behaviour::Drip);
        assert_eq!(Behaviour::from_key("textonly-a"), Behaviour::TextOnly);
        assert_eq!(Behaviour::from_key("chunks20-a"), Behaviour::Chunks(20));
        assert_eq!(Behaviour::from_key("chunks0-a"), Behaviour::Normal);
        assert_eq!(Behaviour::from_key("chunks10001-a"), Behaviour::Normal);
        assert_eq!(Behaviour::from_key("chunksx-a"), Behaviour::Normal);
    }
}
