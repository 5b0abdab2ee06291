"""The model card written beside a trained router."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

MODEL_CARD = "CARD.md"  # beside a router: what it was trained on and what it measured

# What each --tasks name trains on, in the card's words.
DATA = {
    "gsm8k": "GSM8K training-split problems (numeric answer)",
    "humaneval": "HumanEval problems (executed tests)",
    "mix": "the training part of the LLMRouter mixed set (MIT licence; each task graded by its "
    "own metric, code run against its asserts in the sandbox)",
}


def model_card(
    card: dict[str, Any], args: argparse.Namespace, deferral: dict[str, Any] | None
) -> str:
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
    remote_args = " --remote-url URL --remote-model NAME" if card["kind"] == "pair" else ""
    mine = "pair" if card["kind"] == "pair" else "local model"
    greedy = "both models greedy" if card["kind"] == "pair" else "the local model greedy"
    trained_on = textwrap.fill(
        f"Trained on {card['trained_on']['n']} questions "
        f"({', '.join(card['trained_on']['tasks'])}): {_data(args.tasks)}; {greedy}. Remote cost "
        f"of the run: {card['trained_on']['remote_tokens']} tokens.",
        96,
    )
    return f"""# Router: {card["local_model"]} -> {remote}

Scores {what}, from the last user message: all-MiniLM-L6-v2 sentence embedding (int8 ONNX)
plus length and structure signals, a logistic regression (ONNX head). Higher means escalate.
{chosen}

{trained_on}

Nested cross-validation (5 folds, stratified by task): every score below comes from a model that
did not see the question, and whose target and regularisation were chosen by inner folds that
did not see it either:

| tasks | n | local | remote | APGR | PGR@50% | random APGR | local-failure oracle APGR |
|---|---|---|---|---|---|---|---|
{rows}
{_deferral_section(deferral)}
Retrain for your own {mine} (answers are cached, so a second run costs nothing):

    edgeinf route train --model {card["local_model"]}{remote_args} \\
        --kind {card["kind"]} --tasks {args.tasks}{f" --limit {args.limit}" if args.limit else ""}
"""


def _data(tasks: str) -> str:
    return "; ".join(DATA.get(k.strip(), k.strip()) for k in tasks.split(",") if k.strip())


def _deferral_section(m: dict[str, Any] | None) -> str:
    if m is None:
        return "\nNo deferral rule: the answers were cached without their log-probabilities.\n"
    cascade, midway = m["cascade"], m["midway"]
    after = (
        "After a local answer, a logistic rule over the router's score, how sure the model was "
        "of the tokens it wrote, how the answer ended and the checks that execute gives the "
        f"chance that the answer is wrong; at {m['threshold']} or more the remote answers "
        f"instead. Out of fold (5 folds) on the same {m['n']} answers: AUROC of local failure "
        f"{m['local_failure_auroc']:.3f}, against {m['pre_generation_auroc']:.3f} for the "
        f"router's score alone. At {m['threshold']}: remote share {cascade['remote_share']:.3f}, "
        f"quality {cascade['quality']:.3f} against a remote that is always right, "
        f"{cascade['local_tokens_per_escalated']} local tokens written per escalated question."
    )
    during = (
        "No midway mark: no doubt level was a sure enough sign of failure."
        if midway is None
        else "While the answer is written, one token whose doubt reaches "
        f"{midway['mark']} nats hands the question over at once: {midway['handed_over']} of "
        f"the {m['n']} answers were ({midway['handed_over_failed']:.0%} of them wrong), after "
        f"{midway['local_tokens_per_handed_over']} tokens instead of the "
        f"{midway['full_answer_tokens_of_handed_over']} of their full answer. At equal quality "
        f"({midway['quality']:.3f}), {midway['local_tokens_per_escalated']} local tokens per "
        f"escalated question instead of {cascade['local_tokens_per_escalated']}."
    )
    paragraphs = "\n\n".join(textwrap.fill(p, 96) for p in (after, during))
    return f"\n## Deferral rule (`deferral.json`)\n\n{paragraphs}\n"


HELD_OUT = "\n## Held out\n"


def with_held_out(card_text: str, report: dict[str, Any], command: str) -> str:
    """The card with its held-out section (the figures of `route eval --oracle --router` on
    questions neither the router nor its rule saw) written in place of any earlier one."""
    return card_text.split(HELD_OUT)[0].rstrip("\n") + "\n" + HELD_OUT + _held_out(report, command)


def _held_out(r: dict[str, Any], command: str) -> str:
    rule, pre = r["deferral_rule"], r["pre_generation_router"]
    curve, midway = r["deferral_rule_curve"], r["midway"]
    s90, s95, apgr = curve["remote_share_for_90"], curve["remote_share_for_95"], curve["apgr"]
    rows = "\n".join(
        f"| {k} | {v['n']} | {v['local_accuracy']:.2f} | {v['escalated']:.2f} | "
        f"{v['quality']:.2f} |"
        for k, v in r["by_task"].items()
    )
    intro = (
        f"{r['n']} questions neither the router nor its rule was trained on, against a remote "
        "that is always right "
        f"(a stand-in for a frontier model); the local model is wrong on "
        f"{r['local_failure_rate']:.1%} of them. AUROC of local failure: deferral rule "
        f"{rule['auroc']:.3f} {_span(rule['interval'])}, pre-generation router {pre['auroc']:.3f} "
        f"{_span(pre['interval'])}, difference {rule['minus_pre_generation']:+.3f} "
        f"{_span(rule['minus_pre_generation_interval'], signed=True)} (95% bootstrap "
        "intervals, the difference's paired: both scores on the same resampled questions). APGR "
        f"{apgr['rule']:.3f} (router alone {apgr['pre_generation']:.3f}, random "
        f"{apgr['random']:.3f}, ceiling {apgr['ceiling']:.3f})."
    )
    shares = (
        "Questions sent to the remote for 90% / 95% of always-remote quality: rule "
        f"{s90['rule']:.2f} / {s95['rule']:.2f}, router alone {s90['pre_generation']:.2f} / "
        f"{s95['pre_generation']:.2f}, random {s90['random']:.2f} / {s95['random']:.2f} (rule "
        f"minus random {_span(s90['rule_minus_random_interval'], signed=True)} / "
        f"{_span(s95['rule_minus_random_interval'], signed=True)})."
    )
    paragraphs = [intro, shares]
    during = midway["midway"]
    if during is not None:
        paragraphs.append(
            f"Handed over midway: {during['handed_over']} ({during['handed_over_failed']:.0%} of "
            f"them wrong) after {during['local_tokens_per_handed_over']} tokens instead of "
            f"{during['full_answer_tokens_of_handed_over']}; local tokens per escalated question "
            f"{during['local_tokens_per_escalated']} against "
            f"{midway['cascade']['local_tokens_per_escalated']} for the full answer, at equal "
            f"quality ({during['quality']:.3f})."
        )
    text = "\n\n".join(textwrap.fill(p, 96) for p in paragraphs)
    return f"""
{text}

At the rule's threshold ({midway["threshold"]}), where it sends what:

| task | n | local accuracy | escalated | quality |
|---|---|---|---|---|
{rows}

Reproduce:

    {command}
"""


def _span(interval: list[float], signed: bool = False) -> str:
    a, b = interval
    return f"[{a:+.3f}, {b:+.3f}]" if signed else f"[{a:.3f}, {b:.3f}]"
