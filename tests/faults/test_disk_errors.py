"""EIO from a real block device, on write and on fsync: saves fail cleanly, the old state
stays intact and the server keeps answering."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edgeinf.route.ledger import Ledger
from edgeinf.sessions.kvfile import Identity, KVState
from edgeinf.sessions.store import SaveError, SessionStore
from tests.conftest import FailingDisk
from tests.server.conftest import start

IDENTITY = Identity("ab" * 32, "test", 4096, "f16")


@pytest.mark.reliability(24)
def test_eio_on_save_leaves_the_old_state_intact(failing_disk: FailingDisk) -> None:
    store = SessionStore(failing_disk.mount / "state", budget_bytes=1 << 30, free_reserve=0)
    path = store.snapshot_path("ab" * 32)
    store.write_kv(path, KVState(IDENTITY, (1,), b"\x01" * (1 << 20)))
    failing_disk.fail()
    for tag in (2, 3):  # the first save meets EIO at fsync; later ones may meet it anywhere
        with pytest.raises(SaveError, match=r"previous state is intact"):
            store.write_kv(path, KVState(IDENTITY, (tag,), bytes([tag]) * (24 << 20)))
    old = store.read_kv(path, IDENTITY)
    assert old is not None and old.tokens == (1,) and bytes(old.payload) == b"\x01" * (1 << 20)


CHAT = {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 8}


@pytest.mark.reliability(24)
def test_a_server_whose_disk_fails_keeps_answering(
    tmp_path: Path, failing_disk: FailingDisk, tiny_path: Path
) -> None:
    state = failing_disk.mount / "state"
    server = start(tmp_path, env={"EDGEINF_STATE_DIR": str(state)})
    url = f"{server.url}/v1/chat/completions"
    try:
        first = httpx.post(url, json=CHAT, headers={"X-Session-Id": "kept"}, timeout=60)
        assert first.status_code == 200
        failing_disk.fail()
        for i in range(4):  # saves now fail; answers must not
            r = httpx.post(url, json=CHAT, headers={"X-Session-Id": f"s{i}"}, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] is not None
        again = httpx.post(url, json=CHAT, headers={"X-Session-Id": "kept"}, timeout=60)
        assert again.status_code == 200
        assert httpx.get(f"{server.url}/ready").status_code == 200
    finally:
        code = server.stop()
    assert code == 0  # SIGTERM still drains and exits cleanly with saves failing
    assert "session save failed" in server.log.read_text()


@pytest.mark.reliability(24, 31)
def test_a_route_ledger_on_a_failing_disk_fails_closed(
    failing_disk: FailingDisk, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(failing_disk.mount / "state", requests_per_day=100, tokens_per_day=10**6)
    ledger.remember("local", "open", "remote", private=False)
    (failing_disk.mount / "ballast").write_bytes(bytes(20 << 20))  # SQLite must grow past it
    failing_disk.fail()
    ledger.remember("local", "secret", "local", private=True)
    for i in range(200):  # until SQLite's writes reach the lost half of the disk
        if "route ledger unavailable" in caplog.text:
            break
        ledger.remember("local", f"churn-{i}-{'x' * 2000}", "local", private=False)
    assert "route ledger unavailable" in caplog.text
    assert ledger.session("local", "secret")[1] is True  # private, whatever the disk did
    ledger.spend(10)  # a remote answer already given is not failed by its bookkeeping
    assert "this remote request is not counted" in caplog.text
    ledger.close()
