"""llama.cpp's native sampler chain, built from SamplingParams (with the request's grammar);
and the distribution that chain draws from, for accepting drafted tokens fairly."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp as ll
import numpy as np

from edgeinf.engine.grammar import Grammar, candidates, of_sampling
from edgeinf.engine.vocab import Vocab
from edgeinf.errors import EngineError, InvalidRequestError
from edgeinf.types import DEFAULT_CHAIN, SamplingParams


def _shaping(chain: Any, params: SamplingParams, vocab: Any) -> None:
    """The chain's samplers before its final draw: top-k, top-p, min-p, temperature, or the
    request's own order of them (`SamplingParams.chain`, with llama.cpp's infill sampler)."""
    add = ll.llama_sampler_chain_add
    for name in params.chain or DEFAULT_CHAIN:
        if name == "top_k":
            if params.top_k > 0:
                add(chain, ll.llama_sampler_init_top_k(params.top_k))
        elif name == "top_p":
            add(chain, ll.llama_sampler_init_top_p(params.top_p, 1))
        elif name == "min_p":
            add(chain, ll.llama_sampler_init_min_p(params.min_p, 1))
        elif name == "temperature":
            add(chain, ll.llama_sampler_init_temp(params.temperature))
        else:
            add(chain, ll.llama_sampler_init_infill(vocab))


def check_bias(params: SamplingParams, n_vocab: int) -> None:
    """Refuse a logit bias for tokens the model does not have (before decoding starts)."""
    for token, _ in params.logit_bias:
        if not 0 <= token < n_vocab:
            raise InvalidRequestError(
                f"logit_bias: {token} is not a token of this model (0 to {n_vocab - 1}); "
                "take the ids from /tokenize",
                param="logit_bias",
            )


def _biased(chain: Any, params: SamplingParams, n_vocab: int) -> None:
    """The request's logit bias, first in the chain (as llama.cpp's common sampler puts it)."""
    if not params.logit_bias:
        return
    check_bias(params, n_vocab)
    bias = (ll.llama_logit_bias * len(params.logit_bias))(*params.logit_bias)
    ll.llama_sampler_chain_add(
        chain, ll.llama_sampler_init_logit_bias(n_vocab, len(params.logit_bias), bias)
    )


class Sampler:
    """A sampler chain; `sample` picks (and records) the next token from a context's logits,
    within the request's grammar when it has one."""

    def __init__(self, params: SamplingParams, vocab: Vocab) -> None:
        # Greedy picks are read straight from the logits (the first highest, as llama.cpp's
        # greedy sampler picks): its chain would copy all n_vocab candidates per pick, 0.14 ms
        # for a 151k vocabulary against 0.013 ms; a verification samples up to 17 rows.
        self._argmax = params.greedy and not params.penalized and not params.logit_bias
        self._penalized = params.penalized
        self.n_vocab = vocab.n_tokens
        self._grammar = of_sampling(vocab, params)
        self._cells: tuple[np.ndarray, Any] | None = None  # for picks the grammar narrows
        self._chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        add = ll.llama_sampler_chain_add
        _biased(self._chain, params, self.n_vocab)
        if params.penalized:
            add(
                self._chain,
                ll.llama_sampler_init_penalties(
                    self.n_vocab,
                    params.repeat_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
        if params.greedy:
            add(self._chain, ll.llama_sampler_init_greedy())
            return
        _shaping(self._chain, params, vocab.raw)
        seed = ll.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
        add(self._chain, ll.llama_sampler_init_dist(seed))

    def sample(self, ctx: Any, index: int) -> int:
        grammar = self._grammar
        if grammar is None:
            return self._pick(ctx, index)
        # As llama.cpp's common sampler does: the pick without the grammar first, which it
        # nearly always allows; only when it does not, the whole vocabulary is narrowed.
        # Repetition penalties keep a history, so there every pick goes through the grammar.
        token = -1 if self._penalized else self._pick(ctx, index)
        if token < 0 or not grammar.allows(token):
            token = self._narrowed(self._row(ctx, index), grammar)
        grammar.accept(token)
        return token

    def _row(self, ctx: Any, index: int) -> np.ndarray:
        logits = ll.llama_get_logits_ith(ctx, index)
        if not logits:
            raise EngineError(f"no logits at output {index}; retry the request")
        return np.ctypeslib.as_array(logits, shape=(self.n_vocab,))

    def _pick(self, ctx: Any, index: int) -> int:
        if self._argmax:
            return int(self._row(ctx, index).argmax())
        return int(ll.llama_sampler_sample(self._chain, ctx, index))

    def _narrowed(self, logits: np.ndarray, grammar: Grammar) -> int:
        """The pick among the tokens the grammar allows next."""
        if self._cells is None:
            self._cells = candidates(self.n_vocab)
            self._ids = np.arange(self.n_vocab, dtype=np.int32)  # made once: a pick is hot
        cells, array = self._cells
        cells["id"] = self._ids
        cells["logit"], cells["p"] = logits, 0.0
        array.size, array.selected, array.sorted = self.n_vocab, -1, False
        grammar.restrict(array)
        if not np.isfinite(cells["logit"]).any():
            raise InvalidRequestError(
                "grammar: it allows no token after what was written so far; check that "
                "every rule can match text and that the whole grammar can end",
                param="grammar",
            )
        if self._argmax:
            return int(cells["id"][cells["logit"].argmax()])
        ll.llama_sampler_apply(self._chain, ctypes.byref(array))
        token = int(cells["id"][array.selected])
        ll.llama_sampler_accept(self._chain, token)
        return token

    def close(self) -> None:
        if self._grammar is not None:
            self._grammar.close()
            self._grammar = None
        if self._chain:
            ll.llama_sampler_free(self._chain)
            self._chain = None

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Distribution:
    """What a sampled request's chain draws from, as a dense vector, computed by llama.cpp's
    own samplers on one logits row; with a generator for the draws that accept drafts.

    Speculative sampling needs the whole distribution of the target (and of a draft model) to
    accept a draft with probability min(1, p/q); the chain's last sampler only draws one token.
    """

    def __init__(self, params: SamplingParams, vocab: Vocab) -> None:
        assert not params.greedy and not params.penalized, "greedy and penalized never draft"
        self._chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        n_vocab = vocab.n_tokens
        _biased(self._chain, params, n_vocab)
        _shaping(self._chain, params, vocab.raw)
        self._cells, self._array = candidates(n_vocab)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self.rng = np.random.default_rng(params.seed)

    def of(self, logits: np.ndarray) -> np.ndarray:
        """The probabilities of every token after the chain's top-k, top-p, min-p and
        temperature (zero for the tokens they removed)."""
        cells = self._cells
        cells["id"] = self._ids
        cells["logit"] = logits
        cells["p"] = 0.0
        self._array.size, self._array.selected, self._array.sorted = len(cells), -1, False
        ll.llama_sampler_apply(self._chain, ctypes.byref(self._array))
        kept = cells[: self._array.size]
        x = kept["logit"].astype(np.float64)
        finite = np.isfinite(x)
        out = np.zeros(len(cells))
        e = np.exp(x[finite] - x[finite].max())
        out[kept["id"][finite]] = e / e.sum()
        return out

    def draw(self, p: np.ndarray) -> int:
        return int(self.rng.choice(len(p), p=p))

    def close(self) -> None:
        if self._chain:
            ll.llama_sampler_free(self._chain)
            self._chain = None
