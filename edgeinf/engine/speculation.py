"""When drafting pays: a cost model measured on the device, and acceptance tracked online.

With acceptance rate a and k drafted tokens, one verification yields on average
E(k) = (1 - a^(k+1)) / (1 - a) tokens and costs verify(k+1) + k * draft_step, in units
of one plain decode step. Drafting pays when E(k) / cost(k) > 1.

Several sequences decoded together share one batch: there, a draft pays when what it is
expected to add beats what its row costs the whole step, and `plan` picks each sequence's
draft length (0 = none) for the most expected tokens per unit of time in aggregate. On
compute-bound cores, where every row costs nearly as much as a token, batching already fills
them and drafts mostly stop; where a batch costs little more than one token, they go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class CostModel:
    """Measured on this device: decoding n tokens at once, relative to one token."""

    verify: dict[int, float]
    draft_step: float  # one draft-model token, relative to one target token (0 for n-gram)
    # The largest batch decoded with the same kernels as one token (calibrate.exact_batch).
    exact_batch: int = 1

    @cached_property
    def _curve(self) -> dict[int, float]:
        """The measurements made non-decreasing (a batch never costs less than a smaller one;
        a measurement above a larger batch's is noise): each, at most any larger one's."""
        curve: dict[int, float] = {}
        lowest = float("inf")
        for n in sorted(self.verify, reverse=True):
            lowest = min(lowest, self.verify[n])
            curve[n] = lowest
        return dict(sorted(curve.items()))

    def verify_cost(self, n: int) -> float:
        curve = self._curve
        known = list(curve)
        if n in curve:
            return curve[n]
        lo = max((m for m in known if m < n), default=known[0])
        hi = min((m for m in known if m > n), default=known[-1])
        if hi == lo:  # beyond what was measured: extrapolate the last slope
            a, b = known[-2], known[-1]
            return curve[b] + (n - b) * (curve[b] - curve[a]) / (b - a)
        w = (n - lo) / (hi - lo)
        return curve[lo] * (1 - w) + curve[hi] * w


def expected_tokens(a: float, k: int) -> float:
    if a >= 1.0:
        return float(k + 1)
    return (1 - a ** (k + 1)) / (1 - a)


def speedup(a: float, k: int, cost: CostModel) -> float:
    """Tokens per unit time relative to plain decoding, for k drafts at acceptance a."""
    if k == 0:
        return 1.0
    return expected_tokens(a, k) / (cost.verify_cost(k + 1) + k * cost.draft_step)


def best_k(a: float, cost: CostModel, k_max: int) -> tuple[int, float]:
    return max(((k, speedup(a, k, cost)) for k in range(k_max + 1)), key=lambda kv: kv[1])


@dataclass(frozen=True)
class Offer:
    """What one decoding sequence could draft in this step."""

    rate: float  # the per-token acceptance expected
    cap: int  # the most drafts it can take
    cost: CostModel  # its lane's: the device's verify curve, its draft step
    fixed: int | None = None  # a forced mode's length, whatever it costs


def plan(
    offers: Sequence[Offer | None], rows: int, room: int, stretch: float | None = None
) -> list[int]:
    """Each decoding sequence's draft length in a batch that already holds `rows` tokens (one
    per decoding sequence, prompt chunks), with room for `room` more: the lengths that yield
    the most expected tokens per unit of time. A sequence's (j+1)-th draft adds a^(j+1)
    expected tokens; taken best first, the plan is the prefix with the highest rate. With
    `stretch`, the drafts may make the step cost at most that many times its cost without
    them (a prompt's first token waits for this step)."""
    ks: list[int] = []
    for o in offers:  # forced lengths first, in order, as far as the room goes
        ks.append(0 if o is None else min(o.fixed or 0, o.cap, room - sum(ks)))
    chosen = [o for o in offers if o is not None and o.cap > 0]
    if not chosen:
        return ks
    verify = chosen[0].cost.verify_cost  # one engine: one curve
    tokens = sum(
        1.0 if o is None else expected_tokens(o.rate, k) for o, k in zip(offers, ks, strict=True)
    )
    drafted = sum(ks)
    spent = sum(k * o.cost.draft_step for o, k in zip(offers, ks, strict=True) if o is not None)
    steps = sorted(
        (
            (o.rate ** (j + 1), i)
            for i, o in enumerate(offers)
            if o is not None and o.fixed is None
            for j in range(o.cap)
        ),
        reverse=True,
    )[: max(0, room - drafted)]
    bound = float("inf") if stretch is None else stretch * verify(rows + drafted)
    best, taken = tokens / (verify(rows + drafted) + spent), 0
    for n, (gain, i) in enumerate(steps, 1):
        offer = offers[i]
        assert offer is not None
        tokens += gain
        drafted += 1
        spent += offer.cost.draft_step
        if verify(rows + drafted) + spent > bound:
            break
        rate = tokens / (verify(rows + drafted) + spent)
        if rate > best:
            best, taken = rate, n
    for _, i in steps[:taken]:
        ks[i] += 1
    return ks


@dataclass
class Acceptance:
    """Per-token acceptance rate under the geometric model, from recent verifications.

    Each verification is a run of accepted drafts ended by a rejection or by the end of the
    draft; the estimate is accepted / (accepted + rejections), both decayed so that recent
    text counts most, and pulled towards `prior` while there is little evidence.
    """

    prior: float = 0.6
    decay: float = 0.9
    prior_weight: float = 2.0
    _acc: float = 0.0
    _rej: float = 0.0

    @property
    def rate(self) -> float:
        w = self.prior_weight
        return (self._acc + self.prior * w) / (self._acc + self._rej + w)

    def observe(self, drafted: int, accepted: int) -> None:
        if drafted <= 0:
            return
        self._acc = self._acc * self.decay + accepted
        self._rej = self._rej * self.decay + (1.0 if accepted < drafted else 0.0)


@dataclass
class Controller:
    """What a lane knows of its drafts' worth: their cost, how often they are accepted."""

    cost: CostModel
    k_max: int = 16
    acceptance: Acceptance = field(default_factory=Acceptance)
    fixed_k: int | None = None  # a forced mode drafts this many, whatever it costs

    def offer(self, cap: int) -> Offer:
        """At most `cap` drafts (and k_max), at the acceptance seen so far."""
        return Offer(self.acceptance.rate, min(cap, self.k_max), self.cost, self.fixed_k)

    def observe(self, drafted: int, accepted: int) -> None:
        self.acceptance.observe(drafted, accepted)
