"""The task kinds routers are trained on: loaded mixed, and graded."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edgeinf.errors import InvalidRequestError
from edgeinf.research import humaneval, mix
from edgeinf.tasks import Task, gsm8k

# "mix" is the training part of the mixed set (research/data), "mix-held-out" the fifth kept
# out of training for final figures.
TASKS = ("gsm8k", "humaneval", "mix", "mix-held-out")


def _by_kind(tasks: Iterable[Task]) -> list[list[Task]]:
    groups: dict[str, list[Task]] = {}
    for t in tasks:
        groups.setdefault(t.kind, []).append(t)
    return list(groups.values())


LOADERS: dict[str, Callable[[], list[list[Task]]]] = {
    "gsm8k": lambda: [gsm8k.tasks()],
    "humaneval": lambda: [humaneval.tasks()],
    "mix": lambda: _by_kind(t for t in mix.load() if not mix.held_out(t)),
    "mix-held-out": lambda: _by_kind(t for t in mix.load() if mix.held_out(t)),
}


def load(kinds: tuple[str, ...], limit: int | None = None) -> list[Task]:
    """Tasks of the given kinds, interleaved task by task (the mix's fourteen tasks too), so
    that any `limit` keeps a mix of them."""
    unknown = [k for k in kinds if k not in LOADERS]
    if unknown:
        raise InvalidRequestError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    lists = [group for k in kinds for group in LOADERS[k]()]
    mixed = [t for group in _interleave(lists) for t in group]
    return mixed[:limit] if limit is not None else mixed


def _interleave(lists: list[list[Task]]) -> list[list[Task]]:
    longest = max((len(x) for x in lists), default=0)
    return [[x[i] for x in lists if i < len(x)] for i in range(longest)]


def grade(task: Task, answer: str) -> bool:
    if task.metric:
        return mix.passed(task, mix.grade(task, answer))
    if task.kind == "gsm8k":
        return gsm8k.grade(task, answer)
    return humaneval.grade(task, answer)
