"""The official `openai` SDK's image generation and text-to-speech calls
through the gateway's media doors (`/v1/images/generations`,
`/v1/audio/speech`), served by the mock's openai-compatible provider.

`tests/python_sdk.rs` names the models in SWITCHYARD_IMAGE_MODEL and
SWITCHYARD_TTS_MODEL (and checks that the mock saw both endpoints).
"""

import base64
import os

import openai
import pytest

# The mock's speech answer: 64 KiB of the byte pattern (i * 31 + 7) % 251
# (tests/mock-upstream, `speech_bytes`).
SPEECH_BYTES = 65_536

# gpt-image-style output tokens the mock reports per image.
IMAGE_OUTPUT_TOKENS = 100


def media_model(name):
    model = os.environ.get(name)
    if not model:
        pytest.skip(f"{name} is not set (tests/python_sdk.rs sets it)")
    return model


@pytest.fixture
def image_model():
    return media_model("SWITCHYARD_IMAGE_MODEL")


@pytest.fixture
def tts_model():
    return media_model("SWITCHYARD_TTS_MODEL")


def test_images_generate_urls(openai_client, image_model):
    result = openai_client.images.generate(
        model=image_model, prompt="a red fox in the snow", n=2, size="1024x1024"
    )
    assert len(result.data) == 2
    assert [image.url for image in result.data] == [
        "https://mock.invalid/images/0.png",
        "https://mock.invalid/images/1.png",
    ]
    assert result.usage is not None
    assert result.usage.input_tokens == len("a red fox in the snow")
    assert result.usage.output_tokens == 2 * IMAGE_OUTPUT_TOKENS


def test_images_generate_b64_json(openai_client, image_model):
    result = openai_client.images.generate(
        model=image_model, prompt="a fox", response_format="b64_json"
    )
    assert len(result.data) == 1
    assert base64.b64decode(result.data[0].b64_json) == b"mock image 0"


def test_images_streaming_is_refused_clearly(openai_client, image_model):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.images.generate(
            model=image_model, prompt="a fox", stream=True, partial_images=1
        )
    assert refused.value.status_code == 400
    assert "not supported by this gateway yet" in refused.value.message


def test_images_without_a_model_are_refused(openai_client):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.images.generate(prompt="a fox")
    assert "You must provide a model parameter" in refused.value.message


def test_speech_bytes_come_back(openai_client, tts_model):
    audio = openai_client.audio.speech.create(
        model=tts_model, voice="alloy", input="Hello from the gateway."
    )
    content = audio.content
    assert len(content) == SPEECH_BYTES
    assert all(byte == (i * 31 + 7) % 251 for i, byte in enumerate(content))
    assert audio.response.headers["content-type"] == "audio/mpeg"


def test_speech_streamed_to_a_file(openai_client, tts_model, tmp_path):
    target = tmp_path / "speech.wav"
    with openai_client.audio.speech.with_streaming_response.create(
        model=tts_model, voice="alloy", input="Hello.", response_format="wav"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        response.stream_to_file(target)
    assert target.stat().st_size == SPEECH_BYTES


def test_speech_as_sse_is_refused_clearly(openai_client, tts_model):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.audio.speech.create(
            model=tts_model, voice="alloy", input="Hello.", stream_format="sse"
        )
    assert "not supported by this gateway yet" in refused.value.message
