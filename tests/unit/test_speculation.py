"""The speculation cost model, the step plan and the controller: when drafting pays, beside
how many other sequences, and how fast it stops."""

from __future__ import annotations

import pytest

from edgeinf.engine.speculation import (
    Acceptance,
    Controller,
    CostModel,
    Offer,
    best_k,
    expected_tokens,
    plan,
    speedup,
)

# Verify-cost curves: measured on 2 compute-bound cores (the 1.5B), and the shape of a
# memory-bound device where a batch costs little more than one token.
TWO_CORES = {1: 1.0, 2: 1.88, 4: 3.17, 8: 5.03, 16: 5.89}
MEMORY_BOUND = {1: 1.0, 2: 1.05, 4: 1.1, 8: 1.25, 16: 1.6}
# Saturated cores: past two tokens each row costs about half a token.
SATURATED = {1: 1.0, 2: 1.3, 4: 2.4, 8: 4.6, 16: 9.0}


def test_expected_tokens_follow_the_geometric_model() -> None:
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)  # 1 + 0.5 + 0.25
    assert expected_tokens(0.0, 8) == pytest.approx(1.0)  # the verified token alone
    assert expected_tokens(1.0, 4) == 5.0


def test_verify_cost_interpolates_and_extrapolates() -> None:
    cost = CostModel(TWO_CORES, 0.0)
    assert cost.verify_cost(4) == 3.17
    assert cost.verify_cost(3) == pytest.approx((1.88 + 3.17) / 2)
    assert cost.verify_cost(20) > cost.verify_cost(16)  # past the last measurement: its slope


def test_a_draft_model_never_pays_on_compute_bound_cores() -> None:
    cost = CostModel(TWO_CORES, draft_step=0.64)
    for a in (0.5, 0.8, 0.9, 0.95):
        assert best_k(a, cost, 16)[0] == 0


def test_a_draft_model_pays_where_batches_are_cheap() -> None:
    k, gain = best_k(0.8, CostModel(MEMORY_BOUND, draft_step=0.1), 16)
    assert k >= 3 and gain > 1.5


def test_free_ngram_drafts_pay_only_when_most_are_accepted() -> None:
    cost = CostModel(TWO_CORES, 0.0)
    assert best_k(0.5, cost, 16)[0] == 0
    k, gain = best_k(0.95, cost, 16)
    assert k >= 8 and gain == pytest.approx(speedup(0.95, k, cost)) and gain > 1.5


def alone(controller: Controller) -> int:
    """The draft length the plan gives one sequence decoded by itself."""
    return plan([controller.offer(16)], 1, 16)[0]


def test_the_plan_for_one_sequence_is_the_best_single_stream_length() -> None:
    for curve in (TWO_CORES, MEMORY_BOUND):
        cost = CostModel(curve, 0.0)
        for a in (0.5, 0.8, 0.9, 0.95):
            k, gain = best_k(a, cost, 16)
            assert plan([Offer(a, 16, cost)], 1, 16) == [k if gain > 1.0 else 0]


def test_beside_other_sequences_drafts_stop_where_rows_cost_as_much_as_tokens() -> None:
    """Four sequences on saturated cores: a fifth row costs more than it is expected to add,
    so copying at 0.9 that pays alone does not pay in the batch; on a memory-bound device it
    still does."""
    cost = CostModel(SATURATED, 0.0)
    assert plan([Offer(0.9, 16, cost)], 1, 16)[0] >= 1
    assert plan([Offer(0.9, 16, cost)] * 4, 4, 64) == [0, 0, 0, 0]
    cheap = CostModel(MEMORY_BOUND, 0.0)
    assert all(k >= 2 for k in plan([Offer(0.9, 16, cheap)] * 4, 4, 64))


def test_the_plan_gives_rows_to_the_sequences_whose_drafts_are_likelier() -> None:
    cheap = CostModel(MEMORY_BOUND, 0.0)
    sure, unsure = plan([Offer(0.95, 16, cheap), Offer(0.3, 16, cheap)], 2, 64)
    assert sure > unsure
    assert sorted(plan([Offer(0.95, 16, cheap)] * 3, 3, 5)) == [1, 2, 2]  # the room, shared


def test_a_step_that_carries_a_prompt_is_stretched_at_most_as_far_as_asked() -> None:
    # Measured to 128 tokens on 2 cores: sure drafts would make a step of about 20 steps' cost.
    curve = {1: 1.0, 2: 1.92, 4: 3.21, 8: 5.12, 16: 6.17, 32: 11.05, 64: 19.6, 128: 38.1}
    cost = CostModel(curve, 0.0)
    free = plan([Offer(0.985, 32, cost)] * 4, 5, 256)
    assert cost.verify_cost(5 + sum(free)) > 2 * cost.verify_cost(5)
    held = plan([Offer(0.985, 32, cost)] * 4, 5, 256, stretch=2.0)
    assert 0 < sum(held) < sum(free)
    assert cost.verify_cost(5 + sum(held)) <= 2 * cost.verify_cost(5)


def test_the_plan_keeps_forced_lengths_and_sequences_without_drafts() -> None:
    cost = CostModel(TWO_CORES, 0.64)
    assert plan([Offer(0.0, 16, cost, fixed=4), None, Offer(0.9, 2, cost, fixed=4)], 3, 64) == [
        4,
        0,
        2,
    ]
    assert plan([Offer(0.9, 8, cost, fixed=4)] * 3, 3, 6) == [4, 2, 0]  # within the room


def test_a_noisy_measurement_does_not_make_a_larger_batch_look_cheaper() -> None:
    cost = CostModel({1: 1.0, 2: 1.2, 4: 1.5, 6: 2.4, 8: 2.2, 16: 3.4}, 0.0)
    assert cost.verify_cost(6) == 2.2
    assert cost.verify_cost(5) <= cost.verify_cost(6) <= cost.verify_cost(7)


def test_the_controller_stops_drafting_soon_when_drafts_are_rejected() -> None:
    controller = Controller(CostModel(TWO_CORES, 0.0), acceptance=Acceptance(prior=0.95))
    assert alone(controller) > 0
    losses = 0
    while alone(controller) > 0:
        k = alone(controller)
        controller.observe(k, 0)  # every draft rejected: each verification a loss
        losses += 1
        assert losses <= 3, "kept drafting at a loss"


def test_the_controller_drafts_again_when_copying_resumes() -> None:
    controller = Controller(CostModel(TWO_CORES, 0.0))
    assert alone(controller) == 0  # the prior alone does not pay on this curve
    for _ in range(6):  # e.g. the n-gram lane's shadow proposals, all taken
        controller.observe(8, 8)
    assert alone(controller) >= 8


def test_a_forced_mode_drafts_its_fixed_length_whatever_it_costs() -> None:
    controller = Controller(CostModel(TWO_CORES, 0.64), fixed_k=4)
    controller.observe(4, 0)
    assert alone(controller) == 4
