"""Overload an edgeinf server on loopback and time the requests it admits.

Sends N concurrent chat requests (N = a multiple of the server's capacity, parallel +
max_queue), some streamed, some from clients that leave early, first at exactly the capacity
and then at each multiple, optionally with CPU-bound busy loops beside the server. Prints
the time of one request alone (with the cores idle, then beside the busy loops: median and
slowest of five), then for every round the status counts, the p50/p99/max
seconds to the end of each admitted answer, each round's ratio to the capacity round, and
`max_vs_place`: the slowest admitted answer against what the last place in the queue implies
(ceil(capacity / parallel) answers alone, one after another). Exits 1 on any status but 200,
503 with Retry-After, or a client that left. Loopback only; every round is bounded by
--timeout.

    python tools/overload.py --url http://127.0.0.1:8088 --parallel 2 --capacity 18
    python tools/overload.py --url http://127.0.0.1:8088 --parallel 2 --capacity 18 --busy 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import httpx

from edgeinf.bench.contention import busy_loops


async def one(
    http: httpx.AsyncClient, i: int, max_tokens: int, stream: bool, leave_after: float | None
) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": f"Count from {i} to {i + 40}, one per line."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    started = time.perf_counter()
    try:
        if leave_after is not None:
            with contextlib.suppress(httpx.TimeoutException):
                r = await http.post(
                    "/v1/chat/completions", json=body, timeout=httpx.Timeout(leave_after)
                )
                # answered (or refused) before it left
                return {"status": r.status_code, "seconds": time.perf_counter() - started}
            return {"status": "left"}
        if not stream:
            r = await http.post("/v1/chat/completions", json=body)
            if r.status_code != 200:
                return {"status": _refusal(r)}
            ok = bool(r.json()["choices"][0]["message"]["content"])
            return {"status": 200 if ok else "empty", "seconds": time.perf_counter() - started}
        async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                return {"status": _refusal(resp)}
            text, done = "", False
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    if "error" in event:
                        return {"status": "stream_error"}
                    if event["choices"]:
                        text += event["choices"][0].get("delta", {}).get("content") or ""
            status = 200 if done and text else "unfinished"
            return {"status": status, "seconds": time.perf_counter() - started}
    except httpx.TimeoutException:
        return {"status": "timeout"}
    except httpx.HTTPError as exc:  # a dropped connection is the server's fault
        return {"status": type(exc).__name__}


def _refusal(r: httpx.Response) -> int | str:
    if r.status_code == 503 and not r.headers.get("retry-after", "").isdigit():
        return "503 without Retry-After"
    return r.status_code


async def alone(url: str, max_tokens: int, timeout: float) -> tuple[float, float]:
    """The median and the slowest time of a round's first prompts sent one after another."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        results = [await one(http, i, max_tokens, False, None) for i in range(5)]
    if any(r["status"] != 200 for r in results):
        raise SystemExit(f"a request alone failed: {results}")
    times = [r["seconds"] for r in results]
    return statistics.median(times), max(times)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _every(i: int, share: float) -> bool:
    """Whether request i is among an evenly spread `share` of all requests."""
    return int((i + 1) * share) > int(i * share)


async def round_(
    url: str, n: int, max_tokens: int, timeout: float, streamed: float, leaving: float
) -> dict[str, Any]:
    """n concurrent requests: a `streamed` share streamed, a `leaving` share leave after 0.5 s."""
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        results = await asyncio.gather(
            *(
                one(http, i, max_tokens, _every(i, streamed), 0.5 if _every(i, leaving) else None)
                for i in range(n)
            )
        )
    statuses = Counter(str(r["status"]) for r in results)
    times = [r["seconds"] for r in results if r["status"] == 200]
    row: dict[str, Any] = {"requests": n, "statuses": dict(sorted(statuses.items()))}
    if times:
        row |= {
            "p50_s": round(statistics.median(times), 2),
            "p99_s": round(_percentile(times, 0.99), 2),
            "max_s": round(max(times), 2),
        }
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8088")
    p.add_argument("--parallel", type=int, required=True, help="the server's --parallel")
    p.add_argument("--capacity", type=int, required=True, help="the server's parallel + max_queue")
    p.add_argument("--multiples", type=float, nargs="+", default=[2, 5, 10])
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--busy", type=int, default=0, help="CPU-bound loops beside the server")
    p.add_argument("--leaving", type=float, default=0.1, help="share of clients that leave")
    p.add_argument("--streamed", type=float, default=1 / 3, help="share of streamed requests")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--settle", type=float, default=3, help="seconds between busy loops and load")
    args = p.parse_args()
    if (urlparse(args.url).hostname or "") not in ("127.0.0.1", "localhost", "::1"):
        print("load tests target loopback only", file=sys.stderr)
        return 2
    sizes = [args.capacity] + [min(int(args.capacity * m), 400) for m in args.multiples]
    rows: list[dict[str, Any]] = []
    idle_s, _ = asyncio.run(alone(args.url, args.max_tokens, args.timeout))
    with busy_loops(args.busy):
        time.sleep(args.settle if args.busy else 0)  # the server sees them at its next check
        alone_s, slowest_s = asyncio.run(alone(args.url, args.max_tokens, args.timeout))
        alone_row = {"idle_s": idle_s, "alone_s": alone_s, "alone_max_s": slowest_s}
        print(json.dumps({k: round(v, 2) for k, v in alone_row.items()}), flush=True)
        implied = math.ceil(args.capacity / args.parallel) * alone_s
        for n in sizes:
            row = asyncio.run(
                round_(args.url, n, args.max_tokens, args.timeout, args.streamed, args.leaving)
            )
            if rows and "max_s" in rows[0] and "max_s" in row:
                for key in ("p50_s", "p99_s", "max_s"):
                    row[key[:-2] + "_vs_capacity"] = round(row[key] / rows[0][key], 2)
            if "max_s" in row:
                row["max_vs_place"] = round(row["max_s"] / implied, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    bad = [r for r in rows if set(r["statuses"]) - {"200", "503", "left"}]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
