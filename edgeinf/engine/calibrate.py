"""Measuring what speculation costs on this device: batch verification and draft steps."""

from __future__ import annotations

import statistics
import time

import numpy as np

from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.speculation import CostModel

# Up to the batches several sequences' drafts make: beyond 16 tokens a decode costs about a
# third of a step per token more here, which a straight line from 24 to 32 underestimates.
BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
EXACT_LARGEST = 32  # the largest batch checked for bitwise equal logits
_FILLER = "def add(a, b):\n    return a + b\n\n" * 8


def _fill_after(engine: Engine, seq: SeqState, tokens: list[int]) -> None:
    """Put `tokens` in the batch after the sequence's cached ones, logits for every row."""
    base = len(seq.tokens)
    engine.batch.clear()
    for i, token in enumerate(tokens):
        engine.batch.add(token, base + i, seq.seq_id, True)


def _decode_seconds(engine: Engine, seq: SeqState, n: int) -> float:
    base = len(seq.tokens)
    _fill_after(engine, seq, [seq.tokens[i % base] for i in range(n)])
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


def batch_sizes(engine: Engine) -> tuple[int, ...]:
    """The BATCH_SIZES worth measuring on this engine: those its batch and cells hold beside
    the filler (a unified cache lends the scratch sequence every cell; otherwise it has a
    sequence's share), and in exact mode none past EXACT_LARGEST, where no decode goes. Each
    row's logits stay allocated after the largest decode (n_vocab floats a row: 1 MB for
    Gemma 3), so a batch never used is not measured."""
    cells, largest = engine.n_ctx, max(BATCH_SIZES)
    if engine.opts.exact:
        cells, largest = engine.seq_ctx, EXACT_LARGEST
    return tuple(
        n for n in BATCH_SIZES if n <= min(largest, engine.batch.capacity) and n + 128 <= cells
    )


def verify_costs(engine: Engine, reps: int = 3) -> dict[int, float]:
    """Time of one decode of n tokens, relative to one token (median of reps)."""
    seq = _with_scratch(engine)
    try:
        sizes = batch_sizes(engine)
        times = {n: [_decode_seconds(engine, seq, n) for _ in range(reps)] for n in sizes}
    finally:
        engine.trim(seq, 0)
    one = statistics.median(times[1])
    return {n: round(statistics.median(t) / one, 3) for n, t in times.items()}


def exact_batch(engine: Engine, largest: int = EXACT_LARGEST) -> int:
    """The largest batch whose rows are bitwise the logits of one-token decodes.

    llama.cpp's CPU kernels change with the batch size (repacked weights from 2 tokens on;
    other matmul paths from about 8 on this kind of CPU, visible for some inputs only), and
    greedy answers must not change with them where exactness is promised: drafts are kept
    within this size. Every row of every batch is checked, at two context lengths.
    """
    seq = _with_scratch(engine)
    full = list(seq.tokens)
    try:
        return min(_exact_from(engine, seq, full[:n], largest) for n in (8, len(full)))
    finally:
        engine.trim(seq, 0)


def _exact_from(engine: Engine, seq: SeqState, context: list[int], largest: int) -> int:
    engine.trim(seq, 0)
    engine.prefill(seq, context)
    base = len(context)
    follow = [context[i % base] for i in range(largest)]
    alone = []
    for token in follow:  # one token at a time: the reference
        engine.step(seq, token)
        alone.append(engine.logits(-1).copy())
    engine.trim(seq, base)
    for n in range(2, largest + 1):
        _fill_after(engine, seq, follow[:n])
        engine.decode()
        same = all(np.array_equal(engine.logits(i), alone[i]) for i in range(n))
        seq.tokens += follow[:n]
        engine.trim(seq, base)
        if not same:
            return n - 1
    return largest


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
        exact_batch=exact_batch(target) if target.opts.exact else 1,
    )
