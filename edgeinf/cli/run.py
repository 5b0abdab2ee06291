"""`edgeinf run PROMPT`: one answer streamed to stdout, or one JSON object with --json."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from edgeinf.cli.main import settings_from
from edgeinf.cli.terminal import strip_controls
from edgeinf.engine.grammar import check_source, from_schema
from edgeinf.errors import InvalidRequestError
from edgeinf.route.dispatch import Dispatcher
from edgeinf.route.policy import Override
from edgeinf.service.fill import Fill
from edgeinf.service.handle import Answer
from edgeinf.service.local import ChatService, conversation
from edgeinf.service.local_answer import ChatRequest
from edgeinf.service.turn import TurnPipeline, TurnRequest
from edgeinf.sessions.ids import check_session_id
from edgeinf.types import SamplingParams, Thought


def grammar_from(args: argparse.Namespace) -> str | None:
    """The grammar of --json-schema FILE or --grammar FILE, checked before a model loads."""
    path: Path | None = args.json_schema or args.grammar
    if path is None:
        return None
    flag = "--json-schema" if args.json_schema else "--grammar"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"{flag}: cannot read {path}: {exc}; check the path") from None
    if args.grammar:
        check_source(text, flag)
        return text
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{flag}: {path} is not JSON ({exc}); fix the file") from None
    return from_schema(schema, flag)


def sampling_from(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        grammar=grammar_from(args),
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
    if args.suffix and (args.session or args.system):
        raise InvalidRequestError(
            "--suffix fills in text, which is not a conversation: leave out --session and --system"
        )
    settings = settings_from(args)
    service = ChatService(settings, args.model)
    dispatcher = Dispatcher(settings, service.model.name, service.identity.model_sha256)
    pipeline = TurnPipeline(service, dispatcher)
    try:
        history = service.history(args.session) if args.session else ()
        chat = ChatRequest(
            conversation(args.prompt, args.system, history),
            params,
            session_id=args.session,
            thinking=args.think,
        )
        service.check_thinking(args.think, "--think" if args.think else "--no-think")
        # The remote is not asked to keep to a grammar: those answers are local.
        route: Override | None = "local" if params.grammar is not None else None
        if args.suffix:
            turn = TurnRequest(chat, fill=Fill(args.prompt, args.suffix))
        else:
            turn = TurnRequest(chat, route, private=args.private)
        handle = pipeline.answer(turn)
        write, think = _writer(args.json, sys.stdout), _writer(args.json, sys.stderr)
        for piece in handle:
            if isinstance(piece, Thought):  # the reasoning goes beside the answer, not in it
                think(piece.text)
            else:
                write(piece)
        write("\n")
        service.flush()  # the answer is out; keep the conversation before exiting
        assert handle.result is not None
        if args.json:  # after the save: it reports the saved bytes
            print(json.dumps(report(service, handle.result, chat), ensure_ascii=False))
    finally:
        dispatcher.close()
        service.close()
    return 0


def _writer(quiet: bool, out: TextIO) -> Callable[[str], None]:
    """Stream text to `out` (nothing with --json); control sequences cleaned on a terminal."""
    if quiet:
        return lambda s: None
    clean = strip_controls if out.isatty() else (lambda s: s)

    def write(text: str) -> None:
        out.write(clean(text))
        out.flush()

    return write


def report(service: ChatService, answer: Answer, chat: ChatRequest) -> dict[str, Any]:
    """The `--json` object; each feature adds its own key beside these."""
    out: dict[str, Any] = {
        "text": answer.text,
        "reasoning": answer.reasoning or None,
        "model": answer.model,
        "finish_reason": answer.finish_reason,
        "tokens": {"prompt": answer.prompt_tokens, "completion": answer.completion_tokens},
    }
    local = answer.local
    if local is None:
        out["timings"] = {"total_s": round(answer.seconds, 4)}
    else:
        timings = local.completion.timings
        out["timings"] = {
            "load_s": round(service.load_s, 4),
            "ttft_s": round(timings.ttft_s, 4),
            "decode_tok_s": round(timings.decode_tok_s, 2),
        }
        out["speculative"] = {
            "mode": local.mode,
            "drafted": local.drafted,
            "accepted": local.accepted,
            "acceptance": round(local.accepted / local.drafted, 3) if local.drafted else None,
        }
        if chat.session_id is not None:
            out["session"] = {
                "id": chat.session_id,
                "restored_tokens": local.restored_tokens,
                "prefilled_tokens": local.prefilled_tokens,
                "saved_bytes": int(local.saved.get("saved_bytes", 0)),
            }
    if answer.route is not None:
        out["route"] = answer.route.as_dict()
    return out
