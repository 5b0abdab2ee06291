"""Real `edgeinf serve` processes on loopback, started and stopped by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeinf.bench.server import up
from tests.conftest import DRAFT, TINY, free_port


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    verbose: bool = False,
    preexec: Callable[[], object] | None = None,
) -> Server:
    port = free_port()
    log = tmp / f"server-{port}.log"
    flags = ["-v"] if verbose else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeinf", *flags, "serve", "--port", str(port), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
        env={**os.environ, "EDGEINF_STATE_DIR": str(tmp / "state"), **(env or {})},
    )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    if up(server.url, proc, 120, "/ready" if wait_ready else "/health") or proc.poll() is not None:
        return server
    server.stop()
    raise AssertionError(f"server did not become ready: {log.read_text()[-2000:]}")


def templated(model: Path, template: str, out: Path) -> Path:
    """A copy of a model file with another chat template (gguf's own metadata tool)."""
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(model), str(out),
         "--chat-template", template, "--force"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory, tiny_path: Path) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("tiny"), "-m", TINY, "--ctx", "1024", "--parallel", "2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, draft_path: Path) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("chat"), "-m", DRAFT, "--ctx", "2048", "--parallel", "2")
    yield server
    server.stop()
