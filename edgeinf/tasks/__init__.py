"""Gradable tasks (GSM8K, HumanEval): prompts, and graders that say whether an answer is right."""

from __future__ import annotations

from dataclasses import dataclass

from edgeinf.errors import InvalidRequestError
from edgeinf.types import Message

TASKS = ("gsm8k", "humaneval")


@dataclass(frozen=True)
class Task:
    """One problem: the conversation to send, and what grading needs."""

    id: str
    kind: str  # one of TASKS
    messages: tuple[Message, ...]
    max_tokens: int
    reference: str  # gsm8k: the gold number; humaneval: the test code
    entry_point: str = ""
    prefix: str = ""  # humaneval: the prompt, which holds the imports
    steps: int = 0  # gsm8k: calculations in the reference solution, a difficulty no router sees


def load(kinds: tuple[str, ...], limit: int | None = None) -> list[Task]:
    """Tasks of the given kinds, interleaved so that any `limit` keeps a mix of them."""
    from edgeinf.tasks import gsm8k, humaneval

    loaders = {"gsm8k": gsm8k.tasks, "humaneval": humaneval.tasks}
    unknown = [k for k in kinds if k not in loaders]
    if unknown:
        raise InvalidRequestError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    lists = [loaders[k]() for k in kinds]
    mixed = [t for group in _interleave(lists) for t in group]
    return mixed[:limit] if limit is not None else mixed


def _interleave(lists: list[list[Task]]) -> list[list[Task]]:
    longest = max((len(x) for x in lists), default=0)
    return [[x[i] for x in lists if i < len(x)] for i in range(longest)]


def grade(task: Task, answer: str) -> bool:
    from edgeinf.tasks import gsm8k, humaneval

    if task.kind == "gsm8k":
        return gsm8k.grade(task, answer)
    return humaneval.grade(task, answer)
