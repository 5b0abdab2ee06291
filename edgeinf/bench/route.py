"""Router decision latency: load time, and p50/p95 of scoring a 200-token prompt."""

from __future__ import annotations

import statistics
import time
from typing import Any

from edgeinf.config import Settings
from edgeinf.errors import InvalidRequestError
from edgeinf.route.dispatch import encoder_files
from edgeinf.route.encoder import SentenceEncoder
from edgeinf.route.router import Router, candidates, find
from edgeinf.tasks import gsm8k
from edgeinf.types import Message


def prompt_of(encoder: SentenceEncoder, n_tokens: int) -> str:
    """Real questions joined, cut to exactly `n_tokens` of the encoder's tokenizer."""
    text = " ".join(t.messages[-1].content for t in gsm8k.tasks()[:20])
    ids = encoder.tokenizer.encode(text, add_special_tokens=False).ids[:n_tokens]
    return str(encoder.tokenizer.decode(ids))


def bench_route(
    settings: Settings, local_sha256: str, remote_model: str | None, repeat: int
) -> dict[str, Any]:
    found = find(candidates(settings.router_dir, settings.state_dir), local_sha256, remote_model)
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
    }
