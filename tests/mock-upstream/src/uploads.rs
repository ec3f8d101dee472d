//! OpenAI's upload endpoints: `POST …/audio/transcriptions`, `POST …/audio/translations` and
//! `POST …/images/edits`, whose bodies are `multipart/form-data` forms.
//!
//! The mock parses the form with its own small parser ([`parse_form`], independent of the
//! gateway's) and answers from what it received, so a test sees through the answer that the
//! gateway sent the right model and the file intact: every transcript is
//! `mock transcript of {bytes} bytes (fnv {checksum}) by {model}`, with [`crate::fnv1a64`] of the
//! `file` part; every edited image's `revised_prompt` names the model and the image bytes.
//!
//! Figures are deterministic:
//! - audio lasts [`AUDIO_BYTES_PER_SECOND`] bytes a second, unless the form has a
//!   `mock_duration` field (seconds, any JSON number: the hostile-upstream tests send absurd
//!   ones, which the mock reports as they are);
//! - whisper-style models answer `json` with `usage: {type: "duration", seconds}` (translations:
//!   `{"text"}` only, as OpenAI's do), `verbose_json` with `duration`, `srt` and `vtt` with one
//!   cue ending at the duration, `text` as is;
//! - a model whose name contains `4o` behaves like `gpt-4o-transcribe`: `json` or `text` only
//!   (others are a 400), with token usage [`TRANSCRIBE_INPUT_TOKENS`] and
//!   [`TRANSCRIBE_OUTPUT_TOKENS`] in `json`;
//! - image edits answer `n` images (default 1; a `mock_images` field overrides the count, for
//!   the tests of an upstream that answers more than asked), with `gpt-image`-style token usage
//!   ([`IMAGE_INPUT_TOKENS`], [`IMAGE_OUTPUT_TOKENS`]) when the model name contains `image`.

use serde_json::{Value, json};

use crate::openai;
use crate::router::{Answer, Usage};

/// Bytes of uploaded audio per second of it (16 kB/s, 8-bit 16 kHz mono).
pub const AUDIO_BYTES_PER_SECOND: usize = 16_000;
/// `usage.input_tokens` of a `4o` transcription.
pub const TRANSCRIBE_INPUT_TOKENS: i64 = 40;
/// `usage.output_tokens` of a `4o` transcription.
pub const TRANSCRIBE_OUTPUT_TOKENS: i64 = 12;
/// `usage.input_tokens` of an image edit by a `gpt-image`-style model.
pub const IMAGE_INPUT_TOKENS: i64 = 50;
/// `usage.output_tokens` of an image edit by a `gpt-image`-style model.
pub const IMAGE_OUTPUT_TOKENS: i64 = 272;

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

impl FormPart {
    /// A text field.
    pub fn text(name: &str, value: &str) -> FormPart {
        FormPart {
            name: name.to_owned(),
            file_name: None,
            content_type: None,
            data: value.as_bytes().to_vec(),
        }
    }

    /// A file part.
    pub fn file(name: &str, file_name: &str, content_type: &str, data: &[u8]) -> FormPart {
        FormPart {
            name: name.to_owned(),
            file_name: Some(file_name.to_owned()),
            content_type: Some(content_type.to_owned()),
            data: data.to_vec(),
        }
    }
}

/// `parts` as a `multipart/form-data` body with `boundary`.
pub fn form_body(boundary: &str, parts: &[FormPart]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{}\"", part.name).as_bytes(),
        );
        if let Some(file_name) = &part.file_name {
            out.extend_from_slice(format!("; filename=\"{file_name}\"").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(content_type) = &part.content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&part.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

/// The value of `key` in a header's `; key=value` parameters (quotes removed).
fn parameter(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case(key)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Parses a `multipart/form-data` body (the boundary from `content_type`); `None` when it is
/// not one, or is malformed.
pub fn parse_form(content_type: &str, body: &[u8]) -> Option<Vec<FormPart>> {
    let media = content_type.split(';').next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = parameter(content_type, "boundary").filter(|b| !b.is_empty())?;
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut at = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        let rest = body.get(at..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        if !rest.starts_with(b"\r\n") {
            return None;
        }
        let head_start = at + 2;
        let head_end = find(body, b"\r\n\r\n", head_start)?;
        let head = std::str::from_utf8(body.get(head_start..head_end)?).ok()?;
        let data_start = head_end + 4;
        let data_end = find(body, next_delimiter.as_bytes(), data_start)?;
        let mut part = FormPart {
            name: String::new(),
            file_name: None,
            content_type: None,
            data: body.get(data_start..data_end)?.to_vec(),
        };
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(':')?;
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = parameter(value, "name")?;
                part.file_name = parameter(value, "filename");
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.trim().to_owned());
            }
        }
        parts.push(part);
        at = data_end + next_delimiter.len();
    }
}

fn field<'a>(parts: &'a [FormPart], name: &str) -> Option<&'a FormPart> {
    parts.iter().find(|part| part.name == name)
}

fn text_field<'a>(parts: &'a [FormPart], name: &str) -> Option<&'a str> {
    field(parts, name).and_then(|part| std::str::from_utf8(&part.data).ok())
}

fn bad_request(message: &str) -> Answer {
    Answer::json(
        400,
        &openai::error_body(message, "invalid_request_error", None),
    )
}

fn plain(text: String) -> Answer {
    Answer::Full {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        body: text.into_bytes(),
    }
}

