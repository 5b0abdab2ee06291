"""The session index in SQLite: sessions' messages, and the prefix cache's saved sequences with
the digests they are found under, their owners, sizes and last use (for listing and LRU).

Messages live here rather than in the KV files, so a damaged KV file loses nothing: the
conversation is re-prefilled from its messages. A session points at the saved sequence its
last turn left (its `kv_key`); the sequence is found by content, the pointer is for listing.
A damaged index (overwritten, truncated) is moved aside and started anew, like a damaged KV
file: the sessions it listed are lost, the answers go on.
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
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from edgeinf.sessions.row import SessionRow, from_sqlite
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
    kv_key TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (owner, id)
);
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kv_tokens INTEGER NOT NULL,
    kv_bytes INTEGER NOT NULL,
    last_used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS marks (
    digest TEXT NOT NULL,
    n INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (digest, key)
);
CREATE INDEX IF NOT EXISTS marks_by_key ON marks (key);
CREATE TABLE IF NOT EXISTS summaries (
    owner TEXT NOT NULL,
    digest TEXT NOT NULL,
    text TEXT NOT NULL,
    last_used REAL NOT NULL,
    PRIMARY KEY (owner, digest)
);
"""
SUMMARIES_KEPT = 256  # per principal, the most recently used
# Before the prefix cache, sessions had KV files of their own and shared prefixes a table.
_UPGRADE = """
DROP TABLE IF EXISTS prefixes;
ALTER TABLE sessions ADD COLUMN kv_key TEXT NOT NULL DEFAULT '';
UPDATE sessions SET kv_tokens = 0, kv_bytes = 0;
"""
_TITLED = "ALTER TABLE sessions ADD COLUMN title TEXT NOT NULL DEFAULT ''"


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
            columns = {r[1] for r in db.execute("PRAGMA table_info(sessions)")}
            if columns and "kv_key" not in columns:
                db.executescript(_UPGRADE)
            if columns and "title" not in columns:
                db.execute(_TITLED)
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
        return from_sqlite(r) if r else None

    @_recovering
    def owned_by(self, owner: str) -> list[SessionRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE owner = ? ORDER BY last_used DESC", (owner,)
            ).fetchall()
        return [from_sqlite(r) for r in rows]

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
    def set_title(self, owner: str, session_id: str, title: str) -> bool:
        """Name the session; False when `owner` has no such session."""
        with self._tx() as db:
            done = db.execute(
                "UPDATE sessions SET title = ? WHERE owner = ? AND id = ?",
                (title, owner, session_id),
            )
        return done.rowcount > 0

    @_recovering
    def set_kv(self, owner: str, session_id: str, key: str, kv_tokens: int, kv_bytes: int) -> None:
        """Point the session at the saved sequence `key` its last turn left."""
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET kv_key = ?, kv_tokens = ?, kv_bytes = ? "
                "WHERE owner = ? AND id = ?",
                (key, kv_tokens, kv_bytes, owner, session_id),
            )

    @_recovering
    def delete(self, owner: str, session_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE owner = ? AND id = ?", (owner, session_id))

    # -- saved sequences (the prefix cache) --

    @_recovering
    def put_snapshot(
        self, key: str, owner: str, kv_tokens: int, kv_bytes: int, marks: dict[str, int]
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                (key, owner, kv_tokens, kv_bytes, time.time()),
            )
            db.execute("DELETE FROM marks WHERE key = ?", (key,))
            db.executemany(
                "INSERT OR REPLACE INTO marks VALUES (?, ?, ?)",
                [(digest, n, key) for digest, n in marks.items()],
            )

    @_recovering
    def find_snapshot(self, owner: str, wanted: dict[str, int]) -> tuple[str, int] | None:
        """(key, position) of `owner`'s saved sequence indexed under the longest of the
        `wanted` digests (digest: position), the most recently used of equals."""
        if not wanted:
            return None
        holes = ",".join("?" * len(wanted))
        with self._lock:
            r = self._db.execute(
                "SELECT m.key, m.n FROM marks m JOIN snapshots s ON s.key = m.key "
                f"WHERE s.owner = ? AND m.digest IN ({holes}) "
                "ORDER BY m.n DESC, s.last_used DESC LIMIT 1",
                (owner, *wanted),
            ).fetchone()
        return (r[0], int(r[1])) if r else None

    @_recovering
    def sharing(self, key: str, marks: dict[str, int], longest: int) -> list[tuple[str, int]]:
        """(key, tokens) of the other saved sequences of no more than `longest` tokens that
        are indexed under one of `marks`: the ones a new sequence may cover."""
        if not marks:
            return []
        holes = ",".join("?" * len(marks))
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT s.key, s.kv_tokens FROM snapshots s JOIN marks m "
                f"ON m.key = s.key WHERE m.digest IN ({holes}) AND s.kv_tokens <= ? "
                "AND s.key != ?",
                (*marks, longest, key),
            ).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    @_recovering
    def touch_snapshot(self, key: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE snapshots SET last_used = ? WHERE key = ?", (time.time(), key))

    @_recovering
    def replace_snapshot(self, old: str, new: str | None) -> None:
        """Forget the saved sequence `old`; sessions that pointed at it point at `new`
        (which covers it), or at nothing."""
        with self._tx() as db:
            db.execute("DELETE FROM snapshots WHERE key = ?", (old,))
            db.execute("DELETE FROM marks WHERE key = ?", (old,))
            if new is None:
                db.execute(
                    "UPDATE sessions SET kv_key = '', kv_tokens = 0, kv_bytes = 0 WHERE kv_key = ?",
                    (old,),
                )
            else:
                db.execute(
                    "UPDATE sessions SET kv_key = ?, "
                    "kv_tokens = (SELECT kv_tokens FROM snapshots WHERE key = ?), "
                    "kv_bytes = (SELECT kv_bytes FROM snapshots WHERE key = ?) WHERE kv_key = ?",
                    (new, new, new, old),
                )

    @_recovering
    def snapshot_keys(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT key FROM snapshots")}

    @_recovering
    def snapshots(self) -> list[tuple[str, str, int, int, float]]:
        """(key, owner, tokens, bytes, last used) of the saved sequences, most recent first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, owner, kv_tokens, kv_bytes, last_used FROM snapshots "
                "ORDER BY last_used DESC"
            ).fetchall()
        return [(r[0], r[1], int(r[2]), int(r[3]), float(r[4])) for r in rows]

    # -- summaries of older turns (the summarize context policy) --

    @_recovering
    def put_summary(self, owner: str, digest: str, text: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?)",
                (owner, digest, text, time.time()),
            )
            db.execute(
                "DELETE FROM summaries WHERE owner = ? AND digest NOT IN (SELECT digest FROM "
                "summaries WHERE owner = ? ORDER BY last_used DESC LIMIT ?)",
                (owner, owner, SUMMARIES_KEPT),
            )

    @_recovering
    def find_summary(self, owner: str, digests: list[str]) -> tuple[str, str] | None:
        """(digest, text) of the first of `digests` that `owner` has a summary under."""
        if not digests:
            return None
        holes = ",".join("?" * len(digests))
        with self._tx() as db:
            rows = dict(
                db.execute(
                    f"SELECT digest, text FROM summaries WHERE owner = ? AND digest IN ({holes})",
                    (owner, *digests),
                ).fetchall()
            )
            found = next((d for d in digests if d in rows), None)
            if found is None:
                return None
            db.execute(
                "UPDATE summaries SET last_used = ? WHERE owner = ? AND digest = ?",
                (time.time(), owner, found),
            )
        return found, rows[found]

    # -- disk budget --

    @_recovering
    def kv_usage(self) -> int:
        with self._lock:
            used = self._db.execute("SELECT COALESCE(SUM(kv_bytes), 0) FROM snapshots")
            return int(used.fetchone()[0])

    @_recovering
    def lru(self) -> list[tuple[str, int]]:
        """(key, bytes) of every saved sequence, least recently used first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, kv_bytes FROM snapshots ORDER BY last_used ASC"
            ).fetchall()
        return [(r[0], int(r[1])) for r in rows]
