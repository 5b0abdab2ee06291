"""Real `edgeinf serve` processes on loopback, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeinf.bench.server import up
from tests.conftest import DRAFT, TINY, free_port

# What the servers of this run measured of the device (speculation costs per model), handed
# to each new server's state as a restart finds it: measured once per model, not per server.
DEVICE_PROFILE = Path(tempfile.mkdtemp(prefix="edgeinf-test-profile-")) / "profile.json"


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
    *flags: str,
    model: str | Path = TINY,
    ctx: int = 1024,
    parallel: int | None = None,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    verbose: bool = False,
    preexec: Callable[[], object] | None = None,
) -> Server:
    """`edgeinf serve` of `model` on a free loopback port, its state under `tmp`; `flags` are
    further `serve` flags. Waits for /ready (or /health when not `wait_ready`) up to two
    minutes."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    args = ["--port", str(port), "-m", str(model), "--ctx", str(ctx), *flags]
    if parallel is not None:
        args += ["--parallel", str(parallel)]
    env = {**os.environ, "EDGEINF_STATE_DIR": str(tmp / "state"), **(env or {})}
    profile = Path(env["EDGEINF_STATE_DIR"]) / "profile.json"
    if DEVICE_PROFILE.exists() and not profile.exists():
        profile.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the server makes it
        shutil.copyfile(DEVICE_PROFILE, profile)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeinf", *(["-v"] if verbose else []), "serve", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
        env=env,
    )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    if up(server.url, proc, 120, "/ready" if wait_ready else "/health") or proc.poll() is not None:
        if wait_ready and profile.exists():  # what it measured, added to what it was given
            shutil.copyfile(profile, DEVICE_PROFILE)
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
    server = start(tmp_path_factory.mktemp("tiny"), parallel=2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, draft_path: Path) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("chat"), model=DRAFT, ctx=2048, parallel=2)
    yield server
    server.stop()
