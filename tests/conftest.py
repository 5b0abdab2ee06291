"""Shared fixtures: real models from the model store, pulled once and reused across runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeinf.catalog import open_store
from edgeinf.catalog.pull import pull
from edgeinf.config import Settings, load_settings

# Saved sessions of the test run stay out of the user's state directory (models are shared).
os.environ["EDGEINF_STATE_DIR"] = tempfile.mkdtemp(prefix="edgeinf-test-state-")

TINY = "gemma-3-270m-q4_k_m"
DRAFT = "qwen2.5-coder-0.5b-instruct-q4_k_m"
TARGET = "qwen2.5-coder-1.5b-instruct-q4_k_m"


# The fast tier (`pytest -m "not slow"`) runs with the 270M model only: a test that asks for a
# larger model through these fixtures is slow, whatever its own marks say.
LARGER_MODELS = frozenset({"draft_path", "target_path", "chat_engine", "chat_server", "remote_15b"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LARGER_MODELS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The user's settings: the model store is shared with `edgeinf pull` on this machine."""
    return load_settings()


def _pulled(settings: Settings, name: str) -> Path:
    store = open_store(settings)
    return pull(
        store.catalog_entry(name),
        store,
        index_url=settings.pypi_index_url,
        hub_base=settings.hub_url,
    )


@pytest.fixture(scope="session")
def tiny_path(settings: Settings) -> Path:
    return _pulled(settings, TINY)


@pytest.fixture(scope="session")
def draft_path(settings: Settings) -> Path:
    return _pulled(settings, DRAFT)


@pytest.fixture(scope="session")
def target_path(settings: Settings) -> Path:
    return _pulled(settings, TARGET)


@pytest.fixture(scope="session")
def tiny_engine(tiny_path: Path) -> Iterator[object]:
    from edgeinf.engine.engine import Engine
    from edgeinf.engine.options import EngineOptions

    with Engine(tiny_path, EngineOptions(n_ctx=1024, threads=2, threads_batch=2)) as engine:
        yield engine


@pytest.fixture(scope="session")
def chat_engine(draft_path: Path) -> Iterator[object]:
    """The 0.5B instruct model: the smallest with a real chat template."""
    from edgeinf.engine.engine import Engine
    from edgeinf.engine.options import EngineOptions

    with Engine(draft_path, EngineOptions(n_ctx=1024, threads=2, threads_batch=2)) as engine:
        yield engine


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MB filesystem, so that writes fail with ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@dataclass
class FailingDisk:
    """An ext4 filesystem on a loop device whose second half can be made to vanish."""

    mount: Path
    image: Path
    device: str

    def fail(self) -> None:
        """From now on, writes past the first 16 MB get EIO from the block layer."""
        os.truncate(self.image, 16 << 20)
        subprocess.run(["losetup", "-c", self.device], check=True)


@pytest.fixture
def failing_disk(tmp_path: Path) -> Iterator[FailingDisk]:
    """A real disk that returns EIO on demand (root, loop devices and mkfs.ext4 needed)."""
    image, mount = tmp_path / "disk.img", tmp_path / "failing"
    mount.mkdir()
    with image.open("wb") as fh:
        fh.truncate(64 << 20)
    steps = [
        ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)],
        ["losetup", "-f", "--show", str(image)],
    ]
    made = [subprocess.run(cmd, capture_output=True, text=True) for cmd in steps[:1]]
    if made[0].returncode == 0:
        made.append(subprocess.run(steps[1], capture_output=True, text=True))
    if made[-1].returncode != 0:
        pytest.skip(f"cannot make a loop device here: {made[-1].stderr.strip()}")
    device = made[-1].stdout.strip()
    try:
        subprocess.run(["mount", device, str(mount)], check=True)
        try:
            yield FailingDisk(mount, image, device)
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


@dataclass
class MemoryCgroup:
    """A real memory cgroup (v1) below this process's own, for limits that really bite."""

    path: Path

    def limit(self, limit_bytes: int) -> None:
        (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))

    def leave_room(self, room_mb: int) -> None:
        """A limit that leaves about `room_mb` to what runs inside (file cache counts as room,
        as edgeinf.guard counts it)."""
        used = int((self.path / "memory.usage_in_bytes").read_text())
        stat = dict(ln.split() for ln in (self.path / "memory.stat").read_text().splitlines())
        self.limit(used - int(stat["total_inactive_file"]) + (room_mb << 20))

    def join(self) -> None:
        """For preexec_fn: the child joins before it starts, so it never runs unlimited."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))


@pytest.fixture
def memory_cgroup() -> Iterator[MemoryCgroup]:
    """4 GiB to start with; skips where no cgroup can be made (needs cgroup v1 and root)."""
    mine = next(
        (ln.split(":", 2)[2] for ln in Path("/proc/self/cgroup").read_text().splitlines()
         if "memory" in ln.split(":", 2)[1].split(",")),
        None,
    )  # fmt: skip
    group = Path("/sys/fs/cgroup/memory") / (mine or "").strip("/") / f"edgeinf-{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(4 << 30))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here ({exc.strerror}); needs cgroup v1 + root")
    yield MemoryCgroup(group)
    for pid in (group / "cgroup.procs").read_text().split():
        os.kill(int(pid), 9)
    group.rmdir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
