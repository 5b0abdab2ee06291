"""Tool calling through clients nobody here wrote: the `openai` package against the 270M model
(whose template knows nothing of tools, so they are described to it), where a required call
is valid for its schema whatever the model would write; langchain-openai and pydantic-ai
against the 1.5B default model, which must call the right tool and use its result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from edgeinf.engine.callstream import CallPiece, CallStream
from edgeinf.engine.toolcalls import Held, Parsed, parse
from edgeinf.types import Tool
from tests.conftest import TARGET, TINY
from tests.server.conftest import Server, start

WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
]
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in Paris right now?"}
]


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_a_required_call_is_valid_for_its_schema_and_the_result_goes_back(
    tiny_server: Server,
) -> None:
    c = client(tiny_server)
    r = c.chat.completions.create(
        model=TINY, messages=ASK, tools=TOOLS, tool_choice="required", temperature=0,
        max_tokens=120, parallel_tool_calls=False,
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "add")
    schema = WEATHER if call.function.name == "get_weather" else TOOLS[1]["function"]["parameters"]
    jsonschema.validate(json.loads(call.function.arguments), schema)
    follow = c.chat.completions.create(
        model=TINY,
        messages=[
            *ASK,
            cast(ChatCompletionMessageParam, choice.message.model_dump(exclude_none=True)),
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear", "c": 21}'},
        ],
        tools=TOOLS,
        tool_choice="none",
        temperature=0,
        max_tokens=24,
    )
    assert follow.choices[0].finish_reason in ("stop", "length")
    assert follow.choices[0].message.content


def test_a_named_choice_calls_that_function_and_streams_the_call(tiny_server: Server) -> None:
    chunks = client(tiny_server).chat.completions.create(
        model=TINY, messages=ASK, tools=TOOLS, temperature=0, max_tokens=120, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )  # fmt: skip
    calls: dict[int, dict[str, str]] = {}
    text, finish, pieces = "", None, 0
    for chunk in chunks:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            assert tc.function is not None
            entry["name"] += tc.function.name or ""
            entry["arguments"] += tc.function.arguments or ""
            pieces += bool(tc.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and text == ""  # the tags never reach the client as text
    assert [c["name"] for c in calls.values()] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER)
    assert pieces > 1  # the arguments streamed as they were written


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0"),
        ({"response_format": {"type": "json_object"}}, "tools"),
    ],
)
def test_a_tool_request_that_cannot_be_met_is_refused_by_name(
    tiny_server: Server, body: dict[str, Any], param: str
) -> None:
    payload = {"messages": ASK, "tools": TOOLS, "max_tokens": 8, **body}
    r = httpx.post(f"{tiny_server.url}/v1/chat/completions", json=payload, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].startswith(param), r.json()


@pytest.mark.reliability(37)
def test_calls_are_parsed_as_small_models_write_them() -> None:
    tools = (Tool("f", "", {"type": "object"}),)
    tagged = 'Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    found = parse(tagged, tools)
    assert found.text == "Sure." and found.calls[0].arguments == '{"x": 1}' and not found.cut
    fenced = parse('```json\n{"name": "f", "arguments": {"x": 2}}\n```', tools)
    assert fenced.text == "" and fenced.calls[0].name == "f"
    as_text = parse('{"name": "f", "arguments": "{\\"x\\": 3}"}', tools)
    assert json.loads(as_text.calls[0].arguments) == {"x": 3}
    for kept in ('{"name": "g", "arguments": {}}', "<tool_call>not json</tool_call>", "hi"):
        assert parse(kept, tools) == Parsed(kept, (), False)  # unknown tool, broken JSON
    cut = parse(tagged + '\n<tool_call>\n{"name": "f", "argu', tools)  # max_tokens came
    assert cut.text == "Sure." and len(cut.calls) == 1 and cut.cut


def test_streamed_text_holds_back_what_may_open_a_call() -> None:
    held = Held()
    out = [held.feed(p) for p in ["The answer", " is <", "tool_", "call>", '{"name"']]
    assert "".join(out) == "The answer is "
    held = Held()
    assert held.feed('{"a": 1}') == ""  # maybe a bare call: kept until the end
    assert held.rest('{"a": 1}', False) == '{"a": 1}'


def test_a_streamed_call_goes_out_as_its_name_then_its_arguments_in_pieces() -> None:
    tools = (Tool("f", "", {"type": "object"}),)
    answer = (
        'Let me check.\n<tool_call>\n{"name": "f", "arguments": {"city": "Paris", "days": [1, 2]}}'
        '\n</tool_call>\n<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    )
    stream = CallStream(tools)
    pieces = [p for i in range(0, len(answer), 5) for p in stream.feed(answer[i : i + 5])]
    found = parse(answer, tools)
    pieces += stream.end(found.text, found.calls)
    assert "".join(p for p in pieces if isinstance(p, str)).strip() == "Let me check."
    calls = [p for p in pieces if isinstance(p, CallPiece)]
    assert [(p.index, p.name) for p in calls if p.id] == [(0, "f"), (1, "f")]
    first = [p.arguments for p in calls if p.index == 0]
    assert json.loads("".join(first)) == {"city": "Paris", "days": [1, 2]}
    assert len([a for a in first if a]) > 3  # as the model wrote them, not at the end
    bare = CallStream(tools)  # a call outside the tags arrives whole at the end
    text = '{"name": "f", "arguments": {"x": 1}}'
    assert bare.feed(text) == []
    [whole] = bare.end("", parse(text, tools).calls)
    assert isinstance(whole, CallPiece) and whole.id and json.loads(whole.arguments) == {"x": 1}


def test_tools_go_to_the_remote_and_its_calls_come_back(
    tiny_server: Server, tmp_path: Path
) -> None:
    """The remote is a second real server, asked for a named call, streamed and not."""
    env = {"EDGEINF_REMOTE_URL": f"{tiny_server.url}/v1", "EDGEINF_REMOTE_MODEL": TINY}
    front = start(tmp_path, env=env)
    named: Any = {"type": "function", "function": {"name": "get_weather"}}
    ask: dict[str, Any] = {
        "model": TINY, "tools": TOOLS, "temperature": 0, "max_tokens": 120,
        "parallel_tool_calls": False, "extra_body": {"route": "remote"},
    }  # fmt: skip
    try:
        c = client(front)
        r = c.chat.completions.create(messages=ASK, tool_choice=named, **ask)
        assert (r.model_extra or {})["route"]["target"] == "remote" and r.model == TINY
        assert r.choices[0].finish_reason == "tool_calls"
        (call,) = r.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)
        calls: dict[int, str] = {}
        for chunk in c.chat.completions.create(messages=ASK, tool_choice=named, stream=True, **ask):
            for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                assert tc.function is not None
                calls[tc.index] = calls.get(tc.index, "") + (tc.function.arguments or "")
        assert list(calls) == [0]
        jsonschema.validate(json.loads(calls[0]), WEATHER)
        result: ChatCompletionMessageParam = {
            "role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear", "c": 21}'
        }  # fmt: skip
        message = cast(
            ChatCompletionMessageParam, r.choices[0].message.model_dump(exclude_none=True)
        )
        follow = c.chat.completions.create(
            messages=[*ASK, message, result], tool_choice="none", **{**ask, "max_tokens": 16}
        )
        assert (follow.model_extra or {})["route"]["target"] == "remote"
        assert follow.choices[0].message.content and not follow.choices[0].message.tool_calls
    finally:
        front.stop()


@pytest.fixture(scope="module")
def target_server(tmp_path_factory: pytest.TempPathFactory, target_path: Path) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("target"), model=TARGET, ctx=4096)
    yield server
    server.stop()


def test_langchain_bind_tools_gets_the_call_the_question_needs(target_server: Server) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "sunny"

    @tool
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    llm = ChatOpenAI(
        model=TARGET, base_url=f"{target_server.url}/v1", api_key=SecretStr("unused"),
        temperature=0, max_retries=0,
    )  # fmt: skip
    reply = llm.bind_tools([get_weather, add]).invoke("What is 17.5 plus 4.25?")
    (call,) = reply.tool_calls
    assert call["name"] == "add" and call["args"] == {"a": 17.5, "b": 4.25}


def test_a_pydantic_ai_agent_calls_a_tool_and_uses_its_result(target_server: Server) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(
        TARGET, provider=OpenAIProvider(base_url=f"{target_server.url}/v1", api_key="unused")
    )
    agent = Agent(model, model_settings={"temperature": 0, "max_tokens": 200})
    looked_up: list[str] = []

    @agent.tool_plain
    def stock_price(ticker: str) -> str:
        """The latest price of a stock, by its ticker symbol."""
        looked_up.append(ticker)
        return "The price is 123.45 dollars."

    result = agent.run_sync("What is the latest price of the ACME stock? Use the tool.")
    assert [t.upper() for t in looked_up] == ["ACME"]
    assert "123.45" in result.output
