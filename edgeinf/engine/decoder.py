"""The decode thread: one thread that runs every llama.cpp computation of the models it
serves, a batch step of one model's loop after another's, and the calls made to it
(loading an engine, embedding texts) in between.

One thread, because llama.cpp built on OpenMP gives every thread that computes a team of
its own: two teams on the same cores outnumber them, and libgomp then stops spinning at the
barriers between a graph's nodes, which made the 0.5B model decode 27% slower beside an
idle second model in the same process (2 cores, a Xeon). On one thread the models share
the cores by time, each step on all of them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from edgeinf.engine.batcher import Batcher

log = logging.getLogger("edgeinf.decoder")
T = TypeVar("T")


class DecodeThread:
    def __init__(self, name: str = "edgeinf-decode") -> None:
        self.cond = threading.Condition()  # also the lock of every attached loop's queue
        self._loops: list[Batcher] = []
        self._calls: deque[tuple[Callable[[], object], concurrent.futures.Future[object]]] = deque()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the decode thread, between steps; its result, or what it raised."""
        if threading.current_thread() is self._thread:
            return fn()
        done: concurrent.futures.Future[object] = concurrent.futures.Future()
        with self.cond:
            if self._closing or not self.alive:
                raise RuntimeError("the decode thread has stopped")
            self._calls.append((fn, done))
            self.cond.notify_all()
        return done.result()  # type: ignore[return-value]

    def attach(self, loop: Batcher) -> None:
        with self.cond:
            self._loops.append(loop)
            self.cond.notify_all()

    def detach(self, loop: Batcher) -> None:
        with self.cond:
            if loop in self._loops:
                self._loops.remove(loop)

    def close(self) -> None:
        """Stop the thread once the calls asked for have run (the loops are detached)."""
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self.cond:
                while True:
                    calls = list(self._calls)
                    self._calls.clear()
                    busy = [loop for loop in self._loops if loop.ready()]
                    if calls or busy:
                        break
                    if self._closing:
                        return
                    self.cond.wait()
            for fn, done in calls:
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(fn())
                    except BaseException as exc:
                        done.set_exception(exc)
            for loop in busy:
                loop.tick()
