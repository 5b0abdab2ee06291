"""Every error as OpenAI's error object, with the status a client expects."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from edgeinf.engine.batcher import QueueFullError
from edgeinf.errors import (
    ContextLengthExceededError,
    EdgeinfError,
    InsufficientMemoryError,
    InvalidRequestError,
    ModelNotFoundError,
    TemplateError,
)

RETRY_AFTER_S = 2


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.headers = status, type_, code, headers


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
    if isinstance(exc, ModelNotFoundError):
        return 404, "not_found_error", None
    if isinstance(exc, InsufficientMemoryError):
        return 503, "server_busy", {"Retry-After": str(RETRY_AFTER_S * 5)}
    if isinstance(exc, InvalidRequestError | ContextLengthExceededError | TemplateError):
        return 400, "invalid_request_error", None
    return 500, "server_error", None


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(str(exc), exc.type, exc.code), exc.status, headers=exc.headers)

    @app.exception_handler(EdgeinfError)
    async def _edgeinf(_: Request, exc: EdgeinfError) -> JSONResponse:
        status, type_, headers = _status(exc)
        return JSONResponse(body(str(exc), type_, exc.code), status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"] if p != "body")
        message = f"{param or 'body'}: {first['msg']}"
        return JSONResponse(body(message, "invalid_request_error", "invalid_value", param), 400)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse(body(str(exc), "invalid_request_error", "body_too_large"), 413)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(body(str(exc.detail), "invalid_request_error"), exc.status_code)
