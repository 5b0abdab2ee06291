"""Session saves off the request's critical path, one worker so saves stay in order."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("edgeinf.sessions")
Job = Callable[[], object]


class Saver:
    def __init__(self) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._work, name="edgeinf-saver", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def flush(self) -> None:
        """Wait until every submitted save has finished (or failed, with a warning)."""
        self._jobs.join()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as exc:  # a disk error, SQLite's included: this thread never dies
                # Serving goes on: the previous state on disk is intact and still valid.
                self.last_error = str(exc)
                log.warning("session save failed: %s", exc)
            finally:
                self._jobs.task_done()
        self._jobs.task_done()
