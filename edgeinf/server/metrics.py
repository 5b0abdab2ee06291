"""Prometheus metrics of one server (its own registry: two apps never share counters)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeinf.route.policy import Decision
from edgeinf.service.handle import Answer
from edgeinf.sessions.keeper import TIERS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(
        self,
        depth: Callable[[], tuple[int, int]],
        cache: Callable[[str], float],
        history: Callable[[], tuple[int, int]],
        summaries: Callable[[str], int],
    ) -> None:
        """`depth`: (running, waiting) requests; `cache`: the bytes a prefix cache tier
        ("ram" or "disk") holds now; `history`: (tokens, index windows) of the earlier
        answers n-gram drafts copy from; `summaries`: summaries of older turns the loaded
        models wrote, "background" or "waited" (for by a request)."""
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgeinf_requests", "Requests by route and status", ["route", "status"], registry=r
        )
        self.prompt_tokens = Counter("edgeinf_prompt_tokens", "Prompt tokens", registry=r)
        self.completion_tokens = Counter(
            "edgeinf_completion_tokens", "Generated tokens", registry=r
        )
        self.cached = Counter(
            "edgeinf_cached_tokens",
            "Prompt tokens not prefilled, by where their KV state was: the sequence's own "
            "cells (slot), or the prefix cache (ram, disk)",
            ["tier"],
            registry=r,
        )
        for tier in TIERS:
            self.cached.labels(tier)
        self.embedded = Counter("edgeinf_embedded_texts", "Texts embedded", registry=r)
        self.prefilled = Counter("edgeinf_prefilled_tokens", "Prompt tokens prefilled", registry=r)
        self.drafted = Counter("edgeinf_speculative_drafted", "Tokens drafted", registry=r)
        self.accepted = Counter(
            "edgeinf_speculative_accepted", "Drafted tokens accepted", registry=r
        )
        self.routes = Counter(
            "edgeinf_route_decisions",
            "Where requests were answered",
            ["target", "reason"],
            registry=r,
        )
        self.ttft = Histogram(
            "edgeinf_ttft_seconds",
            "Time to first token",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.decode = Histogram(
            "edgeinf_decode_tokens_per_second",
            "Decode speed",
            registry=r,
            buckets=(1, 2, 5, 10, 20, 40, 80, 160),
        )
        self.stall = Histogram(
            "edgeinf_stall_seconds",
            "Longest wait between two tokens of one answer",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        running = Gauge("edgeinf_running_requests", "Requests being decoded", registry=r)
        waiting = Gauge("edgeinf_queue_depth", "Requests waiting for a slot", registry=r)
        running.set_function(lambda: depth()[0])
        waiting.set_function(lambda: depth()[1])
        held = Gauge(
            "edgeinf_cache_bytes", "KV state the prefix cache holds, by tier", ["tier"], registry=r
        )
        for tier in ("ram", "disk"):
            held.labels(tier).set_function(functools.partial(cache, tier))
        kept = Gauge(
            "edgeinf_draft_history_tokens",
            "Tokens of earlier answers n-gram drafts may copy from (all principals)",
            registry=r,
        )
        windows = Gauge(
            "edgeinf_draft_history_windows", "Windows indexed over those tokens", registry=r
        )
        written = Gauge(
            "edgeinf_context_summaries",
            "Summaries of older turns the loaded models wrote (context_policy summarize), in "
            "the background or while a request waited",
            ["when"],
            registry=r,
        )
        for when in ("background", "waited"):
            written.labels(when).set_function(functools.partial(summaries, when))
        kept.set_function(lambda: history()[0])
        windows.set_function(lambda: history()[1])
        self.loaded = Gauge("edgeinf_model_loaded", "Models in memory", registry=r)
        self.admitted = Gauge(
            "edgeinf_models_admitted_bytes",
            "Memory the loaded models were admitted with (weights + KV cache)",
            registry=r,
        )
        self.parallel = Gauge(
            "edgeinf_parallel_limit",
            "Sequences decoded together now (strain lowers it)",
            registry=r,
        )
        self.drafting = Gauge(
            "edgeinf_drafting", "1 while batched requests may draft (strain stops it)", registry=r
        )
        self.threads = Gauge(
            "edgeinf_decode_threads",
            "Threads decoding now (fewer while other processes keep cores busy)",
            registry=r,
        )
        self.shedding = Gauge(
            "edgeinf_shedding", "1 while new requests are refused (memory, heat)", registry=r
        )
        rss = Gauge("edgeinf_resident_memory_bytes", "Resident memory of the server", registry=r)
        process = psutil.Process()
        rss.set_function(lambda: process.memory_info().rss)

    def answered(self, answer: Answer) -> None:
        """One finished turn: where it was answered and, for local answers, its facts."""
        if answer.route is not None:
            self.routed(answer.route)
        local = answer.local
        if local is None:
            return
        c = local.completion
        self.prompt_tokens.inc(c.usage.prompt_tokens)
        self.completion_tokens.inc(c.usage.completion_tokens)
        if local.cached_from is not None:
            restored = local.restored_tokens
            self.cached.labels("slot").inc(local.reused_tokens - restored)
            if restored:
                self.cached.labels(local.cached_from).inc(restored)
        self.prefilled.inc(local.prefilled_tokens)
        self.drafted.inc(local.drafted)
        self.accepted.inc(local.accepted)
        self.ttft.observe(c.timings.ttft_s)
        if c.timings.decode_tok_s > 0:
            self.decode.observe(c.timings.decode_tok_s)
            self.stall.observe(c.timings.stall_s)

    def routed(self, decision: Decision) -> None:
        reason = f"{decision.reason}_fallback" if decision.fallback else decision.reason
        self.routes.labels(decision.target, reason).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class CountRequests:
    """ASGI middleware: requests by route and final status, for `edgeinf_requests`."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            path = scope["path"] if scope["path"] in _ROUTES else "other"
            self.metrics.requests.labels(path, str(status)).inc()


_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/sessions",
        "/health",
        "/ready",
        "/metrics",
    }
)
