"""The KV state file format: a JSON header, llama.cpp's sequence state, one checksum.

    magic "EDGEKV" + format u16 | header length u32 | header (JSON) | payload | sha256

The trailing sha256 covers every byte before it, so truncation, bit flips and zero-filled
blocks are all caught before llama.cpp is handed a byte. No pickle: the header is JSON, the
payload opaque bytes that only llama.cpp reads, and only after the header matched.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass
from typing import Any

from edgeinf.errors import EdgeinfError

MAGIC = b"EDGEKV"
FORMAT = 1
_PREFIX = struct.Struct("<6sHI")
_DIGEST = 32
MAX_HEADER = 64 << 20


class KVFileError(EdgeinfError):
    """A state file that cannot be trusted: damaged, truncated or not ours."""

    code = "corrupt_session_state"


@dataclass(frozen=True)
class Identity:
    """What a KV state depends on; state saved under another identity is not restored."""

    model_sha256: str
    library: str
    n_ctx: int
    kv_type: str


@dataclass(frozen=True)
class KVState:
    identity: Identity
    tokens: tuple[int, ...]
    payload: bytes | memoryview  # a view into the file's buffer when read: no copy


def encode_parts(state: KVState) -> tuple[bytes, bytes | memoryview, bytes]:
    """The file as (prefix and header, payload, sha256): written one after another, the
    payload (hundreds of megabytes for a long conversation) is never copied."""
    header = json.dumps(
        {
            "identity": asdict(state.identity),
            "tokens": list(state.tokens),
            "payload_len": len(state.payload),
        },
        separators=(",", ":"),
    ).encode()
    head = _PREFIX.pack(MAGIC, FORMAT, len(header)) + header
    digest = hashlib.sha256(head)
    digest.update(state.payload)
    return head, state.payload, digest.digest()


def encode(state: KVState) -> bytes:
    return b"".join(encode_parts(state))


def decode(data: bytes | bytearray | memoryview) -> KVState:
    view = memoryview(data)
    if len(view) < _PREFIX.size + _DIGEST:
        raise KVFileError(f"state file of {len(view)} bytes is truncated")
    body, digest = view[:-_DIGEST], view[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise KVFileError("state file checksum does not match: damaged or truncated")
    magic, fmt, header_len = _PREFIX.unpack_from(body)
    if magic != MAGIC or fmt != FORMAT:
        raise KVFileError(f"not an edgeinf state file (format {fmt})")
    if header_len > min(MAX_HEADER, len(body) - _PREFIX.size):
        raise KVFileError("state file header length is out of range")
    start = _PREFIX.size + header_len
    try:
        header: Any = json.loads(bytes(body[_PREFIX.size : start]))
        identity = Identity(**header["identity"])
        tokens = tuple(int(t) for t in header["tokens"])
        payload_len = int(header["payload_len"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KVFileError(f"state file header is malformed ({exc})") from exc
    if payload_len != len(body) - start:
        raise KVFileError("state file payload length does not match its header")
    return KVState(identity, tokens, body[start:])
