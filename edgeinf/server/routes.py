"""The HTTP routes: thin translations between wire types and ChatService."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from edgeinf.engine.batcher import Job
from edgeinf.errors import EdgeinfError
from edgeinf.server.errors import ApiError, body
from edgeinf.server.metrics import CONTENT_TYPE
from edgeinf.server.runtime import Runtime
from edgeinf.server.wire import ChatCompletionRequest, CompletionRequest, Sampling, UsageOut, now
from edgeinf.service import ChatRequest, ChatService, Turn
from edgeinf.types import Message, SamplingParams

router = APIRouter()
_POLL_S = 0.25  # how often a waiting handler checks that its client is still there


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _sampling(req: Sampling, service: ChatService) -> SamplingParams:
    if req.chat_template is not None or req.chat_template_kwargs is not None:
        raise ApiError(
            400,
            "requests may not supply a chat template; the model's own is used",
            "invalid_request_error",
            "chat_template_not_allowed",
        )
    max_tokens = req.max_completion_tokens or req.max_tokens or service.engine.seq_ctx
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


class _Pipe:
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
                    kind, value = await asyncio.wait_for(self.queue.get(), _POLL_S)
                except TimeoutError:
                    kind, value = "", None
                if time.monotonic() - checked >= _POLL_S:  # also while tokens keep coming
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        return
                if kind:
                    yield kind, value
                if kind == "done":
                    return
        finally:
            job.cancelled.set()  # harmless when finished; stops work when the client left


def _start(
    request: Request,
    req: Sampling,
    messages: tuple[Message, ...],
    session_id: str | None,
    raw_prompt: str | None = None,
) -> tuple[_Pipe, Job, str]:
    rt = runtime(request)
    service = rt.ready_service()
    params = _sampling(req, service)
    creq = ChatRequest(messages, params, session_id, owner=request.state.principal)
    prompt = None
    if raw_prompt is not None:
        prompt = (
            service.engine.vocab.tokenize(raw_prompt, add_bos=service.engine.vocab.add_bos),
            0,
        )
    pipe = _Pipe()
    deadline = time.monotonic() + rt.settings.request_timeout_s
    job = service.submit(creq, pipe.text, pipe.done, prompt=prompt, deadline=deadline)
    return pipe, job, service.model.name


def _usage(turn: Turn) -> dict[str, int]:
    assert turn.completion is not None
    u = turn.completion.usage
    return UsageOut(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
        restored_tokens=turn.restored_tokens,
    ).model_dump()


async def _respond(
    request: Request, pipe: _Pipe, job: Job, model: str, stream: bool, chat: bool
) -> Response:
    rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
    obj = "chat.completion" if chat else "text_completion"
    rt = runtime(request)
    if stream:
        return StreamingResponse(
            _sse(request, pipe, job, rid, model, chat),
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
                "usage": _usage(turn),
            }
        )
    return Response(status_code=499)


async def _sse(
    request: Request, pipe: _Pipe, job: Job, rid: str, model: str, chat: bool
) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    rt = runtime(request)

    def event(choice: dict[str, Any], **extra: Any) -> bytes:
        payload = {
            "id": rid,
            "object": obj,
            "created": now(),
            "model": model,
            "choices": [choice],
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    if chat:
        yield event(
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        )
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
                usage=_usage(turn),
            )
        yield b"data: [DONE]\n\n"


@router.post("/v1/chat/completions")
async def chat_completions(
    req: ChatCompletionRequest, request: Request, x_session_id: str | None = Header(None)
) -> Response:
    messages = tuple(
        Message("system" if m.role == "developer" else m.role, m.text()) for m in req.messages
    )
    pipe, job, model = _start(request, req, messages, x_session_id or req.session_id)
    return await _respond(request, pipe, job, model, req.stream, chat=True)


@router.post("/v1/completions")
async def completions(req: CompletionRequest, request: Request) -> Response:
    pipe, job, model = _start(request, req, (), None, raw_prompt=req.prompt)
    return await _respond(request, pipe, job, model, req.stream, chat=False)


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    service = runtime(request).ready_service()
    info = service.engine.info
    return {
        "object": "list",
        "data": [
            {
                "id": service.model.name,
                "object": "model",
                "created": int(runtime(request).started),
                "owned_by": "edgeinf",
                "architecture": info.architecture,
                "quantization": info.quantization,
                "context_length": service.engine.seq_ctx,
            }
        ],
    }


@router.get("/v1/sessions")
async def list_sessions(request: Request) -> dict[str, Any]:
    service = runtime(request).ready_service()
    rows = service.keeper.store.index.owned_by(request.state.principal)
    return {
        "object": "list",
        "data": [
            {
                "id": r.id,
                "model": r.model,
                "messages": len(r.messages),
                "kv_tokens": r.kv_tokens,
                "last_used": int(r.last_used),
            }
            for r in rows
        ],
    }


@router.get("/v1/sessions/{session_id}")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    service = runtime(request).ready_service()
    row = service.keeper.store.get(session_id, request.state.principal)
    if row is None:
        raise ApiError(404, f"no session '{session_id}'", "not_found_error", "session_not_found")
    return {
        "id": row.id,
        "model": row.model,
        "kv_tokens": row.kv_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in row.messages],
    }


@router.delete("/v1/sessions/{session_id}")
async def delete_session(session_id: str, request: Request) -> dict[str, Any]:
    service = runtime(request).ready_service()
    if not service.keeper.store.delete(session_id, request.state.principal):
        raise ApiError(404, f"no session '{session_id}'", "not_found_error", "session_not_found")
    return {"id": session_id, "object": "session", "deleted": True}


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> dict[str, str]:
    service = runtime(request).ready_service()
    return {"status": "ready", "model": service.model.name}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)
