"""Text to vectors with a GGUF model through llama.cpp: an embedding model (BERT-like, its
pooling from the file) or any language model (mean of its last hidden states).

Several inputs are evaluated in one batch, one sequence each; llama.cpp pools each
sequence's outputs, and the vectors come back unit length. All llama.cpp work happens on
a decode thread (engine.decoder): its own, or the one the server's chat models share.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as ll
import numpy as np
import numpy.typing as npt

from edgeinf.engine import native
from edgeinf.engine.decoder import DecodeThread
from edgeinf.engine.options import EngineOptions
from edgeinf.engine.vocab import Vocab
from edgeinf.errors import EngineError, InvalidRequestError
from edgeinf.gguf.check import GGUFFile, read_gguf

MAX_SEQS = 16  # inputs evaluated together in one decode
# The longest input, in tokens, and the most one decode holds: a decode is one call on the
# decode thread (engine.decoder), so chat answers' steps run between a long list's decodes.
SEQ_TOKENS = 512
_POOLING = {
    ll.LLAMA_POOLING_TYPE_MEAN: "mean",
    ll.LLAMA_POOLING_TYPE_CLS: "cls",
    ll.LLAMA_POOLING_TYPE_LAST: "last",
}


@dataclass(frozen=True)
class Embedded:
    vectors: npt.NDArray[np.float32]  # one unit-length row per input
    tokens: int  # input tokens evaluated


def unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def too_long(index: int, n: int, limit: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"input[{index}] has {n} tokens but the embedding model takes {limit}; shorten it "
        "or send truncate: true",
        param="input",
    )


class GgufEmbedder:
    """One GGUF model loaded for embeddings."""

    def __init__(self, path: Path, threads: int, decoder: DecodeThread | None = None) -> None:
        started = time.perf_counter()
        gguf = read_gguf(path)  # checked before llama.cpp parses a byte of it
        arch = str(gguf.metadata.get("general.architecture", ""))
        declared = gguf.metadata.get(f"{arch}.pooling_type")
        self._private = decoder is None
        self._decoder = decoder or DecodeThread("edgeinf-embed")
        opts = EngineOptions(
            n_ctx=SEQ_TOKENS,
            n_batch=SEQ_TOKENS,
            n_seq_max=MAX_SEQS,
            threads=threads,
            threads_batch=threads,
        )
        pooling = ll.LLAMA_POOLING_TYPE_UNSPECIFIED if declared else ll.LLAMA_POOLING_TYPE_MEAN
        try:
            self._native = self._decoder.call(lambda: self._load(path, opts, gguf, pooling))
        except BaseException:
            if self._private:
                self._decoder.close()
            raise
        ctx = self._native.ctx
        self.pooling = _POOLING.get(int(ll.llama_pooling_type(ctx)), "none")
        if self.pooling == "none":
            self.close()
            raise EngineError(
                f"{path.name} declares no pooling of its outputs, so it gives no one vector "
                "per text; use an embedding model, or a language model without pooling_type"
            )
        self.dims = int(ll.llama_model_n_embd(self._native.model))
        self.vocab = Vocab(self._native.vocab)
        self.seq_tokens = min(SEQ_TOKENS, int(ll.llama_model_n_ctx_train(self._native.model)))
        self.load_s = time.perf_counter() - started

    @staticmethod
    def _load(path: Path, opts: EngineOptions, gguf: GGUFFile, pooling: int) -> native.Native:
        return native.load(path, opts, gguf.tensors, embeddings=True, pooling=pooling)

    def embed(self, texts: list[str], truncate: bool = True) -> Embedded:
        """Unit-length vectors of `texts`; an input over the model's length is cut when
        `truncate`, else refused."""
        tokens = []
        for i, text in enumerate(texts):
            ids = self.vocab.tokenize(text, add_bos=True) or [self._filler()]
            if len(ids) > self.seq_tokens:
                if not truncate:
                    raise too_long(i, len(ids), self.seq_tokens)
                ids = ids[: self.seq_tokens]
            tokens.append(ids)
        vectors = self._run(tokens)
        return Embedded(unit(vectors), sum(len(t) for t in tokens))

    def _filler(self) -> int:
        """The token an empty text is evaluated as (a sequence needs one)."""
        bos = int(ll.llama_vocab_bos(self._native.vocab))
        return bos if bos >= 0 else 0

    def _run(self, tokens: list[list[int]]) -> npt.NDArray[np.float32]:
        """Inputs in groups of one decode each, every decode a call of its own on the
        decode thread (so other models' steps run between them)."""
        out = np.zeros((len(tokens), self.dims), dtype=np.float32)
        group: list[int] = []  # indices of the inputs of the next decode
        for i, ids in enumerate(tokens):
            held = sum(len(tokens[j]) for j in group)
            if group and (held + len(ids) > SEQ_TOKENS or len(group) == MAX_SEQS):
                self._decoder.call(functools.partial(self._decode, tokens, group, out))
                group = []
            group.append(i)
        if group:
            self._decoder.call(functools.partial(self._decode, tokens, group, out))
        return out

    def _decode(
        self, tokens: list[list[int]], rows: list[int], out: npt.NDArray[np.float32]
    ) -> None:
        batch = ll.llama_batch_init(SEQ_TOKENS, 0, 1)
        try:
            n = 0
            for seq, row in enumerate(rows):
                for pos, tok in enumerate(tokens[row]):
                    batch.token[n], batch.pos[n], batch.n_seq_id[n] = tok, pos, 1
                    batch.seq_id[n][0], batch.logits[n] = seq, True
                    n += 1
            batch.n_tokens = n
            ctx = self._native.ctx
            ll.llama_memory_clear(self._native.memory, True)
            code = ll.llama_decode(ctx, batch)
            if code != 0:
                raise EngineError(f"llama.cpp could not evaluate the inputs (code {code}); retry")
            for seq, row in enumerate(rows):
                ptr = ll.llama_get_embeddings_seq(ctx, seq)
                if not ptr:
                    raise EngineError("llama.cpp returned no embedding; report this model")
                out[row] = np.ctypeslib.as_array(ptr, shape=(self.dims,))
        finally:
            ll.llama_batch_free(batch)

    def close(self) -> None:
        if getattr(self, "_native", None) is not None:
            self._decoder.call(self._native.free)
        if self._private:
            self._decoder.close()
