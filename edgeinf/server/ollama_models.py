"""Ollama's model routes: /api/tags, /api/show, /api/ps, /api/pull, /api/delete,
/api/version, on the same port and behind the same security as the OpenAI routes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from edgeinf import __version__
from edgeinf.catalog import open_store
from edgeinf.catalog.hub import Hub, hub_token, is_hub_ref, parse_ref
from edgeinf.catalog.pull import pull
from edgeinf.catalog.store import LocalModel, sha256_cached
from edgeinf.engine.template import read_template
from edgeinf.errors import EdgeinfError, InvalidRequestError
from edgeinf.gguf.check import read_gguf
from edgeinf.gguf.info import ModelInfo, capabilities, inspect_cached
from edgeinf.server.answer import runtime
from edgeinf.server.errors import error_response
from edgeinf.server.ollama_schema import (
    OLLAMA_ERRORS,
    Progress,
    Ps,
    Shown,
    Tags,
    Version,
    streamed,
)
from edgeinf.server.ollama_wire import ModelName, OllamaPull

router = APIRouter(responses=OLLAMA_ERRORS)
# The version of Ollama's API whose shapes these routes follow (clients gate features on it).
OLLAMA_API_VERSION = "0.12.6"
PROGRESS_S = 0.25  # a pull's progress is reported at most this often


def iso(timestamp: float) -> str:
    """Ollama's timestamps: RFC 3339 in UTC."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


def ndjson(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, ensure_ascii=False) + "\n").encode()


def parameter_size(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def details(info: ModelInfo) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": info.architecture,
        "families": [info.architecture],
        "parameter_size": parameter_size(info.parameters),
        "quantization_level": info.quantization,
    }


def _listed(model: LocalModel) -> dict[str, Any] | None:
    try:
        st = model.path.stat()
        if model.path.suffix == ".onnx":  # the sentence encoder: embeddings only
            facts = {"parent_model": "", "format": "onnx", "family": "bert", "families": ["bert"],
                     "parameter_size": "", "quantization_level": "int8"}  # fmt: skip
        else:
            facts = details(inspect_cached(model.path))
    except (OSError, EdgeinfError):
        return None  # a file gone or damaged is not listed
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": iso(st.st_mtime),
        "size": st.st_size,
        "digest": model.sha256 or sha256_cached(model.path),
        "details": facts,
    }


@router.get("/api/version", response_model=Version)
async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION, "edgeinf": __version__}


@router.get("/api/tags", response_model=Tags)
async def tags(request: Request) -> dict[str, Any]:
    """Every local model a request may name."""
    models = runtime(request).fleet.local_models()
    rows = await asyncio.to_thread(lambda: [_listed(m) for m in models])  # may hash a file
    return {"models": [row for row in rows if row is not None]}


@router.get("/api/ps", response_model=Ps)
async def ps(request: Request) -> dict[str, Any]:
    """What the server has loaded now (for chat and for embeddings)."""
    rows = []
    for r in runtime(request).fleet.loaded():
        row = await asyncio.to_thread(_listed, r.model)
        if row is None:
            continue
        expires = r.expires()
        context = r.pipeline.service.context_length if r.pipeline else r.settings.n_ctx
        rows.append(
            {
                **row,
                "size": r.need,
                "size_vram": 0,
                "expires_at": iso(expires) if expires is not None else None,
                "context_length": context,
                "edgeinf_kind": r.kind,
            }
        )
    return {"models": rows}


