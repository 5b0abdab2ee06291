"""`route eval`'s report: the pair router, the local-failure router and the cascade, all
cross-validated on the same graded answers, with the quality-versus-escalation curve."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgeinf.route import evaluate
from edgeinf.route.cascade import agree
from edgeinf.route.collect import Answer
from edgeinf.route.train import Graded, fit_router, metrics, targets

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def pair_report(
    data: Graded,
    x: npt.NDArray[np.float32],
    local: dict[str, Answer],
    remote: dict[str, Answer],
    second: dict[str, Answer],
    folds: int,
) -> dict[str, Any]:
    pair = fit_router(x, targets("pair", data), data, folds)
    out: dict[str, Any] = {
        "pair_router": {"target": pair.target, **metrics(data, pair.oof)},
        "local_failure_router": metrics(
            data, fit_router(x, targets("local-failure", data), data, folds).oof
        ),
    }
    curve = evaluate.curve(pair.oof, data.local_ok, data.remote_ok)
    out["curve"] = [
        {"rate": r, "quality": round(curve.quality_at(r), 4), "pgr": round(curve.pgr_at(r), 4)}
        for r in RATES
    ]
    idx = np.asarray([i for i, t in enumerate(data.tasks) if t.id in second], dtype=np.intp)
    if len(idx):
        out["cascade"] = cascade_report(data, pair.oof, idx, local, remote, second)
    return out


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
    sub = Graded([data.tasks[i] for i in idx], data.local_ok[idx], data.remote_ok[idx])
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
