"""How well each signal predicts the local model's failure, alone and combined, with paired
bootstrap intervals against the pre-generation router, and what each costs per query."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeinf.research import evaluate
from edgeinf.research.collect import Answer
from edgeinf.research.head import fit
from edgeinf.research.train import Graded
from edgeinf.route.checks import check
from edgeinf.route.signals import SIGNALS, doubts

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
    """Each signal's AUROC of local failure; the execution check on the code tasks (and on all,
    undecided elsewhere); a logistic deferral rule over all of them, out of fold."""
    failed = ~data.local_ok
    answers = [local[t.id] for t in data.tasks]
    columns: dict[str, Floats] = {"pre_generation_router": pre}
    if any(a.logprobs for a in answers):
        rows = [doubts(a.logprobs, a.margins) for a in answers]
        columns |= {name: np.asarray([r[name] for r in rows]) for name in SIGNALS}
    columns["answer_length"] = np.asarray(
        [
            a.completion_tokens / max(1, t.max_tokens)
            for a, t in zip(answers, data.tasks, strict=True)
        ]
    )
    verdicts, check_seconds = [], []
    for t, a in zip(data.tasks, answers, strict=True):
        started = time.monotonic()
        verdicts.append(check(t.messages[-1].content, a.text))
        check_seconds.append(time.monotonic() - started)
    columns["execution_check"] = np.asarray(
        [{False: 1.0, None: 0.5, True: 0.0}[v] for v in verdicts]
    )
    x = np.stack(list(columns.values()), axis=1)

    def fit_predict(train: npt.NDArray[np.intp], held: npt.NDArray[np.intp]) -> Floats:
        return fit(x[train], failed[train].astype(float), 10.0).predict(x[held])

    combined = evaluate.out_of_fold(failed.astype(float), data.kinds, fit_predict, folds)
    report: dict[str, Any] = {
        "n": len(answers),
        "local_failure_rate": round(float(failed.mean()), 4),
        "signals": {name: compared(s, pre, failed) for name, s in columns.items()},
        "deferral_rule": compared(combined, pre, failed),
        "deferral_rule_curve": {
            f"remote_share_for_{round(f * 100)}": {
                "rule": round(
                    evaluate.share_for(evaluate.curve(combined, data.local_ok, data.remote_ok), f),
                    4,
                ),
                "random": round(evaluate.random_share_for(data.local_ok, data.remote_ok, f), 4),
            }
            for f in (0.9, 0.95)
        },
        "seconds_per_query": {
            "local_answer": _seconds([a.seconds for a in answers]),
            "execution_check": _seconds(check_seconds),
        },
    }
    code = np.asarray([v is not None for v in verdicts])
    if code.any():
        report["execution_check_where_it_decides"] = {
            "n": int(code.sum()),
            **compared(columns["execution_check"][code], pre[code], failed[code]),
        }
    return report
