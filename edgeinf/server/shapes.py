"""A turn's answer in OpenAI's shapes: ids, usage, log-probabilities, stream chunks, and
edgeinf's own fields."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from edgeinf.server.schema import CompletionTokensDetails, PromptTokensDetails, Usage
from edgeinf.server.wire import now
from edgeinf.service.handle import Answer
from edgeinf.types import TokenLogprob


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)


def usage(answers: Sequence[Answer]) -> dict[str, Any]:
    """The usage of a request's choices: their one prompt (the first choice's facts) and
    everything they wrote."""
    first, written = answers[0], sum(a.completion_tokens for a in answers)
    local = first.local
    drafts = [(a.local.drafted, a.local.accepted) for a in answers if a.local]
    return Usage(
        prompt_tokens=first.prompt_tokens,
        completion_tokens=written,
        total_tokens=first.prompt_tokens + written,
        prompt_tokens_details=PromptTokensDetails(
            cached_tokens=local.reused_tokens if local else 0
        ),
        completion_tokens_details=CompletionTokensDetails(
            accepted_prediction_tokens=sum(a for _, a in drafts),
            rejected_prediction_tokens=sum(d - a for d, a in drafts),
        ),
        restored_tokens=local.restored_tokens if local else 0,
        cached_from=local.cached_from if local else None,
    ).model_dump()


def extra(answer: Answer) -> dict[str, Any]:
    """edgeinf's own fields of a response: the route, and what the context policy dropped."""
    extra: dict[str, Any] = {"route": answer.route.as_dict()} if answer.route else {}
    local = answer.local
    if local is not None and ((t := local.trimmed).policy or local.shifted):
        extra["context"] = {
            "policy": t.policy or "shift",
            "dropped_messages": t.messages,
            "dropped_tokens": t.tokens,
            "summarized_messages": t.summarized,
            "shifted_tokens": local.shifted,
        }
    return extra


def _token(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": piece.decode(errors="replace"), "logprob": logprob, "bytes": list(piece)}


def logprobs(chat: bool, written: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
    """A choice's `logprobs` for these tokens, whose text starts `offset` characters into
    the answer."""
    if chat:
        return {"content": _chat_logprobs(written), "refusal": None}
    return _text_logprobs(written, offset)


def _chat_logprobs(written: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    """OpenAI's chat shape: each token with its bytes and its likeliest rivals."""
    return [
        {**_token(t.piece, t.logprob), "top_logprobs": [_token(p, lp) for _, p, lp in t.top]}
        for t in written
    ]


def _text_logprobs(written: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """The legacy completions' shape: parallel lists, offsets into the answer's text."""
    tokens = [t.piece.decode(errors="replace") for t in written]
    offsets = [offset + sum(len(s) for s in tokens[:i]) for i in range(len(tokens))]
    return {
        "tokens": tokens,
        "token_logprobs": [t.logprob for t in written],
        "top_logprobs": [{p.decode(errors="replace"): lp for _, p, lp in t.top} for t in written],
        "text_offset": offsets,
    }


def sse_event(
    rid: str, model: str, chat: bool, choice: dict[str, Any] | None, **extra: Any
) -> bytes:
    """One chunk; `choice` None makes the usage chunk that `include_usage` asks for last."""
    payload = {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": now(),
        "model": model,
        "choices": [] if choice is None else [choice],
        **extra,
    }
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()
