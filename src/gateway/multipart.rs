//! `multipart/form-data` bodies (RFC 7578) for the upload doors
//! (`doors::media_upload`): a bounded body that was already read is split
//! into its parts, and the parts are written out again for the upstream with
//! some text fields replaced (`model` by the upstream model) under a fresh
//! boundary.
//!
//! Parsing is `multer`'s (what axum uses): quoting, header folding and a
//! boundary's bytes inside a part are its business, not ours. It is an
//! async parser over a byte stream; the body here is one chunk already in
//! memory, so its future completes at its first poll ([`Form::parse`]
//! drives it without a runtime). `multer` copies each part out of its
//! input; the parts are then found again in the body ([`slice_back`]) and
//! made slices of it, so an upload is held once (plus the body written for
//! the upstream), not twice.
//!
//! Writing is simple enough to do by hand: each part is written with its
//! name, its file name and its content type, as browsers write them
//! (quotes and line breaks in names percent-escaped, as the WHATWG HTML
//! standard says). The boundary is 40 random alphanumerics (about 238 bits):
//! a client cannot guess it to forge a part, and an accidental match in a
//! file is beyond any real chance.

use crate::error::ApiError;
use actix_web::web::{Bytes, BytesMut};
use futures_util::FutureExt;
use rand::Rng;
use std::convert::Infallible;

/// More parts than any OpenAI upload has (image edits take up to 16
/// images): past this a body is refused rather than parsed on.
pub const MAX_PARTS: usize = 64;

/// Length of the boundaries this module writes.
const BOUNDARY_LEN: usize = 40;

/// One part of a form, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    /// Present on a file part (`filename="..."`).
    pub file_name: Option<String>,
    /// The part's own `Content-Type`, as sent.
    pub content_type: Option<String>,
    pub data: Bytes,
}

impl Part {
    /// The value of a text field: its data as UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// A parsed form: its parts in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub parts: Vec<Part>,
}

impl Form {
    /// Parses `body` as `multipart/form-data` with the boundary named by
    /// `content_type` (the request's header). Every failure is the
    /// client's: a 400 saying what is wrong.
    pub fn parse(content_type: Option<&str>, body: Bytes) -> Result<Self, ApiError> {
        let content_type = content_type.unwrap_or_default();
        let is_form = content_type
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("multipart/form-data"));
        if !is_form {
            return Err(ApiError::bad_request(format!(
                "The request body must be multipart/form-data (got content-type `{}`)",
                if content_type.is_empty() {
                    "none"
                } else {
                    content_type
                }
            )));
        }
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            ApiError::bad_request(
                "The multipart/form-data content type must name its boundary \
                 (`multipart/form-data; boundary=...`)",
            )
        })?;
        let input = body.clone();
        let stream = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(input)));
        let mut multipart = multer::Multipart::new(stream, boundary.clone());
        let parsed = async move {
            let mut parts = Vec::new();
            while let Some(field) = multipart.next_field().await? {
                if parts.len() == MAX_PARTS {
                    return Ok(Err(ApiError::bad_request(format!(
                        "The form has more than {MAX_PARTS} parts"
                    ))));
                }
                let Some(name) = field.name().map(str::to_owned) else {
                    return Ok(Err(ApiError::bad_request(
                        "Every part of the form must have a name (Content-Disposition: \
                         form-data; name=\"...\")",
                    )));
                };
                let file_name = field.file_name().map(str::to_owned);
                let content_type = field
                    .headers()
                    .get("content-type")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let data = field.bytes().await?;
                parts.push(Part {
                    name,
                    file_name,
                    content_type,
                    data,
                });
            }
            Ok::<_, multer::Error>(Ok(Self { parts }))
        }
        .now_or_never();
        match parsed {
            Some(Ok(Ok(mut form))) => {
                slice_back(&body, &boundary, &mut form.parts);
                Ok(form)
            }
            Some(Ok(Err(refused))) => Err(refused),
            Some(Err(error)) => Err(ApiError::bad_request(format!(
                "The multipart/form-data body is malformed: {error}"
            ))),
            // The whole body is one ready chunk: the parser cannot wait.
            None => Err(ApiError::Internal),
        }
    }

    /// The parts named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Part> + 'a {
        self.parts.iter().filter(move |part| part.name == name)
    }

    /// The text field `name`: `Ok(None)` when absent, 400 when it is sent
    /// twice, as a file or not as UTF-8.
    pub fn text(&self, name: &'static str) -> Result<Option<&str>, ApiError> {
        let mut parts = self.named(name);
        let Some(part) = parts.next() else {
            return Ok(None);
        };
        if parts.next().is_some() {
            return Err(ApiError::bad_param(
                name,
                format!("The form field `{name}` is sent more than once"),
            ));
        }
        if part.file_name.is_some() {
            return Err(ApiError::bad_param(
                name,
                format!("The form field `{name}` must be a text field, not a file"),
            ));
        }
        part.text().map(Some).ok_or_else(|| {
            ApiError::bad_param(name, format!("The form field `{name}` is not UTF-8 text"))
        })
    }

    /// The form written for the upstream under `boundary`: the parts in the
    /// same order, text fields named in `replace` given the new value
    /// (those absent are appended at the end).
    pub fn encode(&self, boundary: &str, replace: &[(&str, &str)]) -> Bytes {
        let size = self
            .parts
            .iter()
            .map(|part| part.data.len() + 256)
            .sum::<usize>()
            + replace.len() * 128
            + 64;
        let mut out = BytesMut::with_capacity(size);
        let value_for = |name: &str| {
            replace
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, value)| *value)
        };
        for part in &self.parts {
            match value_for(&part.name) {
                Some(value) => write_part(&mut out, boundary, &part.name, None, None, value),
                None => write_part(
                    &mut out,
                    boundary,
                    &part.name,
                    part.file_name.as_deref(),
                    part.content_type.as_deref(),
                    &part.data,
                ),
            }
        }
        for (name, value) in replace {
            if self.named(name).next().is_none() {
                write_part(&mut out, boundary, name, None, None, value);
            }
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        out.freeze()
    }
}

