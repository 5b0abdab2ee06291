"""A damaged session index costs the sessions it listed, never the answers: it is moved aside
and started anew, under a running server or at start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.server.conftest import Server, start

ASK = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}


def _damage(state: Path) -> None:
    for suffix in ("", "-wal", "-shm"):  # in place: a running server's open handles see it
        part = state / f"index.sqlite{suffix}"
        if part.exists():
            # Overwritten, never truncated: SQLite maps the -shm file, and a mapping past the
            # end of its file is a SIGBUS, a fault of this test's making, not of a disk's.
            with part.open("r+b") as f:
                f.write(b"x" * max(part.stat().st_size, 4096))


def _ask(server: Server, session: str | None = None) -> httpx.Response:
    headers = {"X-Session-Id": session} if session else {}
    return httpx.post(f"{server.url}/v1/chat/completions", json=ASK, headers=headers, timeout=60)


@pytest.mark.reliability(47)
def test_a_damaged_index_costs_the_sessions_not_the_answers(
    tmp_path: Path, tiny_path: Path
) -> None:
    state = tmp_path / "state"
    server = start(tmp_path)
    try:
        assert _ask(server, "s1").status_code == 200
        _damage(state)  # SQLite may or may not notice at once: the answers go on either way
        during = [_ask(server, "s1"), _ask(server)]
    finally:
        server.stop()
    assert [r.status_code for r in during] == [200, 200]

    _damage(state)
    server = start(tmp_path)
    try:
        ready = httpx.get(f"{server.url}/ready", timeout=10)
        after = _ask(server, "s1")
        listed = httpx.get(f"{server.url}/v1/sessions", timeout=10).json()["data"]
    finally:
        server.stop()
    assert ready.status_code == 200
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] > 0
    assert [s["id"] for s in listed] == ["s1"]  # kept again, in the new index
    assert list((state / "quarantine").glob("index.sqlite.*"))
    assert "session index is damaged" in server.log.read_text()
