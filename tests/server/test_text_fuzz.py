"""Every text field of every generating route, fuzzed with arbitrary Unicode, lone UTF-16
surrogates included, against the real server: never a 5xx; a surrogate is a 400 that names
the field it was in."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import EXAMPLES
from tests.server.conftest import Server

# Surrogates (category Cs) are what JSON may carry and UTF-8 may not.
TEXT = st.text(st.characters(codec=None, categories=None), max_size=24)
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def _chat(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, **extra}


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
# (route, the field's name in errors, the body with the text put in that field)
FIELDS: list[tuple[str, str, Callable[[str], dict[str, Any]]]] = [
    ("/v1/chat/completions", "messages.0.content",
     lambda t: {**_chat(), "messages": [{"role": "user", "content": t}]}),
    ("/v1/chat/completions", "messages.0.content", lambda t: {**_chat(), "messages": [
        {"role": "user", "content": [{"type": "text", "text": t}]}]}),
    ("/v1/chat/completions", "messages.2.content", lambda t: {**_chat(), "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": t}]}),
    ("/v1/chat/completions", "messages.1.tool_calls.0.function.arguments",
     lambda t: {**_chat(), "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": t}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}),
    ("/v1/chat/completions", "stop", lambda t: _chat(stop=[t or "x"])),
    ("/v1/chat/completions", "user", lambda t: _chat(user=t)),
    ("/v1/chat/completions", "grammar", lambda t: _chat(grammar=f'root ::= "{t}"')),
    ("/v1/chat/completions", "tools.0.function.description",
     lambda t: _chat(tools=[{"type": "function", "function": {"name": "f", "description": t}}])),
    ("/v1/chat/completions", "response_format.json_schema.schema",
     lambda t: _chat(response_format={"type": "json_schema", "json_schema": {
         "name": "x", "schema": {"enum": [t]}}})),
    ("/v1/completions", "prompt", lambda t: {"prompt": t or "x", "max_tokens": 1}),
    ("/v1/completions", "stop", lambda t: {"prompt": "x", "max_tokens": 1, "stop": t or "x"}),
]  # fmt: skip


@pytest.mark.reliability(48)
@pytest.mark.parametrize(("path", "field", "body"), FIELDS, ids=[f"{p} {f}" for p, f, _ in FIELDS])
def test_no_text_in_any_field_is_a_5xx(
    tiny_server: Server, path: str, field: str, body: Callable[[str], dict[str, Any]]
) -> None:
    with httpx.Client(base_url=tiny_server.url, timeout=60) as http:

        @given(text=st.one_of(TEXT, st.tuples(TEXT, SURROGATE, TEXT).map("".join)))
        @settings(max_examples=max(20, EXAMPLES // 50), deadline=None, database=None)
        def check(text: str) -> None:
            # json.dumps writes a lone surrogate as its \\u escape: valid JSON, invalid text.
            r = http.post(
                path,
                content=json.dumps(body(text)).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code < 500, (text, r.text[:300])
            if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
                assert r.status_code == 400, (text, r.text[:300])
                param = r.json()["error"]["param"] or ""
                assert param.startswith(field.split(".")[0]), (text, field, r.json())

        check()