/// Makes each part's data a slice of `body` instead of `multer`'s copy,
/// walking the body's delimiters in step with the parsed parts. A slice
/// replaces a copy only when its bytes are equal, so the parse stays
/// `multer`'s whatever this walk makes of an odd body; at the first
/// disagreement the walk stops and the remaining parts keep their copies.
fn slice_back(body: &Bytes, boundary: &str, parts: &mut [Part]) {
    let delimiter = format!("\r\n--{boundary}");
    let next_part = memchr::memmem::Finder::new(delimiter.as_bytes());
    let header_end = memchr::memmem::Finder::new(b"\r\n\r\n");
    // The first delimiter may open the body, without a line break before it.
    let Some(first) = memchr::memmem::find(body, &delimiter.as_bytes()[2..]) else {
        return;
    };
    let mut cursor = first + delimiter.len() - 2;
    for part in parts {
        let Some(start) = body
            .get(cursor..)
            .and_then(|rest| header_end.find(rest))
            .map(|at| cursor + at + 4)
        else {
            return;
        };
        let Some(end) = body
            .get(start..)
            .and_then(|rest| next_part.find(rest))
            .map(|at| start + at)
        else {
            return;
        };
        if body.get(start..end) != Some(&part.data[..]) {
            return;
        }
        part.data = body.slice(start..end);
        cursor = end + delimiter.len();
    }
}

/// A fresh boundary for a body this gateway writes.
pub fn new_boundary() -> String {
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(BOUNDARY_LEN)
        .map(char::from)
        .collect();
    format!("switchyard-{random}")
}

fn write_part(
    out: &mut BytesMut,
    boundary: &str,
    name: &str,
    file_name: Option<&str>,
    content_type: Option<&str>,
    data: impl AsRef<[u8]>,
) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
    out.extend_from_slice(escape(name).as_bytes());
    out.extend_from_slice(b"\"");
    if let Some(file_name) = file_name {
        out.extend_from_slice(b"; filename=\"");
        out.extend_from_slice(escape(file_name).as_bytes());
        out.extend_from_slice(b"\"");
    }
    out.extend_from_slice(b"\r\n");
    if let Some(content_type) = content_type {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data.as_ref());
    out.extend_from_slice(b"\r\n");
}

