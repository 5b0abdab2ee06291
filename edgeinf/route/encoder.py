"""A small sentence encoder (all-MiniLM-L6-v2, int8 ONNX) run with onnxruntime on the CPU."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgeinf.errors import ModelFileError

ENCODER_MODEL = "minilm-l6-v2-int8"
ENCODER_TOKENIZER = "minilm-l6-v2-tokenizer"
MAX_TOKENS = 256


class SentenceEncoder:
    """Text to unit-length 384-dim vectors: mean of the last hidden states over real tokens."""

    def __init__(self, model: Path, tokenizer: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        started = time.perf_counter()
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(model), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime and tokenizers raise their own plain errors
            raise ModelFileError(
                f"cannot load the router's encoder ({exc}); run `edgeinf pull "
                f"{ENCODER_MODEL} {ENCODER_TOKENIZER}` to fetch it again"
            ) from exc
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.load_s = time.perf_counter() - started

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):  # one at a time: no padding work, and bounded memory
            enc = self.tokenizer.encode(text)
            ids = np.asarray([enc.ids], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids),
            }
            hidden = self.session.run(None, feeds)[0][0]
            mean = hidden.mean(axis=0)
            out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return out
