"""Request checks before any route runs: Host (DNS rebinding), API key, body size."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeinf.server.errors import BodyTooLarge, body
from edgeinf.server.page import is_page
from edgeinf.sessions.ids import LOCAL_OWNER

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
OPEN_PATHS = frozenset({"/health", "/ready"})  # no data behind them: no key needed (nor
# behind the web page's files, which ask for the key themselves)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def principal_of(key: str | None) -> str:
    """Who owns sessions: one principal per API key (hashed), or the local user."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16] if key else LOCAL_OWNER


def _host_only(value: str) -> str:
    if value.startswith("["):
        return value.split("]")[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Gate:
    """ASGI middleware; every refusal is an OpenAI-shaped error and nothing is logged of keys."""

    def __init__(
        self, app: ASGIApp, *, api_key: str | None, allowed_hosts: Iterable[str], max_body: int
    ) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.hosts = LOOPBACK_HOSTS | {h.lower() for h in allowed_hosts}
        self.max_body = max_body
        self.principal = principal_of(api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refuse(scope, headers)
        if refusal is not None:
            await _send_error(send, scope["path"], *refusal)
            return
        scope.setdefault("state", {})["principal"] = self.principal
        await self.app(scope, self._limited(receive, send), send)

    def _refuse(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = _host_only(headers.get("host", "").strip().lower())
        if not host or host not in self.hosts:
            return 403, "permission_error", "this Host is not served here (DNS rebinding guard)"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return 413, "invalid_request_error", f"request body is over {self.max_body} bytes"
        path = scope["path"]
        if self.key is None or path in OPEN_PATHS or is_page(path) or scope["method"] == "OPTIONS":
            return None
        query = scope.get("query_string", b"").lower()
        if b"key=" in query or b"token=" in query:
            return (
                401,
                "authentication_error",
                ("API keys are not accepted in the URL; send `Authorization: Bearer KEY`"),
            )
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.key):
            return (
                401,
                "authentication_error",
                ("missing or wrong API key; send `Authorization: Bearer KEY`"),
            )
        return None

    def _limited(self, receive: Receive, send: Send) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return limited


async def _send_error(send: Send, path: str, status: int, type_: str, message: str) -> None:
    """A refusal in the shape the route's clients read (see errors.shaped)."""
    content = {"error": message} if path.startswith("/api/") else body(message, type_)
    payload: Any = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
