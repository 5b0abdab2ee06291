"""A circuit breaker: after a few failures in a row a dead remote costs nothing, until a
single probe finds it back."""

from __future__ import annotations

import threading
import time

BREAKER_FAILURES = 3
BREAKER_RESET_S = 30.0


class Breaker:
    """Closed, then open after `failures` in a row; one probe is let through after `reset_s`."""

    def __init__(self, failures: int = BREAKER_FAILURES, reset_s: float = BREAKER_RESET_S) -> None:
        self.failures, self.reset_s = failures, reset_s
        self._lock = threading.Lock()
        self._streak = 0
        self._opened_at: float | None = None
        self._probing = False

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or time.monotonic() - self._opened_at < self.reset_s:
                return False
            self._probing = True  # half-open: this caller is the probe
            return True

    def record(self, ok: bool) -> None:
        with self._lock:
            self._probing = False
            if ok:
                self._streak, self._opened_at = 0, None
                return
            self._streak += 1
            if self._streak >= self.failures or self._opened_at is not None:
                self._opened_at = time.monotonic()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None
