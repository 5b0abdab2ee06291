"""Client of a remote OpenAI-compatible chat endpoint: deadlines, retries, a circuit breaker.

Every answer is streamed, so that a total deadline holds even against a server that sends a
byte now and then. Retries are jittered and honour Retry-After; only 429, 5xx and transport
failures are retried. The API key goes out in one header and appears nowhere else.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from edgeinf.errors import ConfigError, EdgeinfError
from edgeinf.route.breaker import Breaker
from edgeinf.types import Choice, Message, SamplingParams, Tool, ToolCall

BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 4.0


class RemoteError(EdgeinfError):
    """The remote gave no answer; `attempts` says how many requests were made."""

    code = "remote_unavailable"

    def __init__(self, message: str, attempts: int, partial: str = "") -> None:
        super().__init__(message)
        self.attempts = attempts
        self.partial = partial  # text already streamed before the remote failed


DETAIL_BYTES = 4096  # read of a refusal's body
DETAIL_CHARS = 200  # of it, in the error


class RemoteAuthError(RemoteError):
    code = "remote_auth_failed"


@dataclass(frozen=True)
class RemoteConfig:
    url: str  # base URL, e.g. https://api.example.com/v1
    model: str
    api_key: str | None = None
    total_s: float = 60.0
    connect_s: float = 3.0
    read_s: float = 20.0
    retries: int = 2

    def __post_init__(self) -> None:
        check_url(self.url)

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"RemoteConfig(url={self.url!r}, model={self.model!r})"


@dataclass(frozen=True)
class RemoteAnswer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    seconds: float
    tool_calls: tuple[ToolCall, ...] = ()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError("put the remote's key in remote_api_key_file, not in remote_url")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise ConfigError(
        f"remote_url {url!r} must be https:// (plain http is allowed only on loopback); "
        "fix remote_url or --remote-url"
    )


class _Retryable(Exception):
    def __init__(self, why: str, retry_after: float | None = None, partial: str = "") -> None:
        super().__init__(why)
        self.retry_after = retry_after
        self.partial = partial


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_s(attempt: int, retry_after: float | None) -> float:
    """Full jitter over an exponential ceiling, never shorter than the server asked."""
    jitter = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
    return max(jitter, retry_after or 0.0)


class RemoteClient:
    """One remote endpoint; thread-safe, shared by every request of a process."""

    def __init__(self, config: RemoteConfig, breaker: Breaker | None = None) -> None:
        self.config = config
        self.breaker = breaker or Breaker()
        self.host = urlsplit(config.url).hostname or "?"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(headers=headers, follow_redirects=False, verify=True)

    def close(self) -> None:
        self._http.close()

    def chat(
        self,
        messages: tuple[Message, ...],
        sampling: SamplingParams,
        on_text: Callable[[str], None] = lambda s: None,
        total_s: float | None = None,
        tools: Sequence[Tool] = (),
        choice: Choice | None = None,
    ) -> RemoteAnswer:
        """The remote's answer, streamed to `on_text` (the calls it makes of `tools` come
        with the answer); RemoteError when none came in time."""
        started = time.monotonic()
        deadline = started + min(total_s or self.config.total_s, self.config.total_s)
        body = _body(self.config.model, messages, sampling, tools, choice or Choice())
        attempts = 0
        why = "circuit open after repeated failures"
        retry_after: float | None = None
        while attempts <= self.config.retries:
            if attempts:
                wait = backoff_s(attempts - 1, retry_after)
                if time.monotonic() + wait >= deadline:
                    why += f"; no time left to retry within {self.config.total_s:g} s"
                    break
                time.sleep(wait)
            if not self.breaker.allow():
                why = "circuit open after repeated failures"
                break
            attempts += 1
            try:
                text, finish, usage, calls = self._attempt(body, deadline, on_text)
            except _Retryable as exc:
                self.breaker.record(False)
                why, retry_after = str(exc), exc.retry_after
                if exc.partial:  # text already reached the caller: a retry would repeat it
                    raise RemoteError(self._say(why), attempts, exc.partial) from None
                continue
            except RemoteError as exc:  # refused (key, redirect, bad request): the remote is up
                self.breaker.record(True)
                exc.attempts = attempts
                raise
            except BaseException:  # our side stopped reading (the client left): not its fault
                self.breaker.record(True)
                raise
            self.breaker.record(True)
            return RemoteAnswer(
                text,
                finish,
                usage.get("prompt_tokens", 0),
                usage.get("completion_tokens", 0),
                attempts,
                time.monotonic() - started,
                calls,
            )
        raise RemoteError(self._say(why), attempts)

    def _say(self, why: str) -> str:
        return f"the remote model at {self.host} did not answer ({why})"

    def _attempt(
        self, body: dict[str, object], deadline: float, on_text: Callable[[str], None]
    ) -> tuple[str, str, dict[str, int], tuple[ToolCall, ...]]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Retryable("deadline reached")
        cfg = self.config
        timeout = httpx.Timeout(
            connect=min(cfg.connect_s, left),
            read=min(cfg.read_s, left),
            write=min(5.0, left),
            pool=min(cfg.connect_s, left),
        )
        url = cfg.url.rstrip("/") + "/chat/completions"
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        try:
            with self._http.stream("POST", url, json=body, timeout=timeout) as resp:
                _check_status(resp, cfg.api_key)
                finish, usage = _read_events(resp, deadline, parts, on_text, calls)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out: {type(exc).__name__}", partial="".join(parts)) from None
        except httpx.TransportError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # will not change on a retry
                raise RemoteError(
                    f"the remote at {self.host} has a TLS certificate that does not verify; "
                    "fix its certificate, or point remote_url at the right host",
                    1,
                ) from None
            raise _Retryable(
                f"connection failed: {type(exc).__name__}", partial="".join(parts)
            ) from None
        except _Retryable as exc:
            exc.partial = "".join(parts)
            raise
        made = tuple(
            ToolCall(c["id"] or "call_" + secrets.token_hex(12), c["name"], c["arguments"] or "{}")
            for _, c in sorted(calls.items())
        )
        return "".join(parts), finish, usage, made


def _body(
    model: str,
    messages: tuple[Message, ...],
    s: SamplingParams,
    tools: Sequence[Tool],
    choice: Choice,
) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model,
        "messages": [m.as_dict() for m in messages],
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if s.seed is not None:
        body["seed"] = s.seed
    if s.stop:
        body["stop"] = list(s.stop)
    if tools:
        body["tools"] = [t.as_dict() for t in tools]
        body["parallel_tool_calls"] = choice.parallel
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if choice.name else choice.mode
        )
    return body


def _check_status(resp: httpx.Response, key: str | None) -> None:
    code = resp.status_code
    if code == 200:
        return
    if code in (401, 403):
        raise RemoteAuthError(
            f"the remote model refused our key (HTTP {code}); check remote_api_key_file", 1
        )
    if code == 429 or code >= 500:
        raise _Retryable(f"HTTP {code}", retry_after_s(resp.headers.get("retry-after")))
    if 300 <= code < 400:
        raise RemoteError(
            f"the remote redirected (HTTP {code}); set remote_url to the final address", 1
        )
    raise RemoteError(
        f"the remote rejected the request (HTTP {code}: {_said(resp, key)}); check remote_model",
        1,
    )


def _said(resp: httpx.Response, key: str | None) -> str:
    """What a refusing remote said, bounded; the key is cut out should a remote echo it."""
    raw = b""
    for chunk in resp.iter_raw():
        raw += chunk
        if len(raw) >= DETAIL_BYTES:
            break
    text = raw[:DETAIL_BYTES].decode("utf-8", "replace")
    with contextlib.suppress(ValueError, TypeError, KeyError):
        text = str(json.loads(text)["error"]["message"])
    if key:
        text = text.replace(key, "[key]")
    return text[:DETAIL_CHARS].strip() or "no reason given"


def _read_events(
    resp: httpx.Response,
    deadline: float,
    parts: list[str],
    on_text: Callable[[str], None],
    calls: dict[int, dict[str, str]],
) -> tuple[str, dict[str, int]]:
    """Server-sent events until [DONE]: text to `on_text`, the pieces of calls joined in
    `calls` by their index; the total deadline is checked after every read (the read timeout
    bounds the silence between reads)."""
    finish = ""
    usage: dict[str, int] = {}
    buffer = b""
    for raw in resp.iter_raw():
        if time.monotonic() > deadline:
            raise _Retryable("deadline reached mid-answer")
        buffer += raw
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                if not finish:
                    raise _Retryable("stream ended without a finish reason")
                return finish, usage
            try:
                event = json.loads(data)
            except ValueError:
                raise _Retryable("malformed event in the stream") from None
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                if piece := delta.get("content") or "":
                    parts.append(piece)
                    on_text(piece)
                for call in delta.get("tool_calls") or []:
                    _join(calls, call)
                finish = choice.get("finish_reason") or finish
    if finish:  # closed right after the last choice, without [DONE]: still a whole answer
        return finish, usage
    raise _Retryable("stream cut before its end")


def _join(calls: dict[int, dict[str, str]], piece: Any) -> None:
    """Add one streamed piece of a call (OpenAI's delta.tool_calls entry) to the others."""
    if not isinstance(piece, dict) or not isinstance(index := piece.get("index", 0), int):
        raise _Retryable("malformed tool call in the stream")
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = piece.get("function") or {}
    call["id"] = str(piece.get("id") or call["id"])
    call["name"] += str(function.get("name") or "")
    call["arguments"] += str(function.get("arguments") or "")
