"""Token probabilities after temperature, top-k, top-p and min-p, for speculative sampling.

Plain sampling runs in llama.cpp's sampler chain; speculative sampling needs the target's
and the draft's whole distributions to accept a draft with probability min(1, p/q), so the
same chain (top-k, top-p, min-p, then temperature) is computed here on one logits row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeinf.types import SamplingParams


@dataclass
class Transform:
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    rng: np.random.Generator

    @classmethod
    def of(cls, params: SamplingParams) -> Transform:
        return cls(
            params.temperature,
            params.top_k,
            params.top_p,
            params.min_p,
            np.random.default_rng(params.seed),
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return np.asarray(e / e.sum())


def probabilities(logits: np.ndarray, t: Transform) -> np.ndarray:
    """A dense distribution over the vocabulary (zero outside the kept candidates)."""
    x = np.asarray(logits, dtype=np.float64)
    ids = np.argpartition(x, -t.top_k)[-t.top_k :] if 0 < t.top_k < x.size else np.arange(x.size)
    ids = ids[np.argsort(-x[ids], kind="stable")]
    vals = x[ids]
    if t.top_p < 1.0:
        last = int(np.searchsorted(np.cumsum(_softmax(vals)), t.top_p)) + 1
        vals, ids = vals[:last], ids[:last]
    if t.min_p > 0:
        keep = vals >= vals[0] + np.log(t.min_p)
        vals, ids = vals[keep], ids[keep]
    out = np.zeros(x.size)
    out[ids] = _softmax(vals / t.temperature)
    return out
