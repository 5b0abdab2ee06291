"""The session store on a real filesystem: budget, eviction across restarts, owners, disk full."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeinf.sessions.kvfile import Identity, KVState, decode
from edgeinf.sessions.store import SaveError, SessionStore
from edgeinf.types import Message

IDENTITY = Identity("ef" * 32, "test", 4096, "f16")
MB = 1 << 20


def state(tag: int, size: int = MB) -> KVState:
    return KVState(IDENTITY, (tag,), bytes([tag]) * size)


def save(store: SessionStore, owner: str, sid: str, tag: int) -> int:
    store.index.put_messages(sid, owner, "m", (Message("user", f"hi {tag}"),))
    return store.save_session_kv(owner, sid, state(tag))


@pytest.mark.reliability(25)
def test_budget_evicts_least_recently_used_also_after_a_restart(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=3 * MB + 64 * 1024, free_reserve=0)
    for i in range(3):
        assert save(store, "local", f"s{i}", i) > 0
    store.close()
    store = SessionStore(tmp_path, budget_bytes=3 * MB + 64 * 1024, free_reserve=0)  # restart
    save(store, "local", "s0", 9)  # s0 is used again: s1 is now the oldest
    save(store, "local", "s3", 3)
    kept = {r.id for r in store.index.owned_by("local") if r.kv_bytes}
    assert kept == {"s0", "s2", "s3"}
    assert store.index.kv_usage() <= store.budget_bytes
    assert not store.kv_path("local", "s1").exists()
    assert store.get("s1", "local") is not None  # evicted state, kept conversation
    store.close()


@pytest.mark.reliability(25)
def test_a_state_larger_than_the_budget_is_not_saved(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=MB // 2, free_reserve=0)
    assert save(store, "local", "big", 1) == 0
    assert not store.kv_path("local", "big").exists()
    store.close()


@pytest.mark.reliability(26)
def test_other_principals_cannot_see_or_touch_a_session(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "alice", "shared-name", 1)
    assert store.get("shared-name", "mallory") is None
    assert not store.delete("shared-name", "mallory")
    save(store, "mallory", "shared-name", 2)  # the same id is another session for another owner
    alice = store.read_kv(store.kv_path("alice", "shared-name"), IDENTITY)
    assert alice is not None and alice.tokens == (1,)
    store.close()


@pytest.mark.reliability(21)
def test_damaged_file_is_quarantined(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "local", "s", 1)
    path = store.kv_path("local", "s")
    with path.open("r+b") as fh:
        fh.seek(5000)
        fh.write(b"\xff")
    assert store.read_kv(path, IDENTITY) is None
    assert not path.exists() and len(list(store.quarantine_dir.iterdir())) == 1
    store.close()


@pytest.mark.reliability(22)
def test_state_of_another_model_is_ignored_not_quarantined(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, budget_bytes=10 * MB, free_reserve=0)
    save(store, "local", "s", 1)
    other = Identity("00" * 32, "test", 4096, "f16")
    assert store.read_kv(store.kv_path("local", "s"), other) is None
    assert store.kv_path("local", "s").exists()
    store.close()


@pytest.mark.reliability(23)
def test_symlinked_state_file_is_not_followed(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state", budget_bytes=10 * MB, free_reserve=0)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    store.kv_path("local", "s").symlink_to(secret)
    assert store.read_kv(store.kv_path("local", "s"), IDENTITY) is None
    assert secret.read_bytes() == b"not yours"
    store.close()


@pytest.mark.reliability(24)
def test_disk_full_leaves_the_old_state_intact(tiny_disk: Path) -> None:
    store = SessionStore(tiny_disk / "state", budget_bytes=100 * MB, free_reserve=0)
    path = store.kv_path("local", "s")
    store.write_kv(path, state(1, MB))
    filler = tiny_disk / "filler"
    with filler.open("wb") as fh:  # leave less room than the next save needs
        fh.write(bytes(os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize - 200_000))
    with pytest.raises(SaveError, match="previous state is intact"):
        store.write_kv(path, state(2, MB))
    assert decode(path.read_bytes()).tokens == (1,)
    assert not list(path.parent.glob("*.tmp"))
    store.close()
