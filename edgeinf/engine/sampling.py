"""llama.cpp's native sampler chain, built from SamplingParams; and the distribution that chain
draws from, for accepting drafted tokens fairly."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp as ll
import numpy as np

from edgeinf.errors import EngineError
from edgeinf.types import SamplingParams


def _shaping(chain: Any, params: SamplingParams) -> None:
    """The chain's samplers before its final draw: top-k, top-p, min-p, temperature."""
    add = ll.llama_sampler_chain_add
    if params.top_k > 0:
        add(chain, ll.llama_sampler_init_top_k(params.top_k))
    add(chain, ll.llama_sampler_init_top_p(params.top_p, 1))
    add(chain, ll.llama_sampler_init_min_p(params.min_p, 1))
    add(chain, ll.llama_sampler_init_temp(params.temperature))


class Sampler:
    """A sampler chain; `sample` picks (and records) the next token from a context's logits."""

    def __init__(self, params: SamplingParams, n_vocab: int) -> None:
        # Greedy picks are read straight from the logits (the first highest, as llama.cpp's
        # greedy sampler picks): its chain would copy all n_vocab candidates per pick, 0.14 ms
        # for a 151k vocabulary against 0.013 ms; a verification samples up to 17 rows.
        self._argmax = params.greedy and not params.penalized
        self.n_vocab = n_vocab
        self._chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        add = ll.llama_sampler_chain_add
        if params.penalized:
            add(
                self._chain,
                ll.llama_sampler_init_penalties(
                    n_vocab,
                    params.repeat_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
        if params.greedy:
            add(self._chain, ll.llama_sampler_init_greedy())
            return
        _shaping(self._chain, params)
        seed = ll.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
        add(self._chain, ll.llama_sampler_init_dist(seed))

    def sample(self, ctx: Any, index: int) -> int:
        if self._argmax:
            logits = ll.llama_get_logits_ith(ctx, index)
            if not logits:
                raise EngineError(f"no logits at output {index}; retry the request")
            return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())
        return int(ll.llama_sampler_sample(self._chain, ctx, index))

    def accept(self, token: int) -> None:
        """Feed a token the model was given (not sampled), for repetition penalties."""
        ll.llama_sampler_accept(self._chain, token)

    def close(self) -> None:
        if self._chain:
            ll.llama_sampler_free(self._chain)
            self._chain = None

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_CANDIDATE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Distribution:
    """What a sampled request's chain draws from, as a dense vector, computed by llama.cpp's
    own samplers on one logits row; with a generator for the draws that accept drafts.

    Speculative sampling needs the whole distribution of the target (and of a draft model) to
    accept a draft with probability min(1, p/q); the chain's last sampler only draws one token.
    """

    def __init__(self, params: SamplingParams, n_vocab: int) -> None:
        assert not params.greedy and not params.penalized, "greedy and penalized never draft"
        self._chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        _shaping(self._chain, params)
        self._cells = np.zeros(n_vocab, dtype=_CANDIDATE)
        self._array = ll.llama_token_data_array(
            data=self._cells.ctypes.data_as(ll.llama_token_data_p),
            size=n_vocab,
            selected=-1,
            sorted=False,
        )
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
