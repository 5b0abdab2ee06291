"""`edgeinf quantize`: a new model file at another precision, checked before it gets its name,
then registered in the model store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from edgeinf.catalog.store import ModelStore
from edgeinf.engine.options import EngineOptions
from edgeinf.errors import InvalidRequestError, ModelFileError
from edgeinf.gguf.check import read_gguf
from edgeinf.gguf.info import describe

# Bits per weight of each type, roughly (llama.cpp's quantize README), to check free space.
BITS = {
    "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5,
    "Q5_1": 6.0, "Q5_0": 5.5, "Q4_K_M": 4.9, "Q4_K_S": 4.6, "Q4_1": 5.0, "Q4_0": 4.5,
    "IQ4_NL": 4.5, "IQ4_XS": 4.3, "Q3_K_L": 4.3, "Q3_K_M": 3.9, "Q3_K_S": 3.5, "Q2_K": 3.4,
}  # fmt: skip
FULL_PRECISION = ("F32", "ALL_F32", "F16", "BF16")


def quantize_model(
    store: ModelStore,
    src: Path,
    dst: Path,
    type_name: str,
    threads: int,
    warn: Callable[[str], None],
    name: str | None = None,
) -> str:
    """Quantize, check that the result loads, publish it under `dst`, register it."""
    from edgeinf.engine import native
    from edgeinf.engine.quantize import TYPES, quantize

    kind = type_name.upper()
    if kind not in TYPES:
        raise InvalidRequestError(f"unknown type {type_name!r}; choose one of {', '.join(TYPES)}")
    if dst.exists():
        raise InvalidRequestError(f"{dst} exists; remove it or choose another destination")
    info = describe(read_gguf(src))  # a file that is not GGUF stops here
    need = int(info.parameters * BITS[kind] / 8 * 1.05) + (16 << 20)
    free = shutil.disk_usage(dst.parent if dst.parent.exists() else Path.cwd()).free
    if free < need:
        raise ModelFileError(
            f"{dst.parent} has {free >> 20} MB free and the {kind} file needs about "
            f"{need >> 20} MB; free some space or write elsewhere"
        )
    if info.quantization.upper() not in FULL_PRECISION:
        warn(
            f"{src.name} is already quantized ({info.quantization}); quantizing it again "
            "compounds the error. Start from an F16/BF16 file if you have one"
        )
    tmp = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    try:
        quantize(src, tmp, kind, threads, requantize=True)
        checked = read_gguf(tmp)
        opts = EngineOptions(n_ctx=64, n_batch=64, threads=1, threads_batch=1)
        native.load(tmp, opts, checked.tensors).free()
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return store.register(dst, name)