@router.post("/api/show", response_model=Shown)
async def show(req: ModelName, request: Request) -> dict[str, Any]:
    rt = runtime(request)
    model = rt.model(req.ref)
    if model.path.suffix != ".gguf":
        return {"details": {"format": model.path.suffix.lstrip(".")}, "capabilities": ["embedding"]}
    gguf = await asyncio.to_thread(read_gguf, model.path)
    info = inspect_cached(model.path)
    meta = gguf.metadata
    preset = rt.settings.preset(model.name)
    template = meta.get("tokenizer.chat_template")
    if preset.chat_template_file is not None:
        template = read_template(preset.chat_template_file)
    parameters = "\n".join(f"{k} {v}" for k, v in preset.sampling().items())
    scalars = {
        k: v
        for k, v in meta.items()
        if isinstance(v, str | int | float | bool) and k != "tokenizer.chat_template"
    }
    return {
        "license": str(meta.get("general.license", "")),
        "modelfile": f"# edgeinf model {model.name}\nFROM {model.path.name}\n",
        "parameters": parameters,
        "template": template if isinstance(template, str) else "",
        "system": preset.system or "",
        "details": details(info),
        "model_info": scalars,
        "capabilities": capabilities(meta, gguf.fills_in_middle),
        "modified_at": iso(model.path.stat().st_mtime),
    }


@router.delete("/api/delete")
async def delete(req: ModelName, request: Request) -> Response:
    """Remove a pulled model (a registered one is only forgotten: its file is the user's);
    a loaded one is unloaded first. The server's default model is not removed."""
    rt = runtime(request)
    model = rt.model(req.ref)
    if model.name == rt.fleet.default_name:
        raise InvalidRequestError(
            f"{model.name} is this server's default model; serve another one first",
            param="model",
        )
    await asyncio.to_thread(rt.fleet.unload, model.name)
    await asyncio.to_thread(open_store(rt.settings).remove, model.name)
    return Response(status_code=200)


@router.post("/api/pull", responses=streamed(Progress))
async def pull_model(req: OllamaPull, request: Request) -> Response:
    """Pull a catalog model, or a hub model by name (owner/repo[:QUANT]), its progress
    streamed as Ollama reports it. The name is checked before anything is fetched."""
    rt = runtime(request)
    settings, store = rt.settings, open_store(rt.settings)
    name = req.ref.removesuffix(":latest")
    ref = parse_ref(name, settings.hub_url) if is_hub_ref(name) else None
    entry = store.catalog_entry(name) if ref is None else None
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
    step: dict[str, Any] = {}
    done, told = 0, 0.0

    def begin(sha256: str, total: int) -> None:
        step.update(status=f"pulling {sha256[:12]}", digest=f"sha256:{sha256}", total=total)

    def progress(n: int) -> None:
        nonlocal done, told
        done += n
        if time.monotonic() - told >= PROGRESS_S or done >= step["total"]:
            told = time.monotonic()
            loop.call_soon_threadsafe(events.put_nowait, {**step, "completed": done})

    def run() -> None:
        try:
            if ref is not None:
                hub = Hub(settings.hub_url, hub_token())
                try:
                    resolved = hub.resolve(ref)
                    begin(resolved.files[0].sha256, resolved.size)
                    hub.download(resolved, store, progress)
                finally:
                    hub.close()
            else:
                assert entry is not None
                begin(entry.sha256, entry.size)
                pull(
                    entry,
                    store,
                    index_url=settings.pypi_index_url,
                    hub_base=settings.hub_url,
                    progress=progress,
                )
            loop.call_soon_threadsafe(events.put_nowait, {"status": "verifying sha256 digest"})
            loop.call_soon_threadsafe(events.put_nowait, None)
        except BaseException as exc:
            loop.call_soon_threadsafe(events.put_nowait, exc)

    threading.Thread(target=run, name="edgeinf-pull", daemon=True).start()

    async def steps() -> AsyncIterator[dict[str, Any] | BaseException]:
        yield {"status": "pulling manifest"}
        while (event := await events.get()) is not None:
            yield event
            if isinstance(event, BaseException):
                return
        yield {"status": "success"}

    if not req.stream:
        async for event in steps():
            if isinstance(event, BaseException):
                raise event
        return JSONResponse({"status": "success"})

    async def lines() -> AsyncIterator[bytes]:
        async for event in steps():
            if isinstance(event, BaseException):
                yield ndjson({"error": error_response(event)[1]["error"]["message"]})
                return
            yield ndjson(event)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
