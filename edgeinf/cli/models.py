"""`edgeinf models [--json]` lists models; `edgeinf models add PATH` registers a file;
`edgeinf show NAME` describes one; `edgeinf rm NAME` removes one."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgeinf.catalog import open_store
from edgeinf.catalog.store import ModelStore
from edgeinf.config import load_settings
from edgeinf.errors import EdgeinfError
from edgeinf.gguf.check import read_gguf
from edgeinf.gguf.info import capabilities, inspect
from edgeinf.gguf.info import describe as describe_gguf


def listing(store: ModelStore) -> list[dict[str, Any]]:
    """One record per catalog or registered model, with GGUF metadata when it is on disk."""
    rows: list[dict[str, Any]] = []
    local = {m.name: m for m in store.local_files()}
    for name, entry in store.catalog.items():
        rows.append(
            {
                "name": name,
                "kind": "catalog",
                "role": entry.role,
                "path": str(store.path_of(entry)),
                "size": entry.size,
            }
        )
    for name, rec in store.registered().items():
        rows.append(
            {"name": name, "kind": "registered", "role": None, "path": rec["path"], "size": None}
        )
    for row in rows:
        model = local.get(row["name"])
        row["present"] = model is not None
        row["verified"] = bool(
            model and model.sha256 and store.is_verified(model.path, model.sha256)
        )
        row["info"] = None
        if model is not None and model.path.suffix == ".gguf":
            try:
                row["info"] = asdict(inspect(model.path))
                row["size"] = row["info"]["file_size"]
            except EdgeinfError as exc:
                row["error"] = str(exc)
    return rows


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "name",
        "role",
        "arch",
        "params",
        "quant",
        "ctx",
        "tokenizer",
        "template",
        "size",
        "status",
        box=None,
        pad_edge=False,
    )
    for r in rows:
        i = r["info"] or {}
        status = ("verified" if r["verified"] else "present") if r["present"] else "not pulled"
        table.add_row(
            r["name"],
            r["role"] or r["kind"],
            i.get("architecture", ""),
            f"{i['parameters'] / 1e6:.0f}M" if i else "",
            i.get("quantization", ""),
            str(i.get("context_length", "")),
            i.get("tokenizer", ""),
            ("yes" if i.get("chat_template") else "no") if i else "",
            f"{r['size'] / 1e6:.0f} MB" if r["size"] else "",
            r.get("error", status),
        )
    console = Console()
    if not console.is_terminal:  # piped: full names, no wrapping to a guessed width
        console = Console(width=240)
    console.print(table)


def describe(store: ModelStore, name: str) -> dict[str, Any]:
    """What `edgeinf show` prints: the file's facts, its template and capabilities."""
    model = store.resolve(name)
    if model.path.suffix != ".gguf":
        return {"name": model.name, "path": str(model.path), "capabilities": ["embedding"]}
    gguf = read_gguf(model.path)
    template = gguf.metadata.get("tokenizer.chat_template")
    return {
        "name": model.name,
        "path": str(model.path),
        "sha256": model.sha256,
        **asdict(describe_gguf(gguf)),
        "capabilities": capabilities(gguf.metadata),
        "template": template if isinstance(template, str) else None,
    }


def show(args: argparse.Namespace) -> int:
    facts = describe(open_store(load_settings()), args.name)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    for key, value in facts.items():
        if key != "template":
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key:16} {shown}")
    if facts.get("template"):
        print(f"\ntemplate:\n{facts['template']}")
    return 0


def remove(args: argparse.Namespace) -> int:
    store = open_store(load_settings())
    for name in args.names:
        print(store.remove(name))
    return 0


def run(args: argparse.Namespace) -> int:
    store = open_store(load_settings())
    if args.models_command == "add":
        name = store.register(Path(args.path), args.name)
        print(f"registered '{name}'; use it with --model {name}")
        return 0
    rows = listing(store)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows)
    return 0
