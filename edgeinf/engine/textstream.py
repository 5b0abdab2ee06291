"""Bytes from token pieces to text: whole UTF-8 characters only, stop strings held back."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    """Turns token byte pieces into printable text.

    A token may end in the middle of a multi-byte character, and a stop string may span
    several tokens; text is released only once neither can still change it.
    """

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(stops)
        self._pending = ""
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add a token's bytes; return the text that is now final (maybe empty)."""
        self._pending += self._decoder.decode(piece)
        if not self._stops:
            out, self._pending = self._pending, ""
            return out
        cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            self.stopped = True
            return out
        hold = unfinished(self._pending, self._stops)
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(out) :]
        return out

    def flush(self) -> str:
        """The rest of the text once generation ended without a stop string."""
        out = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return out


def unfinished(text: str, marks: Sequence[str]) -> int:
    """How many characters at the end of `text` may be the start of one of `marks` (text to
    hold back until the next piece tells)."""
    for n in range(min(len(text), max(map(len, marks), default=1) - 1), 0, -1):
        tail = text[-n:]
        if any(m.startswith(tail) for m in marks):
            return n
    return 0
