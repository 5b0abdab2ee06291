"""A reusable llama.cpp batch: tokens with positions, sequences and output flags."""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp as ll


class Batch:
    def __init__(self, capacity: int, n_seq_max: int = 1) -> None:
        self.capacity = capacity
        self.raw = ll.llama_batch_init(capacity, 0, n_seq_max)

    def clear(self) -> None:
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq_id: int, output: bool) -> int:
        """Append one token; returns its index (the index to sample from, if output)."""
        b = self.raw
        i = int(b.n_tokens)
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = output
        b.n_tokens = i + 1
        return i

    def fill(self, tokens: Sequence[int], pos0: int, seq_id: int) -> None:
        """One sequence's run of tokens, with logits for the last one only."""
        self.clear()
        for i, tok in enumerate(tokens):
            self.add(tok, pos0 + i, seq_id, False)
        self.raw.logits[len(tokens) - 1] = True

    def free(self) -> None:
        if self.capacity:
            ll.llama_batch_free(self.raw)
            self.capacity = 0
