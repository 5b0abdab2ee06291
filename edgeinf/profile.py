"""The device profile: measurements of this machine, kept so they are taken once."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edgeinf.files import write_atomic

log = logging.getLogger("edgeinf.profile")


class DeviceProfile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning(
                "ignoring unreadable device profile %s (%s); it will be rewritten", self.path, exc
            )
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, section: str, key: str) -> Any:
        return self._read().get(section, {}).get(key)

    def put(self, section: str, key: str, value: Any) -> None:
        data = self._read()
        data.setdefault(section, {})[key] = value
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data, indent=2).encode())


def profile_path(state_dir: Path) -> Path:
    return state_dir / "profile.json"


TUNED = ("threads", "kv_type", "speculative", "parallel")  # settings `edgeinf tune` may choose


def tuned_defaults(state_dir: Path, given: set[str]) -> dict[str, Any]:
    """What `edgeinf tune` chose for the settings nobody set explicitly."""
    chosen = DeviceProfile(profile_path(state_dir)).get("defaults", "runtime") or {}
    return {k: chosen[k] for k in TUNED if k in chosen and k not in given}