/// A name or file name inside a quoted header parameter: `"`, CR and LF
/// percent-escaped, as browsers do (WHATWG HTML, multipart/form-data
/// encoding algorithm).
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['"', '\r', '\n']) {
        value
            .replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
            .into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=XyZ";

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Bytes {
        let mut out = Vec::new();
        for (name, file, data) in parts {
            out.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
            if let Some(file) = file {
                out.extend_from_slice(format!("; filename=\"{file}\"").as_bytes());
                out.extend_from_slice(b"\r\nContent-Type: audio/wav");
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out.into()
    }

    #[test]
    fn parts_round_trip_with_a_field_replaced_and_one_added() -> Result<(), ApiError> {
        // A file holding CR LF, dashes and the boundary (not as a
        // delimiter: that would end the part) survives.
        let audio: &[u8] = b"\x00\xffRIFF\r\n-XyZ\r\n-- --XyZ\x01\r\n--";
        let raw = body(&[
            ("model", None, b"alias"),
            ("file", Some("a b.wav"), audio),
            ("language", None, b"en"),
        ]);
        let form = Form::parse(Some(TYPE), raw.clone())?;
        assert_eq!(form.parts.len(), 3);
        // Every part is a slice of the body, not a copy.
        let within = raw.as_ptr_range();
        for part in &form.parts {
            assert!(within.contains(&part.data.as_ptr()), "{} copied", part.name);
        }
        assert_eq!(form.text("model")?, Some("alias"));
        assert_eq!(form.named("file").next().map(|p| &p.data[..]), Some(audio));
        let boundary = new_boundary();
        assert_eq!(boundary.len(), "switchyard-".len() + BOUNDARY_LEN);
        let out = form.encode(
            &boundary,
            &[("model", "upstream-1"), ("response_format", "json")],
        );
        let again = Form::parse(
            Some(&format!("multipart/form-data; boundary={boundary}")),
            out,
        )?;
        let names: Vec<&str> = again.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["model", "file", "language", "response_format"]);
        assert_eq!(again.text("model")?, Some("upstream-1"));
        assert_eq!(again.text("response_format")?, Some("json"));
        let file = again.named("file").next();
        assert_eq!(file.map(|p| &p.data[..]), Some(audio));
        assert_eq!(file.and_then(|p| p.file_name.as_deref()), Some("a b.wav"));
        // Quotes and line breaks cannot break out of the quoted parameter.
        assert_eq!(escape("a\"b\r\n.wav"), "a%22b%0D%0A.wav");
        assert_eq!(
            file.and_then(|p| p.content_type.as_deref()),
            Some("audio/wav")
        );
        Ok(())
    }

    fn refused(content_type: Option<&str>, body: &[u8]) -> String {
        match Form::parse(content_type, Bytes::copy_from_slice(body)) {
            Ok(form) => panic!("parsed {form:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn bad_bodies_are_the_clients_fault() {
        assert!(refused(Some("application/json"), b"{}").contains("must be multipart"));
        assert!(refused(None, b"").contains("content-type `none`"));
        assert!(refused(Some("multipart/form-data"), b"").contains("boundary"));
        let whole = body(&[("model", None, b"m")]);
        let cut = &whole[..whole.len() - 12];
        assert!(refused(Some(TYPE), cut).contains("malformed"));
        assert!(refused(Some(TYPE), b"garbage").contains("malformed"));
    }

    #[test]
    fn text_fields_are_single_utf8_and_not_files() -> Result<(), ApiError> {
        let form = Form::parse(
            Some(TYPE),
            body(&[
                ("n", None, b"1"),
                ("n", None, b"2"),
                ("model", Some("m.txt"), b"m"),
                ("prompt", None, b"\xff"),
            ]),
        )?;
        assert!(form.text("n").is_err());
        assert!(form.text("model").is_err());
        assert!(form.text("prompt").is_err());
        assert_eq!(form.text("absent")?, None);
        Ok(())
    }

    #[test]
    fn too_many_parts_are_refused() {
        let many: Vec<(&str, Option<&str>, &[u8])> =
            (0..=MAX_PARTS).map(|_| ("x", None, &b"1"[..])).collect();
        assert!(refused(Some(TYPE), &body(&many)).contains("more than"));
    }

    mod props {
        use super::*;
        use actix_web::ResponseError;
        use proptest::prelude::*;

        fn part() -> impl Strategy<Value = Part> {
            (
                "[a-z_\\[\\]]{1,12}",
                proptest::option::of("[a-zA-Z0-9 ._-]{1,20}"),
                proptest::option::of("[a-z]{1,8}/[a-z0-9.+-]{1,12}"),
                proptest::collection::vec(any::<u8>(), 0..2048),
            )
                .prop_map(|(name, file_name, content_type, data)| Part {
                    name,
                    file_name,
                    content_type,
                    data: data.into(),
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            /// Whatever the parts hold, writing them and parsing them
            /// again gives them back, each a slice of the written body.
            #[test]
            fn written_forms_parse_back_to_their_parts(
                parts in proptest::collection::vec(part(), 0..8)
            ) {
                let form = Form { parts };
                let boundary = new_boundary();
                let body = form.encode(&boundary, &[]);
                let content_type = format!("multipart/form-data; boundary={boundary}");
                let parsed = Form::parse(Some(&content_type), body.clone())
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(&parsed, &form);
                let within = body.as_ptr_range();
                for part in parsed.parts.iter().filter(|part| !part.data.is_empty()) {
                    prop_assert!(within.contains(&part.data.as_ptr()));
                }
            }

            /// Any bytes under a multipart content type: parts or a 400,
            /// never a panic or a 500.
            #[test]
            fn arbitrary_bodies_are_parsed_or_refused(
                body in proptest::collection::vec(any::<u8>(), 0..512),
                prefix in proptest::option::of("--XyZ(\r\n|--)?"),
            ) {
                let mut bytes = prefix.unwrap_or_default().into_bytes();
                bytes.extend_from_slice(&body);
                match Form::parse(Some(TYPE), bytes.into()) {
                    Ok(_) => {}
                    Err(error) => prop_assert_eq!(error.status_code().as_u16(), 400),
                }
            }
        }
    }
}
