//! The JSON media doors (issue 15, item 3): `POST /v1/images/generations`,
//! `POST /v1/audio/speech` and `POST /v1/rerank`. Each body passes through
//! with `model` rewritten to providers whose adapter has the endpoint
//! (`Adapter::media_path`; a provider without it answers a clear 400), like
//! the completions door, and each call is metered in its own unit on top of
//! any tokens the upstream reports (`Usage::images`, `characters`,
//! `search_units`).
//!
//! An upstream's figures are data, not truth: every unit is bounded by what
//! the request could produce. Images billed are at most the `n` asked for
//! and the `data` entries actually answered; speech characters are counted
//! here from the request's `input`, never read from the upstream; rerank
//! search units are Cohere's `meta.billed_units.search_units`, else one per
//! call, at least one and at most one per document sent. Every answer the
//! door accepts carries a usage, so the meter never estimates tokens from a
//! body of base64 images or audio bytes.
//!
//! Not served yet (400, documented in the README): streamed image
//! generation (`stream: true`, gpt-image-1's partial images) and speech as
//! server-sent events (`stream_format: "sse"`): the meter would have to read
//! their usage from events this door does not relay.

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::failover::{MalformedAnswer, StreamStart, UpstreamRequest};
use crate::gateway::pipeline::{ClientCall, FrontDoor, serve};
use crate::gateway::relay::StreamMode;
use crate::providers::Media;
use crate::providers::openai::{self, ChatStreamState, Usage};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value};
use switchyard_actors::ProviderSpec;

/// OpenAI's bound on `n` for image generation and edits (dall-e-3 allows
/// only 1, which the upstream enforces).
pub const MAX_IMAGES: i64 = 10;

/// OpenAI's limit on speech `input`, in characters.
const MAX_SPEECH_CHARS: usize = 4096;

/// Speech `response_format`s and the media type OpenAI answers each with.
const SPEECH_FORMATS: [(&str, &str); 6] = [
    ("mp3", "audio/mpeg"),
    ("opus", "audio/opus"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("pcm", "audio/pcm"),
];

/// What the request bounds the bill by, per door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// `n` images (1 when absent).
    Images { n: i64 },
    /// Speech of `characters` input characters, answered as `content_type`.
    Speech {
        characters: i64,
        content_type: &'static str,
    },
    /// A rerank of `documents` documents.
    Rerank { documents: i64 },
}

/// A validated images, speech or rerank request.
struct MediaCall {
    media: Media,
    body: Map<String, Value>,
    model: String,
    asked: Asked,
}

impl MediaCall {
    fn parse(media: Media, raw: &[u8]) -> Result<Self, ApiError> {
        // OpenAI defaults images to dall-e-2 and speech has no default; a
        // gateway routes by model, so it is always required.
        let (body, model) = openai::object_with_model(raw)?;
        let asked = match media {
            Media::ImageGenerations => images(&body)?,
            Media::AudioSpeech => speech(&body)?,
            Media::Rerank => rerank(&body)?,
            // The multipart doors (`media_upload`) parse their own bodies.
            Media::ImageEdits | Media::AudioTranscriptions | Media::AudioTranslations => {
                return Err(ApiError::Internal);
            }
        };
        Ok(Self {
            media,
            body,
            model,
            asked,
        })
    }
}

/// A required non-empty string field.
fn required_text<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_) | Value::Null) | None => Err(ApiError::bad_param(
            field,
            format!("You must provide a non-empty `{field}` parameter"),
        )),
        Some(_) => Err(ApiError::bad_param(
            field,
            format!("`{field}` must be a string"),
        )),
    }
}

fn images(body: &Map<String, Value>) -> Result<Asked, ApiError> {
    required_text(body, "prompt")?;
    let n = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(n) => n
            .as_i64()
            .filter(|n| (1..=MAX_IMAGES).contains(n))
            .ok_or_else(|| {
                ApiError::bad_param(
                    "n",
                    format!("`n` must be an integer from 1 to {MAX_IMAGES}"),
                )
            })?,
    };
    match body.get("stream") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            return Err(ApiError::bad_param(
                "stream",
                "Streamed image generation (`stream: true`, partial images) is not supported \
                 by this gateway yet; leave `stream` unset",
            ));
        }
        Some(_) => return Err(ApiError::bad_param("stream", "`stream` must be a boolean")),
    }
    Ok(Asked::Images { n })
}

