"""/infill: fill-in-the-middle as llama.cpp's server answers it, for the editors built on it
(llama.vscode, llama.vim): the text before and after the cursor, other files as context."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from edgeinf.engine.fim import Extra
from edgeinf.errors import InvalidRequestError
from edgeinf.server.answer import begin, client_alive, runtime, sampling, unanswered
from edgeinf.server.errors import error_response
from edgeinf.server.schema import ERRORS, Infilled
from edgeinf.server.schema import answer as documented
from edgeinf.server.wire import Sampling, Text, not_yet
from edgeinf.service.fill import Fill
from edgeinf.service.handle import Answer, TurnHandle
from edgeinf.service.local_answer import ChatRequest
from edgeinf.service.turn import TurnRequest
from edgeinf.types import SHAPERS, Shaper

router = APIRouter(responses=ERRORS)


class ExtraChunk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Text = Field(max_length=1 << 22)
    filename: Text = Field("", max_length=4096)
    time: float | None = None  # when the editor picked it (llama.vscode); changes nothing


class InfillRequest(Sampling):
    input_prefix: Text = Field(max_length=1 << 22)
    input_suffix: Text = Field(max_length=1 << 22)
    input_extra: list[ExtraChunk] = Field(default_factory=list, max_length=1024)
    prompt: Text = Field("", max_length=1 << 20, description="the cursor's line up to it")
    filename: Text = Field("", max_length=4096, description="edgeinf: the file's name")
    n_predict: int | None = Field(
        None, ge=-1, le=1 << 20, description="-1: until the answer ends; 0: only prefill"
    )
    samplers: list[str] | None = Field(None, max_length=16)
    cache_prompt: bool = True
    n_cache_reuse: int | None = Field(None, ge=0, le=1 << 16)
    n_indent: int | None = Field(None, ge=0, le=1024)
    t_max_predict_ms: int | None = Field(None, ge=-1, le=1 << 31)
    # Accepted for the editors that send it; llama.cpp's own server does not apply it either.
    t_max_prompt_ms: int | None = Field(None, ge=-1, le=1 << 31)
    id_slot: Annotated[Any, not_yet("id_slot (the server picks the slot)", -1)] = None
    lora: Annotated[Any, not_yet("lora")] = None
    response_fields: Annotated[Any, not_yet("response_fields")] = None
    session_id: Annotated[Any, not_yet("session_id (sessions keep conversations)")] = None
    stream_options: Annotated[Any, not_yet("stream_options (the last event has the counts)")] = None


def shapers(names: list[str]) -> tuple[Shaper, ...]:
    """The request's sampler order, in llama.cpp's names; those it does not have refused."""
    out: list[Shaper] = []
    for name in names:
        known = next((s for s in SHAPERS if s == name), None)
        if known is None:
            raise InvalidRequestError(
                f"samplers: '{name}' is not supported; use any of {', '.join(SHAPERS)}",
                param="samplers",
            )
        out.append(known)
    return tuple(out)


@router.post("/infill", responses=documented(Infilled))
async def infill(req: InfillRequest, request: Request) -> Response:
    rt = runtime(request)
    pipeline = await rt.serving(req.model, req.keep_alive)
    service = pipeline.service
    params = sampling(
        req, service.context_length, service.settings.preset(service.model.name).sampling()
    )
    if req.n_predict is not None and req.n_predict > 0:
        params = replace(params, max_tokens=req.n_predict)
    if req.samplers is not None:
        order = shapers(req.samplers)
        # As in llama.cpp, a temperature left out of the order is not applied.
        temperature = params.temperature if "temperature" in order else 1.0
        params = replace(params, chain=order, temperature=temperature)
    budget = req.t_max_predict_ms
    fill = Fill(
        req.input_prefix,
        req.input_suffix,
        tuple(Extra(c.text, c.filename) for c in req.input_extra),
        req.prompt,
        req.filename,
        req.n_indent,
        budget / 1000 if budget is not None and budget > 0 else None,
        req.n_cache_reuse,
        req.cache_prompt,
        warm=req.n_predict == 0,
    )
    chat = ChatRequest((), params, None, request.state.principal)
    handle = begin(request, pipeline, TurnRequest(chat, fill=fill, deadline=rt.deadline()))
    await handle.open()
    if req.stream:
        events = _events(request, handle, params.max_tokens)
        return StreamingResponse(events, media_type="text/event-stream")
    async for _ in handle.pieces(client_alive(request)):
        pass
    if handle.result is None:
        return unanswered(handle)
    rt.metrics.answered(handle.result)
    return JSONResponse(_final(handle.result, handle.result.text, params.max_tokens))


def _final(answer: Answer, content: str, n_predict: int) -> dict[str, Any]:
    """The last object, with the fields llama.cpp's server gives and editors read."""
    local = answer.local
    assert local is not None, "a fill is answered locally"
    c = local.completion
    prompt_s = c.timings.ttft_s
    predicted_s = max(c.timings.total_s - prompt_s, 1e-9)
    prefilled = local.prefilled_tokens
    n = c.usage.completion_tokens
    return {
        "index": 0,
        "content": content,
        "model": answer.model,
        "stop": True,
        "stop_type": "limit" if answer.finish_reason == "length" else "eos",
        "stopping_word": "",
        "tokens_predicted": n,
        "tokens_evaluated": local.n_prompt,
        "tokens_cached": local.n_prompt + n,
        "truncated": local.trimmed.tokens > 0,
        "has_new_line": "\n" in answer.text,
        "generation_settings": {"n_predict": n_predict},
        "timings": {
            "cache_n": local.reused_tokens,
            "prompt_n": prefilled,
            "prompt_ms": prompt_s * 1000,
            "prompt_per_token_ms": prompt_s * 1000 / max(prefilled, 1),
            "prompt_per_second": prefilled / prompt_s if prompt_s > 0 else 0.0,
            "predicted_n": n,
            "predicted_ms": predicted_s * 1000,
            "predicted_per_token_ms": predicted_s * 1000 / max(n, 1),
            "predicted_per_second": n / predicted_s,
        },
    }


async def _events(request: Request, handle: TurnHandle, n_predict: int) -> AsyncIterator[bytes]:
    def event(payload: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    try:
        async for piece in handle.pieces(client_alive(request)):
            yield event({"index": 0, "content": piece, "stop": False})
    except Exception as exc:  # the status line is sent: the error goes in the stream
        yield event(error_response(exc)[1])
        return
    if handle.result is not None:
        runtime(request).metrics.answered(handle.result)
        yield event(_final(handle.result, "", n_predict))
