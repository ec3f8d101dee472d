//! The upload doors (issue 15, item 3): `POST /v1/images/edits`,
//! `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`, whose
//! bodies are `multipart/form-data` forms carrying a file. The form is
//! parsed (`gateway::multipart`), checked for what OpenAI requires, and
//! written out again for each attempt with `model` replaced by the
//! upstream model, under a fresh boundary; routing, failover, budgets and
//! the usage row are the shared pipeline's.
//!
//! What is metered, on top of tokens (the units are bounded by the request,
//! never taken on trust from the upstream):
//! - image edits: `images`, the answer's `data` entries, at most `n`;
//!   `gpt-image-1`'s token `usage` as prompt and completion tokens;
//! - transcripts: `audio_ms`, from the answer's `usage` when it is
//!   `{"type": "duration", "seconds": ...}`, else verbose JSON's
//!   `duration`, else (SRT, WebVTT) the last cue's end; at most 2 ms per
//!   byte of the uploaded file (no real codec is denser); token `usage`
//!   (`gpt-4o-transcribe`) as prompt and completion tokens.
//!
//! Plain `text` carries no figure, so the gateway asks the upstream for
//! JSON instead (translations: verbose JSON, since their JSON has no
//! `usage`) and answers the client the text it asked for; a translation's
//! `json` is likewise made from verbose JSON. The client never sees the
//! difference, and every transcript is billed by its length.
//!
//! Streamed transcripts and partial images (`stream=true`) are refused
//! (400) for now.

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::doors::media::{MAX_IMAGES, token_usage};
use crate::gateway::failover::{MalformedAnswer, StreamStart, UpstreamRequest};
use crate::gateway::multipart::{Form, new_boundary};
use crate::gateway::pipeline::{ClientCall, FrontDoor, serve};
use crate::gateway::relay::StreamMode;
use crate::providers::Media;
use crate::providers::openai::{ChatStreamState, Usage};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};
use switchyard_actors::ProviderSpec;

/// Milliseconds of audio one uploaded byte may stand for: the most an
/// upstream's duration is believed.
pub const AUDIO_MS_PER_BYTE: i64 = 2;

/// The media type OpenAI answers plain text, SRT and WebVTT transcripts with.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Which upload door the call came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    ImageEdits,
    Transcriptions,
    Translations,
}

impl Upload {
    fn media(self) -> Media {
        match self {
            Self::ImageEdits => Media::ImageEdits,
            Self::Transcriptions => Media::AudioTranscriptions,
            Self::Translations => Media::AudioTranslations,
        }
    }

    /// The form fields holding the uploaded files.
    fn file_fields(self) -> &'static [&'static str] {
        match self {
            Self::ImageEdits => &["image", "image[]", "mask"],
            Self::Transcriptions | Self::Translations => &["file"],
        }
    }
}

/// A transcript's `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transcript {
    Json,
    Text,
    Srt,
    VerboseJson,
    Vtt,
}

impl Transcript {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "json" => Self::Json,
            "text" => Self::Text,
            "srt" => Self::Srt,
            "verbose_json" => Self::VerboseJson,
            "vtt" => Self::Vtt,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
            Self::Srt => "srt",
            Self::VerboseJson => "verbose_json",
            Self::Vtt => "vtt",
        }
    }

    fn is_json(self) -> bool {
        matches!(self, Self::Json | Self::VerboseJson)
    }

    /// What the upstream is asked for, so that the answer carries a figure
    /// to bill (see the module documentation).
    fn upstream(self, upload: Upload) -> Self {
        match (upload, self) {
            (Upload::Transcriptions, Self::Text) => Self::Json,
            (Upload::Translations, Self::Text | Self::Json) => Self::VerboseJson,
            (_, asked) => asked,
        }
    }
}

/// A validated upload.
struct MediaUpload {
    upload: Upload,
    form: Form,
    model: String,
    boundary: String,
    content_type: String,
    /// Transcripts: the format the client asked for and the one the
    /// upstream is asked for.
    transcript: Option<(Transcript, Transcript)>,
    /// Image edits: `n`.
    images_asked: i64,
    /// Bytes of the uploaded files (audio: the bound on its duration).
    upload_bytes: i64,
    /// The upstream body of the last attempt, for its upstream model: a
    /// failover to the same model sends it again without writing it again.
    encoded: Option<(String, Bytes)>,
}