fn speech(body: &Map<String, Value>) -> Result<Asked, ApiError> {
    let input = required_text(body, "input")?;
    // Unicode scalar values, as OpenAI counts (and bills) them.
    let characters = input.chars().count();
    if characters > MAX_SPEECH_CHARS {
        return Err(ApiError::bad_param(
            "input",
            format!("`input` is {characters} characters long; the most is {MAX_SPEECH_CHARS}"),
        ));
    }
    match body.get("voice") {
        Some(Value::String(voice)) if !voice.is_empty() => {}
        // A custom voice: `{"id": "voice_..."}`.
        Some(Value::Object(voice)) if voice.get("id").is_some_and(Value::is_string) => {}
        None | Some(Value::Null) => {
            return Err(ApiError::bad_param(
                "voice",
                "You must provide a `voice` parameter",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_param(
                "voice",
                "`voice` must be a voice name or an object with an `id`",
            ));
        }
    }
    let content_type = match body.get("response_format") {
        None | Some(Value::Null) => "audio/mpeg",
        Some(Value::String(format)) => SPEECH_FORMATS
            .iter()
            .find(|(name, _)| name == format)
            .map(|(_, content_type)| *content_type)
            .ok_or_else(|| {
                ApiError::bad_param(
                    "response_format",
                    format!(
                        "`response_format` must be one of {}",
                        SPEECH_FORMATS.map(|(name, _)| name).join(", ")
                    ),
                )
            })?,
        Some(_) => {
            return Err(ApiError::bad_param(
                "response_format",
                "`response_format` must be a string",
            ));
        }
    };
    match body.get("stream_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(format)) if format == "audio" => {}
        Some(Value::String(format)) if format == "sse" => {
            return Err(ApiError::bad_param(
                "stream_format",
                "Speech as server-sent events (`stream_format: \"sse\"`) is not supported by \
                 this gateway yet; use `audio`",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_param(
                "stream_format",
                "`stream_format` must be `audio`",
            ));
        }
    }
    Ok(Asked::Speech {
        characters: i64::try_from(characters).unwrap_or(i64::MAX),
        content_type,
    })
}

fn rerank(body: &Map<String, Value>) -> Result<Asked, ApiError> {
    required_text(body, "query")?;
    let documents = match body.get("documents") {
        Some(Value::Array(documents)) if !documents.is_empty() => documents,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(ApiError::bad_param(
                "documents",
                "You must provide a non-empty `documents` array",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_param(
                "documents",
                "`documents` must be an array",
            ));
        }
    };
    let readable = |document: &Value| match document {
        Value::String(_) => true,
        Value::Object(document) => document.get("text").is_some_and(Value::is_string),
        _ => false,
    };
    if !documents.iter().all(readable) {
        return Err(ApiError::bad_param(
            "documents",
            "Each document must be a string or an object with a `text` string",
        ));
    }
    match body.get("top_n") {
        None | Some(Value::Null) => {}
        Some(top_n) if top_n.as_u64().is_some_and(|top_n| top_n >= 1) => {}
        Some(_) => {
            return Err(ApiError::bad_param(
                "top_n",
                "`top_n` must be a positive integer",
            ));
        }
    }
    Ok(Asked::Rerank {
        documents: i64::try_from(documents.len()).unwrap_or(i64::MAX),
    })
}

/// An integer count in a JSON answer (a float such as `1.0` rounded up);
/// 0 when absent or not a number.
fn count(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Number(number)) => number.as_i64().unwrap_or_else(|| {
            // Out of i64's range or fractional: saturating by `as`.
            number.as_f64().map_or(0, |float| float.ceil() as i64)
        }),
        _ => 0,
    }
}

/// Images answer: `data` entries (billed at most `n`: the meter clamps
/// and flags more, see `FrontDoor::media_bounds`), and gpt-image-1's token
/// `usage`.
fn image_usage(answer: &Value) -> Result<Usage, MalformedAnswer> {
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or(MalformedAnswer)?;
    let answered = i64::try_from(data.len()).unwrap_or(i64::MAX);
    Ok(Usage {
        images: answered,
        ..token_usage(answer)
    })
}

