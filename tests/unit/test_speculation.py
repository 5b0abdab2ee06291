"""The speculation cost model and controller: when drafting pays, and how fast it stops."""

from __future__ import annotations

import pytest

from edgeinf.engine.speculation import (
    Acceptance,
    Controller,
    CostModel,
    best_k,
    expected_tokens,
    speedup,
)

# Verify-cost curves: measured on 2 compute-bound cores (the 1.5B), and the shape of a
# memory-bound device where a batch costs little more than one token.
TWO_CORES = {1: 1.0, 2: 1.88, 4: 3.17, 8: 5.03, 16: 5.89}
MEMORY_BOUND = {1: 1.0, 2: 1.05, 4: 1.1, 8: 1.25, 16: 1.6}


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


def test_the_controller_stops_drafting_soon_when_drafts_are_rejected() -> None:
    controller = Controller(CostModel(TWO_CORES, 0.0), acceptance=Acceptance(prior=0.95))
    assert controller.next_k() > 0
    losses = 0
    while controller.next_k() > 0:
        k = controller.next_k()
        controller.observe(k, 0)  # every draft rejected: each verification a loss
        losses += 1
        assert losses <= 3, "kept drafting at a loss"


def test_the_controller_drafts_again_when_copying_resumes() -> None:
    controller = Controller(CostModel(TWO_CORES, 0.0))
    assert controller.next_k() == 0  # the prior alone does not pay on this curve
    for _ in range(6):  # e.g. the n-gram lane's shadow proposals, all taken
        controller.observe(8, 8)
    assert controller.next_k() >= 8


def test_a_forced_mode_drafts_its_fixed_length_whatever_it_costs() -> None:
    controller = Controller(CostModel(TWO_CORES, 0.64), fixed_k=4)
    controller.observe(4, 0)
    assert controller.next_k() == 4
