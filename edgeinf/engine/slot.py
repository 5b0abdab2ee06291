"""One sequence slot of the decode loop: the answer it is writing, what is left of its
prompt, and its drafts: offered from the lane expected to pay most, taken as far as the
step's plan says (speculation.plan), checked against what the model picks (greedy: kept
while equal; sampled: by speculative sampling)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edgeinf.engine.batch import Batch
from edgeinf.engine.chunks import Parked, Piece
from edgeinf.engine.drafters import NgramDrafter
from edgeinf.engine.emitter import Emitter
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.jobs import Job
from edgeinf.engine.lanes import Lane
from edgeinf.engine.sampling import Distribution, Sampler
from edgeinf.engine.speculation import Offer
from edgeinf.engine.verify import verify


@dataclass
class Slot:
    seq: SeqState
    job: Job | None = None
    emitter: Emitter | None = None
    sampler: Sampler | None = None
    distribution: Distribution | None = None  # a sampled job that drafts
    # What is left of the prompt: tokens to evaluate, runs of cached cells to put back.
    prefill: list[Piece] = field(default_factory=list)
    pending: int | None = None  # sampled, not yet evaluated
    drafts: list[int] = field(default_factory=list)  # in the batch after `pending`
    dists: list[np.ndarray | None] = field(default_factory=list)  # their draft distributions
    lane: Lane | None = None  # the lane the drafts come from
    offered: list[int] | None = None  # an n-gram lane's proposal, made with the offer
    out_index: int = -1  # this slot's output row in the last batch (drafts' rows follow)
    owner: str | None = None  # the owner of the job whose cells it holds (engine.sharing)

    def make_room(self, engine: Engine) -> None:
        """Shift a full context, when the job asked for that (Job.n_keep)."""
        job = self.job
        if job and job.n_keep is not None and len(self.seq.tokens) + 1 >= engine.seq_ctx:
            job.shifted += engine.shift(self.seq, job.n_keep)

    def vacate(self, engine: Engine) -> None:
        """The answer ended: free what it held. Of the cells, those a context shift left
        unlike a prefill's go (only the kept start stays)."""
        if self.job and self.job.shifted and self.job.n_keep is not None:
            engine.trim(self.seq, self.job.n_keep)
        self.job = self.emitter = None
        self.pending = None
        self.drafts, self.dists, self.lane, self.offered = [], [], None, None
        engine.release([p for p in self.prefill if isinstance(p, Parked)])
        self.prefill = []
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None
        if self.distribution is not None:
            self.distribution.close()
            self.distribution = None

    def offer(self, room: int, seq_ctx: int) -> Offer | None:
        """What this slot could draft after `pending`, from the lane expected to pay most that
        has something to propose (an n-gram lane proposes now: it costs nothing); None when
        the job does not draft or there is no room."""
        job, emitter = self.job, self.emitter
        self.lane, self.offered = None, None
        if job is None or not job.lanes or emitter is None or self.pending is None:
            return None
        context = [*self.seq.tokens, self.pending]
        cap = min(room, emitter.left(len(context), seq_ctx) - 1)
        if cap <= 0:
            return None
        for lane in sorted(job.lanes, key=Lane.gain, reverse=True):
            if isinstance(lane.drafter, NgramDrafter):
                offered = lane.drafter.propose(context, min(cap, lane.controller.k_max))[0]
                if not offered:
                    continue
                self.offered, cap = offered, len(offered)
            self.lane = lane
            return lane.offer(cap)
        return None

    def draft(self, k: int) -> list[int]:
        """The first k drafts of the offer (none: the lanes watch what decoding writes)."""
        job, lane = self.job, self.lane
        if job is None or self.pending is None:
            return []
        context = [*self.seq.tokens, self.pending]
        if k <= 0 or lane is None:
            self.lane = None
            for each in job.lanes:
                each.watch(context)
            return []
        if self.offered is not None:
            self.dists = [None] * min(k, len(self.offered))  # point masses
            return self.offered[:k]
        drafts, dists = lane.drafter.propose(context, k, self.distribution)
        self.dists = list(dists)
        return drafts

    def put_next(self, batch: Batch, k: int) -> int:
        """Put the pending token and up to k drafts after it in the batch, logits for every
        row; the rows taken."""
        assert self.pending is not None
        self.drafts = self.draft(k)
        base = len(self.seq.tokens)
        for j, tok in enumerate((self.pending, *self.drafts)):
            index = batch.add(tok, base + j, self.seq.seq_id, True)
            if j == 0:
                self.out_index = index
        self.seq.tokens += [self.pending, *self.drafts]
        self.pending = None
        return 1 + len(self.drafts)

    def put_prompt(self, engine: Engine, room: int) -> int:
        """Attach the parked runs now reached, then put up to `room` prompt tokens in the
        engine's batch (logits for the prompt's last, unless the job only warms the cells);
        the rows taken."""
        while self.prefill and isinstance(run := self.prefill[0], Parked):
            engine.attach(self.seq, run)  # the text before it was evaluated
            self.prefill.pop(0)
        if room == 0:
            return 0
        head = self.prefill[0]
        assert isinstance(head, list)
        chunk, rest = head[:room], head[room:]
        if rest:
            self.prefill[0] = rest
        else:
            self.prefill.pop(0)
        base = len(self.seq.tokens)
        warm = self.job is not None and self.job.warm
        for j, tok in enumerate(chunk):
            last = j == len(chunk) - 1 and not self.prefill
            index = engine.batch.add(tok, base + j, self.seq.seq_id, last and not warm)
            if last:
                self.out_index = index
        self.seq.tokens.extend(chunk)
        return len(chunk)

    def picks(self, engine: Engine) -> Iterator[int]:
        """The tokens this step yields: the drafts kept, then one the model chose."""
        assert self.sampler is not None
        ctx, first = engine.ctx, self.out_index
        if self.drafts and self.distribution is not None:
            dist = self.distribution
            rows = lambda i: dist.of(engine.logits(first + i))  # noqa: E731
            yield from verify(rows, self.drafts, self.dists, dist, bonus=True)
            return
        for i in range(len(self.drafts) + 1):
            token = self.sampler.sample(ctx, first + i)
            yield token
            if i == len(self.drafts) or token != self.drafts[i]:
                return
