"""Fill-in-the-middle measured against servers on loopback, over their /infill routes.

    python tools/fim.py eval --url http://127.0.0.1:8093 --url http://127.0.0.1:8094
    python tools/fim.py keystroke --url http://127.0.0.1:8093 --model MODEL

eval: held-out cases from code nobody here wrote, the functions of pure-Python standard
library modules that carry doctests: one line of a function's body is removed, the cursor
on the blank line, and the server fills it in (greedy, the text of the 40 lines before and
16 after, as llama.vscode sends it; each case cold, `cache_prompt` false). The answer's first
line counts: exact match of the line,
and whether the module with it in place still passes that function's own doctests (run in a child
process with a time limit). Every --url gets the same cases in one run (llama.cpp's
llama-server answers /infill too).

keystroke: a file of about 2,000 tokens, the cursor in its middle; --edits requests that
each type a few more characters at the cursor, then one that pastes 20 lines above it. Each
is answered with the slot's moved runs reused (the server's cache_reuse), and every
--every'th also with only the unchanged start reused (n_cache_reuse 0) and cold
(cache_prompt false): time to first token (the server's prompt_ms) per mode, median and p95,
and how often the reused answer differs from the cold one (greedy).

Prints one JSON object per server (eval) or one for the run (keystroke); figures are ratios
within one run (see the project's BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import statistics
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib import import_module
from typing import Any
from urllib.parse import urlparse

import httpx

MODULES = (
    "statistics",
    "fractions",
    "difflib",
    "textwrap",
    "heapq",
    "collections",
    "_pydecimal",
    "ipaddress",
    "shlex",
    "colorsys",
)
BEFORE, AFTER = 40, 16  # lines of context each side of the cursor
RUN_S = 20  # a doctest run longer than this fails


@dataclass(frozen=True)
class Case:
    module: str
    function: str
    source: str  # the module's text
    line: int  # 0-based index of the removed line
    expected: str  # that line, stripped


def cases() -> list[Case]:
    """Every function with doctests of MODULES: lines spread over its body (not its docstring,
    not a blank, comment or bare `return` line, no statement of several lines), in a fixed
    order."""
    out: list[Case] = []
    for name in MODULES:
        source = inspect.getsource(import_module(name))
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef) or ">>>" not in (
                ast.get_docstring(node) or ""
            ):
                continue
            body = node.body[1:]  # after the docstring
            candidates = [
                s.lineno - 1
                for s in body
                if s.lineno == s.end_lineno
                and lines[s.lineno - 1].strip() not in ("", "return")
                and not lines[s.lineno - 1].strip().startswith("#")
            ]
            if len(candidates) >= 2:  # up to three lines of it, spread over its body
                picked = sorted({candidates[len(candidates) * k // 4] for k in (1, 2, 3)})
                out += [Case(name, node.name, source, n, lines[n].strip()) for n in picked]
    return out


def around(case: Case) -> tuple[str, str, str]:
    """(text before the line, its indentation: the cursor's line, text after it)."""
    lines = case.source.splitlines(keepends=True)
    indent = lines[case.line][: len(lines[case.line]) - len(lines[case.line].lstrip())]
    before = "".join(lines[max(0, case.line - BEFORE) : case.line])
    after = "\n" + "".join(lines[case.line + 1 : case.line + 1 + AFTER])
    return before, indent, after


def passes(case: Case, answer: str) -> bool:
    """The module with `answer` in the removed line's place passes the function's doctests."""
    lines = case.source.splitlines(keepends=True)
    _, indent, _ = around(case)
    patched = "".join(lines[: case.line]) + indent + answer.strip("\n") + "\n"
    patched += "".join(lines[case.line + 1 :])
    program = textwrap.dedent(
        """
        import doctest, sys, types
        source = sys.stdin.read()
        module = types.ModuleType("patched")
        sys.modules["patched"] = module
        exec(compile(source, "patched.py", "exec"), module.__dict__)
        finder = doctest.DocTestFinder(recurse=False)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in finder.find(getattr(module, sys.argv[1]), globs=module.__dict__):
            runner.run(test, out=lambda _: None)
        sys.exit(1 if runner.failures or not runner.tries else 0)
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", program, case.function],
            input=patched,
            capture_output=True,
            text=True,
            timeout=RUN_S,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def infill(url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{url}/infill", json=body, timeout=900)
    r.raise_for_status()
    answer: dict[str, Any] = r.json()
    return answer


def evaluate(args: argparse.Namespace) -> None:
    # Only cases whose doctests pass as written and fail with the line gone (they test it).
    chosen = [c for c in cases() if passes(c, c.expected) and not passes(c, "pass")]
    chosen = chosen[: args.limit]
    for url in args.url:
        exact = ran = 0
        misses = []
        for case in chosen:
            before, indent, after = around(case)
            # As llama.vscode sends a cursor on a blank line: at its start, the indentation
            # as n_indent; the line is the first of the answer, its spaces stripped.
            body = {
                "input_prefix": before,
                "input_suffix": after,
                "prompt": "",
                "n_indent": len(indent),
                "n_predict": 48,
                "temperature": 0,
                "top_k": 1,
                "cache_prompt": False,  # each case on its own: no cells of the one before
            }
            content = infill(url, body)["content"]
            text = next((line.strip() for line in content.split("\n") if line.strip()), "")
            hit = text.strip() == case.expected
            good = hit or passes(case, text)
            exact += hit
            ran += good
            if not good:
                misses.append({"case": f"{case.module}.{case.function}", "got": text[:80]})
        n = len(chosen)
        report = {
            "url": url,
            "cases": n,
            "exact": round(exact / n, 3),
            "passes_doctest": round(ran / n, 3),
            "misses": misses if args.misses else len(misses),
        }
        print(json.dumps(report), flush=True)


def keystroke(args: argparse.Namespace) -> None:
    url = args.url[0]
    lines = inspect.getsource(import_module("difflib")).splitlines(keepends=True)[:240]
    middle = len(lines) // 2  # about 2,000 tokens; the cursor in the middle
    before, suffix = lines[:middle], "".join(lines[middle:])
    typed = "    # the matching blocks, longest first, then the rest in order\n"
    modes: dict[str, dict[str, Any]] = {
        "runs": {},
        "start_only": {"n_cache_reuse": 0},
        "cold": {"cache_prompt": False},
    }
    ms: dict[str, list[float]] = {m: [] for m in modes}
    texts: dict[str, list[str]] = {m: [] for m in modes}

    def body(head: str, **extra: Any) -> dict[str, Any]:
        return {
            "model": args.model,
            "input_prefix": head,
            "input_suffix": suffix,
            "n_predict": 16,
            "temperature": 0,
            "top_k": 1,
            **extra,
        }

    last = "".join(before)
    infill(url, body(last, n_predict=0))  # the file as it was opened
    for i in range(args.edits + 1):
        if i < args.edits:
            head = "".join(before) + typed[: 3 * (i + 1)]
        else:  # a paste of 20 lines above the cursor
            head = "".join(before[:-20] + lines[10:30] + before[-20:]) + typed
        compare = i % args.every == 0 or i == args.edits
        for n, (mode, extra) in enumerate(modes.items() if compare else [("runs", {})]):
            if n:  # the slot as the keystroke before left it, for this mode too
                infill(url, body(last, n_predict=0))
            answer = infill(url, body(head, **extra))
            ms[mode].append(answer["timings"]["prompt_ms"])
            if compare:
                texts[mode].append(answer["content"])
        last = head

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return {
            "n": len(values),
            "median_ms": round(statistics.median(values)),
            "p95_ms": round(p95),
        }

    def differ(mode: str) -> str:
        pairs = list(zip(texts[mode], texts["cold"], strict=True))
        return f"{sum(a != b for a, b in pairs)}/{len(pairs)}"

    report = {m: summary(v) for m, v in ms.items()}
    print(
        json.dumps(
            {
                "model": args.model,
                **report,
                "speedup_median": round(
                    report["cold"]["median_ms"] / report["runs"]["median_ms"], 1
                ),
                "speedup_median_start_only": round(
                    report["cold"]["median_ms"] / report["start_only"]["median_ms"], 1
                ),
                "runs_differ_from_cold": differ("runs"),
                "start_only_differs_from_cold": differ("start_only"),
            }
        ),
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--url", action="append", required=True, help="a server (repeatable)")
    e.add_argument("--limit", type=int, default=40, help="at most this many cases")
    e.add_argument("--misses", action="store_true", help="list the cases gone wrong")
    k = sub.add_parser("keystroke")
    k.add_argument("--url", action="append", required=True, help="an edgeinf server")
    k.add_argument("--model", required=True)
    k.add_argument("--edits", type=int, default=30)
    k.add_argument("--every", type=int, default=3, help="compare with cold every n edits")
    args = p.parse_args()
    for url in args.url:
        if (urlparse(url).hostname or "") not in ("127.0.0.1", "localhost", "::1"):
            print("the measurements target loopback only", file=sys.stderr)
            return 2
    evaluate(args) if args.what == "eval" else keystroke(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
