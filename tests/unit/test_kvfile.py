"""The state file format: whatever happens to the bytes, a typed error or the exact state."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable

import pytest

from edgeinf.sessions.kvfile import Identity, KVFileError, KVState, decode, encode

STATE = KVState(
    Identity("ab" * 32, "llama-cpp-python 0.3.36", 4096, "f16"), (1, 2, 3), os.urandom(5000)
)


def test_round_trip() -> None:
    assert decode(encode(STATE)) == STATE


@pytest.mark.reliability(21)
@pytest.mark.parametrize("cut", [0, 1, 10, 100, 5000, 32])
def test_truncated_file_is_refused(cut: int) -> None:
    data = encode(STATE)
    with pytest.raises(KVFileError):
        decode(data[: len(data) - cut] if cut else b"")


@pytest.mark.reliability(21)
def test_every_single_bit_flip_in_the_header_is_caught(
    record_property: Callable[[str, object], None],
) -> None:
    record_property("malformed_files", 400)
    data = bytearray(encode(STATE))
    for i in range(200):
        for bit in (0, 7):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            with pytest.raises(KVFileError):
                decode(bytes(flipped))


@pytest.mark.reliability(21)
def test_zero_filled_block_is_caught() -> None:
    data = bytearray(encode(STATE))
    data[1000:3000] = bytes(2000)
    with pytest.raises(KVFileError, match="checksum"):
        decode(bytes(data))


@pytest.mark.reliability(21)
def test_random_damage_gives_typed_errors_only(
    record_property: Callable[[str, object], None],
) -> None:
    record_property("malformed_files", 500)
    rng = random.Random(7)
    data = encode(STATE)
    for _ in range(500):
        damaged = bytearray(data[: rng.randrange(len(data) + 1)])
        for _ in range(rng.randint(0, 3)):
            if damaged:
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        with contextlib.suppress(KVFileError):
            assert decode(bytes(damaged)) == STATE
