"""Memory limits made real with a cgroup: a model or a context that does not fit is refused up
front with the numbers, and what fits still runs inside the same limit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TARGET, TINY, MemoryCgroup
from tests.server.conftest import start

LIMIT = 700 << 20


@pytest.fixture
def limited(memory_cgroup: MemoryCgroup) -> Path:
    memory_cgroup.limit(LIMIT)
    return memory_cgroup.path


def run_in(group: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeinf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=MemoryCgroup(group).join,
    )


@pytest.mark.reliability(19)
def test_a_model_larger_than_the_limit_is_refused_with_the_numbers(
    limited: Path, target_path: Path, tiny_path: Path
) -> None:
    big = run_in(limited, "run", "-m", TARGET, "--ctx", "512", "Hello")
    assert big.returncode == 1, big.stderr
    assert "GiB weights" in big.stderr and "only 0." in big.stderr, big.stderr
    assert "smaller model" in big.stderr

    long = run_in(limited, "run", "-m", TINY, "--ctx", "131072", "Hello")
    assert long.returncode == 1, long.stderr
    assert "GiB KV cache" in long.stderr and "lower --ctx" in long.stderr

    fits = run_in(limited, "run", "-m", TINY, "--ctx", "512", "--max-tokens", "8", "Hello")
    assert fits.returncode == 0, fits.stderr
    assert fits.stdout.strip()


@pytest.mark.reliability(19)
def test_a_server_that_cannot_fit_its_model_says_so_and_stays_alive(
    tmp_path: Path, limited: Path, target_path: Path
) -> None:
    join = MemoryCgroup(limited).join
    server = start(tmp_path, model=TARGET, ctx=512, wait_ready=False, preexec=join)
    try:
        for _ in range(300):
            r = httpx.get(f"{server.url}/ready")
            if "GiB" in r.text:
                break
            time.sleep(0.1)
        assert r.status_code == 503 and "smaller model" in r.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        server.stop()
