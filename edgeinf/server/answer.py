"""Answers from the local model over the batcher: JSON or server-sent events, ended cleanly
when the client goes away."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from edgeinf.engine.batcher import Job
from edgeinf.errors import EdgeinfError
from edgeinf.route.policy import Decision
from edgeinf.server.errors import ApiError, body
from edgeinf.server.runtime import Runtime
from edgeinf.server.schema import Usage
from edgeinf.server.wire import Sampling, now
from edgeinf.service import ChatRequest, Turn
from edgeinf.types import SamplingParams

POLL_S = 0.25  # how often a waiting handler checks that its client is still there


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def sampling(req: Sampling, context: int) -> SamplingParams:
    """The engine's parameters for a request; max_tokens defaults to the context size."""
    if req.chat_template is not None or req.chat_template_kwargs is not None:
        raise ApiError(
            400,
            "requests may not supply a chat template; the model's own is used",
            "invalid_request_error",
            "chat_template_not_allowed",
        )
    max_tokens = req.max_completion_tokens or req.max_tokens or context
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_k=req.top_k,
        top_p=req.top_p,
        min_p=req.min_p,
        repeat_penalty=req.repeat_penalty,
        frequency_penalty=req.frequency_penalty,
        presence_penalty=req.presence_penalty,
        seed=req.seed,
        stop=tuple(req.stop or ()),
    )


class Pipe:
    """Carries a job's text and its end from the engine thread to this request's task."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def text(self, piece: str) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("text", piece))

    def done(self, turn: Turn | None, error: BaseException | None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("done", (turn, error)))

    async def events(self, request: Request, job: Job) -> AsyncIterator[tuple[str, Any]]:
        """Events until done; a client that went away cancels the job."""
        checked = time.monotonic()
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(self.queue.get(), POLL_S)
                except TimeoutError:
                    kind, value = "", None
                if time.monotonic() - checked >= POLL_S:  # also while tokens keep coming
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        return
                if kind:
                    yield kind, value
                if kind == "done":
                    return
        finally:
            job.cancelled.set()  # harmless when finished; stops work when the client left


def start(
    request: Request, creq: ChatRequest, raw_prompt: str | None = None
) -> tuple[Pipe, Job, str]:
    rt = runtime(request)
    service = rt.ready_service()
    prompt = None
    if raw_prompt is not None:
        prompt = (
            service.engine.vocab.tokenize(raw_prompt, add_bos=service.engine.vocab.add_bos),
            0,
        )
    pipe = Pipe()
    deadline = time.monotonic() + rt.settings.request_timeout_s
    job = service.submit(creq, pipe.text, pipe.done, prompt=prompt, deadline=deadline)
    return pipe, job, service.model.name


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)


def usage(turn: Turn) -> dict[str, int]:
    assert turn.completion is not None
    u = turn.completion.usage
    return Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
        restored_tokens=turn.restored_tokens,
    ).model_dump()


async def respond(
    request: Request,
    pipe: Pipe,
    job: Job,
    model: str,
    stream: bool,
    chat: bool,
    route: Decision | None = None,
) -> Response:
    rid = new_id(chat)
    obj = "chat.completion" if chat else "text_completion"
    rt = runtime(request)
    if stream:
        return StreamingResponse(
            sse(request, pipe, job, rid, model, chat, route),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    parts: list[str] = []
    async for kind, value in pipe.events(request, job):
        if kind == "text":
            parts.append(value)
            continue
        turn, error = value
        if error is not None:
            raise error
        if turn is None:  # cancelled: the client is gone, nobody reads this
            return Response(status_code=499)
        rt.metrics.answered(turn)
        text = "".join(parts)
        finish = turn.completion.finish_reason
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        )
        return JSONResponse(
            {
                "id": rid,
                "object": obj,
                "created": now(),
                "model": model,
                "choices": [choice],
                "usage": usage(turn),
                **({"route": route.as_dict()} if route else {}),
            }
        )
    return Response(status_code=499)


def sse_event(rid: str, model: str, chat: bool, choice: dict[str, Any], **extra: Any) -> bytes:
    payload = {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": now(),
        "model": model,
        "choices": [choice],
        **extra,
    }
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def role_event(rid: str, model: str) -> bytes:
    choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    return sse_event(rid, model, True, choice)


async def sse(
    request: Request,
    pipe: Pipe,
    job: Job,
    rid: str,
    model: str,
    chat: bool,
    route: Decision | None = None,
    opened: bool = False,
) -> AsyncIterator[bytes]:
    """The answer as server-sent events; `opened`: the role event was already sent."""
    rt = runtime(request)

    def event(choice: dict[str, Any], **extra: Any) -> bytes:
        return sse_event(rid, model, chat, choice, **extra)

    if chat and not opened:
        yield role_event(rid, model)
    async for kind, value in pipe.events(request, job):
        if kind == "text":
            delta = {"delta": {"content": value}} if chat else {"text": value}
            yield event({"index": 0, **delta, "finish_reason": None})
            continue
        turn, error = value
        if error is not None:
            status = 500 if not isinstance(error, EdgeinfError) else 400
            yield f"data: {json.dumps(body(str(error), 'server_error', str(status)))}\n\n".encode()
        elif turn is not None:
            rt.metrics.answered(turn)
            end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
            yield event(
                {"index": 0, **end, "finish_reason": turn.completion.finish_reason},
                usage=usage(turn),
                **({"route": route.as_dict()} if route else {}),
            )
        yield b"data: [DONE]\n\n"
