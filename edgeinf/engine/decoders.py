"""Token steppers for a Generation: plain, or speculative with a drafter.

`first()` samples the token after the prompt; `advance(token, budget)` evaluates `token` and
returns the next one or more tokens (at most `budget`); every returned token but the last
is already in the KV cache, as `seq.tokens` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgeinf.engine.drafters import ModelDrafter, NgramDrafter
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.probs import Transform, probabilities
from edgeinf.engine.sampling import Sampler
from edgeinf.engine.speculation import Controller, best_k
from edgeinf.types import SamplingParams


@dataclass
class DraftStats:
    mode: str = "off"
    drafted: int = 0
    accepted: int = 0
    verifications: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [drafted, accepted]

    def add(self, kind: str, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        self.verifications += 1
        counts = self.by_kind.setdefault(kind, [0, 0])
        counts[0] += drafted
        counts[1] += accepted


@dataclass
class Lane:
    """A drafter and the controller that decides how far it may draft."""

    drafter: NgramDrafter | ModelDrafter
    controller: Controller
    # While an n-gram lane is off, its proposals are still checked against what plain
    # decoding then writes: free evidence of whether drafting would pay now.
    shadow: list[int] = field(default_factory=list)
    shadow_len: int = 0

    def gain(self) -> float:
        c = self.controller
        return best_k(c.acceptance.rate, c.cost, c.k_max)[1]

    def watch(self, context: list[int]) -> None:
        if not self.shadow and isinstance(self.drafter, NgramDrafter):
            self.shadow = self.drafter.propose(context, self.controller.k_max)[0]
            self.shadow_len = len(self.shadow)

    def saw(self, token: int) -> None:
        """A token plain decoding produced: score the shadow proposal against it."""
        if not self.shadow:
            return
        if self.shadow[0] == token:
            self.shadow.pop(0)
            if self.shadow:
                return
        accepted = self.shadow_len - len(self.shadow)
        self.controller.observe(self.shadow_len, accepted)
        self.shadow = []


class Decoder(Protocol):
    stats: DraftStats

    def first(self) -> int: ...
    def advance(self, token: int, budget: int) -> list[int]: ...
    def close(self) -> None: ...


class PlainDecoder:
    def __init__(self, engine: Engine, seq: SeqState, params: SamplingParams) -> None:
        self.engine, self.seq = engine, seq
        self.sampler = Sampler(params, engine.vocab.n_tokens)
        self.stats = DraftStats()

    def first(self) -> int:
        return self.sampler.sample(self.engine.ctx, -1)

    def advance(self, token: int, budget: int) -> list[int]:
        self.engine.step(self.seq, token)
        return [self.sampler.sample(self.engine.ctx, -1)]

    def close(self) -> None:
        self.sampler.close()


class SpeculativeDecoder(PlainDecoder):
    """Draft k tokens, verify them in one batch, keep the longest accepted run.

    Greedy: a draft is kept while it equals the target's own argmax, so the output is the
    plain greedy output. Sampled: standard speculative sampling (accept with min(1, p/q),
    else resample from the normalised residual), so the output follows the target's
    distribution; an n-gram draft is a point mass (q = 1 on the drafted token).
    """

    def __init__(
        self,
        engine: Engine,
        seq: SeqState,
        params: SamplingParams,
        lanes: list[Lane],
        mode: str,
        max_batch: int | None = None,
    ) -> None:
        super().__init__(engine, seq, params)
        self.lanes = lanes
        self.max_batch = min(max_batch or engine.batch.capacity, engine.batch.capacity)
        self.transform = None if params.greedy else Transform.of(params)
        self.stats = DraftStats(mode=mode)

    def advance(self, token: int, budget: int) -> list[int]:
        cap = min(budget - 1, self.max_batch - 1)
        # The lane expected to pay most goes first; one without a proposal passes its turn.
        for lane in sorted(self.lanes, key=Lane.gain, reverse=True):
            k = min(lane.controller.next_k(), cap)
            if k <= 0:
                continue
            drafts, dists = self._propose(lane.drafter, token, k)
            if drafts:
                return self._check(lane, token, drafts, dists)
        for lane in self.lanes:
            lane.watch([*self.seq.tokens, token])
        out = super().advance(token, budget)
        for lane in self.lanes:
            lane.saw(out[0])
        return out

    def _check(
        self, lane: Lane, token: int, drafts: list[int], dists: list[np.ndarray | None]
    ) -> list[int]:
        engine, seq = self.engine, self.seq
        base = len(seq.tokens)
        engine.batch.clear()
        for i, t in enumerate((token, *drafts)):
            engine.batch.add(t, base + i, seq.seq_id, True)
        engine.decode()
        seq.tokens += [token, *drafts]
        out = self._verify(drafts, dists)
        accepted = len(out) - 1
        engine.trim(seq, base + 1 + accepted)  # cells of rejected drafts go
        lane.controller.observe(len(drafts), accepted)
        self.stats.add(lane.drafter.kind, len(drafts), accepted)
        return out

    def _propose(
        self, drafter: NgramDrafter | ModelDrafter, token: int, k: int
    ) -> tuple[list[int], list[np.ndarray | None]]:
        context = [*self.seq.tokens, token]
        if isinstance(drafter, ModelDrafter):
            return drafter.propose(context, k, self.transform)
        drafts, dists = drafter.propose(context, k)
        return drafts, list(dists)

    def _verify(self, drafts: list[int], dists: list[np.ndarray | None]) -> list[int]:
        out: list[int] = []
        for i, (draft, q) in enumerate(zip(drafts, dists, strict=True)):
            if self.transform is None:
                choice = self.sampler.sample(self.engine.ctx, i)
                if choice != draft:
                    return [*out, choice]
            else:
                p = probabilities(self.engine.logits(i), self.transform)
                q_draft = 1.0 if q is None else float(q[draft])
                if self.transform.rng.random() >= min(1.0, p[draft] / q_draft):
                    residual = np.maximum(p - (q if q is not None else _point(draft, p)), 0)
                    total = residual.sum()
                    pick = p if total <= 0 else residual / total
                    return [*out, int(self.transform.rng.choice(len(pick), p=pick))]
            out.append(draft)
        return [*out, self._bonus(len(drafts))]

    def _bonus(self, index: int) -> int:
        if self.transform is None:
            return self.sampler.sample(self.engine.ctx, index)
        p = probabilities(self.engine.logits(index), self.transform)
        return int(self.transform.rng.choice(len(p), p=p))


def _point(token: int, like: np.ndarray) -> np.ndarray:
    q = np.zeros_like(like)
    q[token] = 1.0
    return q
