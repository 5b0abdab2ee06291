"""Several models in one `edgeinf serve`, and embeddings, measured on loopback.

    python tools/models.py switch -a gemma-3-270m-q4_k_m -b qwen2.5-coder-0.5b-instruct-q4_k_m
    python tools/models.py share -a gemma-3-270m-q4_k_m -b qwen2.5-coder-0.5b-instruct-q4_k_m
    python tools/models.py embed -m minilm-l6-v2-int8

switch: with max_loaded 1, requests alternate between models A and B, so that each one
unloads the other first; the time of a request that switches against one that finds its
model loaded (max_loaded 2, same run), --repeat times each.

share: one client decoding with A alone, then two clients, one on A and one on B at once:
each one's decode speed, and the sum, against A alone (how the models share the cores:
engine.turns).

embed: --texts texts of sentence length, embedded in one request against one request per
text (the way sentence-transformers-style code calls a model), and the same texts' vectors
compared (cosine of each pair, which must be 1 within float error).

Prints one JSON object; figures are ratios within one run (see the project's BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edgeinf.bench.server import Served

ASK = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def room(state: Path, name: str) -> Path:
    """A state directory of its own for one server."""
    (state / name).mkdir()
    return state / name


def chat(url: str, model: str, tokens: int) -> dict[str, Any]:
    body = {"model": model, "messages": ASK, "max_tokens": tokens, "temperature": 0}
    started = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    r.raise_for_status()
    usage = r.json()["usage"]
    return {"seconds": time.perf_counter() - started, "tokens": usage["completion_tokens"]}


def switch(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for loaded in (1, 2):
        env = {"EDGEINF_MAX_LOADED": str(loaded)}
        with Served(room(state, f"max{loaded}"), ["-m", args.a, "--ctx", "2048"], env) as served:
            chat(served.url, args.b, 4)  # both have been loaded once (the page cache is warm)
            times: dict[str, list[float]] = {args.a: [], args.b: []}
            for _ in range(args.repeat):
                for model in (args.a, args.b):
                    times[model].append(chat(served.url, model, 4)["seconds"])
            out[f"max_loaded_{loaded}"] = {m: statistics.median(t) for m, t in times.items()}
    one, two = out["max_loaded_1"], out["max_loaded_2"]
    out["switch_cost_s"] = {m: round(one[m] - two[m], 3) for m in one}
    return out


def together(runs: list[tuple[str, str]], tokens: int) -> dict[str, dict[str, Any]]:
    """Answers started at once: (server URL, model) each."""
    out: dict[str, dict[str, Any]] = {}

    def run(url: str, model: str) -> None:
        out[model] = chat(url, model, tokens)

    threads = [threading.Thread(target=run, args=pair) for pair in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def speed(r: dict[str, Any]) -> float:
    return float(r["tokens"] / r["seconds"])


def share(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    flags = ["--ctx", "2048", "--parallel", "1"]
    models = (args.a, args.b)
    with Served(room(state, "one"), ["-m", args.a, *flags]) as served:
        chat(served.url, args.b, 4)  # both loaded
        alone = {m: speed(chat(served.url, m, args.tokens)) for m in models}
        one = together([(served.url, m) for m in models], args.tokens)
    with (
        Served(room(state, "a"), ["-m", args.a, *flags]) as a,
        Served(room(state, "b"), ["-m", args.b, *flags]) as b,
    ):
        for s, m in ((a, args.a), (b, args.b)):
            chat(s.url, m, 4)
        two = together([(a.url, args.a), (b.url, args.b)], args.tokens)

    def shares(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        of = {m: round(speed(runs[m]) / alone[m], 3) for m in models}
        return {"tok_s": {m: round(speed(runs[m]), 2) for m in models}, "of_alone": of,
                "sum_of_shares": round(sum(of.values()), 3)}  # fmt: skip

    return {
        "alone_tok_s": {m: round(v, 2) for m, v in alone.items()},
        "one_server_both_models": shares(one),
        "two_servers_one_model_each": shares(two),
    }


def sentences(n: int) -> list[str]:
    """Real prose nobody here wrote, sentence by sentence: the standard library's docs."""
    import inspect
    import re
    import textwrap

    prose = " ".join(inspect.getdoc(f) or "" for _, f in inspect.getmembers(textwrap))
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", prose) if len(s.split()) >= 5]
    return [found[i % len(found)] for i in range(n)]


def embed(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    texts = sentences(args.texts)
    with Served(room(state, "embed"), ["-m", args.chat, "--ctx", "512"]) as served:

        def post(batch: list[str]) -> np.ndarray:
            body = {"model": args.m, "input": batch}
            r = httpx.post(f"{served.url}/v1/embeddings", json=body, timeout=600)
            r.raise_for_status()
            return np.array([d["embedding"] for d in r.json()["data"]])

        post(texts[:2])  # loaded
        rounds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            batched = post(texts)
            batched_s = time.perf_counter() - started
            started = time.perf_counter()
            single = np.vstack([post([t]) for t in texts])
            single_s = time.perf_counter() - started
            rounds.append((batched_s, single_s))
        cosine = np.sum(batched * single, axis=1)
    batched_s = statistics.median(r[0] for r in rounds)
    single_s = statistics.median(r[1] for r in rounds)
    return {
        "texts": len(texts),
        "batched_texts_per_s": round(len(texts) / batched_s, 1),
        "one_at_a_time_texts_per_s": round(len(texts) / single_s, 1),
        "batched_vs_one_at_a_time": round(single_s / batched_s, 2),
        "min_cosine_batched_vs_single": round(float(cosine.min()), 6),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("switch")
    s.add_argument("-a", required=True)
    s.add_argument("-b", required=True)
    s.add_argument("--repeat", type=int, default=5)
    h = sub.add_parser("share")
    h.add_argument("-a", required=True)
    h.add_argument("-b", required=True)
    h.add_argument("--tokens", type=int, default=128)
    e = sub.add_parser("embed")
    e.add_argument("-m", required=True, help="the embedding model")
    e.add_argument("--chat", default="gemma-3-270m-q4_k_m", help="the server's default model")
    e.add_argument("--texts", type=int, default=64)
    e.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeinf-models-") as tmp:
        run = {"switch": switch, "share": share, "embed": embed}[args.what]
        print(json.dumps({"measure": args.what, **run(args, Path(tmp))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
