"""SIGKILL during saves, many times: every load sees the old or the new state, never a mix."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeinf.sessions.kvfile import Identity, KVState
from edgeinf.sessions.ramtier import Snapshot
from edgeinf.sessions.store import SessionStore

KILLS = 200
IDENTITY = Identity("cd" * 32, "test", 4096, "f16")
KEY = "ab" * 32

# The child saves two versions of one sequence, alternately, as fast as it can.
CHILD = f"""
import sys
from pathlib import Path
from edgeinf.sessions.kvfile import Identity, KVState
from edgeinf.sessions.ramtier import Snapshot
from edgeinf.sessions.store import SessionStore
store = SessionStore(Path(sys.argv[1]), 1 << 30)
identity = Identity("cd" * 32, "test", 4096, "f16")
versions = [KVState(identity, (v,), bytes([v]) * (2 << 20)) for v in (1, 2)]
save = lambda v: store.save_snapshot(Snapshot("{KEY}", "local", versions[v], {{"d": 1}}))
save(0)
print("ready", flush=True)
i = 0
while True:
    i += 1
    save(i % 2)
"""


@pytest.mark.slow  # hundreds of kills: the full suite's
@pytest.mark.reliability(20, 43)
def test_killed_saves_never_leave_a_torn_file(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    root = tmp_path / "state"
    rng = random.Random(20)
    outcomes = {1: 0, 2: 0}
    for _ in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, 0.03))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        store = SessionStore(root, 1 << 30)
        state = store.read_kv(store.snapshot_path(KEY), IDENTITY)
        assert state is not None, "a killed save left a file that does not load"
        assert state.payload == bytes([state.tokens[0]]) * (2 << 20)
        outcomes[state.tokens[0]] += 1
        assert not list(store.quarantine_dir.iterdir())
        store.close()
    record_property("kills", KILLS)
    assert outcomes[1] and outcomes[2]  # kills landed at different points of the cycle
    SessionStore(root, 1 << 30).close()
    assert not list(root.rglob("*.tmp"))  # what killed writers left is swept on open


@pytest.mark.reliability(20)
def test_temp_files_of_killed_writers_are_not_mistaken_for_state(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, 1 << 20)
    store.save_snapshot(Snapshot(KEY, "local", KVState(IDENTITY, (1,), b"x" * 100), {}))
    path = store.snapshot_path(KEY)
    path.with_name(f".{path.name}.999.tmp").write_bytes(b"torn")
    state = store.read_kv(path, IDENTITY)
    assert state is not None and state.payload == b"x" * 100
    store.close()
