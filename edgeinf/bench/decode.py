"""Decode speed of edgeinf against llama-cpp-python's streaming path, alternating runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from edgeinf.bench.peers import PeerLlama
from edgeinf.bench.report import header, summary
from edgeinf.catalog.store import LocalModel
from edgeinf.engine.engine import Engine
from edgeinf.engine.native import library_version, system_info
from edgeinf.engine.once import answer_once
from edgeinf.engine.options import EngineOptions
from edgeinf.types import Message, SamplingParams

# Long enough that neither side stops before `tokens`: both are greedy on the same model.
PROMPT = (
    "Write a complete Python module implementing a red-black tree with insert, delete, "
    "search and in-order traversal. Include docstrings and type hints."
)


def llama_bench_tok_s(
    binary: Path, model: Path, threads: int, tokens: int, depth: int = 0
) -> float:
    """One run of llama.cpp's own llama-bench (tg only), after `depth` tokens already in the
    context: the ceiling for the bindings."""
    out = subprocess.run(
        [
            str(binary),
            "-m",
            str(model),
            "-t",
            str(threads),
            "-p",
            "0",
            "-n",
            str(tokens),
            "-d",
            str(depth),
            "-r",
            "1",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)[0]["avg_ts"])


def bench_decode(
    model: LocalModel,
    opts: EngineOptions,
    tokens: int,
    repeat: int,
    llama_bench: Path | None = None,
) -> dict[str, Any]:
    ours_runs: list[float] = []
    peer_runs: list[float] = []
    ceiling_runs: list[float] = []
    deep_runs: list[float] = []  # llama-bench after as many tokens as the prompt holds
    counts: set[int] = set()
    with Engine(model.path, opts) as engine:
        prompt = engine.chat_tokens((Message("user", PROMPT),))
        params = SamplingParams(max_tokens=tokens, temperature=0.0)
        peer = PeerLlama(model.path, opts)
        try:
            for i in range(repeat + 1):  # the first round warms caches and is not counted
                gen = answer_once(engine, prompt, params)
                peer_tok_s, peer_n = peer.decode_tok_s(prompt, tokens)
                if i:
                    ours_runs.append(gen.completion.timings.decode_tok_s)
                    peer_runs.append(peer_tok_s)
                    counts |= {gen.completion.usage.completion_tokens, peer_n}
                    if llama_bench:
                        ceiling_runs.append(
                            llama_bench_tok_s(llama_bench, model.path, opts.threads, tokens)
                        )
                        deep_runs.append(
                            llama_bench_tok_s(
                                llama_bench, model.path, opts.threads, tokens, len(prompt)
                            )
                        )
        finally:
            peer.close()
    ours, peer_s = summary(ours_runs), summary(peer_runs)
    ceiling: dict[str, Any] = {}
    if ceiling_runs:
        bench_s, deep_s = summary(ceiling_runs), summary(deep_runs)
        ceiling = {
            "llama_bench": {"tg_tok_s": bench_s, "tg_after_prompt_tok_s": deep_s},
            "prompt_tokens": len(prompt),
            "ratio_vs_llama_bench": round(ours["median"] / bench_s["median"], 3),
            "ratio_vs_llama_bench_after_prompt": round(ours["median"] / deep_s["median"], 3),
        }
    return {
        **header(model, library_version(), system_info()),
        "threads": opts.threads,
        "tokens": tokens,
        "tokens_generated": sorted(counts),
        "repeat": repeat,
        "edgeinf": {"decode_tok_s": ours},
        "llama_cpp_python": {"decode_tok_s": peer_s},
        "ratio": round(ours["median"] / peer_s["median"], 3),
        **ceiling,
    }
