"""The routing policy is a pure function: each rule, and the order the rules apply in."""

from __future__ import annotations

import pytest

from edgeinf.route.policy import HYSTERESIS, Facts, decide

REMOTE = Facts(remote_configured=True, score=0.9, threshold=0.5)


def test_the_router_sends_high_scores_away_and_keeps_low_ones() -> None:
    assert decide(REMOTE).target == "remote"
    low = decide(Facts(remote_configured=True, score=0.1, threshold=0.5))
    assert (low.target, low.reason, low.fallback) == ("local", "router", False)


@pytest.mark.reliability(31)
def test_private_wins_over_everything() -> None:
    for override in ("auto", "remote"):
        facts = Facts(
            override=override, private=True, remote_configured=True, score=1.0, threshold=0
        )
        d = decide(facts)
        assert (d.target, d.reason, d.fallback) == ("local", "private", False)


def test_overrides() -> None:
    assert decide(Facts(override="local", remote_configured=True, score=1.0)).reason == "override"
    d = decide(Facts(override="remote", remote_configured=True, score=0.0, threshold=0.5))
    assert (d.target, d.reason) == ("remote", "override")
    assert decide(Facts(override="remote")).reason == "no_remote"


def test_budget_and_offline_fall_back_visibly() -> None:
    over = decide(Facts(remote_configured=True, score=0.9, threshold=0.5, within_budget=False))
    assert (over.target, over.reason, over.fallback) == ("local", "budget", True)
    down = decide(Facts(remote_configured=True, score=0.9, threshold=0.5, remote_up=False))
    assert (down.target, down.reason, down.fallback) == ("local", "offline", True)
    # a query the router keeps local is not a fallback, whatever the remote's state
    assert not decide(Facts(remote_configured=True, score=0.1, remote_up=False)).fallback


def test_no_router_stays_local() -> None:
    assert decide(Facts(remote_configured=True)).reason == "no_router"


def test_a_session_does_not_bounce_on_small_score_changes() -> None:
    near = 0.5 + HYSTERESIS / 2
    base = Facts(remote_configured=True, score=near, threshold=0.5)
    assert decide(base).target == "remote"
    assert decide(Facts(**{**base.__dict__, "last_target": "local"})).target == "local"
    below = Facts(remote_configured=True, score=0.5 - HYSTERESIS / 2, threshold=0.5)
    assert decide(Facts(**{**below.__dict__, "last_target": "remote"})).target == "remote"
    far = Facts(remote_configured=True, score=0.5 + 2 * HYSTERESIS, threshold=0.5)
    assert decide(Facts(**{**far.__dict__, "last_target": "local"})).target == "remote"
