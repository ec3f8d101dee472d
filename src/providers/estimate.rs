//! Token estimates for answers whose upstream reported no usage (some
//! OpenAI-compatible servers, streams cut before their usage event).
//!
//! A tokenizer per model family would be exact for some providers and
//! wrong for the rest, and would cost megabytes of vocabularies; the rows it
//! fills are marked `tokens_estimated` anyway. So the estimate is OpenAI's
//! rule of thumb, about four characters of text per token, counted over the
//! text-bearing fields of any of the three wire formats.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Keys whose string values (directly or in arrays) are prompt or answer
/// text in the OpenAI, Anthropic or Gemini formats.
const TEXT_KEYS: &[&str] = &[
    "content",
    "text",
    "arguments",
    "partial_json",
    "thinking",
    "system",
    "prompt",
    "input",
    "description",
    "parts",
];

/// Characters of text in a JSON document (a request, an answer or one
/// stream event); 0 when it is not JSON.
///
/// Counted while the document is parsed, without building a
/// `serde_json::Value`: a stream's every event passes through here, and a
/// `Value` tree cost an allocation per key, string and container of each.
pub fn text_chars(json: &[u8]) -> usize {
    let mut parser = serde_json::Deserializer::from_slice(json);
    let counted = TextChars { is_text: false }.deserialize(&mut parser);
    match counted {
        Ok(chars) if parser.end().is_ok() => chars,
        _ => 0,
    }
}

/// [`text_chars`] of a document already parsed into an object: a stream
/// event that a translator or the usage search parsed anyway is not parsed
/// a second time for its text (bench/README.md).
pub fn object_text_chars(object: &Map<String, Value>) -> usize {
    object.iter().fold(0, |chars, (key, value)| {
        chars.saturating_add(value_text_chars(value, TEXT_KEYS.contains(&key.as_str())))
    })
}

/// The text characters of `value`, whose key made it text or not.
fn value_text_chars(value: &Value, is_text: bool) -> usize {
    match value {
        Value::String(text) if is_text => text.chars().count(),
        Value::Array(items) => items.iter().fold(0, |chars, item| {
            chars.saturating_add(value_text_chars(item, is_text))
        }),
        Value::Object(object) => object_text_chars(object),
        _ => 0,
    }
}

/// Counts the characters of the strings in one JSON value that are text:
/// under a [`TEXT_KEYS`] key, directly or in arrays; an object's own keys
/// decide for its values.
#[derive(Clone, Copy)]
struct TextChars {
    is_text: bool,
}

