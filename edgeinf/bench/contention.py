"""Other work on the machine: CPU-bound processes beside what is measured, as on a Pi or a
laptop that does more than serve."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from multiprocessing.synchronize import Event


def _spin(stop: Event) -> None:
    while not stop.is_set():
        sum(range(10_000))


@contextlib.contextmanager
def busy_loops(n: int) -> Iterator[None]:
    """`n` processes that keep a core busy each until the block ends."""
    context = multiprocessing.get_context("spawn")  # no copy of the caller's threads
    stop = context.Event()
    procs = [context.Process(target=_spin, args=(stop,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
