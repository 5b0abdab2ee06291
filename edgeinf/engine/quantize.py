"""llama.cpp's quantize API: one GGUF file rewritten at another precision."""

from __future__ import annotations

from pathlib import Path

import llama_cpp as ll

from edgeinf.engine.native import ensure_backend
from edgeinf.errors import EngineError

# Types that need no importance matrix, as llama.cpp names them.
TYPES = (
    "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S",
    "Q4_1", "Q4_0", "IQ4_NL", "IQ4_XS", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K",
)  # fmt: skip


def ftype_of(name: str) -> int:
    return int(getattr(ll, f"LLAMA_FTYPE_MOSTLY_{name}"))


def quantize(src: Path, dst: Path, type_name: str, threads: int, requantize: bool) -> None:
    """Write `dst` from `src` at `type_name`; EngineError when llama.cpp fails."""
    ensure_backend()
    params = ll.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = ftype_of(type_name)
    params.allow_requantize = requantize
    if ll.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise EngineError(
            f"llama.cpp could not quantize {src.name} to {type_name} (is the disk full? run "
            "with -v for llama.cpp's own message)"
        )
