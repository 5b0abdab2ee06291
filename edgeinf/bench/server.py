"""An `edgeinf serve` of its own on a free loopback port, for the tools that load one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def up(url: str, proc: subprocess.Popen[Any], timeout_s: float, path: str = "/ready") -> bool:
    """Whether the server at `url` answers `path` with 200 within `timeout_s` (False as soon
    as its process has exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


class Served:
    """A running server: its process, URL and log."""

    def __init__(self, state: Path, flags: list[str], env: dict[str, str] | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.log = state / "server.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgeinf", "serve", "--port", str(port), *flags],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "EDGEINF_STATE_DIR": str(state), **(env or {})},
            )
        self.url = f"http://127.0.0.1:{port}"
        if up(self.url, self.proc, timeout_s=180):
            return
        self.proc.kill()
        self.proc.wait()
        sys.exit(f"the server did not become ready; see {self.log}")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
