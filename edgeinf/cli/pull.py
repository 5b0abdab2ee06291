"""`edgeinf pull NAME...`: download, assemble and verify catalog models."""

from __future__ import annotations

import argparse
import sys

from edgeinf.catalog import open_store
from edgeinf.catalog.pull import pull
from edgeinf.cli.terminal import byte_progress
from edgeinf.config import load_settings


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings)
    entries = [store.catalog_entry(name) for name in args.names]  # all names checked first
    for entry in entries:
        with byte_progress(entry.name, entry.size) as advance:
            path = pull(
                entry,
                store,
                index_url=settings.pypi_index_url,
                hub_base=settings.hub_url,
                progress=advance,
                notify=lambda msg: print(f"edgeinf: {msg}", file=sys.stderr),
            )
        print(f"{entry.name}: verified {path}")
    return 0
