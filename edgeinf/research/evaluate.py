"""Router quality: the quality-versus-escalation curve, APGR, and the baselines it is read
against (RouteLLM's metrics: PGR at an escalation rate is the share of the local-to-remote
quality gap recovered; APGR is its average over all rates, 0.5 for random routing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Curve:
    rates: Floats  # share escalated, 0 .. 1
    quality: Floats  # share answered correctly at that rate
    pgr: Floats

    @property
    def apgr(self) -> float:
        return float(np.sum((self.pgr[1:] + self.pgr[:-1]) / 2 * np.diff(self.rates)))

    def pgr_at(self, rate: float) -> float:
        return float(np.interp(rate, self.rates, self.pgr))

    def quality_at(self, rate: float) -> float:
        return float(np.interp(rate, self.rates, self.quality))


def curve(scores: Floats, local_ok: Bools, remote_ok: Bools, seed: int = 0) -> Curve:
    """Escalate the highest scores first; ties broken at random (so a constant score is random)."""
    n = len(scores)
    tie = np.random.default_rng(seed).random(n)
    order = np.lexsort((tie, -scores))
    delta = remote_ok[order].astype(float) - local_ok[order].astype(float)
    quality = (local_ok.sum() + np.concatenate([[0.0], np.cumsum(delta)])) / n
    gap = (remote_ok.sum() - local_ok.sum()) / n
    pgr = (quality - quality[0]) / gap if gap else np.zeros(n + 1)
    return Curve(np.linspace(0, 1, n + 1), quality, pgr)


def share_for(c: Curve, fraction: float) -> float:
    """The least share escalated at which quality reaches `fraction` of always-remote
    quality (1.0 when it never does before all are escalated)."""
    goal = fraction * c.quality[-1]
    reached = np.flatnonzero(c.quality >= goal - 1e-12)
    return float(c.rates[reached[0]]) if len(reached) else 1.0


def random_share_for(local_ok: Bools, remote_ok: Bools, fraction: float) -> float:
    """The same for random escalation, whose quality rises linearly from local to remote."""
    local, remote = float(local_ok.mean()), float(remote_ok.mean())
    if local >= fraction * remote:
        return 0.0
    return float(min(1.0, (fraction * remote - local) / (remote - local)))


def auroc(scores: Floats, positive: Bools) -> float:
    """The chance that a positive (a local failure) scores above a negative, ties counting
    half (Mann-Whitney); 0.5 when either class is empty."""
    pos, neg = int(positive.sum()), int((~positive).sum())
    if not pos or not neg:
        return 0.5
    _, where, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[where]  # tied scores share their mean rank
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def random_apgr(local_ok: Bools, remote_ok: Bools, draws: int = 200) -> float:
    rng = np.random.default_rng(1)
    return float(
        np.mean([curve(rng.random(len(local_ok)), local_ok, remote_ok).apgr for _ in range(draws)])
    )


def folds(groups: list[str], k: int, seed: int = 0) -> list[npt.NDArray[np.intp]]:
    """k folds, each holding about 1/k of every group (task kind)."""
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(groups), dtype=int)
    for g in sorted(set(groups)):
        idx = np.flatnonzero(np.asarray(groups) == g)
        rng.shuffle(idx)
        assignment[idx] = np.arange(len(idx)) % k
    return [np.flatnonzero(assignment == i) for i in range(k)]


def out_of_fold(
    y: Floats,
    groups: list[str],
    fit_predict: Callable[[npt.NDArray[np.intp], npt.NDArray[np.intp]], Floats],
    k: int = 5,
) -> Floats:
    """Scores for every row from a model that never saw it."""
    scores = np.full(len(y), 0.5)  # a fold with nothing to learn from scores nothing
    for held in folds(groups, k):
        train = np.setdiff1d(np.arange(len(y)), held)
        if len(held) and len(train):
            scores[held] = fit_predict(train, held)
    return scores