impl MediaUpload {
    fn parse(upload: Upload, content_type: Option<&str>, raw: Bytes) -> Result<Self, ApiError> {
        let form = Form::parse(content_type, raw)?;
        let model = match form.text("model")? {
            Some(model) if !model.trim().is_empty() => model.to_owned(),
            _ => {
                return Err(ApiError::bad_param(
                    "model",
                    "You must provide a model parameter",
                ));
            }
        };
        match form.text("stream")?.map(str::trim) {
            None | Some("false" | "False" | "0") => {}
            Some("true" | "True" | "1") => {
                return Err(ApiError::bad_param(
                    "stream",
                    format!(
                        "Streaming is not supported on {} yet; send stream=false",
                        upload.media().route()
                    ),
                ));
            }
            Some(_) => return Err(ApiError::bad_param("stream", "`stream` must be a boolean")),
        }
        let files: Vec<_> = form
            .parts
            .iter()
            .filter(|part| upload.file_fields().contains(&part.name.as_str()))
            .collect();
        let upload_bytes = files.iter().map(|part| part.data.len()).sum::<usize>();
        let mut transcript = None;
        let mut images_asked = 0;
        match upload {
            Upload::Transcriptions | Upload::Translations => {
                match files.as_slice() {
                    [] => {
                        return Err(ApiError::bad_param(
                            "file",
                            "You must provide a `file` (the audio to transcribe)",
                        ));
                    }
                    [file] if file.data.is_empty() => {
                        return Err(ApiError::bad_param("file", "The `file` is empty"));
                    }
                    [_] => {}
                    _ => {
                        return Err(ApiError::bad_param("file", "Send one `file`, not several"));
                    }
                }
                let asked = match form.text("response_format")? {
                    None => Transcript::Json,
                    Some(format) => Transcript::parse(format).ok_or_else(|| {
                        ApiError::bad_param(
                            "response_format",
                            "`response_format` must be one of json, text, srt, verbose_json, vtt",
                        )
                    })?,
                };
                transcript = Some((asked, asked.upstream(upload)));
            }
            Upload::ImageEdits => {
                if !files
                    .iter()
                    .any(|part| part.name != "mask" && !part.data.is_empty())
                {
                    return Err(ApiError::bad_param(
                        "image",
                        "You must provide an `image` (or `image[]`) file to edit",
                    ));
                }
                match form.text("prompt")? {
                    Some(prompt) if !prompt.trim().is_empty() => {}
                    _ => {
                        return Err(ApiError::bad_param("prompt", "You must provide a `prompt`"));
                    }
                }
                images_asked = match form.text("n")? {
                    None => 1,
                    Some(n) => n
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_IMAGES).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_param(
                                "n",
                                format!("`n` must be an integer from 1 to {MAX_IMAGES}"),
                            )
                        })?,
                };
            }
        }
        let boundary = new_boundary();
        Ok(Self {
            upload,
            content_type: format!("multipart/form-data; boundary={boundary}"),
            boundary,
            form,
            model,
            transcript,
            images_asked,
            upload_bytes: i64::try_from(upload_bytes).unwrap_or(i64::MAX),
            encoded: None,
        })
    }

    /// The upstream's answer as the client gets it, with its usage (always
    /// stated: the units are counted here, never estimated).
    fn read_answer(&self, body: Bytes) -> Result<(Bytes, Usage), MalformedAnswer> {
        if let Some((asked, sent)) = self.transcript {
            return self.transcript_answer(asked, sent, body);
        }
        let value: Value = serde_json::from_slice(&body).map_err(|_| MalformedAnswer)?;
        let data = value
            .get("data")
            .and_then(Value::as_array)
            .ok_or(MalformedAnswer)?;
        let answered = i64::try_from(data.len()).unwrap_or(i64::MAX);
        // Billed at most `n`: the meter clamps and flags more
        // (`media_bounds`).
        let usage = Usage {
            images: answered,
            ..token_usage(&value)
        };
        Ok((body, usage))
    }

    /// A transcript answer read in the format the upstream was asked for,
    /// answered in the client's, with its usage.
    fn transcript_answer(
        &self,
        asked: Transcript,
        sent: Transcript,
        body: Bytes,
    ) -> Result<(Bytes, Usage), MalformedAnswer> {
        let mut usage = Usage::default();
        let answer = if sent.is_json() {
            let value: Value = serde_json::from_slice(&body).map_err(|_| MalformedAnswer)?;
            let text = value
                .get("text")
                .and_then(Value::as_str)
                .ok_or(MalformedAnswer)?;
            usage = token_usage(&value);
            usage.audio_ms = audio_ms_of(&value);
            match asked {
                _ if asked == sent => body,
                Transcript::Text => Bytes::from(text.to_owned()),
                Transcript::Json => Bytes::from(json!({ "text": text }).to_string()),
                Transcript::Srt | Transcript::VerboseJson | Transcript::Vtt => body,
            }
        } else {
            let text = std::str::from_utf8(&body).map_err(|_| MalformedAnswer)?;
            if sent == Transcript::Vtt && !text.trim_start_matches('\u{feff}').starts_with("WEBVTT")
            {
                return Err(MalformedAnswer);
            }
            usage.audio_ms = last_cue_end_ms(text);
            body
        };
        Ok((answer, usage))
    }
}

