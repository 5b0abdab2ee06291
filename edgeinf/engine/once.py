"""One answer through the decode loop on an engine of the caller's own (benchmarks, tuning,
tests): a batcher with one slot, run on the caller's thread."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeinf.engine.batcher import Batcher
from edgeinf.engine.engine import Engine
from edgeinf.engine.jobs import Job
from edgeinf.engine.lanes import Lane
from edgeinf.types import Completion, SamplingParams


@dataclass(frozen=True)
class Outcome:
    completion: Completion
    drafted: int
    accepted: int


def answer_once(
    engine: Engine,
    prompt: Sequence[int],
    params: SamplingParams,
    lanes: Sequence[Lane] = (),
    exact_batch: int | None = None,
    on_text: Callable[[str], None] = lambda text: None,
) -> Outcome:
    """The whole answer to `prompt` on empty sequences, which are empty again afterwards."""
    result: list[tuple[Completion | None, BaseException | None]] = []

    def on_done(completion: Completion | None, error: BaseException | None) -> None:
        result.append((completion, error))

    engine.check_prompt(len(prompt), params.max_tokens)
    job = Job(list(prompt), params, on_text, on_done, lanes=list(lanes))
    batcher = Batcher.inline(engine, parallel=1, exact_batch=exact_batch)
    try:
        batcher.submit(job)
        batcher.run_until_idle()
    finally:
        batcher.forget()
    completion, error = result[0]
    if error is not None:
        raise error
    assert completion is not None
    return Outcome(completion, job.drafted, job.accepted)
