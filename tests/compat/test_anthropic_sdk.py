"""The official `anthropic` SDK against the gateway's `/v1/messages` front
door, the way Claude Code uses it.

Every test runs once per provider kind (`model`): passthrough to the
anthropic upstream, translation to the openai-compatible one and to Gemini.
"""

import anthropic
import pytest

from mock_answers import COMPLETION_TOKENS, TEXT, TOOL_ARGUMENTS

MESSAGES = [{"role": "user", "content": "count to five"}]

TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def tool_uses(message):
    return [block for block in message.content if block.type == "tool_use"]


def assert_text_message(message):
    assert message.type == "message"
    assert message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == COMPLETION_TOKENS
    assert message.usage.input_tokens > 0


def assert_tool_message(message):
    assert message.stop_reason == "tool_use"
    calls = tool_uses(message)
    assert len(calls) == 1
    assert calls[0].id
    assert calls[0].name == "get_weather"
    assert calls[0].input == TOOL_ARGUMENTS
    assert message.usage.output_tokens == COMPLETION_TOKENS


def test_messages(anthropic_client, model):
    message = anthropic_client.messages.create(
        model=model, max_tokens=64, system="be brief", messages=MESSAGES
    )
    assert_text_message(message)
    assert message.model


def test_messages_stream(anthropic_client, model):
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, system="be brief", messages=MESSAGES
    ) as stream:
        streamed = "".join(stream.text_stream)
        text = stream.get_final_text()
        message = stream.get_final_message()
    assert streamed == TEXT
    assert text == TEXT
    assert_text_message(message)


def test_messages_raw_stream_events(anthropic_client, model):
    # The event sequence clients parse by hand (Claude Code among them).
    stream = anthropic_client.messages.create(
        model=model, max_tokens=64, messages=MESSAGES, stream=True
    )
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_start" in kinds
    assert "content_block_delta" in kinds
    assert "content_block_stop" in kinds
    assert kinds.count("message_delta") == 1
    assert kinds.index("message_delta") > kinds.index("content_block_stop")


def test_messages_tools(anthropic_client, model):
    message = anthropic_client.messages.create(
        model=model, max_tokens=64, messages=MESSAGES, tools=TOOLS
    )
    assert_tool_message(message)


def test_messages_tools_stream(anthropic_client, model):
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, messages=MESSAGES, tools=TOOLS
    ) as stream:
        message = stream.get_final_message()
    assert_tool_message(message)


def test_messages_tool_result_round_trip(anthropic_client, model):
    # The second turn of a tool conversation, as Claude Code sends it.
    messages = MESSAGES + [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "sunny, 21 C",
                }
            ],
        },
    ]
    message = anthropic_client.messages.create(
        model=model, max_tokens=64, messages=messages, tools=TOOLS
    )
    assert_tool_message(message)


def test_beta_messages_stream(anthropic_client, model):
    # Claude Code goes through the beta client: an `anthropic-beta` header.
    with anthropic_client.beta.messages.stream(
        model=model,
        max_tokens=64,
        system=[{"type": "text", "text": "be brief"}],
        messages=MESSAGES,
        betas=["claude-code-20250219"],
    ) as stream:
        text = stream.get_final_text()
        message = stream.get_final_message()
    assert text == TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == COMPLETION_TOKENS


def test_claude_code_shaped_request(anthropic_client, model):
    # What Claude Code sends: beta headers, cache_control on system and user
    # blocks, metadata.user_id, tool_choice, and JSON Schema keywords in
    # input_schema that Gemini does not accept.
    with anthropic_client.beta.messages.stream(
        model=model,
        max_tokens=64,
        metadata={"user_id": "user_0123_account__session_4567"},
        system=[
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "list the files",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            }
        ],
        tools=[
            {
                "name": "Bash",
                "description": "Run a shell command",
                "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                    "additionalProperties": False,
                },
            }
        ],
        tool_choice={"type": "auto"},
        betas=[
            "claude-code-20250219",
            "interleaved-thinking-2025-05-14",
            "fine-grained-tool-streaming-2025-05-14",
        ],
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    calls = tool_uses(message)
    assert [call.name for call in calls] == ["Bash"]
    assert calls[0].input == TOOL_ARGUMENTS


def test_count_tokens(anthropic_client, model):
    count = anthropic_client.messages.count_tokens(
        model=model, system="be brief", messages=MESSAGES, tools=TOOLS
    )
    assert isinstance(count.input_tokens, int)
    assert count.input_tokens > 0


def test_models_list(anthropic_client, all_models):
    # GET /v1/models with the SDK's anthropic-version header.
    ids = [m.id for m in anthropic_client.models.list()]
    for name in all_models:
        assert name in ids


def test_bad_request_is_anthropic_shaped(anthropic_client, model):
    with pytest.raises(anthropic.BadRequestError) as error:
        anthropic_client.messages.create(model=model, max_tokens=64, messages=[])
    assert error.value.status_code == 400
    assert error.value.body["type"] == "error"
    assert error.value.body["error"]["type"] == "invalid_request_error"
    assert error.value.body["error"]["message"]


def test_unknown_model_is_not_found(anthropic_client):
    with pytest.raises(anthropic.NotFoundError) as error:
        anthropic_client.messages.create(
            model="no-such-model", max_tokens=64, messages=MESSAGES
        )
    assert error.value.status_code == 404
    # Anthropic's error shape: {"type": "error", "error": {"type", "message"}}.
    assert error.value.body["type"] == "error"
    assert error.value.body["error"]["type"] == "not_found_error"


def test_bad_token_is_unauthorized(url, claude_model):
    client = anthropic.Anthropic(base_url=url, api_key="sy-wrong", max_retries=0)
    with client, pytest.raises(anthropic.AuthenticationError) as error:
        client.messages.create(model=claude_model, max_tokens=64, messages=MESSAGES)
    assert error.value.status_code == 401
    assert error.value.body["error"]["type"] == "authentication_error"


def test_x_api_key_header(url, token, claude_model):
    # The SDK sends the key as `Authorization: Bearer`; Claude Code and older
    # SDKs send `x-api-key`. Both must work on /v1/messages.
    client = anthropic.Anthropic(
        base_url=url,
        auth_token="unused",
        default_headers={"x-api-key": token, "Authorization": anthropic.Omit()},
        max_retries=0,
    )
    with client:
        message = client.messages.create(
            model=claude_model, max_tokens=64, messages=MESSAGES
        )
    assert_text_message(message)