impl UpstreamRequest for MediaUpload {
    fn path(&self, spec: &ProviderSpec, upstream_model: &str) -> Result<String, ApiError> {
        super::media_path(spec, &self.model, upstream_model, self.upload.media())
    }

    fn body(&mut self, _: &ProviderSpec, upstream_model: &str) -> Result<Bytes, ApiError> {
        if let Some((model, body)) = &self.encoded
            && model == upstream_model
        {
            return Ok(body.clone());
        }
        let mut replace = vec![("model", upstream_model)];
        if let Some((asked, sent)) = self.transcript
            && asked != sent
        {
            replace.push(("response_format", sent.as_str()));
        }
        let body = self.form.encode(&self.boundary, &replace);
        self.encoded = Some((upstream_model.to_owned(), body.clone()));
        Ok(body)
    }

    fn stream(&self) -> bool {
        false
    }

    fn content_type(&self) -> &str {
        &self.content_type
    }

    fn parse_answer(
        &self,
        _: &ProviderSpec,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), MalformedAnswer> {
        let (body, usage) = self.read_answer(body)?;
        Ok((body, Some(usage)))
    }
}

impl FrontDoor for MediaUpload {
    type Route = Upload;

    fn endpoint(upload: Upload) -> &'static str {
        upload.media().route()
    }

    fn parse(
        upload: Upload,
        raw: &Bytes,
        request: &HttpRequest,
        _: &AppState,
    ) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        MediaUpload::parse(upload, content_type, raw.clone())
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn max_tokens(&self) -> Option<i64> {
        None
    }

    /// An edit's `n` images. A transcript's audio is not held: its only
    /// bound before the answer (2 ms a byte) is far above any real
    /// recording, and holding it would refuse budgets that can pay.
    fn max_media_units(&self) -> Usage {
        Usage {
            images: self.images_asked,
            ..Usage::default()
        }
    }

    /// An edit is billed at most its `n` images, a transcript at most
    /// 2 ms of audio per uploaded byte (`AUDIO_MS_PER_BYTE`): an upstream's
    /// figure beyond is clamped and the row flagged.
    fn media_bounds(&self) -> Usage {
        Usage {
            images: self.images_asked,
            audio_ms: self.upload_bytes.saturating_mul(AUDIO_MS_PER_BYTE),
            ..Usage::default()
        }
    }

    /// Never called: uploads are not streamed.
    fn stream_mode(&self, _: Upload, _: &StreamStart) -> StreamMode {
        StreamMode::Native(ChatStreamState::new(false))
    }

    fn answer_content_type(&self) -> &'static str {
        match self.transcript {
            Some((asked, _)) if !asked.is_json() => TEXT_PLAIN,
            _ => "application/json",
        }
    }
}

