"""Where `edgeinf chat` gets its answers: the service in this process, or a running server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edgeinf.config import Settings
from edgeinf.errors import EdgeinfError
from edgeinf.sessions.ids import LOCAL_OWNER
from edgeinf.types import Message, SamplingParams, Thought

if TYPE_CHECKING:
    from edgeinf.engine.jobs import Job
    from edgeinf.route.policy import Override
    from edgeinf.service.handle import Answer


@dataclass
class Stats:
    route: str = "local"
    ttft_s: float = 0.0
    tok_s: float = 0.0
    tokens: int = 0
    acceptance: float | None = None
    cached: int = 0  # prompt tokens not computed for this answer (see usage.cached_tokens)
    prefilled: int | None = None  # None: not known (a server does not say)


@dataclass(frozen=True)
class Routing:
    """The chat's /route and /private settings, sent with every question."""

    route: Override = "auto"
    private: bool = False


class Backend(Protocol):
    model_name: str

    def stream(
        self,
        messages: tuple[Message, ...],
        session_id: str,
        params: SamplingParams,
        routing: Routing,
    ) -> Iterator[str | Thought]: ...
    def warm(self, messages: tuple[Message, ...]) -> None: ...
    def last_stats(self) -> Stats: ...
    def history(self, session_id: str) -> tuple[Message, ...]: ...
    def sessions(self) -> list[tuple[str, int, str]]: ...
    def close(self) -> None: ...


class LocalBackend:
    def __init__(self, settings: Settings, model: str | None) -> None:
        from edgeinf.route.dispatch import Dispatcher
        from edgeinf.service.local import ChatService
        from edgeinf.service.turn import TurnPipeline

        self.service = ChatService(settings, model)
        self.model_name = self.service.model.name
        self._notes: list[str] = []
        self.dispatcher = Dispatcher(
            settings, self.model_name, self.service.identity.model_sha256, notify=lambda s: None
        )
        self.pipeline = TurnPipeline(self.service, self.dispatcher, self._notes.append)
        self._stats = Stats()
        self._warming: Job | None = None

    def stream(
        self,
        messages: tuple[Message, ...],
        session_id: str,
        params: SamplingParams,
        routing: Routing,
    ) -> Iterator[str | Thought]:
        from edgeinf.service.local_answer import ChatRequest
        from edgeinf.service.turn import TurnRequest

        chat = ChatRequest(messages, params, session_id=session_id)
        handle = self.pipeline.answer(TurnRequest(chat, routing.route, routing.private))
        for piece in handle:  # Ctrl+C stops it here: a partial answer is not kept
            yield from self._pending_notes()
            yield piece
        yield from self._pending_notes()
        if handle.result is not None:
            self._stats = stats_of(handle.result)

    def warm(self, messages: tuple[Message, ...]) -> None:
        """Prefill what the conversation and the message being typed will start with."""
        from edgeinf.service.local_answer import ChatRequest

        if self._warming is not None:
            self._warming.cancelled.set()  # the text changed: what it prefilled stays
        self._warming = self.service.warm(ChatRequest(messages, SamplingParams()))

    def _pending_notes(self) -> Iterator[str]:
        """What the turn had to say (a remote that failed) in the answer, where it happened."""
        while self._notes:
            yield f"[{self._notes.pop(0)}]\n\n"

    def last_stats(self) -> Stats:
        return self._stats

    def history(self, session_id: str) -> tuple[Message, ...]:
        return self.service.history(session_id)

    def sessions(self) -> list[tuple[str, int, str]]:
        rows = self.service.sessions(LOCAL_OWNER)
        return [(r.id, len(r.messages), r.label) for r in rows]

    def close(self) -> None:
        self.dispatcher.close()
        self.service.flush()
        self.service.close()


def stats_of(answer: Answer) -> Stats:
    route = answer.route
    label: str = "local" if route is None else route.target
    if route is not None and route.target == "remote":
        label = f"remote ({route.reason})"
    elif route is not None and route.fallback:
        label += " · fallback"
    local = answer.local
    if local is None:
        return Stats(label, tokens=answer.completion_tokens)
    timings = local.completion.timings
    return Stats(
        label,
        timings.ttft_s,
        timings.decode_tok_s,
        answer.completion_tokens,
        local.accepted / local.drafted if local.drafted else None,
        local.reused_tokens,
        local.prefilled_tokens,
    )


class ServerBackend:
    """A running `edgeinf serve`, through its OpenAI-compatible API."""

    def __init__(self, url: str, api_key: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300)
        try:
            models = self.http.get("/v1/models").raise_for_status().json()["data"]
        except httpx.HTTPError as exc:
            raise EdgeinfError(
                f"cannot reach an edgeinf server at {url} ({exc}); "
                "start one with `edgeinf serve` or check --url"
            ) from exc
        self.model_name = models[0]["id"]
        self._stats = Stats()

    def stream(
        self,
        messages: tuple[Message, ...],
        session_id: str,
        params: SamplingParams,
        routing: Routing,
    ) -> Iterator[str | Thought]:
        body = {
            "messages": [m.as_dict() for m in messages],
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "route": routing.route,
            "private": routing.private,
        }
        with self.http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"X-Session-Id": session_id}
        ) as resp:
            if resp.status_code != 200:
                resp.read()
                raise EdgeinfError(resp.json()["error"]["message"])
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise EdgeinfError(event["error"]["message"])
                if usage := event.get("usage"):
                    self._stats = Stats(
                        _route_label(event.get("route")),
                        0.0,
                        0.0,
                        usage["completion_tokens"],
                        None,
                        usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
                    )
                for choice in event.get("choices", []):
                    delta = choice.get("delta", {})
                    if thought := delta.get("reasoning_content"):
                        yield Thought(thought)
                    if text := delta.get("content"):
                        yield text

    def warm(self, messages: tuple[Message, ...]) -> None:
        """Nothing: the server's API has no prefill-only request (its slot keeps the
        conversation between turns, its prefix cache keeps it after that)."""

    def last_stats(self) -> Stats:
        return self._stats

    def history(self, session_id: str) -> tuple[Message, ...]:
        r = self.http.get(f"/v1/sessions/{session_id}")
        if r.status_code != 200:
            return ()
        return tuple(Message(m["role"], m["content"]) for m in r.json()["messages"])

    def sessions(self) -> list[tuple[str, int, str]]:
        rows = self.http.get("/v1/sessions").json()["data"]
        return [(r["id"], r["messages"], r["title"]) for r in rows]

    def close(self) -> None:
        self.http.close()


def _route_label(route: dict[str, Any] | None) -> str:
    if not route:
        return "local"
    return str(route["target"]) + (" · fallback" if route.get("fallback") else "")
