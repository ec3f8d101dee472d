//! The upload doors (issue 15, item 3): `POST /v1/audio/transcriptions`,
//! `POST /v1/audio/translations` and `POST /v1/images/edits` with real
//! `multipart/form-data` bodies over real sockets. The mock parses what the
//! gateway sent with its own parser and answers from it (the model it got,
//! each file's length and checksum), so every test sees that the upload was
//! rewritten for the upstream and arrived intact; the usage row says what
//! was billed.

pub mod common;

use anyhow::Context;
use common::billing::{Billed, assert_billing_identity};
use common::{Reply, TestGateway, mock_provider};
use mock_upstream::uploads::{
    FormPart, IMAGE_INPUT_TOKENS, IMAGE_OUTPUT_TOKENS, TRANSCRIBE_INPUT_TOKENS,
    TRANSCRIBE_OUTPUT_TOKENS, form_body, parse_form,
};
use mock_upstream::{RecordedRequest, fnv1a64};
use serde_json::{Value, json};
use switchyard::config::{
    Backend, KeySettings, PriceSettings, ProviderKind, ProviderSettings, Secret, Settings,
};

on_both_backends!(
    transcription_reaches_the_upstream_rewritten_and_intact,
    gpt_4o_transcriptions_bill_their_tokens,
    image_edits_bill_images_and_tokens,
    a_failed_attempt_sends_the_upload_again_intact,
    an_exhausted_budget_refuses_media_calls,
    uploads_keep_the_billing_identity,
);

/// Whisper-style: billed by the second of audio.
const WHISPER: &str = "mock-whisper";
/// gpt-4o-transcribe-style (the mock: a name containing `4o`): tokens.
const TRANSCRIBE_4O: &str = "mock-4o-transcribe";
/// gpt-image-1-style (the mock: a name containing `image`): images and tokens.
const IMAGE_EDIT: &str = "mock-image-edit";

/// The boundary the test's client writes; the gateway must not reuse it.
const BOUNDARY: &str = "client-boundary-7MA4YWxkTrZu0gW";

/// The mock's audio rate: 16,000 bytes a second.
const AUDIO_BYTES: usize = 32_000;

/// Micro-USD per million tokens as the settings write them (USD).
const TRANSCRIBE_IN_USD: f64 = 6.0;
const TRANSCRIBE_OUT_USD: f64 = 10.0;
const IMAGE_IN_USD: f64 = 5.0;
const IMAGE_OUT_USD: f64 = 40.0;
/// USD per second of audio: whisper-1's $0.006 a minute.
const AUDIO_SECOND_USD: f64 = 0.0001;
/// USD per image, on top of the image model's tokens.
const IMAGE_USD: f64 = 0.04;

/// Nano-USD of `audio_ms` milliseconds at [`AUDIO_SECOND_USD`] a second.
fn audio_nanos(audio_ms: i64) -> i64 {
    audio_ms * PriceSettings::micros(AUDIO_SECOND_USD)
}

/// Nano-USD of `images` images at [`IMAGE_USD`].
fn image_nanos(images: i64) -> i64 {
    images * PriceSettings::micros(IMAGE_USD) * 1000
}

/// What one image edit's tokens cost (the mock's figures).
fn edit_token_nanos() -> i64 {
    nanos(IMAGE_INPUT_TOKENS, IMAGE_IN_USD) + nanos(IMAGE_OUTPUT_TOKENS, IMAGE_OUT_USD)
}

/// Nano-USD of `tokens` at `usd` per million tokens.
fn nanos(tokens: i64, usd: f64) -> i64 {
    tokens * PriceSettings::micros(usd) / 1000
}

