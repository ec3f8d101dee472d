"""The official `openai` SDK's Responses API (`client.responses`) against the
gateway's `/v1/responses`.

Each test runs once per provider kind (`responses_model`): passed through
to an `openai` provider (which speaks the Responses API itself), translated
to chat for the openai-compatible, Anthropic and Gemini providers.
"""

import json
import os

import openai
import pytest

from mock_answers import COMPLETION_TOKENS, TEXT, TOOL_ARGUMENTS

INSTRUCTIONS = "be brief"
INPUT = "count to five"

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def responses_models():
    native = os.environ.get("SWITCHYARD_OPENAI_NATIVE_MODEL")
    names = [native] if native else []
    return names + [
        os.environ["SWITCHYARD_OPENAI_MODEL"],
        os.environ["SWITCHYARD_CLAUDE_MODEL"],
        os.environ["SWITCHYARD_GEMINI_MODEL"],
    ]


def pytest_generate_tests(metafunc):
    if "responses_model" in metafunc.fixturenames:
        names = responses_models()
        metafunc.parametrize("responses_model", names, ids=names)


def check_usage(usage):
    assert usage is not None
    assert usage.output_tokens == COMPLETION_TOKENS
    assert usage.input_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_responses_create(openai_client, responses_model):
    response = openai_client.responses.create(
        model=responses_model, instructions=INSTRUCTIONS, input=INPUT
    )
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == TEXT
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant"
    check_usage(response.usage)


def test_responses_stream(openai_client, responses_model):
    stream = openai_client.responses.create(
        model=responses_model, instructions=INSTRUCTIONS, input=INPUT, stream=True
    )
    kinds = []
    text = ""
    completed = None
    numbers = []
    for event in stream:
        kinds.append(event.type)
        numbers.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            completed = event.response
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.output_item.done",
    ):
        assert kind in kinds
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert text == TEXT
    assert completed.output_text == TEXT
    check_usage(completed.usage)


def test_responses_stream_helper(openai_client, responses_model):
    # The SDK's own stream manager accumulates the events into a response.
    with openai_client.responses.stream(
        model=responses_model, instructions=INSTRUCTIONS, input=INPUT
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == TEXT
    check_usage(final.usage)


def test_responses_tools(openai_client, responses_model):
    response = openai_client.responses.create(
        model=responses_model, input=INPUT, tools=TOOLS
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].call_id
    assert json.loads(calls[0].arguments) == TOOL_ARGUMENTS
    check_usage(response.usage)

    # The second turn: the call and its output go back as input items.
    follow_up = openai_client.responses.create(
        model=responses_model,
        input=[
            {"role": "user", "content": INPUT},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": calls[0].name,
                "arguments": calls[0].arguments,
            },
            {
                "type": "function_call_output",
                "call_id": calls[0].call_id,
                "output": "sunny, 21 C",
            },
        ],
    )
    assert follow_up.output_text == TEXT


def test_responses_tools_stream(openai_client, responses_model):
    stream = openai_client.responses.create(
        model=responses_model, input=INPUT, tools=TOOLS, stream=True
    )
    arguments = ""
    added = []
    done = None
    completed = None
    for event in stream:
        if event.type == "response.output_item.added":
            added.append(event.item.type)
        if event.type == "response.function_call_arguments.delta":
            arguments += event.delta
        if event.type == "response.function_call_arguments.done":
            done = event.arguments
        if event.type == "response.completed":
            completed = event.response
    assert added == ["function_call"]
    assert json.loads(arguments) == TOOL_ARGUMENTS
    assert json.loads(done) == TOOL_ARGUMENTS
    calls = [item for item in completed.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather"]
    check_usage(completed.usage)


def test_previous_response_id_is_refused_when_translated(openai_client, claude_model):
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.responses.create(
            model=claude_model, input=INPUT, previous_response_id="resp_elsewhere"
        )
    assert error.value.status_code == 400
    assert "previous_response_id" in str(error.value)


@pytest.fixture
def native_model():
    native = os.environ.get("SWITCHYARD_OPENAI_NATIVE_MODEL")
    if not native:
        pytest.skip("no openai-kind provider configured")
    return native


def test_stored_response_round_trip(openai_client, native_model):
    created = openai_client.responses.create(model=native_model, input=INPUT)
    fetched = openai_client.responses.retrieve(created.id)
    assert fetched.id == created.id
    assert fetched.output_text == TEXT
    # A continuation of it goes to the provider that holds it.
    follow_up = openai_client.responses.create(
        model=native_model, input="and again", previous_response_id=created.id
    )
    assert follow_up.output_text == TEXT
    openai_client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)


def test_unknown_response_id_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.responses.retrieve("resp_never_made")
    assert error.value.status_code == 404
