"""`edgeinf quantize SRC DST --type T`: rewrite a model at another precision and register it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeinf.catalog import open_store
from edgeinf.cli.main import settings_from
from edgeinf.guard import physical_cores
from edgeinf.service.quantize import quantize_model


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = open_store(settings)
    src = store.resolve(args.src).path
    name = quantize_model(
        store,
        src,
        Path(args.dst).expanduser().resolve(),
        args.type,
        settings.threads or physical_cores(),
        warn=lambda msg: print(f"edgeinf: warning: {msg}", file=sys.stderr),
        name=args.name,
    )
    print(f"wrote {args.dst}; registered as '{name}' (edgeinf run -m {name} ...)")
    return 0
