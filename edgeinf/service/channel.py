"""Text and an end, handed from a producing thread (the decode loop, the remote's reader) to
the generator that reads them; where a stream reports them, the log-probabilities of the
text's tokens come before it."""

from __future__ import annotations

import queue
from collections.abc import Callable, Generator

from edgeinf.types import Scored, TokenLogprob


class Channel:
    def __init__(self) -> None:
        self._events: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()

    def text(self, piece: str) -> None:
        self._events.put((False, piece))

    def scored(self, tokens: tuple[TokenLogprob, ...]) -> None:
        self._events.put((False, Scored(tokens)))

    def end(self, value: object) -> None:
        """The last event: a result, or an exception for the reader to raise."""
        self._events.put((True, value))

    def read(
        self, poll_s: float | None = None, idle: Callable[[], None] = lambda: None
    ) -> Generator[str | Scored, None, object]:
        """Yield the text (and its scores) until the end, then return its value (or raise
        it); `idle` is called every `poll_s` while nothing arrives (it may raise to stop
        reading)."""
        while True:
            try:
                last, value = self._events.get(timeout=poll_s)
            except queue.Empty:
                idle()
                continue
            if not last:
                assert isinstance(value, str | Scored)
                yield value
                continue
            if isinstance(value, BaseException):
                raise value
            return value
