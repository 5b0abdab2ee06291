"""`create_app`: the FastAPI application, its middleware and lifecycle; no globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from edgeinf import __version__
from edgeinf.config import Settings, read_api_key
from edgeinf.server import embeddings, errors, infill, ollama, ollama_models, page, tokens
from edgeinf.server.metrics import CountRequests
from edgeinf.server.routes import router
from edgeinf.server.runtime import Runtime
from edgeinf.server.schema import without_validation_errors
from edgeinf.server.security import Gate

DRAIN_S = 10.0  # on SIGTERM, running answers get this long to finish


def create_app(settings: Settings, model_ref: str | None = None) -> FastAPI:
    rt = Runtime(settings, model_ref)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        rt.start()
        yield
        rt.stop(DRAIN_S)

    docs = settings.api_docs
    app = FastAPI(
        title="edgeinf",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.runtime = rt
    app.openapi = without_validation_errors(app)  # type: ignore[method-assign]
    errors.install(app)
    app.include_router(router)
    app.include_router(embeddings.router)
    app.include_router(infill.router)
    app.include_router(tokens.router)
    app.include_router(ollama.router)
    app.include_router(ollama_models.router)
    app.include_router(page.router)
    if settings.cors_origins:  # off unless origins are listed; never with credentials
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Session-Id"],
        )
    app.add_middleware(
        Gate,
        api_key=read_api_key(settings),
        allowed_hosts=settings.allowed_hosts,
        max_body=settings.max_body_bytes,
    )
    app.add_middleware(CountRequests, metrics=rt.metrics)
    return app