impl<'de> DeserializeSeed<'de> for TextChars {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextChars {
    type Value = usize;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<usize, E> {
        Ok(if self.is_text {
            text.chars().count()
        } else {
            0
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<usize, A::Error> {
        let mut chars = 0usize;
        while let Some(item) = items.next_element_seed(self)? {
            chars = chars.saturating_add(item);
        }
        Ok(chars)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<usize, A::Error> {
        let mut chars = 0usize;
        while let Some(is_text) = fields.next_key_seed(IsTextKey)? {
            chars = chars.saturating_add(fields.next_value_seed(TextChars { is_text })?);
        }
        Ok(chars)
    }
}

/// Reads an object key as whether it is one of [`TEXT_KEYS`].
struct IsTextKey;

impl<'de> DeserializeSeed<'de> for IsTextKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsTextKey {
    type Value = bool;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(TEXT_KEYS.contains(&key))
    }
}

/// The text characters of an answer's stream events, counted only when
/// asked for: the count is used only when the upstream reports no usage,
/// which most never fail to do, and counting means parsing every event
/// (7.7% of the workers' samples for a passed-through stream whose events
/// nothing else parses, bench/README.md).
///
/// Events wait uncounted up to [`Self::MAX_PENDING_BYTES`], then are
/// counted all at once: a stream holds at most that much more, however
/// long it runs (10,000 open streams at most 80 MB), and the total is the
/// same as counting each event as it came. Short answers, the common case
/// (the bench's 20-chunk stream is ~4 KiB of events), are never counted.
#[derive(Debug, Default)]
pub struct DeferredTextCount {
    counted: usize,
    /// Events not counted yet, each as its length (`u32`, little-endian)
    /// followed by its bytes.
    pending: Vec<u8>,
}

impl DeferredTextCount {
    pub const MAX_PENDING_BYTES: usize = 8 * 1024;
    /// The room taken at the first event: grown by doubling from a few
    /// bytes, the buffer was reallocated about ten times per stream (1.2% of
    /// a relayed stream's CPU, bench/README.md); from here, twice at most.
    /// An open stream holds it from its first event (10,000: 20 MB).
    const FIRST_ROOM: usize = 2 * 1024;
    const LENGTH_BYTES: usize = 4;

    /// Characters already counted elsewhere (a parse made for another
    /// reason).
    pub fn add_chars(&mut self, chars: usize) {
        self.counted = self.counted.saturating_add(chars);
    }

    /// One JSON document (a stream event's data), counted later.
    pub fn add_document(&mut self, json: &[u8]) {
        let entry = Self::LENGTH_BYTES + json.len();
        if entry > Self::MAX_PENDING_BYTES {
            self.add_chars(text_chars(json));
            return;
        }
        if self.pending.len() + entry > Self::MAX_PENDING_BYTES {
            self.count_pending();
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve(Self::FIRST_ROOM.max(entry));
        }
        // Fits: `entry` is at most MAX_PENDING_BYTES.
        let length = u32::try_from(json.len()).unwrap_or(u32::MAX);
        self.pending.extend_from_slice(&length.to_le_bytes());
        self.pending.extend_from_slice(json);
    }

    /// Every character added so far.
    pub fn total(&mut self) -> usize {
        self.count_pending();
        self.counted
    }

    fn count_pending(&mut self) {
        let mut rest = self.pending.as_slice();
        let mut chars = 0usize;
        while let Some((length, after)) = rest.split_first_chunk::<{ Self::LENGTH_BYTES }>() {
            let length = u32::from_le_bytes(*length) as usize;
            let (document, after) = after.split_at(length.min(after.len()));
            chars = chars.saturating_add(text_chars(document));
            rest = after;
        }
        self.add_chars(chars);
        self.pending.clear();
    }
}

/// Tokens for `chars` characters of text: a quarter, rounded up.
pub fn tokens_for_chars(chars: usize) -> i64 {
    i64::try_from(chars.div_ceil(4)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_fields_of_every_format() {
        let openai = br#"{"model":"m","messages":[{"role":"user","content":"abcd"},
            {"role":"user","content":[{"type":"text","text":"efgh"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#;
        assert_eq!(text_chars(openai), 8);
        let anthropic_delta =
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello"}}"#;
        assert_eq!(text_chars(anthropic_delta), 5);
        let gemini = br#"{"candidates":[{"content":{"parts":[{"text":"four"}],"role":"model"}}]}"#;
        assert_eq!(text_chars(gemini), 4);
        let embeddings = br#"{"model":"e","input":["ab","cd"]}"#;
        assert_eq!(text_chars(embeddings), 4);
        assert_eq!(text_chars(b"not json"), 0);
        assert_eq!(text_chars(b"[DONE]"), 0);
    }

    #[test]
    fn escapes_are_counted_as_the_characters_they_stand_for() {
        // "é" escaped, a surrogate pair (one character), a quote, a newline.
        let escaped = br#"{"content":"\u00e9\ud83d\ude00\"\n"}"#;
        assert_eq!(text_chars(escaped), 4);
        // Trailing bytes after the document make it not JSON.
        assert_eq!(text_chars(br#"{"content":"abcd"} x"#), 0);
        assert_eq!(text_chars(br#"{"content":"abcd""#), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// The first version of `text_chars`: a `Value` tree, walked (the
        /// walk [`object_text_chars`] does for a parsed stream event).
        fn reference(json: &[u8]) -> usize {
            serde_json::from_slice::<Value>(json).map_or(0, |value| value_text_chars(&value, false))
        }

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                any::<String>().prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::vec(
                        (
                            prop_oneof![
                                proptest::sample::select(TEXT_KEYS).prop_map(str::to_owned),
                                "[a-z_]{1,8}",
                            ],
                            inner
                        ),
                        0..6
                    )
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// Counting while parsing gives what the `Value` walk gave, for
            /// any document.
            #[test]
            fn counts_as_the_value_walk_did(value in json_value()) {
                let json = serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(text_chars(&json), reference(&json));
                if let Value::Object(object) = &value {
                    prop_assert_eq!(object_text_chars(object), text_chars(&json));
                }
            }

            /// And for any bytes: 0 when they are not JSON.
            #[test]
            fn arbitrary_bytes_count_as_the_value_walk_did(
                bytes in proptest::collection::vec(any::<u8>(), 0..256)
            ) {
                prop_assert_eq!(text_chars(&bytes), reference(&bytes));
            }
        }
    }

    #[test]
    fn a_deferred_count_is_the_sum_of_the_counts_and_holds_little() {
        let event = |text: &str| {
            serde_json::to_vec(&serde_json::json!({
                "choices": [{ "delta": { "content": text }, "finish_reason": null }]
            }))
            .unwrap_or_default()
        };
        let mut deferred = DeferredTextCount::default();
        let mut expected = 0;
        let mut largest_pending = 0;
        for n in 0..2_000 {
            // Mostly small events, some not JSON, and one larger than the
            // whole allowance (counted at once).
            let document = match n {
                7 => event(&"é".repeat(DeferredTextCount::MAX_PENDING_BYTES)),
                n if n % 97 == 0 => b"not json".to_vec(),
                n => event(&"ab".repeat(n % 40)),
            };
            expected += text_chars(&document);
            if n % 5 == 0 {
                deferred.add_chars(3);
                expected += 3;
            }
            deferred.add_document(&document);
            largest_pending = largest_pending.max(deferred.pending.len());
        }
        assert!(largest_pending <= DeferredTextCount::MAX_PENDING_BYTES);
        assert!(largest_pending > DeferredTextCount::MAX_PENDING_BYTES / 2);
        assert_eq!(deferred.total(), expected);
        assert_eq!(deferred.total(), expected, "a second total adds nothing");
        assert!(deferred.pending.is_empty());
        assert_eq!(DeferredTextCount::default().total(), 0);
    }

    #[test]
    fn four_characters_per_token_rounded_up() {
        assert_eq!(tokens_for_chars(0), 0);
        assert_eq!(tokens_for_chars(1), 1);
        assert_eq!(tokens_for_chars(8), 2);
        assert_eq!(tokens_for_chars(9), 3);
    }
}
