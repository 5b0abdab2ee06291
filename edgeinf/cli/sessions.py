"""`edgeinf sessions list|show|delete|prune`: this user's saved conversations and the prefix
cache's saved sequences."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from edgeinf.config import load_settings
from edgeinf.errors import InvalidRequestError
from edgeinf.sessions.ids import LOCAL_OWNER
from edgeinf.sessions.row import SessionRow
from edgeinf.sessions.store import SessionStore


def _summary(row: SessionRow) -> dict[str, object]:
    first_user = next((m.content for m in row.messages if m.role == "user"), "")
    return {
        "id": row.id,
        "model": row.model,
        "messages": len(row.messages),
        "kv_tokens": row.kv_tokens,
        "kv_bytes": row.kv_bytes,
        "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(row.last_used)),
        "title": first_user[:60].replace("\n", " "),
    }


def _cached(key: str, owner: str, tokens: int, size: int, used: float) -> dict[str, Any]:
    return {
        "key": key[:16],
        "owner": owner,
        "kv_tokens": tokens,
        "kv_bytes": size,
        "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(used)),
    }


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = SessionStore(settings.state_dir, settings.sessions_budget_mb << 20)
    try:
        return _dispatch(args, store, settings.sessions_budget_mb << 20)
    finally:
        store.close()


def _dispatch(args: argparse.Namespace, store: SessionStore, budget: int) -> int:
    action = args.sessions_command
    if action == "list":
        rows = [_summary(r) for r in store.index.owned_by(LOCAL_OWNER)]
        cached = [_cached(*row) for row in store.index.snapshots()]
        if args.json:
            print(json.dumps({"sessions": rows, "cached": cached}, indent=2))
            return 0
        for r in rows:
            print(
                f"{r['id']:<20} {r['last_used']}  {r['messages']:>3} msgs  "
                f"{r['kv_tokens']:>6} tok saved  {r['title']}"
            )
        total = sum(c["kv_bytes"] for c in cached) / 1e6
        print(f"prefix cache: {len(cached)} saved sequences, {total:.1f} MB (all principals)")
        for c in cached:
            mb = c["kv_bytes"] / 1e6
            print(f"  {c['key']:<16} {c['last_used']}  {c['kv_tokens']:>6} tok  {mb:>7.1f} MB")
        return 0
    if action == "show":
        row = store.get(LOCAL_OWNER, args.id)
        if row is None:
            raise InvalidRequestError(f"no session '{args.id}'; see `edgeinf sessions list`")
        if args.json:
            print(json.dumps({**_summary(row), "messages": [m.as_dict() for m in row.messages]}))
        else:
            for m in row.messages:
                print(f"[{m.role}] {m.content}\n")
        return 0
    if action == "delete":
        missing = [i for i in args.ids if not store.delete(LOCAL_OWNER, i)]
        if missing:
            raise InvalidRequestError(f"no session {', '.join(missing)}; nothing else changed")
        return 0
    target = budget if args.max_mb is None else args.max_mb << 20
    print(f"saved state now {store.prune(target) / 1e6:.1f} MB")
    return 0
