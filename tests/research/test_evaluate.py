"""APGR and its baselines on small known cases."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from edgeinf.research.evaluate import (
    auroc,
    curve,
    folds,
    random_apgr,
    random_share_for,
    share_for,
)
from edgeinf.research.report import difficulty_report
from edgeinf.research.train import Graded, nested_oof, targets
from edgeinf.tasks import Task

# 10 queries: local right on 0-2, remote right on 0-5 (gains on 3-5), local-only on 9
LOCAL = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
REMOTE = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)


def test_the_curve_runs_from_local_quality_to_remote_quality() -> None:
    c = curve(np.arange(10.0), LOCAL, REMOTE)
    assert c.quality[0] == pytest.approx(LOCAL.mean())
    assert c.quality[-1] == pytest.approx(REMOTE.mean())
    assert c.pgr[0] == 0 and c.pgr[-1] == pytest.approx(1)


def test_a_perfect_gain_predictor_beats_random_and_a_failure_predictor() -> None:
    gain = (REMOTE & ~LOCAL).astype(float) - (LOCAL & ~REMOTE)
    perfect = curve(gain, LOCAL, REMOTE).apgr
    failure = curve((~LOCAL).astype(float), LOCAL, REMOTE).apgr
    rand = random_apgr(LOCAL, REMOTE)
    assert perfect > failure > rand
    assert abs(rand - 0.5) < 0.05
    assert abs(curve(np.zeros(10), LOCAL, REMOTE).apgr - 0.5) < 0.35  # ties broken at random


def test_folds_split_every_kind_and_cover_each_row_once() -> None:
    kinds = ["a"] * 7 + ["b"] * 5
    parts = folds(kinds, 3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(12))
    for p in parts:
        assert {kinds[i] for i in p} == {"a", "b"}


def test_nested_scores_never_depend_on_the_label_of_the_question_scored() -> None:
    rng = np.random.default_rng(3)
    n = 40
    kinds = ["gsm8k", "humaneval"] * (n // 2)
    tasks = [Task(f"t{i}", kinds[i], (), 8, "") for i in range(n)]
    x = rng.normal(size=(n, 6)).astype(np.float32)
    local = rng.random(n) < 0.4
    remote = rng.random(n) < 0.7
    held = folds(kinds, 5)[0]

    def scores(local_ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        data = Graded(tasks, local_ok, remote)
        return nested_oof(x, targets("pair", data), data)[held]

    flipped = local.copy()
    flipped[held] = ~flipped[held]
    np.testing.assert_array_equal(scores(local), scores(flipped))


def test_difficulty_buckets_say_what_escalating_buys_at_each_difficulty() -> None:
    steps = [2, 2, 3, 3, 5, 6]
    tasks = [Task(f"t{i}", "gsm8k", (), 8, "", steps=s) for i, s in enumerate(steps)]
    local = np.array([1, 0, 0, 0, 0, 0], dtype=bool)
    remote = np.array([1, 1, 1, 0, 0, 0], dtype=bool)  # the remote fails the hardest ones too
    report = difficulty_report(Graded(tasks, local, remote))
    rows = {r["steps"]: r for r in report["buckets"]}
    assert set(rows) == {"0-2", "3", "5+"}
    assert rows["0-2"]["gain_per_escalation"] == 0.5
    assert rows["3"]["gain_per_escalation"] == 0.5
    assert rows["5+"]["gain_per_escalation"] == 0.0
    known = report["difficulty_oracle_apgr"]  # hardest first escalates where nothing is won
    assert known["hardest_first"] < 0.5 < known["easiest_first"]


def test_auroc_of_local_failure_on_known_orderings() -> None:
    failed = ~LOCAL
    assert auroc(failed.astype(float), failed) == 1.0
    assert auroc(LOCAL.astype(float), failed) == 0.0
    assert auroc(np.zeros(10), failed) == 0.5  # all tied
    # failures score 2, 1, 1 ... against successes 1, 0: pairs above 1 + ties half
    scores = np.array([1.0, 0.0, 0.0, 2.0, 1.0])
    assert auroc(scores, np.array([0, 0, 0, 1, 1], dtype=bool)) == pytest.approx((3 + 2.5) / 6)
    assert auroc(np.arange(3.0), np.zeros(3, dtype=bool)) == 0.5


def test_the_remote_share_needed_for_a_share_of_remote_quality() -> None:
    # An always-right remote: escalating the six local failures first reaches full quality
    # at 60% and 0.9 of it at 50%; random escalation needs 83% for 0.9.
    local, remote = LOCAL, np.ones(10, dtype=bool)
    perfect = curve((~local).astype(float), local, remote)
    assert share_for(perfect, 1.0) == pytest.approx(0.6)
    assert share_for(perfect, 0.9) == pytest.approx(0.5)
    assert random_share_for(local, remote, 0.9) == pytest.approx((0.9 - 0.4) / 0.6)
    assert random_share_for(np.ones(10, dtype=bool), remote, 0.95) == 0.0
    worst = curve(local.astype(float), local, remote)  # successes escalated first
    assert share_for(worst, 0.9) > random_share_for(local, remote, 0.9)
