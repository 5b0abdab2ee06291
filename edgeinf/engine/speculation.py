"""When drafting pays: a cost model measured on the device, and acceptance tracked online.

With acceptance rate a and k drafted tokens, one verification yields on average
E(k) = (1 - a^(k+1)) / (1 - a) tokens and costs verify(k+1) + k * draft_step, in units
of one plain decode step. Drafting pays when E(k) / cost(k) > 1; the controller picks the
k (0 = off) with the best expected speed, and keeps probing now and then when off.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CostModel:
    """Measured on this device: decoding n tokens at once, relative to one token."""

    verify: dict[int, float]
    draft_step: float  # one draft-model token, relative to one target token (0 for n-gram)

    def verify_cost(self, n: int) -> float:
        known = sorted(self.verify)
        if n in self.verify:
            return self.verify[n]
        lo = max((m for m in known if m < n), default=known[0])
        hi = min((m for m in known if m > n), default=known[-1])
        if hi == lo:  # beyond what was measured: extrapolate the last slope
            a, b = known[-2], known[-1]
            return self.verify[b] + (n - b) * (self.verify[b] - self.verify[a]) / (b - a)
        w = (n - lo) / (hi - lo)
        return self.verify[lo] * (1 - w) + self.verify[hi] * w


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


@dataclass
class Acceptance:
    """Acceptance rate per drafted token, as a moving average over recent verifications."""

    rate: float
    weight: float = 0.15
    drafted: int = 0
    accepted: int = 0

    def observe(self, drafted: int, accepted: int) -> None:
        if drafted <= 0:
            return
        self.drafted += drafted
        self.accepted += accepted
        # A run of m accepted then a rejection says a ≈ m / (m + 1); all k accepted says
        # at least k / (k + 1): both are the geometric model's estimate from one run.
        sample = accepted / (accepted + 1) if accepted < drafted else drafted / (drafted + 1)
        self.rate += self.weight * (sample - self.rate)


@dataclass
class Controller:
    """Chooses the draft length for the next verification; 0 means decode plainly."""

    cost: CostModel
    k_max: int = 8
    probe_every: int = 16
    acceptance: Acceptance = field(default_factory=lambda: Acceptance(rate=0.6))
    fixed_k: int | None = None  # a forced mode drafts this many, whatever it costs
    _idle: int = 0

    def next_k(self) -> int:
        if self.fixed_k is not None:
            return self.fixed_k
        k, gain = best_k(self.acceptance.rate, self.cost, self.k_max)
        if k > 0 and gain > 1.0:
            self._idle = 0
            return k
        self._idle += 1
        if self._idle >= self.probe_every:  # conditions change (copying starts): look again
            self._idle = 0
            return 1
        return 0

    def observe(self, drafted: int, accepted: int) -> None:
        self.acceptance.observe(drafted, accepted)
