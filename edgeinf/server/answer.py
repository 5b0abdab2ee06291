"""A turn rendered for HTTP: one JSON object or server-sent events, ended cleanly when the
client goes away."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from edgeinf.engine.grammar import JSON_OBJECT, check_source, from_schema
from edgeinf.engine.toolcalls import Held
from edgeinf.errors import InvalidRequestError
from edgeinf.server.errors import ApiError, error_response
from edgeinf.server.runtime import Runtime
from edgeinf.server.schema import CompletionTokensDetails, PromptTokensDetails, Usage
from edgeinf.server.wire import Sampling, now
from edgeinf.service.turn import Answer, TurnHandle, TurnPipeline, TurnRequest
from edgeinf.types import Message, SamplingParams, TokenLogprob


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def begin(request: Request, pipeline: TurnPipeline, turn: TurnRequest) -> TurnHandle:
    """Start a turn; a fill cancels the one its client asked for before (service.fill)."""
    handle = pipeline.answer(turn)
    if turn.fill is not None:
        peer = request.client.host if request.client else ""
        client = (request.state.principal, peer, request.headers.get("x-client-id", ""))
        runtime(request).fills.begin(client, handle)
    return handle


def sampling(req: Sampling, context: int, defaults: Mapping[str, float]) -> SamplingParams:
    """The engine's parameters for a request; max_tokens defaults to the context size, and
    what it does not set to the model's preset (`defaults`), else to the wire's defaults."""
    if req.chat_template is not None or req.chat_template_kwargs is not None:
        raise ApiError(
            400,
            "requests may not supply a chat template; the model's own is used",
            "invalid_request_error",
            "chat_template_not_allowed",
        )
    max_tokens = req.max_completion_tokens or req.max_tokens or context
    rivals = req.rivals()
    if rivals is not None and req.stream:
        raise InvalidRequestError(
            "logprobs: not reported in streams yet; ask without stream to get them",
            param="logprobs",
        )
    given = req.model_fields_set

    def pick(name: str) -> Any:
        value = getattr(req, name)
        return defaults[name] if name in defaults and name not in given else value

    return SamplingParams(
        grammar=grammar(req),
        max_tokens=max_tokens,
        temperature=pick("temperature"),
        top_k=pick("top_k"),
        top_p=pick("top_p"),
        min_p=pick("min_p"),
        repeat_penalty=pick("repeat_penalty"),
        frequency_penalty=req.frequency_penalty,
        presence_penalty=req.presence_penalty,
        seed=req.seed,
        stop=tuple(req.stop or ()),
        logit_bias=tuple((int(t), b) for t, b in (req.logit_bias or {}).items()),
        logprobs=rivals,
    )


def with_system(messages: tuple[Message, ...], system: str | None) -> tuple[Message, ...]:
    """A conversation with the model preset's system prompt when it brings none."""
    if system is None or any(m.role == "system" for m in messages):
        return messages
    return (Message("system", system), *messages)


def grammar(req: Sampling) -> str | None:
    """The grammar the answer is decoded through: a raw GBNF one, any JSON object, or the
    documents a JSON schema allows (none for plain text)."""
    fmt = req.response_format
    if fmt is not None and fmt.type != "text" and req.grammar is not None:
        raise InvalidRequestError(
            "grammar: send response_format or grammar, not both", param="grammar"
        )
    if req.grammar is not None:
        check_source(req.grammar, "grammar")
        return req.grammar
    if fmt is None or fmt.type == "text":
        return None
    if fmt.json_schema is None:
        return JSON_OBJECT
    return from_schema(fmt.json_schema.schema_, "response_format.json_schema.schema")


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)


def usage(answer: Answer) -> dict[str, Any]:
    local = answer.local
    return Usage(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        total_tokens=answer.prompt_tokens + answer.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(
            cached_tokens=local.reused_tokens if local else 0
        ),
        completion_tokens_details=CompletionTokensDetails(
            accepted_prediction_tokens=local.accepted if local else 0,
            rejected_prediction_tokens=local.drafted - local.accepted if local else 0,
        ),
        restored_tokens=local.restored_tokens if local else 0,
        cached_from=local.cached_from if local else None,
    ).model_dump()


def _extra(answer: Answer) -> dict[str, Any]:
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


