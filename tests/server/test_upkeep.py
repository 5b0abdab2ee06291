"""The daemon's upkeep, made to happen: an idle model is unloaded and loaded again on demand;
a real cgroup squeezes the server's memory until it decodes one request at a time, then
refuses new ones, and it recovers when the memory comes back."""

from __future__ import annotations

from pathlib import Path

import httpx

from edgeinf.guard import strain
from tests.conftest import MemoryCgroup
from tests.server.conftest import start
from tests.server.test_disconnects import gauge, settles

ASK = {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}


def test_an_idle_model_is_unloaded_and_comes_back_on_demand(
    tmp_path: Path, tiny_path: Path
) -> None:
    server = start(tmp_path, env={"EDGEINF_KEEP_ALIVE_S": "2"})
    try:
        url = f"{server.url}/v1/completions"
        first = httpx.post(url, json=ASK, timeout=60)
        assert first.status_code == 200
        loaded_mb = gauge(server, "edgeinf_resident_memory_bytes") / 2**20
        assert settles(server, "edgeinf_model_loaded", 0, within=10)
        idle_mb = gauge(server, "edgeinf_resident_memory_bytes") / 2**20
        assert idle_mb < loaded_mb - 100, (loaded_mb, idle_mb)  # the weights left memory
        ready = httpx.get(f"{server.url}/ready").json()  # monitors do not load it again
        assert ready["loaded"] is False and gauge(server, "edgeinf_model_loaded") == 0
        again = httpx.post(url, json=ASK, timeout=60)  # waits while the model loads again
        assert again.status_code == 200
        assert again.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]
        assert gauge(server, "edgeinf_model_loaded") == 1
    finally:
        assert server.stop() == 0


def test_memory_pressure_lowers_parallelism_then_sheds_then_recovers(
    tmp_path: Path, tiny_path: Path, memory_cgroup: MemoryCgroup
) -> None:
    server = start(
        tmp_path,
        parallel=2,
        env={"EDGEINF_MEMORY_LOW_MB": "600", "EDGEINF_MEMORY_CRITICAL_MB": "300"},
        preexec=memory_cgroup.join,
    )
    url = f"{server.url}/v1/completions"
    try:
        assert settles(server, "edgeinf_parallel_limit", 2, within=10)
        memory_cgroup.leave_room(450)  # under the low mark: one sequence at a time
        assert settles(server, "edgeinf_parallel_limit", 1, within=10)
        assert gauge(server, "edgeinf_drafting") == 0  # and no drafts beside it
        assert httpx.post(url, json=ASK, timeout=60).status_code == 200
        memory_cgroup.leave_room(150)  # under the critical mark: new requests are refused
        assert settles(server, "edgeinf_shedding", 1, within=10)
        shed = httpx.post(url, json=ASK, timeout=60)
        assert shed.status_code == 503 and "Retry-After" in shed.headers
        assert "memory" in shed.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health").status_code == 200
        memory_cgroup.limit(4 << 30)  # memory is back
        assert settles(server, "edgeinf_shedding", 0, within=10)
        assert settles(server, "edgeinf_parallel_limit", 2, within=10)
        assert gauge(server, "edgeinf_drafting") == 1
        assert httpx.post(url, json=ASK, timeout=60).status_code == 200
    finally:
        assert server.stop() == 0


def test_heat_is_judged_like_memory() -> None:
    """Sensors are absent here, so the decision is checked on readings a Pi would give."""
    limits = ((512, 128), (80, 90))
    assert strain(4000, None, *limits).level == "ok"
    assert strain(4000, 79.9, *limits).level == "ok"
    assert strain(4000, 82.0, *limits).level == "strained"
    assert strain(4000, 91.0, *limits).why == "the CPU is at 91 °C"
    assert strain(100, 40.0, *limits).level == "critical"
    assert strain(300, 85.0, *limits).level == "strained"
