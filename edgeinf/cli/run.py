"""`edgeinf run PROMPT`: one answer streamed to stdout, or one JSON object with --json."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgeinf.cli.main import settings_from
from edgeinf.cli.terminal import strip_controls
from edgeinf.service import ChatRequest, ChatService, LocalTurn, conversation
from edgeinf.sessions.ids import check_session_id
from edgeinf.types import SamplingParams


def sampling_from(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repeat_penalty=args.repeat_penalty,
        seed=args.seed,
        stop=tuple(args.stop),
    )


def run(args: argparse.Namespace) -> int:
    params = sampling_from(args)  # bad input fails before a model is loaded
    if args.session is not None:
        check_session_id(args.session)
    settings = settings_from(args)
    service = ChatService(settings, args.model)
    try:
        history = service.history(args.session) if args.session else ()
        messages = conversation(args.prompt, args.system, history)
        turn = service.respond(ChatRequest(messages, params, session_id=args.session))
        if args.json:
            turn.generation.text()
        else:
            clean = strip_controls if sys.stdout.isatty() else (lambda s: s)
            for chunk in turn.generation:
                sys.stdout.write(clean(chunk.text))
                sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
        service.finish(turn)
        service.flush()  # the answer is out; keep the conversation before exiting
        if args.json:
            print(json.dumps(report(service, turn), ensure_ascii=False))
    finally:
        service.close()
    return 0


def report(service: ChatService, turn: LocalTurn) -> dict[str, Any]:
    """The `--json` object; each feature adds its own key beside these."""
    completion = turn.generation.completion
    assert completion is not None
    out: dict[str, Any] = {
        "text": completion.text,
        "model": service.model.name,
        "finish_reason": completion.finish_reason,
        "tokens": {
            "prompt": completion.usage.prompt_tokens,
            "completion": completion.usage.completion_tokens,
        },
        "timings": {
            "load_s": round(service.engine.load_s, 4),
            "ttft_s": round(completion.timings.ttft_s, 4),
            "decode_tok_s": round(completion.timings.decode_tok_s, 2),
        },
    }
    stats = turn.generation.draft_stats
    out["speculative"] = {
        "mode": stats.mode,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "acceptance": round(stats.accepted / stats.drafted, 3) if stats.drafted else None,
    }
    if turn.request.session_id is not None:
        out["session"] = {
            "id": turn.request.session_id,
            "restored_tokens": turn.restored_tokens,
            "prefilled_tokens": turn.prefilled_tokens,
            "saved_bytes": turn.saved.get("saved_bytes", 0),
        }
    return out
