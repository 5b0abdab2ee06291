"""Clients that leave while queued or while their prompt is prefilled: their work stops at
the next step of the batch, and the next request is served without waiting for it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import DRAFT
from tests.server.conftest import Server, start

LONG = {"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0}
# About 3,700 tokens: some fifteen seconds of prefill for the 0.5B model on two cores.
ESSAY = " ".join(
    f"Paragraph {i}: the committee reviewed the budget, the schedule and the risks again."
    for i in range(200)
)


def gauge(server: Server, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def settles(server: Server, name: str, value: float, within: float) -> bool:
    """Whether the metric reaches `value` within `within` seconds. Asked four times a second:
    asked much more often, the asking alone keeps a core of a small machine busy, and the
    server, which decodes on fewer threads while other processes do, sees it."""
    deadline = time.monotonic() + within
    while gauge(server, name) != value:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


@pytest.mark.reliability(15)
def test_a_client_that_leaves_the_queue_gives_up_its_place(tmp_path: Path, tiny_path: Path) -> None:
    server = start(tmp_path, parallel=1)
    url = f"{server.url}/v1/completions"
    try:
        with httpx.stream("POST", url, json={**LONG, "stream": True}, timeout=60) as busy:
            lines = busy.iter_lines()
            next(lines)  # the only slot is decoding this one
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(url, json=LONG, timeout=0.5)  # waits in the queue, then leaves
            assert settles(server, "edgeinf_queue_depth", 0, within=1.5)
            assert gauge(server, "edgeinf_running_requests") == 1  # the first one still runs
            next(lines)
        assert settles(server, "edgeinf_running_requests", 0, within=1.5)
        r = httpx.post(url, json={**LONG, "max_tokens": 4}, timeout=30)
        assert r.status_code == 200
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.reliability(15)
def test_a_client_that_leaves_during_prefill_stops_it(tmp_path: Path, draft_path: Path) -> None:
    server = start(tmp_path, model=DRAFT, ctx=4096, parallel=1)
    url = f"{server.url}/v1/completions"
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json={"prompt": ESSAY, "max_tokens": 1}, timeout=1.5)
        left = time.monotonic()
        # One slot: the next answer can only start once the abandoned prefill has stopped.
        r = httpx.post(url, json={"prompt": "Hello", "max_tokens": 2}, timeout=60)
        waited = time.monotonic() - left
        assert r.status_code == 200
        # Against the whole prefill of a text as long (not cached), in the same minute: the
        # abandoned one stops at the next chunk of the batch, whatever the processor.
        began = time.monotonic()
        other = ESSAY.replace("committee", "board")
        httpx.post(url, json={"prompt": other, "max_tokens": 1}, timeout=120).raise_for_status()
        whole = time.monotonic() - began
        assert waited < whole / 2, f"waited {waited:.1f} s for an abandoned {whole:.1f} s prefill"
    finally:
        server.stop()
