"""One sequence slot of the decode loop: the answer it is writing, what is left of its
prompt, and its drafts, proposed from the lane expected to pay most and checked against
what the model picks (greedy: kept while equal; sampled: by speculative sampling)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edgeinf.engine.chunks import Piece
from edgeinf.engine.emitter import Emitter
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.jobs import Job
from edgeinf.engine.lanes import Lane
from edgeinf.engine.sampling import Distribution, Sampler
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
    lane: Lane | None = None  # the lane the drafts came from
    out_index: int = -1  # this slot's output row in the last batch (drafts' rows follow)

    def propose(self, room: int, seq_ctx: int) -> list[int]:
        """Tokens to check after `pending` in this batch, from the lane expected to pay
        most (none when drafting would not pay, the job does not draft, or there is no room)."""
        job, emitter = self.job, self.emitter
        if job is None or not job.lanes or emitter is None or self.pending is None:
            return []
        context = [*self.seq.tokens, self.pending]
        cap = min(room, emitter.left(len(context), seq_ctx) - 1)
        for lane in sorted(job.lanes, key=Lane.gain, reverse=True):
            k = min(lane.controller.next_k(), cap)
            if k <= 0:
                continue
            drafts, dists = lane.drafter.propose(context, k, self.distribution)
            if drafts:
                self.lane, self.dists = lane, list(dists)
                return list(drafts)
        for lane in job.lanes:
            lane.watch(context)
        return []

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