/// The token counts of a media answer's `usage`: `input_tokens` and
/// `output_tokens` (`gpt-image-1`, `gpt-4o-transcribe`), else the chat
/// names (`prompt_tokens`, `completion_tokens`, from OpenAI-compatible
/// servers that reuse them). The meter bounds them like any tokens.
pub(super) fn token_usage(answer: &Value) -> Usage {
    let Some(usage) = answer.get("usage").filter(|usage| usage.is_object()) else {
        return Usage::default();
    };
    let count = |field: &str| usage.get(field).and_then(Value::as_i64);
    match (count("input_tokens"), count("output_tokens")) {
        (None, None) => openai::usage_fields(usage).unwrap_or_default(),
        (input, output) => Usage::tokens(input.unwrap_or(0), output.unwrap_or(0)),
    }
}

/// Rerank answer: `results`, each with an `index` among the documents sent
/// and a numeric `relevance_score`; search units and input tokens from
/// Cohere's `meta.billed_units` or Jina's `usage.total_tokens`.
fn rerank_usage(answer: &Value, documents: i64) -> Result<Usage, MalformedAnswer> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or(MalformedAnswer)?;
    let well_formed = |result: &Value| {
        result
            .get("index")
            .and_then(Value::as_i64)
            .is_some_and(|index| (0..documents).contains(&index))
            && result.get("relevance_score").is_some_and(Value::is_number)
    };
    if !results.iter().all(well_formed) {
        return Err(MalformedAnswer);
    }
    let billed = answer.pointer("/meta/billed_units");
    let search_units = match billed.and_then(|billed| billed.get("search_units")) {
        // A call is never free; more than a unit per document is clamped
        // (and flagged) by the meter.
        Some(units) => count(Some(units)).max(1),
        None => 1,
    };
    let prompt_tokens = match answer.pointer("/usage/total_tokens") {
        Some(tokens) => count(Some(tokens)),
        None => count(billed.and_then(|billed| billed.get("input_tokens"))),
    };
    Ok(Usage {
        search_units,
        ..Usage::tokens(prompt_tokens, 0)
    })
}

impl UpstreamRequest for MediaCall {
    fn path(&self, spec: &ProviderSpec, upstream_model: &str) -> Result<String, ApiError> {
        super::media_path(spec, &self.model, upstream_model, self.media)
    }

    fn body(&mut self, _: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        super::with_upstream_model(&mut self.body, upstream_model)
    }

    fn stream(&self) -> bool {
        false
    }

    fn parse_answer(
        &self,
        _: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer> {
        let usage = match self.asked {
            Asked::Speech { characters, .. } => {
                // Audio is never a JSON document: one is an error object
                // answered with 200 (or an empty answer), not speech.
                if body.is_empty() || serde_json::from_slice::<Value>(&body).is_ok() {
                    return Err(MalformedAnswer);
                }
                Usage {
                    characters,
                    ..Usage::default()
                }
            }
            Asked::Images { .. } => {
                let answer: Value = serde_json::from_slice(&body).map_err(|_| MalformedAnswer)?;
                image_usage(&answer)?
            }
            Asked::Rerank { documents } => {
                let answer: Value = serde_json::from_slice(&body).map_err(|_| MalformedAnswer)?;
                rerank_usage(&answer, documents)?
            }
        };
        Ok((body, Some(usage)))
    }
}

impl FrontDoor for MediaCall {
    type Route = Media;

    fn endpoint(media: Media) -> &'static str {
        media.route()
    }

    fn parse(media: Media, raw: &Bytes, _: &HttpRequest, _: &AppState) -> Result<Self, ApiError> {
        MediaCall::parse(media, raw)
    }

    fn model(&self) -> &str {
        &self.model
    }

    /// No completion tokens to hold: images' output tokens, when reported,
    /// are settled as they come (bounded by `usage.max_completion_tokens`).
    fn max_tokens(&self) -> Option<i64> {
        Some(0)
    }

    /// What the call will be billed in its unit, held against money budgets
    /// before the call: `n` images, the input's characters, and for a
    /// rerank Cohere's rule of one search unit per 100 documents (the bill
    /// may reach one per document; holding that would refuse large reranks
    /// to budgets that can pay for them).
    fn max_media_units(&self) -> Usage {
        match self.asked {
            Asked::Images { n } => Usage {
                images: n,
                ..Usage::default()
            },
            Asked::Speech { characters, .. } => Usage {
                characters,
                ..Usage::default()
            },
            Asked::Rerank { documents } => Usage {
                search_units: (documents.max(1) + 99) / 100,
                ..Usage::default()
            },
        }
    }

