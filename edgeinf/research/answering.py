"""Both models' answers to the training tasks: the local one in this process (batched), the
remote through its client; every answer cached as it arrives."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from edgeinf.config import Settings
from edgeinf.errors import InvalidRequestError
from edgeinf.research.collect import Answer, Answered, answer_all, load_cached, timed
from edgeinf.route.deferral import RIVALS
from edgeinf.route.dispatch import remote_config
from edgeinf.route.remote import RemoteClient
from edgeinf.route.signals import margin
from edgeinf.service.local import ChatService
from edgeinf.service.local_answer import ChatRequest
from edgeinf.tasks import Task
from edgeinf.types import SamplingParams


def _progress(label: str) -> Any:
    tokens = {"n": 0}

    def show(done: int, total: int, answer: Answer) -> None:
        tokens["n"] += answer.prompt_tokens + answer.completion_tokens
        if done == total or done % 10 == 0:
            print(f"{label}: {done}/{total} answered, {tokens['n']} tokens", file=sys.stderr)

    return show


def local_answers(
    settings: Settings,
    ref: str | None,
    tasks: list[Task],
    path: Path,
    concurrency: int,
    temperature: float = 0.0,
) -> dict[str, Answer]:
    if len(load_cached(path).keys() & {t.id for t in tasks}) == len(tasks):
        return answer_all(tasks, _unused, path, 1)
    # Every question is asked once: keeping their states would only write to disk.
    quiet = settings.model_copy(update={"prefix_cache": False})
    service = ChatService(quiet, ref, parallel=concurrency, max_queue=concurrency)

    def ask(task: Task) -> Answered:
        sampling = SamplingParams(
            max_tokens=task.max_tokens, temperature=temperature, seed=7, logprobs=RIVALS
        )
        local = service.local(ChatRequest(task.messages, sampling))
        for _ in local:  # text, and the scores behind it: the result holds both
            pass
        assert local.result is not None
        completion = local.result.completion
        usage = completion.usage
        scored = completion.logprobs
        return Answered(
            completion.text,
            usage.prompt_tokens,
            usage.completion_tokens,
            tuple(round(t.logprob, 4) for t in scored),
            tuple(round(margin(t), 4) for t in scored),
        )

    try:
        label = "local" if temperature == 0 else "local second sample"
        return answer_all(tasks, lambda t: timed(t, ask), path, concurrency, _progress(label))
    finally:
        service.close()


def _unused(task: Task) -> Answer:
    raise AssertionError("every answer was cached")


def remote_answers(
    settings: Settings, tasks: list[Task], path: Path, concurrency: int
) -> dict[str, Answer]:
    config = remote_config(settings)
    if config is None:
        raise InvalidRequestError(
            "a pair router needs the remote: pass --remote-url and --remote-model"
        )
    client = RemoteClient(config)

    def ask(task: Task) -> Answered:
        sampling = SamplingParams(max_tokens=task.max_tokens, temperature=0.0, seed=7)
        a = client.chat(task.messages, sampling)
        return Answered(a.text, a.prompt_tokens, a.completion_tokens)

    try:
        return answer_all(tasks, lambda t: timed(t, ask), path, concurrency, _progress("remote"))
    finally:
        client.close()
