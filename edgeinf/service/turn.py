"""The turn pipeline: one conversation turn for every shell (route, remote, fallback, local
answer, cascade, keep), handed back as one stream of text and one result.

`run`, `chat`, the server and route training all answer through `TurnPipeline.answer`; shells
only turn the text into their medium. The turn's steps are one generator: iterated on the
caller's thread by `edgeinf run` and `edgeinf chat`, on a thread of its own for the server,
whose event loop reads it through `TurnHandle.open` and `TurnHandle.pieces`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, replace

from edgeinf.engine.callsyntax import Syntax
from edgeinf.engine.toolcalls import Parsed, parse, repeats
from edgeinf.route.cascade import SECOND_SAMPLE_TEMPERATURE, agree
from edgeinf.route.dispatch import CUT_NOTICE, Dispatcher, Notify, fell_back
from edgeinf.route.policy import Decision, Override
from edgeinf.route.remote import RemoteAnswer, RemoteError
from edgeinf.service.channel import Channel
from edgeinf.service.fill import Fill
from edgeinf.service.local import ChatService
from edgeinf.service.local_answer import ChatRequest, LocalAnswer, LocalResult
from edgeinf.types import Choice, Scored, Thought, ToolCall

CASCADE_NOTICE = "\n\n[the local model was unsure (two samples disagreed); the remote answers]\n\n"
POLL_S = 0.25  # how often a waiting reader checks that the turn is still wanted


@dataclass(frozen=True)
class TurnRequest:
    chat: ChatRequest
    route: Override | None = None  # None: the configured route
    private: bool = False
    raw_prompt: str | None = None  # text to continue as is: answered locally, never routed
    fill: Fill | None = None  # text to fill in between two others: local, never routed
    deadline: float | None = None  # time.monotonic() after which a local answer is cut


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
class _Opened:
    """Yielded once the turn was admitted: what fails before it is the request's error."""

    model: str  # the model that starts answering


Step = str | Scored | Thought | _Opened


class _Cancelled(Exception):
    """The reader left; the turn ends without an answer."""


class _Stop:
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
        self, steps: Generator[Step, None, Answer | None], stop: _Stop, syntax: Syntax
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
                if isinstance(step, _Opened):
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


class TurnPipeline:
    """Answers turns for one loaded model: the dispatcher decides, the service answers."""

    def __init__(
        self, service: ChatService, dispatcher: Dispatcher, notify: Notify | None = None
    ) -> None:
        self.service, self.dispatcher = service, dispatcher
        self.notify = notify or dispatcher.notify

    def answer(self, request: TurnRequest) -> TurnHandle:
        stop = _Stop()
        return TurnHandle(self._steps(request, stop), stop, self.service.syntax)

    def _steps(self, req: TurnRequest, stop: _Stop) -> Generator[Step, None, Answer | None]:
        try:
            return (yield from self._turn(req, stop))
        except _Cancelled:
            return None

    def _turn(self, req: TurnRequest, stop: _Stop) -> Generator[Step, None, Answer | None]:
        chat = req.chat
        if req.raw_prompt is not None or req.fill is not None:
            result = yield from self._local(req, stop)
            return None if result is None else _local_answer(self.service, result, None, None)
        decision = self.dispatcher.decide(
            chat.messages, chat.sampling, req.route, req.private, chat.owner, chat.session_id
        )
        opened = decision.target == "remote"
        if opened:
            yield _Opened(self.dispatcher.settings.remote_model or "remote")
            try:
                return (yield from self._remote(chat, decision, stop))
            except RemoteError as exc:
                self.notify(f"{exc}; answering locally")
                if exc.partial:
                    yield CUT_NOTICE
                decision = fell_back(decision, exc)
        result = yield from self._local(req, stop, opened)
        if result is None:
            return None
        found = parse(result.said.answer, chat.tools, self.service.syntax) if chat.tools else None
        if found and not found.text and repeats(found.calls, chat.messages):
            # Only calls made and answered already (nothing of it was shown: a reader holds
            # calls back): the model is asked again without the tools, to answer from their
            # results, which small models then do.
            again = replace(chat, tools=(), tool_choice=Choice("none"))
            result = yield from self._local(replace(req, chat=again), stop, opened=True)
            if result is None:
                return None
            found = parse(result.said.answer, chat.tools, self.service.syntax)
        escalate = self.dispatcher.escalation(decision, chat.messages, chat.sampling)
        if escalate and not self._agrees(chat, result.said.answer, stop):
            yield CASCADE_NOTICE
            try:
                return (yield from self._remote(chat, escalate, stop))
            except RemoteError as exc:
                self.notify(f"{exc}; keeping the local answer")
        return _local_answer(self.service, result, decision, found)

    def _local(
        self, req: TurnRequest, stop: _Stop, opened: bool = False
    ) -> Generator[Step, None, LocalResult | None]:
        local = self.service.local(req.chat, req.raw_prompt, req.deadline, req.fill)  # admission
        stop.watch(local)
        if not opened:
            yield _Opened(self.service.model.name)
        yield from local.pieces()
        return local.result

    def _agrees(self, chat: ChatRequest, first: str, stop: _Stop) -> bool:
        """The cascade's signal: a second, sampled local answer agrees with the first."""
        sampling = replace(chat.sampling, temperature=SECOND_SAMPLE_TEMPERATURE, seed=1)
        again = ChatRequest(chat.messages, sampling, owner=chat.owner, thinking=chat.thinking)
        second = self.service.local(again)
        stop.watch(second)
        text = "".join(second)
        if second.result is None:
            raise _Cancelled
        return agree(first, text)

    def _remote(
        self, chat: ChatRequest, decision: Decision, stop: _Stop
    ) -> Generator[Step, None, Answer]:
        """The remote's answer streamed through, kept in the session; RemoteError when none
        came (the caller answers locally)."""
        channel = Channel()

        def on_text(piece: str) -> None:
            if stop.event.is_set():
                raise _Cancelled  # stops the remote's reading thread
            channel.text(piece)

        def call() -> None:
            try:
                asked = self.dispatcher.ask(
                    chat.messages, chat.sampling, on_text, chat.tools, chat.tool_choice
                )
                channel.end(asked)
            except BaseException as exc:
                channel.end(exc)

        def idle() -> None:
            if stop.event.is_set():
                raise _Cancelled

        threading.Thread(target=call, name="edgeinf-remote", daemon=True).start()
        try:
            value = yield from channel.read(POLL_S, idle)
        except (GeneratorExit, KeyboardInterrupt):
            stop.event.set()  # closed early: the remote's reading thread stops at its next piece
            raise
        assert isinstance(value, RemoteAnswer)
        self.service.record(chat, value.text, value.tool_calls)
        return Answer(
            value.text,
            self.dispatcher.settings.remote_model or "remote",
            value.finish_reason,
            value.prompt_tokens,
            value.completion_tokens,
            value.seconds,
            replace(decision, attempts=value.attempts),
            tool_calls=value.tool_calls,
        )


def _local_answer(
    service: ChatService, result: LocalResult, route: Decision | None, found: Parsed | None
) -> Answer:
    """`found`: the answer's calls and the rest of its text, when the request had tools."""
    c, said = result.completion, result.said
    text, calls = (found.text, found.calls) if found else (said.answer, ())
    finish = "tool_calls" if calls and not (found and found.cut) else c.finish_reason
    return Answer(
        text,
        service.model.name,
        finish,
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
        c.timings.total_s,
        route,
        result,
        calls,
        said.reasoning,
    )
