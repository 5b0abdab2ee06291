"""Signals that come free while the local model answers: how sure it was of what it wrote.

Each is a doubt, higher where the answer is likelier wrong, read from the log-probability of
every written token under the model's raw logits and the margin between its two likeliest
tokens at that place (both computed as the answer is written; see `SamplingParams.logprobs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgeinf.types import TokenLogprob

UNSURE = math.log(0.5)  # a token written with less than even odds
CLOSE = 1.0  # nats between the two likeliest tokens: a near tie
WINDOW = 16  # tokens of the least sure stretch

SIGNALS = (
    "mean_doubt",
    "p90_doubt",
    "max_doubt",
    "unsure_share",
    "close_share",
    "worst_window",
)


def doubts(logprobs: Sequence[float], margins: Sequence[float]) -> dict[str, float]:
    """The answer's doubts by SIGNALS; all 0 for an answer with no tokens."""
    if not logprobs:
        return dict.fromkeys(SIGNALS, 0.0)
    d = -np.asarray(logprobs, dtype=np.float64)
    m = np.asarray(margins, dtype=np.float64) if margins else np.full(len(d), np.inf)
    window = min(WINDOW, len(d))
    stretch = np.convolve(d, np.ones(window) / window, mode="valid")
    return {
        "mean_doubt": float(d.mean()),
        "p90_doubt": float(np.quantile(d, 0.9)),
        "max_doubt": float(d.max()),
        "unsure_share": float((d > -UNSURE).mean()),
        "close_share": float((m < CLOSE).mean()),
        "worst_window": float(stretch.max()),
    }


def margin(token: TokenLogprob) -> float:
    """How far the likeliest other token stood below the likeliest one (0 where the model
    hesitated between two; 0 when no rival was reported)."""
    top = token.top
    return top[0][2] - top[1][2] if len(top) > 1 else 0.0
