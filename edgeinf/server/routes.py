"""The HTTP routes: thin translations between wire types and ChatService."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Header, Request, Response

from edgeinf.server.answer import respond, runtime, sampling, start
from edgeinf.server.errors import ApiError
from edgeinf.server.metrics import CONTENT_TYPE
from edgeinf.server.remote_answer import remote_answer
from edgeinf.server.wire import ChatCompletionRequest, CompletionRequest
from edgeinf.service import ChatRequest
from edgeinf.types import Message

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(
    req: ChatCompletionRequest,
    request: Request,
    x_session_id: str | None = Header(None),
    x_edgeinf_private: str | None = Header(None),
) -> Response:
    rt = runtime(request)
    service = rt.ready_service()
    messages = tuple(
        Message("system" if m.role == "developer" else m.role, m.text()) for m in req.messages
    )
    creq = ChatRequest(
        messages, sampling(req, service), x_session_id or req.session_id, request.state.principal
    )
    private = req.private or (x_edgeinf_private or "").lower() in ("1", "true", "yes")
    assert rt.dispatcher is not None
    decision = await asyncio.to_thread(
        rt.dispatcher.decide,
        messages,
        creq.sampling,
        req.route,
        private,
        creq.owner,
        creq.session_id,
    )
    if decision.target == "remote":
        return await remote_answer(request, creq, decision, req.stream)
    rt.metrics.routed(decision)
    pipe, job, model = start(request, creq)
    return await respond(request, pipe, job, model, req.stream, True, decision)


@router.post("/v1/completions")
async def completions(req: CompletionRequest, request: Request) -> Response:
    service = runtime(request).ready_service()
    creq = ChatRequest((), sampling(req, service), None, request.state.principal)
    pipe, job, model = start(request, creq, raw_prompt=req.prompt)
    return await respond(request, pipe, job, model, req.stream, chat=False)


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
