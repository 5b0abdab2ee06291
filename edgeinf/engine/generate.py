"""Decoding one sequence: prompt tokens in, text chunks out, a Completion at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from edgeinf.engine.decoders import Decoder, DraftStats, PlainDecoder
from edgeinf.engine.emitter import Emitter
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.types import Chunk, Completion, SamplingParams

MakeDecoder = Callable[[Engine, SeqState, SamplingParams], Decoder]


class Generation:
    """Iterate for the text chunks; `completion` is set once the iteration ends.

    Closing the iterator early (a cancelled request) stops decoding at once; the sequence
    keeps the KV cells of every token evaluated so far.
    """

    def __init__(
        self,
        engine: Engine,
        seq: SeqState,
        prompt: Sequence[int],
        params: SamplingParams,
        make_decoder: MakeDecoder = PlainDecoder,
    ) -> None:
        engine.check_prompt(len(prompt), params.max_tokens)
        self.engine, self.seq, self.prompt, self.params = engine, seq, list(prompt), params
        self.make_decoder = make_decoder
        self.completion: Completion | None = None
        self.draft_stats = DraftStats()
        self.reused_tokens = 0

    def __iter__(self) -> Iterator[Chunk]:
        with self.engine.lock:
            yield from self._run()

    def text(self) -> str:
        """Run to the end and return the whole answer."""
        return "".join(c.text for c in self)

    def _run(self) -> Iterator[Chunk]:
        engine, seq, params = self.engine, self.seq, self.params
        emitter = Emitter(engine.vocab, params, len(self.prompt))
        self.reused_tokens = engine.reuse_prefix(seq, self.prompt)
        engine.prefill(seq, self.prompt[self.reused_tokens :])
        decoder = self.make_decoder(engine, seq, params)
        try:
            pending = [decoder.first()]
            while True:
                for token in pending:
                    if text := emitter.push(token):
                        yield Chunk(text)
                    if emitter.finish:
                        break
                budget = emitter.budget(len(seq.tokens), engine.seq_ctx)
                if emitter.finish:
                    break
                pending = decoder.advance(pending[-1], budget)
        finally:
            decoder.close()
        if rest := emitter.flush():
            yield Chunk(rest)
        self.draft_stats = decoder.stats
        self.completion = emitter.completion()


def generate_once(
    engine: Engine,
    prompt: Sequence[int],
    params: SamplingParams,
    make_decoder: MakeDecoder = PlainDecoder,
) -> Generation:
    """Run a whole answer on an empty sequence 0 and empty it again (benchmarks, tests)."""
    seq = SeqState(0)
    gen = Generation(engine, seq, prompt, params, make_decoder)
    try:
        gen.text()
    finally:
        engine.trim(seq, 0)
    return gen
