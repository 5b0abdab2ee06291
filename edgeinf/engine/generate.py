"""Plain decoding: prompt tokens in, a stream of text chunks out, a Completion at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.sampling import Sampler
from edgeinf.engine.textstream import TextStream
from edgeinf.types import Chunk, Completion, FinishReason, SamplingParams, Timings, Usage


class Generation:
    """Iterate for the text chunks; `completion` is set once the iteration ends.

    Closing the iterator early (a cancelled request) stops decoding at once; the sequence
    keeps the KV cells of every token evaluated so far.
    """

    def __init__(
        self, engine: Engine, seq: SeqState, prompt: Sequence[int], params: SamplingParams
    ) -> None:
        engine.check_prompt(len(prompt), params.max_tokens)
        self.engine, self.seq, self.prompt, self.params = engine, seq, list(prompt), params
        self.completion: Completion | None = None
        self.reused_tokens = 0

    def __iter__(self) -> Iterator[Chunk]:
        with self.engine.lock:
            yield from self._run()

    def text(self) -> str:
        """Run to the end and return the whole answer."""
        return "".join(c.text for c in self)

    def _run(self) -> Iterator[Chunk]:
        engine, seq, params = self.engine, self.seq, self.params
        started = time.perf_counter()
        self.reused_tokens = engine.reuse_prefix(seq, self.prompt)
        engine.prefill(seq, self.prompt[self.reused_tokens :])
        stream = TextStream(params.stop)
        out: list[int] = []
        parts: list[str] = []
        finish: FinishReason = "length"
        first_at = started
        with Sampler(params, engine.vocab.n_tokens) as sampler:
            while True:
                token = sampler.sample(engine.ctx, -1)
                if not out:
                    first_at = time.perf_counter()
                if engine.vocab.is_eog(token):
                    finish = "stop"
                    break
                out.append(token)
                text = stream.push(engine.vocab.piece(token))
                if text:
                    parts.append(text)
                    yield Chunk(text)
                if stream.stopped:
                    finish = "stop"
                    break
                if len(out) >= params.max_tokens or len(seq.tokens) + 1 >= engine.n_ctx:
                    break
                engine.step(seq, token)
        if not stream.stopped and (rest := stream.flush()):
            parts.append(rest)
            yield Chunk(rest)
        done = time.perf_counter()
        decode_s = done - first_at
        self.completion = Completion(
            text="".join(parts),
            finish_reason=finish,
            usage=Usage(len(self.prompt), len(out)),
            timings=Timings(
                ttft_s=first_at - started,
                total_s=done - started,
                decode_tok_s=(len(out) - 1) / decode_s if len(out) > 1 and decode_s > 0 else 0.0,
            ),
            token_ids=tuple(out),
        )
