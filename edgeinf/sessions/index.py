"""The session index in SQLite: messages, owners, sizes and last use, for listing and LRU.

Messages live here rather than in the KV file, so a damaged KV file loses nothing: the
conversation is re-prefilled from its messages. A damaged index (overwritten, truncated) is
moved aside and started anew, like a damaged KV file: the sessions it listed are lost, the
answers go on.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from edgeinf.types import Message

log = logging.getLogger("edgeinf.sessions")
P = ParamSpec("P")
R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    model TEXT NOT NULL,
    messages TEXT NOT NULL,
    kv_tokens INTEGER NOT NULL DEFAULT 0,
    kv_bytes INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE TABLE IF NOT EXISTS prefixes (
    key TEXT PRIMARY KEY,
    kv_tokens INTEGER NOT NULL,
    kv_bytes INTEGER NOT NULL,
    last_used REAL NOT NULL
);
"""


@dataclass(frozen=True)
class SessionRow:
    id: str
    owner: str
    model: str
    messages: tuple[Message, ...]
    kv_tokens: int
    kv_bytes: int
    created: float
    last_used: float


def _row(r: sqlite3.Row) -> SessionRow:
    messages = tuple(Message.from_dict(m) for m in json.loads(r["messages"]))
    return SessionRow(
        r["id"],
        r["owner"],
        r["model"],
        messages,
        r["kv_tokens"],
        r["kv_bytes"],
        r["created"],
        r["last_used"],
    )


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether the file itself is bad (not a database, malformed); I/O errors and locks are
    OperationalError, a subclass, and are not damage: they fail the operation only."""
    return type(exc) is sqlite3.DatabaseError


def _recovering(
    method: Callable[Concatenate[SessionIndex, P], R],
) -> Callable[Concatenate[SessionIndex, P], R]:
    """Run `method`; if the index file turns out damaged, start a new one and run it again."""

    def run(self: SessionIndex, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._start_over(exc)
            return method(self, *args, **kwargs)

    return run


class SessionIndex:
    def __init__(
        self,
        path: Path,
        quarantine_dir: Path,
        rebuild: Callable[[SessionIndex], None] = lambda index: None,
    ) -> None:
        """`rebuild` puts back what the files on disk still tell after a new start."""
        self.path, self.quarantine_dir, self._rebuild = path, quarantine_dir, rebuild
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._move_aside(exc)
            self._db = self._open()
            rebuild(self)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _start_over(self, exc: sqlite3.DatabaseError) -> None:
        with self._lock:
            self._db.close()
            self._move_aside(exc)
            self._db = self._open()
        self._rebuild(self)

    def _move_aside(self, exc: sqlite3.DatabaseError) -> None:
        stamp = int(time.time() * 1000)
        log.warning("the session index is damaged (%s); moved to quarantine, starting anew", exc)
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            try:
                os.replace(part, self.quarantine_dir / f"{part.name}.{stamp}")
            except FileNotFoundError:
                continue
            except OSError:
                part.unlink(missing_ok=True)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @_recovering
    def get(self, owner: str, session_id: str) -> SessionRow | None:
        """The session, if it exists and belongs to `owner` (others cannot tell it exists)."""
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM sessions WHERE id = ? AND owner = ?", (session_id, owner)
            ).fetchone()
        return _row(r) if r else None

    @_recovering
    def owned_by(self, owner: str) -> list[SessionRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE owner = ? ORDER BY last_used DESC", (owner,)
            ).fetchall()
        return [_row(r) for r in rows]

    @_recovering
    def put_messages(
        self, owner: str, session_id: str, model: str, messages: tuple[Message, ...]
    ) -> None:
        now = time.time()
        data = json.dumps([m.as_dict() for m in messages])
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (id, owner, model, messages, created, last_used) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(owner, id) DO UPDATE SET "
                "messages = excluded.messages, model = excluded.model, "
                "last_used = excluded.last_used",
                (session_id, owner, model, data, now, now),
            )

    @_recovering
    def set_kv(self, owner: str, session_id: str, kv_tokens: int, kv_bytes: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET kv_tokens = ?, kv_bytes = ? WHERE owner = ? AND id = ?",
                (kv_tokens, kv_bytes, owner, session_id),
            )

    @_recovering
    def delete(self, owner: str, session_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE owner = ? AND id = ?", (owner, session_id))

    # -- shared prefixes --

    @_recovering
    def put_prefix(self, key: str, kv_tokens: int, kv_bytes: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO prefixes VALUES (?, ?, ?, ?)",
                (key, kv_tokens, kv_bytes, time.time()),
            )

    @_recovering
    def touch_prefix(self, key: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE prefixes SET last_used = ? WHERE key = ?", (time.time(), key))

    @_recovering
    def delete_prefix(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM prefixes WHERE key = ?", (key,))

    # -- disk budget --

    @_recovering
    def kv_usage(self) -> int:
        with self._lock:
            a = self._db.execute("SELECT COALESCE(SUM(kv_bytes), 0) FROM sessions").fetchone()[0]
            b = self._db.execute("SELECT COALESCE(SUM(kv_bytes), 0) FROM prefixes").fetchone()[0]
        return int(a) + int(b)

    @_recovering
    def lru(self) -> list[tuple[str, str, int]]:
        """(owner or '' for a shared prefix, id or prefix key, bytes) of every stored KV
        state, least recently used first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT owner, id, kv_bytes, last_used FROM sessions WHERE kv_bytes > 0 "
                "UNION ALL SELECT '', key, kv_bytes, last_used FROM prefixes "
                "ORDER BY 4 ASC"
            ).fetchall()
        return [(r[0], r[1], int(r[2])) for r in rows]
