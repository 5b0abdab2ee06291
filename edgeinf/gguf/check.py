"""A bounded GGUF reader: validates a file's structure before llama.cpp sees it.

llama.cpp trusts counts and offsets in the header; a file claiming 2^63 tensors or an
offset past the end has crashed peers. Every length here is checked against the bytes that
remain before it is used, so a hostile file costs a typed error, never a hang or a segfault.
Type codes and block sizes come from the `gguf` package.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from edgeinf.errors import ModelFileError

MAGIC = b"GGUF"
MAX_DIMS = 4
MAX_STRING = 16 << 20  # the largest string we accept (chat templates are a few kB)
MAX_ARRAY_DEPTH = 2
_U64 = struct.Struct("<Q")
# The vocabulary array, hashed (not kept) so draft/target tokenizers can be compared.
_TOKENS_KEY = "tokenizer.ggml.tokens"
# The prefix markers of fill-in-the-middle vocabularies, as llama.cpp finds them by their text
# when the file names no FIM token ids (llama-vocab.cpp).
FIM_PREFIXES = (
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<\uff5cfim\u2581begin\uff5c>",  # DeepSeek: full-width bars
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
)

_SCALARS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFFile:
    """What the structural check learned: metadata (long arrays elided) and tensors."""

    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_size: int
    tokens_digest: str = field(default="")
    fills_in_middle: bool = False  # its vocabulary has fill-in-the-middle markers


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def fail(self, why: str) -> ModelFileError:
        return ModelFileError(
            f"{self.path} is not a valid GGUF file ({why} at byte {self.pos}); "
            "download it again or point to another file"
        )

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining():
            raise self.fail(f"needs {n} bytes, {self.remaining()} left: truncated or corrupt")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def count(self, min_item_bytes: int, what: str) -> int:
        n = int(self.unpack("<Q"))
        if n * min_item_bytes > self.remaining():
            raise self.fail(f"{what} count {n} cannot fit in the {self.remaining()} bytes left")
        return n

    def string(self) -> str:
        n = self.count(1, "string length")
        if n > MAX_STRING:
            raise self.fail(f"string of {n} bytes is over the {MAX_STRING} limit")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail("string is not UTF-8") from exc

    def skip_strings(self, n: int) -> None:
        """Step over n strings (a vocabulary: 150-260k of them), checked as `string` checks
        them, in one loop: a call per string cost a second per load of such a file."""
        buf, pos, end = self.buf, self.pos, len(self.buf)
        # A length under 128 is eight ASCII bytes, which neither end nor continue a UTF-8
        # sequence: a run of such strings is all UTF-8 exactly when the run decodes. Longer
        # strings are decoded alone. Only a failure is looked at string by string.
        first, start, runs = pos, pos, []
        for _ in range(n):
            self.pos = pos
            if pos + 8 > end:
                raise self.fail("string length runs past the end: truncated or corrupt")
            length = _U64.unpack_from(buf, pos)[0]
            if length > MAX_STRING or pos + 8 + length > end:
                raise self.fail(f"string of {length} bytes cannot fit in what is left")
            if length >= 0x80:
                runs += [(start, pos), (pos + 8, pos + 8 + length)]
                start = pos + 8 + length
            pos += 8 + length
        runs.append((start, pos))
        self.pos = first
        if not all(_utf8(buf[a:b]) for a, b in runs):
            for _ in range(n):
                self.string()
        self.pos = pos


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True)
class Elided:
    """An array value: only its length is kept."""

    length: int


def _value(cur: _Cursor, vtype: int, depth: int) -> Any:
    if vtype in _SCALARS:
        return cur.unpack(_SCALARS[vtype])
    if vtype == GGUFValueType.STRING:
        return cur.string()
    if vtype == GGUFValueType.ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise cur.fail("arrays nested too deeply")
        etype = int(cur.unpack("<I"))
        if etype not in _SCALARS and etype not in (GGUFValueType.STRING, GGUFValueType.ARRAY):
            raise cur.fail(f"unknown array element type {etype}")
        min_size = struct.calcsize(_SCALARS[etype]) if etype in _SCALARS else 8
        n = cur.count(min_size, "array")
        if etype in _SCALARS:
            cur.take(n * min_size)
        elif etype == GGUFValueType.STRING:
            cur.skip_strings(n)
        else:
            for _ in range(n):
                _value(cur, etype, depth + 1)
        return Elided(n)
    raise cur.fail(f"unknown value type {vtype}")


def _counted(text: str) -> bytes:
    """A string as GGUF stores it in an array: its length, then its bytes."""
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _tensor(cur: _Cursor) -> TensorInfo:
    name = cur.string()
    n_dims = int(cur.unpack("<I"))
    if not 1 <= n_dims <= MAX_DIMS:
        raise cur.fail(f"tensor '{name}' has {n_dims} dimensions")
    shape = tuple(int(cur.unpack("<Q")) for _ in range(n_dims))
    ttype = int(cur.unpack("<I"))
    offset = int(cur.unpack("<Q"))
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ValueError, KeyError) as exc:
        raise cur.fail(f"tensor '{name}' has unknown type {ttype}") from exc
    n = 1
    for d in shape:
        if d == 0 or d > 1 << 40:
            raise cur.fail(f"tensor '{name}' has dimension {d}")
        n *= d
    if shape[0] % block:
        raise cur.fail(f"tensor '{name}' row of {shape[0]} is not a multiple of block {block}")
    return TensorInfo(name, shape, ttype, offset, n, n // block * type_size)


def read_gguf(path: Path) -> GGUFFile:
    """Check the structure of a GGUF file and return its metadata; raise ModelFileError."""
    try:
        with path.open("rb") as fh:
            size = path.stat().st_size
            if size < 24:
                raise ModelFileError(f"{path} is {size} bytes, too small for a GGUF file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Cursor(buf, path), size)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}; check the path") from exc


def _parse(cur: _Cursor, size: int) -> GGUFFile:
    if cur.take(4) != MAGIC:
        raise cur.fail("wrong magic, not a GGUF file")
    version = int(cur.unpack("<I"))
    if version not in (2, 3):
        raise cur.fail(f"unsupported GGUF version {version}")
    n_tensors = cur.count(24, "tensor")
    n_kv = cur.count(13, "metadata")
    metadata: dict[str, Any] = {}
    digest = ""
    fim = False
    for _ in range(n_kv):
        key = cur.string()
        vtype = int(cur.unpack("<I"))
        start = cur.pos
        metadata[key] = _value(cur, vtype, 0)
        if key == _TOKENS_KEY:
            raw = bytes(cur.buf[start : cur.pos])
            digest = hashlib.sha256(raw).hexdigest()
            fim = any(_counted(m) in raw for m in FIM_PREFIXES)
        fim = fim or key == "tokenizer.ggml.fim_pre_token_id"
    tensors = tuple(_tensor(cur) for _ in range(n_tensors))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise cur.fail(f"alignment {alignment!r} is not a power of two")
    data_offset = -(-cur.pos // alignment) * alignment
    for t in tensors:
        if t.offset % alignment or data_offset + t.offset + t.n_bytes > size:
            raise cur.fail(f"tensor '{t.name}' lies outside the file: truncated or corrupt")
    return GGUFFile(version, metadata, tensors, data_offset, size, digest, fim)


_SHARD = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def shard_paths(path: Path, gguf: GGUFFile) -> list[Path]:
    """Every file of a split model (llama.cpp's NAME-0000K-of-0000N.gguf), `path` being
    its first; [path] for a model in one file."""
    count = int(gguf.metadata.get("split.count", 1) or 1)
    if count <= 1:
        return [path]
    found = _SHARD.match(path.name)
    if found is None or int(found["no"]) != 1 or int(found["count"]) != count:
        raise ModelFileError(
            f"{path} is the first of {count} shards but is not named NAME-00001-of-"
            f"{count:05d}.gguf; keep the shards' own names, side by side"
        )
    shards = [
        path.with_name(f"{found['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    ]
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise ModelFileError(
            f"{path.name} needs its other shards beside it ({', '.join(missing)} missing); "
            "pull it again"
        )
    return shards