/// Bytes that are not text and hold CR, LF and dashes: what a multipart
/// writer or reader that slips would damage.
fn binary(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

fn configure(settings: &mut Settings, mock: &mock_upstream::MockUpstream) {
    settings.providers = vec![mock_provider(
        mock,
        "mock",
        &[WHISPER, TRANSCRIBE_4O, IMAGE_EDIT],
        &["ok-1"],
    )];
    settings.redirects.insert("whisper".into(), WHISPER.into());
    settings.prices = vec![
        PriceSettings {
            model: WHISPER.to_owned(),
            per_audio_second: AUDIO_SECOND_USD,
            ..Default::default()
        },
        PriceSettings {
            model: TRANSCRIBE_4O.to_owned(),
            input_per_mtok: TRANSCRIBE_IN_USD,
            output_per_mtok: TRANSCRIBE_OUT_USD,
            ..Default::default()
        },
        PriceSettings {
            model: IMAGE_EDIT.to_owned(),
            input_per_mtok: IMAGE_IN_USD,
            output_per_mtok: IMAGE_OUT_USD,
            per_image: IMAGE_USD,
            ..Default::default()
        },
    ];
}

async fn gateway(backend: Backend) -> anyhow::Result<TestGateway> {
    TestGateway::start(backend, configure).await
}

/// POSTs `parts` as a multipart form to `path`.
async fn upload(
    gw: &TestGateway,
    path: &str,
    token: &str,
    parts: &[FormPart],
) -> anyhow::Result<Reply> {
    let bearer = format!("Bearer {token}");
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    gw.send(
        awc::http::Method::POST,
        path,
        &[
            ("authorization", bearer.as_str()),
            ("content-type", content_type.as_str()),
        ],
        Some(form_body(BOUNDARY, parts)),
    )
    .await
}

fn audio_parts(model: &str, audio: &[u8], extra: &[(&str, &str)]) -> Vec<FormPart> {
    let mut parts = vec![
        FormPart::text("model", model),
        FormPart::file("file", "speech.wav", "audio/wav", audio),
    ];
    parts.extend(
        extra
            .iter()
            .map(|(name, value)| FormPart::text(name, value)),
    );
    parts
}

/// The transcript the mock makes of `audio` sent to `model`.
fn transcript(audio: &[u8], model: &str) -> String {
    format!(
        "mock transcript of {} bytes (fnv {}) by {model}",
        audio.len(),
        fnv1a64(audio)
    )
}

/// The form the mock received, parsed by its own parser.
fn received(request: &RecordedRequest) -> anyhow::Result<Vec<FormPart>> {
    let content_type = request.header("content-type").context("no content-type")?;
    anyhow::ensure!(
        content_type.starts_with("multipart/form-data; boundary=")
            && !content_type.contains(BOUNDARY),
        "the upstream must get a multipart body under a boundary of the gateway's: {content_type}"
    );
    parse_form(content_type, &request.body).context("the upstream got a malformed form")
}

fn text_of<'a>(parts: &'a [FormPart], name: &str) -> Option<&'a str> {
    parts
        .iter()
        .find(|part| part.name == name)
        .and_then(|part| std::str::from_utf8(&part.data).ok())
}

fn last_form(gw: &TestGateway) -> anyhow::Result<Vec<FormPart>> {
    received(&gw.mock.last_request().context("the mock saw nothing")?)
}

