"""The prefix cache's addresses and its RAM tier, without a model."""

from __future__ import annotations

import pytest

from edgeinf.sessions.kvfile import Identity, KVState
from edgeinf.sessions.prefixes import (
    BLOCK,
    MIN_TOKENS,
    covered,
    digests,
    key_of,
    marks,
    namespace,
)
from edgeinf.sessions.ramtier import RamTier, Snapshot

IDENTITY = Identity("ab" * 32, "test", 4096, "f16")
SEED = namespace("local", IDENTITY)


def snapshot(tokens: list[int], owner: str = "local", size: int = 100) -> Snapshot:
    seed = namespace(owner, IDENTITY)
    at = digests(seed, tokens, marks(len(tokens)))
    return Snapshot(key_of(seed, tokens), owner, KVState(IDENTITY, tuple(tokens), b"x" * size), at)


def test_marks_are_message_ends_blocks_and_the_end() -> None:
    assert marks(200, ends=(10, 40, 150, 300)) == [40, BLOCK, 128, 150, 192, 200]
    assert all(p >= MIN_TOKENS for p in marks(1000, ends=range(0, 1000, 7)))


def test_a_digest_names_a_prefix_in_its_namespace_only() -> None:
    tokens = list(range(300))
    one = digests(SEED, tokens, [64, 128])
    assert one == digests(SEED, [*tokens[:128], 9, 9], [64, 128])  # the same prefixes
    assert set(one) != set(digests(SEED, [1, *tokens[1:]], [64, 128]))
    others = [
        namespace("key:other", IDENTITY),
        namespace("local", Identity("cd" * 32, "t", 1, "f16")),
    ]
    for seed in others:
        assert not set(one) & set(digests(seed, tokens, [64, 128]))
    assert key_of(SEED, tokens[:128]) == next(d for d, n in one.items() if n == 128)


def test_the_ram_tier_finds_the_longest_and_drops_what_a_longer_one_covers() -> None:
    ram = RamTier(budget_bytes=1000)
    short, other = snapshot(list(range(100))), snapshot([7] * 100)
    ram.put(short)
    ram.put(other)
    longer = snapshot(list(range(250)))
    ram.put(longer, replacing=covered(SEED, longer.state.tokens, ram.held()))
    assert len(ram) == 2  # `short` is a prefix of `longer`: held once
    prompt = [*range(200), 5, 5]
    found = ram.find(digests(SEED, prompt, marks(len(prompt))))
    assert found is not None and found[0].key == longer.key and found[1] == 192
    stranger = digests(namespace("key:other", IDENTITY), prompt, marks(len(prompt)))
    assert ram.find(stranger) is None


@pytest.mark.reliability(43)
def test_the_ram_tier_keeps_to_its_budget_least_recently_used_first() -> None:
    ram = RamTier(budget_bytes=250)
    a, b, c = (snapshot([tag] * 64) for tag in (1, 2, 3))
    ram.put(a)
    ram.put(b)
    assert ram.find(digests(SEED, [1] * 64, [64])) is not None  # a is used again
    ram.put(c)
    assert ram.used_bytes <= 250 and len(ram) == 2
    assert ram.find(digests(SEED, [2] * 64, [64])) is None
    ram.put(snapshot([4] * 64, size=300))  # larger than the whole tier: not held
    assert len(ram) == 2
