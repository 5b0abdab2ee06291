"""Writing files so that a crash leaves the old or the new version, never a torn one; and
what is read of a file, kept while it does not change."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees the old or the new bytes, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def per_version(compute: Callable[[Path], T]) -> Callable[[Path], T]:
    """`compute` of a file, done again only when the file changed (its size or mtime): for
    listings asked often about files that rarely change."""

    @functools.lru_cache(maxsize=64)
    def of_version(path: Path, size: int, mtime_ns: int) -> T:
        return compute(path)

    def cached(path: Path) -> T:
        st = path.stat()
        return of_version(path, st.st_size, st.st_mtime_ns)

    return cached
