"""`edgeinf ps`: what a running server has loaded, asked over its own API."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

import httpx

from edgeinf.config import load_settings, read_api_key
from edgeinf.errors import EdgeinfError


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    url = args.url or f"http://{settings.host}:{settings.port}"
    key = read_api_key(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/ps", headers=headers, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise EdgeinfError(
            f"cannot ask the server at {url} ({exc}); start it with `edgeinf serve`, or give "
            "its address with --url"
        ) from exc
    models = response.json()["models"]
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("no model loaded")
    for m in models:
        expires = m.get("expires_at")
        until = "kept loaded" if expires is None else f"unloads {_ago(expires)}"
        print(
            f"{m['name']:40} {m['edgeinf_kind']:6} {m['size'] / 2**20:8.0f} MiB  "
            f"ctx {m['context_length']:<6} {until}"
        )
    return 0


def _ago(stamp: str) -> str:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return f"in {max(0, seconds):.0f} s"
