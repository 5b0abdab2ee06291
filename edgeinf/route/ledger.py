"""What routing remembers across restarts: the daily remote budget, and per-session state
(its last target, for stickiness; whether it was marked private, which is for good).

A ledger on a failing disk never fails a request, and fails closed: a budget it cannot read
is spent, a session whose privacy it cannot read is private, and sessions marked private are
also remembered in memory, so a write that did not reach the disk cannot unmark one."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from edgeinf.route.policy import Target

log = logging.getLogger("edgeinf.route")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    day TEXT PRIMARY KEY, requests INTEGER NOT NULL, tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS session_route (
    owner TEXT NOT NULL, session_id TEXT NOT NULL, last_target TEXT,
    private INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL,
    PRIMARY KEY (owner, session_id)
);
"""


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


class Ledger:
    def __init__(self, state_dir: Path, requests_per_day: int, tokens_per_day: int) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(state_dir / "route.sqlite", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._private: set[tuple[str, str]] = set()
        self.requests_per_day, self.tokens_per_day = requests_per_day, tokens_per_day

    def close(self) -> None:
        self._db.close()

    def spent(self) -> tuple[int, int]:
        with self._lock:
            row = self._db.execute(
                "SELECT requests, tokens FROM spend WHERE day = ?", (today(),)
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def within_budget(self, tokens: int) -> bool:
        """Room today for one more request of about `tokens` tokens."""
        try:
            requests, used = self.spent()
        except sqlite3.Error as exc:
            _unavailable(exc, "treating today's remote budget as spent")
            return False
        return requests < self.requests_per_day and used + tokens <= self.tokens_per_day

    def spend(self, tokens: int) -> None:
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO spend VALUES (?, 1, ?) ON CONFLICT(day) DO UPDATE SET "
                    "requests = requests + 1, tokens = tokens + excluded.tokens",
                    (today(), tokens),
                )
        except sqlite3.Error as exc:
            _unavailable(exc, "this remote request is not counted")

    def session(self, owner: str, session_id: str) -> tuple[Target | None, bool]:
        marked = (owner, session_id) in self._private
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT last_target, private FROM session_route "
                    "WHERE owner = ? AND session_id = ?",
                    (owner, session_id),
                ).fetchone()
        except sqlite3.Error as exc:
            _unavailable(exc, "treating the session as private")
            return None, True
        if row is None:
            return None, marked
        return row[0], bool(row[1]) or marked

    def remember(self, owner: str, session_id: str, target: Target, private: bool) -> None:
        if private:
            self._private.add((owner, session_id))
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO session_route VALUES (?, ?, ?, ?, ?) ON CONFLICT(owner, "
                    "session_id) DO UPDATE SET last_target = excluded.last_target,"
                    " private = MAX(private, excluded.private), updated = excluded.updated",
                    (owner, session_id, target, int(private), time.time()),
                )
        except sqlite3.Error as exc:
            _unavailable(exc, "the session's route is not remembered")


def _unavailable(exc: sqlite3.Error, consequence: str) -> None:
    log.warning("route ledger unavailable (%s): %s; check the state directory", exc, consequence)
