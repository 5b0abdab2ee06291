"""`pull`: fetch a catalog model from its first working source, verify it, then publish it.

The file appears under its final name only after its sha256 matched, so an interrupted or
corrupt download can never be mistaken for a model. A hub download resumes where it stopped.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from edgeinf.catalog.entries import CatalogEntry, ChunkSource, HubSource, Source
from edgeinf.catalog.fetch import Progress, client, fetch_chunks, fetch_hub, hub_url
from edgeinf.catalog.store import ModelStore
from edgeinf.errors import ChecksumMismatchError, PullError
from edgeinf.files import fsync_dir

Notify = Callable[[str], None]


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """One pull of a model at a time, across processes."""
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pull(
    entry: CatalogEntry,
    store: ModelStore,
    *,
    index_url: str,
    hub_base: str,
    progress: Progress = lambda n: None,
    notify: Notify = lambda msg: None,
) -> Path:
    """Make `entry` present and verified in the store; return its path."""
    final = store.path_of(entry)
    root = store.ensure()
    with exclusive(root / f".{entry.file}.lock"):
        if final.is_file() and store.verify(final, entry.sha256):
            return final
        failures: list[str] = []
        mismatches: list[str] = []
        with client() as http:
            for n, source in enumerate(entry.sources, 1):
                more = "; trying the next source" if n < len(entry.sources) else ""
                partial = root / f".{entry.file}.{source.kind}.partial"
                try:
                    digest = _fetch(http, source, partial, index_url, hub_base, progress)
                except (httpx.HTTPError, OSError, PullError) as exc:
                    failures.append(f"{source.kind}: {_describe(exc)}")
                    if more:
                        notify(f"{source.kind} source failed ({_describe(exc)}){more}")
                    continue
                if digest != entry.sha256:
                    partial.unlink(missing_ok=True)
                    mismatches.append(f"{source.kind} gave sha256 {digest[:12]}…")
                    if more:
                        notify(f"{source.kind} source sent a file with the wrong sha256{more}")
                    continue
                os.replace(partial, final)
                fsync_dir(root)
                store.mark_verified(final, entry.sha256)
                return final
    if mismatches:
        raise ChecksumMismatchError(
            f"'{entry.name}' did not match its sha256 {entry.sha256[:12]}… "
            f"({'; '.join(mismatches)}); nothing was kept. Retry later, or report the source"
        )
    raise PullError(
        f"could not download '{entry.name}' ({'; '.join(failures)}); check the network, or "
        "download the file yourself and run `edgeinf models add PATH`"
    )


def _fetch(
    http: httpx.Client,
    source: Source,
    partial: Path,
    index_url: str,
    hub_base: str,
    progress: Progress,
) -> str:
    if isinstance(source, HubSource):
        return fetch_hub(http, hub_url(hub_base, source), partial, progress)
    assert isinstance(source, ChunkSource)
    try:
        return fetch_chunks(http, index_url, source, partial, progress)
    except BaseException:
        partial.unlink(missing_ok=True)  # chunk downloads restart from the first part
        raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url.host}"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    return str(exc)
