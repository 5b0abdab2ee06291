"""Reusing a slot's cells when the prompt moved: the runs of tokens the new prompt shares with
the cached ones are kept, shifted to where the prompt has them, and only the rest is
prefilled (an editor resends a file with a few characters typed, or a context chunk dropped).

llama.cpp decodes a sequence's tokens only right after its last cell, so text inserted before
a kept run cannot be filled in behind it. The runs after the shared start are therefore parked
first, each in a sequence of its own (cells are shared in a unified cache: a park moves no
data), moved there to their new positions (llama.cpp's KV shift), and attached back in order
once the text before each is evaluated: one decode per gap.

A moved run was computed beside the old text, not the new, so its cells are close to but not
exactly those of a cold prefill; only a shared start is exact. Most of that difference sits
in a run's first tokens, which read the changed text right before them: in a FIM prompt the
suffix's start, which the middle reads most. Kept whole, the suffix moved behind a few typed
characters gave the 0.5B coder a next-token distribution 2 to 15 nats (KL) from a cold
prefill's, another token as its pick in 4 of 4 edits; with its first 8 tokens evaluated
again, 0.005 to 0.02 nats, and with 32 the same pick in all 4. So the first FRESH tokens of
every moved run are evaluated again. Callers use this where speed matters more than
exactness (fill-in-the-middle requests) and measure the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_RUNS = 8  # runs parked per prompt; each one after a gap costs a decode of its own
FRESH = 32  # tokens at the start of a moved run that are evaluated again (see above)


@dataclass(frozen=True)
class Run:
    """`n` tokens cached from `cached` on that the prompt has from `at` on."""

    cached: int
    at: int
    n: int


@dataclass
class Parked:
    """A run waiting in sequence `seq_id`, already at its new positions."""

    seq_id: int
    at: int
    tokens: list[int]


Piece = list[int] | Parked  # tokens to evaluate, or a run to attach


def align(cached: Sequence[int], prompt: Sequence[int], min_run: int) -> list[Run]:
    """The runs of at least `min_run` tokens (the shared start: of any length) that `prompt`
    takes from `cached`, in order in both, at most MAX_RUNS after the shared start, each
    without its first FRESH tokens; never the prompt's last token, which is evaluated for its
    logits."""
    end = len(prompt) - 1
    runs: list[Run] = []
    start = 0
    while start < min(len(cached), end) and cached[start] == prompt[start]:
        start += 1
    if start:
        runs.append(Run(0, 0, start))
    if min_run <= 0:
        return runs
    where: dict[tuple[int, ...], list[int]] = {}
    for i in range(start, len(cached) - min_run + 1):
        where.setdefault(tuple(cached[i : i + min_run]), []).append(i)
    head_c, head_p = start, start
    while head_p + min_run <= end and len(runs) - bool(start) < MAX_RUNS:
        found = next(
            (c for c in where.get(tuple(prompt[head_p : head_p + min_run]), ()) if c >= head_c),
            None,
        )
        if found is None:
            head_p += 1
            continue
        n = min_run
        while (
            found + n < len(cached) and head_p + n < end and cached[found + n] == prompt[head_p + n]
        ):
            n += 1
        if n - FRESH >= min_run:
            runs.append(Run(found + FRESH, head_p + FRESH, n - FRESH))
        head_c, head_p = found + n, head_p + n
    return runs


def reused(runs: Sequence[Run]) -> int:
    return sum(r.n for r in runs)


def pieces(prompt: Sequence[int], start: int, parked: Sequence[Parked]) -> list[Piece]:
    """What is left to do after the shared start: the gaps to evaluate and the parked runs to
    attach after them, in prompt order; the prompt's tail is last (never empty)."""
    out: list[Piece] = []
    pos = start
    for p in parked:
        if p.at > pos:
            out.append(list(prompt[pos : p.at]))
        out.append(p)
        pos = p.at + len(p.tokens)
    out.append(list(prompt[pos:]))
    return out
