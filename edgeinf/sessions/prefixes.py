"""Addresses in the prefix cache: digests of a sequence's token prefixes, and where they are taken.

A saved sequence is found again by any later prompt that starts like it. It is indexed under
the digests of its prefixes at its marks (the end of each message's text, every BLOCK tokens,
its full length); a prompt looks up the digests at its own marks, longest first, and the
state found is then compared token by token, so the prefix reused is exact whatever the mark
that found it. Digests are seeded with the namespace (the principal, and everything the state
depends on), so one principal's prompt never finds another's state.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import asdict

from edgeinf.sessions.kvfile import Identity

# Marks only decide whether a shared prefix is found, not how much of it is reused (that is
# exact), so a small block costs only index rows: 64 rows for a 4,096-token sequence.
BLOCK = 64
# A shorter shared prefix prefills faster than a saved state is looked up and read.
MIN_TOKENS = 32


def namespace(owner: str, identity: Identity) -> bytes:
    """The seed of every digest of `owner`'s sequences made under `identity`."""
    blob = json.dumps([owner, asdict(identity)], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).digest()


def marks(n: int, ends: Iterable[int] = ()) -> list[int]:
    """The positions of a sequence of `n` tokens whose prefixes are indexed: message ends,
    every BLOCK tokens, and `n` itself, none shorter than MIN_TOKENS."""
    found = {*range(BLOCK, n + 1, BLOCK), *(e for e in ends if e <= n), n}
    return sorted(p for p in found if p >= MIN_TOKENS)


def digests(seed: bytes, tokens: Sequence[int], positions: Sequence[int]) -> dict[str, int]:
    """The digest of `tokens[:p]` for each position p (ascending), in one pass: digest: p."""
    running = hashlib.sha256(seed)
    out: dict[str, int] = {}
    done = 0
    for p in positions:
        running.update(array("i", tokens[done:p]).tobytes())
        done = p
        out[running.copy().hexdigest()] = p
    return out


def key_of(seed: bytes, tokens: Sequence[int]) -> str:
    """A saved sequence's key: the digest of all its tokens."""
    return next(iter(digests(seed, tokens, [len(tokens)])))


def covered(seed: bytes, tokens: Sequence[int], others: Iterable[tuple[str, int]]) -> list[str]:
    """The keys among `others` (key, token count) of sequences that `tokens` starts with:
    a saved sequence's key is the digest of all its tokens, so one pass over `tokens`
    tells, whatever the number of others."""
    others = [(key, n) for key, n in others if n <= len(tokens)]
    at = digests(seed, tokens, sorted({n for _, n in others}))
    return [key for key, n in others if at.get(key) == n]