async fn transcription_reaches_the_upstream_rewritten_and_intact(
    backend: Backend,
) -> anyhow::Result<()> {
    let gw = gateway(backend).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let audio = binary(AUDIO_BYTES, 7);
    let reply = upload(
        &gw,
        "/v1/audio/transcriptions",
        &token,
        &audio_parts(
            "whisper",
            &audio,
            &[("language", "en"), ("prompt", "Zürich")],
        ),
    )
    .await?;
    anyhow::ensure!(reply.status == 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let answer = reply.json()?;
    assert_eq!(answer["text"], json!(transcript(&audio, WHISPER)));
    assert_eq!(answer["usage"], json!({"type": "duration", "seconds": 2.0}));

    // The same parts in the same order; only the model is the upstream's.
    let parts = last_form(&gw)?;
    let names: Vec<&str> = parts.iter().map(|part| part.name.as_str()).collect();
    assert_eq!(names, ["model", "file", "language", "prompt"]);
    assert_eq!(text_of(&parts, "model"), Some(WHISPER));
    assert_eq!(
        parts.get(1),
        Some(&FormPart::file("file", "speech.wav", "audio/wav", &audio))
    );
    assert_eq!(text_of(&parts, "prompt"), Some("Zürich"));

    let logs = gw.request_logs().await?;
    let row = logs.last().context("no usage row")?;
    assert_eq!(logs.len(), 1);
    assert_eq!(row.endpoint, "/v1/audio/transcriptions");
    assert_eq!(row.requested_model.as_deref(), Some("whisper"));
    assert_eq!(row.upstream_model.as_deref(), Some(WHISPER));
    assert_eq!((row.status, row.attempts), (200, 1));
    // Billed by the second, not by tokens: no tokens, none estimated.
    assert_eq!((row.prompt_tokens, row.completion_tokens), (0, 0));
    assert!(!row.tokens_estimated);
    assert_eq!(row.audio_ms, 2_000);
    assert_eq!((row.images, row.characters, row.search_units), (0, 0, 0));
    assert!(row.priced);
    assert_eq!(row.cost_nanos, audio_nanos(2_000));
    gw.stop().await
}

async fn gpt_4o_transcriptions_bill_their_tokens(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let audio = binary(AUDIO_BYTES, 11);
    let json_reply = upload(
        &gw,
        "/v1/audio/transcriptions",
        &token,
        &audio_parts(TRANSCRIBE_4O, &audio, &[]),
    )
    .await?;
    anyhow::ensure!(json_reply.status == 200, "{}", json_reply.text());
    assert_eq!(
        json_reply.json()?["usage"]["input_tokens"],
        json!(TRANSCRIBE_INPUT_TOKENS)
    );
    // Plain text carries no usage: the gateway asks for JSON and answers
    // the text.
    let text_reply = upload(
        &gw,
        "/v1/audio/transcriptions",
        &token,
        &audio_parts(TRANSCRIBE_4O, &audio, &[("response_format", "text")]),
    )
    .await?;
    anyhow::ensure!(text_reply.status == 200, "{}", text_reply.text());
    assert_eq!(
        text_reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(text_reply.text(), transcript(&audio, TRANSCRIBE_4O));
    assert_eq!(text_of(&last_form(&gw)?, "response_format"), Some("json"));

    let cost = nanos(TRANSCRIBE_INPUT_TOKENS, TRANSCRIBE_IN_USD)
        + nanos(TRANSCRIBE_OUTPUT_TOKENS, TRANSCRIBE_OUT_USD);
    let logs = gw.request_logs().await?;
    assert_eq!(logs.len(), 2);
    for row in &logs {
        assert_eq!(row.endpoint, "/v1/audio/transcriptions");
        assert_eq!(
            (row.prompt_tokens, row.completion_tokens),
            (TRANSCRIBE_INPUT_TOKENS, TRANSCRIBE_OUTPUT_TOKENS)
        );
        assert!(row.priced && !row.tokens_estimated);
        // gpt-4o-transcribe states tokens, not a duration.
        assert_eq!(row.audio_ms, 0);
        assert_eq!(row.cost_nanos, cost);
    }
    gw.stop().await
}

/// Every response format reaches the client as it asked, with OpenAI's
/// media types; text (and a translation's JSON) is asked upstream in a
/// format that carries its duration.
#[actix_rt::test]
async fn transcript_formats_reach_the_client_as_asked() -> anyhow::Result<()> {
    let gw = gateway(Backend::Sqlite).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let audio = binary(AUDIO_BYTES, 3);
    let text = transcript(&audio, WHISPER);
    let plain = Some("text/plain; charset=utf-8");
    // (route, asked, sent upstream, media type, what the body must be)
    let srt = format!("1\n00:00:00,000 --> 00:00:02,000\n{text}\n\n");
    let vtt = format!("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\n{text}\n\n");
    let only_text = json!({ "text": text }).to_string();
    let cases = [
        ("transcriptions", "text", "json", plain, Some(text.as_str())),
        ("transcriptions", "srt", "srt", plain, Some(srt.as_str())),
        ("transcriptions", "vtt", "vtt", plain, Some(vtt.as_str())),
        (
            "transcriptions",
            "verbose_json",
            "verbose_json",
            Some("application/json"),
            None,
        ),
        (
            "translations",
            "text",
            "verbose_json",
            plain,
            Some(text.as_str()),
        ),
        (
            "translations",
            "json",
            "verbose_json",
            Some("application/json"),
            Some(only_text.as_str()),
        ),
        ("translations", "srt", "srt", plain, Some(srt.as_str())),
    ];
    for (route, asked, sent, media_type, body) in cases {
        let path = format!("/v1/audio/{route}");
        let reply = upload(
            &gw,
            &path,
            &token,
            &audio_parts("whisper", &audio, &[("response_format", asked)]),
        )
        .await?;
        anyhow::ensure!(reply.status == 200, "{route} {asked}: {}", reply.text());
        assert_eq!(reply.header("content-type"), media_type, "{route} {asked}");
        match body {
            Some(body) => assert_eq!(reply.text(), body, "{route} {asked}"),
            None => assert_eq!(reply.json()?["duration"], json!(2.0)),
        }
        let request = gw.mock.last_request().context("the mock saw nothing")?;
        assert!(request.path.ends_with(&path), "{}", request.path);
        let parts = received(&request)?;
        assert_eq!(
            text_of(&parts, "response_format"),
            Some(sent),
            "{route} {asked}"
        );
        assert_eq!(text_of(&parts, "model"), Some(WHISPER));
    }
    let logs = gw.request_logs().await?;
    // Every format is billed its two seconds: from `usage`, verbose JSON's
    // `duration` or the last cue's end.
    for row in &logs {
        assert_eq!(row.audio_ms, 2_000, "{}", row.endpoint);
        assert_eq!(row.cost_nanos, audio_nanos(2_000), "{}", row.endpoint);
    }
    let endpoints: Vec<&str> = logs.iter().map(|row| row.endpoint.as_str()).collect();
    assert_eq!(
        endpoints,
        [
            "/v1/audio/transcriptions",
            "/v1/audio/transcriptions",
            "/v1/audio/transcriptions",
            "/v1/audio/transcriptions",
            "/v1/audio/translations",
            "/v1/audio/translations",
            "/v1/audio/translations",
        ]
    );
    gw.stop().await
}

async fn image_edits_bill_images_and_tokens(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let (first, second, mask) = (binary(5000, 1), binary(7000, 2), binary(3000, 5));
    let parts = vec![
        FormPart::text("model", IMAGE_EDIT),
        FormPart::file("image[]", "a.png", "image/png", &first),
        FormPart::file("image[]", "b.png", "image/png", &second),
        FormPart::file("mask", "mask.png", "image/png", &mask),
        FormPart::text("prompt", "add a red hat"),
        FormPart::text("n", "2"),
    ];
    let reply = upload(&gw, "/v1/images/edits", &token, &parts).await?;
    anyhow::ensure!(reply.status == 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let answer = reply.json()?;
    let data = answer["data"].as_array().context("no data")?;
    assert_eq!(data.len(), 2);
    let revised = format!(
        "edited by {IMAGE_EDIT}: 5000 bytes (fnv {}), 7000 bytes (fnv {})",
        fnv1a64(&first),
        fnv1a64(&second)
    );
    assert_eq!(data[0]["revised_prompt"], json!(revised));
    assert_eq!(last_form(&gw)?, parts);

    let logs = gw.request_logs().await?;
    let row = logs.last().context("no usage row")?;
    assert_eq!(row.endpoint, "/v1/images/edits");
    assert_eq!(
        (row.prompt_tokens, row.completion_tokens),
        (IMAGE_INPUT_TOKENS, IMAGE_OUTPUT_TOKENS)
    );
    // Images on top of tokens, each at its own rate.
    assert_eq!(row.images, 2);
    assert_eq!(row.audio_ms, 0);
    assert_eq!(row.cost_nanos, edit_token_nanos() + image_nanos(2));
    gw.stop().await
}

/// A 500, a 429 or a malformed 200 from the first provider: the second
/// provider gets the very same upload, and the client its answer.
async fn a_failed_attempt_sends_the_upload_again_intact(backend: Backend) -> anyhow::Result<()> {
    for bad_key in ["e500-a", "r429-a", "badjson-a"] {
        let gw = TestGateway::start(backend, |settings, mock| {
            configure(settings, mock);
            let backup = mock_provider(mock, "spare", &[WHISPER], &["ok-b"]);
            settings.providers[0].keys = vec![KeySettings::Plain(Secret::new(bad_key))];
            settings.providers.push(backup);
        })
        .await?;
        let token = gw.create_token(json!({ "name": "media" })).await?;
        let audio = binary(AUDIO_BYTES, 13);
        let reply = upload(
            &gw,
            "/v1/audio/transcriptions",
            &token,
            &audio_parts("whisper", &audio, &[("language", "de")]),
        )
        .await?;
        anyhow::ensure!(reply.status == 200, "{bad_key}: {}", reply.text());
        assert_eq!(
            reply.header("x-switchyard-attempts"),
            Some("2"),
            "{bad_key} {:?} {} {}",
            reply.header("x-switchyard-provider"),
            gw.mock.calls(bad_key),
            gw.mock.calls("ok-b")
        );
        assert_eq!(reply.header("x-switchyard-provider"), Some("spare"));
        assert_eq!(reply.json()?["text"], json!(transcript(&audio, WHISPER)));
        let requests = gw.mock.requests();
        assert_eq!(requests.len(), 2, "{bad_key}");
        let forms = requests
            .iter()
            .map(received)
            .collect::<anyhow::Result<Vec<_>>>()?;
        assert_eq!(
            forms[0], forms[1],
            "{bad_key}: the retry must send the same form"
        );
        assert_eq!(text_of(&forms[1], "model"), Some(WHISPER));
        assert_eq!(text_of(&forms[1], "language"), Some("de"));
        assert_eq!(
            forms[1]
                .iter()
                .find(|part| part.name == "file")
                .map(|part| &part.data),
            Some(&audio),
            "{bad_key}"
        );
        assert_eq!(gw.mock.calls(bad_key), 1);
        assert_eq!(gw.mock.calls("ok-b"), 1);
        let logs = gw.request_logs().await?;
        assert_eq!(common::outcomes(&logs), [(200, None, 2)], "{bad_key}");
        assert_eq!(logs[0].provider.as_deref(), Some("spare"));
        assert_eq!(logs[0].audio_ms, 2_000);
        assert_eq!(logs[0].cost_nanos, audio_nanos(2_000));
        gw.stop().await?;
    }
    Ok(())
}

/// A money budget is held before the upload goes out (tokens and the `n`
/// images asked for) and charged the answer's real cost: an edit it cannot
/// cover, or any once it is spent, is refused (402) without reaching the
/// upstream.
async fn an_exhausted_budget_refuses_media_calls(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend).await?;
    let edit_cost = edit_token_nanos() + image_nanos(1);
    // Admission holds the default 1024 completion tokens at the output
    // rate and the one image asked for; the budget covers that once, but
    // not again after one edit.
    let hold = nanos(1024, IMAGE_OUT_USD) + image_nanos(1);
    let budget = hold + edit_cost / 2;
    let token = gw
        .create_token(json!({ "name": "budget", "budget_nanos": budget }))
        .await?;
    let parts = vec![
        FormPart::text("model", IMAGE_EDIT),
        FormPart::file("image", "a.png", "image/png", &binary(4000, 9)),
        FormPart::text("prompt", "a hat"),
    ];
    // Ten images cannot be paid for: refused before the upstream.
    let mut ten = parts.clone();
    ten.push(FormPart::text("n", "10"));
    let refused = upload(&gw, "/v1/images/edits", &token, &ten).await?;
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(gw.mock.total_calls(), 0);
    let first = upload(&gw, "/v1/images/edits", &token, &parts).await?;
    anyhow::ensure!(first.status == 200, "{}", first.text());
    let second = upload(&gw, "/v1/images/edits", &token, &parts).await?;
    assert_eq!(second.status, 402, "{}", second.text());
    assert_eq!(second.error_code().as_deref(), Some("budget_exhausted"));
    assert_eq!(gw.mock.total_calls(), 1);
    let logs = gw.request_logs().await?;
    let spent: i64 = logs.iter().map(|row| row.cost_nanos).sum();
    assert_eq!(spent, edit_cost);
    gw.stop().await
}

/// Bad uploads are the client's: 400 in OpenAI's error shape, naming the
/// field, and nothing reaches the upstream.
#[actix_rt::test]
async fn bad_uploads_are_refused_before_any_upstream_call() -> anyhow::Result<()> {
    let gw = gateway(Backend::Sqlite).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let bearer = format!("Bearer {token}");
    let form_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let form_type = form_type.as_str();
    let audio = binary(2000, 4);
    let whole = form_body(BOUNDARY, &audio_parts(WHISPER, &audio, &[]));
    let truncated = whole[..whole.len() / 2].to_vec();
    let form = |parts: &[FormPart]| form_body(BOUNDARY, parts);
    let image = FormPart::file("image", "a.png", "image/png", &audio);
    // (path, content type, body, param, words of the message)
    let cases: Vec<(&str, &str, Vec<u8>, Value, &str)> = vec![
        (
            "/v1/audio/transcriptions",
            "application/json",
            br#"{"model":"mock-whisper"}"#.to_vec(),
            Value::Null,
            "must be multipart/form-data",
        ),
        (
            "/v1/audio/transcriptions",
            "multipart/form-data",
            whole.clone(),
            Value::Null,
            "boundary",
        ),
        (
            "/v1/audio/translations",
            form_type,
            truncated,
            Value::Null,
            "malformed",
        ),
        (
            "/v1/audio/transcriptions",
            form_type,
            form(&[FormPart::text("model", WHISPER)]),
            json!("file"),
            "provide a `file`",
        ),
        (
            "/v1/audio/transcriptions",
            form_type,
            form(&[FormPart::file("file", "a.wav", "audio/wav", &audio)]),
            json!("model"),
            "model parameter",
        ),
        (
            "/v1/audio/transcriptions",
            form_type,
            form(&audio_parts(WHISPER, b"", &[])),
            json!("file"),
            "empty",
        ),
        (
            "/v1/audio/transcriptions",
            form_type,
            form(&audio_parts(WHISPER, &audio, &[("stream", "true")])),
            json!("stream"),
            "not supported",
        ),
        (
            "/v1/audio/transcriptions",
            form_type,
            form(&audio_parts(WHISPER, &audio, &[("response_format", "mp3")])),
            json!("response_format"),
            "must be one of",
        ),
        (
            "/v1/images/edits",
            form_type,
            form(&[FormPart::text("model", IMAGE_EDIT), image.clone()]),
            json!("prompt"),
            "prompt",
        ),
        (
            "/v1/images/edits",
            form_type,
            form(&[
                FormPart::text("model", IMAGE_EDIT),
                FormPart::text("prompt", "p"),
            ]),
            json!("image"),
            "image",
        ),
        (
            "/v1/images/edits",
            form_type,
            form(&[
                FormPart::text("model", IMAGE_EDIT),
                image,
                FormPart::text("prompt", "p"),
                FormPart::text("n", "11"),
            ]),
            json!("n"),
            "from 1 to 10",
        ),
    ];
    for (path, content_type, body, param, words) in cases {
        let reply = gw
            .send(
                awc::http::Method::POST,
                path,
                &[
                    ("authorization", bearer.as_str()),
                    ("content-type", content_type),
                ],
                Some(body),
            )
            .await?;
        assert_eq!(reply.status, 400, "{words}: {}", reply.text());
        let error = &reply.json()?["error"];
        assert_eq!(error["type"], json!("invalid_request_error"), "{words}");
        assert_eq!(error["param"], param, "{words}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{words}: {message}");
    }
    assert_eq!(gw.mock.total_calls(), 0);
    gw.stop().await
}

/// A model served by a provider kind without the endpoint: a clear 400
/// naming the provider, its kind and the endpoint, not an upstream 404.
#[actix_rt::test]
async fn a_provider_without_the_endpoint_is_named() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        settings.providers = vec![ProviderSettings {
            kind: ProviderKind::Anthropic,
            ..mock_provider(mock, "claude-mock", &["mock-claude"], &["ok-1"])
        }];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let reply = upload(
        &gw,
        "/v1/audio/translations",
        &token,
        &audio_parts("mock-claude", &binary(1000, 1), &[]),
    )
    .await?;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = reply.json()?["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for words in ["claude-mock", "anthropic", "/v1/audio/translations"] {
        assert!(message.contains(words), "{message}");
    }
    assert_eq!(gw.mock.total_calls(), 0);
    gw.stop().await
}

/// An upstream that claims more than the request can hold is relayed to
/// the client as it is but billed within the request's bounds: an absurd
/// duration at 2 ms per uploaded byte, more images than asked at `n`.
#[actix_rt::test]
async fn hostile_upstream_figures_are_billed_within_the_request() -> anyhow::Result<()> {
    let gw = gateway(Backend::Sqlite).await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let audio = binary(1000, 2);
    let reply = upload(
        &gw,
        "/v1/audio/transcriptions",
        &token,
        &audio_parts("whisper", &audio, &[("mock_duration", "1e12")]),
    )
    .await?;
    anyhow::ensure!(reply.status == 200, "{}", reply.text());
    assert_eq!(reply.json()?["usage"]["seconds"], json!(1e12));
    let parts = vec![
        FormPart::text("model", IMAGE_EDIT),
        FormPart::file("image", "a.png", "image/png", &binary(4000, 9)),
        FormPart::text("prompt", "a hat"),
        FormPart::text("n", "1"),
        FormPart::text("mock_images", "5"),
    ];
    let reply = upload(&gw, "/v1/images/edits", &token, &parts).await?;
    anyhow::ensure!(reply.status == 200, "{}", reply.text());
    assert_eq!(reply.json()?["data"].as_array().map(Vec::len), Some(5));

    let logs = gw.request_logs().await?;
    assert_eq!(common::outcomes(&logs), [(200, None, 1), (200, None, 1)]);
    assert_eq!(logs[0].audio_ms, 2_000);
    assert_eq!(logs[0].cost_nanos, audio_nanos(2_000));
    assert_eq!(logs[1].images, 1);
    assert_eq!(logs[1].cost_nanos, edit_token_nanos() + image_nanos(1));
    // Both rows say their upstream's figure was not believed.
    for row in &logs {
        assert!(
            row.usage_flags
                .as_deref()
                .is_some_and(|flags| flags.contains("usage_clamped")),
            "{row:?}"
        );
    }
    gw.stop().await
}

/// Uploads are bounded by `server.max_body_bytes` like every body (20 MiB
/// by default, below OpenAI's 25 MB for audio: docs/providers.md): a larger
/// one is refused with 413 before the upstream sees anything.
#[actix_rt::test]
async fn an_upload_over_the_body_limit_is_refused() -> anyhow::Result<()> {
    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        configure(settings, mock);
        settings.server.max_body_bytes = 64 * 1024;
    })
    .await?;
    let token = gw.create_token(json!({ "name": "media" })).await?;
    let fits = upload(
        &gw,
        "/v1/audio/transcriptions",
        &token,
        &audio_parts(WHISPER, &binary(60 * 1024, 1), &[]),
    )
    .await?;
    assert_eq!(fits.status, 200, "{}", fits.text());
    let too_large = upload(
        &gw,
        "/v1/audio/transcriptions",
        &token,
        &audio_parts(WHISPER, &binary(65 * 1024, 1), &[]),
    )
    .await?;
    assert_eq!(too_large.status, 413, "{}", too_large.text());
    assert_eq!(too_large.error_code().as_deref(), Some("request_too_large"));
    assert_eq!(gw.mock.total_calls(), 1);
    gw.stop().await
}

