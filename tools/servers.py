"""Servers side by side on loopback: alternating rounds of the same load, medians and ratios.

    python tools/servers.py --server edgeinf=http://127.0.0.1:8088 \\
        --server llama=http://127.0.0.1:8090 --server llama-ngram=http://127.0.0.1:8091 \\
        --workload questions --workload edit --clients 4 --clients 8 --rounds 3

Each round runs tools/loadtest.py's load (its one-after-another part, then the concurrent
clients) once per workload and client count on every server, the servers' order rotating
from round to round so that none always runs first. Prints one JSON object: per case, each
server's median aggregate tok/s, one-after-another tok/s, TTFT p50 and stall p50 (the
longest wait between two pieces of one answer), and the first server's ratios against each
other one. Start the servers with the same model and threads; judge
only ratios within one run (the project's BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from typing import Any
from urllib.parse import urlparse

from loadtest import PROMPTS, run

from edgeinf.bench.workloads import prompts

MAX_TOKENS = {"questions": 64, "edit": 128, "code": 128, "chat": 128}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", action="append", required=True, metavar="NAME=URL")
    p.add_argument("--workload", action="append", choices=sorted(MAX_TOKENS))
    p.add_argument("--clients", action="append", type=int)
    p.add_argument("--requests", type=int, default=8, help="per load (clients x 2 at least)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    servers = dict(s.split("=", 1) for s in args.server)
    if any(urlparse(u).hostname not in ("127.0.0.1", "localhost", "::1") for u in servers.values()):
        print("load tests target loopback only", file=sys.stderr)
        return 2
    workloads = args.workload or ["questions"]
    client_counts = args.clients or [4]
    names = list(servers)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in range(min(args.rounds, 9)):
        order = names[r % len(names) :] + names[: r % len(names)]
        for workload in workloads:
            for clients in client_counts:
                case = f"{workload} x{clients}"
                requests = max(min(args.requests, 200), 2 * clients)
                texts = PROMPTS if workload == "questions" else prompts(workload, requests)
                for name in order:
                    report = asyncio.run(
                        run(
                            servers[name],
                            clients,
                            requests,
                            MAX_TOKENS[workload],
                            args.timeout,
                            texts,
                        )
                    )
                    runs.setdefault(case, {}).setdefault(name, []).append(report)
                    print(f"round {r + 1} {case} {name}: {json.dumps(report)}", file=sys.stderr)
    print(json.dumps({case: summary(by_server, names) for case, by_server in runs.items()}))
    return 0


def summary(by_server: dict[str, list[dict[str, Any]]], names: list[str]) -> dict[str, Any]:
    def median(name: str, key: str) -> float:
        return round(statistics.median(float(r[key]) for r in by_server[name]), 3)

    keys = ("aggregate_tok_s", "one_after_another_tok_s", "ttft_p50_s", "stall_p50_s")
    out: dict[str, Any] = {
        name: {
            **{key: median(name, key) for key in keys},
            "errors": sum(sum(r["errors"].values()) for r in by_server[name]),
        }
        for name in names
    }
    first = names[0]
    for other in names[1:]:
        out[f"{first}_vs_{other}"] = {
            key: round(median(first, key) / median(other, key), 3) for key in keys
        }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
