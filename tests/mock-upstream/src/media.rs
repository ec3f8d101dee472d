//! Media answers (issue 15, item 3): `…/images/generations` and `…/rerank`, plus the hostile
//! variants of those and of `…/audio/speech` (whose normal answer is `passthrough::speech`).
//!
//! Figures are deterministic, like the rest of the mock:
//! - images: a 400 for a `size` OpenAI does not offer; else one `data` entry per `n` asked (default 1; at most [`MAX_IMAGES`]), `b64_json` when
//!   `response_format` is `b64_json`, else a `url`; gpt-image-style `usage` with `input_tokens`
//!   = the prompt's bytes and `output_tokens` = [`IMAGE_OUTPUT_TOKENS`] per image.
//! - rerank: a result per document (or `top_n`), `relevance_score` `1 / (index + 1)`, best
//!   first. A model whose name starts with `jina` answers in Jina's shape (`usage.total_tokens`
//!   = the bytes of the query and the documents' text); any other in Cohere's
//!   (`meta.billed_units.search_units` = 1).
//!
//! Key behaviours bend these answers (see `Behaviour::ExtraUnits` and `Behaviour::NoPayload`).

use serde_json::{Value, json};

use crate::router::{Answer, Usage, strip_usage, unix_now};
use crate::{base64, openai};

/// The most images the mock draws for one request (OpenAI's bound on `n`).
pub const MAX_IMAGES: u64 = 10;

/// gpt-image-style output tokens reported per image drawn.
pub const IMAGE_OUTPUT_TOKENS: u64 = 100;

/// Images an `extraunits-` answer adds beyond the `n` asked for.
pub const EXTRA_IMAGES: u64 = 3;

/// The search units an `extraunits-` rerank answer claims.
pub const ABSURD_SEARCH_UNITS: u64 = 1_000_000_000;

/// How a key bends a media answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Bend {
    /// The normal answer.
    Straight,
    /// More than was asked: extra images, absurd search units.
    ExtraUnits,
    /// A 200 without the API's payload: images without `data`, rerank without `results`,
    /// speech as a JSON error object.
    NoPayload,
}

/// The bytes of a `prompt`, `query` or document text.
fn text_bytes(value: Option<&Value>) -> u64 {
    value
        .and_then(Value::as_str)
        .map_or(0, |text| text.len() as u64)
}

/// The sizes an image request may ask for (OpenAI's, across its image models); any other is a
/// 400, as from OpenAI.
const IMAGE_SIZES: [&str; 8] = [
    "auto",
    "256x256",
    "512x512",
    "1024x1024",
    "1536x1024",
    "1024x1536",
    "1792x1024",
    "1024x1792",
];

pub(crate) fn image_generations(body: &Value, usage: Usage, bend: Bend) -> Answer {
    if let Some(size) = body.get("size").and_then(Value::as_str)
        && !IMAGE_SIZES.contains(&size)
    {
        let message = format!("Invalid value for 'size': '{size}' (mock)");
        return Answer::json(
            400,
            &openai::error_body(&message, "invalid_request_error", Some("invalid_value")),
        );
    }
    let created = unix_now();
    if bend == Bend::NoPayload {
        return Answer::json(200, &json!({"created": created}));
    }
    let asked = body
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, MAX_IMAGES);
    let drawn = match bend {
        Bend::ExtraUnits => asked + EXTRA_IMAGES,
        Bend::Straight | Bend::NoPayload => asked,
    };
    let b64 = body.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let data: Vec<Value> = (0..drawn)
        .map(|index| {
            if b64 {
                json!({"b64_json": base64::encode(format!("mock image {index}").as_bytes())})
            } else {
                json!({"url": format!("https://mock.invalid/images/{index}.png")})
            }
        })
        .collect();
    let prompt = text_bytes(body.get("prompt"));
    let output = drawn * IMAGE_OUTPUT_TOKENS;
    let answer = json!({
        "created": created,
        "data": data,
        "usage": {
            "input_tokens": prompt,
            "output_tokens": output,
            "total_tokens": prompt + output,
            "input_tokens_details": {"text_tokens": prompt, "image_tokens": 0},
        },
    });
    Answer::json(200, &strip_usage(answer, "usage", usage))
}

/// A document's text: a string, or an object's `text`.
fn document_text(document: &Value) -> Option<&str> {
    document
        .as_str()
        .or_else(|| document.get("text").and_then(Value::as_str))
}

