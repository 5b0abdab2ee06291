"""Prompts that start alike, evaluated once: a job whose prompt starts as another slot's
cells do (the choices of one request with n > 1, one principal's requests that resend the
same long system prompt or file) takes those cells instead of evaluating the tokens again.
In a unified cache the copy adds the sequence to the cells; no data moves.

Only jobs of one owner (a principal) share cells, as every cache here is per principal. A
job whose prompt a slot of its owner is still prefilling waits for it rather than evaluate the
same tokens beside it: on compute-bound cores two prefills of one text take as long as two
texts, and the copy then costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgeinf.engine.engine import Engine, common_prefix
from edgeinf.engine.jobs import Job
from edgeinf.engine.slot import Slot

MIN_SHARED = 32  # tokens worth copying, or waiting for


def _sharing(engine: Engine, job: Job) -> bool:
    # Fills move cached runs (engine.chunks) and may refuse the cache; they keep their own.
    return engine.shares_cells and job.owner is not None and job.cache and not job.runs


def _owned(slots: Sequence[Slot], job: Job, but: Slot | None = None) -> list[Slot]:
    """The slots holding cells of the job's owner (but one)."""
    return [s for s in slots if s is not but and s.owner == job.owner]


def waits(engine: Engine, slots: Sequence[Slot], job: Job) -> bool:
    """Whether a slot of the job's owner is prefilling at least MIN_SHARED tokens of the
    prompt's start that no slot holds yet."""
    if not _sharing(engine, job):
        return False
    owned = _owned(slots, job)
    held = max((common_prefix(s.seq.tokens, job.prompt) for s in owned), default=0)
    return any(
        s.job is not None
        and s.prefill
        and common_prefix(s.job.prompt, job.prompt) >= held + MIN_SHARED
        for s in owned
    )


def borrow(engine: Engine, slots: Sequence[Slot], slot: Slot, job: Job) -> None:
    """Give the slot the cells of the slot of its owner that holds most of the prompt's start,
    where that is at least MIN_SHARED tokens more than it holds itself."""
    if not _sharing(engine, job):
        return
    start = job.prompt[: len(job.prompt) - 1]  # the last token is evaluated for its logits
    own = common_prefix(slot.seq.tokens, start)

    def held(other: Slot) -> int:
        return common_prefix(other.seq.tokens, start)

    best = max(_owned(slots, job, slot), key=held, default=None)
    if best is not None and (n := held(best)) >= own + MIN_SHARED:
        engine.borrow(slot.seq, best.seq, n)
