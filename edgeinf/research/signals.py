"""How well each signal predicts the local model's failure, alone and combined, with paired
bootstrap intervals against the pre-generation router, and what each costs per query."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgeinf.research import evaluate
from edgeinf.research.collect import Answer
from edgeinf.research.deferral import (
    THRESHOLD,
    midway_mark,
    midway_report,
    out_of_fold,
    rows,
)
from edgeinf.research.train import Graded
from edgeinf.route.deferral import FEATURES, Deferral

Floats = npt.NDArray[np.float64]
DRAWS = 1000


def _interval(values: Floats) -> list[float]:
    return [
        round(float(np.quantile(values, 0.025)), 4),
        round(float(np.quantile(values, 0.975)), 4),
    ]


def compared(
    score: Floats, pre: Floats, failed: npt.NDArray[np.bool_], seed: int = 0
) -> dict[str, Any]:
    """AUROC of local failure with its 95% bootstrap interval, and its difference from the
    pre-generation router's on the same resampled questions (paired)."""
    rng = np.random.default_rng(seed)
    n = len(score)
    own, diff = np.empty(DRAWS), np.empty(DRAWS)
    for i in range(DRAWS):
        idx = rng.integers(0, n, n)
        own[i] = evaluate.auroc(score[idx], failed[idx])
        diff[i] = own[i] - evaluate.auroc(pre[idx], failed[idx])
    return {
        "auroc": round(evaluate.auroc(score, failed), 4),
        "interval": _interval(own),
        "minus_pre_generation": round(
            evaluate.auroc(score, failed) - evaluate.auroc(pre, failed), 4
        ),
        "minus_pre_generation_interval": _interval(diff),
    }


def _seconds(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "p95": round(float(np.quantile(values, 0.95)), 4),
    }


def signal_report(
    data: Graded, local: dict[str, Answer], pre: Floats, folds: int
) -> dict[str, Any]:
    """Each of the deferral rule's features alone as a predictor of local failure (the
    execution check also where it decides); the rule over all of them, out of fold; what
    handing answers over midway saves."""
    failed = ~data.local_ok
    answers = [local[t.id] for t in data.tasks]
    r = rows(data, local, pre)
    combined = out_of_fold(data, r, folds)
    report: dict[str, Any] = {
        "n": len(answers),
        "local_failure_rate": round(float(failed.mean()), 4),
        "signals": {name: compared(r.x[:, i], pre, failed) for i, name in enumerate(FEATURES)},
        "deferral_rule": compared(combined, pre, failed),
        "deferral_rule_curve": _curve(data, combined, pre),
        "midway": midway_report(data, local, combined, THRESHOLD, midway_mark(answers, failed)),
        "by_task": by_task(data, combined >= THRESHOLD),
        "seconds_per_query": {
            "local_answer": _seconds([a.seconds for a in answers]),
            "execution_check": _seconds(r.check_seconds),
        },
    }
    code = np.asarray([v is not None for v in r.verdicts])
    if code.any():
        column = r.x[:, FEATURES.index("execution_check")]
        report["execution_check_where_it_decides"] = {
            "n": int(code.sum()),
            **compared(column[code], pre[code], failed[code]),
        }
    return report


def _curve(data: Graded, score: Floats, pre: Floats, seed: int = 0) -> dict[str, Any]:
    """APGR beside its ceiling (a perfect local-failure predictor), and the remote share
    `score`, the pre-generation router and random routing need for 90% and 95% of
    always-remote quality, with paired bootstrap intervals of the differences."""
    lo, ro = data.local_ok, data.remote_ok

    def shares(idx: npt.NDArray[np.intp], f: float) -> tuple[float, float, float]:
        return (
            evaluate.share_for(evaluate.curve(score[idx], lo[idx], ro[idx]), f),
            evaluate.share_for(evaluate.curve(pre[idx], lo[idx], ro[idx]), f),
            evaluate.random_share_for(lo[idx], ro[idx], f),
        )

    rng = np.random.default_rng(seed)
    n = len(score)
    draws = [rng.integers(0, n, n) for _ in range(DRAWS)]
    out: dict[str, Any] = {
        "apgr": {
            "rule": round(evaluate.curve(score, lo, ro).apgr, 4),
            "pre_generation": round(evaluate.curve(pre, lo, ro).apgr, 4),
            "random": round(evaluate.random_apgr(lo, ro), 4),
            "ceiling": round(evaluate.curve((~lo).astype(float), lo, ro).apgr, 4),
        }
    }
    for f in (0.9, 0.95):
        rule, router, random = shares(np.arange(n), f)
        drawn = np.asarray([shares(idx, f) for idx in draws])
        out[f"remote_share_for_{round(f * 100)}"] = {
            "rule": round(rule, 4),
            "pre_generation": round(router, 4),
            "random": round(random, 4),
            "rule_minus_random_interval": _interval(drawn[:, 0] - drawn[:, 2]),
            "rule_minus_pre_generation_interval": _interval(drawn[:, 0] - drawn[:, 1]),
        }
    return out


def applied_report(
    data: Graded, local: dict[str, Answer], pre: Floats, deferral: Deferral
) -> dict[str, Any]:
    """A trained router and its deferral rule on answers neither saw (a held-out set): the
    rule's AUROC against the router's alone, the remote share it needs, what handing over
    midway saves, and where it sends what at its threshold."""
    r = rows(data, local, pre)
    chance = np.asarray([deferral.chance(list(row)) for row in r.x])
    return {
        "n": len(data.tasks),
        "local_failure_rate": round(float((~data.local_ok).mean()), 4),
        "pre_generation_router": compared(pre, pre, ~data.local_ok),
        "deferral_rule": compared(chance, pre, ~data.local_ok),
        "deferral_rule_curve": _curve(data, chance, pre),
        "midway": midway_report(data, local, chance, deferral.threshold, deferral.midway),
        "by_task": by_task(data, chance >= deferral.threshold),
        "seconds_per_query": {"execution_check": _seconds(r.check_seconds)},
    }


def by_task(data: Graded, escalated: npt.NDArray[np.bool_]) -> dict[str, dict[str, float]]:
    """Per task: the local model's accuracy, the share escalated, and the quality reached."""
    out = {}
    for kind in sorted(set(data.kinds)):
        idx = data.subset(kind)
        e = escalated[idx]
        quality = np.where(e, data.remote_ok[idx], data.local_ok[idx])
        out[kind] = {
            "n": len(idx),
            "local_accuracy": round(float(data.local_ok[idx].mean()), 4),
            "escalated": round(float(e.mean()), 4),
            "quality": round(float(quality.mean()), 4),
        }
    return out
