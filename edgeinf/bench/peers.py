"""llama-cpp-python's own high-level path (`Llama.create_completion`), as a benchmark peer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp.llama_cpp as bindings
from llama_cpp import Llama

from edgeinf.engine.native import has_amx
from edgeinf.engine.options import EngineOptions


@contextlib.contextmanager
def _plain_buffers_on_amx() -> Iterator[None]:
    """`Llama` takes llama.cpp's default model parameters, whose AMX buffers crash on CPUs
    with AMX (see engine.native.load); the peer then runs with plain buffers, as edgeinf."""
    default = bindings.llama_model_default_params
    if not has_amx():
        yield
        return

    def plain() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = plain
    try:
        yield
    finally:
        bindings.llama_model_default_params = default


class PeerLlama:
    """The `Llama` class a Python user would pick instead of edgeinf, configured alike."""

    def __init__(self, path: Path, opts: EngineOptions, draft_model: object = None) -> None:
        with _plain_buffers_on_amx():
            self._llama = Llama(
                model_path=str(path),
                draft_model=draft_model,
                logits_all=draft_model is not None,  # its speculative path needs every row
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


class PeerDiskCache:
    """llama-cpp-python's `LlamaDiskCache` on the same model: its answer to resuming."""

    def __init__(self, path: Path, opts: EngineOptions, cache_dir: Path) -> None:
        from llama_cpp.llama_cache import LlamaDiskCache

        self._peer = PeerLlama(path, opts)
        self._peer._llama.set_cache(LlamaDiskCache(str(cache_dir)))

    def complete(self, prompt: list[int]) -> None:
        """Answer with one token to the end, so the cache keeps the state afterwards."""
        self._peer._llama.create_completion(prompt, max_tokens=1, temperature=0.0)

    def ttft(self, prompt: list[int]) -> float:
        """Seconds to the first streamed token; the cache is read before and written after."""
        started = time.perf_counter()
        for _ in self._peer._llama.create_completion(
            prompt, max_tokens=1, temperature=0.0, stream=True
        ):
            return time.perf_counter() - started
        return time.perf_counter() - started

    def close(self) -> None:
        self._peer.close()
