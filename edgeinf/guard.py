"""Machine readings in (psutil), plain decisions out: threads, whether a model fits."""

from __future__ import annotations

import os

import psutil

from edgeinf.errors import InsufficientMemoryError

_GIB = 1 << 30


def physical_cores() -> int:
    """Decode threads: one per physical core (hyper-threads slow token generation down)."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def check_fits(model_bytes: int, kv_bytes: int, available: int | None = None) -> None:
    """Refuse a load that would push the machine into swap or the OOM killer.

    Weights are memory-mapped, so they need page cache rather than anonymous memory; both
    compete for the same RAM, so both must fit in what is available now, with a margin.
    """
    free = psutil.virtual_memory().available if available is None else available
    need = model_bytes + kv_bytes
    margin = 256 << 20
    if need + margin > free:
        raise InsufficientMemoryError(
            f"the model needs {need / _GIB:.2f} GiB ({model_bytes / _GIB:.2f} GiB weights + "
            f"{kv_bytes / _GIB:.2f} GiB KV cache) but only {free / _GIB:.2f} GiB is available; "
            "use a smaller model or quantization, or lower --ctx"
        )
