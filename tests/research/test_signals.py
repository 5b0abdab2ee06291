"""Signals of local failure read while answering, and the report that measures them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeinf.research.collect import Answer, load_cached
from edgeinf.research.signals import signal_report
from edgeinf.research.train import Graded
from edgeinf.route.signals import SIGNALS, doubts
from edgeinf.tasks import Task
from edgeinf.types import Message


def test_doubts_rise_with_the_tokens_the_model_was_unsure_of() -> None:
    sure = doubts([-0.01] * 40, [5.0] * 40)
    unsure = doubts([-0.01] * 30 + [-2.0] * 10, [5.0] * 30 + [0.2] * 10)
    assert set(sure) == set(SIGNALS)
    for name in SIGNALS:
        assert unsure[name] > sure[name], name
    assert unsure["unsure_share"] == pytest.approx(0.25)
    assert unsure["close_share"] == pytest.approx(0.25)
    assert unsure["worst_window"] == pytest.approx(2.0 * 10 / 16 + 0.01 * 6 / 16)
    assert doubts([], []) == dict.fromkeys(SIGNALS, 0.0)


def test_the_report_ranks_a_telling_signal_above_a_blind_one() -> None:
    rng = np.random.default_rng(0)
    n = 120
    failed = rng.random(n) < 0.4
    tasks = [
        Task(f"t{i}", ("mmlu", "gsm8k")[i % 2], (Message("user", f"q{i}"),), 100, "")
        for i in range(n)
    ]
    answers = {}
    for i, t in enumerate(tasks):  # most failures are written with less sure tokens
        shaky = failed[i] and rng.random() < 0.85
        lp = [-0.05] * 20 + ([-1.5] * 8 if shaky else [-0.1] * 8)
        answers[t.id] = Answer(t.id, "x", 10, 28, 1.0, tuple(lp), tuple([3.0] * 28))
    data = Graded(tasks, ~failed, np.ones(n, dtype=bool))
    blind = rng.random(n)  # a pre-generation score that knows nothing
    report = signal_report(data, answers, blind, folds=4)
    signals = report["signals"]
    assert signals["mean_doubt"]["auroc"] > 0.8
    assert signals["mean_doubt"]["minus_pre_generation_interval"][0] > 0
    assert abs(signals["pre_generation"]["auroc"] - 0.5) < 0.15
    assert signals["execution_check"]["auroc"] == 0.5  # no code: undecided everywhere
    assert "execution_check_where_it_decides" not in report
    assert report["deferral_rule"]["auroc"] > 0.75
    share = report["deferral_rule_curve"]["remote_share_for_90"]
    assert share["rule"] < share["random"] and share["rule_minus_random_interval"][1] < 0
    assert share["rule"] < share["pre_generation"]  # the blind router needs as many as random
    apgr = report["deferral_rule_curve"]["apgr"]
    assert apgr["pre_generation"] < apgr["rule"] <= apgr["ceiling"]
    # the shaky stretch comes after 20 sure tokens: handed over there, at the same quality
    midway = report["midway"]
    assert midway["midway"]["mark"] == 1.5
    assert midway["midway"]["quality"] >= midway["cascade"]["quality"]
    assert midway["midway"]["local_tokens_per_handed_over"] == 21
    assert midway["midway"]["full_answer_tokens_of_handed_over"] == 28


def test_answers_cached_before_log_probabilities_were_kept_still_load(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    old = {"id": "a", "text": "t", "prompt_tokens": 1, "completion_tokens": 2, "seconds": 0.5}
    new = {**old, "id": "b", "logprobs": [-0.1, -0.2], "margins": [1.0, 0.5]}
    path.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    found = load_cached(path)
    assert found["a"].logprobs == () and found["b"].logprobs == (-0.1, -0.2)
