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
import time
from pathlib import Path
from typing import Any

from edgeinf.bench.workloads import prompts
from edgeinf.config import load_settings
from edgeinf.service.local import ChatService
from edgeinf.service.local_answer import ChatRequest
from edgeinf.tune.child import exit_with_parent
from edgeinf.types import Message, SamplingParams


def _service(job: dict[str, Any], state: Path, parallel: int = 1, **more: Any) -> ChatService:
    settings = load_settings(  # a probe's answers are not worth keeping
        threads=int(job["threads"]),
        kv_type=job["kv_type"],
        state_dir=state,
        prefix_cache=False,
        **more,
    )
    return ChatService(settings, job["path"], parallel=parallel, max_queue=parallel)


def speculative(job: dict[str, Any], state: Path) -> dict[str, Any]:
    mode = job["mode"]
    service = _service(job, state, speculative=mode, draft_model=job.get("draft"))
    out: dict[str, Any] = {}
    try:
        for workload in ("edit", "chat"):
            messages = (Message("user", prompts(workload, 1)[0]),)
            params = SamplingParams(max_tokens=int(job["decode_tokens"]), temperature=0.0)
            local = service.local(ChatRequest(messages, params))
            "".join(local)
            assert local.result is not None
            out[f"{workload}_tok_s"] = round(local.result.completion.timings.decode_tok_s, 2)
            acceptance = local.result.accepted / max(local.result.drafted, 1)
            out[f"{workload}_acceptance"] = round(acceptance, 3)
    finally:
        service.close()
    out["decode_tok_s"] = round(statistics.geometric_mean(out[k] for k in out if "tok_s" in k), 2)
    return out


def parallel(job: dict[str, Any], state: Path) -> dict[str, Any]:
    n = int(job["parallel"])
    service = _service(job, state, parallel=n, speculative="off")
    try:
        params = SamplingParams(max_tokens=int(job["decode_tokens"]), temperature=0.0)
        started = time.perf_counter()
        # All admitted at once, so the batcher decodes them together while each is read.
        answers = [
            service.local(ChatRequest((Message("user", text),), params))
            for text in prompts("chat", n)
        ]
        for answer in answers:
            "".join(answer)
        wall = time.perf_counter() - started
    finally:
        service.close()
    completions = [a.result.completion for a in answers if a.result is not None]
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
