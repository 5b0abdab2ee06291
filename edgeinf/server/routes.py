"""The HTTP routes: thin translations between wire types and ChatService."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import PlainTextResponse

from edgeinf.server.answer import respond, runtime, sampling, start
from edgeinf.server.errors import ApiError
from edgeinf.server.metrics import CONTENT_TYPE
from edgeinf.server.remote_answer import remote_answer
from edgeinf.server.schema import (
    ERRORS,
    ChatCompletion,
    Health,
    ModelList,
    Ready,
    SessionDeleted,
    SessionDetail,
    SessionList,
    TextCompletion,
    answer,
)
from edgeinf.server.wire import ChatCompletionRequest, CompletionRequest
from edgeinf.service import ChatRequest
from edgeinf.sessions.ids import SESSION_ID_PATTERN
from edgeinf.types import Message

router = APIRouter(responses=ERRORS)
# Checked by the session store itself, with an error that says what a valid id looks like.
SESSION_ID: dict[str, Any] = {"pattern": SESSION_ID_PATTERN}


@router.post("/v1/chat/completions", responses=answer(ChatCompletion))
async def chat_completions(
    req: ChatCompletionRequest,
    request: Request,
    x_session_id: str | None = Header(None, json_schema_extra=SESSION_ID),
    x_edgeinf_private: str | None = Header(None, description="1, true or yes: keep it local"),
) -> Response:
    rt = runtime(request)
    service = await rt.serving()
    messages = tuple(
        Message("system" if m.role == "developer" else m.role, m.text()) for m in req.messages
    )
    creq = ChatRequest(
        messages,
        sampling(req, service.engine.seq_ctx),
        x_session_id or req.session_id,
        request.state.principal,
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


@router.post("/v1/completions", responses=answer(TextCompletion))
async def completions(req: CompletionRequest, request: Request) -> Response:
    service = await runtime(request).serving()
    creq = ChatRequest((), sampling(req, service.engine.seq_ctx), None, request.state.principal)
    pipe, job, model = start(request, creq, raw_prompt=req.prompt)
    return await respond(request, pipe, job, model, req.stream, chat=False)


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [runtime(request).describe()]}


@router.get("/v1/sessions", response_model=SessionList)
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


@router.get("/v1/sessions/{session_id}", response_model=SessionDetail)
async def get_session(
    request: Request, session_id: str = Path(json_schema_extra=SESSION_ID)
) -> dict[str, Any]:
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


@router.delete("/v1/sessions/{session_id}", response_model=SessionDeleted)
async def delete_session(
    request: Request, session_id: str = Path(json_schema_extra=SESSION_ID)
) -> dict[str, Any]:
    service = runtime(request).ready_service()
    if not service.keeper.store.delete(session_id, request.state.principal):
        raise ApiError(404, f"no session '{session_id}'", "not_found_error", "session_not_found")
    return {"id": session_id, "object": "session", "deleted": True}


@router.get("/health", response_model=Health)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=Ready)
async def ready(request: Request) -> dict[str, Any]:
    """Ready also while the model is unloaded for idleness: the next request loads it."""
    rt = runtime(request)
    card = rt.describe()
    return {"status": "ready", "model": card["id"], "loaded": rt.service is not None}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)
