"""Speculative decoding on real models: greedy output is exactly plain output."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from edgeinf.engine.drafters import ModelDrafter, NgramDrafter
from edgeinf.engine.engine import Engine
from edgeinf.engine.grammar import from_schema
from edgeinf.engine.history import History
from edgeinf.engine.lanes import Lane
from edgeinf.engine.once import Outcome, answer_once
from edgeinf.engine.options import EngineOptions
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


def run(engine: Engine, prompt: str, params: SamplingParams, lanes: Sequence[Lane] = ()) -> Outcome:
    return answer_once(engine, engine.chat_tokens([Message("user", prompt)]), params, lanes)


@pytest.mark.parametrize("max_tokens", [1, 7, 64])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_ngram_speculation_is_exactly_plain(
    spec_engine: Engine, prompt: str, max_tokens: int
) -> None:
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    plain = run(spec_engine, prompt, params)
    spec = run(spec_engine, prompt, params, ngram_lanes())
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
    plain = answer_once(window_engine, tokens, params)
    spec = answer_once(window_engine, tokens, params, ngram_lanes())
    assert spec.completion.token_ids == plain.completion.token_ids
    assert spec.drafted > spec.accepted  # some drafts were rolled back


def test_an_answer_written_before_is_drafted_from_history_and_stays_exact(
    spec_engine: Engine,
) -> None:
    """The prompt does not hold the answer; the principal's history does, once it answered
    the same question: the second answer is mostly accepted drafts, and plain's text."""
    params = SamplingParams(max_tokens=64, temperature=0)
    prompt = PROMPTS[3]
    plain = run(spec_engine, prompt, params)
    history = History(4096)

    def with_history() -> list[Lane]:  # within the batch size this engine is exact for
        return [Lane(NgramDrafter(history=history), Controller(COST, fixed_k=4))]

    first = run(spec_engine, prompt, params, with_history())
    again = run(spec_engine, prompt, params, with_history())
    context_only = run(spec_engine, prompt, params, ngram_lanes())
    for answer in (first, again, context_only):
        assert answer.completion.token_ids == plain.completion.token_ids
    assert history.tokens >= 2 * len(plain.completion.token_ids) - 2
    # Four drafts and the token after them per verification: at most 4/5 of the answer.
    assert again.accepted > 0.7 * len(plain.completion.token_ids) > context_only.accepted


def test_copy_heavy_prompt_gets_long_accepted_drafts(spec_engine: Engine) -> None:
    params = SamplingParams(max_tokens=120, temperature=0)
    spec = run(spec_engine, PROMPTS[0], params, ngram_lanes())
    assert spec.drafted > 40 and spec.accepted / spec.drafted > 0.5


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
    spec = run(target, prompt, params, lanes)
    assert spec.completion.token_ids == plain.completion.token_ids
    assert spec.accepted > 0


def test_draft_with_another_tokenizer_is_refused(tiny_engine: Engine, chat_engine: Engine) -> None:
    with pytest.raises(ModelFileError, match="another tokenizer"):
        ModelDrafter(tiny_engine, chat_engine)


def test_sampled_answers_with_drafts_keep_the_seed_and_the_stop(spec_engine: Engine) -> None:
    """Sampled requests draft too (accepted by speculative sampling, engine.verify): the same
    seed gives the same answer, and stops and limits hold as without drafts."""
    params = SamplingParams(max_tokens=96, temperature=0.7, seed=11, stop=("variance",))
    first = run(spec_engine, PROMPTS[1], params, ngram_lanes())
    again = run(spec_engine, PROMPTS[1], params, ngram_lanes())
    assert first.completion.token_ids == again.completion.token_ids
    assert first.drafted > 0 and first.accepted > 0
    assert "variance" not in first.completion.text
    assert first.completion.usage.completion_tokens <= 96


EDIT_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string"}, "renamed": {"type": "integer"}},
    "required": ["code", "renamed"],
}


def test_greedy_ngram_speculation_under_a_schema_is_exactly_plain_and_still_drafts(
    spec_engine: Engine,
) -> None:
    """Drafts pass through the grammar as every pick does, so they stay on, and exact."""
    prompt = PROMPTS[0] + "\nAnswer as JSON: the code, and how many names you renamed."
    params = SamplingParams(max_tokens=160, temperature=0, grammar=from_schema(EDIT_SCHEMA, "s"))
    plain = run(spec_engine, prompt, params)
    spec = run(spec_engine, prompt, params, ngram_lanes())
    assert spec.completion.token_ids == plain.completion.token_ids
    assert spec.accepted > 20, (spec.drafted, spec.accepted)  # the copied code was drafted
    answer = json.loads(plain.completion.text)
    assert set(answer) == {"code", "renamed"} and "def mean" in answer["code"]
