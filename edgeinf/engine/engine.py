"""A loaded model with its context: sequences, prefill, KV trimming and decoding."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp as ll
import numpy as np

from edgeinf.engine import native
from edgeinf.engine.batch import Batch
from edgeinf.engine.chunks import MAX_RUNS, Parked, Piece, align, pieces
from edgeinf.engine.options import EngineOptions
from edgeinf.engine.reasoning import Start, start_of
from edgeinf.engine.template import ChatTemplate
from edgeinf.engine.toolcalls import described
from edgeinf.engine.vocab import Vocab
from edgeinf.errors import ContextLengthExceededError, EngineError
from edgeinf.gguf.check import GGUFFile, read_gguf, shard_paths
from edgeinf.gguf.info import describe
from edgeinf.types import Message, Tool

MAX_SEQ = 256  # llama.cpp's sequence ids (LLAMA_MAX_SEQ) in a cache the sequences share
_KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def footprint(path: Path, opts: EngineOptions) -> tuple[int, int]:
    """(weight bytes, KV cache bytes) that loading `path` with `opts` takes: for the caller's
    admission policy, before any load."""
    gguf = read_gguf(path)
    weights = sum(p.stat().st_size for p in shard_paths(path, gguf))
    return weights, kv_bytes(gguf, opts.n_ctx, opts.kv_type)


@dataclass
class SeqState:
    """One llama.cpp sequence: `tokens` are exactly the tokens whose KV cells it holds."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Prompt:
    """A prompt's tokens, and where each message's text ends in them (the natural places for
    two conversations to part, where the prefix cache indexes a saved sequence)."""

    tokens: list[int]
    ends: tuple[int, ...] = ()
    start: Start = ""  # whether the answer starts by reasoning (engine.reasoning)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def kv_bytes(gguf: GGUFFile, n_ctx: int, kv_type: str) -> int:
    """Upper bound of the KV cache size of a context, from the model's shape."""
    meta = gguf.metadata
    arch = meta.get("general.architecture", "")
    layers = int(meta.get(f"{arch}.block_count", 0))
    heads = int(meta.get(f"{arch}.attention.head_count", 1))
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    head_dim = int(meta.get(f"{arch}.embedding_length", 0)) // max(heads, 1)
    k = int(meta.get(f"{arch}.attention.key_length", head_dim))
    v = int(meta.get(f"{arch}.attention.value_length", head_dim))
    return int(layers * n_ctx * kv_heads * (k + v) * _KV_BYTES[kv_type])


