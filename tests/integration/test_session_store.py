"""The session store on a real filesystem: budget, eviction across restarts, owners, disk full."""

from __future__ import annotations

import hashlib
import os
import pickle  # only to plant a hostile file: edgeinf itself never unpickles
import re
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from edgeinf.sessions.kvfile import Identity, KVState, decode
from edgeinf.sessions.ramtier import Snapshot
from edgeinf.sessions.store import SaveError, SessionStore
from edgeinf.types import Message

IDENTITY = Identity("ef" * 32, "test", 4096, "f16")
MB = 1 << 20


def state(tag: int, size: int = MB) -> KVState:
    return KVState(IDENTITY, (tag,), bytes([tag]) * size)


def key(tag: int) -> str:
    return hashlib.sha256(bytes([tag])).hexdigest()


def save(store: SessionStore, owner: str, sid: str, tag: int) -> int:
    """A session's turn: its messages, its state, the session pointing at the state."""
    store.index.put_messages(owner, sid, "m", (Message("user", f"hi {tag}"),))
    written = store.save_snapshot(Snapshot(key(tag), owner, state(tag), {}))
    if written:
        store.index.set_kv(owner, sid, key(tag), 1, written)
    return written


@pytest.mark.reliability(25)
def test_budget_evicts_least_recently_used_also_after_a_restart(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=3 * MB + 64 * 1024, free_reserve=0)
    for i in range(3):
        assert save(store, "local", f"s{i}", i) > 0
    store.close()
    store = SessionStore(tmp_path, budget_bytes=3 * MB + 64 * 1024, free_reserve=0)  # restart
    store.index.touch_snapshot(key(0))  # s0 is used again: s1 is now the oldest
    save(store, "local", "s3", 3)
    kept = {r.id for r in store.index.owned_by("local") if r.kv_bytes}
    assert kept == {"s0", "s2", "s3"}
    assert store.index.kv_usage() <= store.budget_bytes
    assert not store.snapshot_path(key(1)).exists()
    assert store.get("local", "s1") is not None  # evicted state, kept conversation
    store.close()


@pytest.mark.reliability(25)
def test_a_state_larger_than_the_budget_is_not_saved(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=MB // 2, free_reserve=0)
    assert save(store, "local", "big", 1) == 0
    assert not store.snapshot_path(key(1)).exists()
    store.close()


@pytest.mark.reliability(25)
def test_files_the_index_does_not_list_are_swept_on_open(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "local", "s", 1)
    stray = store.snapshot_path(key(2))  # a save killed between its rename and the index
    store.write_kv(stray, state(2))
    os.utime(stray, (time.time() - 120, time.time() - 120))
    live = store.snapshot_path(key(3))  # another process's save, just renamed
    store.write_kv(live, state(3))
    store.close()
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    assert store.snapshot_path(key(1)).exists() and live.exists() and not stray.exists()
    store.close()


@pytest.mark.reliability(26)
def test_other_principals_cannot_see_or_touch_a_session(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "alice", "shared-name", 1)
    assert store.get("mallory", "shared-name") is None
    assert not store.delete("mallory", "shared-name")
    save(store, "mallory", "shared-name", 2)  # the same id is another session for another owner
    alice = store.get("alice", "shared-name")
    assert alice is not None and alice.kv_key == key(1)
    assert store.index.find_snapshot("mallory", {"any": 1}) is None
    store.close()


def test_titles_belong_to_their_owner_and_survive_an_index_made_before_them(
    tmp_path: Path,
) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "alice", "s1", 1)
    assert not store.rename("mallory", "s1", "mine now")
    assert store.rename("alice", "s1", "Greetings")
    store.close()
    # An index written before sessions had titles opens with its sessions untitled.
    db = sqlite3.connect(tmp_path / "index.sqlite")
    db.executescript("ALTER TABLE sessions DROP COLUMN title")
    db.close()
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    row = store.get("alice", "s1")
    assert row is not None and row.title == "" and row.label == "hi 1"
    assert row.kv_key == key(1)
    assert store.rename("alice", "s1", "Greetings")
    assert [r.label for r in store.owned_by("alice")] == ["Greetings"]
    store.close()


