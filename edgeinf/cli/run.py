"""`edgeinf run PROMPT`: one answer streamed to stdout, or one JSON object with --json."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgeinf.cli.terminal import strip_controls
from edgeinf.config import load_settings
from edgeinf.service import ChatRequest, ChatService, conversation
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
    params = sampling_from(args)  # bad numbers fail before a model is loaded
    settings = load_settings(threads=args.threads, n_ctx=args.n_ctx, kv_type=args.kv_type)
    service = ChatService(settings, args.model)
    try:
        gen = service.respond(ChatRequest(conversation(args.prompt, args.system), params))
        if args.json:
            gen.text()
        else:
            clean = strip_controls if sys.stdout.isatty() else (lambda s: s)
            for chunk in gen:
                sys.stdout.write(clean(chunk.text))
                sys.stdout.flush()
            sys.stdout.write("\n")
        assert gen.completion is not None
        if args.json:
            print(json.dumps(report(service, gen.completion), ensure_ascii=False))
    finally:
        service.close()
    return 0


def report(service: ChatService, completion: Any) -> dict[str, Any]:
    """The `--json` object; later features add their own keys beside these."""
    return {
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