/// Milliseconds of audio a JSON transcript states: `usage.seconds` when
/// `usage.type` is `duration`, else verbose JSON's `duration` (0: neither).
fn audio_ms_of(answer: &Value) -> i64 {
    let usage = answer.get("usage");
    let seconds = usage
        .filter(|usage| usage.get("type").and_then(Value::as_str) == Some("duration"))
        .and_then(|usage| usage.get("seconds"))
        .or_else(|| answer.get("duration"));
    let seconds = match seconds {
        Some(Value::Number(number)) => number.as_f64(),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    seconds.map_or(0, seconds_to_ms)
}

/// Seconds as whole milliseconds, rounded; nonsense (negative, NaN) is 0,
/// and the absurdly large saturates (bounded by the upload afterwards).
fn seconds_to_ms(seconds: f64) -> i64 {
    if seconds.is_finite() && seconds > 0.0 {
        // `as` saturates at i64::MAX.
        (seconds * 1000.0).round() as i64
    } else if seconds == f64::INFINITY {
        i64::MAX
    } else {
        0
    }
}

/// The end of the last cue of an SRT or WebVTT transcript, in milliseconds
/// (the latest end, in case cues are out of order); 0 without cues.
fn last_cue_end_ms(transcript: &str) -> i64 {
    transcript
        .lines()
        .filter_map(|line| line.split_once("-->"))
        .filter_map(|(_, end)| end.split_whitespace().next())
        .filter_map(timestamp_ms)
        .max()
        .unwrap_or(0)
}

/// `hh:mm:ss,mmm` (SRT) or `[hh:]mm:ss.mmm` (WebVTT) in milliseconds.
fn timestamp_ms(stamp: &str) -> Option<i64> {
    let (clock, millis) = stamp.split_once([',', '.'])?;
    let millis: i64 = millis.parse().ok().filter(|_| millis.len() == 3)?;
    let mut seconds: i64 = 0;
    let fields: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&fields.len()) {
        return None;
    }
    for field in fields {
        let value: i64 = field.parse().ok()?;
        seconds = seconds.checked_mul(60)?.checked_add(value)?;
    }
    seconds.checked_mul(1000)?.checked_add(millis)
}

/// `POST /v1/images/edits`.
pub async fn image_edits(call: ClientCall) -> HttpResponse {
    serve::<MediaUpload>(Upload::ImageEdits, call).await
}

/// `POST /v1/audio/transcriptions`.
pub async fn transcriptions(call: ClientCall) -> HttpResponse {
    serve::<MediaUpload>(Upload::Transcriptions, call).await
}

