"""Turns on the cores for the decode loops of several models in one process."""

from __future__ import annotations

import threading
from types import TracebackType


class Turns:
    """A fair lock: decode loops take one step each in the order they asked, so that two
    models served together alternate step by step on every core, instead of two thread
    teams competing for the same cores (which stalls both: see guard.team_size) or one
    loop that re-takes a plain lock at once starving the other."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0  # tickets handed out
        self._serving = 0  # the ticket whose holder may step now

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._issued
            self._issued += 1
            while ticket != self._serving:
                self._cond.wait()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()
