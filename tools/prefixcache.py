"""The prefix cache as OpenAI clients meet it: whole conversations resent each turn, no session
id, through the official `openai` client, against `edgeinf serve` on loopback.

    python tools/prefixcache.py -m qwen2.5-coder-1.5b-instruct-q4_k_m restart --tokens 2000
    python tools/prefixcache.py -m qwen2.5-coder-0.5b-instruct-q4_k_m interleaved

restart: a conversation of about --tokens tokens is answered, the server is restarted, and
the time to first token of its next turn is set against that of the same conversation with
another first word (so it shares no prefix with anything saved: the same length, a cold
prefill), on the same restarted server, in alternating order, --repeat times.

interleaved: --conversations conversations take turns on a server with --parallel slots (two
clients at a time), --rounds rounds; the median time to first token of every turn after the
first, with the prefix cache on and off (EDGEINF_PREFIX_CACHE=false).

budget: --turns turns of each of --conversations conversations, round robin, the server
restarted every --restart-every turns, under a disk budget of --budget-mb: the disk the
saved states take after each server, and where each turn's cached tokens came from.

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
from urllib.parse import urlparse

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


def conversation(
    tag: int, tokens: int, source: str, topic: int | None = None
) -> list[dict[str, str]]:
    """About `tokens` tokens of a code review: a system prompt whose first word is `tag`'s
    own (two tags share nothing but the template's opening), then turns over the slice of
    `source` that `topic` (by default `tag`) picks."""
    role = ROLES[tag % len(ROLES)]
    messages = [{"role": "system", "content": f"{role.title()} #{tag}: you help with Python code."}]
    start = ((tag if topic is None else topic) * 7919) % max(1, len(source) - 40_000)
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
    model = (await client.models.list()).data[0].id
    """One streamed answer: time to first token, its text and usage."""
    started = time.perf_counter()
    ttft, text, usage = None, [], None
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        model=model,
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
    ttft = ttft or time.perf_counter() - started  # an empty answer: its end
    extra = (usage.model_extra if usage else None) or {}
    details = usage.prompt_tokens_details if usage else None
    return {
        "ttft_s": ttft,
        "text": "".join(text),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "cached_tokens": details.cached_tokens if details else None,
        "cached_from": extra.get("cached_from"),
    }


def client(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)


def restart(model: str, tokens: int, repeat: int, tmp: Path) -> dict[str, Any]:
    flags = ["-m", model, "--ctx", str(max(4096, tokens * 2))]
    source = _source()
    rows = []
    for r in range(repeat):
        state = tmp / f"restart-{r}"
        state.mkdir()
        kept = conversation(2 * r, tokens, source, topic=r)
        with Served(state, flags) as served:
            first = asyncio.run(turn(client(served.url), kept))
        follow = [
            {"role": "assistant", "content": first["text"]},
            {"role": "user", "content": "Which function above is the longest?"},
        ]
        resumed = [*kept, *follow]
        cold = [*conversation(2 * r + 1, tokens, source, topic=r), *follow]  # the same after
        order = [("resumed", resumed), ("cold", cold)][:: 1 - 2 * (r % 2)]
        with Served(state, flags) as served:  # the restart: nothing in its slots or RAM
            api = client(served.url)
            got = {name: asyncio.run(turn(api, m)) for name, m in order}
        rows.append({name: {k: v for k, v in t.items() if k != "text"} for name, t in got.items()})
    warm = statistics.median(row["resumed"]["ttft_s"] for row in rows)
    cold_s = statistics.median(row["cold"]["ttft_s"] for row in rows)
    return {"runs": rows, "ttft_resumed_s": warm, "ttft_cold_s": cold_s, "speedup": cold_s / warm}


async def _rounds(
    url: str, conversations: int, rounds: int, tokens: int, clients: int
) -> list[dict[str, Any]]:
    source = _source()
    talks = [conversation(100 + c, tokens, source) for c in range(conversations)]
    gate = asyncio.Semaphore(clients)
    api = client(url)
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


def _later_turns(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The turns after each conversation's first: what a returning conversation meets."""
    later = [t for t in turns if t["round"] > 0]
    known = [t for t in later if t["cached_tokens"] is not None]
    return {
        "ttft_p50_s": statistics.median(t["ttft_s"] for t in later),
        "cached_tokens_p50": statistics.median(t["cached_tokens"] for t in known)
        if known
        else None,
        "cached_from": sorted({str(t["cached_from"]) for t in later}),
    }


def interleaved(
    model: str,
    conversations: int,
    rounds: int,
    parallel: int,
    tokens: int,
    tmp: Path,
    peer: str | None,
) -> dict[str, Any]:
    flags = ["-m", model, "--parallel", str(parallel), "--ctx", str(max(4096, tokens * 2))]
    out: dict[str, Any] = {}
    for cache in ("on", "off"):
        state = tmp / f"interleaved-{cache}"
        state.mkdir()
        env = {"EDGEINF_PREFIX_CACHE": "true" if cache == "on" else "false"}
        with Served(state, flags, env) as served:
            turns = asyncio.run(_rounds(served.url, conversations, rounds, tokens, 2))
        out[cache] = _later_turns(turns)
    out["speedup"] = out["off"]["ttft_p50_s"] / out["on"]["ttft_p50_s"]
    if peer is not None:  # another server on loopback, llama-server for one
        out["peer"] = _later_turns(asyncio.run(_rounds(peer, conversations, rounds, tokens, 2)))
        out["speedup_vs_peer"] = out["peer"]["ttft_p50_s"] / out["on"]["ttft_p50_s"]
    return out


def _disk_mb(state: Path) -> float:
    return sum(p.stat().st_size for p in (state / "prefix").glob("*.kv")) / 1e6


def budget(
    model: str, conversations: int, turns: int, budget_mb: int, every: int, tmp: Path
) -> dict[str, Any]:
    """Turns over many conversations, restarting the server every `every` turns: the disk
    the saved states take, after each restart and at the end, against the budget."""
    state = tmp / "budget"
    state.mkdir()
    flags = ["-m", model, "--ctx", "4096"]
    env = {"EDGEINF_SESSIONS_BUDGET_MB": str(budget_mb)}
    source = _source()
    talks = [conversation(200 + c, 300, source) for c in range(conversations)]
    tiers: dict[str, int] = {}
    disk: list[float] = []
    done = 0
    while done < conversations * turns:
        with Served(state, flags, env) as served:
            api = client(served.url)
            for _ in range(min(every, conversations * turns - done)):
                c = done % conversations
                piece = source[(done * 997) % 60_000 :][:300]
                talks[c].append({"role": "user", "content": f"And this part?\n{piece}"})
                got = asyncio.run(turn(api, talks[c]))
                talks[c].append({"role": "assistant", "content": got["text"]})
                tiers[str(got["cached_from"])] = tiers.get(str(got["cached_from"]), 0) + 1
                done += 1
        disk.append(round(_disk_mb(state), 1))
    return {
        "turns": done,
        "conversations": conversations,
        "restarts": len(disk) - 1,
        "budget_mb": budget_mb * (1 << 20) / 1e6,
        "disk_mb_after_each_server": disk,
        "turns_by_cache_tier": tiers,
    }


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
    i.add_argument("--peer", help="also run the rounds against this server on loopback")
    b = sub.add_parser("budget", help="many turns, restarts, the disk budget held")
    b.add_argument("--conversations", type=int, default=20)
    b.add_argument("--turns", type=int, default=10, help="per conversation")
    b.add_argument("--budget-mb", type=int, default=64)
    b.add_argument("--restart-every", type=int, default=50, help="turns")
    args = p.parse_args()
    peer = getattr(args, "peer", None)
    if peer and urlparse(peer).hostname not in ("127.0.0.1", "localhost"):
        sys.exit("--peer must be a server on loopback")
    with tempfile.TemporaryDirectory(prefix="edgeinf-prefixcache-") as tmp:
        m, where = args.model, Path(tmp)
        if args.what == "restart":
            report = restart(m, args.tokens, min(args.repeat, 10), where)
        elif args.what == "budget":
            n, turns = min(args.conversations, 64), min(args.turns, 50)
            report = budget(m, n, turns, args.budget_mb, args.restart_every, where)
        else:
            n, rounds = min(args.conversations, 32), min(args.rounds, 10)
            report = interleaved(m, n, rounds, args.parallel, args.tokens, where, args.peer)
    print(json.dumps({"model": args.model, args.what: report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