/// `h:mm:ss,mmm` (SRT) or `hh:mm:ss.mmm` (WebVTT).
fn cue_time(seconds: f64, separator: char) -> String {
    let millis = (seconds * 1000.0).round().max(0.0) as u64;
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// `POST …/audio/transcriptions` (`translation == false`) or `…/audio/translations`.
pub(crate) fn transcript(
    content_type: &str,
    body: &[u8],
    translation: bool,
    usage: Usage,
) -> Answer {
    let Some(parts) = parse_form(content_type, body) else {
        return bad_request("the request body must be multipart/form-data");
    };
    let Some(model) = text_field(&parts, "model") else {
        return bad_request("you must provide a model parameter");
    };
    let Some(file) = field(&parts, "file").filter(|file| file.file_name.is_some()) else {
        return bad_request("you must provide a file");
    };
    let format = text_field(&parts, "response_format").unwrap_or("json");
    let text = format!(
        "mock transcript of {} bytes (fnv {}) by {model}",
        file.data.len(),
        crate::fnv1a64(&file.data)
    );
    let seconds: Value = text_field(&parts, "mock_duration")
        .and_then(|figure| serde_json::from_str(figure).ok())
        .unwrap_or_else(|| json!(file.data.len() as f64 / AUDIO_BYTES_PER_SECOND as f64));
    let seconds_f64 = seconds.as_f64().unwrap_or(0.0);
    if model.contains("4o") {
        return match format {
            "json" if usage.reported() => Answer::json(
                200,
                &json!({"text": text, "usage": {"type": "tokens",
                    "input_tokens": TRANSCRIBE_INPUT_TOKENS,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": TRANSCRIBE_INPUT_TOKENS},
                    "output_tokens": TRANSCRIBE_OUTPUT_TOKENS,
                    "total_tokens": TRANSCRIBE_INPUT_TOKENS + TRANSCRIBE_OUTPUT_TOKENS}}),
            ),
            "json" => Answer::json(200, &json!({ "text": text })),
            "text" => plain(text),
            other => bad_request(&format!(
                "response_format '{other}' is not compatible with model '{model}'"
            )),
        };
    }
    match format {
        "json" if translation || !usage.reported() => Answer::json(200, &json!({ "text": text })),
        "json" => Answer::json(
            200,
            &json!({"text": text, "usage": {"type": "duration", "seconds": seconds}}),
        ),
        "verbose_json" => Answer::json(
            200,
            &json!({"task": if translation { "translate" } else { "transcribe" },
                "language": "english", "duration": seconds, "text": text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text}]}),
        ),
        "text" => plain(text),
        "srt" => plain(format!(
            "1\n{} --> {}\n{text}\n\n",
            cue_time(0.0, ','),
            cue_time(seconds_f64, ',')
        )),
        "vtt" => plain(format!(
            "WEBVTT\n\n{} --> {}\n{text}\n\n",
            cue_time(0.0, '.'),
            cue_time(seconds_f64, '.')
        )),
        other => bad_request(&format!("unknown response_format '{other}'")),
    }
}

/// `POST …/images/edits`.
pub(crate) fn image_edits(content_type: &str, body: &[u8], usage: Usage) -> Answer {
    let Some(parts) = parse_form(content_type, body) else {
        return bad_request("the request body must be multipart/form-data");
    };
    let Some(model) = text_field(&parts, "model") else {
        return bad_request("you must provide a model parameter");
    };
    let images: Vec<&FormPart> = parts
        .iter()
        .filter(|part| part.name == "image" || part.name == "image[]")
        .collect();
    if images.is_empty() || text_field(&parts, "prompt").is_none() {
        return bad_request("you must provide an image and a prompt");
    }
    let n = text_field(&parts, "mock_images")
        .or_else(|| text_field(&parts, "n"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1);
    let image_bytes: Vec<String> = images
        .iter()
        .map(|image| {
            format!(
                "{} bytes (fnv {})",
                image.data.len(),
                crate::fnv1a64(&image.data)
            )
        })
        .collect();
    let revised = format!("edited by {model}: {}", image_bytes.join(", "));
    let data: Vec<Value> = (0..n)
        .map(|_| json!({"b64_json": "iVBORw0KGgo=", "revised_prompt": revised}))
        .collect();
    let mut answer = json!({"created": crate::router::unix_now(), "data": data});
    if model.contains("image") && usage.reported() {
        answer["usage"] = json!({"input_tokens": IMAGE_INPUT_TOKENS,
            "output_tokens": IMAGE_OUTPUT_TOKENS,
            "total_tokens": IMAGE_INPUT_TOKENS + IMAGE_OUTPUT_TOKENS,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": IMAGE_INPUT_TOKENS - 10}});
    }
    Answer::json(200, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_round_trip() {
        let parts = vec![
            FormPart::text("model", "m"),
            FormPart::file("file", "a.wav", "audio/wav", b"\r\n-x--x\x00\xff\r\n"),
        ];
        let body = form_body("x", &parts);
        assert_eq!(
            parse_form("multipart/form-data; boundary=\"x\"", &body),
            Some(parts)
        );
        assert_eq!(parse_form("application/json", &body), None);
        assert_eq!(
            parse_form("multipart/form-data; boundary=x", &body[..body.len() - 9]),
            None
        );
    }

    #[test]
    fn cue_times() {
        assert_eq!(cue_time(3727.25, ','), "01:02:07,250");
        assert_eq!(cue_time(2.0, '.'), "00:00:02.000");
    }
}
