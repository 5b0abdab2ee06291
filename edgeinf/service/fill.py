"""Fill-in-the-middle requests: the text around the gap, made into the model's FIM prompt and
the rules that end the answer where an editor wants it."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from edgeinf.engine.engine import Engine
from edgeinf.engine.fim import Extra, Markers, fim_tokens
from edgeinf.service.context import room as answer_room
from edgeinf.types import Insertion


@dataclass(frozen=True)
class Fill:
    """Text to insert between `prefix` and `suffix`."""

    prefix: str
    suffix: str
    extra: tuple[Extra, ...] = ()  # other files, oldest first
    cursor_line: str = ""  # the cursor's line up to it, when not at the end of `prefix`
    filename: str = ""
    indent: int | None = None  # see Insertion
    budget_s: float | None = None
    runs: int | None = None  # see Job.runs; None: the settings' cache_reuse
    cache: bool = True  # False: prefill all of it, whatever the slot holds
    warm: bool = False  # only prefill it, for a request about to come; nothing is written


def fill_prompt(engine: Engine, model: str, fill: Fill, max_tokens: int) -> tuple[list[int], int]:
    """The FIM prompt, cut to leave room for the answer (at most a quarter of the context),
    and how many tokens of its text were cut; InvalidRequestError when the model has no FIM
    markers."""
    markers = Markers.of(engine.vocab, model)
    room = engine.seq_ctx - answer_room(engine.seq_ctx, max_tokens)
    return fim_tokens(
        engine.vocab,
        markers,
        fill.prefix,
        fill.suffix,
        room,
        fill.extra,
        fill.cursor_line,
        fill.filename,
    )


OPENERS = (":", "{", "(", "[")  # a line ending so opens a block


def insertion(fill: Fill) -> Insertion:
    """How the answer ends: the cursor's line, the first line after it that the suffix has
    (the rest of the cursor's line is not one), and the block the cursor is in: on a blank
    line, the block of the line above (its body, when that line opens one)."""
    before, _, cursor = (fill.prefix + fill.cursor_line).rpartition("\n")
    after = fill.suffix.split("\n")[1:]
    following = next((line.strip() for line in after if line.strip()), "")
    above = next((line for line in reversed(before.split("\n")) if line.strip()), "")
    if fill.indent is None and not cursor.strip():
        depth = len(above) - len(above.lstrip(" \t")) + above.rstrip().endswith(OPENERS)
        if depth:
            return Insertion(cursor, following, depth, inside=True, budget_s=fill.budget_s)
    return Insertion(cursor, following, fill.indent, budget_s=fill.budget_s)


SUPERSEDED = (
    "a newer fill-in-the-middle request from this client took its place; the newer one "
    "answers, nothing to do"
)


MAX_CLIENTS = 1024  # clients whose last fill is remembered


class Cancellable(Protocol):
    def cancel(self, why: str = "") -> None: ...


class Latest:
    """The newest fill of each client: an editor asks again at every keystroke, and the
    answer to the text before it is no longer wanted, so it stops at its next decode step
    (cancelling one that ended already does nothing)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[Hashable, Cancellable] = {}

    def begin(self, client: Hashable, turn: Cancellable) -> None:
        with self._lock:
            before = self._last.pop(client, None)
            self._last[client] = turn
            while len(self._last) > MAX_CLIENTS:
                del self._last[next(iter(self._last))]
        if before is not None:
            before.cancel(SUPERSEDED)
