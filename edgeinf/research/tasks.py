"""The task kinds routers are trained on: loaded mixed, and graded."""

from __future__ import annotations

from edgeinf.errors import InvalidRequestError
from edgeinf.research import humaneval
from edgeinf.tasks import Task, gsm8k

TASKS = ("gsm8k", "humaneval")


def load(kinds: tuple[str, ...], limit: int | None = None) -> list[Task]:
    """Tasks of the given kinds, interleaved so that any `limit` keeps a mix of them."""
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
    if task.kind == "gsm8k":
        return gsm8k.grade(task, answer)
    return humaneval.grade(task, answer)
