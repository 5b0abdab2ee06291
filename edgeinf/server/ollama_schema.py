"""What the Ollama routes answer, for the OpenAPI schema (and schemathesis' checks)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class OllamaError(BaseModel):
    error: str


def _error(description: str) -> dict[str, Any]:
    return {"model": OllamaError, "description": description}


OLLAMA_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error(
        "invalid request: a value out of bounds, an option the server sets, a prompt too long"
    ),
    401: _error("missing or wrong API key (when the server has one)"),
    403: _error("Host header not allowed (DNS rebinding protection)"),
    404: _error("no such model"),
    409: _error("a fill-in-the-middle request the same client replaced with a newer one"),
    413: _error("request body over the size cap"),
    503: _error("not ready (model loading or failed), queue full, or short of memory"),
}


class Details(BaseModel):
    parent_model: str
    format: str
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class Listed(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class Tags(BaseModel):
    models: list[Listed]


class Running(Listed):
    size_vram: int
    expires_at: str | None  # None: kept loaded
    context_length: int
    edgeinf_kind: Literal["chat", "embed"]


class Ps(BaseModel):
    models: list[Running]


class Version(BaseModel):
    version: str
    edgeinf: str


class Shown(BaseModel):
    license: str = ""
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    system: str = ""
    details: dict[str, Any]
    model_info: dict[str, Any] = {}
    capabilities: list[str]
    modified_at: str = ""


class Stats(BaseModel):
    model: str
    created_at: str
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None  # nanoseconds, as Ollama reports them
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class CalledFunction(BaseModel):
    index: int
    name: str
    arguments: dict[str, Any]


class Called(BaseModel):
    function: CalledFunction


class SaidMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    thinking: str | None = None  # a thinking model's reasoning
    tool_calls: list[Called] | None = None


class Chatted(Stats):
    message: SaidMessage


class Generated(Stats):
    response: str
    thinking: str | None = None


class Embedded(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    prompt_eval_count: int


class LegacyEmbedded(BaseModel):
    embedding: list[float]


class Progress(BaseModel):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


def streamed(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A 200 that is one JSON object, or NDJSON lines of it when `stream` is true."""
    lines = {"application/x-ndjson": {"schema": {"type": "string"}}}
    return {200: {"model": model, "content": lines}}
