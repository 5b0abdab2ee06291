"""The reliability checklist as a pytest plugin.

A test names the checklist rows it makes happen with `@pytest.mark.reliability(row, ...)` and
reports its figures with pytest's `record_property` (for instance `record_property("kills",
200)`). After a run, `--reliability-report FILE` writes every row with its tests, their
outcomes and the summed figures; `tools/reliability_report.py` prints that as the checklist.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The faults of the checklist, by row number, in the words of its sections.
ROWS: dict[int, tuple[str, str]] = {
    1: ("model files", "GGUF chat template carrying a Jinja sandbox escape"),
    2: ("model files", "request supplies its own chat template or template kwargs"),
    3: ("model files", "malformed GGUF: truncated, absurd counts, bad offsets, wrong magic"),
    4: ("model files", "download with the wrong sha256, or killed midway"),
    5: ("HTTP", "default bind; non-loopback bind without an API key"),
    6: ("HTTP", "DNS rebinding: foreign or empty Host header"),
    7: ("HTTP", "CORS request from an arbitrary origin"),
    8: ("HTTP", "API key missing, wrong, padded or in the query string"),
    9: ("HTTP", "session id with ../, slashes, NUL, look-alikes, 10 kB"),
    10: ("HTTP", "negative, huge, NaN or wrong-typed numbers"),
    11: ("HTTP", "body over the cap; prompt longer than the context"),
    12: ("HTTP", "user text containing the template's role markers"),
    13: ("HTTP", "CR/LF and ANSI escapes in logged fields and in model output"),
    14: ("lifecycle", "more concurrent requests than the queue holds"),
    15: ("lifecycle", "client disconnects while queued, in prefill, mid-stream"),
    16: ("lifecycle", "generation stalls past the request deadline"),
    17: ("lifecycle", "SIGTERM mid-stream and mid-save"),
    18: ("lifecycle", "health during model load and after a failed load"),
    19: ("lifecycle", "model or context larger than available memory"),
    20: ("state on disk", "SIGKILL during a save, hundreds of times"),
    21: ("state on disk", "state file truncated, bit-flipped, zero-filled"),
    22: ("state on disk", "state from another model, quant, KV type, context or llama.cpp"),
    23: ("state on disk", "planted pickle, symlink, world-writable state directory"),
    24: ("state on disk", "disk full or EIO on write or fsync"),
    25: ("state on disk", "more sessions than the disk budget"),
    26: ("state on disk", "another principal guesses a session id"),
    27: ("remote", "remote hangs, drips bytes, or cuts the stream"),
    28: ("remote", "429 with Retry-After, 5xx, 4xx"),
    29: ("remote", "remote down for a while"),
    30: ("remote", "the remote's API key"),
    31: ("remote", "message or session marked private"),
    32: ("remote", "plain http off loopback, bad TLS, cross-host redirect"),
    33: ("fuzzing", "GGUF checks, session file parser, chat template rendering, numbers"),
    34: ("fuzzing", "the HTTP API from its OpenAPI schema"),
    35: ("new surfaces", "a request field the server does not implement, or a typo'd one"),
    36: ("new surfaces", "hostile JSON schema or grammar: deep, huge, recursive, unmatchable"),
    37: ("new surfaces", "a malformed tool call: broken JSON, unknown tool, cut by max_tokens"),
    38: ("new surfaces", "tool results and tool arguments carrying role markers"),
    39: ("new surfaces", "a model name over HTTP that is a path, a URL, or unknown"),
    40: ("new surfaces", "several models beyond memory; a model deleted while loaded"),
    41: ("new surfaces", "hub pull: bad repo names, a lying listing, a gated repo, a redirect"),
    42: ("new surfaces", "the prefix cache across principals"),
    43: ("new surfaces", "prefix cache files killed, damaged, of another model; RAM tier full"),
    44: ("new surfaces", "a conversation longer than the context"),
    45: ("new surfaces", "the Ollama routes fuzzed from their schema; NDJSON cut mid-stream"),
    46: ("new surfaces", "the web page: <script>, <img onerror>, javascript: links; the key"),
    47: ("lifecycle", "an exception on the engine or loader thread that is not one of ours"),
    48: ("HTTP", "text that cannot be encoded in any field (a lone UTF-16 surrogate)"),
}


@dataclass
class Row:
    tests: dict[str, str] = field(default_factory=dict)  # node id -> outcome
    figures: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class Checklist:
    """Registered as a plugin object: collects the marked tests, their outcomes and figures."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.rows_of: dict[str, tuple[int, ...]] = {}
        self.rows: dict[int, Row] = {n: Row() for n in ROWS}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            rows = tuple(n for mark in item.iter_markers("reliability") for n in mark.args)
            unknown = [n for n in rows if n not in ROWS]
            if unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: no checklist row {unknown}; rows are {sorted(ROWS)}"
                )
            if rows:
                self.rows_of[item.nodeid] = rows

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = self.rows_of.get(report.nodeid, ())
        for n in rows:
            row = self.rows[n]
            if report.when == "teardown":  # holds every property, fixtures' included
                for name, value in report.user_properties:
                    if isinstance(value, int | float):
                        row.figures[name] += value
            if report.when != "call" and report.passed:
                continue
            if row.tests.get(report.nodeid) not in ("failed", "error"):
                failed_outside = report.when != "call" and report.failed
                row.tests[report.nodeid] = "error" if failed_outside else report.outcome

    def pytest_sessionfinish(self) -> None:
        if self.target:
            Path(self.target).write_text(json.dumps(self.as_json(), indent=2) + "\n")

    def as_json(self) -> dict[str, Any]:
        return {
            str(n): {
                "section": ROWS[n][0],
                "fault": ROWS[n][1],
                "tests": row.tests,
                "figures": dict(row.figures),
            }
            for n, row in self.rows.items()
        }


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="FILE",
        help="write the reliability checklist with tests, outcomes and figures as JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability(*rows): makes the faults of these checklist rows happen"
    )
    target = config.getoption("--reliability-report")
    config.pluginmanager.register(Checklist(target), "reliability-checklist")
