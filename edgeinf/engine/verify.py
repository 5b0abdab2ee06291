"""Verifying a sampled request's drafted tokens: standard speculative sampling.

A draft d with draft distribution q is kept with probability min(1, p(d) / q(d)); the first
one refused is replaced by a draw from the normalised residual max(p - q, 0), and when all
are kept one more token is drawn from the next row. What comes out is distributed as the
target's own p (an n-gram draft is a point mass: q = 1 on d). Greedy requests need none of
this: a draft is kept while it equals the target's pick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeinf.engine.sampling import Distribution


def verify(
    row: Callable[[int], np.ndarray] | Sequence[np.ndarray],
    drafts: Sequence[int],
    dists: Sequence[np.ndarray | None],
    dist: Distribution,
    bonus: bool = False,
) -> list[int]:
    """The tokens kept: the accepted drafts, then the replacement of the first refused one,
    or (`bonus`, when every draft was kept and one more row was evaluated) a draw from it.
    `row(i)` is the target's distribution at draft i (row i+1 follows draft i)."""
    p_of = row if callable(row) else row.__getitem__
    out: list[int] = []
    for i, (draft, q) in enumerate(zip(drafts, dists, strict=True)):
        p = p_of(i)
        q_draft = 1.0 if q is None else float(q[draft])
        if dist.rng.random() < min(1.0, p[draft] / q_draft):
            out.append(draft)
            continue
        residual = p.copy()
        if q is None:
            residual[draft] = 0.0
        else:
            residual = np.maximum(p - q, 0.0)
        total = residual.sum()
        return [*out, dist.draw(residual / total if total > 0 else p)]
    if bonus:
        out.append(dist.draw(p_of(len(drafts))))
    return out
