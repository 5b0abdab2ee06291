"""Which cached runs a moved prompt can keep (engine.chunks)."""

from __future__ import annotations

from edgeinf.engine.chunks import FRESH, MAX_RUNS, Parked, Run, align, pieces, reused


def test_the_shared_start_is_kept_whatever_its_length() -> None:
    assert align([1, 2, 3, 9], [1, 2, 3, 4, 5], min_run=4) == [Run(0, 0, 3)]


def test_the_prompts_last_token_is_never_reused() -> None:
    assert align([1, 2, 3], [1, 2, 3], min_run=2) == [Run(0, 0, 2)]


def test_text_inserted_in_the_middle_moves_the_run_after_it() -> None:
    cached = list(range(200))
    prompt = [*range(40), 500, 501, *range(40, 200), 7]
    # The run's first FRESH tokens read the new text: they are evaluated again.
    assert align(cached, prompt, min_run=8) == [
        Run(0, 0, 40),
        Run(40 + FRESH, 42 + FRESH, 160 - FRESH),
    ]


def test_text_dropped_at_the_front_moves_the_rest_back() -> None:
    cached = list(range(200))
    prompt = [*range(10, 200), 7]
    assert align(cached, prompt, min_run=8) == [Run(10 + FRESH, FRESH, 190 - FRESH)]


def test_runs_shorter_than_the_minimum_are_prefilled() -> None:
    cached = list(range(100))
    prompt = [*range(20, 25), 900, *range(30, 30 + FRESH + 8), 901, *range(80, 100), 7]
    assert align(cached, prompt, min_run=8) == [Run(30 + FRESH, 6 + FRESH, 8)]
    assert align(cached, prompt, min_run=0) == []  # 0: only a shared start


def test_at_most_max_runs_are_moved() -> None:
    cached = list(range(5000))
    prompt: list[int] = []
    size = FRESH + 10
    for k in range(MAX_RUNS + 4):  # runs of cached tokens, each after a new one
        prompt += [9000 + k, *range(k * 2 * size, k * 2 * size + size)]
    prompt.append(7)
    runs = align(cached, prompt, min_run=8)
    assert len(runs) == MAX_RUNS  # each in a sequence of its own while parked
    assert reused(runs) == 10 * MAX_RUNS


def test_what_is_left_is_the_gaps_and_the_runs_in_prompt_order() -> None:
    prompt = list(range(10))
    parked = [Parked(9, 3, [3, 4]), Parked(10, 5, [5, 6, 7])]
    assert pieces(prompt, 2, parked) == [[2], parked[0], parked[1], [8, 9]]
