"""The card beside a trained router says what it was trained on and what its rules measured."""

from __future__ import annotations

import argparse

from edgeinf.research.card import model_card

BLOCK = {
    "n": 280,
    "local_accuracy": 0.3,
    "remote_accuracy": 1.0,
    "apgr": 0.7,
    "pgr_at_50": 0.8,
    "random_apgr": 0.5,
    "local_failure_oracle_apgr": 0.85,
}
CARD = {
    "kind": "local-failure",
    "local_model": "local-model",
    "remote_model": None,
    "target": "local_failure",
    "trained_on": {"n": 280, "tasks": ["gsm8k", "mmlu"], "remote_tokens": 0},
    "metrics": {"all": BLOCK},
}
RULE = {
    "n": 280,
    "local_failure_auroc": 0.8123,
    "pre_generation_auroc": 0.6351,
    "threshold": 0.5,
    "cascade": {"quality": 1.0, "remote_share": 0.9, "local_tokens_per_escalated": 114.8},
    "midway": {
        "mark": 2.0,
        "handed_over": 25,
        "handed_over_failed": 0.92,
        "rest_threshold": 0.41,
        "quality": 1.0,
        "remote_share": 0.88,
        "local_tokens_per_escalated": 93.5,
        "local_tokens_per_handed_over": 20.4,
        "full_answer_tokens_of_handed_over": 84.3,
    },
}
ARGS = argparse.Namespace(tasks="mix", limit=280)


def test_the_card_names_the_mixed_set_and_the_rules_figures() -> None:
    text = " ".join(model_card(CARD, ARGS, RULE).split())
    assert "LLMRouter mixed set" in text and "GSM8K training-split" not in text
    assert "AUROC of local failure 0.812, against 0.635" in text
    assert "reaches 2.0 nats" in text and "25 of the 280" in text and "(92% of them" in text
    assert "93.5 local tokens per escalated question instead of 114.8" in text
    assert "--tasks mix --limit 280" in text and "--remote-url" not in text  # none is asked


def test_a_card_without_a_rule_or_a_mark_says_why() -> None:
    assert "without their log-probabilities" in model_card(CARD, ARGS, None)
    text = model_card(CARD, ARGS, RULE | {"midway": None})
    assert "## Deferral rule" in text and "No midway mark" in text
