"""`edgeinf tune [--model M] [--quick]`: measure, print the trade-offs, keep the defaults."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.cli.main import settings_from
from edgeinf.errors import MissingExtraError
from edgeinf.tune.report import plot, table
from edgeinf.tune.tune import tune


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = open_store(settings)
    model = resolve_verified(store, args.model or settings.default_model)
    result = tune(
        settings,
        store,
        model,
        args.quick,
        progress=lambda msg: print(f"edgeinf: measuring {msg}", file=sys.stderr),
    )
    try:
        png: Path | None = plot(result, args.plot or Path(f"edgeinf-tune-{model.name}.png"))
    except MissingExtraError as exc:  # the measurements and defaults stand without the picture
        print(f"edgeinf: no plot: {exc}", file=sys.stderr)
        png = None
    result["plot"] = None if png is None else str(png)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console

    console = Console()
    console.print(table(result))
    d = result["defaults"]
    console.print(
        f"defaults kept in {result['profile']}: threads {d['threads']}, KV cache {d['kv_type']} "
        f"(flags, environment and config.toml still win)" + (f"; plot: {png}" if png else ""),
        markup=False,
    )
    return 0
