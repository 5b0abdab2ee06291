"""`route eval`'s report: the pair router, the local-failure router and the cascade, all
cross-validated on the same graded answers, with the quality-versus-escalation curve."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgeinf.research import evaluate
from edgeinf.research.collect import Answer
from edgeinf.research.head import fit
from edgeinf.research.train import Graded, fit_router, metrics, nested_oof, targets
from edgeinf.route.cascade import agree

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SHARES = (0.25, 0.5, 0.75, 1.0)
STEP_BUCKETS = (("0-2", 0, 2), ("3", 3, 3), ("4", 4, 4), ("5+", 5, 10**6))


def pair_report(
    data: Graded,
    x: npt.NDArray[np.float32],
    local: dict[str, Answer],
    remote: dict[str, Answer],
    second: dict[str, Answer],
    folds: int,
) -> dict[str, Any]:
    pair_targets = targets("pair", data)
    pair = nested_oof(x, pair_targets, data, folds)
    out: dict[str, Any] = {
        "pair_router": metrics(data, pair),
        "local_failure_router": metrics(
            data, nested_oof(x, targets("local-failure", data), data, folds)
        ),
    }
    curve = evaluate.curve(pair, data.local_ok, data.remote_ok)
    out["curve"] = [
        {"rate": r, "quality": round(curve.quality_at(r), 4), "pgr": round(curve.pgr_at(r), 4)}
        for r in RATES
    ]
    out["learning_curve"] = learning_curve(x, data, pair_targets, folds)
    gsm8k = data.subset("gsm8k")
    if len(gsm8k):
        out["gsm8k_by_difficulty"] = difficulty_report(data.take(gsm8k))
    idx = np.asarray([i for i, t in enumerate(data.tasks) if t.id in second], dtype=np.intp)
    if len(idx):
        out["cascade"] = cascade_report(data, pair, idx, local, remote, second)
    return out


def learning_curve(
    x: npt.NDArray[np.float32],
    data: Graded,
    candidates: dict[str, npt.NDArray[np.float64]],
    folds: int,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Held-out APGR of the chosen target and regularisation when each fold's model learns from
    only a share of the other folds: whether more graded answers would still buy quality."""
    chosen = fit_router(x, candidates, data, folds)
    y = candidates[chosen.target]
    rng = np.random.default_rng(0)
    rows = []
    for share in SHARES:

        def fit_predict(
            train: npt.NDArray[np.intp], held: npt.NDArray[np.intp], share: float = share
        ) -> npt.NDArray[np.float64]:
            part = rng.choice(train, max(2, round(len(train) * share)), replace=False)
            return fit(x[part], y[part], chosen.l2).predict(x[held])

        runs = [
            metrics(data, evaluate.out_of_fold(y, data.kinds, fit_predict, folds))
            for _ in range(repeats if share < 1 else 1)
        ]
        per_kind = {k: round(float(np.mean([r[k]["apgr"] for r in runs])), 4) for k in runs[0]}
        trained_on = round(len(data.tasks) * (1 - 1 / folds) * share)
        rows.append({"share": share, "trained_on": trained_on, "apgr": per_kind})
    return rows


def difficulty_report(data: Graded) -> dict[str, Any]:
    """GSM8K by the number of calculations in the reference solution: what escalating buys at
    each difficulty, and the APGR of a router that knew the difficulty, either way round. When the
    remote also fails the hard problems, knowing which are hard does not say where it gains."""
    steps = np.asarray([t.steps for t in data.tasks])
    rows = []
    for label, low, high in STEP_BUCKETS:
        m = (steps >= low) & (steps <= high)
        if m.any():
            lo, ro = data.local_ok[m], data.remote_ok[m]
            rows.append(
                {
                    "steps": label,
                    "n": int(m.sum()),
                    "local_accuracy": round(float(lo.mean()), 4),
                    "remote_accuracy": round(float(ro.mean()), 4),
                    "gain_per_escalation": round(float(ro.mean() - lo.mean()), 4),
                }
            )
    known = {
        order: round(
            evaluate.curve(sign * steps.astype(float), data.local_ok, data.remote_ok).apgr, 4
        )
        for order, sign in (("hardest_first", 1), ("easiest_first", -1))
    }
    return {"buckets": rows, "difficulty_oracle_apgr": known}


def cascade_report(
    data: Graded,
    oof: npt.NDArray[np.float64],
    idx: npt.NDArray[np.intp],
    local: dict[str, Answer],
    remote: dict[str, Answer],
    second: dict[str, Answer],
) -> dict[str, Any]:
    """On the tasks with a second local sample: disagreement alone, and disagreement with the
    pre-generation score ordering each side; and what the second sample costs."""
    sub = data.take(idx)
    ids = [t.id for t in sub.tasks]
    disagree = np.asarray([not agree(local[i].text, second[i].text) for i in ids], dtype=float)

    def mean(xs: list[float]) -> float:
        return round(float(np.mean(xs)), 3)

    return {
        "n": len(ids),
        "disagreement_rate": round(float(disagree.mean()), 4),
        "signal_only": metrics(sub, disagree),
        "with_pre_generation_score": metrics(sub, disagree + oof[idx] / 2),
        "pre_generation_on_same_tasks": metrics(sub, oof[idx]),
        "mean_completion_tokens": {
            "local": mean([local[i].completion_tokens for i in ids]),
            "second_sample": mean([second[i].completion_tokens for i in ids]),
            "remote": mean([remote[i].completion_tokens for i in ids]),
        },
    }
