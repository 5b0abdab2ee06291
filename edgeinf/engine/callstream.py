"""Tool calls streamed while they are written: text is let out where no call can be starting
(toolcalls.Held), and a call in Hermes' tags is sent as its name once known, then its
arguments in pieces as the model writes them, as OpenAI's `delta.tool_calls` are. Calls in
other syntaxes end the answer, and are sent whole when it ends.

Inside the tags the grammar holds the call to `{"name": ..., "arguments": {...}}` in that
order, so the arguments can be sent as written: the pieces join to the JSON object the
model wrote (the finished answer's call holds the same object, re-encoded). A call written
another way (bare, in a fence, keys in another order) is sent whole once the answer ends.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edgeinf.engine.callsyntax import HERMES, Syntax
from edgeinf.engine.toolcalls import CLOSE, OPEN, Held
from edgeinf.types import Tool, ToolCall

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"([^"\\]{1,256})"\s*,\s*"arguments"\s*:\s*(?=\{)')
_TAIL = re.compile(rf"\s*\}}\s*{re.escape(CLOSE)}")
_LONGEST_HEAD = 400  # characters from the tag on by which a call's head is known or not
_LONGEST_TAIL = 60


@dataclass(frozen=True)
class CallPiece:
    """A piece of the `index`th call: with its first, the call's id and name."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


Streamed = str | CallPiece  # text let out, or a piece of a call


class CallStream:
    """One streamed answer with tools: feed it the text, send what it returns."""

    def __init__(self, tools: Sequence[Tool], syntax: Syntax = HERMES) -> None:
        self.held = Held(syntax)
        self._names = {t.name for t in tools}
        self._sent = 0  # calls begun in the stream
        self._at = 0  # where in the text the parse of calls stands
        self._state: Literal["tag", "arguments", "tail", "whole"] = (
            "tag" if syntax == HERMES else "whole"
        )
        self._depth = 0  # of the arguments' brackets
        self._quoted = self._escaped = False

    def feed(self, text: str) -> list[Streamed]:
        out: list[Streamed] = []
        if shown := self.held.feed(text):
            out.append(shown)
        if self.held.closed:  # a call began in the tags
            out += self._calls(self.held.text)
        return out

    def end(self, text: str, calls: Sequence[ToolCall]) -> list[Streamed]:
        """At the end, given the answer's text without its calls and the calls: the text
        not let out, and the calls not streamed (whole)."""
        out: list[Streamed] = []
        if rest := self.held.rest(text, bool(calls)):
            out.append(rest)
        for i, call in enumerate(calls[self._sent :], self._sent):
            out.append(CallPiece(i, call.arguments, call.id, call.name))
        return out

    def _calls(self, text: str) -> list[Streamed]:
        out: list[Streamed] = []
        while True:
            if self._state == "tag":
                start = text.find(OPEN, self._at)
                head = _HEAD.match(text, start + len(OPEN)) if start >= 0 else None
                if head is None or head.group(1) not in self._names:
                    if start >= 0 and (head is not None or len(text) - start > _LONGEST_HEAD):
                        self._state = "whole"  # not the expected shape: sent at the end
                    return out
                call_id = "call_" + secrets.token_hex(12)
                out.append(CallPiece(self._sent, "", call_id, head.group(1)))
                self._sent += 1
                self._at, self._state = head.end(), "arguments"
            elif self._state == "arguments":
                end = self._scan(text)
                if end > self._at:
                    out.append(CallPiece(self._sent - 1, text[self._at : end]))
                    self._at = end
                if self._depth:
                    return out  # the arguments go on in the next piece
                self._state = "tail"
            elif self._state == "tail":
                tail = _TAIL.match(text, self._at)
                if tail is None:
                    if len(text) - self._at > _LONGEST_TAIL:
                        self._state = "whole"
                    return out
                self._at, self._state = tail.end(), "tag"
            else:
                return out

    def _scan(self, text: str) -> int:
        """Follow the arguments from `_at` (their `{` first); return where they end, or the
        end of the text while they go on (`_depth` above 0)."""
        for i in range(self._at, len(text)):
            c = text[i]
            if self._quoted:
                if self._escaped:
                    self._escaped = False
                elif c == "\\":
                    self._escaped = True
                elif c == '"':
                    self._quoted = False
            elif c == '"':
                self._quoted = True
            elif c in "{[":
                self._depth += 1
            elif c in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
        return len(text)