@pytest.mark.reliability(21)
def test_damaged_file_is_quarantined(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "local", "s", 1)
    path = store.snapshot_path(key(1))
    with path.open("r+b") as fh:
        fh.seek(5000)
        fh.write(b"\xff")
    assert store.read_kv(path, IDENTITY) is None
    assert not path.exists() and len(list(store.quarantine_dir.iterdir())) == 1
    store.close()


@pytest.mark.reliability(22)
@pytest.mark.parametrize(
    "other",
    [
        Identity("00" * 32, "test", 4096, "f16"),  # another model file, or another quant of it
        Identity("ef" * 32, "llama.cpp b9999", 4096, "f16"),  # another llama.cpp build
        Identity("ef" * 32, "test", 2048, "f16"),  # another context size
        Identity("ef" * 32, "test", 4096, "q8_0"),  # another KV cache type
    ],
)
def test_state_of_another_model_is_ignored_not_quarantined(tmp_path: Path, other: Identity) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "local", "s", 1)
    assert store.read_kv(store.snapshot_path(key(1)), other) is None
    assert store.snapshot_path(key(1)).exists()
    store.close()


@pytest.mark.reliability(23)
def test_symlinked_state_file_is_not_followed(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state", budget_bytes=10 * MB, free_reserve=0)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    store.snapshot_path(key(1)).symlink_to(secret)
    assert store.read_kv(store.snapshot_path(key(1)), IDENTITY) is None
    assert secret.read_bytes() == b"not yours"
    store.close()


class Planted:
    """Unpickling this runs code: it would leave a marker file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.reliability(23)
def test_a_planted_pickle_is_quarantined_and_never_run(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state", budget_bytes=10 * MB, free_reserve=0)
    marker = tmp_path / "pwned"
    path = store.snapshot_path(key(1))
    path.write_bytes(pickle.dumps(Planted(marker)))
    assert store.read_kv(path, IDENTITY) is None
    assert not marker.exists() and not path.exists()
    assert len(list(store.quarantine_dir.iterdir())) == 1
    store.close()


@pytest.mark.reliability(23)
def test_no_module_can_unpickle() -> None:
    """Nothing in edgeinf reads pickles (llama-cpp-python's disk cache does; we do not).
    The one exception is the benchmark's peer baseline, which runs that very cache, in a
    temporary directory of its own, to measure it against ours."""
    import edgeinf

    root = Path(edgeinf.__file__).parent
    for source in set(root.rglob("*.py")) - {root / "bench" / "peers.py"}:
        text = source.read_text()
        assert not re.search(r"^\s*(import|from) (pickle|dill|joblib|shelve)\b", text, re.M), source
        assert "allow_pickle=True" not in text and "LlamaDiskCache(" not in text, source


@pytest.mark.reliability(23)
def test_a_world_writable_state_directory_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    SessionStore(root, budget_bytes=10 * MB, free_reserve=0).close()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


@pytest.mark.reliability(24, 43)
def test_disk_full_leaves_the_old_state_intact(tiny_disk: Path) -> None:
    store = SessionStore(tiny_disk / "state", budget_bytes=100 * MB, free_reserve=0)
    path = store.snapshot_path(key(1))
    store.write_kv(path, state(1, MB))
    filler = tiny_disk / "filler"
    with filler.open("wb") as fh:  # leave less room than the next save needs
        fh.write(bytes(os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize - 200_000))
    with pytest.raises(SaveError, match="previous state is intact"):
        store.write_kv(path, state(2, MB))
    assert decode(path.read_bytes()).tokens == (1,)
    assert not list(path.parent.glob("*.tmp"))
    store.close()
