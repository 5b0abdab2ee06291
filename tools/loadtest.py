"""Bounded load test of an OpenAI-compatible server on loopback.

Runs the same requests twice against one server: one after another, then from C concurrent
streaming clients, and prints TTFT percentiles, stalls (the longest wait between two pieces of
one answer), aggregate decode throughput and the ratio.
Only loopback URLs are accepted; the run is bounded by --requests and --timeout.

    python tools/loadtest.py --url http://127.0.0.1:8088 --clients 4 --requests 8

`--workload edit|code|chat` sends `edgeinf bench speculative`'s prompts instead of the four
short questions below (edits copy their input: the case where n-gram drafts pay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlparse

import httpx

from edgeinf.bench.workloads import prompts

PROMPTS = [
    "Write a Python function that merges two sorted lists.",
    "Explain what a closure is in JavaScript, with an example.",
    "Write a SQL query that finds duplicate emails in a users table.",
    "Write a bash one-liner that counts lines in all .py files.",
]


async def one(http: httpx.AsyncClient, prompt: str, max_tokens: int) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    try:
        return await _stream(http, body)
    except httpx.HTTPError as exc:  # a dropped connection is an error of the server's
        return {"status": type(exc).__name__}


async def _stream(http: httpx.AsyncClient, body: dict[str, object]) -> dict[str, Any]:
    started = time.perf_counter()
    first = last = 0.0
    stall = 0.0  # the longest wait between two pieces of the answer
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return {"status": resp.status_code}
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("choices") and event["choices"][0].get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                stall = max(stall, now - last) if last else 0.0
                last = now
                tokens += 1
            if usage := event.get("usage"):
                tokens = usage["completion_tokens"]
    done = time.perf_counter()
    return {
        "status": 200,
        "ttft": first - started,
        "stall": stall,
        "tokens": tokens,
        "start": started,
        "end": done,
    }


async def run(
    url: str, clients: int, requests: int, max_tokens: int, timeout: float, texts: list[str]
) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        jobs = [texts[i % len(texts)] for i in range(requests)]
        sequential = [await one(http, p, max_tokens) for p in jobs[:clients]]
        queue = list(jobs)

        async def worker() -> list[dict[str, Any]]:
            out = []
            while queue:
                out.append(await one(http, queue.pop(), max_tokens))
            return out

        results = [
            r for rs in await asyncio.gather(*(worker() for _ in range(clients))) for r in rs
        ]
    ok = [r for r in results if r["status"] == 200]
    ttfts = sorted(r["ttft"] for r in ok)
    stalls = sorted(r["stall"] for r in ok)
    span = max(r["end"] for r in ok) - min(r["start"] for r in ok)
    seq_tokens = sum(r["tokens"] for r in sequential if r["status"] == 200)
    seq_time = sum(r["end"] - r["start"] for r in sequential if r["status"] == 200)
    concurrent_tok_s = sum(r["tokens"] for r in ok) / span
    sequential_tok_s = seq_tokens / seq_time
    return {
        "url": url,
        "clients": clients,
        "requests": requests,
        "max_tokens": max_tokens,
        "errors": {
            str(r["status"]): sum(1 for x in results if x["status"] == r["status"])
            for r in results
            if r["status"] != 200
        },
        "ttft_p50_s": round(statistics.median(ttfts), 3),
        "ttft_p99_s": round(ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))], 3),
        "stall_p50_s": round(statistics.median(stalls), 3),
        "stall_max_s": round(stalls[-1], 3),
        "aggregate_tok_s": round(concurrent_tok_s, 2),
        "one_after_another_tok_s": round(sequential_tok_s, 2),
        "ratio": round(concurrent_tok_s / sequential_tok_s, 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8088")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--workload", choices=["questions", "edit", "code", "chat"], default="questions")
    args = p.parse_args()
    host = urlparse(args.url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("load tests target loopback only", file=sys.stderr)
        return 2
    requests = min(args.requests, 200)
    texts = PROMPTS if args.workload == "questions" else prompts(args.workload, requests)
    report = asyncio.run(
        run(args.url, args.clients, requests, args.max_tokens, args.timeout, texts)
    )
    report["workload"] = args.workload
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
