"""The HTTP routes: thin translations between wire types and ChatService."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import PlainTextResponse

from edgeinf.errors import InvalidRequestError
from edgeinf.server.answer import begin, choices, respond, runtime, sampling, with_system
from edgeinf.server.errors import ApiError
from edgeinf.server.metrics import CONTENT_TYPE
from edgeinf.server.schema import (
    ERRORS,
    ChatCompletion,
    Health,
    ModelList,
    Ready,
    SessionDeleted,
    SessionDetail,
    SessionList,
    SessionRenamed,
    TextCompletion,
    answer,
)
from edgeinf.server.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    NamedChoice,
    SessionRename,
)
from edgeinf.service.fill import Fill
from edgeinf.service.local_answer import ChatRequest
from edgeinf.service.turn import TurnRequest
from edgeinf.sessions.ids import SESSION_ID_PATTERN
from edgeinf.types import Choice, Tool

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
    name = None if rt.is_remote(req.model) else req.model
    pipeline = await rt.serving(name, req.keep_alive)
    service = pipeline.service
    preset = service.settings.preset(service.model.name)
    tool_choice = choice(req)
    tools = tuple(  # with tool_choice "none" the model is not shown them
        Tool(t.function.name, t.function.description or "", t.function.parameters)
        for t in req.tools or ()
        if tool_choice.mode != "none"
    )
    chat = ChatRequest(
        with_system(tuple(m.message() for m in req.messages), preset.system),
        sampling(req, service.context_length, preset.sampling()),
        x_session_id or req.session_id,
        request.state.principal,
        tools,
        tool_choice,
        req.context_policy,
        thinking=req.thinking(),
    )
    switched = "reasoning_effort" if req.reasoning_effort else "chat_template_kwargs"
    service.check_thinking(chat.thinking, switched)
    private = req.private or (x_edgeinf_private or "").lower() in ("1", "true", "yes")
    route = req.route
    # What the remote is not sent: a grammar, log-probabilities, a reasoning switch, n > 1.
    local_only = (
        chat.sampling.grammar is not None
        or chat.sampling.logprobs is not None
        or chat.thinking is not None
        or req.n > 1
    )
    if local_only:
        if route == "remote":
            raise InvalidRequestError(
                "route: structured output (response_format, grammar), logprobs, reasoning "
                "switches and n > 1 are answered by the local model; leave route out or set "
                "it to local",
                param="route",
            )
        route = "local"
    if not rt.routes(service) and route != "remote":
        route = "local"  # the router was trained for the default model
    turn = TurnRequest(chat, route, private, deadline=rt.deadline())
    handles = [pipeline.answer(t) for t in choices(turn, req.n)]
    return await respond(request, handles, req, chat=True, tools=tools)


def choice(req: ChatCompletionRequest) -> Choice:
    c = req.tool_choice
    parallel = req.parallel_tool_calls
    if isinstance(c, NamedChoice):
        return Choice("required", c.function.name, parallel)
    if c is not None and c != "auto" and not req.tools:
        if c == "none":
            return Choice("none")
        raise InvalidRequestError("tool_choice: 'required' needs tools", param="tool_choice")
    return Choice(c or "auto", None, parallel)


@router.post("/v1/completions", responses=answer(TextCompletion))
async def completions(req: CompletionRequest, request: Request) -> Response:
    rt = runtime(request)
    pipeline = await rt.serving(None if rt.is_remote(req.model) else req.model, req.keep_alive)
    service = pipeline.service
    defaults = service.settings.preset(service.model.name).sampling()
    chat = ChatRequest(
        (), sampling(req, service.context_length, defaults), None, request.state.principal
    )
    if req.suffix:
        if req.n > 1:
            raise InvalidRequestError(
                "n: a fill-in-the-middle request (suffix) has one choice; send n: 1", param="n"
            )
        turn = TurnRequest(chat, fill=Fill(req.prompt, req.suffix), deadline=rt.deadline())
        return await respond(request, [begin(request, pipeline, turn)], req, chat=False)
    turn = TurnRequest(chat, raw_prompt=req.prompt, deadline=rt.deadline())
    handles = [pipeline.answer(t) for t in choices(turn, req.n)]
    return await respond(request, handles, req, chat=False)


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request) -> dict[str, Any]:
    """Every local model a request may name, loaded or not."""
    return {"object": "list", "data": await asyncio.to_thread(runtime(request).cards)}


@router.get("/v1/sessions", response_model=SessionList)
async def list_sessions(request: Request) -> dict[str, Any]:
    rows = runtime(request).sessions.owned_by(request.state.principal)
    return {
        "object": "list",
        "data": [
            {
                "id": r.id,
                "title": r.label,
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
    row = runtime(request).sessions.get(request.state.principal, session_id)
    if row is None:
        raise ApiError(404, f"no session '{session_id}'", "not_found_error", "session_not_found")
    return {
        "id": row.id,
        "title": row.label,
        "model": row.model,
        "kv_tokens": row.kv_tokens,
        "messages": [m.as_dict() for m in row.messages],
    }


@router.patch("/v1/sessions/{session_id}", response_model=SessionRenamed)
async def rename_session(
    body: SessionRename, request: Request, session_id: str = Path(json_schema_extra=SESSION_ID)
) -> dict[str, Any]:
    title = " ".join(body.title.split())
    if not title:
        raise InvalidRequestError("title: give the session a title that is not blank", "title")
    if not runtime(request).sessions.rename(request.state.principal, session_id, title):
        raise ApiError(404, f"no session '{session_id}'", "not_found_error", "session_not_found")
    return {"id": session_id, "object": "session", "title": title}


@router.delete("/v1/sessions/{session_id}", response_model=SessionDeleted)
async def delete_session(
    request: Request, session_id: str = Path(json_schema_extra=SESSION_ID)
) -> dict[str, Any]:
    if not runtime(request).sessions.delete(request.state.principal, session_id):
        raise ApiError(404, f"no session '{session_id}'", "not_found_error", "session_not_found")
    return {"id": session_id, "object": "session", "deleted": True}


@router.get("/health", response_model=Health)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=Ready)
async def ready(request: Request) -> dict[str, Any]:
    """Ready also while the model is unloaded for idleness: the next request loads it."""
    return runtime(request).ready()


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)
