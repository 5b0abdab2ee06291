"""Perplexity of a model on a text, scored the way llama.cpp's perplexity tool does: the text
in independent chunks, each token of a chunk's second half predicted from what precedes it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgeinf.engine.engine import Engine, SeqState


def perplexity(engine: Engine, tokens: Sequence[int], chunk: int = 512) -> float:
    chunk = min(chunk, engine.opts.n_batch, engine.seq_ctx)
    seq = SeqState(0)
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - chunk + 1, chunk):
        part = tokens[start : start + chunk]
        engine.forget(seq)
        engine.batch.clear()
        first = chunk // 2
        for i, tok in enumerate(part):
            engine.batch.add(tok, i, seq.seq_id, i >= first - 1 and i < chunk - 1)
        engine.decode()
        for i in range(first - 1, chunk - 1):
            row = engine.logits(i)
            top = float(row.max())
            total = float(np.exp(row - top).sum(dtype=np.float64))
            nll += top + math.log(total) - float(row[part[i + 1]])
            count += 1
    engine.forget(seq)
    if not count:
        raise ValueError(f"the text is shorter than one {chunk}-token chunk")
    return math.exp(nll / count)
