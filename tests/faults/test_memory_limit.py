"""Memory limits made real with a cgroup: a model or a context that does not fit is refused up
front with the numbers, and what fits still runs inside the same limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TARGET, TINY
from tests.server.conftest import start

LIMIT = 700 << 20


@pytest.fixture
def limited() -> Iterator[Path]:
    """A memory cgroup (v1) of 700 MB below this process's own; skips where none can be made."""
    mine = next(
        (ln.split(":", 2)[2] for ln in Path("/proc/self/cgroup").read_text().splitlines()
         if "memory" in ln.split(":", 2)[1].split(",")),
        None,
    )  # fmt: skip
    parent = Path("/sys/fs/cgroup/memory") / (mine or "").strip("/")
    group = parent / f"edgeinf-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(LIMIT))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here ({exc.strerror}); needs cgroup v1 + root")
    yield group
    for pid in (group / "cgroup.procs").read_text().split():
        os.kill(int(pid), 9)
    group.rmdir()


def joiner(group: Path) -> Callable[[], int]:
    """Run in the child before it starts: it joins the cgroup, so it never runs unlimited."""
    return lambda: (group / "cgroup.procs").write_text(str(os.getpid()))


def run_in(group: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeinf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=joiner(group),
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
    server = start(
        tmp_path, "-m", TARGET, "--ctx", "512", wait_ready=False, preexec=joiner(limited)
    )
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
