"""The session store on disk: the SQLite index, saved sequences' KV files, quarantine and the
disk budget."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import time
from pathlib import Path

import psutil

from edgeinf.errors import EdgeinfError
from edgeinf.files import fsync_dir
from edgeinf.sessions.ids import check_session_id
from edgeinf.sessions.index import SessionIndex
from edgeinf.sessions.kvfile import Identity, KVFileError, KVState, decode, encode_parts
from edgeinf.sessions.ramtier import Snapshot
from edgeinf.sessions.row import SessionRow

log = logging.getLogger("edgeinf.sessions")
FREE_RESERVE = 512 << 20  # saved state never takes the disk's free space below this


class StateDirError(EdgeinfError):
    code = "unsafe_state_dir"


class SaveError(EdgeinfError):
    code = "session_save_failed"


def _private_dir(path: Path) -> Path:
    """Create (0700) or check a directory: not a symlink, not writable by others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"{path} is a symlink or not a directory; remove it and retry")
    if st.st_mode & 0o077:
        log.warning("tightening permissions of %s to 0700", path)
        path.chmod(0o700)
    return path


class SessionStore:
    def __init__(self, root: Path, budget_bytes: int, free_reserve: int = FREE_RESERVE) -> None:
        self.root = _private_dir(root)
        self.prefix_dir = _private_dir(root / "prefix")
        self.quarantine_dir = _private_dir(root / "quarantine")
        self.budget_bytes = budget_bytes
        self.free_reserve = free_reserve
        self.index = SessionIndex(root / "index.sqlite", self.quarantine_dir, self._sweep_files)
        self._sweep_temp_files()
        self._sweep_files(self.index)

    def _sweep_temp_files(self) -> None:
        """Remove temp files left by writers that were killed mid-save."""
        for tmp in self.root.rglob(".*.tmp"):
            try:
                pid = int(tmp.name.rsplit(".", 2)[-2])
            except ValueError:
                continue
            if pid != os.getpid() and not psutil.pid_exists(pid):
                tmp.unlink(missing_ok=True)

    def _sweep_files(self, index: SessionIndex) -> None:
        """Remove KV files the index does not list: a save killed between the rename and the
        index, every file after the index was started anew, the files of an older layout."""
        listed = index.snapshot_keys()
        settled = time.time() - 60  # a newer one may be a live writer's, about to be indexed
        for path in self.prefix_dir.glob("*.kv"):
            with contextlib.suppress(FileNotFoundError):
                if path.stem not in listed and path.stat().st_mtime < settled:
                    path.unlink()
        shutil.rmtree(self.root / "kv", ignore_errors=True)  # sessions' own files, once

    def close(self) -> None:
        self.index.close()

    # -- paths --

    def snapshot_path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("saved sequences are named by sha256 hex digests")
        return self.prefix_dir / f"{key}.kv"

    # -- reading --

    def read_kv(self, path: Path, identity: Identity) -> KVState | None:
        """The state in `path` if it is intact and made under `identity`; else None.

        A damaged file is moved to quarantine; a file from another model or build is left
        alone and will be replaced by the next save.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot open %s (%s); re-prefilling", path.name, exc.strerror)
            return None
        try:
            with os.fdopen(fd, "rb") as fh:
                buf = bytearray(os.fstat(fh.fileno()).st_size)  # one copy, then views
                fh.readinto(buf)
                state = decode(buf)
        except KVFileError as exc:
            self.quarantine(path, str(exc))
            return None
        except OSError as exc:  # EIO, a directory in its place: the turn re-prefills
            log.warning("cannot read %s (%s); re-prefilling", path.name, exc.strerror)
            return None
        if state.identity != identity:
            log.info("%s was saved for another model or build; re-prefilling", path.name)
            return None
        return state

    def quarantine(self, path: Path, why: str) -> None:
        dest = self.quarantine_dir / f"{path.stem}.{int(time.time() * 1000)}.kv"
        log.warning("quarantined %s: %s", path.name, why)
        try:
            os.replace(path, dest)
        except OSError:
            path.unlink(missing_ok=True)

    # -- writing --

    def write_kv(self, path: Path, state: KVState) -> int:
        """Atomically replace `path`: readers see the old or the new file, never a torn one."""
        parts = encode_parts(state)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                for part in parts:
                    fh.write(part)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):  # a failing disk may refuse this too: swept later
                tmp.unlink(missing_ok=True)
            raise SaveError(
                f"could not save {path.name} ({exc.strerror}); the previous state is intact. "
                "Free disk space or check the state directory"
            ) from exc
        return sum(len(part) for part in parts)

    def save_snapshot(self, snapshot: Snapshot) -> int:
        """Write a saved sequence and index it; 0 if it does not fit the disk budget."""
        if not self.make_room(snapshot.size + 4096, keep=snapshot.key):
            log.warning("a saved sequence (%d bytes) is over the disk budget", snapshot.size)
            return 0
        state = snapshot.state
        written = self.write_kv(self.snapshot_path(snapshot.key), state)
        self.index.put_snapshot(
            snapshot.key, snapshot.owner, len(state.tokens), written, snapshot.marks
        )
        return written

    # -- budget --

    def effective_budget(self) -> int:
        """The configured budget, shrunk so that the disk keeps some free space."""
        free = shutil.disk_usage(self.root).free
        return max(0, min(self.budget_bytes, self.index.kv_usage() + free - self.free_reserve))

    def make_room(self, incoming: int, keep: str = "") -> bool:
        """Evict least recently used states until `incoming` more bytes fit the budget."""
        budget = self.effective_budget()
        return incoming <= budget and self.prune(budget - incoming, keep) <= budget - incoming

    def prune(self, target: int, keep: str = "") -> int:
        """Evict least recently used saved sequences until at most `target` bytes remain;
        return the bytes that remain."""
        usage = self.index.kv_usage()
        for key, size in self.index.lru():
            if usage <= target:
                break
            if key != keep:
                self.evict(key)
                usage -= size
        return usage

    def evict(self, key: str, covered_by: str | None = None) -> None:
        """Drop a saved sequence; sessions pointing at it point at `covered_by` (a longer
        one that starts with all its tokens) or are re-prefilled when next used."""
        self.snapshot_path(key).unlink(missing_ok=True)
        self.index.replace_snapshot(key, covered_by)

    # -- sessions --

    def owned_by(self, owner: str) -> list[SessionRow]:
        """The owner's sessions, most recently used first."""
        return self.index.owned_by(owner)

    def get(self, owner: str, session_id: str) -> SessionRow | None:
        return self.index.get(owner, check_session_id(session_id))

    def rename(self, owner: str, session_id: str, title: str) -> bool:
        """Give the session a title; False when `owner` has no such session."""
        return self.index.set_title(owner, check_session_id(session_id), title)

    def delete(self, owner: str, session_id: str) -> bool:
        """Forget a session, with the state its last turn left."""
        row = self.get(owner, session_id)
        if row is None:
            return False
        if row.kv_key:
            self.evict(row.kv_key)
        self.index.delete(owner, session_id)
        return True
