"""Sampling follows llama.cpp's own sampler chain, with drafts and without (real logits)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.sampling import Distribution, Sampler
from edgeinf.engine.verify import verify
from edgeinf.types import Message, SamplingParams

DRAWS = 4000
PARAMS = [
    SamplingParams(temperature=1.0, top_k=8, top_p=1.0, min_p=0.0, seed=3),
    SamplingParams(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, seed=5),
]


def _row_and_chain(engine: Engine, params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """One real logits row, and how often llama.cpp's chain itself draws each token from it,
    again and again."""
    seq = SeqState(0)
    engine.prefill(seq, engine.chat_tokens([Message("user", "Name a random colour.")]))
    counts = np.zeros(engine.vocab.n_tokens)
    try:
        with Sampler(params, engine.vocab) as sampler:
            for _ in range(DRAWS):
                counts[sampler.sample(engine.ctx, -1)] += 1
        return engine.logits(-1).copy(), counts / DRAWS
    finally:
        engine.trim(seq, 0)


def _close(freq: np.ndarray, p: np.ndarray) -> None:
    support = np.flatnonzero((p > 0) | (freq > 0))
    assert freq[p == 0].sum() == 0  # nothing the chain removes is ever drawn
    assert np.abs(freq[support] - p[support]).max() < 0.035


@pytest.mark.parametrize("params", PARAMS)
def test_the_distribution_is_the_chains_own(tiny_engine: Engine, params: SamplingParams) -> None:
    row, chain = _row_and_chain(tiny_engine, params)
    dist = Distribution(params, tiny_engine.vocab)
    p = dist.of(row)
    dist.close()
    assert abs(p.sum() - 1) < 1e-9
    _close(chain, p)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.slow
def test_accepting_a_draft_or_resampling_gives_the_chains_distribution(
    tiny_engine: Engine, params: SamplingParams
) -> None:
    """After a drafted token (a point mass, as n-gram drafts are), what verification keeps
    is distributed as llama.cpp's chain draws, whether the draft is likely or not."""
    row, chain = _row_and_chain(tiny_engine, params)
    dist = Distribution(params, tiny_engine.vocab)
    p = dist.of(row)
    likely, unlikely = int(np.argmax(p)), int(np.argsort(p)[-2])
    for draft in (likely, unlikely):
        counts = np.zeros_like(p)
        for _ in range(DRAWS):
            counts[verify([p], [draft], [None], dist)[0]] += 1
        _close(counts / DRAWS, chain)
    dist.close()
