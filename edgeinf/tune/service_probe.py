"""Measurements through the runtime's own service, each in a fresh process like child.py:

    python -m edgeinf.tune.service_probe '{"probe": "speculative", "path": ..., "mode": ...}'
    python -m edgeinf.tune.service_probe '{"probe": "parallel", "path": ..., "parallel": 4}'

speculative: greedy decode speed on an edit (copies its input) and on a word problem.
parallel: that many answers decoded together in one batch; aggregate and per-answer speed.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edgeinf.bench.workloads import prompts
from edgeinf.config import load_settings
from edgeinf.service import ChatRequest, ChatService, Turn
from edgeinf.tune.child import exit_with_parent
from edgeinf.types import Message, SamplingParams


def _service(job: dict[str, Any], state: Path, parallel: int = 1, **more: Any) -> ChatService:
    settings = load_settings(
        threads=int(job["threads"]), kv_type=job["kv_type"], state_dir=state, **more
    )
    return ChatService(settings, job["path"], parallel=parallel)


def speculative(job: dict[str, Any], state: Path) -> dict[str, Any]:
    mode = job["mode"]
    service = _service(job, state, speculative=mode, draft_model=job.get("draft"))
    out: dict[str, Any] = {}
    try:
        for workload in ("edit", "chat"):
            messages = (Message("user", prompts(workload, 1)[0]),)
            params = SamplingParams(max_tokens=int(job["decode_tokens"]), temperature=0.0)
            turn = service.respond(ChatRequest(messages, params))
            turn.generation.text()
            assert turn.generation.completion is not None
            out[f"{workload}_tok_s"] = round(turn.generation.completion.timings.decode_tok_s, 2)
            stats = turn.generation.draft_stats
            out[f"{workload}_acceptance"] = round(stats.accepted / max(stats.drafted, 1), 3)
    finally:
        service.close()
    out["decode_tok_s"] = round(statistics.geometric_mean(out[k] for k in out if "tok_s" in k), 2)
    return out


def parallel(job: dict[str, Any], state: Path) -> dict[str, Any]:
    n = int(job["parallel"])
    service = _service(job, state, parallel=n, speculative="off")
    done = threading.Semaphore(0)
    turns: list[Turn] = []

    def finished(turn: Turn | None, error: BaseException | None) -> None:
        if turn is not None and error is None:
            turns.append(turn)
        done.release()

    try:
        service.start_batching(n)
        params = SamplingParams(max_tokens=int(job["decode_tokens"]), temperature=0.0)
        started = time.perf_counter()
        for text in prompts("chat", n):
            service.submit(ChatRequest((Message("user", text),), params), lambda _: None, finished)
        for _ in range(n):
            done.acquire(timeout=900)
        wall = time.perf_counter() - started
    finally:
        service.close()
    completions = [t.completion for t in turns if t.completion is not None]
    tokens = sum(c.usage.completion_tokens for c in completions)
    return {
        "aggregate_tok_s": round(tokens / wall, 2),
        "decode_tok_s": round(statistics.mean(c.timings.decode_tok_s for c in completions), 2),
    }


if __name__ == "__main__":
    exit_with_parent()
    job = json.loads(sys.argv[1])
    probe = {"speculative": speculative, "parallel": parallel}[job["probe"]]
    # The user's state directory: speculation's cost calibration is kept in its device
    # profile (once per device). No session is saved: no request here has a session id.
    print(json.dumps(probe(job, Path(job["state_dir"]))))
