"""The deferral rule: once the local model has answered, or while it is still writing, whether
the remote should answer instead, read from what the answer showed (how sure the model was of
each token, how the answer ended, whether the prompt's own examples pass its code) beside the
router's score from before it.

`edgeinf route train` fits it on the local model's graded answers (their correctness is all it
learns from: no remote calls) and writes it beside the router as deferral.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinf.errors import ConfigError
from edgeinf.route.checks import check
from edgeinf.route.logistic import Logistic
from edgeinf.route.signals import SIGNALS, doubts, margin
from edgeinf.types import TokenLogprob

DEFERRAL = "deferral.json"
FORMAT = 1
FEATURES = ("pre_generation", *SIGNALS, "cut_short", "log_tokens", "execution_check")
RIVALS = 2  # the likeliest tokens the watch reads at each place: the margin of the first two
VERDICT = {False: 1.0, None: 0.5, True: 0.0}  # a failed example is the strongest doubt


def features(
    pre: float,
    logprobs: Sequence[float],
    margins: Sequence[float],
    cut: bool,
    verdict: bool | None,
) -> list[float]:
    """One answer's row, by FEATURES: `pre` is the router's score before the answer, `cut`
    whether the answer ran out of tokens, `verdict` the execution check's."""
    d = doubts(logprobs, margins)
    return [pre, *(d[n] for n in SIGNALS), float(cut), math.log1p(len(logprobs)), VERDICT[verdict]]


@dataclass(frozen=True)
class Deferral:
    rule: Logistic  # the chance that the local answer is wrong
    threshold: float  # that chance, at or above which the remote answers instead
    midway: float | None  # one token's doubt (nats) at which a written answer is handed over
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> Deferral | None:
        """The router's deferral rule; None when it was trained without one."""
        path = directory / DEFERRAL
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT or raw.get("features") != list(FEATURES):
                raise ValueError("written by another version of edgeinf")
            rule = Logistic(
                np.asarray(raw["mean"], dtype=np.float64),
                np.asarray(raw["scale"], dtype=np.float64),
                np.asarray(raw["weights"], dtype=np.float64),
                float(raw["bias"]),
            )
            midway = raw.get("midway")
            return cls(
                rule,
                float(raw["threshold"]),
                None if midway is None else float(midway),
                dict(raw.get("metrics", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"deferral rule {path} is unreadable ({exc}); retrain the router with "
                "`edgeinf route train`"
            ) from exc

    def write(self, directory: Path) -> None:
        raw = {
            "format": FORMAT,
            "features": list(FEATURES),
            "mean": self.rule.mean.tolist(),
            "scale": self.rule.scale.tolist(),
            "weights": self.rule.weights.tolist(),
            "bias": self.rule.bias,
            "threshold": self.threshold,
            "midway": self.midway,
            "metrics": self.metrics,
        }
        (directory / DEFERRAL).write_text(json.dumps(raw, indent=2) + "\n")

    def chance(self, row: list[float]) -> float:
        """The chance that the answer of this FEATURES row is wrong."""
        return float(self.rule.predict(np.asarray([row], dtype=np.float64))[0])


class Watch:
    """An answer's doubts as it is written; `saw` says when one token's doubt reached the
    rule's midway mark (the answer is then handed over, the earlier the cheaper)."""

    def __init__(self, deferral: Deferral, pre: float, threshold: float) -> None:
        """`pre`: the router's score of the question; `threshold`: the chance of a wrong
        answer at which the remote answers instead."""
        self.deferral, self.pre, self.threshold = deferral, pre, threshold
        self.logprobs: list[float] = []
        self.margins: list[float] = []

    @property
    def worst(self) -> float:
        """The largest doubt of a token written so far."""
        return -min(self.logprobs, default=0.0)

    def saw(self, tokens: Sequence[TokenLogprob]) -> bool:
        mark = self.deferral.midway
        for t in tokens:
            self.logprobs.append(t.logprob)
            self.margins.append(margin(t))
        return mark is not None and any(-t.logprob >= mark for t in tokens)

    def chance(self, prompt: str, answer: str, cut: bool) -> float:
        """The finished answer's chance of being wrong (runs the prompt's examples, if any)."""
        verdict = check(prompt, answer)
        return self.deferral.chance(features(self.pre, self.logprobs, self.margins, cut, verdict))
