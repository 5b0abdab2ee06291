"""Answers from the remote model, streamed through; when it fails, the local model answers in
the same response, marked as a fallback."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from edgeinf.route.dispatch import CUT_NOTICE, Dispatcher, fell_back
from edgeinf.route.policy import Decision
from edgeinf.route.remote import RemoteAnswer, RemoteError
from edgeinf.server.answer import (
    POLL_S,
    new_id,
    respond,
    role_event,
    runtime,
    sse,
    sse_event,
    start,
)
from edgeinf.server.wire import now
from edgeinf.service import ChatRequest

log = logging.getLogger("edgeinf.route")


class _ClientGone(Exception):
    """Raised in the remote's reading thread to stop it when the client left."""


async def remote_answer(
    request: Request, creq: ChatRequest, decision: Decision, stream: bool
) -> Response:
    rt = runtime(request)
    dispatcher = rt.dispatcher
    assert dispatcher is not None
    if stream:
        return StreamingResponse(
            _stream(request, dispatcher, creq, decision),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    try:
        answer = await asyncio.to_thread(
            dispatcher.ask, creq.messages, creq.sampling, lambda s: None
        )
    except RemoteError as exc:
        fallback = _fall_back(request, decision, exc)
        pipe, job, model = start(request, creq)
        return await respond(request, pipe, job, model, False, True, fallback)
    decision = _answered(request, creq, decision, answer)
    message = {"role": "assistant", "content": answer.text}
    return JSONResponse(
        {
            "id": new_id(True),
            "object": "chat.completion",
            "created": now(),
            "model": rt.settings.remote_model,
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
            "usage": _usage(answer),
            "route": decision.as_dict(),
        }
    )


def _answered(
    request: Request, creq: ChatRequest, decision: Decision, answer: RemoteAnswer
) -> Decision:
    rt = runtime(request)
    decision = replace(decision, attempts=answer.attempts)
    rt.metrics.routed(decision)
    rt.ready_service().record(creq, answer.text)
    return decision


def _usage(answer: RemoteAnswer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


async def _stream(
    request: Request, dispatcher: Dispatcher, creq: ChatRequest, decision: Decision
) -> AsyncIterator[bytes]:
    rt = runtime(request)
    model = rt.settings.remote_model or "remote"
    rid = new_id(True)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    gone = threading.Event()

    def on_text(piece: str) -> None:
        if gone.is_set():
            raise _ClientGone
        loop.call_soon_threadsafe(events.put_nowait, ("text", piece))

    def call() -> None:
        try:
            answer = dispatcher.ask(creq.messages, creq.sampling, on_text)
            loop.call_soon_threadsafe(events.put_nowait, ("done", answer))
        except RemoteError as exc:
            loop.call_soon_threadsafe(events.put_nowait, ("error", exc))
        except _ClientGone:
            pass

    worker = threading.Thread(target=call, name="edgeinf-remote", daemon=True)
    worker.start()
    yield role_event(rid, model)
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            if kind == "text":
                yield sse_event(rid, model, True, _delta(value))
            elif kind == "done":
                done = _answered(request, creq, decision, value)
                end = {"index": 0, "delta": {}, "finish_reason": value.finish_reason}
                yield sse_event(rid, model, True, end, usage=_usage(value), route=done.as_dict())
                yield b"data: [DONE]\n\n"
                return
            else:
                fallback = _fall_back(request, decision, value)
                if value.partial:
                    yield sse_event(rid, model, True, _delta(CUT_NOTICE))
                pipe, job, local_model = start(request, creq)
                async for chunk in sse(request, pipe, job, rid, local_model, True, fallback, True):
                    yield chunk
                return
    finally:
        gone.set()


def _delta(text: str) -> dict[str, Any]:
    return {"index": 0, "delta": {"content": text}, "finish_reason": None}


def _fall_back(request: Request, decision: Decision, error: RemoteError) -> Decision:
    """The remote failed: the operator learns why, the client gets a local answer."""
    log.warning("remote failed, answering locally: %s", error)
    fallback = fell_back(decision, error)
    runtime(request).metrics.routed(fallback)
    return fallback
