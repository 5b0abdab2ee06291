"""What every benchmark report carries: the command, the machine, the build, the model."""

from __future__ import annotations

import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import psutil

from edgeinf.catalog.store import LocalModel


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            wanted = ("avx", "avx2", "avx512f", "avx512_vnni", "fma", "f16c", "neon", "asimd")
            return [f for f in line.split(":", 1)[1].split() if f in wanted]
    return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(model: LocalModel, library: str, system: str) -> dict[str, Any]:
    return {
        "command": " ".join(["edgeinf", *sys.argv[1:]]),
        "machine": {
            "cpu": _cpu_name(),
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(),
            "flags": _cpu_flags(),
            "os": platform.platform(),
        },
        "llama_cpp": library,
        "llama_cpp_system_info": system,
        "model": {"name": model.name, "sha256": (model.sha256 or "")[:12]},
    }


def summary(values: list[float]) -> dict[str, Any]:
    return {"runs": [round(v, 4) for v in values], "median": round(statistics.median(values), 4)}
