"""Answers of a model to gradable tasks, cached on disk so that training resumes where it
stopped and a second run (or `route eval`) costs nothing."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeinf.tasks import Task

ANSWERS_DIR = "route/answers"


@dataclass(frozen=True)
class Answered:
    """What a model said to one task."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    # local answers: each written token's log-probability, and how far the likeliest other
    # token stood below the likeliest one there (0 where the model hesitated between two)
    logprobs: tuple[float, ...] = ()
    margins: tuple[float, ...] = ()


@dataclass(frozen=True)
class Answer:
    id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    logprobs: tuple[float, ...] = ()
    margins: tuple[float, ...] = ()


Answerer = Callable[[Task], Answer]
Progress = Callable[[int, int, Answer], None]


def cache_path(state_dir: Path, who: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", who)[:120]
    return state_dir / ANSWERS_DIR / f"{safe}.jsonl"


def second_sample_path(local: Path) -> Path:
    """Where the cascade's second local answers are kept, beside the first ones."""
    return local.with_name(f"{local.stem}@t0.7.jsonl")


def load_cached(path: Path) -> dict[str, Answer]:
    """Rows of a cache file; a torn last line (a killed run) is skipped."""
    out: dict[str, Answer] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            out[row["id"]] = Answer(
                row["id"],
                row["text"],
                int(row["prompt_tokens"]),
                int(row["completion_tokens"]),
                float(row["seconds"]),
                tuple(float(x) for x in row.get("logprobs", ())),
                tuple(float(x) for x in row.get("margins", ())),
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


def answer_all(
    tasks: list[Task],
    answerer: Answerer,
    path: Path,
    concurrency: int,
    progress: Progress = lambda done, total, answer: None,
) -> dict[str, Answer]:
    """Every task's answer: cached ones read back, the rest asked `concurrency` at a time."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = load_cached(path)
    todo: queue.Queue[Task] = queue.Queue()
    for task in tasks:
        if task.id not in found:
            todo.put(task)
    done = [len(tasks) - todo.qsize()]  # the file may hold answers to other tasks too
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while not errors:
            try:
                task = todo.get_nowait()
            except queue.Empty:
                return
            try:
                answer = answerer(task)
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                with path.open("a") as fh:
                    fh.write(json.dumps(asdict(answer)) + "\n")
                found[task.id] = answer
                done[0] += 1
                progress(done[0], len(tasks), answer)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return {t.id: found[t.id] for t in tasks}


def timed(task: Task, ask: Callable[[Task], Answered]) -> Answer:
    started = time.monotonic()
    a = ask(task)
    seconds = round(time.monotonic() - started, 3)
    return Answer(
        task.id, a.text, a.prompt_tokens, a.completion_tokens, seconds, a.logprobs, a.margins
    )
