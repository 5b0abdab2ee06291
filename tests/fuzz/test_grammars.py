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
from edgeinf.engine.callsyntax import HERMES, LLAMA3, MISTRAL, SYNTAXES, Syntax
from edgeinf.engine.engine import Engine
from edgeinf.engine.grammar import Grammar, check_source, from_schema
from edgeinf.engine.options import EngineOptions
from edgeinf.engine.reasoning import CLOSE_THINK, Start, Thinking, after_reasoning, split
from edgeinf.engine.toolcalls import Held, parse, shape
from edgeinf.engine.vocab import Vocab
from edgeinf.errors import InvalidRequestError
from edgeinf.types import Choice, SamplingParams, Thought, Tool
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
     "text", "[1, 2]", "null", '"', "[TOOL_CALLS]", "[", "]", ", ", "<|python_tag|>",
     ', "parameters": '],
)  # fmt: skip
ANSWERS = st.one_of(
    st.lists(CALL_PIECES, max_size=20).map("".join), st.text(st.characters(codec="utf-8"))
)


@pytest.mark.reliability(37)
@given(
    text=ANSWERS, cuts=st.lists(st.integers(0, 200), max_size=6), syntax=st.sampled_from(SYNTAXES)
)
def test_any_answer_parses_into_text_and_calls_of_known_tools(
    text: str, cuts: list[int], syntax: Syntax, cases: Cases
) -> None:
    cases()
    found = parse(text, (Tool("f"),), syntax)
    for call in found.calls:
        assert call.name == "f" and isinstance(json.loads(call.arguments), dict)
    if not found.calls:
        assert found.text == text and not found.cut
    held = Held(syntax)  # streamed in any pieces: what is let out is the answer's beginning
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    out = "".join(held.feed(text[a:b]) for a, b in itertools.pairwise(points))
    assert text.startswith(out)
    if found.calls:
        assert syntax.opener not in out  # calls never reach a client as text
    else:
        assert out + held.rest(found.text, False) == text  # all of a plain answer arrives
    stream = CallStream((Tool("f"),), syntax)  # calls sent as they are written: they join
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


BARE = '{"name": "f", "arguments": {"x": 1}}'  # a call without its family's opener
THOUGHT_PIECES = st.sampled_from(
    ["<think>", "</think>", "<thi", "nk>", "</", "think>", "<", ">", "\n", " ", "so", "{}",
     "<b>", "Paris."]
)  # fmt: skip


@pytest.mark.reliability(33)
@given(
    text=st.lists(THOUGHT_PIECES, max_size=16).map("".join),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    start=st.sampled_from(["open", "may"]),
)
def test_reasoning_splits_alike_streamed_in_any_pieces_or_whole(
    text: str, cuts: list[int], start: Start, cases: Cases
) -> None:
    cases()
    whole = split(text, start)
    assert CLOSE_THINK not in whole.reasoning
    assert whole.reasoning.strip() == whole.reasoning and not whole.answer[:1].isspace()
    if start == "open" or text.lstrip().startswith("<think>"):  # the answer follows the close
        close = text.find(CLOSE_THINK)
        assert whole.answer == ("" if close < 0 else text[close + len(CLOSE_THINK) :].lstrip())
    else:
        assert whole.answer == text.lstrip()
    thinking = Thinking(start)
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [p for a, b in itertools.pairwise(points) for p in thinking.feed(text[a:b])]
    pieces += thinking.end()
    assert "".join(p.text for p in pieces if isinstance(p, Thought)) == whole.reasoning
    assert "".join(p for p in pieces if isinstance(p, str)) == whole.answer


def _writes(grammar: Grammar, vocab: Vocab, text: str) -> str:
    """How much of `text` the grammar lets through, token by token (the tiny model's)."""
    written = ""
    for token in vocab.tokenize(text):
        if not grammar.allows(token):
            return written
        grammar.accept(token)
        written += vocab.piece(token).decode(errors="replace")
    return written


@pytest.mark.parametrize("start", ["open", "may"])
def test_a_grammar_for_a_thinking_model_starts_where_the_reasoning_ends(
    vocab_engine: Engine, start: Start
) -> None:
    vocab = vocab_engine.vocab
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params = after_reasoning(SamplingParams(grammar=from_schema(schema, "s")), start)
    opened = "" if start == "open" else "<think>"
    thought = 'It is </thinking> of <b>Paris</b> {"city": 1}.'
    good = f'{opened}{thought}\n</think>\n{{"city": "Paris"}}'
    bad = f"{opened}It is Paris.</think>\nParis"
    for text, allowed in ((good, good), (bad, bad[: bad.index("</think>") + 9])):
        grammar = Grammar(vocab, params.grammar or "", root=params.grammar_root)
        try:
            assert _writes(grammar, vocab, text) == allowed
        finally:
            grammar.close()
    # Without a reasoning block a model that may open one answers at once, held to the schema.
    if start == "may":
        grammar = Grammar(vocab, params.grammar or "", root=params.grammar_root)
        try:
            assert _writes(grammar, vocab, 'Sure {"city": "Paris"}') == ""
            grammar.close()
            grammar = Grammar(vocab, params.grammar or "", root=params.grammar_root)
            assert _writes(grammar, vocab, '{"city": "Paris"}') == '{"city": "Paris"}'
        finally:
            grammar.close()


@pytest.mark.parametrize(
    ("syntax", "written", "refused"),
    [
        (HERMES, '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>', BARE),
        (LLAMA3, '<|python_tag|>{"name": "f", "parameters": {"x": 1}}', BARE),
        (LLAMA3, '{"name": "f", "parameters": {"x": 1}}', "<tool_call>"),
        (MISTRAL, '[TOOL_CALLS] [{"name": "f", "arguments": {"x": 1}}]', "<tool_call>"),
    ],
)
def test_a_required_call_is_held_to_its_family_s_syntax(
    vocab_engine: Engine, syntax: Syntax, written: str, refused: str
) -> None:
    vocab = vocab_engine.vocab
    tool = Tool("f", "", {"type": "object", "properties": {"x": {"type": "integer"}}})
    calls = shape((tool,), Choice("required"), syntax)
    assert calls is not None and not calls.lazy
    for text, allowed in ((written, True), (refused, False), ("Sure", False)):
        grammar = Grammar(vocab, calls.grammar)
        try:
            assert (_writes(grammar, vocab, text) == text) is allowed, text
        finally:
            grammar.close()
    assert [c.name for c in parse(written, (tool,), syntax).calls] == ["f"]
