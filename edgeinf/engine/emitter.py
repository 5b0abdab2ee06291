"""From sampled tokens to an answer: text chunks, when to stop, usage and timings."""

from __future__ import annotations

import time

import numpy as np

from edgeinf.engine.insertion import InsertionStream
from edgeinf.engine.textstream import TextStream
from edgeinf.engine.vocab import Vocab
from edgeinf.types import Completion, FinishReason, SamplingParams, Timings, TokenLogprob, Usage


class Emitter:
    """One answer being written, in the decode loop."""

    def __init__(
        self, vocab: Vocab, params: SamplingParams, n_prompt: int, shifts: bool = False
    ) -> None:
        """With `shifts`, the context is shifted when full (Job.n_keep): only max_tokens
        ends the answer for length."""
        self.vocab, self.params, self.n_prompt, self.shifts = vocab, params, n_prompt, shifts
        self.stream = TextStream(params.stop)
        rules = params.insertion
        self.insertion = InsertionStream(rules) if rules is not None else None
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self._released = 0  # bytes of text let out
        self._covered = 0  # bytes of the tokens whose log-probabilities go with that text
        self._scored = 0  # entries of `logprobs` whose text was let out
        self._taken = 0  # of those, entries handed out by `scored`
        self.parts: list[str] = []
        self.finish: FinishReason | None = None
        self.started = time.perf_counter()
        self.first_at: float | None = None
        self._last_at = 0.0
        self.stall = 0.0  # the longest wait between two tokens, seconds
        self.stopped_by_insertion = False

    def push(self, token: int, logits: np.ndarray | None = None) -> str:
        """Take one sampled token (with the logits it was picked from, when the answer
        reports log-probabilities); return the text it releases (maybe empty)."""
        now = time.perf_counter()
        if self.first_at is None:
            self.first_at = now
        else:
            self.stall = max(self.stall, now - self._last_at)
        self._last_at = now
        if self.vocab.is_eog(token):
            self.finish = "stop"
            return ""
        self.tokens.append(token)
        if logits is not None and self.params.logprobs is not None:
            self.logprobs.append(self._logprob(token, logits, self.params.logprobs))
        text = self.stream.push(self.vocab.piece(token))
        if self.insertion is not None:
            text = self.insertion.push(text)
            if self.stream.stopped:
                text += self.insertion.flush()
            self.stopped_by_insertion = self.insertion.stopped
        if self.stream.stopped or self.stopped_by_insertion:
            self.finish = "stop"
        self._release(text)
        return text

    def _release(self, text: str) -> None:
        """Keep text let out, and count the tokens it covers: those of a stop string cut
        from the answer are never covered."""
        if not text:
            return
        self.parts.append(text)
        self._released += len(text.encode())
        while self._scored < len(self.logprobs) and self._covered < self._released:
            self._covered += len(self.logprobs[self._scored].piece)
            self._scored += 1

    def scored(self) -> tuple[TokenLogprob, ...]:
        """The log-probabilities of the tokens whose text was let out since the last call
        (streamed with that text)."""
        out = tuple(self.logprobs[self._taken : self._scored])
        self._taken = self._scored
        return out

    def left(self, n_cached: int, n_ctx: int) -> int:
        """How many more tokens this answer may take, with `n_cached` tokens in the cache."""
        return min(self.params.max_tokens - len(self.tokens), n_ctx - n_cached - 1)

    def budget(self, n_cached: int, n_ctx: int) -> int:
        """How many more tokens this answer may take; 0 ends it for length."""
        left = (
            self.params.max_tokens - len(self.tokens) if self.shifts else self.left(n_cached, n_ctx)
        )
        if left <= 0 and self.finish is None:
            self.finish = "length"
        return max(left, 0)

    def _logprob(self, token: int, logits: np.ndarray, rivals: int) -> TokenLogprob:
        """One pass each for the maximum, the normaliser and the rivals, in the logits'
        own float32 (the sum in float64): about 0.5 ms for a 150k vocabulary, where a
        float64 copy of the whole row cost ten times that per token."""
        top = float(logits.max())
        norm = top + float(np.log(np.exp(logits - top).sum(dtype=np.float64)))
        if rivals:
            best = np.argpartition(logits, -rivals)[-rivals:]
            best = best[np.argsort(-logits[best], kind="stable")]
        else:
            best = np.array([], dtype=int)
        piece = self.vocab.piece
        return TokenLogprob(
            token,
            piece(token),
            float(logits[token]) - norm,
            tuple((int(t), piece(int(t)), float(logits[t]) - norm) for t in best),
        )

    def flush(self) -> str:
        """Text held back for a stop string that never came."""
        if self.stream.stopped or self.stopped_by_insertion:
            return ""
        rest = self.stream.flush()
        if self.insertion is not None:
            rest = self.insertion.push(rest) + self.insertion.flush()
        self._release(rest)
        return rest

    def completion(self) -> Completion:
        done = time.perf_counter()
        first = self.first_at or done
        decode_s = done - first
        n = len(self.tokens)
        text = "".join(self.parts)
        return Completion(
            text=text,
            finish_reason=self.finish or "stop",
            usage=Usage(self.n_prompt, n),
            timings=Timings(
                ttft_s=first - self.started,
                total_s=done - self.started,
                decode_tok_s=(n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0,
                stall_s=self.stall,
            ),
            token_ids=tuple(self.tokens),
            logprobs=tuple(self.logprobs[: self._scored]),
        )
