"""Every error as OpenAI's error object, with the status a client expects."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from edgeinf.engine.jobs import EngineStoppedError, QueueFullError
from edgeinf.errors import (
    ContextLengthExceededError,
    EdgeinfError,
    InsufficientMemoryError,
    InvalidRequestError,
    ModelNotFoundError,
    TemplateError,
)

RETRY_AFTER_S = 2
log = logging.getLogger("edgeinf.server")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.headers = status, type_, code, headers
        self.param = param


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over {limit} bytes; send less")


def body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _status(exc: EdgeinfError) -> tuple[int, str, dict[str, str] | None]:
    if isinstance(exc, QueueFullError):
        return 503, "server_busy", {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(exc, EngineStoppedError):
        return 503, "server_error", None
    if isinstance(exc, ModelNotFoundError):
        return 404, "not_found_error", None
    if isinstance(exc, InsufficientMemoryError):
        return 503, "server_busy", {"Retry-After": str(RETRY_AFTER_S * 5)}
    if isinstance(exc, InvalidRequestError | ContextLengthExceededError | TemplateError):
        return 400, "invalid_request_error", None
    return 500, "server_error", None


def error_response(
    exc: BaseException,
) -> tuple[int, dict[str, dict[str, str | None]], dict[str, str] | None]:
    """The one mapping from an exception to an HTTP status, OpenAI error body and headers,
    used before a response starts and inside a stream alike. An exception edgeinf did not
    raise on purpose is logged with its traceback and answered without its text."""
    if isinstance(exc, ApiError):
        return exc.status, body(str(exc), exc.type, exc.code, exc.param), exc.headers
    if isinstance(exc, EdgeinfError):
        status, type_, headers = _status(exc)
        param = exc.param if isinstance(exc, InvalidRequestError) else None
        return status, body(str(exc), type_, exc.code, param), headers
    log.error("internal error", exc_info=exc)
    message = "internal error while answering; the server log has the details; retry"
    return 500, body(message, "server_error", "internal_error"), None


_NOT_UNICODE = "holds a lone surrogate or other text that is not valid Unicode; send valid text"


def invalid_field(errors: Sequence[Any]) -> tuple[str, str, str]:
    """(the field, one line, a code) for pydantic's errors: the most telling error, its
    location without the names of union branches and validators."""
    if not errors:
        return "", "body: invalid request", "invalid_value"
    # A text error says more than the union branch that expected another type.
    first = next((e for e in errors if e["type"] in _TEXT_ERRORS), errors[0])
    param = ".".join(
        str(p)
        for p in first["loc"]
        if p != "body" and (isinstance(p, int) or str(p).isidentifier())
    )
    message = {
        "string_unicode": _NOT_UNICODE,
        "extra_forbidden": "is not a parameter edgeinf knows; leave it out (see /openapi.json)",
    }.get(first["type"], first["msg"].removeprefix("Value error, "))
    code = "unknown_parameter" if first["type"] == "extra_forbidden" else "invalid_value"
    return param, f"{param or 'body'}: {message}", code


_TEXT_ERRORS = ("string_unicode", "value_error", "extra_forbidden")


def shaped(
    request: Request, content: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the shape its route's clients read: OpenAI's object, or Ollama's one
    line ({"error": "..."}) under /api/."""
    if request.url.path.startswith("/api/"):
        content = {"error": content["error"]["message"]}
    return JSONResponse(content, status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    @app.exception_handler(EdgeinfError)
    @app.exception_handler(Exception)
    async def _mapped(request: Request, exc: Exception) -> JSONResponse:
        status, content, headers = error_response(exc)
        return shaped(request, content, status, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        param, message, code = invalid_field(exc.errors())
        return shaped(request, body(message, "invalid_request_error", code, param), 400)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        content = body(str(exc), "invalid_request_error", "body_too_large")
        return shaped(request, content, 413)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        content = body(str(exc.detail), "invalid_request_error")
        return shaped(request, content, exc.status_code)
