"""Embeddings on real text, both paths: the shipped MiniLM encoder (onnxruntime) and a GGUF
model through llama.cpp (the 0.5B, mean of its hidden states). A paraphrase scores above an
unrelated sentence; a batch gives the vectors one-at-a-time calls give; long inputs are cut
or refused as asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeinf.config import Settings
from edgeinf.engine.embedder import GgufEmbedder
from edgeinf.errors import InvalidRequestError
from edgeinf.route.dispatch import encoder_files
from edgeinf.route.encoder import SentenceEncoder

PAIRS = [  # (text, its paraphrase, an unrelated text)
    ("A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."),
    (
        "How do I reverse a list in Python?",
        "What is the way to invert a Python list?",
        "The train to Lyon leaves at nine.",
    ),
    (
        "The cat sleeps on the warm windowsill.",
        "A cat is napping on the sunny window ledge.",
        "Interest rates were raised by the central bank.",
    ),
]


@pytest.fixture(scope="module")
def onnx(settings: Settings) -> SentenceEncoder:
    return SentenceEncoder(*encoder_files(settings), threads=2)


@pytest.fixture(scope="module")
def gguf(draft_path: Path) -> Iterator[GgufEmbedder]:
    embedder = GgufEmbedder(draft_path, threads=2)
    yield embedder
    embedder.close()


def _check(embed: SentenceEncoder | GgufEmbedder) -> None:
    texts = [t for triple in PAIRS for t in triple]
    done = embed.embed(texts)
    v = done.vectors
    assert v.shape == (len(texts), embed.dims) and done.tokens > len(texts)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    for i in range(len(PAIRS)):
        anchor, paraphrase, unrelated = v[3 * i], v[3 * i + 1], v[3 * i + 2]
        assert anchor @ paraphrase > anchor @ unrelated + 0.05, PAIRS[i]
    one_by_one = np.vstack([embed.embed([t]).vectors for t in texts])
    assert np.min(np.sum(one_by_one * v, axis=1)) > 0.999  # batching changes sums' order only


def test_the_onnx_encoder_ranks_paraphrases_first(onnx: SentenceEncoder) -> None:
    _check(onnx)


def test_a_gguf_model_ranks_paraphrases_first(gguf: GgufEmbedder) -> None:
    assert gguf.pooling == "mean" and gguf.dims == 896
    _check(gguf)


def _long_inputs(embed: SentenceEncoder | GgufEmbedder) -> None:
    long = "word " * 2000
    cut = embed.embed([long, "short"], truncate=True)
    assert cut.vectors.shape[0] == 2
    with pytest.raises(InvalidRequestError, match=r"input\[0\] has \d+ tokens"):
        embed.embed([long], truncate=False)
    assert embed.embed([""]).vectors.shape[0] == 1  # an empty text still has a vector


def test_the_onnx_encoder_cuts_or_refuses_a_long_input(onnx: SentenceEncoder) -> None:
    _long_inputs(onnx)


def test_a_gguf_model_cuts_or_refuses_a_long_input(gguf: GgufEmbedder) -> None:
    _long_inputs(gguf)
