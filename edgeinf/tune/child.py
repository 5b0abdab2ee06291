"""One measurement in a fresh process, so that its peak memory is its own:

    python -m edgeinf.tune.child '{"path": ..., "kv_type": ..., "threads": ..., ...}'

prints one JSON object: prefill and decode speed, perplexity, accuracy on GSM8K problems,
peak resident memory.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edgeinf.engine.engine import Engine, SeqState, kv_bytes
from edgeinf.engine.once import answer_once
from edgeinf.engine.options import EngineOptions
from edgeinf.engine.perplexity import perplexity
from edgeinf.tasks import gsm8k
from edgeinf.tune import corpus
from edgeinf.types import SamplingParams

CHUNK = 512
ACCURACY_MAX_TOKENS = 256  # enough for a small model's worked answer to a GSM8K problem


def measure(job: dict[str, Any]) -> dict[str, Any]:
    threads = int(job["threads"])
    opts = EngineOptions(
        n_ctx=CHUNK * 2, n_batch=CHUNK, threads=threads, threads_batch=threads,
        kv_type=job["kv_type"],
    )  # fmt: skip
    with Engine(Path(job["path"]), opts) as engine:
        tokens = engine.vocab.tokenize(corpus.text(), add_bos=False)
        out: dict[str, Any] = {"kv_bytes_per_token": kv_bytes(engine.gguf, 1, job["kv_type"])}
        seq = SeqState(0)
        started = time.perf_counter()
        engine.prefill(seq, tokens[:CHUNK])
        out["prefill_tok_s"] = round(CHUNK / (time.perf_counter() - started), 2)
        engine.trim(seq, 0)
        params = SamplingParams(max_tokens=int(job["decode_tokens"]), temperature=0.0)
        completion = answer_once(engine, tokens[:32], params).completion
        out["decode_tok_s"] = round(completion.timings.decode_tok_s, 2)
        if job.get("ppl_tokens"):
            out["perplexity"] = round(perplexity(engine, tokens[: int(job["ppl_tokens"])]), 4)
        if job.get("accuracy_tasks"):
            out["accuracy"] = accuracy(engine, int(job["accuracy_tasks"]))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def accuracy(engine: Engine, n: int) -> float:
    """Greedy answers to the first `n` GSM8K problems of the shipped sample, graded."""
    right = 0
    for task in gsm8k.tasks()[:n]:
        params = SamplingParams(max_tokens=ACCURACY_MAX_TOKENS, temperature=0.0)
        answer = answer_once(engine, engine.chat_tokens(list(task.messages)), params)
        right += gsm8k.grade(task, answer.completion.text)
    return round(right / n, 3)


def exit_with_parent() -> None:
    """A measurement nobody waits for any more stops (its parent was killed)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    exit_with_parent()
    print(json.dumps(measure(json.loads(sys.argv[1]))))
