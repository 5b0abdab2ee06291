"""Where `edgeinf chat` gets its answers: the service in this process, or a running server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edgeinf.config import Settings
from edgeinf.errors import EdgeinfError
from edgeinf.sessions.ids import LOCAL_OWNER
from edgeinf.types import Message, SamplingParams

if TYPE_CHECKING:
    from edgeinf.route.policy import Override
    from edgeinf.service import ChatRequest


@dataclass
class Stats:
    route: str = "local"
    ttft_s: float = 0.0
    tok_s: float = 0.0
    tokens: int = 0
    acceptance: float | None = None
    restored: int = 0


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
    ) -> Iterator[str]: ...
    def last_stats(self) -> Stats: ...
    def history(self, session_id: str) -> tuple[Message, ...]: ...
    def sessions(self) -> list[tuple[str, int, str]]: ...
    def close(self) -> None: ...


class LocalBackend:
    def __init__(self, settings: Settings, model: str | None) -> None:
        from edgeinf.route.dispatch import Dispatcher
        from edgeinf.service import ChatService

        self.service = ChatService(settings, model)
        self.model_name = self.service.model.name
        self.dispatcher = Dispatcher(
            settings, self.model_name, self.service.identity.model_sha256, notify=lambda s: None
        )
        self._stats = Stats()

    def stream(
        self,
        messages: tuple[Message, ...],
        session_id: str,
        params: SamplingParams,
        routing: Routing,
    ) -> Iterator[str]:
        from edgeinf.route.dispatch import fell_back
        from edgeinf.route.remote import RemoteError
        from edgeinf.service import ChatRequest

        request = ChatRequest(messages, params, session_id=session_id)
        decision = self.dispatcher.decide(
            messages, params, routing.route, routing.private, session_id=session_id
        )
        if decision.target == "remote":
            try:
                answer = self.dispatcher.ask(messages, params, lambda s: None)
            except RemoteError as exc:
                decision = fell_back(decision, exc)
                yield f"[{exc}; the local model answers]\n\n"
            else:
                yield answer.text
                self.service.record(request, answer.text)
                self._stats = Stats(f"remote ({decision.reason})", tokens=answer.completion_tokens)
                return
        yield from self._local(request, "local · fallback" if decision.fallback else "local")

    def _local(self, request: ChatRequest, route: str) -> Iterator[str]:
        turn = self.service.respond(request)
        try:
            for chunk in turn.generation:
                yield chunk.text
        finally:  # also when the user pressed Ctrl+C: the partial answer is not kept
            c = turn.generation.completion
            if c is not None:
                self.service.finish(turn)
                d = turn.generation.draft_stats
                self._stats = Stats(
                    route,
                    c.timings.ttft_s,
                    c.timings.decode_tok_s,
                    c.usage.completion_tokens,
                    d.accepted / d.drafted if d.drafted else None,
                    turn.restored_tokens,
                )

    def last_stats(self) -> Stats:
        return self._stats

    def history(self, session_id: str) -> tuple[Message, ...]:
        return self.service.history(session_id)

    def sessions(self) -> list[tuple[str, int, str]]:
        rows = self.service.keeper.store.index.owned_by(LOCAL_OWNER)
        return [(r.id, len(r.messages), _title(r.messages)) for r in rows]

    def close(self) -> None:
        self.dispatcher.close()
        self.service.flush()
        self.service.close()


class RemoteBackend:
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
    ) -> Iterator[str]:
        body = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
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
                        usage.get("restored_tokens", 0),
                    )
                for choice in event.get("choices", []):
                    if text := choice.get("delta", {}).get("content"):
                        yield text

    def last_stats(self) -> Stats:
        return self._stats

    def history(self, session_id: str) -> tuple[Message, ...]:
        r = self.http.get(f"/v1/sessions/{session_id}")
        if r.status_code != 200:
            return ()
        return tuple(Message(m["role"], m["content"]) for m in r.json()["messages"])

    def sessions(self) -> list[tuple[str, int, str]]:
        rows = self.http.get("/v1/sessions").json()["data"]
        return [(r["id"], r["messages"], "") for r in rows]

    def close(self) -> None:
        self.http.close()


def _route_label(route: dict[str, Any] | None) -> str:
    if not route:
        return "local"
    return str(route["target"]) + (" · fallback" if route.get("fallback") else "")


def _title(messages: tuple[Message, ...]) -> str:
    first = next((m.content for m in messages if m.role == "user"), "")
    return first[:50].replace("\n", " ")
