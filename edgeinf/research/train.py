"""Fit a router from graded answers: labels, features, cross-validated regularisation, the
threshold for a target escalation rate, and the router directory (card, ONNX head, model card)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeinf.research import evaluate
from edgeinf.research.card import MODEL_CARD
from edgeinf.research.collect import Answer
from edgeinf.research.head import fit, to_onnx
from edgeinf.research.tasks import grade
from edgeinf.route.encoder import SentenceEncoder
from edgeinf.route.features import SHAPE_FEATURES, featurize, query_text
from edgeinf.route.logistic import Logistic
from edgeinf.route.router import CARD, FORMAT, HEAD, Kind
from edgeinf.tasks import Task

L2_GRID = (1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass(frozen=True)
class Graded:
    """Tasks with both models' correctness; `remote_ok` is all True for a local-failure router
    (it is read against a remote that is always right)."""

    tasks: list[Task]
    local_ok: npt.NDArray[np.bool_]
    remote_ok: npt.NDArray[np.bool_]

    @property
    def kinds(self) -> list[str]:
        return [t.kind for t in self.tasks]

    def subset(self, kind: str) -> npt.NDArray[np.intp]:
        return np.flatnonzero(np.asarray(self.kinds) == kind)

    def take(self, idx: npt.NDArray[np.intp]) -> Graded:
        return Graded([self.tasks[i] for i in idx], self.local_ok[idx], self.remote_ok[idx])


def graded(tasks: list[Task], local: dict[str, Answer], remote: dict[str, Answer] | None) -> Graded:
    local_ok = np.asarray([grade(t, local[t.id].text) for t in tasks])
    remote_ok = (
        np.asarray([grade(t, remote[t.id].text) for t in tasks])
        if remote is not None
        else np.ones(len(tasks), dtype=bool)
    )
    return Graded(tasks, local_ok, remote_ok)


def targets(kind: Kind, data: Graded) -> dict[str, npt.NDArray[np.float64]]:
    """What a router may learn to predict. A pair router tries both the gain (remote right,
    local wrong) and the local model's failure, and keeps whichever ranks gains better on
    held-out tasks: with a few hundred tasks the sparser gain labels can lose."""
    failure = (~data.local_ok).astype(float)
    if kind == "pair":
        return {"gain": (data.remote_ok & ~data.local_ok).astype(float), "local_failure": failure}
    return {"local_failure": failure}


@dataclass(frozen=True)
class Fitted:
    model: Logistic
    target: str
    l2: float
    train_scores: npt.NDArray[np.float64]


def fit_router(
    x: npt.NDArray[np.float32],
    candidates: dict[str, npt.NDArray[np.float64]],
    data: Graded,
    k: int = 5,
) -> Fitted:
    """The target and regularisation with the best cross-validated APGR, refitted on all."""
    k = max(2, min(k, len(data.tasks)))
    best: tuple[float, str, float] | None = None
    for name, y in candidates.items():
        for l2 in L2_GRID:

            def fit_predict(
                train: npt.NDArray[np.intp],
                held: npt.NDArray[np.intp],
                y: npt.NDArray[np.float64] = y,
                l2: float = l2,
            ) -> npt.NDArray[np.float64]:
                return fit(x[train], y[train], l2).predict(x[held])

            oof = evaluate.out_of_fold(y, data.kinds, fit_predict, k)
            apgr = evaluate.curve(oof, data.local_ok, data.remote_ok).apgr
            if best is None or apgr > best[0]:
                best = (apgr, name, l2)
    assert best is not None
    _, name, l2 = best
    model = fit(x, candidates[name], l2)
    return Fitted(model, name, l2, model.predict(x))


def nested_oof(
    x: npt.NDArray[np.float32],
    candidates: dict[str, npt.NDArray[np.float64]],
    data: Graded,
    k: int = 5,
) -> npt.NDArray[np.float64]:
    """Held-out scores with nothing chosen on the question scored: each outer fold's model picks
    its own target and regularisation by inner folds of the rest. `fit_router`'s own out-of-fold
    scores are the best of several configurations, so they lean optimistic."""
    k = max(2, min(k, len(data.tasks)))
    scores = np.zeros(len(data.tasks))
    for held in evaluate.folds(data.kinds, k):
        rest = np.setdiff1d(np.arange(len(data.tasks)), held)
        inner = fit_router(x[rest], {n: y[rest] for n, y in candidates.items()}, data.take(rest), k)
        scores[held] = inner.model.predict(x[held])
    return scores


def metrics(data: Graded, oof: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Cross-validated figures, overall and per task kind."""

    def block(idx: npt.NDArray[np.intp]) -> dict[str, Any]:
        lo, ro, s = data.local_ok[idx], data.remote_ok[idx], oof[idx]
        c = evaluate.curve(s, lo, ro)
        oracle = evaluate.curve((~lo).astype(float), lo, ro)
        return {
            "n": len(idx),
            "local_accuracy": round(float(lo.mean()), 4),
            "remote_accuracy": round(float(ro.mean()), 4),
            "apgr": round(c.apgr, 4),
            "pgr_at_50": round(c.pgr_at(0.5), 4),
            "random_apgr": round(evaluate.random_apgr(lo, ro), 4),
            "local_failure_oracle_apgr": round(oracle.apgr, 4),
            "local_failure_auroc": round(evaluate.auroc(s, ~lo), 4),
            **{
                f"remote_share_for_{round(f * 100)}": {
                    "router": round(evaluate.share_for(c, f), 4),
                    "random": round(evaluate.random_share_for(lo, ro, f), 4),
                }
                for f in (0.9, 0.95)
            },
        }

    out = {"all": block(np.arange(len(data.tasks)))}
    for kind in sorted(set(data.kinds)):
        out[kind] = block(data.subset(kind))
    return out


def features(encoder: SentenceEncoder, tasks: list[Task]) -> npt.NDArray[np.float32]:
    return featurize(encoder, [query_text(t.messages) for t in tasks])


def write_router(
    out: Path, fitted: Fitted, card: dict[str, Any], escalation_rate: float, model_card: str
) -> Path:
    """Write the router atomically: a new directory is filled, then renamed into place."""
    quantiles = np.quantile(fitted.train_scores, np.linspace(0, 1, 101))
    threshold = float(np.quantile(fitted.train_scores, 1.0 - escalation_rate))
    body = {
        "format": FORMAT,
        **card,
        "features": list(SHAPE_FEATURES),
        "target": fitted.target,
        "l2": fitted.l2,
        "threshold": round(threshold, 6),
        "escalation_rate": escalation_rate,
        "quantiles": [round(float(q), 6) for q in quantiles],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    (tmp / HEAD).write_bytes(to_onnx(fitted.model))
    (tmp / CARD).write_text(json.dumps(body, indent=2) + "\n")
    (tmp / MODEL_CARD).write_text(model_card)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(out)
    return out
