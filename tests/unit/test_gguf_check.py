"""Malformed GGUF files are rejected by our own bounded reader, before llama.cpp sees them."""

from __future__ import annotations

import contextlib
import random
import struct
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgeinf.errors import ModelFileError
from edgeinf.gguf.check import read_gguf
from edgeinf.gguf.info import describe


def _written(path: Path, tokens: list[str], context: int = 0, template: str = "") -> Path:
    """A small llama-architecture GGUF file with these tokens and one tensor."""
    writer = gguf.GGUFWriter(str(path), "llama")
    if context:
        writer.add_context_length(context)
    if template:
        writer.add_chat_template(template)
    writer.add_token_list(tokens)
    writer.add_tensor("blk.0.w", np.ones((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def small_gguf(tmp_path: Path) -> Path:
    return _written(tmp_path / "small.gguf", ["<s>", "a", "b"], 256, "{{ messages }}")


def _patched(src: Path, dst: Path, offset: int, data: bytes) -> Path:
    raw = bytearray(src.read_bytes())
    raw[offset : offset + len(data)] = data
    dst.write_bytes(bytes(raw))
    return dst


def test_valid_file_reports_its_metadata(small_gguf: Path) -> None:
    info = describe(read_gguf(small_gguf))
    assert (info.architecture, info.context_length, info.parameters) == ("llama", 256, 128)
    assert info.chat_template and info.vocab_size == 3


@pytest.mark.reliability(3)
@pytest.mark.parametrize("broken", ["ü", "é" * 99 + "ñ"])
def test_a_vocabulary_token_that_is_not_utf8_is_refused(tmp_path: Path, broken: str) -> None:
    """Short tokens are checked a run at a time, long ones (128 bytes and more) alone: a bad
    byte in either kind is found, and good tokens of both kinds pass."""
    tokens = ["<s>", "a", "é" * 99 + "ñ", "ü", "z"]
    good = _written(tmp_path / "good.gguf", tokens)
    assert read_gguf(good).metadata["tokenizer.ggml.tokens"].length == len(tokens)
    raw = good.read_bytes()
    at = raw.index(broken.encode()) + len(broken.encode()) - 1  # a continuation byte
    bad = _patched(good, tmp_path / "bad.gguf", at, b"(")
    with pytest.raises(ModelFileError, match="not UTF-8"):
        read_gguf(bad)


@pytest.mark.reliability(3)
def test_wrong_magic(small_gguf: Path, tmp_path: Path) -> None:
    bad = _patched(small_gguf, tmp_path / "bad.gguf", 0, b"GGML")
    with pytest.raises(ModelFileError, match="wrong magic"):
        read_gguf(bad)


@pytest.mark.reliability(3)
@pytest.mark.parametrize("offset, what", [(8, "tensor count"), (16, "metadata count")])
def test_absurd_counts_are_refused_at_once(
    small_gguf: Path, tmp_path: Path, offset: int, what: str
) -> None:
    bad = _patched(small_gguf, tmp_path / "bad.gguf", offset, struct.pack("<Q", 2**63))
    with pytest.raises(ModelFileError, match=what):
        read_gguf(bad)


@pytest.mark.reliability(3)
def test_truncated_file(small_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(small_gguf.read_bytes()[:-64])
    with pytest.raises(ModelFileError, match="outside the file"):
        read_gguf(cut)


@pytest.mark.reliability(3)
def test_truncated_real_model(tiny_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with tiny_path.open("rb") as fh:
        cut.write_bytes(fh.read(8 << 20))
    with pytest.raises(ModelFileError, match="truncated"):
        read_gguf(cut)


@pytest.mark.reliability(3)
def test_tensor_offset_past_the_end(small_gguf: Path, tmp_path: Path) -> None:
    raw = small_gguf.read_bytes()
    at = raw.index(b"blk.0.w") + len(b"blk.0.w") + 4 + 2 * 8 + 4  # name, n_dims, dims, type
    bad = _patched(small_gguf, tmp_path / "bad.gguf", at, struct.pack("<Q", 1 << 40))
    with pytest.raises(ModelFileError, match="outside the file"):
        read_gguf(bad)


@pytest.mark.reliability(3)
def test_empty_and_tiny_files(tmp_path: Path) -> None:
    for size in (0, 3, 23):
        path = tmp_path / f"f{size}.gguf"
        path.write_bytes(b"GGUF"[:size] + bytes(max(0, size - 4)))
        with pytest.raises(ModelFileError):
            read_gguf(path)


@pytest.mark.reliability(3)
def test_random_corruption_gives_typed_errors_only(
    small_gguf: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Bytes flipped anywhere in the header: a ModelFileError or a clean read, nothing else."""
    raw = small_gguf.read_bytes()
    header_end = raw.index(b"blk.0.w") + 64
    rng = random.Random(1234)
    path = tmp_path / "fuzz.gguf"
    record_property("malformed_files", 500)
    for _ in range(500):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(header_end)] = rng.randrange(256)
        path.write_bytes(bytes(data))
        with contextlib.suppress(ModelFileError):
            read_gguf(path)
