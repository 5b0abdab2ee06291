"""Tool calls as models write them, in their family's syntax (engine.callsyntax): the grammar
that keeps a call valid for its tool's schema, and the parse of a finished answer into text
and calls.

The grammar starts at the first token when a call is required (`tool_choice: "required"` or
a named function) and only once the model opens a call otherwise: a lazy grammar, triggered
by the syntax's opener where the vocabulary has it as one token (anywhere in the answer),
else by the opener at the start of the answer, or by a JSON object with a "name" that starts
the answer (small models often write the call bare or in a Markdown fence instead).

llama.cpp feeds a triggered grammar the text from the trigger on and aborts the process if
the grammar refuses it, so each trigger pattern matches only text that ends where the
grammar can go on: the whole text so far must match it, up to an opening the grammar allows.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeinf.engine.callsyntax import HERMES, Syntax
from edgeinf.engine.grammar import from_schema
from edgeinf.engine.textstream import unfinished
from edgeinf.engine.vocab import Vocab
from edgeinf.errors import InvalidRequestError
from edgeinf.types import Choice, Message, Tool, ToolCall, arguments_object

OPEN, CLOSE = HERMES.opener, HERMES.closer
_WS = r"[ \t\n]{0,20}"  # as the grammar's `space`
# Matched against everything written so far; the grammar takes over from the first group.
BARE_PATTERN = rf"\s*(?:```(?:json)?\s*)?(\{{{_WS}\"name\"{_WS}:{_WS}\"?)"
_BARE = re.compile(r"^\s*(?:```(?:json)?)?\s*(\{.*\})\s*(?:```)?\s*$", re.DOTALL)
_FENCE = re.compile(r"\s*(?:```(?:json)?)?\s*")


@dataclass(frozen=True)
class Shape:
    """A grammar for the sampler; a `lazy` one waits for the model to open a call."""

    grammar: str
    lazy: bool


def triggers(vocab: Vocab, syntax: Syntax = HERMES) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """What starts a lazy grammar of calls in this vocabulary: patterns, and tokens."""
    opener = vocab.tokenize(syntax.opener, special=True)
    if len(opener) == 1:  # the opener is one token: it may open a call anywhere
        return (BARE_PATTERN,), (opener[0],)
    then = rf"\[{_WS}(?:\{{{_WS}\"?)?" if syntax.listed else rf"\{{{_WS}\"?"
    opening = rf"\s*({re.escape(syntax.opener)}{_WS}(?:{then})?)"
    return (opening, BARE_PATTERN), ()


def shape(tools: Sequence[Tool], choice: Choice, syntax: Syntax = HERMES) -> Shape | None:
    """The grammar of the calls `choice` allows, written in `syntax` (None when no call may
    be made)."""
    if choice.mode == "none" or not tools:
        return None
    chosen = [t for t in tools if choice.name in (None, t.name)]
    if not chosen:
        raise InvalidRequestError(
            f"tool_choice: no tool named '{choice.name}' among the request's tools; name one "
            "of " + ", ".join(repr(t.name) for t in tools),
            param="tool_choice",
        )
    calls = {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "name": {"const": t.name},
                    syntax.key: t.parameters or {"type": "object"},
                },
                "required": ["name", syntax.key],
            }
            for t in chosen
        ]
    }
    rules = from_schema(calls, "tools")
    # The converter's start rule becomes `call`; the new start wraps calls in their tags.
    # Between JSON tokens, the whitespace models write (and the trigger patterns let in).
    rules = re.sub(r"^root ::=", "call ::=", rules, count=1, flags=re.MULTILINE)
    rules = re.sub(r"^space ::= .*$", r"space ::= [ \\t\\n]{0,20}", rules, flags=re.MULTILINE)
    bare = 'call space "```"? space'  # from BARE_PATTERN's group: the object on
    lazy = choice.mode != "required"
    opener = f'("{syntax.opener}" space)?'  # (a bare call starts from BARE_PATTERN's group)
    if syntax.listed:  # the opener, then an array of calls
        more = ' (space "," space call)*' if choice.parallel else ""
        listed = f'{opener} "[" space call{more} space "]" space'
        return Shape(f"root ::= {listed} | {bare}\n{rules}", lazy)
    if not syntax.closer:  # one call, the whole answer
        return Shape(f"root ::= {opener} {bare}\n{rules}", lazy)
    tagged = f'"{syntax.opener}" space call space "{syntax.closer}"'
    more = f" (space {tagged})*" if choice.parallel else ""
    if choice.mode == "required":
        return Shape(f"root ::= {tagged}{more}\n{rules}", lazy=False)
    return Shape(f"root ::= {tagged}{more} space | {bare}\n{rules}", lazy=True)


def instructions(tools: Sequence[Tool]) -> str:
    """What a model whose template knows nothing of tools is told, as a system message."""
    listed = "\n".join(json.dumps(t.as_dict(), ensure_ascii=False) for t in tools)
    return (
        "You may call functions to answer. These are their signatures:\n<tools>\n"
        f"{listed}\n</tools>\nTo call one, write only\n{OPEN}\n"
        '{"name": <function-name>, "arguments": <arguments-json-object>}\n'
        f"{CLOSE}\nand nothing else; otherwise answer normally."
    )


def described(messages: Sequence[Message], tools: Sequence[Tool]) -> tuple[Message, ...]:
    """A conversation for a template that knows nothing of tools: the tools described in the
    system message, earlier calls and their results written out in the markup, as text."""
    out = []
    for m in messages:
        if m.tool_calls:
            calls = "".join(
                f"\n{OPEN}\n"
                + json.dumps({"name": c.name, "arguments": arguments_object(c.arguments)})
                + f"\n{CLOSE}"
                for c in m.tool_calls
            )
            out.append(Message("assistant", (m.content + calls).strip()))
        elif m.role == "tool":
            out.append(Message("user", f"<tool_response>\n{m.content}\n</tool_response>"))
        else:
            out.append(m)
    if tools:
        note = instructions(tools)
        if out and out[0].role == "system":
            out[0] = Message("system", f"{out[0].content}\n\n{note}")
        else:
            out.insert(0, Message("system", note))
    return tuple(out)


@dataclass(frozen=True)
class Parsed:
    text: str  # the answer without its calls
    calls: tuple[ToolCall, ...]
    cut: bool  # a call was still being written when the answer ended (dropped from `text`)


def parse(text: str, tools: Sequence[Tool], syntax: Syntax = HERMES) -> Parsed:
    """The calls of known tools in an answer, and the rest of its text. A call that is not
    JSON, or names no tool of the request, stays in the text, unless it is the unfinished
    last one after calls that were made."""
    names = {t.name for t in tools}
    if not syntax.closer:
        return _parse_after(text, names, syntax)
    calls: list[ToolCall] = []
    rest: list[str] = []
    pos, cut = 0, False
    while (start := text.find(OPEN, pos)) >= 0:
        end = text.find(CLOSE, start)
        call = _call(text[start + len(OPEN) : end if end >= 0 else len(text)], names)
        if call is None:
            cut = end < 0 and bool(calls)
            break
        rest.append(text[pos:start])
        calls.append(call)
        pos = len(text) if end < 0 else end + len(CLOSE)
    if not cut:
        rest.append(text[pos:])
    if calls:
        return Parsed("".join(rest).strip(), tuple(calls), cut)
    bare = _BARE.match(text)  # the whole answer one call, bare or in a fence
    call = _call(bare.group(1), names) if bare else None
    return Parsed("", (call,), False) if call else Parsed(text, (), False)


def _parse_after(text: str, names: set[str], syntax: Syntax) -> Parsed:
    """Calls that end the answer: after the opener (the text before it is the answer's), or
    the whole answer, one object or (a listed syntax) an array of them."""
    start = text.find(syntax.opener)
    before, body = (text[:start], text[start + len(syntax.opener) :]) if start >= 0 else ("", text)
    body = _FENCE.sub("", body, count=1)
    try:
        value, end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError:
        return Parsed(text, (), False)
    found = [_call(json.dumps(v), names) for v in (value if isinstance(value, list) else [value])]
    if not found or None in found or _FENCE.fullmatch(body[end:]) is None:
        return Parsed(text, (), False)
    return Parsed(before.strip(), tuple(c for c in found if c is not None), False)


def repeats(calls: Sequence[ToolCall], messages: Sequence[Message]) -> bool:
    """Whether every call was already made, with the same arguments, and answered by a tool
    result in the conversation (small models often call again instead of answering)."""
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    made = {
        (c.name, _canonical(c.arguments))
        for m in messages
        for c in m.tool_calls
        if c.id in answered
    }
    return bool(calls) and all((c.name, _canonical(c.arguments)) in made for c in calls)


def _canonical(arguments: str) -> str:
    return json.dumps(arguments_object(arguments), sort_keys=True)


def _call(body: str, names: set[str]) -> ToolCall | None:
    try:
        value: Any = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    text = json.dumps(arguments, ensure_ascii=False)
    return ToolCall("call_" + secrets.token_hex(12), value["name"], text)


class Held:
    """A streamed answer that may hold calls: its text is let out only where no call can be
    starting, as stop strings are held back (the calls themselves come after the text)."""

    def __init__(self, syntax: Syntax = HERMES) -> None:
        self.opener = syntax.opener
        self.bare = ("{", "`", "[") if syntax.listed else ("{", "`")
        self.text = ""
        self.sent = 0  # characters of `text` let out
        self.closed = False  # a call began: nothing more is let out while it streams

    def feed(self, piece: str) -> str:
        self.text += piece
        if self.closed:
            return ""
        if self.sent == 0 and self.text.lstrip()[:1] in self.bare:
            return ""  # the whole answer may be one bare or fenced call
        start = self.text.find(self.opener, self.sent)
        if start >= 0:
            self.closed = True
            return self._upto(start)
        return self._upto(len(self.text) - unfinished(self.text, (self.opener,)))

    def _upto(self, end: int) -> str:
        out, self.sent = self.text[self.sent : end], max(self.sent, end)
        return out

    def rest(self, text: str, calls: bool) -> str:
        """At the end, given the answer's text without its calls (and whether it made
        any): what of it was not let out."""
        sent = self.text[: self.sent]
        if text.startswith(sent):
            return text[len(sent) :]
        if calls and text.startswith(sent.strip()):  # the text around calls is stripped
            return text[len(sent.strip()) :]
        return "" if sent.strip() else text  # or another answer, after calls only