async def respond(
    request: Request, handle: TurnHandle, req: Sampling, chat: bool, tools: bool = False
) -> Response:
    """Start the turn (what fails now is the request's error status), then answer it; with
    `tools`, text that may be a call is held back from the stream until it is known."""
    await handle.open()
    rid = new_id(chat)
    if req.stream:
        include_usage = req.stream_options is not None and req.stream_options.include_usage
        held = Held() if tools else None
        return StreamingResponse(
            _events(request, handle, rid, chat, include_usage, held),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    async for _ in handle.pieces(client_alive(request)):
        pass
    answer = handle.result
    if answer is None:
        return unanswered(handle)
    runtime(request).metrics.answered(answer)
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    if answer.tool_calls:
        message["content"] = answer.text or None
        message["tool_calls"] = [c.as_dict() for c in answer.tool_calls]
    written = answer.local.completion.logprobs if answer.local else ()
    asked = req.rivals() is not None
    choice: dict[str, Any] = (
        {"index": 0, "message": message, "finish_reason": answer.finish_reason}
        if chat
        else {
            "index": 0,
            "text": answer.text,
            "finish_reason": answer.finish_reason,
            "logprobs": text_logprobs(written) if asked else None,
        }
    )
    if chat and asked:
        choice["logprobs"] = {"content": chat_logprobs(written), "refusal": None}
    return JSONResponse(
        {
            "id": rid,
            "object": "chat.completion" if chat else "text_completion",
            "created": now(),
            "model": answer.model,
            "choices": [choice],
            "usage": usage(answer),
            **_extra(answer),
        }
    )


def _token(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": piece.decode(errors="replace"), "logprob": logprob, "bytes": list(piece)}


def chat_logprobs(written: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    """OpenAI's chat shape: each token with its bytes and its likeliest rivals."""
    return [
        {**_token(t.piece, t.logprob), "top_logprobs": [_token(p, lp) for _, p, lp in t.top]}
        for t in written
    ]


def text_logprobs(written: Sequence[TokenLogprob]) -> dict[str, Any]:
    """The legacy completions' shape: parallel lists, offsets into the answer's text."""
    tokens = [t.piece.decode(errors="replace") for t in written]
    offsets = [sum(len(s) for s in tokens[:i]) for i in range(len(tokens))]
    return {
        "tokens": tokens,
        "token_logprobs": [t.logprob for t in written],
        "top_logprobs": [{p.decode(errors="replace"): lp for _, p, lp in t.top} for t in written],
        "text_offset": offsets,
    }


def unanswered(handle: TurnHandle) -> Response:
    """The response of a turn that was cancelled: by a newer request of its client (409,
    saying why), or because its client left (499: nobody reads it)."""
    if handle.why:
        raise ApiError(409, handle.why, "conflict_error", "superseded")
    return Response(status_code=499)


def client_alive(request: Request) -> Callable[[], Awaitable[bool]]:
    async def alive() -> bool:
        return not await request.is_disconnected()

    return alive


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


async def _events(
    request: Request,
    handle: TurnHandle,
    rid: str,
    chat: bool,
    include_usage: bool,
    held: Held | None,
) -> AsyncIterator[bytes]:
    model = handle.model

    def event(choice: dict[str, Any] | None, **extra: Any) -> bytes:
        return sse_event(rid, model, chat, choice, **extra)

    if chat:
        yield event(
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        )

    def text(piece: str) -> bytes:
        delta = {"delta": {"content": piece}} if chat else {"text": piece}
        return event({"index": 0, **delta, "finish_reason": None})

    try:
        async for piece in handle.pieces(client_alive(request)):
            if held is not None and not (piece := held.feed(piece)):
                continue
            yield text(piece)
    except Exception as exc:  # the status line is sent: the error goes in the stream
        yield f"data: {json.dumps(error_response(exc)[1])}\n\n".encode()
        yield b"data: [DONE]\n\n"
        return
    answer = handle.result
    if answer is None:  # cut short (the client left, or the server stops): no last chunk
        yield b"data: [DONE]\n\n"
        return
    runtime(request).metrics.answered(answer)
    if held is not None:
        if rest := held.rest(answer.text, bool(answer.tool_calls)):
            yield text(rest)
        for i, call in enumerate(answer.tool_calls):
            calls = [{"index": i, **call.as_dict()}]
            yield event({"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None})
    end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
    yield event(
        {"index": 0, **end, "finish_reason": answer.finish_reason},
        usage=usage(answer),
        **_extra(answer),
    )
    if include_usage:
        yield event(None, usage=usage(answer))
    yield b"data: [DONE]\n\n"
