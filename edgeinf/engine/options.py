"""How to load a model and size its context: plain values (the service resolves them from
the app's settings)."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from edgeinf.config import KvType


@dataclass(frozen=True)
class EngineOptions:
    n_ctx: int = 4096
    n_batch: int = 512
    n_seq_max: int = 1
    threads: int = 1
    threads_batch: int = 1
    n_gpu_layers: int = 0
    kv_type: KvType = "f16"
    use_mmap: bool = True
    chat_template: str | None = None  # the operator's, instead of the file's own
    # Bitwise reproducible logits: a token's logits do not depend on what else is in its
    # batch. Repacked weights use other kernels for one token than for a batch, and
    # sequences sharing the cache's cells change the order of attention's sums; so exact
    # contexts keep weights as stored and give every sequence cells of its own (with decodes
    # kept within calibrate.exact_batch, greedy answers then never depend on batching).
    exact: bool = False


def default_gpu_layers() -> int:
    """All layers on Apple Silicon (Metal shares memory with the CPU); none elsewhere."""
    is_apple_silicon = platform.system() == "Darwin" and platform.machine() == "arm64"
    return -1 if is_apple_silicon else 0