/// `POST /v1/audio/translations`.
pub async fn translations(call: ClientCall) -> HttpResponse {
    serve::<MediaUpload>(Upload::Translations, call).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=B";

    fn form(fields: &[(&str, &str)], file: (&str, usize)) -> Bytes {
        let mut out = String::new();
        for (name, value) in fields {
            out += &format!(
                "--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            );
        }
        let (name, bytes) = file;
        out += &format!(
            "--B\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n{}\r\n--B--\r\n",
            "x".repeat(bytes)
        );
        out.into()
    }

    #[test]
    fn hostile_durations_are_bounded_by_the_upload() -> Result<(), String> {
        let upload = MediaUpload::parse(
            Upload::Transcriptions,
            Some(TYPE),
            form(&[("model", "w")], ("file", 1000)),
        )
        .map_err(|error| error.to_string())?;
        let answer = |body: Value| {
            upload
                .read_answer(Bytes::from(body.to_string()))
                .map(|(_, usage)| usage.audio_ms)
                .map_err(|_| "malformed".to_owned())
        };
        // Read as stated; the meter bills at most 2 ms per byte.
        let absurd = json!({"text": "x", "usage": {"type": "duration", "seconds": 1e12}});
        assert_eq!(answer(absurd)?, 1_000_000_000_000_000);
        assert_eq!(upload.media_bounds().audio_ms, 2_000);
        let fair = json!({"text": "x", "usage": {"type": "duration", "seconds": 1.5}});
        assert_eq!(answer(fair)?, 1_500);
        assert!(answer(json!({"no": "text"})).is_err());
        Ok(())
    }

    #[test]
    fn images_are_at_most_those_asked_and_answered() -> Result<(), String> {
        let upload = MediaUpload::parse(
            Upload::ImageEdits,
            Some(TYPE),
            form(
                &[("model", "i"), ("prompt", "p"), ("n", "2")],
                ("image", 10),
            ),
        )
        .map_err(|error| error.to_string())?;
        let images = |count: usize| {
            let data: Vec<Value> = (0..count).map(|_| json!({"b64_json": "AA=="})).collect();
            upload
                .read_answer(Bytes::from(json!({ "data": data }).to_string()))
                .map(|(_, usage)| usage.images)
                .map_err(|_| "malformed".to_owned())
        };
        assert_eq!(images(1)?, 1);
        assert_eq!(images(9)?, 9);
        // Held and billed at most `n`: the meter clamps the rest.
        assert_eq!(
            (
                upload.max_media_units().images,
                upload.media_bounds().images
            ),
            (2, 2)
        );
        Ok(())
    }

    #[test]
    fn cue_times_of_srt_and_webvtt() {
        let srt = "1\n00:00:00,000 --> 00:00:03,000\nThe sun.\n\n2\n00:00:03,000 --> 01:02:07,250\nSets.\n";
        assert_eq!(last_cue_end_ms(srt), 3_727_250);
        let vtt = "WEBVTT\n\n00:01.000 --> 00:04.500 align:start\nHi\n";
        assert_eq!(last_cue_end_ms(vtt), 4_500);
        assert_eq!(last_cue_end_ms("plain words"), 0);
        assert_eq!(timestamp_ms("1:2"), None);
        assert_eq!(timestamp_ms("00:00:01,5"), None);
        assert_eq!(timestamp_ms("99999999999999999:00:00,000"), None);
    }

    #[test]
    fn durations_from_usage_then_verbose_json() {
        let whisper = json!({"text": "x", "usage": {"type": "duration", "seconds": 8}});
        assert_eq!(audio_ms_of(&whisper), 8_000);
        let verbose = json!({"text": "x", "duration": 8.4706});
        assert_eq!(audio_ms_of(&verbose), 8_471);
        assert_eq!(audio_ms_of(&json!({"text": "x", "duration": "2.5"})), 2_500);
        let tokens = json!({"text": "x", "usage": {"type": "tokens", "input_tokens": 14}});
        assert_eq!(audio_ms_of(&tokens), 0);
        assert_eq!(audio_ms_of(&json!({"text": "x", "duration": -3})), 0);
        assert_eq!(
            audio_ms_of(&json!({"text": "x", "duration": 1e300})),
            i64::MAX
        );
    }

    #[test]
    fn token_usage_of_media_answers() {
        let image = json!({"data": [], "usage": {"input_tokens": 50, "output_tokens": 4160,
            "total_tokens": 4210, "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}});
        assert_eq!(token_usage(&image), Usage::tokens(50, 4160));
        let chat_names = json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4}});
        assert_eq!(token_usage(&chat_names), Usage::tokens(3, 4));
        assert_eq!(token_usage(&json!({"text": "x"})), Usage::default());
    }

    #[test]
    fn text_is_asked_upstream_as_a_format_with_a_figure() {
        use Transcript::*;
        assert_eq!(Text.upstream(Upload::Transcriptions), Json);
        assert_eq!(Json.upstream(Upload::Transcriptions), Json);
        assert_eq!(Srt.upstream(Upload::Transcriptions), Srt);
        assert_eq!(Text.upstream(Upload::Translations), VerboseJson);
        assert_eq!(Json.upstream(Upload::Translations), VerboseJson);
        assert_eq!(Vtt.upstream(Upload::Translations), Vtt);
    }
}
