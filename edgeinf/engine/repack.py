"""Repacked weights on CPUs with Intel AMX, where llama.cpp's extra buffer types cannot be used.

llama.cpp's extra buffer types put a model's weights in layouts its CPU kernels read fastest:
its AMX buffer first where the CPU has AMX, else its repacked one (CPU_REPACK). The AMX one's
batched Q4_K matmul crashes the first prompt (llama.cpp issue 20824; every catalog model, on
a Xeon with amx_int8), so such CPUs get plain buffers (native.load), and with them lose the
repacked layouts that make one-token decode fast: the 1.5B decodes 11.3 tok/s plain against
15.4 repacked there (llama-bench tg128, 2 threads). So on those CPUs the repacked buffer is
asked for by name, through the model's tensor buffer overrides, for exactly the weights ggml
repacks on x86 (its repack.cpp: Q4_0, Q4_K and IQ4_NL matrices whose rows come in eights,
AVX2), and only for weights used as matrices (not the token embeddings, which are looked up).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeinf.gguf.check import TensorInfo

log = logging.getLogger("edgeinf.llama")
REPACKED_TYPES = {2: "Q4_0", 12: "Q4_K", 20: "IQ4_NL"}  # ggml_type ids (x86, AVX2)
_MATRIX = re.compile(r"^(?:blk\.\d+\.[a-z0-9_]+|output)\.weight$")


class _Override(ctypes.Structure):  # llama_model_tensor_buft_override
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@dataclass
class Overrides:
    """A NULL-terminated override array for llama_model_params; keep it until the model has
    loaded (llama.cpp reads it while loading)."""

    array: ctypes.Array[_Override]
    pattern: bytes
    tensors: int

    @property
    def pointer(self) -> int:
        return ctypes.addressof(self.array)


@functools.cache
def repack_buffer_type() -> int | None:
    """llama.cpp's CPU_REPACK buffer type, from the CPU device of the ggml that llama_cpp
    loaded (opened by soname: the wheel's files are copies, and opening one by its path loads
    a second ggml whose buffer types the first does not know); None when there is none."""
    try:
        ggml = ctypes.CDLL("libggml.so.0")
        base = ctypes.CDLL("libggml-base.so.0")
    except OSError:
        return None
    ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    base.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    base.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    base.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    base.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    base.ggml_backend_buft_name.restype = ctypes.c_char_p
    base.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    device = ggml.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
    if not device:
        return None
    reg = base.ggml_backend_dev_backend_reg(device)
    address = base.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
    if not address:
        return None
    extra = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(address)
    types = extra(device)
    i = 0
    while types and types[i]:
        if base.ggml_backend_buft_name(types[i]) == b"CPU_REPACK":
            return int(types[i])
        i += 1
    return None


def repacked_weights(tensors: Sequence[TensorInfo]) -> list[str]:
    """The tensors ggml would repack on x86 with AVX2."""
    return [
        t.name
        for t in tensors
        if t.type in REPACKED_TYPES
        and len(t.shape) == 2
        and t.shape[1] % 8 == 0
        and _MATRIX.match(t.name)
        and t.name != "token_embd.weight"
    ]


def overrides(path: Path, tensors: Sequence[TensorInfo]) -> Overrides | None:
    """The overrides that put the repackable ones of `path`'s `tensors` in the repacked
    buffer (None when there are none or this build has no such buffer)."""
    buft = repack_buffer_type()
    names = repacked_weights(tensors)
    if buft is None or not names:
        return None
    pattern = ("^(?:" + "|".join(re.escape(n) for n in names) + ")$").encode()
    array = (_Override * 2)()
    array[0].pattern, array[0].buft = pattern, buft
    log.debug("repacking %d weights of %s", len(names), path.name)
    return Overrides(array, pattern, len(names))
