"""Machine readings in (psutil), plain decisions out: threads, whether a model fits."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from edgeinf.errors import InsufficientMemoryError

GIB = 1 << 30
_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2^63


def physical_cores() -> int:
    """Decode threads: one per physical core (hyper-threads slow token generation down)."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class CpuUse:
    """How many cores other processes kept busy since the last reading (steal by a
    hypervisor included): the whole machine's busy time less this process's own."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.cpus = psutil.cpu_count() or 1  # the machine's, as its busy time is
        self._last = self._read()

    def _read(self) -> tuple[float, float, float]:
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        # guest time is counted in user and nice as well
        guest = getattr(machine, "guest", 0.0) + getattr(machine, "guest_nice", 0.0)
        busy = sum(machine) - idle - guest
        own = self._process.cpu_times()
        return time.monotonic(), busy, own.user + own.system

    def others(self) -> float:
        now = self._read()
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        if t1 - t0 <= 0:
            return 0.0
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))


def team_size(threads: int, cpus: int, others: float) -> int:
    """Decode threads while other processes keep `others` cores busy: llama.cpp's threads
    wait for each other at every step (OpenMP spins there), so a thread that shares its core
    stalls the whole team; decoding on the cores left over is faster (2 cores, two busy loops
    beside the 270M: 2 threads fell to 1 tok/s for seconds at a time, 1 thread kept 21)."""
    return max(1, min(threads, int(cpus - others + 0.5)))


def available_memory() -> int:
    """What this process can still use: free memory, or less when a container, a systemd
    unit (MemoryMax=) or another cgroup limits it."""
    free = psutil.virtual_memory().available
    room = cgroup_room()
    return free if room is None else min(free, room)


def cgroup_room(
    proc_cgroup: Path = Path("/proc/self/cgroup"), mount: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """Bytes left under the tightest memory limit of this process's cgroup and its parents
    (cgroup v2 or v1); reclaimable file cache counts as room. None when nothing limits it."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            room = _tightest(mount, path, "memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            room = _tightest(
                mount / "memory",
                path,
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            )
        else:
            continue
        if room is not None:
            return room
    return None


def _tightest(root: Path, path: str, limit_file: str, usage_file: str, cache: str) -> int | None:
    tightest: int | None = None
    group = root / path.strip("/")
    while group.is_relative_to(root):
        try:
            limit = (group / limit_file).read_text().strip()
            if limit != "max" and int(limit) < _NO_LIMIT:
                used = int((group / usage_file).read_text())
                stat = dict(ln.split() for ln in (group / "memory.stat").read_text().splitlines())
                room = max(0, int(limit) - used + int(stat.get(cache, 0)))
                tightest = room if tightest is None else min(tightest, room)
        except (OSError, ValueError):
            pass  # not mounted here, or not readable: that level sets no limit we can see
        if group == root:
            break
        group = group.parent
    return tightest


def check_fits(model_bytes: int, kv_bytes: int, available: int | None = None) -> None:
    """Refuse a load that would push the machine into swap or the OOM killer.

    Weights are memory-mapped, so they need page cache rather than anonymous memory; both
    compete for the same RAM, so both must fit in what is available now, with a margin.
    """
    free = available_memory() if available is None else available
    need = model_bytes + kv_bytes
    margin = 256 << 20
    if need + margin > free:
        raise InsufficientMemoryError(
            f"the model needs {need / GIB:.2f} GiB ({model_bytes / GIB:.2f} GiB weights + "
            f"{kv_bytes / GIB:.2f} GiB KV cache) but only {free / GIB:.2f} GiB is available; "
            "use a smaller model or quantization, or lower --ctx"
        )


def hottest_c() -> float | None:
    """The hottest temperature sensor's reading, where psutil can read sensors (Linux, a
    Raspberry Pi among them); None elsewhere."""
    read = getattr(psutil, "sensors_temperatures", None)
    try:
        sensors = read() if read is not None else {}
    except OSError:
        return None
    values = [t.current for group in sensors.values() for t in group if t.current]
    return max(values) if values else None


Level = Literal["ok", "strained", "critical"]


@dataclass(frozen=True)
class Strain:
    """How hard the machine is pressed: "ok", "strained" (decode one request at a time) or
    "critical" (take no new requests), and why."""

    level: Level
    why: str = ""


def strain(
    room_mb: float,
    temperature_c: float | None,
    memory_mb: tuple[float, float],
    temperature: tuple[float, float],
) -> Strain:
    """`memory_mb` and `temperature` are the (low, critical) and (high, critical) limits."""
    hot = temperature_c if temperature_c is not None else float("-inf")
    levels: tuple[tuple[Level, int], ...] = (("critical", 1), ("strained", 0))
    for level, at in levels:
        if room_mb < memory_mb[at]:
            return Strain(level, f"only {room_mb:.0f} MB of memory is available")
        if hot >= temperature[at]:
            return Strain(level, f"the CPU is at {hot:.0f} °C")
    return Strain("ok")
