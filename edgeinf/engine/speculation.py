"""When drafting pays: a cost model measured on the device, and acceptance tracked online.

With acceptance rate a and k drafted tokens, one verification yields on average
E(k) = (1 - a^(k+1)) / (1 - a) tokens and costs verify(k+1) + k * draft_step, in units
of one plain decode step. Drafting pays when E(k) / cost(k) > 1; the controller picks the
k (0 = off) with the best expected speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CostModel:
    """Measured on this device: decoding n tokens at once, relative to one token."""

    verify: dict[int, float]
    draft_step: float  # one draft-model token, relative to one target token (0 for n-gram)
    # The largest batch decoded with the same kernels as one token (calibrate.exact_batch).
    exact_batch: int = 1

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
    """Chooses the draft length for the next verification; 0 means decode plainly."""

    cost: CostModel
    k_max: int = 16
    acceptance: Acceptance = field(default_factory=Acceptance)
    fixed_k: int | None = None  # a forced mode drafts this many, whatever it costs

    def next_k(self) -> int:
        if self.fixed_k is not None:
            return self.fixed_k
        k, gain = best_k(self.acceptance.rate, self.cost, self.k_max)
        if k > 0 and gain > 1.0:
            return k
        return 0

    def observe(self, drafted: int, accepted: int) -> None:
        self.acceptance.observe(drafted, accepted)
