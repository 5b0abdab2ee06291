"""Property-based fuzzing of what turns a request's schema or grammar into llama.cpp's grammar
sampler (JSON schemas through the converter, GBNF text through llama.cpp's own parser, both
checked against the 270M model's vocabulary), and of the parse of tool calls out of answers.
Typed errors only, no hang, no crash."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeinf.engine.callstream import CallPiece, CallStream
from edgeinf.engine.engine import Engine
from edgeinf.engine.grammar import Grammar, check_source, from_schema
from edgeinf.engine.options import EngineOptions
from edgeinf.engine.toolcalls import Held, parse
from edgeinf.errors import InvalidRequestError
from edgeinf.types import Tool
from tests.fuzz.conftest import Cases

NAMES = st.text(st.characters(codec="utf-8"), max_size=8)
KEYWORDS = st.sampled_from(
    ["type", "properties", "required", "items", "enum", "const", "anyOf", "oneOf", "allOf",
     "$ref", "$defs", "additionalProperties", "minLength", "maxLength", "minimum", "maximum",
     "pattern", "format", "minItems", "maxItems", "prefixItems", "not", "default"]
)  # fmt: skip
TYPES = st.sampled_from(["object", "array", "string", "integer", "number", "boolean", "null"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), NAMES,
    TYPES, st.sampled_from(["#/$defs/a", "#", "#/properties/x", "http://x/s.json", "[a-z]+",
                            "^(a|", "date-time", "uuid"]),
)  # fmt: skip


def _schemas(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYWORDS, NAMES), children, max_size=5),
    )


SCHEMAS = st.recursive(SCALARS, _schemas, max_leaves=30)


@pytest.mark.reliability(36)
@given(schema=SCHEMAS)
def test_any_schema_compiles_or_is_refused(schema: Any, cases: Cases) -> None:
    cases()
    try:
        grammar = from_schema(schema, "schema")
    except InvalidRequestError as exc:
        assert exc.param == "schema"
    else:
        assert "root" in grammar


@pytest.fixture(scope="module")
def vocab_engine(tiny_path: Path) -> Iterator[Engine]:
    with Engine(tiny_path, EngineOptions(n_ctx=256, threads=1, threads_batch=1)) as engine:
        yield engine


GBNF_PIECES = st.sampled_from(
    ["root", " ::= ", "::=", "rule", " | ", "(", ")", "*", "+", "?", "{2,3}", "{9999999999}",
     '"a"', '"', "[a-z]", "[^", "]", "\\", "\\x", "\\u12", "\\U0010FFFF", ".", "#c\n", "\n",
     " ", "-", "<[1]>", "!"]
)  # fmt: skip
GBNF = st.one_of(
    st.lists(GBNF_PIECES, max_size=24).map("".join),
    st.text(st.characters(codec="utf-8"), max_size=64),
)


@pytest.mark.reliability(36)
@given(text=GBNF)
def test_any_grammar_text_compiles_or_is_refused(
    text: str, vocab_engine: Engine, cases: Cases
) -> None:
    cases()
    try:
        check_source(text, "grammar")
        grammar = Grammar(vocab_engine.vocab, text)
    except InvalidRequestError as exc:
        assert exc.param == "grammar"
        return
    try:
        grammar.check_start(vocab_engine.vocab)
    except InvalidRequestError as exc:
        assert exc.param == "grammar"
    finally:
        grammar.close()


CALL_PIECES = st.sampled_from(
    ["<tool_call>", "</tool_call>", "<tool_", "call>", "\n", " ", '{"name": "f"', '"name"', ":",
     '"f"', '"g"', ', "arguments": ', '{"x": 1}', '"{\\"x\\": 2}"', "}", "{", "```json", "```",
     "text", "[1, 2]", "null", '"'],
)  # fmt: skip
ANSWERS = st.one_of(
    st.lists(CALL_PIECES, max_size=20).map("".join), st.text(st.characters(codec="utf-8"))
)


@pytest.mark.reliability(37)
@given(text=ANSWERS, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_any_answer_parses_into_text_and_calls_of_known_tools(
    text: str, cuts: list[int], cases: Cases
) -> None:
    cases()
    found = parse(text, (Tool("f"),))
    for call in found.calls:
        assert call.name == "f" and isinstance(json.loads(call.arguments), dict)
    if not found.calls:
        assert found.text == text and not found.cut
    held = Held()  # streamed in arbitrary pieces: what is let out is the answer's beginning
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    out = "".join(held.feed(text[a:b]) for a, b in itertools.pairwise(points))
    assert text.startswith(out)
    if found.calls:
        assert "<tool_call>" not in out  # calls never reach a client as text
    else:
        assert out + held.rest(found.text, False) == text  # all of a plain answer arrives
    stream = CallStream((Tool("f"),))  # calls sent as they are written: what joins is valid
    sent = [p for a, b in itertools.pairwise(points) for p in stream.feed(text[a:b])]
    sent += stream.end(found.text, found.calls)
    calls: dict[int, list[CallPiece]] = {}
    for piece in sent:
        if isinstance(piece, CallPiece):
            calls.setdefault(piece.index, []).append(piece)
    assert sorted(calls) == list(range(len(calls)))
    for index, pieces in calls.items():
        assert pieces[0].id and pieces[0].name == "f" and all(p.id is None for p in pieces[1:])
        if index < len(found.calls):  # a call the answer holds: its arguments, whole
            assert isinstance(json.loads("".join(p.arguments for p in pieces)), dict)
    assert len(calls) >= len(found.calls)
