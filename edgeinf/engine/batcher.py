"""Continuous batching: several sequences decoded together in one llama.cpp context.

One thread owns the engine. Each loop it admits waiting jobs into free slots (the one
whose cached tokens share most of the prompt), builds one batch of every decoding sequence's
next token and prompt chunks, decodes it once, and samples each sequence from its own row.
Drafts (n-gram lookup, a draft model) ride in the batch as far as they pay for their rows
in the whole step (speculation.plan); a greedy sequence keeps them while they equal what the
model picks (plain decoding's answer), a sampled one by speculative sampling (engine.verify).

A cancelled or expired job leaves within one decode step. Whatever a job raises (a refused
decode, an unreadable saved state) ends it, or its batch's jobs, with the error, and the loop
goes on; only an error outside any job stops it (`alive` says so, waiting jobs are failed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from edgeinf.engine.chunks import align, reused
from edgeinf.engine.decoder import DecodeThread
from edgeinf.engine.emitter import Emitter
from edgeinf.engine.engine import Engine, SeqState, common_prefix
from edgeinf.engine.jobs import STOPPED, EngineStoppedError, Job, QueueFullError
from edgeinf.engine.sampling import Distribution, Sampler
from edgeinf.engine.sharing import borrow, waits
from edgeinf.engine.slot import Slot
from edgeinf.engine.speculation import plan
from edgeinf.errors import EdgeinfError

log = logging.getLogger("edgeinf.batcher")

Setup = Callable[[], tuple[Engine, int | None]]  # the engine and its exact batch


class Batcher:
    """The decode loop over one engine, run by a decode thread (its own, or one that runs
    the loops of several models in turn: engine.decoder), or by the caller."""

    def __init__(
        self,
        engine: Engine,
        parallel: int,
        max_queue: int,
        exact_batch: int | None = None,
        decoder: DecodeThread | None = None,
    ) -> None:
        """A loop over an engine made on another thread (whose decodes are then slower
        where llama.cpp runs on OpenMP: see `owning`)."""
        self._drive(decoder, parallel, max_queue)
        self.engine, self.exact_batch = engine, exact_batch
        self._driver.attach(self)

    @classmethod
    def owning(
        cls, setup: Setup, parallel: int, max_queue: int, decoder: DecodeThread | None = None
    ) -> Batcher:
        """A loop whose decode thread first makes its engine: `setup` returns the engine and
        the exact batch (see _step). With llama.cpp built on OpenMP, a context decoded from
        one thread while the thread that made it lives on decodes slower: each thread leads
        an OpenMP team of its own, the teams outnumber the cores, and libgomp stops spinning
        between parallel regions (2 cores, a Xeon: the 1.5B at 9.8 against 12.5 tok/s)."""
        self = cls.__new__(cls)
        self._drive(decoder, parallel, max_queue)
        try:
            self.engine, self.exact_batch = self._driver.call(setup)
        except BaseException:
            if self._private:
                self._driver.close()
            raise
        self._driver.attach(self)
        return self

    @classmethod
    def inline(cls, engine: Engine, parallel: int, exact_batch: int | None = None) -> Batcher:
        """A loop without a thread: `run_until_idle` runs it on the caller's thread (one-off
        answers on an engine the caller made, at the speed of that thread)."""
        self = cls.__new__(cls)
        self._begin(parallel, parallel, threading.Condition())
        self.engine, self.exact_batch = engine, exact_batch
        self._driver_ = None
        return self

    def _drive(self, decoder: DecodeThread | None, parallel: int, max_queue: int) -> None:
        self._private = decoder is None
        self._driver_: DecodeThread | None = decoder or DecodeThread()
        self._begin(parallel, max_queue, self._driver_.cond)

    @property
    def _driver(self) -> DecodeThread:
        assert self._driver_ is not None, "an inline batcher has no decode thread"
        return self._driver_

    def _begin(self, parallel: int, max_queue: int, wake: threading.Condition) -> None:
        self._prefill_turn = False
        self.slots = [Slot(SeqState(i)) for i in range(parallel)]
        self.limit = parallel  # sequences decoded together now; lowered when the machine strains
        self.drafting = True  # turned off with `limit` while the machine strains
        # Prompt tokens per step while other sequences decode (None: as many as fit): a long
        # prompt arriving holds every stream's next token for as long as its step takes.
        self.prefill_chunk: int | None = None
        self.threads: int | None = None  # decode threads wanted; None: as the engines were made
        self.companions: list[Engine] = []  # engines decoded on this thread beside `engine`
        self._threads: int | None = None
        self.max_queue = max_queue
        self._waiting: deque[Job] = deque()
        self._wake = wake  # the decode thread's: a submit wakes it
        self._stopping = False
        self._failed = False

    def run_until_idle(self) -> None:
        """Run the loop here until no job is left (an inline batcher)."""
        assert self._driver_ is None, "this batcher runs on a decode thread"
        self._run(until_idle=True)

    # -- called from request handlers --

    @property
    def alive(self) -> bool:
        """False once the loop stopped for an error it could not pin on a job."""
        if self._driver_ is None:
            return True
        return self._stopping or (not self._failed and self._driver_.alive)

    def submit(self, job: Job) -> None:
        with self._wake:
            if not self.alive:
                raise EngineStoppedError(STOPPED)
            if self._stopping:
                raise QueueFullError("the server is shutting down; retry on another instance")
            # Jobs the loop has not yet moved into free slots do not queue.
            free = max(0, self.limit - sum(s.job is not None for s in self.slots))
            if len(self._waiting) >= self.max_queue + free:
                raise QueueFullError(
                    f"all {len(self.slots)} slots are busy and {self.max_queue} requests wait; "
                    "retry shortly"
                )
            self._waiting.append(job)
            self._wake.notify_all()

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
            self._wake.notify_all()
        if self._driver_ is None:
            return
        ended = time.monotonic() + 5  # a cancelled job leaves within a decode step
        while any(s.job for s in self.slots) and time.monotonic() < ended and self.alive:
            time.sleep(0.01)
        self._driver_.detach(self)
        if self._driver_.alive:
            self._driver_.call(lambda: None)  # a step under way has ended: the engine is free
        if self._private:
            self._driver_.close()

    def forget(self) -> None:
        """After `stop`: empty every slot's sequence in the context."""
        for slot in self.slots:
            self.engine.forget(slot.seq)

    # -- the engine thread --

    def ready(self) -> bool:
        """Under the decode thread's lock: admit waiting jobs; whether any is running."""
        if self._failed:
            return False
        self._admit()
        return any(s.job for s in self.slots)

    def tick(self) -> None:
        """One step of the loop, on the decode thread."""
        try:
            self._step()
        except Exception as exc:  # a failed decode ends the jobs in it, not the loop
            if not isinstance(exc, EdgeinfError):
                log.error("a decode step failed", exc_info=exc)
            for slot in self.slots:
                if slot.job is not None:
                    self._end(slot, exc)
        except BaseException as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        log.critical("the decode loop stopped", exc_info=exc)
        with self._wake:
            self._failed = True
            waiting, self._waiting = list(self._waiting), deque()
        for job in waiting:
            job.on_done(None, EngineStoppedError(STOPPED))
        for slot in self.slots:
            if slot.job is not None:
                slot.job.on_done(None, EngineStoppedError(STOPPED))
        if self._driver_ is not None:
            self._driver_.detach(self)

    def _run(self, until_idle: bool = False) -> None:
        """The inline loop, on the caller's thread."""
        while True:
            with self._wake:
                if not self.ready():
                    if self._stopping or until_idle:
                        return
                    self._wake.wait()
                    continue
            self.tick()

    def _admit(self) -> None:
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled.is_set():
                self._waiting.popleft()
                job.on_done(None, None)
                continue
            free = [s for s in self.slots if s.job is None]
            busy = not free or len(self.slots) - len(free) >= self.limit
            if busy or waits(self.engine, self.slots, job):
                return
            self._waiting.popleft()
            # The slot that holds most of the prompt (one free slot: no need to ask).
            slot = free[0] if len(free) == 1 else max(free, key=lambda s: self._reusable(s, job))
            try:
                self._start(slot, job)
            except Exception as exc:  # e.g. its saved state could not be read: this job only
                if not isinstance(exc, EdgeinfError):
                    log.error("a request could not start", exc_info=exc)
                slot.job = job  # _end releases what _start set up and tells the job
                self._end(slot, exc)

    def _reusable(self, slot: Slot, job: Job) -> int:
        if job.runs and self.engine.can_move:
            return reused(align(slot.seq.tokens, job.prompt, job.runs))
        return common_prefix(slot.seq.tokens, job.prompt)

    def _start(self, slot: Slot, job: Job) -> None:
        engine = self.engine
        if job.prepare is not None:
            job.prepare(slot.seq)
        if not job.cache:
            engine.forget(slot.seq)
        if job.runs and engine.can_move:
            slot.prefill = engine.reuse_runs(slot.seq, job.prompt, job.runs)
        else:
            borrow(engine, self.slots, slot, job)
            slot.prefill = [job.prompt[engine.reuse_prefix(slot.seq, job.prompt) :]]
        left = sum(len(p) for p in slot.prefill if isinstance(p, list))
        job.reused_tokens = len(job.prompt) - left
        slot.job, slot.owner = job, job.owner
        shifts = job.n_keep is not None
        slot.emitter = Emitter(self.engine.vocab, job.params, len(job.prompt), shifts)
        slot.sampler = Sampler(job.params, self.engine.vocab)
        if job.lanes and not job.params.greedy:
            slot.distribution = Distribution(job.params, self.engine.vocab)
        slot.pending = None

    def _step(self) -> None:
        engine, batch = self.engine, self.engine.batch
        if self.threads is not None and self.threads != self._threads:
            self._threads = self.threads
            for each in (engine, *self.companions):
                each.set_threads(self.threads)
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
        for slot in decoding:
            slot.make_room(engine)
        prefilling = [s for s in self.slots if s.job is not None and s.prefill]
        room = batch.capacity
        if self.exact_batch is not None:
            # Exact mode: a decode holds only generated tokens, at most exact_batch of them,
            # so every row is what decoding that sequence alone would give; one prompt's
            # chunk goes in a decode of its own, taking turns with generation.
            self._prefill_turn = bool(prefilling) and (not decoding or not self._prefill_turn)
            decoding, prefilling = ([], prefilling[:1]) if self._prefill_turn else (decoding, [])
            room = min(room, self.exact_batch) if decoding else room
        decoding = decoding[:room]  # one row each; any beyond the room wait a step
        spare = room - len(decoding)
        offers = [s.offer(spare, engine.seq_ctx) if self.drafting else None for s in decoding]
        prompt_rows = sum(len(p) for s in prefilling for p in s.prefill if isinstance(p, list))
        if decoding and self.prefill_chunk is not None:
            prompt_rows = min(prompt_rows, self.prefill_chunk)
        # A prompt in this step waits for it (its first token, or its next chunk), and its
        # rows already fill it: no drafts then, beyond a forced mode's.
        stretch = 1.0 if prompt_rows else None
        lengths = plan(offers, len(decoding) + min(spare, prompt_rows), spare, stretch)
        for slot, k in zip(decoding, lengths, strict=True):
            room -= slot.put_next(batch, k)
        room = min(room, prompt_rows)
        for slot in prefilling:
            room -= slot.put_prompt(engine, room)
        if batch.raw.n_tokens == 0:
            return
        engine.decode()
        for slot in self.slots:
            if slot.out_index >= 0 and slot.job is not None:
                if slot.job.warm:
                    self._end(slot, None)  # prefilled: its cells wait for the real prompt
                else:
                    self._sample(slot)
            slot.out_index = -1

    def _sample(self, slot: Slot) -> None:
        """Take the slot's picks in order: each accepted draft lets the next row count."""
        job, emitter = slot.job, slot.emitter
        assert job and emitter
        base = len(slot.seq.tokens) - len(slot.drafts)  # cached tokens up to the evaluated one
        accepted = 0
        token = -1
        reports = job.params.logprobs is not None
        for i, token in enumerate(slot.picks(self.engine)):
            logits = self.engine.logits(slot.out_index + i) if reports else None
            if text := emitter.push(token, logits):
                job.write(text, emitter)
            emitter.budget(base + i, self.engine.seq_ctx)
            if emitter.finish or i == len(slot.drafts) or token != slot.drafts[i]:
                break
            accepted += 1
        self.engine.trim(slot.seq, base + accepted)  # rejected drafts leave the cache
        if slot.drafts and slot.lane is not None:
            slot.lane.observe(len(slot.drafts), accepted)
            job.drafted += len(slot.drafts)
            job.accepted += accepted
        else:
            for lane in job.lanes:
                lane.saw(token)
        slot.drafts, slot.dists, slot.lane, slot.offered = [], [], None, None
        if emitter.finish:
            self._end(slot, None)
        else:
            slot.pending = token

    def _end(self, slot: Slot, error: BaseException | None) -> None:
        job, emitter = slot.job, slot.emitter
        slot.vacate(self.engine)
        if job is None:
            return
        if error is not None or emitter is None or job.cancelled.is_set() or job.warm:
            job.on_done(None, error)
            return
        if rest := emitter.flush():
            job.write(rest, emitter)
        completion = emitter.completion()
        for lane in job.lanes:
            lane.learn(completion.token_ids, job.prompt)
        if job.finish is not None:
            try:
                job.finish(slot.seq, completion)
            except Exception as exc:  # keeping the answer failed; the answer stands
                log.warning("after-answer step failed: %s", exc, exc_info=exc)
        job.on_done(completion, None)
