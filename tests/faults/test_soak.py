"""A short soak (tools/soak.py) of a real server under mixed load: zero 5xx, no dropped
connection, a clean exit, and memory that does not run away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY

SECONDS = float(os.environ.get("EDGEINF_SOAK_SECONDS", "40"))


@pytest.mark.slow
@pytest.mark.reliability(15)
def test_a_short_soak_has_no_server_errors(
    tiny_path: Path, record_property: Callable[[str, object], None]
) -> None:
    tool = Path(__file__).parents[2] / "tools" / "soak.py"
    run = subprocess.run(
        [sys.executable, str(tool), "--model", TINY, "--duration", str(SECONDS), "--clients", "4"],
        capture_output=True,
        text=True,
        timeout=SECONDS + 300,
    )
    report = json.loads(run.stdout)
    record_property("requests", report["requests"])
    record_property("server_errors", report["server_errors"])
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    assert report["server_errors"] == 0 and report["dropped"] == 0 and report["exit_code"] == 0
    assert set(report["by_kind"]) >= {"chat", "stream", "disconnect", "session", "completion"}
    assert report["rss_end_mb"] < report["rss_start_mb"] + 150, report