/// The billing identity over the upload doors (issue 15, item 5): after a
/// transcription, a translation asked as text, a token-billed transcription
/// and an image edit, the request logs, the token's counters, the billing
/// records and both rollups agree on every media unit and on the cost,
/// which is what the rates make of the units by hand.
async fn uploads_keep_the_billing_identity(backend: Backend) -> anyhow::Result<()> {
    let gw = gateway(backend).await?;
    let created = gw
        .admin_client()
        .create_token(json!({ "name": "media" }))
        .await?;
    let (token, id) = (created.token, created.id);
    let audio = binary(AUDIO_BYTES, 21);
    let edit = vec![
        FormPart::text("model", IMAGE_EDIT),
        FormPart::file("image", "a.png", "image/png", &binary(4000, 9)),
        FormPart::text("prompt", "a hat"),
        FormPart::text("n", "2"),
    ];
    let calls = [
        (
            "/v1/audio/transcriptions",
            audio_parts("whisper", &audio, &[]),
        ),
        (
            "/v1/audio/translations",
            audio_parts("whisper", &audio, &[("response_format", "text")]),
        ),
        (
            "/v1/audio/transcriptions",
            audio_parts(TRANSCRIBE_4O, &audio, &[]),
        ),
        ("/v1/images/edits", edit),
    ];
    for (path, parts) in &calls {
        let reply = upload(&gw, path, &token, parts).await?;
        anyhow::ensure!(reply.status == 200, "{path}: {}", reply.text());
    }
    // By hand: 2 images; two recordings of 2 s; tokens of the 4o
    // transcription and of the edit.
    let want_units = [2, 0, 4_000, 0];
    let want_tokens = TRANSCRIBE_INPUT_TOKENS
        + TRANSCRIBE_OUTPUT_TOKENS
        + IMAGE_INPUT_TOKENS
        + IMAGE_OUTPUT_TOKENS;
    let want_cost = 2 * audio_nanos(2_000)
        + nanos(TRANSCRIBE_INPUT_TOKENS, TRANSCRIBE_IN_USD)
        + nanos(TRANSCRIBE_OUTPUT_TOKENS, TRANSCRIBE_OUT_USD)
        + edit_token_nanos()
        + image_nanos(2);
    assert_billing_identity(
        &gw,
        id,
        Billed {
            requests: 4,
            units: want_units,
            tokens: want_tokens,
            cost_nanos: want_cost,
        },
    )
    .await?;
    gw.stop().await
}
