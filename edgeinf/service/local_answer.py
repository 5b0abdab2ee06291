"""A local answer: the request, the job the decode loop runs for it, its streamed text, and
the facts of it once it ended."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgeinf.engine.engine import Prompt, SeqState
from edgeinf.engine.jobs import Job
from edgeinf.engine.reasoning import Split, Start, Thinking, split
from edgeinf.service.channel import Channel
from edgeinf.service.context import ContextPolicy, Trimmed
from edgeinf.service.fill import Fill
from edgeinf.sessions.ids import LOCAL_OWNER, check_session_id
from edgeinf.sessions.keeper import Restore, Tier
from edgeinf.types import (
    Choice,
    Completion,
    Message,
    SamplingParams,
    Scored,
    Thought,
    Timings,
    Tool,
    Usage,
)

if TYPE_CHECKING:
    from edgeinf.service.local import ChatService


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    sampling: SamplingParams
    session_id: str | None = None
    owner: str = LOCAL_OWNER
    tools: tuple[Tool, ...] = ()  # functions the model may call
    tool_choice: Choice = field(default_factory=Choice)
    context_policy: ContextPolicy | None = None  # None: the settings' context_policy
    thinking: bool | None = None  # reasoning on or off, for a template that can switch it
    kept: bool = True  # False: the answer's state is not kept (the service's own asks)

    def __post_init__(self) -> None:
        if self.session_id is not None:
            check_session_id(self.session_id)


@dataclass
class LocalResult:
    """The facts of one finished local answer."""

    completion: Completion
    restore: Restore
    n_prompt: int
    reused_tokens: int  # prompt tokens whose KV state was already in the slot
    mode: str = "off"  # speculative decoding mode
    drafted: int = 0
    accepted: int = 0
    saved: dict[str, float] = field(default_factory=dict)  # the keeper's figures, later
    trimmed: Trimmed = field(default_factory=Trimmed)  # what the context policy dropped
    shifted: int = 0  # tokens a context shift dropped while answering
    start: Start = ""  # whether the answer began by reasoning

    @property
    def said(self) -> Split:
        """The answer's reasoning, if its template thinks, and the rest of its text."""
        text = self.completion.text
        return split(text, self.start) if self.start else Split("", text)

    @property
    def restored_tokens(self) -> int:
        """Prompt tokens whose KV state came from the prefix cache (RAM or disk) rather than
        from a prefill or the slot's own cells."""
        if self.restore.source not in ("ram", "disk"):
            return 0
        return min(self.restore.tokens, self.reused_tokens)

    @property
    def cached_from(self) -> Tier | None:
        """The tier the reused prompt tokens came from: "slot", "ram" or "disk" (None when
        the whole prompt was prefilled)."""
        if self.reused_tokens == 0:
            return None
        source = self.restore.source
        return source if source != "none" and self.restored_tokens else "slot"

    @property
    def prefilled_tokens(self) -> int:
        return self.n_prompt - self.reused_tokens


class LocalAnswer:
    """One local answer, decoded by the batcher's thread (with other sequences when there are
    several slots): iterate for its text; `result` is set once it ended (None when it was
    cancelled). Admission happens at construction, so a full queue raises there."""

    def __init__(
        self,
        service: ChatService,
        request: ChatRequest,
        prompt: Prompt,
        trimmed: Trimmed,
        sampling: SamplingParams,
        deadline: float | None,
        fill: Fill | None = None,
        n_keep: int | None = None,
    ) -> None:
        """A `fill` answer neither restores nor keeps saved state (its slot, only ever its own
        principal's, serves the next keystroke better than a saved prompt, which an edit has
        already outdated). With `n_keep`, an answer that fills the context shifts it,
        keeping that many tokens of the prompt (Job.n_keep)."""
        self.result: LocalResult | None = None
        self.channel = Channel()
        self.start = prompt.start
        restore = Restore("none", 0)
        lanes = service.speculation.lanes(sampling, request.owner)

        def prepare(seq: SeqState) -> None:
            nonlocal restore
            if fill is not None:
                service.keeper.claim(seq, request.owner)
                return
            restore = service.keeper.restore(seq, request.owner, prompt.tokens, prompt.ends)

        def finish(seq: SeqState, completion: Completion) -> None:
            job = self.job
            self.result = LocalResult(
                completion,
                restore,
                len(prompt.tokens),
                job.reused_tokens,
                service.speculation.mode if lanes else "off",
                job.drafted,
                job.accepted,
                trimmed=trimmed,
                shifted=job.shifted,
                start=prompt.start,
            )
            if fill is None and not job.shifted:  # shifted cells are not a prefill's
                service.keep(seq, request, prompt, self.result)

        runs = service.settings.cache_reuse if fill is None or fill.runs is None else fill.runs
        started = time.perf_counter()

        def done(_: Completion | None, error: BaseException | None) -> None:
            job = self.job
            if job.warm and error is None and not job.cancelled.is_set():
                # Prefilled, as asked: an answer with nothing in it.
                took = time.perf_counter() - started
                empty = Completion("", "stop", Usage(len(prompt.tokens), 0), Timings(took, took, 0))
                self.result = LocalResult(empty, restore, len(prompt.tokens), job.reused_tokens)
            self.channel.end(error)
            if "compactor" in service.__dict__:
                service.compactor.release()

        self.job = Job(
            prompt.tokens,
            sampling,
            self.channel.text,
            done,
            prepare,
            finish,
            deadline,
            lanes=lanes,
            warm=fill is not None and fill.warm,
            runs=runs if fill is not None else 0,
            cache=fill is None or fill.cache,
            n_keep=n_keep,
            on_scored=self.channel.scored if sampling.logprobs is not None else None,
            owner=request.owner,
        )
        service.batcher.submit(self.job)

    def __iter__(self) -> Iterator[str]:
        for piece in self.pieces():
            if isinstance(piece, str):
                yield piece

    def pieces(self) -> Iterator[str | Scored | Thought]:
        """The text (its reasoning apart, when the template thinks), and before each piece
        the log-probabilities of its tokens when the request asked for them."""
        ended = False
        thinking = Thinking(self.start) if self.start else None
        try:
            for piece in self.channel.read():
                if thinking is None or isinstance(piece, Scored):
                    yield piece
                else:
                    yield from thinking.feed(piece)
            if thinking is not None:
                yield from thinking.end()
            ended = True
        finally:
            if not ended:  # the reader left early (Ctrl+C, a client gone): stop within a step
                self.job.cancelled.set()

    def cancel(self) -> None:
        """Stop decoding at the next step (from any thread); nothing of it is kept."""
        self.job.cancelled.set()
