"""The model card written beside a trained router."""

from __future__ import annotations

import argparse
from typing import Any


def model_card(card: dict[str, Any], args: argparse.Namespace) -> str:
    m = card["metrics"]
    rows = "\n".join(
        f"| {k} | {v['n']} | {v['local_accuracy']:.3f} | {v['remote_accuracy']:.3f} | "
        f"{v['apgr']:.3f} | {v['pgr_at_50']:.3f} | {v['random_apgr']:.3f} | "
        f"{v['local_failure_oracle_apgr']:.3f} |"
        for k, v in m.items()
    )
    remote = card["remote_model"] or "a remote that is always right (local-failure router)"
    what = (
        "the probability that the remote answers correctly where the local model does not"
        if card["target"] == "gain"
        else "the probability that the local model answers wrongly"
    )
    chosen = (
        "For this pair, predicting the local model's failure ranked the remote's gains better "
        "on held-out tasks than predicting the gains directly, so that is what it learned."
        if card["kind"] == "pair" and card["target"] == "local_failure"
        else ""
    )
    return f"""# Router: {card["local_model"]} -> {remote}

Scores {what}, from the last user message: all-MiniLM-L6-v2 sentence embedding (int8 ONNX)
plus length and structure signals, a logistic regression (ONNX head). Higher means escalate.
{chosen}

Trained on {card["trained_on"]["n"]} tasks ({", ".join(card["trained_on"]["tasks"])}): GSM8K
training-split problems (numeric answer) and HumanEval problems (executed tests), both models
greedy. Remote cost of the run: {card["trained_on"]["remote_tokens"]} tokens.

Nested cross-validation (5 folds, stratified by task): every score below comes from a model that
did not see the question, and whose target and regularisation were chosen by inner folds that
did not see it either:

| tasks | n | local | remote | APGR | PGR@50% | random APGR | local-failure oracle APGR |
|---|---|---|---|---|---|---|---|
{rows}

Retrain for your own pair (answers are cached, so a second run costs nothing):

    edgeinf route train --model {card["local_model"]} --remote-url URL --remote-model NAME \\
        --kind {card["kind"]} --tasks {args.tasks}{f" --limit {args.limit}" if args.limit else ""}
"""
