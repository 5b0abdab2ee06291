"""Speculative decoding on real models: greedy output is exactly plain output."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from edgeinf.engine.decoders import Lane, PlainDecoder, SpeculativeDecoder
from edgeinf.engine.drafters import ModelDrafter, NgramDrafter
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.generate import Generation, MakeDecoder, generate_once
from edgeinf.engine.options import EngineOptions
from edgeinf.engine.probs import Transform, probabilities
from edgeinf.engine.speculation import Controller, CostModel
from edgeinf.errors import ModelFileError
from edgeinf.types import Message, SamplingParams

SOURCE = """def mean(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)


def variance(values):
    m = mean(values)
    total = 0
    for v in values:
        total += (v - m) ** 2
    return total / len(values)
"""
PROMPTS = [
    f"Rename the variable `total` to `acc` in this code and return all of it:\n{SOURCE}",
    f"Add type hints to this code and return all of it:\n{SOURCE}",
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain in two sentences what a hash map is.",
    "List the first ten prime numbers, separated by commas.",
    "Write a SQL query that counts orders per customer.",
]
COST = CostModel({1: 1.0, 2: 1.5, 4: 2.5, 8: 4.0}, 0.0)
# Exact contexts: batched logits are bitwise those of one-at-a-time decoding.
OPTS = EngineOptions(n_ctx=2048, threads=2, threads_batch=2, exact=True)


@pytest.fixture(scope="module")
def spec_engine(draft_path: Path) -> Iterator[Engine]:
    with Engine(draft_path, OPTS) as engine:
        yield engine


def ngram_lanes(k: int = 4) -> list[Lane]:
    return [Lane(NgramDrafter(), Controller(COST, fixed_k=k))]


def run(
    engine: Engine, prompt: str, params: SamplingParams, make: MakeDecoder = PlainDecoder
) -> Generation:
    return generate_once(engine, engine.chat_tokens([Message("user", prompt)]), params, make)


@pytest.mark.parametrize("max_tokens", [1, 7, 64])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_ngram_speculation_is_exactly_plain(
    spec_engine: Engine, prompt: str, max_tokens: int
) -> None:
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    plain = run(spec_engine, prompt, params)
    spec = run(
        spec_engine, prompt, params, partial(SpeculativeDecoder, lanes=ngram_lanes(), mode="ngram")
    )
    assert plain.completion and spec.completion
    assert spec.completion.token_ids == plain.completion.token_ids
    assert spec.completion.finish_reason == plain.completion.finish_reason


@pytest.fixture(scope="module")
def window_engine(tiny_path: Path) -> Iterator[Engine]:
    """Gemma 3: sliding-window attention over 512 tokens in most layers."""
    with Engine(tiny_path, OPTS) as engine:
        assert engine.sliding_window
        yield engine


@pytest.mark.parametrize("copies", [1, 8])
def test_greedy_speculation_on_a_sliding_window_model_is_exactly_plain(
    window_engine: Engine, copies: int
) -> None:
    """Rejected drafts are cut from a cache whose window has moved past the prompt's start."""
    prompt = "Return this code unchanged:\n" + SOURCE * copies  # 8 copies: past the window
    params = SamplingParams(max_tokens=96, temperature=0)
    tokens = window_engine.vocab.tokenize(prompt, add_bos=window_engine.vocab.add_bos)
    plain = generate_once(window_engine, tokens, params)
    spec = generate_once(
        window_engine,
        tokens,
        params,
        partial(SpeculativeDecoder, lanes=ngram_lanes(), mode="ngram"),
    )
    assert plain.completion and spec.completion
    assert spec.completion.token_ids == plain.completion.token_ids
    assert spec.draft_stats.drafted > spec.draft_stats.accepted  # some drafts were rolled back


def test_copy_heavy_prompt_gets_long_accepted_drafts(spec_engine: Engine) -> None:
    params = SamplingParams(max_tokens=120, temperature=0)
    spec = run(
        spec_engine,
        PROMPTS[0],
        params,
        partial(SpeculativeDecoder, lanes=ngram_lanes(), mode="ngram"),
    )
    stats = spec.draft_stats
    assert stats.drafted > 40 and stats.accepted / stats.drafted > 0.5


@pytest.fixture(scope="module")
def pair(target_path: Path, draft_path: Path) -> Iterator[tuple[Engine, Engine]]:
    with Engine(target_path, OPTS) as target, Engine(draft_path, OPTS) as draft:
        yield target, draft


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS[:4])
def test_greedy_draft_model_speculation_is_exactly_plain(
    pair: tuple[Engine, Engine], prompt: str
) -> None:
    target, draft = pair
    drafter = ModelDrafter(draft, target)
    params = SamplingParams(max_tokens=48, temperature=0)
    plain = run(target, prompt, params)
    lanes = [Lane(drafter, Controller(CostModel(COST.verify, 0.5), fixed_k=3))]
    spec = run(target, prompt, params, partial(SpeculativeDecoder, lanes=lanes, mode="draft"))
    assert plain.completion and spec.completion
    assert spec.completion.token_ids == plain.completion.token_ids
    assert spec.draft_stats.accepted > 0


def test_draft_with_another_tokenizer_is_refused(tiny_engine: Engine, chat_engine: Engine) -> None:
    with pytest.raises(ModelFileError, match="another tokenizer"):
        ModelDrafter(tiny_engine, chat_engine)


def test_sampled_speculation_follows_the_target_distribution(chat_engine: Engine) -> None:
    """After a point-mass draft, accept-or-resample must give the target's own p."""
    tokens = chat_engine.chat_tokens([Message("user", "Say a random colour.")])
    seq = SeqState(0)
    chat_engine.prefill(seq, tokens[:-1])
    params = SamplingParams(temperature=1.0, top_k=8, top_p=1.0, min_p=0.0, seed=3)
    decoder = SpeculativeDecoder(chat_engine, seq, params, lanes=[], mode="ngram")
    draft = chat_engine.vocab.tokenize(" blue")[0]
    chat_engine.batch.clear()
    chat_engine.batch.add(tokens[-1], len(seq.tokens), 0, True)
    chat_engine.batch.add(draft, len(seq.tokens) + 1, 0, True)
    chat_engine.decode()
    seq.tokens += [tokens[-1], draft]
    p = probabilities(chat_engine.logits(0), Transform.of(params))
    n = 4000
    counts = np.zeros_like(p)
    for _ in range(n):
        counts[decoder._verify([draft], [None])[0]] += 1
    decoder.close()
    chat_engine.trim(seq, 0)
    support = np.flatnonzero((p > 0) | (counts > 0))
    assert counts[p == 0].sum() == 0
    assert np.abs(counts[support] / n - p[support]).max() < 0.035
