"""The official `openai` SDK against the gateway's OpenAI-compatible routes.

Chat runs once per provider kind (`model`): passthrough to the
openai-compatible upstream, translation to Anthropic and to Gemini.
"""

import base64
import json
import struct

import openai
import pytest

from mock_answers import COMPLETION_TOKENS, TEXT, TOOL_ARGUMENTS, embedding_vector

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "count to five"},
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

def test_chat(openai_client, model):
    completion = openai_client.chat.completions.create(model=model, messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == TEXT
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == COMPLETION_TOKENS
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_chat_stream(openai_client, model):
    stream = openai_client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    finish_reasons = []
    usage_chunks = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason is not None:
                finish_reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            usage_chunks.append(chunk)
    assert text == TEXT
    assert finish_reasons == ["stop"]
    assert len(usage_chunks) == 1, "exactly one usage chunk"
    last = usage_chunks[0]
    assert last.choices == []
    assert last.usage.completion_tokens == COMPLETION_TOKENS
    assert last.usage.prompt_tokens > 0


def test_chat_stream_without_usage(openai_client, model):
    # Not asked for: no usage chunk reaches the client, even when the gateway
    # asks the upstream for one to meter the request.
    stream = openai_client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True
    )
    chunks = list(stream)
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    assert text == TEXT
    assert all(chunk.usage is None for chunk in chunks)


def test_chat_tools(openai_client, model):
    completion = openai_client.chat.completions.create(
        model=model, messages=MESSAGES, tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].id
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == TOOL_ARGUMENTS
    assert completion.usage.completion_tokens == COMPLETION_TOKENS


def test_chat_tools_stream(openai_client, model):
    stream = openai_client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    calls = {}
    finish_reasons = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                finish_reasons.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == TOOL_ARGUMENTS
    assert finish_reasons == ["tool_calls"]
    assert usage is not None and usage.completion_tokens == COMPLETION_TOKENS


def test_chat_tool_result_round_trip(openai_client, model):
    # The second turn of a tool conversation: the assistant's call and the
    # tool's answer must survive translation to every upstream kind.
    messages = MESSAGES + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    completion = openai_client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"


def test_request_id_header(openai_client, openai_model):
    raw = openai_client.chat.completions.with_raw_response.create(
        model=openai_model, messages=MESSAGES
    )
    assert raw.headers.get("x-request-id")
    assert raw.parse().choices[0].message.content == TEXT


def test_models_list(openai_client, all_models):
    ids = [m.id for m in openai_client.models.list()]
    for name in all_models:
        assert name in ids


def test_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert error.value.status_code == 404


def test_bad_token_is_unauthorized(url, openai_model):
    client = openai.OpenAI(base_url=url + "/v1", api_key="sy-wrong", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError) as error:
        client.chat.completions.create(model=openai_model, messages=MESSAGES)
    assert error.value.status_code == 401


def test_embeddings_float(openai_client, openai_model):
    response = openai_client.embeddings.create(
        model=openai_model, input=["a", "b"], encoding_format="float"
    )
    assert [d.index for d in response.data] == [0, 1]
    for index, item in enumerate(response.data):
        assert all(isinstance(x, float) for x in item.embedding)
        assert item.embedding == embedding_vector(index)
    assert response.usage.prompt_tokens > 0


def test_embeddings_sdk_default(openai_client, openai_model):
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    response = openai_client.embeddings.create(model=openai_model, input=["a", "b"])
    assert len(response.data) == 2
    for index, item in enumerate(response.data):
        assert all(isinstance(x, float) for x in item.embedding)
        assert item.embedding == embedding_vector(index)


def test_embeddings_base64(openai_client, openai_model):
    # Asked for explicitly, base64 comes back as the string: little-endian f32.
    response = openai_client.embeddings.create(
        model=openai_model, input=["a", "b"], encoding_format="base64"
    )
    assert len(response.data) == 2
    for index, item in enumerate(response.data):
        assert isinstance(item.embedding, str)
        raw = base64.b64decode(item.embedding)
        vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        assert vector == embedding_vector(index)


def test_legacy_completions(openai_client, openai_model):
    completion = openai_client.completions.create(model=openai_model, prompt="hi")
    assert completion.choices[0].text == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == COMPLETION_TOKENS


def test_legacy_completions_stream(openai_client, openai_model):
    stream = openai_client.completions.create(
        model=openai_model,
        prompt="hi",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == TEXT
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == COMPLETION_TOKENS
