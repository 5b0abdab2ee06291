"""A tool-use evaluation over any OpenAI-compatible server: 100 prompts over 12 tools, 75 that
need one call (single and several arguments, enums, a nested object) and 25 that need none,
each offered with tools it does not need beside the one it does. A case is right when the
call is the expected one with the expected arguments (optional ones the prompt did not give
may be added; free text such as a search query needs only its key words) or, where no call is
wanted, when none is made."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import httpx


@dataclass(frozen=True)
class Case:
    prompt: str
    tools: tuple[str, ...]
    expect: dict[str, Any] | None  # {"name": ..., "arguments": {...}}, or None: no call


def load() -> tuple[dict[str, Any], list[Case]]:
    """The tools (name -> description and parameters) and the cases."""
    data = json.loads(files("edgeinf.bench").joinpath("data/tooluse.json").read_text())
    cases = [Case(c["prompt"], tuple(c["tools"]), c["expect"]) for c in data["cases"]]
    return data["tools"], cases


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            _same(v, actual.get(k)) for k, v in expected.items()
        )
    if isinstance(expected, bool) or expected is None:
        return bool(expected == actual)
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and abs(expected - actual) < 1e-9
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    if expected.startswith("~"):  # free text: these words, in any wording around them
        return all(word in actual.casefold() for word in expected[1:].casefold().split())
    return actual.strip().casefold() == expected.casefold()


def grade(case: Case, calls: list[dict[str, Any]], tools: dict[str, Any]) -> str:
    """The outcome: right, or missed, unwanted, wrong_tool, bad_json or wrong_args."""
    if case.expect is None:
        return "unwanted" if calls else "right"
    if not calls:
        return "missed"
    want = case.expect
    for call in calls:
        if call["name"] != want["name"]:
            return "wrong_tool"
        try:
            args = json.loads(call["arguments"])
        except json.JSONDecodeError:
            return "bad_json"
        known = set(tools[want["name"]]["parameters"].get("properties", {}))
        if not isinstance(args, dict) or not set(args) <= known:
            return "wrong_args"
        if not _same(want["arguments"], args):
            return "wrong_args"
    return "right"


def evaluate(url: str, model: str, timeout: float = 300) -> dict[str, Any]:
    """Every case through `url`'s /v1/chat/completions, greedy, one after another."""
    tools, cases = load()
    graded: list[tuple[Case, str, list[dict[str, Any]]]] = []
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=timeout) as http:
        for case in cases:
            offered = [
                {"type": "function", "function": {"name": n, **tools[n]}} for n in case.tools
            ]
            r = http.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "messages": [{"role": "user", "content": case.prompt}],
                    "tools": offered,
                    "temperature": 0,
                    "max_tokens": 200,
                },
            )
            calls: list[dict[str, Any]] = []
            if r.status_code != 200:
                outcome = f"http_{r.status_code}"
            else:
                message = r.json()["choices"][0]["message"]
                calls = [c["function"] for c in message.get("tool_calls") or []]
                outcome = grade(case, calls, tools)
            graded.append((case, outcome, calls))
    outcomes: dict[str, int] = {}
    for _, outcome, _ in graded:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    right = [case for case, outcome, _ in graded if outcome == "right"]
    return {
        "url": url,
        "cases": len(cases),
        "accuracy": round(len(right) / len(cases), 3),
        "calls_right": sum(c.expect is not None for c in right),
        "calls_wanted": sum(c.expect is not None for c in cases),
        "no_call_right": sum(c.expect is None for c in right),
        "no_call_wanted": sum(c.expect is None for c in cases),
        "outcomes": dict(sorted(outcomes.items())),
        "seconds": round(time.perf_counter() - started, 1),
        "misses": [
            {"prompt": c.prompt, "outcome": o, "calls": calls}
            for c, o, calls in graded
            if o != "right"
        ],
    }
