"""Router decision latency: load time, and p50/p95 of scoring a 200-token prompt; and what the
deferral rule's watch adds to decoding (reading every token's log-probability), measured
against the same answers decoded without it, alternating."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from edgeinf.bench.decode import PROMPT
from edgeinf.bench.report import summary
from edgeinf.catalog.store import LocalModel
from edgeinf.config import Settings
from edgeinf.engine.engine import Engine
from edgeinf.engine.once import answer_once
from edgeinf.engine.options import EngineOptions
from edgeinf.errors import InvalidRequestError
from edgeinf.route.deferral import RIVALS, Deferral
from edgeinf.route.dispatch import encoder_files
from edgeinf.route.encoder import SentenceEncoder
from edgeinf.route.router import Router, candidates, find
from edgeinf.service.local import engine_options
from edgeinf.tasks import gsm8k
from edgeinf.types import Message, SamplingParams


def prompt_of(encoder: SentenceEncoder, n_tokens: int) -> str:
    """Real questions joined, cut to exactly `n_tokens` of the encoder's tokenizer."""
    text = " ".join(t.messages[-1].content for t in gsm8k.tasks()[:20])
    ids = encoder.tokenizer.encode(text, add_special_tokens=False).ids[:n_tokens]
    return str(encoder.tokenizer.decode(ids))


def watch_cost(model: LocalModel, opts: EngineOptions, tokens: int, rounds: int) -> dict[str, Any]:
    """Decode speed of one answer with and without the watch's log-probabilities, alternating
    `rounds` times after a round that warms up; greedy, so both write the same tokens."""
    plain_runs: list[float] = []
    read_runs: list[float] = []
    with Engine(model.path, opts) as engine:
        prompt = engine.chat_tokens((Message("user", PROMPT),))
        plain = SamplingParams(max_tokens=tokens, temperature=0.0)
        read = replace(plain, logprobs=RIVALS)
        for i in range(rounds + 1):
            a = answer_once(engine, prompt, plain).completion
            b = answer_once(engine, prompt, read).completion
            if i:
                plain_runs.append(a.timings.decode_tok_s)
                read_runs.append(b.timings.decode_tok_s)
    without, watched = summary(plain_runs), summary(read_runs)
    return {
        "tokens": tokens,
        "rounds": rounds,
        "decode_tok_s": {"without": without, "watched": watched},
        "added_to_decode_time": round(without["median"] / watched["median"] - 1, 4),
    }


def bench_route(
    settings: Settings,
    model: LocalModel,
    remote_model: str | None,
    repeat: int,
    watch_rounds: int,
    watch_tokens: int = 128,
) -> dict[str, Any]:
    found = find(candidates(settings.router_dir, settings.state_dir), model.digest(), remote_model)
    if found is None:
        raise InvalidRequestError("no router for this model; train one: edgeinf route train")
    started = time.perf_counter()
    router = Router(*found, SentenceEncoder(*encoder_files(settings)))
    load_s = time.perf_counter() - started
    messages = (Message("user", prompt_of(router.encoder, 200)),)
    for _ in range(3):
        router.score(messages)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        router.score(messages)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "router": str(found[0]),
        "kind": found[1].kind,
        "load_s": round(load_s, 3),
        "prompt_tokens": 200,
        "repeat": repeat,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "max_ms": round(times[-1], 2),
        "deferral_rule": Deferral.read(found[0]) is not None,
        "watch": watch_cost(model, engine_options(settings), watch_tokens, watch_rounds)
        if watch_rounds
        else None,
    }
