"""Ending a fill-in-the-middle answer where an editor wants it.

A model filling in code goes on past the gap: it closes the block and starts the next one,
writes again the lines the suffix already has, or adds an example call. Text passes here
line by line after the stop strings (textstream) and is held back only while a line could
still end the answer:

- a line indented less than the cursor's block (its first line's indentation, or `indent`)
  ends it, unwritten; one that starts by closing a bracket (`}`, `)`, `]`) is kept as the
  block's last;
- a line equal to the suffix's first line that is not blank ends it, unwritten;
- after the time budget the answer ends at the next line break;
- blank lines are released only once a line after them is.
"""

from __future__ import annotations

import time

from edgeinf.types import Insertion

CLOSERS = frozenset("})]")


class InsertionStream:
    def __init__(self, rules: Insertion) -> None:
        self.rules = rules
        self.stopped = False
        self._line = rules.cursor_line  # the current line, the cursor's text included
        self._start = len(rules.cursor_line)  # where the answer's text on it begins
        self._out = 0  # characters of the current line's answer text already released
        self._blank = ""  # blank lines held back
        self._block: int | None = rules.indent
        self._seen = rules.inside  # a line that is not blank was released, or need not be
        self._began: float | None = None

    def push(self, text: str) -> str:
        """Take released answer text; return what may be shown now."""
        if self._began is None:
            self._began = time.monotonic()
        out = []
        while text and not self.stopped:
            cut = text.find("\n")
            piece, text = (text, "") if cut < 0 else (text[: cut + 1], text[cut + 1 :])
            self._line += piece
            out.append(self._settle(complete=piece.endswith("\n")))
        return "".join(out)

    def flush(self) -> str:
        """What is held back, once the answer ended by itself (trailing blank lines go)."""
        if self.stopped or not self._line[self._start :].strip():
            return ""
        return self._settle(complete=True)

    def _settle(self, complete: bool) -> str:
        body = self._line.rstrip("\n")
        stripped = body.strip()
        if not stripped:  # blank so far: nothing decides it yet
            if complete:
                self._blank += self._line[self._start :]
                self._next_line()
            return ""
        if self._out == 0:
            if self._ends(body, stripped, complete):
                self.stopped = True
                return ""
            if not complete and self._could_repeat(stripped):
                return ""  # held: it may yet turn into the suffix's line
        if self._block is None:
            self._block = _indentation(body)
        closing = self._seen and stripped[0] in CLOSERS and self._lower(body)
        out, self._blank = self._blank + self._line[self._start + self._out :], ""
        self._out = len(self._line) - self._start
        self._seen = True
        if complete:
            budget, began = self.rules.budget_s, self._began or time.monotonic()
            if closing or (budget is not None and time.monotonic() - began > budget):
                self.stopped = True
            self._next_line()
        return out

    def _ends(self, body: str, stripped: str, complete: bool) -> bool:
        """Whether this line, of which nothing is out yet, ends the answer unwritten."""
        if self._seen and self._lower(body) and stripped[0] not in CLOSERS:
            return True
        return complete and bool(self.rules.next_line) and stripped == self.rules.next_line

    def _could_repeat(self, stripped: str) -> bool:
        return bool(self.rules.next_line) and self.rules.next_line.startswith(stripped)

    def _lower(self, body: str) -> bool:
        return self._block is not None and _indentation(body) < self._block

    def _next_line(self) -> None:
        self._line, self._start, self._out = "", 0, 0


def _indentation(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))