class Engine:
    """The model and one llama.cpp context holding up to `n_seq_max` sequences."""

    def __init__(self, path: Path, opts: EngineOptions) -> None:
        started = time.perf_counter()
        # The file's structure and its chat template (code from an untrusted file) are
        # checked before llama.cpp parses a byte of it.
        gguf = read_gguf(path)
        shards = tuple(read_gguf(p) for p in shard_paths(path, gguf)[1:])  # llama.cpp reads them
        template_src = opts.chat_template or gguf.metadata.get("tokenizer.chat_template")
        template_src = template_src if isinstance(template_src, str) else None
        ChatTemplate(template_src)
        self.path, self.opts, self.gguf = path, opts, gguf
        self.info = describe(gguf, shards)
        self._native = native.load(path, opts, gguf.tensors)
        self.repacked = self._native.repacked
        try:
            self.vocab = Vocab(self._native.vocab)
            self.template = ChatTemplate(
                template_src, bos=self.vocab.bos_text, eos=self.vocab.eos_text
            )
            self.vocab.show(self.template.syntax.opener)
            self.n_ctx = int(ll.llama_n_ctx(self._native.ctx))
            # Sequences share the cells; each may use an equal part of them.
            self.seq_ctx = self.n_ctx // max(opts.n_seq_max, 1)
            self.sliding_window = int(ll.llama_model_n_swa(self._native.model))
            self.batch = Batch(opts.n_batch, opts.n_seq_max)
            self._warm_up()
        except BaseException:
            self._native.free()
            raise
        self.lock = threading.RLock()  # one decode at a time on this context
        self.load_s = time.perf_counter() - started

    def _warm_up(self) -> None:
        """One throwaway decode, so that the first request does not pay for llama.cpp's
        first-run allocations and thread start-up (llama.cpp's own tools do the same)."""
        self.batch.clear()
        self.batch.add(max(ll.llama_vocab_bos(self._native.vocab), 0), 0, 0, True)
        self.decode()
        self.forget(SeqState(0))

    @property
    def ctx(self) -> object:
        return self._native.ctx

    def close(self) -> None:
        self.batch.free()
        self._native.free()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- prompts --

    def chat_tokens(self, messages: Sequence[Message]) -> list[int]:
        return self.chat_prompt(messages).tokens

    def chat_prompt(
        self, messages: Sequence[Message], tools: Sequence[Tool] = (), thinking: bool | None = None
    ) -> Prompt:
        """`thinking`: whether a template that can switch reasoning off keeps it (None: as the
        template chooses)."""
        toolish = tools or any(m.tool_calls or m.role == "tool" for m in messages)
        if toolish and not self.template.knows_tools:
            messages, tools = described(messages, tools), ()
        segments = self.template.render(messages, tools, thinking)
        tokens: list[int] = []
        ends: list[int] = []
        for segment, part in zip(segments, self.vocab.tokenize_segments(segments), strict=True):
            tokens += part
            if segment.message is not None:
                ends.append(len(tokens))
        # What follows the last message is the template's own (a user's "<think>" is not).
        tail = segments[-1].text if segments and segments[-1].message is None else ""
        return Prompt(tokens, tuple(ends), start_of(tail, self.template.thinks))

    def check_prompt(self, n_prompt: int, max_tokens: int = 0) -> None:
        """A prompt must leave room for at least one generated token."""
        if n_prompt + 1 > self.seq_ctx:
            raise ContextLengthExceededError(n_prompt, self.seq_ctx, max_tokens)

    # -- KV memory --

    def trim(self, seq: SeqState, keep: int) -> None:
        """Drop the sequence's cells from position `keep` on."""
        if keep >= len(seq.tokens):
            return
        if ll.llama_memory_seq_rm(self._native.memory, seq.seq_id, keep, -1):
            del seq.tokens[keep:]
        else:  # this cache cannot cut mid-sequence: start the sequence over
            self.forget(seq)

    def forget(self, seq: SeqState) -> None:
        """Empty the sequence, whatever cells it holds."""
        ll.llama_memory_seq_rm(self._native.memory, seq.seq_id, -1, -1)
        seq.tokens.clear()

    def reuse_prefix(self, seq: SeqState, prompt: Sequence[int]) -> int:
        """Keep the cached cells that match the prompt's start; return how many were kept.

        The last prompt token is always evaluated again so that its logits exist.
        """
        common = common_prefix(seq.tokens, prompt[: len(prompt) - 1])
        self.trim(seq, common)
        return common

    @property
    def shares_cells(self) -> bool:
        """Whether a sequence may take another's cells without copying them (a unified
        cache: native.load)."""
        return not self.opts.exact

    def borrow(self, seq: SeqState, donor: SeqState, n: int) -> None:
        """Replace the sequence's cells with the first `n` of `donor`'s, which the two then
        share (`shares_cells`: no data moves)."""
        mem = self._native.memory
        ll.llama_memory_seq_rm(mem, seq.seq_id, -1, -1)
        ll.llama_memory_seq_cp(mem, donor.seq_id, seq.seq_id, 0, n)
        seq.tokens = donor.tokens[:n]

    @property
    def can_shift(self) -> bool:
        """Whether cells may move to other positions (a context shift)."""
        return bool(ll.llama_memory_can_shift(self._native.memory))

    def shift(self, seq: SeqState, keep: int) -> int:
        """llama.cpp's context shift: drop half of the cells after the first `keep`, move the
        rest back to follow them; return how many went. The cells left are no longer what a
        prefill of their tokens gives (they saw the dropped ones): trim them back to `keep`
        once the answer ends."""
        discard = (len(seq.tokens) - keep) // 2
        mem = self._native.memory
        if discard <= 0 or not ll.llama_memory_seq_rm(mem, seq.seq_id, keep, keep + discard):
            return 0
        ll.llama_memory_seq_add(mem, seq.seq_id, keep + discard, -1, -discard)
        del seq.tokens[keep : keep + discard]
        return discard

    @property
    def can_move(self) -> bool:
        """Whether cells may move to other positions and sequences (see chunks.py): a cache
        that can shift them, shared by the sequences, with spare sequence ids to park in."""
        spare = self.opts.n_seq_max * (1 + MAX_RUNS) <= MAX_SEQ
        return self.shares_cells and spare and self.can_shift

    def reuse_runs(self, seq: SeqState, prompt: Sequence[int], min_run: int) -> list[Piece]:
        """Keep the cached runs of at least `min_run` tokens the prompt shares (chunks.py), the
        shared start in place and the rest parked at their new positions; return what is left
        to do, in order. Needs `can_move`."""
        runs = align(seq.tokens, prompt, min_run)
        start = runs[0].n if runs and runs[0].cached == runs[0].at == 0 else 0
        later = runs[1:] if start else runs
        mem = self._native.memory
        first = self.opts.n_seq_max + seq.seq_id * MAX_RUNS
        parked = []
        for k, run in enumerate(later):
            ll.llama_memory_seq_rm(mem, first + k, -1, -1)
            ll.llama_memory_seq_cp(mem, seq.seq_id, first + k, run.cached, run.cached + run.n)
            parked.append(Parked(first + k, run.at, list(prompt[run.at : run.at + run.n])))
        self.trim(seq, start)
        if len(seq.tokens) != start:  # this cache cannot cut mid-sequence: nothing is kept
            self.release(parked)
            return [list(prompt)]
        for run, p in zip(later, parked, strict=True):  # each run alone in its sequence now
            if run.at != run.cached:
                ll.llama_memory_seq_add(
                    mem, p.seq_id, run.cached, run.cached + run.n, p.at - run.cached
                )
        return pieces(prompt, start, parked)

    def attach(self, seq: SeqState, run: Parked) -> None:
        """Put a parked run back after the sequence's last cell, where it was moved to."""
        assert run.at == len(seq.tokens), "a run is attached right after the cells before it"
        mem = self._native.memory
        ll.llama_memory_seq_cp(mem, run.seq_id, seq.seq_id, -1, -1)
        ll.llama_memory_seq_rm(mem, run.seq_id, -1, -1)
        seq.tokens.extend(run.tokens)

    def release(self, parked: Sequence[Parked]) -> None:
        """Drop runs that will not be attached (their answer ended first)."""
        for run in parked:
            ll.llama_memory_seq_rm(self._native.memory, run.seq_id, -1, -1)

    # -- sequence state, for saving to and restoring from disk --

    def export_seq(self, seq: SeqState) -> memoryview:
        """A copy of the sequence's KV cells (llama.cpp's own serialisation), in a buffer of
        its own: no second copy is made of what may be hundreds of megabytes."""
        size = ll.llama_state_seq_get_size(self._native.ctx, seq.seq_id)
        buf = (ctypes.c_uint8 * size)()
        got = ll.llama_state_seq_get_data(self._native.ctx, buf, size, seq.seq_id)
        return memoryview(buf).cast("B")[:got]

    def import_seq(self, seq: SeqState, payload: bytes | memoryview, tokens: Sequence[int]) -> bool:
        """Replace the sequence's cells with saved ones; False (sequence empty) if refused."""
        self.trim(seq, 0)
        if len(tokens) + 1 > self.seq_ctx:
            return False
        view = memoryview(payload)
        array = ctypes.c_uint8 * view.nbytes
        # A writable buffer (a file read into a bytearray) is handed over without a copy.
        buf = array.from_buffer_copy(view) if view.readonly else array.from_buffer(view)
        ok = ll.llama_state_seq_set_data(self._native.ctx, buf, len(payload), seq.seq_id)
        last = ll.llama_memory_seq_pos_max(self._native.memory, seq.seq_id)
        if not ok or last != len(tokens) - 1:
            self.forget(seq)
            return False
        seq.tokens = list(tokens)
        return True

    # -- decoding --

    def set_threads(self, threads: int) -> None:
        """Decode (and prefill) with `threads` threads from the next decode on."""
        ll.llama_set_n_threads(self._native.ctx, threads, threads)

    def decode(self) -> None:
        rc = ll.llama_decode(self._native.ctx, self.batch.raw)
        if rc == 1:
            raise EngineError("the context is full; lower --max-tokens or raise --ctx")
        if rc != 0:
            raise EngineError(f"llama.cpp decode failed (code {rc}); retry the request")

    def prefill(self, seq: SeqState, tokens: Sequence[int]) -> None:
        """Evaluate tokens after the sequence's cached ones; logits stay for the last."""
        self.check_prompt(len(seq.tokens) + len(tokens))
        step = self.opts.n_batch
        for start in range(0, len(tokens), step):
            chunk = tokens[start : start + step]
            self.batch.fill(chunk, len(seq.tokens), seq.seq_id)
            self.decode()
            seq.tokens.extend(chunk)

    def logits(self, index: int) -> np.ndarray:
        """A view (not a copy) of the logits of the last decode's output `index`."""
        ptr = ll.llama_get_logits_ith(self._native.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.vocab.n_tokens,))

    def step(self, seq: SeqState, token: int) -> None:
        """Evaluate one generated token."""
        self.batch.clear()
        self.batch.add(token, len(seq.tokens), seq.seq_id, True)
        self.decode()
        seq.tokens.append(token)