pub(crate) fn rerank(body: &Value, usage: Usage, bend: Bend) -> Answer {
    if bend == Bend::NoPayload {
        return Answer::json(200, &json!({"id": "rerank-mock"}));
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let documents = body
        .get("documents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let top_n = body
        .get("top_n")
        .and_then(Value::as_u64)
        .map_or(documents.len(), |top_n| top_n as usize);
    let with_documents = body.get("return_documents").and_then(Value::as_bool) == Some(true);
    let results: Vec<Value> = documents
        .iter()
        .enumerate()
        .take(top_n)
        .map(|(index, document)| {
            let mut result = json!({"index": index, "relevance_score": 1.0 / (index as f64 + 1.0)});
            if with_documents {
                result["document"] = json!({"text": document_text(document).unwrap_or("")});
            }
            result
        })
        .collect();
    if model.starts_with("jina") {
        let tokens = text_bytes(body.get("query"))
            + documents
                .iter()
                .filter_map(document_text)
                .map(|text| text.len() as u64)
                .sum::<u64>();
        let answer = json!({
            "model": model,
            "results": results,
            "usage": {"total_tokens": tokens},
        });
        return Answer::json(200, &strip_usage(answer, "usage", usage));
    }
    let search_units = match bend {
        Bend::ExtraUnits => ABSURD_SEARCH_UNITS,
        Bend::Straight | Bend::NoPayload => 1,
    };
    let answer = json!({
        "id": "rerank-mock",
        "results": results,
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"search_units": search_units},
        },
    });
    Answer::json(200, &strip_usage(answer, "meta", usage))
}

/// Speech bent by a key: an error object answered with 200 (`nopayload-`).
pub(crate) fn speech_error() -> Answer {
    Answer::json(
        200,
        &json!({"error": {"message": "speech failed (mock)", "type": "server_error"}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(answer: Answer) -> (u16, Value) {
        match answer {
            Answer::Full { status, body, .. } => {
                (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
            Answer::Stream { .. } => (0, Value::Null),
        }
    }

    #[test]
    fn images_answer_n_entries_with_gpt_image_usage() {
        let body = json!({"prompt": "a cat", "n": 2, "response_format": "b64_json"});
        let (status, answer) = json_of(image_generations(&body, Usage::Report, Bend::Straight));
        assert_eq!(status, 200);
        assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
        assert!(answer["data"][0]["b64_json"].is_string());
        assert_eq!(answer["usage"]["input_tokens"], 5);
        assert_eq!(answer["usage"]["output_tokens"], 200);
        let (_, extra) = json_of(image_generations(&body, Usage::Omit, Bend::ExtraUnits));
        assert_eq!(extra["data"].as_array().map(Vec::len), Some(5));
        assert!(extra.get("usage").is_none());
        let (_, bare) = json_of(image_generations(&body, Usage::Report, Bend::NoPayload));
        assert!(bare.get("data").is_none());
        let odd = json!({"prompt": "a cat", "size": "7x7"});
        let (status, error) = json_of(image_generations(&odd, Usage::Report, Bend::Straight));
        assert_eq!(status, 400);
        assert_eq!(error["error"]["code"], "invalid_value");
    }

    #[test]
    fn rerank_answers_in_cohere_or_jina_shape() {
        let body = json!({"model": "rr", "query": "q", "documents": ["a", {"text": "bb"}, "c"], "top_n": 2});
        let (_, cohere) = json_of(rerank(&body, Usage::Report, Bend::Straight));
        assert_eq!(cohere["results"].as_array().map(Vec::len), Some(2));
        assert_eq!(cohere["results"][1]["index"], 1);
        assert_eq!(cohere["meta"]["billed_units"]["search_units"], 1);
        let (_, absurd) = json_of(rerank(&body, Usage::Report, Bend::ExtraUnits));
        assert_eq!(
            absurd["meta"]["billed_units"]["search_units"],
            ABSURD_SEARCH_UNITS
        );
        let jina_body =
            json!({"model": "jina-reranker", "query": "q", "documents": ["a", {"text": "bb"}]});
        let (_, jina) = json_of(rerank(&jina_body, Usage::Report, Bend::Straight));
        assert_eq!(jina["usage"]["total_tokens"], 4);
        assert!(jina.get("meta").is_none());
    }
}
