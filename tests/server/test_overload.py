"""Far more concurrent requests than the server holds, with the cores idle and with other
processes keeping them busy: tools/overload.py drives a real server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import start
from tests.server.test_disconnects import gauge, settles

ROOT = Path(__file__).resolve().parents[2]
PARALLEL, QUEUE = 2, 4
SLACK = 2.0  # what a shared, noisy machine may add to the times at capacity


@pytest.mark.reliability(14)
@pytest.mark.parametrize("busy", [pytest.param(0, id="idle"), pytest.param(2, id="busy")])
@pytest.mark.slow
def test_far_past_the_queue_admitted_answers_come_when_their_place_says(
    tmp_path: Path, tiny_path: Path, busy: int
) -> None:
    server = start(tmp_path, parallel=PARALLEL, env={"EDGEINF_MAX_QUEUE": str(QUEUE)})
    try:
        run = subprocess.run(
            [
                sys.executable, str(ROOT / "tools" / "overload.py"), "--url", server.url,
                "--parallel", str(PARALLEL), "--capacity", str(PARALLEL + QUEUE),
                "--multiples", "5", "--max-tokens", "32", "--busy", str(busy),
                "--leaving", "0.1", "--timeout", "120",
            ],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr  # only 200, 503 + Retry-After, left
        alone, at_capacity, overloaded = (json.loads(ln) for ln in run.stdout.splitlines())
        assert at_capacity["statuses"].get("503", 0) == 0, at_capacity  # capacity is admitted
        assert overloaded["statuses"]["503"] >= 3 * (PARALLEL + QUEUE), overloaded
        admitted = overloaded["statuses"]["200"] + overloaded["statuses"].get("left", 0)
        assert admitted >= PARALLEL + QUEUE, overloaded
        # Each place in the queue costs what it costs at capacity (two sequences share a
        # step there, so a place costs more than a request alone does).
        assert at_capacity["max_vs_place"] <= 3, (alone, at_capacity)
        assert overloaded["p50_vs_capacity"] <= SLACK, (alone, at_capacity, overloaded)
        assert overloaded["max_vs_capacity"] <= SLACK, (alone, at_capacity, overloaded)
        # Nothing is left behind: no sequence runs, and the next request is served at once.
        assert settles(server, "edgeinf_running_requests", 0, within=5)
        assert gauge(server, "edgeinf_queue_depth") == 0
        if busy and os.cpu_count() == PARALLEL:  # the loops took both cores, then left them
            assert "decoding on 1 of 2 threads" in server.log.read_text()
            assert settles(server, "edgeinf_decode_threads", 2, within=10)
    finally:
        assert server.stop() == 0
