//! The official `openai`, `anthropic` and `google-genai` Python SDKs against
//! the real gateway: `tests/compat/` (pytest) run on a gateway with one provider of
//! each kind on the mock upstream. `make compat-deps` (a dependency of
//! `make test`) installs the SDKs into `.venv/`.

pub mod common;

use anyhow::bail;
use common::{TestGateway, mock_provider, python};
use mock_upstream::RecordedRequest;
use serde_json::json;
use std::time::Duration;
use switchyard::config::{Backend, ProviderKind, ProviderSettings};

const OPENAI_MODEL: &str = "mock-gpt";
/// Served by an `openai` provider, which speaks the Responses API itself.
const OPENAI_NATIVE_MODEL: &str = "mock-gpt-native";
const CLAUDE_MODEL: &str = "mock-claude";
const GEMINI_MODEL: &str = "mock-gemini";
/// Image generation and speech, on the openai-compatible provider
/// (`tests/compat/test_openai_media.py`).
const IMAGE_MODEL: &str = "mock-image";
const TTS_MODEL: &str = "mock-tts";
/// The upload doors' models (tests/compat/test_openai_audio.py), served by
/// the openai-compatible provider.
const WHISPER_MODEL: &str = "mock-whisper";
const IMAGE_EDIT_MODEL: &str = "mock-image-edit";

/// The whole suite takes seconds; this only stops a hung gateway from
/// hanging `cargo test`.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables of the test's environment that would change what the SDKs send
/// or where (credentials, base URLs, profiles): not passed on (proxies and
/// Python paths never are, see `common::python`).
const SCRUBBED_PREFIXES: &[&str] = &["OPENAI_", "ANTHROPIC_", "GOOGLE_", "GEMINI_"];

#[actix_rt::test]
async fn official_python_sdks_pass_the_compat_suite() -> anyhow::Result<()> {
    let python = python::venv_tool("python")?;

    let gw = TestGateway::start(Backend::Sqlite, |settings, mock| {
        let openai = mock_provider(
            mock,
            "openai-mock",
            &[
                OPENAI_MODEL,
                IMAGE_MODEL,
                TTS_MODEL,
                WHISPER_MODEL,
                IMAGE_EDIT_MODEL,
            ],
            &["ok-openai"],
        );
        let claude = ProviderSettings {
            kind: ProviderKind::Anthropic,
            ..mock_provider(mock, "claude-mock", &[CLAUDE_MODEL], &["ok-claude"])
        };
        let gemini = ProviderSettings {
            kind: ProviderKind::Gemini,
            base_url: format!("http://{}/v1beta", mock.addr()),
            ..mock_provider(mock, "gemini-mock", &[GEMINI_MODEL], &["ok-gemini"])
        };
        let native = ProviderSettings {
            kind: ProviderKind::Openai,
            ..mock_provider(
                mock,
                "openai-native",
                &[OPENAI_NATIVE_MODEL],
                &["ok-native"],
            )
        };
        settings.providers = vec![openai, claude, gemini, native];
    })
    .await?;
    let token = gw.create_token(json!({ "name": "python-sdk" })).await?;

    let mut command = python::command(&python, SCRUBBED_PREFIXES);
    command
        .args([
            "-m",
            "pytest",
            "tests/compat",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(python::root())
        .env("SWITCHYARD_URL", &gw.url)
        .env("SWITCHYARD_TOKEN", &token)
        .env("SWITCHYARD_OPENAI_MODEL", OPENAI_MODEL)
        .env("SWITCHYARD_OPENAI_NATIVE_MODEL", OPENAI_NATIVE_MODEL)
        .env("SWITCHYARD_CLAUDE_MODEL", CLAUDE_MODEL)
        .env("SWITCHYARD_GEMINI_MODEL", GEMINI_MODEL)
        .env("SWITCHYARD_IMAGE_MODEL", IMAGE_MODEL)
        .env("SWITCHYARD_TTS_MODEL", TTS_MODEL)
        .env("SWITCHYARD_WHISPER_MODEL", WHISPER_MODEL)
        .env("SWITCHYARD_IMAGE_EDIT_MODEL", IMAGE_EDIT_MODEL);
    let (status, report) = python::run_bounded(command, PYTEST_TIMEOUT).await?;
    let seen = gw.mock.requests();
    let stopped = gw.stop().await;

    match status {
        Some(status) if status.success() => println!("{report}"),
        Some(status) => bail!("the SDK compat suite failed ({status}):\n{report}"),
        None => {
            bail!("the SDK compat suite did not finish in {PYTEST_TIMEOUT:?}; killed it:\n{report}")
        }
    }
    stopped?;

    // Each provider was reached in its own dialect: a green suite must not
    // come from every model quietly landing on one provider. (Not checked
    // when PYTEST_ADDOPTS selects part of the suite, e.g. `-k mock-gpt`.)
    if std::env::var_os("PYTEST_ADDOPTS").is_some_and(|opts| !opts.is_empty()) {
        return Ok(());
    }
    for (key, dialect) in [
        ("ok-openai", "/chat/completions"),
        ("ok-openai", "/embeddings"),
        ("ok-openai", "/v1/completions"),
        ("ok-openai", "/v1/images/generations"),
        ("ok-openai", "/v1/audio/speech"),
        // The upload doors (multipart).
        ("ok-openai", "/audio/transcriptions"),
        ("ok-openai", "/audio/translations"),
        ("ok-openai", "/images/edits"),
        // The Responses API: passed through to the openai kind only.
        ("ok-native", "/v1/responses"),
        ("ok-claude", "/v1/messages"),
        ("ok-gemini", ":generateContent"),
        ("ok-gemini", ":streamGenerateContent"),
        // The Gemini door's token count, passed through.
        ("ok-gemini", ":countTokens"),
    ] {
        let reached = seen
            .iter()
            .any(|request| request_key(request) == Some(key) && request.path.contains(dialect));
        if !reached {
            let paths: Vec<_> = seen.iter().map(|request| &request.path).collect();
            bail!("the mock never saw {dialect} with the key {key}; it saw {paths:?}");
        }
    }
    Ok(())
}

/// The provider key a request carried, in any provider's header.
fn request_key(request: &RecordedRequest) -> Option<&str> {
    if let Some(bearer) = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        return Some(bearer);
    }
    ["x-api-key", "api-key", "x-goog-api-key"]
        .iter()
        .find_map(|name| request.header(name))
        .or_else(|| {
            let (_, query) = request.path.split_once('?')?;
            query.split('&').find_map(|pair| pair.strip_prefix("key="))
        })
}
