"""The decode loop in this process, with a real model: one job's failure is that job's."""

from __future__ import annotations

import threading
from pathlib import Path

import llama_cpp as ll
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


def _streamed_while_prefilling(engine: Engine, chunk: int | None) -> tuple[int, float]:
    """Pieces one answer wrote between a long prompt's arrival and that prompt's first token,
    and the answer's longest wait between two tokens."""
    raw = engine.vocab.raw
    never_end = tuple((t, -100.0) for t in (ll.llama_vocab_eos(raw), ll.llama_vocab_eot(raw)))
    counting = SamplingParams(max_tokens=160, temperature=0, logit_bias=never_end)
    long_prompt = engine.vocab.tokenize("one two three four " * 150, add_bos=True)
    assert len(long_prompt) > 500  # more than one batch (n_batch 512)
    events: list[str] = []
    started = threading.Event()
    streaming, newcomer = Outcome(), Outcome()

    def stream(text: str) -> None:
        events.append("stream")
        started.set()

    first = Job(engine.vocab.tokenize("1, 2, 3, 4, 5,", add_bos=True), counting, stream, streaming)
    batcher = Batcher(engine, parallel=2, max_queue=4)
    batcher.prefill_chunk = chunk
    try:
        batcher.submit(first)
        assert started.wait(60)
        events.append("arrived")
        batcher.submit(Job(long_prompt, GREEDY, lambda text: events.append("new"), newcomer))
        assert newcomer.done.wait(120) and newcomer.error is None
        assert streaming.done.wait(60) and streaming.completion is not None
    finally:
        batcher.stop(drain_s=0)
        batcher.forget()
    waited = events[events.index("arrived") : events.index("new")].count("stream")
    return waited, streaming.completion.timings.stall_s


def test_a_long_prompt_arriving_is_evaluated_in_chunks_while_an_answer_streams(
    tiny_path: Path,
) -> None:
    """With `prefill_chunk`, the streaming answer gets a token in every step of the newcomer's
    prompt; without it, the prompt fills whole batches and the stream waits for them."""
    opts = EngineOptions(n_ctx=2048, n_seq_max=2, threads=2, threads_batch=2)
    with Engine(tiny_path, opts) as engine:
        (chunked, short_wait), (whole, long_wait) = (
            _streamed_while_prefilling(engine, c) for c in (32, None)
        )
    # 500+ prompt tokens in steps of 32: a token of the answer in each of them.
    assert chunked >= 12 and whole <= 3, (chunked, whole)
    assert long_wait > short_wait > 0  # the answer's timings say how long it was held
