"""Soak an edgeinf server on loopback: a bounded mixed load for a set time, its resident
memory at the start and the end, what the prefix cache's RAM tier and the draft history hold
each minute, every status counted. Exits 1 on any 5xx, dropped
connection or unclean shutdown.

    python tools/soak.py --model gemma-3-270m-q4_k_m --duration 600      # starts its own server
    python tools/soak.py --url http://127.0.0.1:8088 --duration 60       # a running server

The load, from --clients concurrent clients: chat answers, streamed answers read to the end,
multi-turn sessions (X-Session-Id, deleted after a few turns), streams dropped after two
events, text completions, and the admin routes (models, sessions, metrics, health).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from edgeinf.bench.server import Served

TOPICS = ["a sorted list merge", "closures", "SQL joins", "bash loops", "unit tests", "regexes"]
RSS = "edgeinf_resident_memory_bytes"
RAM_TIER = 'edgeinf_cache_bytes{tier="ram"}'
HISTORY = ("edgeinf_draft_history_tokens", "edgeinf_draft_history_windows")


class Soak:
    def __init__(self, http: httpx.AsyncClient, seed: int) -> None:
        self.http, self.rng = http, random.Random(seed)
        self.statuses: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.conversations: dict[int, tuple[str, list[dict[str, str]]]] = {}  # per worker

    def body(self, **extra: Any) -> dict[str, Any]:
        ask = f"In two sentences, explain {self.rng.choice(TOPICS)}."
        return {
            "messages": [{"role": "user", "content": ask}],
            "max_tokens": self.rng.randint(8, 48),
            "temperature": self.rng.choice([0, 0.7]),
            **extra,
        }

    def count(self, kind: str, status: int | str) -> None:
        self.kinds[kind] += 1
        self.statuses[str(status)] += 1

    async def chat(self) -> None:
        r = await self.http.post("/v1/chat/completions", json=self.body())
        self.count("chat", r.status_code)

    async def stream(self, drop: bool = False) -> None:
        kind = "disconnect" if drop else "stream"
        async with self.http.stream(
            "POST", "/v1/chat/completions", json=self.body(stream=True)
        ) as r:
            events = 0
            async for line in r.aiter_lines():
                events += line.startswith("data: ")
                if drop and events == 2:
                    break  # the client leaves mid-answer
                if line.startswith("data: ") and '"server_error"' in line:
                    self.count(kind, "stream_error")
                    return
        self.count(kind, r.status_code)

    async def session(self, worker: int) -> None:
        sid, history = self.conversations.setdefault(worker, (f"soak-{worker}-0", []))
        history.append(self.body()["messages"][0])
        r = await self.http.post(
            "/v1/chat/completions",
            json={"messages": history, "max_tokens": 24, "temperature": 0},
            headers={"X-Session-Id": sid},
        )
        self.count("session", r.status_code)
        if r.status_code == 200:
            history.append(r.json()["choices"][0]["message"])
        if len(history) >= 8:  # four turns, then the conversation is deleted
            d = await self.http.delete(f"/v1/sessions/{sid}")
            self.count("session_delete", d.status_code)
            self.conversations[worker] = (f"soak-{worker}-{self.kinds['session_delete']}", [])

    async def completion(self) -> None:
        r = await self.http.post(
            "/v1/completions", json={"prompt": "def fibonacci(n):", "max_tokens": 24}
        )
        self.count("completion", r.status_code)

    async def admin(self) -> None:
        path = self.rng.choice(["/v1/models", "/v1/sessions", "/metrics", "/health", "/ready"])
        r = await self.http.get(path)
        self.count("admin", r.status_code)

    async def worker(self, index: int, until: float) -> None:
        actions: list[Callable[[], Awaitable[None]]] = [
            self.chat,
            self.stream,
            lambda: self.stream(drop=True),
            lambda: self.session(index),
            self.completion,
            self.admin,
        ]
        while time.monotonic() < until:
            try:
                await self.rng.choice(actions)()
            except httpx.TransportError as exc:  # the server dropped a connection: its fault
                self.count("transport", type(exc).__name__)


async def gauge(http: httpx.AsyncClient, name: str, unit: float = 2**20) -> float:
    """A gauge of /metrics, in MiB (or another unit)."""
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1]) / unit
    raise RuntimeError(f"{name} missing from /metrics")


async def rss(http: httpx.AsyncClient) -> float:
    return await gauge(http, RSS)


async def soak(url: str, clients: int, duration: float, seed: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        load = Soak(http, seed)
        await load.chat()  # warm: the first answer allocates llama.cpp's buffers
        start_mb = await rss(http)
        peak_mb = start_mb
        began = time.monotonic()
        until = began + duration
        by_minute: list[float] = []  # resident memory at the end of each minute of load
        cached_by_minute: list[float] = []  # what of it the prefix cache's RAM tier holds
        history_by_minute: list[list[int]] = []  # draft history: tokens kept, windows indexed
        workers = [asyncio.create_task(load.worker(i, until)) for i in range(clients)]
        while not all(w.done() for w in workers):
            await asyncio.sleep(min(5.0, max(0.1, until - time.monotonic())))
            now_mb = await rss(http)
            peak_mb = max(peak_mb, now_mb)
            if time.monotonic() - began >= 60 * (len(by_minute) + 1):
                by_minute.append(round(now_mb, 1))
                cached_by_minute.append(round(await gauge(http, RAM_TIER), 1))
                history_by_minute.append([int(await gauge(http, g, 1)) for g in HISTORY])
        await asyncio.gather(*workers)
        end_mb = await rss(http)
    errors = sum(n for s, n in load.statuses.items() if s.startswith("5") and s != "503")
    dropped = sum(n for s, n in load.statuses.items() if not s.isdigit())
    return {
        "duration_s": duration,
        "clients": clients,
        "requests": sum(load.kinds.values()),
        "by_kind": dict(load.kinds),
        "statuses": dict(load.statuses),
        "server_errors": errors,
        "dropped": dropped,
        "rss_start_mb": round(start_mb, 1),
        "rss_peak_mb": round(peak_mb, 1),
        "rss_end_mb": round(end_mb, 1),
        "rss_by_minute_mb": by_minute,
        "ram_tier_by_minute_mb": cached_by_minute,
        "draft_history_by_minute": history_by_minute,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server on loopback")
    where.add_argument("--model", help="start a server with this model for the soak")
    p.add_argument("--duration", type=float, default=60, help="seconds of load (max 24 h)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (max 32)")
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    duration, clients = min(args.duration, 86_400), max(1, min(args.clients, 32))
    with tempfile.TemporaryDirectory(prefix="edgeinf-soak-") as tmp:
        served = None
        if args.model:
            flags = ["-m", args.model, "--ctx", str(args.ctx), "--parallel", str(args.parallel)]
            served = Served(Path(tmp), flags)
            url = served.url
        else:
            url = args.url
        if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            print("soak tests target loopback only", file=sys.stderr)
            return 2
        report = asyncio.run(soak(url, clients, duration, args.seed))
        if served is not None:
            report["exit_code"] = served.stop()
    print(json.dumps(report, indent=2))
    clean = report.get("exit_code", 0) == 0
    return 0 if clean and not report["server_errors"] and not report["dropped"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
