//! Token estimates for answers whose upstream reported no usage (some
//! OpenAI-compatible servers, streams cut before their usage event).
//!
//! A tokenizer per model family would be exact for some providers and
//! wrong for the rest, and would cost megabytes of vocabularies; the rows it
//! fills are marked `tokens_estimated` anyway. So the estimate is OpenAI's
//! rule of thumb, about four characters of text per token, counted over the
//! text-bearing fields of any of the three wire formats.

use serde_json::Value;

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
pub fn text_chars(json: &[u8]) -> usize {
    serde_json::from_slice::<Value>(json).map_or(0, |value| walk(&value, false))
}

fn walk(value: &Value, is_text: bool) -> usize {
    match value {
        Value::String(text) if is_text => text.chars().count(),
        Value::Array(items) => items.iter().map(|item| walk(item, is_text)).sum(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| walk(value, TEXT_KEYS.contains(&key.as_str())))
            .sum(),
        _ => 0,
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
    fn four_characters_per_token_rounded_up() {
        assert_eq!(tokens_for_chars(0), 0);
        assert_eq!(tokens_for_chars(1), 1);
        assert_eq!(tokens_for_chars(8), 2);
        assert_eq!(tokens_for_chars(9), 3);
    }
}
