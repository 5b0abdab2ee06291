"""`edgeinf run PROMPT`: one answer streamed to stdout, or one JSON object with --json."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from edgeinf.cli.main import settings_from
from edgeinf.cli.terminal import strip_controls
from edgeinf.route.cascade import SECOND_SAMPLE_TEMPERATURE, agree
from edgeinf.route.dispatch import CUT_NOTICE, Dispatcher, fell_back
from edgeinf.route.remote import RemoteAnswer, RemoteError
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
    dispatcher = Dispatcher(settings, service.model.name, service.identity.model_sha256)
    try:
        history = service.history(args.session) if args.session else ()
        request = ChatRequest(
            conversation(args.prompt, args.system, history), params, session_id=args.session
        )
        decision = dispatcher.decide(
            request.messages, params, private=args.private, session_id=args.session
        )
        write = _writer(args.json)
        out: dict[str, Any] = {}
        local: LocalTurn | None = None
        if decision.target == "remote":
            try:
                out = _remote(dispatcher, service, request, write)
                decision = replace(decision, attempts=out.pop("attempts"))
            except RemoteError as exc:
                print(f"edgeinf: {exc}; answering locally", file=sys.stderr)
                if exc.partial:
                    write(CUT_NOTICE)
                decision = fell_back(decision, exc)
        if decision.target == "local":
            local = service.respond(request)
            for chunk in local.generation:
                write(chunk.text)
            service.finish(local)
            escalate = dispatcher.escalation(decision, request.messages, params)
            first = local.generation.completion
            if escalate and first and not _agrees(service, request, first.text):
                try:
                    write(CASCADE_NOTICE)
                    out = _remote(dispatcher, service, request, write)
                    decision = replace(escalate, attempts=out.pop("attempts"))
                    local = None
                except RemoteError as exc:
                    print(f"edgeinf: {exc}; keeping the local answer", file=sys.stderr)
        write("\n")
        service.flush()  # the answer is out; keep the conversation before exiting
        if local is not None:
            out = report(service, local)  # after the save: it reports the saved bytes
        if args.json:
            out["route"] = decision.as_dict()
            print(json.dumps(out, ensure_ascii=False))
    finally:
        dispatcher.close()
        service.close()
    return 0


CASCADE_NOTICE = "\n\n[the local model was unsure (two samples disagreed); the remote answers]\n\n"


def _agrees(service: ChatService, request: ChatRequest, first: str) -> bool:
    """The cascade's signal: a second, sampled local answer agrees with the first."""
    sampling = replace(request.sampling, temperature=SECOND_SAMPLE_TEMPERATURE, seed=1)
    turn = service.respond(ChatRequest(request.messages, sampling))
    return agree(first, turn.generation.text())


def _writer(quiet: bool) -> Callable[[str], None]:
    """Stream text to stdout (nothing with --json); control sequences cleaned on a terminal."""
    if quiet:
        return lambda s: None
    clean = strip_controls if sys.stdout.isatty() else (lambda s: s)

    def write(text: str) -> None:
        sys.stdout.write(clean(text))
        sys.stdout.flush()

    return write


def _remote(
    dispatcher: Dispatcher, service: ChatService, request: ChatRequest, write: Callable[[str], None]
) -> dict[str, Any]:
    """The remote's answer streamed out and kept in the session; the `--json` object."""
    answer = dispatcher.ask(request.messages, request.sampling, write)
    service.record(request, answer.text)
    return {**remote_report(answer, dispatcher.settings.remote_model), "attempts": answer.attempts}


def remote_report(answer: RemoteAnswer, model: str | None) -> dict[str, Any]:
    return {
        "text": answer.text,
        "model": model,
        "finish_reason": answer.finish_reason,
        "tokens": {"prompt": answer.prompt_tokens, "completion": answer.completion_tokens},
        "timings": {"total_s": round(answer.seconds, 4)},
    }


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
