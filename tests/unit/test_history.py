"""Drafts across requests: earlier answers of a principal, bounded, scored per pattern."""

from __future__ import annotations

import random

import pytest

from edgeinf.engine.drafters import NgramDrafter
from edgeinf.engine.history import LEAD, MIN_TRIED, WINDOWS, Histories, History
from edgeinf.engine.lanes import Lane
from edgeinf.engine.speculation import Controller, CostModel


def test_the_context_end_finds_what_followed_it_in_the_latest_answer() -> None:
    history = History(1000)
    history.add([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    history.add([20, 21, 3, 4, 50, 51, 52])
    draft, window, _ = history.find([99, 3, 4], 3)
    assert (draft, window) == ([50, 51, 52], 2)  # the latest answer with "3 4"
    draft, window, _ = history.find([1, 2, 3, 4], 3)
    assert (draft, window) == ([5, 6, 7], 4)  # a longer window wins over a later answer
    assert history.find([77, 78], 3)[0] == []


def test_a_request_sent_again_drafts_its_own_answer_from_the_first_token() -> None:
    template = [900, 901, 902, 903, 904]  # the same chat template ends every prompt
    first = list(range(100, 140)) + template
    second = list(range(200, 240)) + template
    history = History(1000)
    history.add([7, *range(300, 340)], first)
    history.add([7, *range(400, 440)], second)  # the same first token after the same template
    draft, agreed, _ = history.find([*first, 7], 5)
    assert draft == [300, 301, 302, 303, 304]  # the first prompt's answer, not the latest
    assert agreed == LEAD + 1  # it agrees over the prompt tail kept too
    draft, _, _ = history.find([*second, 7], 3)
    assert draft == [400, 401, 402]
    # Only the prompt's tail is kept, and only windows ending in an answer are indexed.
    assert history.tokens == 2 * (LEAD + 41)
    assert history.find(first[:10], 3)[0] == []


def test_the_budget_drops_the_oldest_answers_and_their_windows() -> None:
    history = History(20)
    history.add(list(range(100, 112)))
    history.add(list(range(200, 212)))  # 24 tokens: the first answer goes
    assert history.tokens == 12
    assert history.find([100, 101], 2)[0] == []
    assert history.find([200, 201], 2)[0] == [202, 203]


def test_the_index_stays_bounded_over_many_answers() -> None:
    rng = random.Random(7)
    history = History(500)
    for _ in range(400):
        history.add([rng.randrange(50) for _ in range(rng.randrange(5, 80))])
        assert history.tokens <= 500
        assert history.entries <= 2 * len(WINDOWS) * history.tokens


def test_a_pattern_whose_drafts_are_rejected_stops_being_proposed() -> None:
    history = History(1000)
    history.add([1, 2, 3, 4, 5, 6])
    _, _, pattern = history.find([1, 2], 4)
    history.score(pattern, MIN_TRIED, 0)
    assert history.find([1, 2], 4)[0] == []
    history.score(pattern, 0, 0)  # the record stays: still silenced
    assert history.find([1, 2], 4)[0] == []
    good = History(1000)
    good.add([1, 2, 3, 4, 5, 6])
    good.score(good.find([1, 2], 4)[2], MIN_TRIED, MIN_TRIED)
    assert good.find([1, 2], 4)[0] == [3, 4, 5, 6]


def test_principals_do_not_share_histories_and_the_oldest_is_dropped() -> None:
    histories = Histories(1000, principals=2)
    alice = histories.of("alice")
    assert alice is not None
    alice.add([1, 2, 3, 4, 5])
    bob = histories.of("bob")
    assert bob is not None and bob.find([1, 2], 3)[0] == []
    assert histories.of("alice") is alice
    histories.of("carol")  # bob is the least recently served: dropped
    assert histories.of("alice") is alice
    fresh = histories.of("bob")
    assert fresh is not None and fresh is not bob
    assert histories.size() == (5, alice.entries)
    assert Histories(0).of("alice") is None  # budget 0: no history at all


def test_the_drafter_copies_from_history_only_where_it_matches_longer() -> None:
    history = History(1000)
    history.add([7, 8, 9, 60, 61, 62, 63])
    drafter = NgramDrafter(history=history)
    # "8 9" earlier in the context: the context's own continuation, as long a match, wins.
    assert drafter.propose([8, 9, 30, 31, 1, 8, 9], 2)[0] == [30, 31]
    assert drafter.pattern is None
    # Only the history knows "7 8 9".
    assert drafter.propose([5, 7, 8, 9], 3)[0] == [60, 61, 62]
    assert drafter.pattern is not None
    drafter.observe(3, 3)
    drafter.learn([40, 41, 42, 43, 44])
    assert history.find([40, 41], 2)[0] == [42, 43]


def test_a_draft_from_an_answer_that_agreed_long_is_offered_at_high_odds() -> None:
    history = History(1000)
    answer = list(range(100, 140))
    history.add(answer)
    lane = Lane(NgramDrafter(history=history), Controller(CostModel({1: 1.0, 2: 1.5}, 0.0)))
    assert isinstance(lane.drafter, NgramDrafter)
    lane.drafter.propose([1, *answer[:30]], 8)  # the answer again, 30 tokens in
    assert lane.drafter.agreed == 30
    assert lane.offer(8).rate == pytest.approx(31 / 32)
    lane.drafter.propose([1, 2, 3, 1, 2], 8)  # a match in the context: the lane's own odds
    assert lane.offer(8).rate == lane.controller.acceptance.rate
