"""The prefix cache as OpenAI clients meet it: whole conversations resent each turn, no session
id, through the official `openai` client, against `edgeinf serve` on loopback.

    python tools/prefixcache.py -m qwen2.5-coder-1.5b-instruct-q4_k_m restart --tokens 2000
    python tools/prefixcache.py -m qwen2.5-coder-0.5b-instruct-q4_k_m interleaved

restart: a conversation of about --tokens tokens is answered, the server is restarted, and
the time to first token of its next turn is set against that of a conversation of the same
length that shares nothing with it (its text differs from the first token on), on the same
restarted server, in alternating order, --repeat times.

interleaved: --conversations conversations take turns on a server with --parallel slots (two
clients at a time), --rounds rounds; the median time to first token of every turn after the
first, with the prefix cache on and off (EDGEINF_PREFIX_CACHE=false), servers alternating.

Prints one JSON object; figures are ratios within one run (see the project's BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from edgeinf.bench.server import Served

CHARS_PER_TOKEN = 3.3  # Python source through Qwen2.5's tokenizer, near enough to aim
ROLES = ["reviewer", "tutor", "maintainer", "auditor", "mentor", "architect", "tester", "editor"]


def _source() -> str:
    """Real code nobody here wrote, to talk about: the standard library's."""
    import argparse as a
    import json.decoder as d
    import textwrap as t

    return "\n".join(inspect.getsource(m) for m in (t, d, a))


def conversation(tag: int, tokens: int, source: str) -> list[dict[str, str]]:
    """About `tokens` tokens of a code review: a system prompt whose first word is `tag`'s
    own (two tags share nothing but the template's opening), then turns over a slice of
    `source` that `tag` picks."""
    role = ROLES[tag % len(ROLES)]
    messages = [{"role": "system", "content": f"{role.title()} #{tag}: you help with Python code."}]
    start = (tag * 7919) % max(1, len(source) - 40_000)
    pos, budget = start, int(tokens * CHARS_PER_TOKEN)
    while pos - start < budget:
        piece = source[pos : pos + 1500]
        pos += 1500
        messages += [
            {"role": "user", "content": f"Read this code:\n```python\n{piece}\n```"},
            {"role": "assistant", "content": "Read. What should I do with it?"},
        ]
    return messages[:-1]


async def turn(client: AsyncOpenAI, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One streamed answer: time to first token, its text and usage."""
    started = time.perf_counter()
    ttft, text, usage = None, [], None
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        model="default",
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft or time.perf_counter() - started
            text.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert ttft is not None and usage is not None, "the answer had no text or no usage"
    extra = usage.model_extra or {}
    details = usage.prompt_tokens_details
    return {
        "ttft_s": ttft,
        "text": "".join(text),
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": details.cached_tokens if details else 0,
        "cached_from": extra.get("cached_from"),
    }


def client(served: Served) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0, timeout=600)


def restart(model: str, tokens: int, repeat: int, tmp: Path) -> dict[str, Any]:
    flags = ["-m", model, "--ctx", str(max(4096, tokens * 2))]
    source = _source()
    rows = []
    for r in range(repeat):
        state = tmp / f"restart-{r}"
        state.mkdir()
        kept = conversation(2 * r, tokens, source)
        served = Served(state, flags)
        first = asyncio.run(turn(client(served), kept))
        served.stop()
        resumed = [
            *kept,
            {"role": "assistant", "content": first["text"]},
            {"role": "user", "content": "Which function above is the longest?"},
        ]
        cold = conversation(2 * r + 1, tokens, source)
        cold.append({"role": "user", "content": "Which function above is the longest?"})
        served = Served(state, flags)  # the restart: nothing in its slots or RAM
        order = [("resumed", resumed), ("cold", cold)]
        got = {name: asyncio.run(turn(client(served), m)) for name, m in order[:: 1 - 2 * (r % 2)]}
        served.stop()
        rows.append({name: {k: v for k, v in t.items() if k != "text"} for name, t in got.items()})
    warm = statistics.median(row["resumed"]["ttft_s"] for row in rows)
    cold_s = statistics.median(row["cold"]["ttft_s"] for row in rows)
    return {"runs": rows, "ttft_resumed_s": warm, "ttft_cold_s": cold_s, "speedup": cold_s / warm}


async def _rounds(
    served: Served, conversations: int, rounds: int, tokens: int, clients: int
) -> list[dict[str, Any]]:
    source = _source()
    talks = [conversation(100 + c, tokens, source) for c in range(conversations)]
    gate = asyncio.Semaphore(clients)
    api = client(served)
    done: list[dict[str, Any]] = []

    async def one(c: int, k: int) -> None:
        async with gate:
            got = await turn(api, talks[c])
        talks[c] += [
            {"role": "assistant", "content": got["text"]},
            {"role": "user", "content": f"And what does line {k + 3} of it do?"},
        ]
        done.append({"round": k, **{key: v for key, v in got.items() if key != "text"}})

    for k in range(rounds):
        await asyncio.gather(*(one(c, k) for c in range(conversations)))
    return done


def interleaved(
    model: str, conversations: int, rounds: int, parallel: int, tokens: int, tmp: Path
) -> dict[str, Any]:
    flags = ["-m", model, "--parallel", str(parallel), "--ctx", str(max(4096, tokens * 2))]
    out: dict[str, Any] = {}
    for cache in ("on", "off"):
        state = tmp / f"interleaved-{cache}"
        state.mkdir()
        env = {"EDGEINF_PREFIX_CACHE": "true" if cache == "on" else "false"}
        served = Served(state, flags, env)
        try:
            turns = asyncio.run(_rounds(served, conversations, rounds, tokens, 2))
        finally:
            served.stop()
        later = [t for t in turns if t["round"] > 0]
        out[cache] = {
            "ttft_p50_s": statistics.median(t["ttft_s"] for t in later),
            "cached_tokens_p50": statistics.median(t["cached_tokens"] for t in later),
            "cached_from": sorted({str(t["cached_from"]) for t in later}),
            "prompt_tokens_p50": statistics.median(t["prompt_tokens"] for t in later),
        }
    out["speedup"] = out["off"]["ttft_p50_s"] / out["on"]["ttft_p50_s"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", required=True)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("restart", help="next-turn TTFT after a restart, against a cold prompt")
    r.add_argument("--tokens", type=int, default=2000)
    r.add_argument("--repeat", type=int, default=3)
    i = sub.add_parser("interleaved", help="more conversations than slots, cache on and off")
    i.add_argument("--conversations", type=int, default=8)
    i.add_argument("--rounds", type=int, default=3)
    i.add_argument("--parallel", type=int, default=2)
    i.add_argument("--tokens", type=int, default=800)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeinf-prefixcache-") as tmp:
        if args.what == "restart":
            report = restart(args.model, args.tokens, min(args.repeat, 10), Path(tmp))
        else:
            report = interleaved(
                args.model,
                min(args.conversations, 32),
                min(args.rounds, 10),
                args.parallel,
                args.tokens,
                Path(tmp),
            )
    print(json.dumps({"model": args.model, args.what: report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
