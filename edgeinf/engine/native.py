"""The llama.cpp library: backend start-up, logging, and loading models and contexts.

This package (edgeinf.engine) is the only place that imports `llama_cpp`; its low-level
functions are used directly, never the high-level `Llama` class.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as ll

from edgeinf.engine.options import EngineOptions
from edgeinf.engine.repack import overrides
from edgeinf.errors import EngineError
from edgeinf.gguf.check import TensorInfo

log = logging.getLogger("edgeinf.llama")
_KV_TYPES = {"f16": ll.GGML_TYPE_F16, "q8_0": ll.GGML_TYPE_Q8_0, "q4_0": ll.GGML_TYPE_Q4_0}
# ggml_log_level -> logging level, one step down: llama.cpp's warnings are mostly chatter
# about model files (tokens "probably a bug"), not something an operator must act on.
_LEVELS = {2: logging.DEBUG, 3: logging.INFO, 4: logging.WARNING}
_started = threading.Lock()
_backend_ready = False


@ll.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_log(level: int, text: bytes, _user: Any) -> None:
    # llama.cpp writes a lot to stderr; route it into logging, where it is off by default.
    if text and log.isEnabledFor(_LEVELS.get(level, logging.DEBUG)):
        log.log(_LEVELS.get(level, logging.DEBUG), text.decode("utf-8", "replace").rstrip())


def ensure_backend() -> None:
    global _backend_ready
    with _started:
        if not _backend_ready:
            ll.llama_log_set(_forward_log, ctypes.c_void_p(0))
            ll.llama_backend_init()
            _backend_ready = True


def library_version() -> str:
    """Identifies the llama.cpp build: state saved by one build is not read by another."""
    return f"llama-cpp-python {ll.__version__}"


def system_info() -> str:
    return bytes(ll.llama_print_system_info()).decode("utf-8", "replace").strip()


@dataclass
class Native:
    """Owned pointers of one loaded model and its context; `free` releases both."""

    model: Any
    ctx: Any
    vocab: Any
    memory: Any
    repacked: int = 0  # weights put in the repacked buffer by name (engine.repack)

    def free(self) -> None:
        if self.ctx:
            ll.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            ll.llama_model_free(self.model)
            self.model = None


@functools.cache
def has_amx() -> bool:
    """Whether this CPU has Intel AMX (Linux only: elsewhere llama.cpp builds without it)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return any(line.startswith("flags") and " amx_int8" in line for line in fh)
    except OSError:
        return False


@functools.cache
def _repacks_x86() -> bool:
    """Whether this build has the repacked x86 kernels engine.repack asks for (a weight put
    in the repacked buffer that it cannot repack stops the process)."""
    info = system_info()
    return "AVX2 = 1" in info and "REPACK = 1" in info


def load(
    path: Path,
    opts: EngineOptions,
    tensors: Sequence[TensorInfo],
    embeddings: bool = False,
    pooling: int = -1,
) -> Native:
    """A model (whose `tensors` its checked GGUF header listed) and its context; with
    `embeddings`, a context whose outputs are the sequences' pooled hidden states
    (`pooling`: a LLAMA_POOLING_TYPE, -1 the file's)."""
    ensure_backend()
    mparams = ll.llama_model_default_params()
    mparams.n_gpu_layers = opts.n_gpu_layers
    mparams.load_mode = ll.LLAMA_LOAD_MODE_MMAP if opts.use_mmap else ll.LLAMA_LOAD_MODE_NONE
    # See EngineOptions.exact. On CPUs with AMX the extra buffer types include llama.cpp's
    # AMX one, whose Q4_K matmul crashes the first decode (llama.cpp issue 20824; seen here
    # with every model of the catalog on a Xeon with amx_int8): plain buffers there, and the
    # repacked one asked for by name (engine.repack).
    mparams.use_extra_bufts = not opts.exact and not has_amx()
    repacked = None
    if not opts.exact and has_amx() and _repacks_x86():
        repacked = overrides(path, tensors)
    if repacked is not None:
        mparams.tensor_buft_overrides = repacked.pointer
    model = ll.llama_model_load_from_file(str(path).encode(), mparams)  # reads `repacked`
    if not model:
        raise EngineError(
            f"llama.cpp could not load {path}; the file may be for a newer llama.cpp "
            "or damaged: pull it again or use another model"
        )
    cparams = ll.llama_context_default_params()
    cparams.n_ctx = opts.n_ctx
    cparams.n_batch = opts.n_batch
    cparams.n_ubatch = opts.n_batch
    cparams.n_seq_max = opts.n_seq_max
    cparams.kv_unified = not opts.exact  # sequences share the context's cells
    # Sliding-window layers (Gemma 3) keep every cell instead of only the window, so that a
    # sequence can be cut back to any length: resumed sessions whose prompt diverges from the
    # saved tokens, rejected drafts. The memory is what kv_bytes() already reserves.
    cparams.swa_full = True
    cparams.n_threads = opts.threads
    cparams.n_threads_batch = opts.threads_batch
    cparams.type_k = cparams.type_v = _KV_TYPES[opts.kv_type]
    if opts.kv_type != "f16":  # a quantized V cache needs flash attention
        cparams.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
    cparams.no_perf = True
    if embeddings:
        cparams.embeddings = True
        cparams.pooling_type = pooling
    ctx = ll.llama_init_from_model(model, cparams)
    if not ctx:
        ll.llama_model_free(model)
        raise EngineError(
            f"llama.cpp could not create a {opts.n_ctx}-token context for {path.name}; "
            "lower --ctx or choose kv_type f16"
        )
    return Native(
        model,
        ctx,
        ll.llama_model_get_vocab(model),
        ll.llama_get_memory(ctx),
        repacked.tensors if repacked is not None else 0,
    )


def chat_template(native: Native) -> str | None:
    raw = ll.llama_model_chat_template(native.model, None)
    return raw.decode("utf-8", "replace") if raw else None
