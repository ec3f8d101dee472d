"""The official `openai` SDK's multipart uploads through the gateway:
audio transcriptions and translations, and image edits.

The mock upstream answers from what it received: a transcript names the
model it was sent to and the uploaded file's length and FNV-1a checksum, and
an edited image's `revised_prompt` does the same for each image. So the
assertions below prove that the SDK's upload reached the upstream intact,
with the model the gateway routed it to.
"""

import os
import struct
import zlib

WHISPER_MODEL = os.environ.get("SWITCHYARD_WHISPER_MODEL", "mock-whisper")
IMAGE_EDIT_MODEL = os.environ.get("SWITCHYARD_IMAGE_EDIT_MODEL", "mock-image-edit")

# The mock's audio rate (tests/mock-upstream/src/uploads.rs).
AUDIO_BYTES_PER_SECOND = 16_000


def fnv1a64(data):
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def transcript(data, model):
    return f"mock transcript of {len(data)} bytes (fnv {fnv1a64(data)}) by {model}"


def audio(seconds):
    """Bytes standing for `seconds` of audio: not text, with CR, LF and dashes."""
    return bytes((i * 31 + 7) % 251 for i in range(seconds * AUDIO_BYTES_PER_SECOND))


def png(width, height, rgb):
    """A small, valid, uncompressed-colour PNG made here."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_transcription_json(openai_client):
    data = audio(2)
    result = openai_client.audio.transcriptions.create(
        model=WHISPER_MODEL, file=("speech.wav", data, "audio/wav"), language="en"
    )
    assert result.text == transcript(data, WHISPER_MODEL)


def test_transcription_text(openai_client):
    data = audio(1)
    result = openai_client.audio.transcriptions.create(
        model=WHISPER_MODEL,
        file=("speech.wav", data, "audio/wav"),
        response_format="text",
    )
    # The SDK returns plain text as a string (the gateway asked the upstream
    # for JSON to bill the duration, and answered the text).
    assert isinstance(result, str)
    assert result == transcript(data, WHISPER_MODEL)


def test_transcription_verbose_json(openai_client):
    data = audio(3)
    result = openai_client.audio.transcriptions.create(
        model=WHISPER_MODEL,
        file=("speech.wav", data, "audio/wav"),
        response_format="verbose_json",
    )
    assert result.text == transcript(data, WHISPER_MODEL)
    assert result.duration == 3.0


def test_translation(openai_client):
    data = audio(2)
    result = openai_client.audio.translations.create(
        model=WHISPER_MODEL, file=("rede.wav", data, "audio/wav")
    )
    assert result.text == transcript(data, WHISPER_MODEL)


def test_translation_srt(openai_client):
    data = audio(2)
    result = openai_client.audio.translations.create(
        model=WHISPER_MODEL, file=("rede.wav", data, "audio/wav"), response_format="srt"
    )
    assert isinstance(result, str)
    assert "00:00:00,000 --> 00:00:02,000" in result
    assert transcript(data, WHISPER_MODEL) in result


def test_image_edit(openai_client):
    image = png(4, 3, (200, 30, 30))
    result = openai_client.images.edit(
        model=IMAGE_EDIT_MODEL,
        image=("red.png", image, "image/png"),
        prompt="add a hat",
        n=2,
    )
    assert len(result.data) == 2
    expected = f"edited by {IMAGE_EDIT_MODEL}: {len(image)} bytes (fnv {fnv1a64(image)})"
    assert result.data[0].revised_prompt == expected
    assert result.data[0].b64_json
    # gpt-image-style token usage passes through.
    assert result.usage.input_tokens == 50
    assert result.usage.output_tokens == 272
