"""The tool-use evaluation (edgeinf.bench.tooluse) against servers on loopback, one after the
other in one run: edgeinf's and, for comparison, llama.cpp's llama-server (`--jinja`) with the
same model file.

    python tools/tooluse.py --url http://127.0.0.1:8088 --url http://127.0.0.1:8089

Prints, per server, the share of the 100 cases right, the calls right of the 75 that need
one, the no-calls right of the 25 that need none, and what went wrong; --misses lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlparse

import httpx

from edgeinf.bench.tooluse import evaluate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", action="append", required=True, help="a server (repeatable)")
    p.add_argument("--misses", action="store_true", help="print every case gone wrong")
    args = p.parse_args()
    for url in args.url:
        if (urlparse(url).hostname or "") not in ("127.0.0.1", "localhost", "::1"):
            print("the evaluation targets loopback only", file=sys.stderr)
            return 2
    for url in args.url:
        model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
        report = evaluate(url, model)
        misses = report.pop("misses")
        print(json.dumps({"model": model, **report}), flush=True)
        for miss in misses if args.misses else []:
            print("  ", json.dumps(miss, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
