"""Google's `google-genai` SDK against the gateway's Gemini front door
(`/v1beta`), the way the Gemini CLI and Gemini apps use it: a gateway token
as the API key, the gateway as the base URL.

Every test runs once per provider kind (`model`): passthrough to the gemini
upstream, translation to the openai-compatible one and to the anthropic one;
and once per API version: `v1`, the SDK's default, and `v1beta`, the Gemini
CLI's.
"""

import pytest
from google import genai
from google.genai import errors, types

from mock_answers import COMPLETION_TOKENS, TEXT, TOOL_ARGUMENTS

PROMPT = "count to five"

WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="The weather in a city",
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={"city": types.Schema(type=types.Type.STRING)},
                required=["city"],
            ),
        )
    ]
)

# The SDK would call Python functions itself; these tests pass declarations
# and answer the calls by hand.
TOOL_CONFIG = types.GenerateContentConfig(
    tools=[WEATHER],
    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
)


def make_client(url, api_key, api_version):
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=url, api_version=api_version, timeout=30_000
        ),
    )


@pytest.fixture(params=["v1", "v1beta"])
def genai_client(request, url, token):
    client = make_client(url, token, request.param)
    yield client
    client.close()


def assert_text_answer(response):
    assert response.text == TEXT
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.candidates_token_count == COMPLETION_TOKENS
    assert response.usage_metadata.prompt_token_count > 0


def test_generate_content(genai_client, model):
    response = genai_client.models.generate_content(
        model=model,
        contents=PROMPT,
        config=types.GenerateContentConfig(
            system_instruction="be brief", max_output_tokens=64, temperature=0.2
        ),
    )
    assert_text_answer(response)


def test_generate_content_stream(genai_client, model):
    chunks = list(
        genai_client.models.generate_content_stream(
            model=model,
            contents=PROMPT,
            config=types.GenerateContentConfig(system_instruction="be brief"),
        )
    )
    assert "".join(chunk.text or "" for chunk in chunks) == TEXT
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.candidates_token_count == COMPLETION_TOKENS


def test_multi_turn_chat(genai_client, model):
    chat = genai_client.chats.create(model=model)
    assert chat.send_message("hello").text == TEXT
    # The second turn carries the first question and answer.
    assert chat.send_message(PROMPT).text == TEXT
    assert len(chat.get_history()) == 4


def test_function_calling(genai_client, model):
    response = genai_client.models.generate_content(
        model=model, contents="weather in Paris?", config=TOOL_CONFIG
    )
    calls = response.function_calls
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].args == TOOL_ARGUMENTS
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


def test_function_calling_stream(genai_client, model):
    chunks = list(
        genai_client.models.generate_content_stream(
            model=model, contents="weather in Paris?", config=TOOL_CONFIG
        )
    )
    calls = [call for chunk in chunks for call in (chunk.function_calls or [])]
    assert [call.name for call in calls] == ["get_weather"]
    assert calls[0].args == TOOL_ARGUMENTS
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_function_result_round_trip(genai_client, model):
    question = types.Content(
        role="user", parts=[types.Part.from_text(text="weather in Paris?")]
    )
    first = genai_client.models.generate_content(
        model=model, contents=[question], config=TOOL_CONFIG
    )
    call = first.function_calls[0]
    result = types.Part.from_function_response(
        name=call.name, response={"temperature": 18}
    )
    # The call's id (when the upstream gave one) goes back with its result.
    result.function_response.id = call.id
    second = genai_client.models.generate_content(
        model=model,
        contents=[
            question,
            first.candidates[0].content,
            types.Content(role="user", parts=[result]),
        ],
        config=types.GenerateContentConfig(system_instruction="be brief"),
    )
    assert_text_answer(second)


def test_count_tokens(genai_client, model):
    counted = genai_client.models.count_tokens(model=model, contents=PROMPT)
    assert counted.total_tokens > 0


def test_models_list(genai_client, all_models):
    names = {listed.name for listed in genai_client.models.list()}
    assert {f"models/{name}" for name in all_models} <= names


def test_models_get(url, token, model):
    # Only on v1beta: GET /v1/models/{id} is OpenAI's to answer.
    client = make_client(url, token, "v1beta")
    found = client.models.get(model=model)
    assert found.name == f"models/{model}"
    client.close()


def test_unknown_model_is_a_google_not_found(genai_client):
    with pytest.raises(errors.ClientError) as refused:
        genai_client.models.generate_content(model="no-such-model", contents=PROMPT)
    assert refused.value.code == 404
    assert refused.value.status == "NOT_FOUND"


def test_wrong_token_is_a_google_unauthenticated(url, model):
    client = make_client(url, "sy-not-a-token", None)
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model=model, contents=PROMPT)
    assert refused.value.code == 401
    assert refused.value.status == "UNAUTHENTICATED"
    client.close()
