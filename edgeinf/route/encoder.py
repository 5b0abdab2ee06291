"""A small sentence encoder (all-MiniLM-L6-v2, int8 ONNX) run with onnxruntime on the CPU."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgeinf.engine.embedder import Embedded, too_long, unit
from edgeinf.errors import ModelFileError

ENCODER_MODEL = "minilm-l6-v2-int8"
ENCODER_TOKENIZER = "minilm-l6-v2-tokenizer"
MAX_TOKENS = 256
DIMS = 384
BATCH = 32  # inputs evaluated together


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
        self.dims = DIMS
        self.load_s = time.perf_counter() - started

    def close(self) -> None:
        """Nothing to release by hand: onnxruntime frees the session with the object."""

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed(texts).vectors

    def embed(self, texts: list[str], truncate: bool = True) -> Embedded:
        """Unit-length vectors of `texts`, evaluated BATCH at a time (padded to the longest
        of similar lengths: inputs are sorted by length first)."""
        encodings = self.tokenizer.encode_batch(texts)
        for i, enc in enumerate(encodings):
            if enc.overflowing and not truncate:
                n = len(enc.ids) + sum(len(o.ids) for o in enc.overflowing)
                raise too_long(i, n, MAX_TOKENS)
        out = np.zeros((len(texts), DIMS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n], mask[r, :n] = encodings[i].ids, 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            out[rows] = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return Embedded(unit(out), sum(len(e.ids) for e in encodings))
