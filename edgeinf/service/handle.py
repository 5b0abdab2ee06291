"""A turn in progress as its shell sees it: its text (iterated on the caller's thread, or read
from an event loop while the turn runs on a thread of its own), its cancellation, and the
answer it ends with."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass

from edgeinf.engine.callsyntax import Syntax
from edgeinf.route.policy import Decision
from edgeinf.service.local_answer import LocalAnswer, LocalResult
from edgeinf.types import Scored, Thought, ToolCall

POLL_S = 0.25  # how often a waiting reader checks that the turn is still wanted


@dataclass(frozen=True)
class Answer:
    """The answer that counts (after a cascade, the remote's) and the facts of its turn."""

    text: str
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    route: Decision | None  # None for raw prompts and fills, which are never routed
    local: LocalResult | None = None  # set when the local model gave this answer
    tool_calls: tuple[ToolCall, ...] = ()  # what the answer calls (`text` is the rest)
    reasoning: str = ""  # what a thinking model wrote before its answer


@dataclass(frozen=True)
class Opened:
    """Yielded once the turn was admitted: what fails before it is the request's error."""

    model: str  # the model that starts answering


Step = str | Scored | Thought | Opened


class Cancelled(Exception):
    """The reader left; the turn ends without an answer."""


class Stop:
    """The turn's cancellation: an event plus what to stop when it is set (any thread)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._local: LocalAnswer | None = None

    def watch(self, local: LocalAnswer) -> None:
        with self._lock:
            self._local = local
        if self.event.is_set():
            local.cancel()

    def set(self) -> None:
        self.event.set()
        with self._lock:
            local = self._local
        if local is not None:
            local.cancel()


class TurnHandle:
    """A turn in progress: iterate it (blocking) or read it from asyncio; `result` is the
    answer once the text ended, None when the turn was cancelled."""

    def __init__(
        self, steps: Generator[Step, None, Answer | None], stop: Stop, syntax: Syntax
    ) -> None:
        """`syntax`: how the local model writes tool calls, which a stream holds back."""
        self._steps, self._stop, self.syntax = steps, stop, syntax
        self.result: Answer | None = None
        self.model = ""  # the model that starts answering, once the turn opened
        self._events: asyncio.Queue[tuple[str, object]] | None = None
        self._ended = False
        self.why = ""  # why it was cancelled, when another than its reader leaving

    def cancel(self, why: str = "") -> None:
        self.why = why
        self._stop.set()

    # -- on the caller's thread --

    def __iter__(self) -> Iterator[str | Thought]:
        """The answer's text, and a thinking model's reasoning before it."""
        ended = False
        try:
            for step in self._iterate_all():
                if isinstance(step, str | Thought):
                    yield step
            ended = True
        finally:
            if not ended:  # the reader stopped early (Ctrl+C, a closed pipe)
                self._stop.set()
                self._steps.close()

    def _iterate_all(self) -> Iterator[Step]:
        try:
            while True:
                step = next(self._steps)
                if isinstance(step, Opened):
                    self.model = step.model
                yield step
        except StopIteration as end:
            self.result = end.value

    # -- from an event loop: the steps run on a thread of their own --

    async def open(self) -> None:
        """Start the turn; raises what failed before it was admitted (a full queue, a prompt
        too long for the context), which the caller reports as the request's error."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._events = events

        def put(kind: str, value: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads
                loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        def work() -> None:
            try:
                for step in self._iterate_all():
                    put("step", step)
                put("done", self.result)
            except BaseException as exc:  # delivered to the reader, who maps it
                put("error", exc)

        threading.Thread(target=work, name="edgeinf-turn", daemon=True).start()
        kind, value = await events.get()
        if kind == "error":
            self._ended = True
            assert isinstance(value, BaseException)
            raise value
        if kind == "done":
            await events.put((kind, value))

    async def pieces(self, alive: Callable[[], Awaitable[bool]]) -> AsyncIterator[str]:
        """The text after `open`; `alive` is asked every POLL_S, and when it says no the turn
        is cancelled. Raises what failed during the turn."""
        written = self.written(alive)
        try:
            async for piece in written:
                if isinstance(piece, str):
                    yield piece
        finally:
            await written.aclose()  # the reader left: the turn stops now, not when collected

    async def written(
        self, alive: Callable[[], Awaitable[bool]]
    ) -> AsyncGenerator[str | Scored | Thought, None]:
        """As `pieces`, with the reasoning of a thinking model, and the log-probabilities of
        each piece's tokens before it when the request asked for them."""
        assert self._events is not None, "call open() first"
        checked = time.monotonic()
        try:
            while not self._ended:
                try:
                    kind, value = await asyncio.wait_for(self._events.get(), POLL_S)
                except asyncio.TimeoutError:
                    kind, value = "", None
                if time.monotonic() - checked >= POLL_S:  # also while text keeps coming
                    checked = time.monotonic()
                    if not await alive():
                        return
                if not kind:
                    continue
                if kind == "step":
                    if isinstance(value, str | Scored | Thought):
                        yield value
                    continue
                self._ended = True
                if kind == "error":
                    assert isinstance(value, BaseException)
                    raise value
                assert value is None or isinstance(value, Answer)
                self.result = value
        finally:
            if not self._ended:  # the reader left: stop decoding within one step
                self._stop.set()
