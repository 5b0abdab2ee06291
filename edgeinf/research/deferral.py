"""Fitting the deferral rule on graded local answers, and what handing an answer over midway
saves against waiting for its end at the same quality."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeinf.research import evaluate
from edgeinf.research.collect import Answer
from edgeinf.research.head import fit
from edgeinf.research.train import Graded
from edgeinf.route.checks import check
from edgeinf.route.deferral import Deferral, features

Floats = npt.NDArray[np.float64]
L2 = 10.0  # a dozen features over a few hundred answers
THRESHOLD = 0.5  # escalate an answer more likely wrong than right
PRECISION = 0.9  # a midway hand-over must be right this often on the training answers
MIDWAY_MARKS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)
MIN_HANDED = 5  # answers a mark must hand over on the training set to be trusted


@dataclass(frozen=True)
class Rows:
    """The deferral rule's FEATURES for every graded answer, with the cost of the check."""

    x: Floats
    check_seconds: list[float]
    verdicts: list[bool | None]


def rows(data: Graded, local: dict[str, Answer], pre: Floats) -> Rows:
    """`pre`: the router's score of each question, out of fold (as a new question gets it)."""
    out, seconds, verdicts = [], [], []
    for t, p in zip(data.tasks, pre, strict=True):
        a = local[t.id]
        started = time.monotonic()
        verdict = check(t.messages[-1].content, a.text)
        seconds.append(time.monotonic() - started)
        verdicts.append(verdict)
        cut = a.completion_tokens >= t.max_tokens
        out.append(features(float(p), a.logprobs, a.margins, cut, verdict))
    return Rows(np.asarray(out, dtype=np.float64), seconds, verdicts)


def first_doubt(answer: Answer, mark: float) -> int | None:
    """Tokens written up to the first one whose doubt reaches `mark`; None if none does."""
    hits = np.flatnonzero(-np.asarray(answer.logprobs, dtype=np.float64) >= mark)
    return int(hits[0]) + 1 if len(hits) else None


def midway_mark(answers: list[Answer], failed: npt.NDArray[np.bool_]) -> float | None:
    """The lowest mark whose hand-overs were local failures at least PRECISION of the time
    (and at least MIN_HANDED of them); None when no mark is that sure."""
    for mark in MIDWAY_MARKS:
        handed = np.asarray([first_doubt(a, mark) is not None for a in answers])
        if handed.sum() >= MIN_HANDED and failed[handed].mean() >= PRECISION:
            return mark
    return None


def fit_deferral(data: Graded, local: dict[str, Answer], r: Rows) -> Deferral:
    failed = ~data.local_ok
    rule = fit(r.x, failed.astype(float), L2)
    answers = [local[t.id] for t in data.tasks]
    return Deferral(rule, THRESHOLD, midway_mark(answers, failed))


def trained(data: Graded, local: dict[str, Answer], pre: Floats, folds: int = 5) -> Deferral | None:
    """The deferral rule for these answers, its out-of-fold figures in its metrics; None when
    the answers were cached without their tokens' log-probabilities (answer again to get one)."""
    if not all(local[t.id].logprobs or not local[t.id].completion_tokens for t in data.tasks):
        return None
    r = rows(data, local, pre)
    deferral = fit_deferral(data, local, r)
    chance = out_of_fold(data, r, folds)
    figures = {
        "n": len(data.tasks),
        "local_failure_auroc": round(evaluate.auroc(chance, ~data.local_ok), 4),
        "pre_generation_auroc": round(evaluate.auroc(pre, ~data.local_ok), 4),
        **midway_report(data, local, chance, deferral.threshold, deferral.midway),
    }
    return replace(deferral, metrics=figures)


def out_of_fold(data: Graded, r: Rows, folds: int) -> Floats:
    """The rule's chance of failure for every answer, from a rule that never saw it."""
    failed = (~data.local_ok).astype(float)

    def fit_predict(train: npt.NDArray[np.intp], held: npt.NDArray[np.intp]) -> Floats:
        return fit(r.x[train], failed[train], L2).predict(r.x[held])

    return evaluate.out_of_fold(failed, data.kinds, fit_predict, folds)


def midway_report(
    data: Graded, local: dict[str, Answer], chance: Floats, threshold: float, mark: float | None
) -> dict[str, Any]:
    """Local tokens spent on the questions handed to the remote: the full cascade (every answer
    written to its end, then the rule) against handing over at the first token whose doubt
    reaches `mark`, the rule deciding the rest at the threshold that keeps quality at least the
    cascade's."""
    answers = [local[t.id] for t in data.tasks]
    ok, remote_ok = data.local_ok, data.remote_ok
    n_tokens = np.asarray([a.completion_tokens for a in answers], dtype=np.float64)

    def quality(escalated: npt.NDArray[np.bool_]) -> float:
        return float(np.where(escalated, remote_ok, ok).mean())

    full = chance >= threshold
    out: dict[str, Any] = {
        "threshold": threshold,
        "cascade": {
            "quality": round(quality(full), 4),
            "remote_share": round(float(full.mean()), 4),
            "local_tokens_per_escalated": round(float(n_tokens[full].mean()), 1)
            if full.any()
            else 0.0,
        },
    }
    if mark is None:
        return out | {"midway": None}
    first = [first_doubt(a, mark) for a in answers]
    handed = np.asarray([f is not None for f in first])
    spent = np.asarray([n if f is None else f for f, n in zip(first, n_tokens, strict=True)])
    goal = quality(full)
    # the highest threshold for the rest that keeps the cascade's quality: fewest escalations
    best = None
    for t in sorted({*chance.tolist(), threshold}, reverse=True):
        escalated = handed | (chance >= t)
        if quality(escalated) >= goal - 1e-12:
            best = (t, escalated)
            break
    if best is None:
        best = (0.0, np.ones(len(chance), dtype=bool))
    t, escalated = best
    out["midway"] = {
        "mark": mark,
        "handed_over": int(handed.sum()),
        "handed_over_failed": round(float((~ok)[handed].mean()), 4) if handed.any() else None,
        "rest_threshold": round(float(t), 4),
        "quality": round(quality(escalated), 4),
        "remote_share": round(float(escalated.mean()), 4),
        "local_tokens_per_escalated": round(float(spent[escalated].mean()), 1),
        "local_tokens_per_handed_over": round(float(spent[handed].mean()), 1)
        if handed.any()
        else None,
        "full_answer_tokens_of_handed_over": round(float(n_tokens[handed].mean()), 1)
        if handed.any()
        else None,
    }
    return out
