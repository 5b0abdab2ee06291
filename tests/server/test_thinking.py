"""Models that reason before they answer, through the official `openai` and `ollama` clients: the
reasoning arrives apart from the answer (whole and streamed), it can be switched off where the
template can, and a schema or a required tool call holds only the answer after it.

No thinking model is small enough to ship in the test set, so the 0.5B model is given a
template of Qwen3's kind (written here): it opens a `<think>` block at the end of the prompt,
or closes an empty one when `enable_thinking` is false, and the 0.5B continues in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import ollama
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.cli.test_cli import edgeinf
from tests.server.conftest import Server, start, templated
from tests.server.test_tools import TOOLS, WEATHER, client

TEMPLATE = """\
{%- if messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}
{%- if tools %}

Functions you may call, one JSON signature per line:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}Write a call as <tool_call>{"name": ..., "arguments": {...}}</tool_call>.
{%- endif %}<|im_end|>
{% endif %}
{%- for message in messages if message.role != 'system' %}
{%- if message.role == 'assistant' %}<|im_start|>assistant
{{ message.content.split('</think>')[-1] | trim }}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% else %}<|im_start|>user
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% else %}<think>
{% endif %}{% endif %}"""
SYSTEM = "Think step by step inside <think></think>. After </think>, write the final answer."
GREEDY = {"temperature": 0, "num_predict": 96}
ASK: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Name the capital of France."},
]


@pytest.fixture(scope="module")
def thinker_model(tmp_path_factory: pytest.TempPathFactory, draft_path: Path) -> Path:
    return templated(draft_path, TEMPLATE, tmp_path_factory.mktemp("model") / "thinker.gguf")


@pytest.fixture(scope="module")
def thinker(tmp_path_factory: pytest.TempPathFactory, thinker_model: Path) -> Iterator[Server]:
    tmp, model = tmp_path_factory.mktemp("thinking"), thinker_model
    # Exact mode: a second request decodes as the first did, whatever its batch shape.
    env = {"EDGEINF_SPECULATIVE_EXACT": "true"}
    server = start(tmp, model=str(model), ctx=2048, parallel=2, env=env)
    yield server
    server.stop()


def _reasoning(message: Any) -> str:
    extra = message.model_extra or {}
    return str(extra.get("reasoning_content") or "")


def test_the_reasoning_comes_apart_from_the_answer_whole_and_streamed(thinker: Server) -> None:
    api = client(thinker)
    whole = api.chat.completions.create(
        model="", messages=ASK, temperature=0, max_tokens=96
    ).choices[0]
    reasoning, answer = _reasoning(whole.message), whole.message.content or ""
    assert "Paris" in reasoning + answer
    assert reasoning and "<think>" not in reasoning + answer and "</think>" not in answer
    thought, said = "", ""
    for chunk in api.chat.completions.create(
        model="", messages=ASK, temperature=0, max_tokens=96, stream=True
    ):
        for choice in chunk.choices:
            thought += _reasoning(choice.delta)
            said += choice.delta.content or ""
    assert (thought, said) == (reasoning, answer)


def test_reasoning_switched_off_leaves_only_the_answer(thinker: Server) -> None:
    api = client(thinker)
    on = api.chat.completions.create(model="", messages=ASK, temperature=0, max_tokens=64)
    off = api.chat.completions.create(
        model="", messages=ASK, temperature=0, max_tokens=64, reasoning_effort="none"
    )
    switched = api.chat.completions.create(
        model="", messages=ASK, temperature=0, max_tokens=64,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )  # fmt: skip
    assert _reasoning(on.choices[0].message)
    for answer in (off, switched):
        assert not _reasoning(answer.choices[0].message)
        assert answer.choices[0].message.content
        # The template closed an empty block in the prompt instead of opening one.
        assert answer.usage and on.usage
        assert answer.usage.prompt_tokens > on.usage.prompt_tokens


def test_a_schema_holds_the_answer_after_the_reasoning(thinker: Server) -> None:
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 40}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    answer = (
        client(thinker)
        .chat.completions.create(
            model="", messages=ASK, temperature=0, max_tokens=128,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "city", "schema": schema}},
        )
        .choices[0]
    )  # fmt: skip
    assert answer.finish_reason == "stop"
    assert _reasoning(answer.message)  # the model reasoned in free text first
    jsonschema.validate(json.loads(answer.message.content or ""), schema)


def test_a_required_call_comes_after_the_reasoning(thinker: Server) -> None:
    answer = (
        client(thinker)
        .chat.completions.create(
            model="",
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "What is the weather in Oslo, in celsius?"},
            ],
            tools=TOOLS,
            tool_choice="required",
            temperature=0,
            max_tokens=160,
        )
        .choices[0]
    )
    assert answer.finish_reason == "tool_calls" and _reasoning(answer.message)
    calls = answer.message.tool_calls or []
    assert calls and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER)


def test_ollama_clients_get_the_reasoning_as_thinking(thinker: Server) -> None:
    client = ollama.Client(host=thinker.url)
    messages = [dict(m) for m in ASK]
    whole = client.chat(model="thinker", messages=messages, think=True, options=GREEDY)
    assert whole.message.thinking and "</think>" not in (whole.message.content or "")
    streamed = list(
        client.chat(model="thinker", messages=messages, think=True, stream=True, options=GREEDY)
    )
    assert "".join(c.message.thinking or "" for c in streamed) == whole.message.thinking
    assert "".join(c.message.content or "" for c in streamed) == whole.message.content
    off = client.chat(model="thinker", messages=messages, think=False, options=GREEDY)
    assert not off.message.thinking and off.message.content


def test_a_model_that_does_not_reason_refuses_to_be_asked_to(tiny_server: Server) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for extra, param in (
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"chat_template_kwargs": {"enable_thinking": True}}, "chat_template_kwargs"),
    ):
        r = httpx.post(f"{tiny_server.url}/v1/chat/completions", json={**body, **extra})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
        assert "does not reason" in r.json()["error"]["message"]
    # Nothing else of the template's may be set, and reasoning off asks nothing of it.
    r = httpx.post(
        f"{tiny_server.url}/v1/chat/completions",
        json={**body, "chat_template_kwargs": {"add_generation_prompt": False}},
    )
    assert r.status_code == 400 and "add_generation_prompt" in r.text
    r = httpx.post(
        f"{tiny_server.url}/v1/chat/completions", json={**body, "reasoning_effort": "none"}
    )
    assert r.status_code == 200 and "reasoning_content" not in r.json()["choices"][0]["message"]


def test_run_prints_the_answer_and_the_reasoning_apart(thinker_model: Path, tmp_path: Path) -> None:
    asked = ("run", "-m", str(thinker_model), "--system", SYSTEM, "-t", "0", "--max-tokens",
             "96", "Name the capital of France.")  # fmt: skip
    env = {"EDGEINF_STATE_DIR": str(tmp_path)}
    shown = edgeinf(*asked, env=env)
    report = json.loads(edgeinf(*asked, "--json", env=env).stdout.splitlines()[-1])
    assert shown.returncode == 0 and report["reasoning"]
    assert report["reasoning"] in shown.stderr and report["reasoning"] not in shown.stdout
    assert shown.stdout.strip() == report["text"].strip()
    off = json.loads(edgeinf(*asked, "--no-think", "--json", env=env).stdout.splitlines()[-1])
    assert off["reasoning"] is None and off["text"]
