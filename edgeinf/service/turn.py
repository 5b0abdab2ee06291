"""The turn pipeline: one conversation turn for every shell (route, remote, fallback, local
answer, cascade, keep), handed back as one stream of text and one result.

`run`, `chat`, the server and route training all answer through `TurnPipeline.answer`; shells
only turn the text into their medium. The turn's steps are one generator: iterated on the
caller's thread by `edgeinf run` and `edgeinf chat`, on a thread of its own for the server,
whose event loop reads it through `TurnHandle.open` and `TurnHandle.pieces`.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass, replace

from edgeinf.engine.toolcalls import Parsed, parse, repeats
from edgeinf.route.cascade import SECOND_SAMPLE_TEMPERATURE, agree
from edgeinf.route.deferral import RIVALS, Watch
from edgeinf.route.dispatch import CUT_NOTICE, Dispatcher, Notify, fell_back
from edgeinf.route.features import query_text
from edgeinf.route.policy import Decision, Override
from edgeinf.route.remote import RemoteAnswer, RemoteError
from edgeinf.service.channel import Channel
from edgeinf.service.fill import Fill
from edgeinf.service.handle import POLL_S, Answer, Cancelled, Opened, Step, Stop, TurnHandle
from edgeinf.service.local import ChatService
from edgeinf.service.local_answer import ChatRequest, LocalResult
from edgeinf.types import Choice, Scored

CASCADE_NOTICE = "\n\n[the local model was unsure (two samples disagreed); the remote answers]\n\n"
DEFERRAL_NOTICE = "\n\n[the local answer looks likely wrong; the remote answers]\n\n"
MIDWAY_NOTICE = "\n\n[the local model grew unsure while answering; the remote answers]\n\n"
LOCAL_AGAIN_NOTICE = "\n\n[the remote did not answer; the local model answers again]\n\n"


@dataclass(frozen=True)
class TurnRequest:
    chat: ChatRequest
    route: Override | None = None  # None: the configured route
    private: bool = False
    raw_prompt: str | None = None  # text to continue as is: answered locally, never routed
    fill: Fill | None = None  # text to fill in between two others: local, never routed
    deadline: float | None = None  # time.monotonic() after which a local answer is cut


class TurnPipeline:
    """Answers turns for one loaded model: the dispatcher decides, the service answers."""

    def __init__(
        self, service: ChatService, dispatcher: Dispatcher, notify: Notify | None = None
    ) -> None:
        self.service, self.dispatcher = service, dispatcher
        self.notify = notify or dispatcher.notify

    def answer(self, request: TurnRequest) -> TurnHandle:
        stop = Stop()
        return TurnHandle(self._steps(request, stop), stop, self.service.syntax)

    def _steps(self, req: TurnRequest, stop: Stop) -> Generator[Step, None, Answer | None]:
        try:
            return (yield from self._turn(req, stop))
        except Cancelled:
            return None

    def _turn(self, req: TurnRequest, stop: Stop) -> Generator[Step, None, Answer | None]:
        chat = req.chat
        if req.raw_prompt is not None or req.fill is not None:
            result = yield from self._local(req, stop)
            if not isinstance(result, LocalResult):
                return None
            return _local_answer(self.service, result, None, None)
        decision = self.dispatcher.decide(
            chat.messages, chat.sampling, req.route, req.private, chat.owner, chat.session_id
        )
        opened = decision.target == "remote"
        if opened:
            yield Opened(self.dispatcher.settings.remote_model or "remote")
            try:
                return (yield from self._remote(chat, decision, stop))
            except RemoteError as exc:
                self.notify(f"{exc}; answering locally")
                if exc.partial:
                    yield CUT_NOTICE
                decision = fell_back(decision, exc)
        watch = self.dispatcher.watch(decision) if not chat.tools else None
        result = yield from self._local(req, stop, opened, watch, decision)
        if isinstance(result, Decision):  # handed over while it was written
            yield MIDWAY_NOTICE
            try:
                return (yield from self._remote(chat, result, stop))
            except RemoteError as exc:
                self.notify(f"{exc}; answering locally")
                yield LOCAL_AGAIN_NOTICE
                decision, watch = fell_back(result, exc), None
                result = yield from self._local(req, stop, opened=True)
        if not isinstance(result, LocalResult):
            return None
        found = parse(result.said.answer, chat.tools, self.service.syntax) if chat.tools else None
        if found and not found.text and repeats(found.calls, chat.messages):
            # Only calls made and answered already (nothing of it was shown: a reader holds
            # calls back): the model is asked again without the tools, to answer from their
            # results, which small models then do.
            again = replace(chat, tools=(), tool_choice=Choice("none"))
            result = yield from self._local(replace(req, chat=again), stop, opened=True)
            if not isinstance(result, LocalResult):
                return None
            found = parse(result.said.answer, chat.tools, self.service.syntax)
        escalate = self._after(chat, decision, result, watch, stop)
        if escalate is not None:
            yield DEFERRAL_NOTICE if escalate.reason == "deferral" else CASCADE_NOTICE
            try:
                return (yield from self._remote(chat, escalate, stop))
            except RemoteError as exc:
                self.notify(f"{exc}; keeping the local answer")
        return _local_answer(self.service, result, decision, found)

    def _local(
        self,
        req: TurnRequest,
        stop: Stop,
        opened: bool = False,
        watch: Watch | None = None,
        decision: Decision | None = None,
    ) -> Generator[Step, None, LocalResult | Decision | None]:
        """The local answer; with a `watch` (the router's `decision` chose this model), the
        remote's decision instead when the answer was handed over while it was written."""
        chat = req.chat
        if watch is not None:  # the watch reads each token's log-probability; nobody else
            chat = replace(chat, sampling=replace(chat.sampling, logprobs=RIVALS))
        local = self.service.local(chat, req.raw_prompt, req.deadline, req.fill)  # admission
        stop.watch(local)
        if not opened:
            yield Opened(self.service.model.name)
        for piece in local.pieces():
            if watch is None or not isinstance(piece, Scored):
                yield piece
            elif watch.saw(piece.tokens):
                assert decision is not None
                handed = self.dispatcher.escalation(
                    decision, chat.messages, chat.sampling, "deferral_midway"
                )
                if handed is not None:
                    local.cancel()
                    return replace(handed, score=watch.worst, threshold=watch.deferral.midway)
                watch = None  # the remote may not answer (budget, breaker): finish locally
        return local.result

    def _after(
        self,
        chat: ChatRequest,
        decision: Decision,
        result: LocalResult,
        watch: Watch | None,
        stop: Stop,
    ) -> Decision | None:
        """After the local answer: the remote's decision when the deferral rule (or, where
        configured, the second sample's disagreement) says the remote should answer."""
        answer = result.said.answer
        if watch is not None:
            cut = result.completion.finish_reason == "length"
            chance = watch.chance(query_text(chat.messages), answer, cut)
            if chance < watch.threshold:
                return None
            handed = self.dispatcher.escalation(decision, chat.messages, chat.sampling, "deferral")
            return handed and replace(handed, score=chance, threshold=watch.threshold)
        if not self.dispatcher.settings.route_cascade:
            return None
        escalate = self.dispatcher.escalation(decision, chat.messages, chat.sampling)
        return escalate if escalate and not self._agrees(chat, answer, stop) else None

    def _agrees(self, chat: ChatRequest, first: str, stop: Stop) -> bool:
        """The cascade's signal: a second, sampled local answer agrees with the first."""
        sampling = replace(chat.sampling, temperature=SECOND_SAMPLE_TEMPERATURE, seed=1)
        again = ChatRequest(chat.messages, sampling, owner=chat.owner, thinking=chat.thinking)
        second = self.service.local(again)
        stop.watch(second)
        text = "".join(second)
        if second.result is None:
            raise Cancelled
        return agree(first, text)

    def _remote(
        self, chat: ChatRequest, decision: Decision, stop: Stop
    ) -> Generator[Step, None, Answer]:
        """The remote's answer streamed through, kept in the session; RemoteError when none
        came (the caller answers locally)."""
        channel = Channel()

        def on_text(piece: str) -> None:
            if stop.event.is_set():
                raise Cancelled  # stops the remote's reading thread
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
                raise Cancelled

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