    /// A rerank is billed at most one search unit per document (it holds
    /// fewer); the others at most what they hold.
    fn media_bounds(&self) -> Usage {
        match self.asked {
            Asked::Rerank { documents } => Usage {
                search_units: documents.max(1),
                ..Usage::default()
            },
            Asked::Images { .. } | Asked::Speech { .. } => self.max_media_units(),
        }
    }

    /// Never streamed (see the module docs).
    fn stream_mode(&self, _: Media, _: &StreamStart) -> StreamMode {
        StreamMode::Native(ChatStreamState::new(false))
    }

    fn answer_content_type(&self) -> &'static str {
        match self.asked {
            Asked::Speech { content_type, .. } => content_type,
            Asked::Images { .. } | Asked::Rerank { .. } => "application/json",
        }
    }
}

/// `POST /v1/images/generations`.
pub async fn image_generations(call: ClientCall) -> HttpResponse {
    serve::<MediaCall>(Media::ImageGenerations, call).await
}

/// `POST /v1/audio/speech`.
pub async fn speech_generation(call: ClientCall) -> HttpResponse {
    serve::<MediaCall>(Media::AudioSpeech, call).await
}

/// `POST /v1/rerank`.
pub async fn rerank_documents(call: ClientCall) -> HttpResponse {
    serve::<MediaCall>(Media::Rerank, call).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(media: Media, body: Value) -> Result<MediaCall, ApiError> {
        MediaCall::parse(media, body.to_string().as_bytes())
    }

    #[test]
    fn speech_characters_are_unicode_scalar_values_and_name_the_media_type() {
        let call = parse(
            Media::AudioSpeech,
            json!({"model": "tts", "input": "héllo 👋", "voice": "alloy", "response_format": "opus"}),
        );
        let asked = call.map(|call| call.asked).ok();
        assert_eq!(
            asked,
            Some(Asked::Speech {
                characters: 7,
                content_type: "audio/opus"
            })
        );
        let long = "é".repeat(MAX_SPEECH_CHARS + 1);
        assert!(
            parse(
                Media::AudioSpeech,
                json!({"model": "tts", "input": long, "voice": "alloy"})
            )
            .is_err()
        );
    }

    #[test]
    fn images_are_the_answers_entries_and_bounded_by_n() -> Result<(), ApiError> {
        let answer =
            json!({"data": [{}, {}, {}], "usage": {"input_tokens": 12, "output_tokens": 300}});
        let usage = image_usage(&answer).map_err(|_| ApiError::Internal)?;
        assert_eq!(
            (usage.images, usage.prompt_tokens, usage.completion_tokens),
            (3, 12, 300)
        );
        assert!(image_usage(&json!({"created": 1})).is_err());
        // The meter bills at most `n` of them (and flags the rest).
        let call = parse(
            Media::ImageGenerations,
            json!({"model": "img", "prompt": "a fox", "n": 2}),
        )?;
        assert_eq!(call.media_bounds().images, 2);
        Ok(())
    }

    #[test]
    fn rerank_units_are_bounded_by_the_documents() -> Result<(), MalformedAnswer> {
        let result = json!([{"index": 1, "relevance_score": 0.5}]);
        let huge = json!({"results": result, "meta": {"billed_units": {"search_units": 1e300, "input_tokens": 9}}});
        let usage = rerank_usage(&huge, 3)?;
        // Reported as it is; the meter bills at most one per document.
        assert_eq!((usage.search_units, usage.prompt_tokens), (i64::MAX, 9));
        let call = parse(
            Media::Rerank,
            json!({"model": "rr", "query": "q", "documents": ["a", "b", "c"]}),
        )
        .map_err(|_| MalformedAnswer)?;
        assert_eq!(
            (
                call.max_media_units().search_units,
                call.media_bounds().search_units
            ),
            (1, 3)
        );
        let jina = json!({"results": result, "usage": {"total_tokens": 40}});
        let usage = rerank_usage(&jina, 2)?;
        assert_eq!((usage.search_units, usage.prompt_tokens), (1, 40));
        let free = json!({"results": result, "meta": {"billed_units": {"search_units": -4}}});
        assert_eq!(rerank_usage(&free, 3)?.search_units, 1);
        let outside = json!({"results": [{"index": 5, "relevance_score": 0.1}]});
        assert!(rerank_usage(&outside, 2).is_err());
        Ok(())
    }
}
