"""Continuous batching: several sequences decoded together in one llama.cpp context.

One thread owns the engine. Each loop it admits waiting jobs into free sequence slots
(preferring the slot whose cached tokens share the longest prefix with the prompt), builds
one batch holding every decoding sequence's next token plus prompt chunks of sequences
still prefilling, decodes it once, and samples each sequence from its own output row.
A cancelled or expired job leaves at the next loop, within one decode step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeinf.engine.emitter import Emitter
from edgeinf.engine.engine import Engine, SeqState, common_prefix
from edgeinf.engine.sampling import Sampler
from edgeinf.errors import EdgeinfError
from edgeinf.types import Completion, SamplingParams

log = logging.getLogger("edgeinf.batcher")


class QueueFullError(EdgeinfError):
    code = "server_busy"


@dataclass
class Job:
    """A request for the batcher; callbacks run on the engine thread and must not block."""

    prompt: list[int]
    params: SamplingParams
    on_text: Callable[[str], None]
    on_done: Callable[[Completion | None, BaseException | None], None]
    # Runs on the engine thread before prefill (restore saved state into the slot) and
    # after the answer (save it); both may be None.
    prepare: Callable[[SeqState], None] | None = None
    finish: Callable[[SeqState, Completion], None] | None = None
    deadline: float | None = None  # time.monotonic() after which the answer is cut
    cancelled: threading.Event = field(default_factory=threading.Event)
    reused_tokens: int = 0


@dataclass
class _Slot:
    seq: SeqState
    job: Job | None = None
    emitter: Emitter | None = None
    sampler: Sampler | None = None
    prefill: list[int] = field(default_factory=list)  # prompt tokens not yet evaluated
    pending: int | None = None  # sampled, not yet evaluated
    out_index: int = -1  # this slot's output row in the last batch


class Batcher:
    def __init__(self, engine: Engine, parallel: int, max_queue: int) -> None:
        self.engine = engine
        self.slots = [_Slot(SeqState(i)) for i in range(parallel)]
        self.limit = parallel  # sequences decoded together now; lowered when the machine strains
        self.max_queue = max_queue
        self._waiting: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="edgeinf-batcher", daemon=True)
        self._thread.start()

    # -- called from request handlers --

    def submit(self, job: Job) -> None:
        with self._wake:
            if self._stopping:
                raise QueueFullError("the server is shutting down; retry on another instance")
            if len(self._waiting) >= self.max_queue:
                raise QueueFullError(
                    f"all {len(self.slots)} slots are busy and {self.max_queue} requests wait; "
                    "retry shortly"
                )
            self._waiting.append(job)
            self._wake.notify()

    def depth(self) -> tuple[int, int]:
        """(running, waiting) jobs."""
        with self._wake:
            return sum(s.job is not None for s in self.slots), len(self._waiting)

    def stop(self, drain_s: float) -> None:
        """Stop admitting; let running answers finish for up to `drain_s`, then end them."""
        with self._wake:
            self._stopping = True
            for job in self._waiting:
                job.on_done(None, QueueFullError("the server is shutting down"))
            self._waiting.clear()
            self._wake.notify()
        deadline = time.monotonic() + drain_s
        while any(s.job for s in self.slots) and time.monotonic() < deadline:
            time.sleep(0.05)
        for slot in self.slots:
            if slot.job is not None:
                slot.job.cancelled.set()
        with self._wake:
            self._wake.notify()
        self._thread.join(timeout=5)

    # -- the engine thread --

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._admit()
                if not any(s.job for s in self.slots):
                    if self._stopping:
                        return
                    self._wake.wait()
                    continue
            try:
                self._step()
            except EdgeinfError as exc:  # a failed decode ends the jobs in it, not the server
                for slot in self.slots:
                    if slot.job is not None:
                        self._end(slot, exc)

    def _admit(self) -> None:
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled.is_set():
                self._waiting.popleft()
                job.on_done(None, None)
                continue
            free = [s for s in self.slots if s.job is None]
            if not free or len(self.slots) - len(free) >= self.limit:
                return
            self._waiting.popleft()
            slot = max(free, key=lambda s: common_prefix(s.seq.tokens, job.prompt))
            try:
                self._start(slot, job)
            except EdgeinfError as exc:
                job.on_done(None, exc)

    def _start(self, slot: _Slot, job: Job) -> None:
        if job.prepare is not None:
            job.prepare(slot.seq)
        job.reused_tokens = self.engine.reuse_prefix(slot.seq, job.prompt)
        slot.job = job
        slot.emitter = Emitter(self.engine.vocab, job.params, len(job.prompt))
        slot.sampler = Sampler(job.params, self.engine.vocab.n_tokens)
        slot.prefill = job.prompt[job.reused_tokens :]
        slot.pending = None

    def _step(self) -> None:
        engine, batch = self.engine, self.engine.batch
        now = time.monotonic()
        for slot in self.slots:
            job = slot.job
            if job is not None and (
                job.cancelled.is_set() or (job.deadline and now > job.deadline)
            ):
                if slot.emitter is not None and not job.cancelled.is_set():
                    slot.emitter.finish = "length"  # out of time: end the answer where it is
                self._end(slot, None)
        batch.clear()
        room = batch.capacity
        for slot in self.slots:
            slot.out_index = -1
            if slot.job is None or room == 0:
                continue
            if slot.pending is not None:
                slot.out_index = batch.add(
                    slot.pending, len(slot.seq.tokens), slot.seq.seq_id, True
                )
                slot.seq.tokens.append(slot.pending)
                slot.pending = None
                room -= 1
            elif slot.prefill:
                chunk, slot.prefill = slot.prefill[:room], slot.prefill[room:]
                base = len(slot.seq.tokens)
                for i, tok in enumerate(chunk):
                    last = i == len(chunk) - 1 and not slot.prefill
                    index = batch.add(tok, base + i, slot.seq.seq_id, last)
                    if last:
                        slot.out_index = index
                slot.seq.tokens.extend(chunk)
                room -= len(chunk)
        if batch.raw.n_tokens == 0:
            return
        engine.decode()
        for slot in self.slots:
            if slot.out_index >= 0 and slot.job is not None:
                self._sample(slot)

    def _sample(self, slot: _Slot) -> None:
        assert slot.job and slot.emitter and slot.sampler
        token = slot.sampler.sample(self.engine.ctx, slot.out_index)
        text = slot.emitter.push(token)
        if text:
            slot.job.on_text(text)
        slot.emitter.budget(len(slot.seq.tokens), self.engine.seq_ctx)
        if slot.emitter.finish:
            self._end(slot, None)
        else:
            slot.pending = token

    def _end(self, slot: _Slot, error: BaseException | None) -> None:
        job, emitter = slot.job, slot.emitter
        slot.job = slot.emitter = None
        slot.pending = None
        slot.prefill = []
        if slot.sampler is not None:
            slot.sampler.close()
            slot.sampler = None
        if job is None:
            return
        if error is not None or emitter is None or job.cancelled.is_set():
            job.on_done(None, error)
            return
        if rest := emitter.flush():
            job.on_text(rest)
        completion = emitter.completion()
        if job.finish is not None:
            try:
                job.finish(slot.seq, completion)
            except EdgeinfError as exc:
                log.warning("after-answer step failed: %s", exc)
        job.on_done(completion, None)
