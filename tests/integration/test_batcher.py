"""The decode loop in this process, with a real model: one job's failure is that job's."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edgeinf.engine.batcher import Batcher
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.jobs import Job
from edgeinf.engine.options import EngineOptions
from edgeinf.types import Completion, SamplingParams

GREEDY = SamplingParams(max_tokens=8, temperature=0)


class Outcome:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.completion: Completion | None = None
        self.error: BaseException | None = None

    def __call__(self, completion: Completion | None, error: BaseException | None) -> None:
        self.completion, self.error = completion, error
        self.done.set()


def job(engine: Engine, outcome: Outcome, **callbacks: object) -> Job:
    prompt = engine.vocab.tokenize("The capital of France is", add_bos=True)
    return Job(prompt, GREEDY, lambda text: None, outcome, **callbacks)  # type: ignore[arg-type]


@pytest.mark.reliability(47)
def test_an_exception_of_any_kind_fails_its_job_and_the_loop_goes_on(tiny_path: Path) -> None:
    opts = EngineOptions(n_ctx=1024, threads=2, threads_batch=2)
    with Engine(tiny_path, opts) as engine:
        batcher = Batcher(engine, parallel=1, max_queue=4)
        try:

            def unreadable(seq: SeqState) -> None:
                raise OSError(5, "Input/output error")  # as a saved state's read on a bad disk

            def broken(seq: SeqState, completion: Completion) -> None:
                raise RuntimeError("a bug after the answer")

            failed, kept, next_one = Outcome(), Outcome(), Outcome()
            batcher.submit(job(engine, failed, prepare=unreadable))
            batcher.submit(job(engine, kept, finish=broken))
            batcher.submit(job(engine, next_one))
            for outcome in (failed, kept, next_one):
                assert outcome.done.wait(60)
            assert isinstance(failed.error, OSError) and failed.completion is None
            assert kept.error is None and kept.completion is not None  # the answer stands
            assert next_one.completion is not None and next_one.completion.text
            assert next_one.completion.text == kept.completion.text
            assert batcher.alive
        finally:
            batcher.stop(drain_s=0)
