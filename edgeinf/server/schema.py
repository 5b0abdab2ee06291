"""What the API answers, for its OpenAPI document: response shapes and the errors each route
can return. The handlers build these objects as plain dicts; the models only describe them
(and `tests/server/test_schema_fuzz.py` checks every response against them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _error(why: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": why}


# Errors any route may return (the middleware and the readiness check apply to all).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("invalid request: a value out of bounds, a bad session id, a prompt too long"),
    401: _error("missing or wrong API key (when the server has one)"),
    403: _error("Host header not allowed (DNS rebinding protection)"),
    404: _error("no such session or model"),
    409: _error("a fill-in-the-middle request the same client replaced with a newer one"),
    413: _error("request body over the size cap"),
    503: _error("not ready (model loading or failed), queue full, or short of memory"),
}


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0  # prompt tokens whose KV state was not computed for this request


class CompletionTokensDetails(BaseModel):
    # speculative decoding: drafted tokens the model kept, and those it did not
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()
    completion_tokens_details: CompletionTokensDetails = CompletionTokensDetails()
    # edgeinf: the cached tokens that came from the prefix cache (RAM or disk), and the tier
    # they all came from ("slot": the sequence's own cells)
    restored_tokens: int = 0
    cached_from: Literal["slot", "ram", "disk"] | None = None


class CalledFunction(BaseModel):
    name: str
    arguments: str  # JSON text


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: CalledFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None  # None when the answer is only tool calls
    reasoning_content: str | None = None  # a thinking model's reasoning, when it wrote some
    tool_calls: list[ToolCallOut] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChatLogprobs | None = None  # with logprobs: true


class ContextDropped(BaseModel):
    policy: Literal["truncate", "summarize", "shift"]
    dropped_messages: int
    dropped_tokens: int  # of the prompt
    summarized_messages: int = 0  # replaced by the model's summary of them
    shifted_tokens: int = 0  # dropped by context shifts while answering


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    route: dict[str, Any] | None = None  # edgeinf: where the answer came from, and why
    context: ContextDropped | None = None  # edgeinf: what the context policy dropped


class TextLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: TextLogprobs | None = None  # with logprobs: N


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    architecture: str
    quantization: str
    context_length: int
    loaded: bool  # in memory now; a request for it loads it otherwise


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class SessionSummary(BaseModel):
    id: str
    title: str  # the name it was given, else the start of its first question
    model: str
    messages: int
    kv_tokens: int
    last_used: int


class SessionList(BaseModel):
    object: Literal["list"]
    data: list[SessionSummary]


class SessionMessage(BaseModel):
    role: str
    content: str
    tool_calls: list[ToolCallOut] | None = None  # an assistant's calls
    tool_call_id: str | None = None  # a tool's result: the call it answers


class SessionDetail(BaseModel):
    id: str
    title: str
    model: str
    kv_tokens: int
    messages: list[SessionMessage]


class SessionRenamed(BaseModel):
    id: str
    object: Literal["session"]
    title: str


class SessionDeleted(BaseModel):
    id: str
    object: Literal["session"]
    deleted: bool


class InfillTimings(BaseModel):
    cache_n: int  # prompt tokens whose cells the slot held
    prompt_n: int  # prompt tokens prefilled
    prompt_ms: float
    prompt_per_token_ms: float
    prompt_per_second: float
    predicted_n: int
    predicted_ms: float
    predicted_per_token_ms: float
    predicted_per_second: float


class Piece(BaseModel):
    id: int
    piece: str | list[int]  # its bytes when they are not whole UTF-8


class Tokenized(BaseModel):
    tokens: list[int] | list[Piece]


class Detokenized(BaseModel):
    content: str


class Infilled(BaseModel):
    """/infill's answer, with the fields of llama.cpp's server that editors read."""

    index: int
    content: str  # the text to insert (empty in the last event of a stream)
    model: str
    stop: bool
    stop_type: Literal["eos", "limit"]
    stopping_word: str
    tokens_predicted: int
    tokens_evaluated: int
    tokens_cached: int
    truncated: bool  # the text around the cursor was cut to fit the context
    has_new_line: bool
    generation_settings: dict[str, int]
    timings: InfillTimings


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model: str
    loaded: bool  # False while unloaded after keep_alive_s idle


def answer(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A completion route's 200: JSON, or server-sent events when `stream` is true."""
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "string", "description": "a JSON chunk, and [DONE] at the end"}
        },
    }
    events = {"text/event-stream": {"schema": event}}
    return {200: {"model": model, "content": events}}


def without_validation_errors(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents a 422 for every route with parameters; edgeinf answers 400 instead
    (OpenAI's status for a bad value), documented in ERRORS."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for operations in doc["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            schemas = doc.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    return build
