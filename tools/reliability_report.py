"""The reliability checklist with, for each row, its tests, their outcome and their figures.

Runs every test marked `@pytest.mark.reliability(...)` (or reads a report written earlier by
`pytest --reliability-report FILE`) and prints one table row per checklist row. Exits 1 when a
row has no test or a test failed, so the report can gate a release.

    python tools/reliability_report.py                 # run the marked tests, then report
    python tools/reliability_report.py --from FILE     # report an earlier run
    python tools/reliability_report.py -- -k fuzz      # extra pytest arguments after --
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

FIGURE_ORDER = ("kills", "sigterms", "fuzz_cases", "malformed_files", "requests", "server_errors")


def run_marked(extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reliability.json"
        cmd = [sys.executable, "-m", "pytest", "-m", "reliability", "-q", "-p", "no:cacheprovider"]
        subprocess.run([*cmd, f"--reliability-report={out}", *extra], check=False)
        if not out.exists():
            sys.exit("pytest wrote no report; see its output above")
        report: dict[str, Any] = json.loads(out.read_text())
        return report


def verdict(tests: dict[str, str]) -> str:
    if not tests:
        return "NO TEST"
    outcomes = set(tests.values())
    if outcomes & {"failed", "error"}:
        return "FAIL"
    return "pass" if outcomes == {"passed"} else "skipped" if "passed" not in outcomes else "pass*"


def test_names(tests: dict[str, str]) -> list[str]:
    """One entry per test function, parametrized cases counted: `file.py::name (x6)`."""
    counts = Counter(
        f"{t.split('::')[0].rsplit('/', 1)[-1]}::{t.split('[')[0].split('::')[-1]}" for t in tests
    )
    return [f"{name} (x{n})" if n > 1 else name for name, n in sorted(counts.items())]


def figures(values: dict[str, float]) -> str:
    names = sorted(values, key=lambda n: (FIGURE_ORDER.index(n) if n in FIGURE_ORDER else 99, n))
    return ", ".join(f"{n.replace('_', ' ')} {values[n]:g}" for n in names)


def render(report: dict[str, Any]) -> tuple[str, bool]:
    lines = ["| # | section | fault | tests | result | figures |", "|---|---|---|---|---|---|"]
    ok = True
    for n in sorted(report, key=int):
        row = report[n]
        result = verdict(row["tests"])
        ok = ok and result in ("pass", "pass*")
        names = "<br>".join(test_names(row["tests"]))
        lines.append(
            f"| {n} | {row['section']} | {row['fault']} | {names or '-'} | {result} "
            f"| {figures(row['figures'])} |"
        )
    passed = sum(verdict(r["tests"]) in ("pass", "pass*") for r in report.values())
    lines.append("")
    lines.append(f"{passed} of {len(report)} rows pass" + ("" if ok else "; see the rows above"))
    return "\n".join(lines), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="a report written by pytest")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    report = json.loads(args.source.read_text()) if args.source else run_marked(args.pytest_args)
    table, ok = render(report)
    print(table)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
