"""Measuring what speculation costs on this device: batch verification and draft steps."""

from __future__ import annotations

import statistics
import time

from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.speculation import CostModel

BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
_FILLER = "def add(a, b):\n    return a + b\n\n" * 8


def _decode_seconds(engine: Engine, seq: SeqState, n: int) -> float:
    base = len(seq.tokens)
    engine.batch.clear()
    for i in range(n):
        engine.batch.add(seq.tokens[i % base], base + i, seq.seq_id, True)
    started = time.perf_counter()
    engine.decode()
    elapsed = time.perf_counter() - started
    seq.tokens += [0] * n
    engine.trim(seq, base)
    return elapsed


def _with_scratch(engine: Engine) -> SeqState:
    seq = SeqState(engine.opts.n_seq_max - 1)  # the last sequence, empty before serving
    engine.prefill(seq, engine.vocab.tokenize(_FILLER, add_bos=True))
    return seq


def verify_costs(engine: Engine, reps: int = 3) -> dict[int, float]:
    """Time of one decode of n tokens, relative to one token (median of reps)."""
    seq = _with_scratch(engine)
    try:
        times = {n: [_decode_seconds(engine, seq, n) for _ in range(reps)] for n in BATCH_SIZES}
    finally:
        engine.trim(seq, 0)
    one = statistics.median(times[1])
    return {n: round(statistics.median(t) / one, 3) for n, t in times.items()}


def draft_step_cost(draft: Engine, target: Engine, reps: int = 5) -> float:
    """One draft-model token, relative to one target token."""
    costs = []
    for engine in (draft, target):
        seq = _with_scratch(engine)
        try:
            costs.append(statistics.median([_decode_seconds(engine, seq, 1) for _ in range(reps)]))
        finally:
            engine.trim(seq, 0)
    return round(costs[0] / costs[1], 3)


def calibrate(target: Engine, draft: Engine | None) -> CostModel:
    return CostModel(
        verify=verify_costs(target),
        draft_step=draft_step_cost(draft, target) if draft is not None else 0.0,
    )
