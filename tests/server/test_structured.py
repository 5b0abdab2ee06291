"""Structured output and the request surface, through clients nobody here wrote (the official
`openai` package, instructor) against a real server with the 270M model: whatever the model
would rather write, the answer is JSON the schema allows; what is not implemented is refused
with the parameter named."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import httpx
import instructor
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from tests.conftest import DRAFT, TINY
from tests.server.conftest import Server

ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Ada Lovelace died in 1852 aged 36. Describe her."}
]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "field": {"enum": ["mathematics", "poetry", "music"]},
    },
    "required": ["name", "age", "field"],
    "additionalProperties": False,
}


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def post(server: Server, **body: Any) -> httpx.Response:
    payload = {"messages": ASK, "max_tokens": 80, "temperature": 0, **body}
    return httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=120)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_a_json_schema_answer_is_json_the_schema_allows(
    tiny_server: Server, temperature: float
) -> None:
    r = client(tiny_server).chat.completions.create(
        model=TINY,
        messages=ASK,
        max_tokens=120,
        temperature=temperature,
        seed=3,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content or ""), PERSON)


def test_json_object_is_one_bare_object_and_streams_as_one(tiny_server: Server) -> None:
    chunks = client(tiny_server).chat.completions.create(
        model=TINY,
        messages=[
            {"role": "user", "content": "Give me a JSON object with the name and age of a person."}
        ],
        max_tokens=120,
        temperature=0,
        response_format={"type": "json_object"},
        stream=True,
        stream_options={"include_usage": True},
    )
    events = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in events if c.choices)
    assert isinstance(json.loads(text), dict), text  # no Markdown fence around it
    last = events[-1]
    assert last.choices == [] and last.usage is not None  # include_usage: its own chunk
    assert last.usage.completion_tokens > 0


def test_a_raw_grammar_decides_the_answer(tiny_server: Server) -> None:
    r = post(tiny_server, grammar='root ::= ("yes" | "no") "."', max_tokens=8)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] in ("yes.", "no.")


class Person(BaseModel):
    name: str
    age: int
    field: Literal["mathematics", "poetry", "music"]


@pytest.mark.parametrize(
    ("mode", "fixture", "model"),
    [
        (instructor.Mode.JSON_SCHEMA, "tiny_server", TINY),  # the schema as a grammar
        # Only the schema's text in a system message and any JSON object: the 270M model
        # falls into repeating the schema's enum, the 0.5B writes the object.
        pytest.param(instructor.Mode.JSON, "chat_server", DRAFT, marks=pytest.mark.slow),
    ],
)
def test_instructor_extracts_a_typed_object(
    request: pytest.FixtureRequest, mode: instructor.Mode, fixture: str, model: str
) -> None:
    server: Server = request.getfixturevalue(fixture)
    extract = instructor.from_openai(client(server), mode=mode)
    person = extract.chat.completions.create(
        model=model,
        response_model=Person,
        messages=ASK,
        max_tokens=120,
        temperature=0,
        max_retries=0,
    )
    assert isinstance(person, Person) and person.name


@pytest.mark.reliability(35)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),  # and no tools
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"logit_bias": {"1": 500}}, "logit_bias"),  # out of -100..100
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ({"n": 9}, "n"),  # more choices than one request may ask
        ({"temprature": 0.2}, "temprature"),  # a typo is not dropped either
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"grammar": 'root ::= "a"', "response_format": {"type": "json_object"}}, "grammar"),
    ],
)
def test_what_is_not_implemented_is_refused_naming_the_parameter(
    tiny_server: Server, body: dict[str, Any], param: str
) -> None:
    r = post(tiny_server, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


def test_harmless_fields_are_accepted(tiny_server: Server) -> None:
    r = post(
        tiny_server, user="u1", metadata={"k": "v"}, store=False, logprobs=False, tools=[],
        max_tokens=2,
    )  # fmt: skip
    assert r.status_code == 200, r.text


@pytest.mark.reliability(39)
@pytest.mark.parametrize("name", ["gpt-4o", "../models/x.gguf", "/etc/passwd", "http://x/m"])
def test_a_model_not_served_is_404_and_none_means_the_default(
    tiny_server: Server, name: str
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(tiny_server).chat.completions.create(model=name, messages=ASK, max_tokens=2)
    assert caught.value.code == "model_not_found" and TINY in caught.value.message
    assert post(tiny_server, max_tokens=2).status_code == 200  # no model: the default
    assert post(tiny_server, model="", max_tokens=2).status_code == 200


def _deep(n: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(n):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("100 deep", {"response_format": {"type": "json_schema", "json_schema": {
        "schema": _deep(100)}}}),
    ("10,000 values", {"response_format": {"type": "json_schema", "json_schema": {
        "schema": {"enum": [f"value-{i}-{'x' * 90}" for i in range(10_000)]}}}}),
    ("recursive $ref", {"response_format": {"type": "json_schema", "json_schema": {"schema": {
        "$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}}}}),
    ("megabytes of GBNF", {"grammar": "root ::= " + " | ".join(f'"w{i}"' for i in range(200_000))}),
    ("deep GBNF groups", {"grammar": "root ::= " + "(" * 5000 + '"a"' + ")" * 5000}),
    ("undefined rule", {"grammar": "root ::= missing"}),
    ("matches only the end", {"grammar": 'root ::= ""'}),
]  # fmt: skip


@pytest.mark.reliability(36)
@pytest.mark.parametrize(("what", "body"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_schema_or_grammar_is_a_quick_400(
    tiny_server: Server, what: str, body: dict[str, Any]
) -> None:
    started = time.monotonic()
    r = post(tiny_server, **body)
    assert r.status_code in (400, 413), (what, r.text[:500])
    assert time.monotonic() - started < 10, what
    assert post(tiny_server, max_tokens=2).status_code == 200  # the engine is unharmed


@pytest.mark.reliability(36)
def test_a_grammar_no_character_can_satisfy_ends_the_answer_cleanly(tiny_server: Server) -> None:
    # llama.cpp lets through byte tokens that no UTF-8 text starts with (as partial
    # characters); the answer is those bytes, replaced, or refused: never a 5xx or a hang.
    r = post(tiny_server, grammar="root ::= [^\\x00-\\U0010FFFF]", max_tokens=8)
    assert r.status_code in (200, 400), r.text
    assert post(tiny_server, max_tokens=2).status_code == 200


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_logit_bias_bans_and_forces_tokens(tiny_server: Server, temperature: float) -> None:
    def tokens(text: str) -> list[int]:
        r = httpx.post(f"{tiny_server.url}/tokenize", json={"content": text}, timeout=30)
        return list(r.json()["tokens"])

    def answer(bias: dict[str, int]) -> str:
        r = client(tiny_server).chat.completions.create(
            model=TINY,
            messages=ASK,
            max_tokens=6,
            temperature=temperature,
            seed=7,
            logit_bias=bias,
        )
        return r.choices[0].message.content or ""

    first = tokens(answer({}))[0]
    assert tokens(answer({str(first): -100}))[0] != first  # banned
    [banana] = tokens(" banana")[:1]
    assert answer({str(banana): 100}).split() == ["banana"] * 6  # forced, every token
    for bias in ({"x1": 5}, {str(10**8): 5}, {"1": "lots"}):
        r = post(tiny_server, logit_bias=bias)
        assert r.status_code == 400 and r.json()["error"]["param"].startswith("logit_bias")


def test_logprobs_report_each_written_token_and_its_likeliest_rivals(tiny_server: Server) -> None:
    r = client(tiny_server).chat.completions.create(
        model=TINY, messages=ASK, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = r.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content and r.usage is not None
    written = choice.logprobs.content
    assert len(written) == r.usage.completion_tokens
    assert b"".join(bytes(t.bytes or []) for t in written).decode() == choice.message.content
    for t in written:
        rivals = [x.logprob for x in t.top_logprobs]
        assert len(rivals) == 3 and rivals == sorted(rivals, reverse=True) and rivals[0] <= 0
        # Greedy: the written token is the likeliest one.
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob
    plain = client(tiny_server).chat.completions.create(
        model=TINY, messages=ASK, max_tokens=8, temperature=0
    )
    assert plain.choices[0].logprobs is None
    assert plain.choices[0].message.content == choice.message.content  # the same answer
    legacy = client(tiny_server).completions.create(
        model=TINY, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=2
    )
    lp = legacy.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert "".join(lp.tokens) == legacy.choices[0].text
    assert lp.text_offset == [sum(map(len, lp.tokens[:i])) for i in range(len(lp.tokens))]
    assert all(len(top) <= 2 for top in lp.top_logprobs)


def test_streamed_logprobs_arrive_with_the_text_of_their_tokens(tiny_server: Server) -> None:
    chat = client(tiny_server).chat.completions
    whole = chat.create(
        model=TINY, messages=ASK, max_tokens=12, temperature=0, logprobs=True, top_logprobs=2
    )
    assert whole.choices[0].logprobs is not None
    stream = chat.create(
        model=TINY, messages=ASK, max_tokens=12, temperature=0, logprobs=True, top_logprobs=2,
        stream=True,
    )  # fmt: skip
    text, tokens = "", list[Any]()
    for chunk in stream:
        for choice in chunk.choices:
            piece = choice.delta.content or ""
            entries = choice.logprobs.content if choice.logprobs else None
            assert bool(piece) == bool(entries)  # text comes with the tokens it was written from
            text += piece
            tokens += entries or []
    assert text == whole.choices[0].message.content
    kept = whole.choices[0].logprobs.content or []
    assert [t.token for t in tokens] == [t.token for t in kept]
    # The second request reuses the first one's cells: its logits come from another batch
    # shape, which moves them a little (README, Exactness).
    assert all(abs(a.logprob - b.logprob) < 0.25 for a, b in zip(tokens, kept, strict=True))
    legacy = client(tiny_server).completions.create(
        model=TINY, prompt="The capital of France is", max_tokens=12, temperature=0, logprobs=1,
        stream=True,
    )  # fmt: skip
    pieces = [(c.choices[0].text, c.choices[0].logprobs) for c in legacy if c.choices]
    offsets = [o for _, lp in pieces if lp for o in lp.text_offset or []]
    words = [w for _, lp in pieces if lp for w in lp.tokens or []]
    assert offsets == [sum(map(len, words[:i])) for i in range(len(words))]
    assert "".join(words) == "".join(t for t, _ in pieces)


def _prefilled(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("edgeinf_prefilled_tokens_total"))  # fmt: skip


def test_n_choices_share_one_prefill_and_stream_side_by_side(tiny_server: Server) -> None:
    words = " ".join(f"w{i * 7919 % 1000}" for i in range(150))  # in no other test's prompt
    ask: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": f"Repeat some of these: {words}"}
    ]
    before = _prefilled(tiny_server)
    r = client(tiny_server).chat.completions.create(
        model=TINY, messages=ask, max_tokens=8, n=3, temperature=1.0, seed=5
    )
    assert [c.index for c in r.choices] == [0, 1, 2] and r.usage is not None
    assert len({c.message.content for c in r.choices}) > 1  # each choice its own seed
    # The prompt was evaluated once: the other choices evaluated only its last token.
    assert _prefilled(tiny_server) - before <= r.usage.prompt_tokens + 2
    stream = client(tiny_server).chat.completions.create(
        model=TINY, messages=ASK, max_tokens=6, n=2, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    texts, finished, usage = ["", ""], set(), None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1} and all(texts) and usage is not None
    assert usage.completion_tokens > 6  # both choices' tokens
    fill = httpx.post(
        f"{tiny_server.url}/v1/completions",
        json={"prompt": "def f(", "suffix": "return x", "n": 2},
        timeout=30,
    )
    assert fill.status_code == 400 and fill.json()["error"]["param"] == "n"
