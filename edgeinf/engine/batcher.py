"""Continuous batching: several sequences decoded together in one llama.cpp context.

One thread owns the engine. Each loop it admits waiting jobs into free sequence slots
(preferring the slot whose cached tokens share the longest prefix with the prompt), builds
one batch holding every decoding sequence's next token plus prompt chunks of sequences
still prefilling, decodes it once, and samples each sequence from its own output row.
A greedy sequence with an n-gram lane also puts its drafts in the batch: they are kept
while they equal what the model then picks, so the answer is the one plain decoding gives.
A cancelled or expired job leaves at the next loop, within one decode step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeinf.engine.decoders import Lane
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
    lane: Lane | None = None  # n-gram drafts for a greedy job
    drafted: int = 0
    accepted: int = 0


@dataclass
class _Slot:
    seq: SeqState
    job: Job | None = None
    emitter: Emitter | None = None
    sampler: Sampler | None = None
    prefill: list[int] = field(default_factory=list)  # prompt tokens not yet evaluated
    pending: int | None = None  # sampled, not yet evaluated
    drafts: list[int] = field(default_factory=list)  # in the batch after `pending`
    out_index: int = -1  # this slot's output row in the last batch (drafts' rows follow)


class Batcher:
    def __init__(
        self, engine: Engine, parallel: int, max_queue: int, exact_batch: int | None = None
    ) -> None:
        self.engine = engine
        self.exact_batch = exact_batch  # see _step
        self._prefill_turn = False
        self.slots = [_Slot(SeqState(i)) for i in range(parallel)]
        self.limit = parallel  # sequences decoded together now; lowered when the machine strains
        self.drafting = True  # turned off with `limit` while the machine strains
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
        decoding = [s for s in self.slots if s.job is not None and s.pending is not None]
        prefilling = [s for s in self.slots if s.job is not None and s.prefill]
        room = batch.capacity
        if self.exact_batch is not None:
            # Exact mode: a decode holds only generated tokens, at most exact_batch of them,
            # so every row is what decoding that sequence alone would give; one prompt's
            # chunk goes in a decode of its own, taking turns with generation.
            self._prefill_turn = bool(prefilling) and (not decoding or not self._prefill_turn)
            decoding, prefilling = ([], prefilling[:1]) if self._prefill_turn else (decoding, [])
            room = min(room, self.exact_batch) if decoding else room
        for i, slot in enumerate(decoding):
            assert slot.pending is not None
            if room == 0:
                continue
            # Drafts leave a row for every decoding sequence after this one.
            slot.drafts = self._drafts(slot, room - 1 - (len(decoding) - 1 - i))
            base = len(slot.seq.tokens)
            for j, tok in enumerate((slot.pending, *slot.drafts)):
                index = batch.add(tok, base + j, slot.seq.seq_id, True)
                if j == 0:
                    slot.out_index = index
            slot.seq.tokens += [slot.pending, *slot.drafts]
            slot.pending = None
            room -= 1 + len(slot.drafts)
        for slot in prefilling:
            if room == 0:
                continue
            chunk, slot.prefill = slot.prefill[:room], slot.prefill[room:]
            base = len(slot.seq.tokens)
            for j, tok in enumerate(chunk):
                last = j == len(chunk) - 1 and not slot.prefill
                index = batch.add(tok, base + j, slot.seq.seq_id, last)
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
            slot.out_index = -1

    def _drafts(self, slot: _Slot, room: int) -> list[int]:
        """Tokens to check after `slot.pending` in this batch (none when drafting would not
        pay, the job does not draft, or there is no room)."""
        lane, emitter = slot.job.lane if slot.job else None, slot.emitter
        if lane is None or emitter is None or slot.pending is None or not self.drafting:
            return []
        context = [*slot.seq.tokens, slot.pending]
        left = emitter.left(len(context), self.engine.seq_ctx)
        k = min(lane.controller.next_k(), room, left - 1)
        drafts = lane.drafter.propose(context, k)[0] if k > 0 else []
        if not drafts:
            lane.watch(context)
        return list(drafts)

    def _sample(self, slot: _Slot) -> None:
        """Sample the slot's rows in order: each accepted draft lets the next row count."""
        job, emitter, sampler = slot.job, slot.emitter, slot.sampler
        assert job and emitter and sampler
        base = len(slot.seq.tokens) - len(slot.drafts)  # cached tokens up to the evaluated one
        accepted = 0
        for i in range(len(slot.drafts) + 1):
            token = sampler.sample(self.engine.ctx, slot.out_index + i)
            if text := emitter.push(token):
                job.on_text(text)
            emitter.budget(base + i, self.engine.seq_ctx)
            if emitter.finish or i == len(slot.drafts) or token != slot.drafts[i]:
                break
            accepted += 1
        self.engine.trim(slot.seq, base + accepted)  # rejected drafts leave the cache
        if job.lane is not None:
            if slot.drafts:
                job.lane.controller.observe(len(slot.drafts), accepted)
                job.drafted += len(slot.drafts)
                job.accepted += accepted
            else:
                job.lane.saw(token)
        slot.drafts = []
        if emitter.finish:
            self._end(slot, None)
        else:
            slot.pending = token

    def _end(self, slot: _Slot, error: BaseException | None) -> None:
        job, emitter = slot.job, slot.emitter
        slot.job = slot.emitter = None
        slot.pending = None
        slot.drafts = []
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
