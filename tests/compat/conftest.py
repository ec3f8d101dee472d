"""Shared fixtures of the SDK compatibility suite.

The suite talks to a running gateway described by environment variables;
`tests/python_sdk.rs` (`cargo test --test python_sdk`) starts one on a mock
upstream and runs pytest with them set:

    SWITCHYARD_URL            http://127.0.0.1:PORT (no trailing /v1)
    SWITCHYARD_TOKEN          a gateway token allowed every model below
    SWITCHYARD_OPENAI_MODEL   served by an openai-compatible provider (mock-gpt)
    SWITCHYARD_CLAUDE_MODEL   served by an anthropic provider (mock-claude)
    SWITCHYARD_GEMINI_MODEL   served by a gemini provider (mock-gemini)
    SWITCHYARD_OPENAI_NATIVE_MODEL  (optional) served by an openai provider,
                              which speaks the Responses API itself

The upstream is the mock: every answer is the text "one two three four five"
(5 completion tokens) or, when the request offers tools, one call of the first
tool with the arguments {"arg": "value"}.
"""

import os

import anthropic
import openai
import pytest

ENV_VARS = (
    "SWITCHYARD_URL",
    "SWITCHYARD_TOKEN",
    "SWITCHYARD_OPENAI_MODEL",
    "SWITCHYARD_CLAUDE_MODEL",
    "SWITCHYARD_GEMINI_MODEL",
)

TIMEOUT_SECONDS = 30.0


def pytest_configure(config):
    missing = [name for name in ENV_VARS if not os.environ.get(name)]
    if missing:
        raise pytest.UsageError(
            "the compat suite needs a running gateway; set "
            + ", ".join(missing)
            + " (or run `cargo test --test python_sdk`, which starts one)"
        )


def models():
    """Every model of the suite, one per provider kind."""
    return [
        os.environ["SWITCHYARD_OPENAI_MODEL"],
        os.environ["SWITCHYARD_CLAUDE_MODEL"],
        os.environ["SWITCHYARD_GEMINI_MODEL"],
    ]


def pytest_generate_tests(metafunc):
    # `model` runs a test once per provider kind; the test id is the model
    # name, so `-k mock-gpt` selects the openai-compatible runs.
    if "model" in metafunc.fixturenames:
        names = models()
        metafunc.parametrize("model", names, ids=names)


@pytest.fixture(scope="session")
def url():
    return os.environ["SWITCHYARD_URL"].rstrip("/")


@pytest.fixture(scope="session")
def token():
    return os.environ["SWITCHYARD_TOKEN"]


@pytest.fixture(scope="session")
def openai_model():
    return os.environ["SWITCHYARD_OPENAI_MODEL"]


@pytest.fixture(scope="session")
def claude_model():
    return os.environ["SWITCHYARD_CLAUDE_MODEL"]


@pytest.fixture(scope="session")
def all_models():
    return models()


@pytest.fixture
def openai_client(url, token):
    client = openai.OpenAI(
        base_url=url + "/v1", api_key=token, max_retries=0, timeout=TIMEOUT_SECONDS
    )
    yield client
    client.close()


@pytest.fixture
def anthropic_client(url, token):
    client = anthropic.Anthropic(
        base_url=url, api_key=token, max_retries=0, timeout=TIMEOUT_SECONDS
    )
    yield client
    client.close()
