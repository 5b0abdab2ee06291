"""`edgeinf pull NAME...`: download, assemble and verify catalog models, or any GGUF model
of the hub by name (`owner/repo[:QUANT]`)."""

from __future__ import annotations

import argparse
import sys

from edgeinf.catalog import open_store
from edgeinf.catalog.hub import Hub, hub_token, is_hub_ref, parse_ref
from edgeinf.catalog.pull import pull
from edgeinf.cli.terminal import byte_progress
from edgeinf.config import load_settings


def _say(msg: str) -> None:
    print(f"edgeinf: {msg}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings)
    hub_refs = {n: parse_ref(n, settings.hub_url) for n in args.names if is_hub_ref(n)}
    entries = {n: store.catalog_entry(n) for n in args.names if n not in hub_refs}
    hub = Hub(settings.hub_url, hub_token()) if hub_refs else None
    try:
        for name in args.names:  # every name was checked before the first download
            if name in hub_refs:
                assert hub is not None
                resolved = hub.resolve(hub_refs[name])
                with byte_progress(resolved.name, resolved.size) as advance:
                    path = hub.download(resolved, store, advance, _say)
                print(f"{resolved.name}: verified {path} (commit {resolved.commit[:12]})")
                continue
            entry = entries[name]
            with byte_progress(entry.name, entry.size) as advance:
                path = pull(
                    entry,
                    store,
                    index_url=settings.pypi_index_url,
                    hub_base=settings.hub_url,
                    progress=advance,
                    notify=_say,
                )
            print(f"{entry.name}: verified {path}")
    finally:
        if hub is not None:
            hub.close()
    return 0
