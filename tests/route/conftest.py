"""Remotes for routing tests: a misbehaving server process, and a real edgeinf serving the 1.5B."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeinf.config import Settings
from edgeinf.route.dispatch import encoder_files
from tests.conftest import TARGET
from tests.server.conftest import Server, free_port, start


@dataclass
class FaultRemote:
    proc: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:PORT

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def script(self, *steps: str, default: str = "ok") -> None:
        httpx.post(f"{self.base}/_script", json={"steps": list(steps), "default": default})

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base}/_stats").json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture()
def fault_remote() -> Iterator[FaultRemote]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.fault_remote", str(port)])
    remote = FaultRemote(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            remote.stats()
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield remote
    remote.stop()


@pytest.fixture(scope="session")
def encoder(settings: Settings) -> tuple[Path, Path]:
    """The router's encoder files, pulled into the shared model store."""
    return encoder_files(settings)


@pytest.fixture(scope="session")
def remote_15b(tmp_path_factory: pytest.TempPathFactory, target_path: Path) -> Iterator[Server]:
    """A real OpenAI-compatible server process on loopback serving the 1.5B model."""
    server = start(
        tmp_path_factory.mktemp("remote15b"), "-m", TARGET, "--ctx", "4096", "--parallel", "2"
    )
    yield server
    server.stop()


__all__ = ["FaultRemote", "free_port"]
