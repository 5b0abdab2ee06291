"""The daemon packaging: units systemd accepts, a plist launchd can read, a sound script."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
EDGEINF = Path(sys.executable).with_name("edgeinf")


def _verify(units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in sorted(units.iterdir()))],
        capture_output=True,
        text=True,
        cwd=units,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    service = (PACKAGING / "systemd" / "edgeinf.service").read_text()
    (tmp_path / "edgeinf.service").write_text(
        service.replace("/opt/edgeinf/venv/bin/edgeinf", str(EDGEINF))
    )
    shutil.copy(PACKAGING / "systemd" / "edgeinf.socket", tmp_path)
    proc = _verify(tmp_path)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    # The check is real: systemd reports what it cannot parse.
    (tmp_path / "edgeinf.service").write_text(service.replace("Type=notify", "Type=bogus"))
    assert "bogus" in _verify(tmp_path).stderr


def test_service_is_hardened_and_notifies() -> None:
    text = (PACKAGING / "systemd" / "edgeinf.service").read_text()
    for line in (
        "Type=notify",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
    ):
        assert line in text
    assert "ListenStream=127.0.0.1:" in (PACKAGING / "systemd" / "edgeinf.socket").read_text()


def test_launchd_plist_is_valid() -> None:
    plist = plistlib.loads((PACKAGING / "launchd" / "dev.edgeinf.server.plist").read_bytes())
    assert plist["Label"] == "dev.edgeinf.server"
    assert plist["ProgramArguments"][1:] == ["serve"]


def test_pi_install_script_parses() -> None:
    subprocess.run(["bash", "-n", str(PACKAGING / "raspberry-pi" / "install.sh")], check=True)
