"""Flags of `edgeinf route`: kept apart so that `--help` imports nothing heavy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

TASKS_HELP = (
    "comma-separated: gsm8k, humaneval, mix (the training part of the mixed set of 14 tasks), "
    "mix-held-out (its held-out fifth)"
)


def add_route_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "route", help="train, score and evaluate the local/remote router"
    )
    rsub = p.add_subparsers(dest="route_command", metavar="ACTION", required=True)

    t = rsub.add_parser("train", help="answer gradable tasks with both models, fit a router")
    t.add_argument("--model", "-m", help="the local model (default: the configured one)")
    t.add_argument("--remote-url", help="OpenAI-compatible endpoint of the remote model")
    t.add_argument("--remote-model", help="model name at the remote endpoint")
    t.add_argument("--tasks", default="gsm8k,humaneval", help=TASKS_HELP)
    t.add_argument("--limit", type=int, help="use only the first N tasks (mixed kinds)")
    t.add_argument("--concurrency", type=int, default=4, help="answers in flight per model")
    t.add_argument(
        "--max-tokens", type=int, help="cap every answer (default: each task's own, 320-384)"
    )
    t.add_argument(
        "--escalation-rate", type=float, default=0.35, help="share of queries to escalate"
    )
    t.add_argument(
        "--kind",
        choices=["pair", "local-failure"],
        default="pair",
        help="pair: learn where the remote gains (needs the remote); local-failure: where the "
        "local model fails",
    )
    t.add_argument("--cascade", action="store_true", help="also sample a second local answer")
    t.add_argument("--out", type=Path, help="router directory (default: the state directory)")

    s = rsub.add_parser("score", help="the routing decision for a prompt, without generating")
    s.add_argument("--model", "-m", help="the local model (default: the configured one)")
    s.add_argument("--remote-model", help="model name at the remote endpoint")
    s.add_argument("--file", help='JSON lines of {"prompt": ...}; - for stdin')
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("prompt", nargs="?", help="the user's message")

    e = rsub.add_parser("eval", help="quality vs escalation rate from cached graded answers")
    e.add_argument("--model", "-m", help="the local model (default: the configured one)")
    e.add_argument("--remote-model", help="model name at the remote endpoint")
    e.add_argument("--tasks", default="gsm8k,humaneval", help=TASKS_HELP)
    e.add_argument("--limit", type=int)
    e.add_argument("--folds", type=int, default=5)
    e.add_argument(
        "--oracle",
        action="store_true",
        help="read the local answers against an oracle remote that answers every question "
        "right (a stand-in for a frontier model): the local model's failure, signal by signal",
    )
    e.add_argument(
        "--router",
        type=Path,
        help="read a trained router and its deferral rule on these answers (questions it was "
        "not trained on, e.g. --tasks mix-held-out), against the oracle or the cached remote's",
    )
    e.add_argument(
        "--card",
        action="store_true",
        help="with --router and --oracle: write these figures into the router's CARD.md (its "
        "held-out part)",
    )
    e.add_argument("--max-tokens", type=int, help="read the answers trained with this cap")
    e.add_argument("--json", action="store_true", help="print JSON")
