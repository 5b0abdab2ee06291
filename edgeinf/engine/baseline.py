"""llama-cpp-python's own high-level path (`Llama.create_completion`), as a benchmark peer."""

from __future__ import annotations

import time
from pathlib import Path

from llama_cpp import Llama

from edgeinf.engine.options import EngineOptions


class PeerLlama:
    """The `Llama` class a Python user would pick instead of edgeinf, configured alike."""

    def __init__(self, path: Path, opts: EngineOptions) -> None:
        self._llama = Llama(
            model_path=str(path),
            n_ctx=opts.n_ctx,
            n_batch=opts.n_batch,
            n_ubatch=opts.n_batch,
            n_threads=opts.threads,
            n_threads_batch=opts.threads_batch,
            n_gpu_layers=opts.n_gpu_layers,
            verbose=False,
        )

    def decode_tok_s(self, prompt: list[int], max_tokens: int) -> tuple[float, int]:
        """Greedy streaming completion; (tokens/s after the first token, tokens generated)."""
        self._llama.reset()  # no prefix reuse from the previous run: measure the same work
        first = last = 0.0
        n = 0
        for chunk in self._llama.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, stream=True
        ):
            if chunk["choices"][0]["finish_reason"] is not None:
                break  # the closing chunk carries no token
            last = time.perf_counter()
            first = first or last
            n += 1
        return ((n - 1) / (last - first) if n > 1 else 0.0), n

    def close(self) -> None:
        self._llama.close()
