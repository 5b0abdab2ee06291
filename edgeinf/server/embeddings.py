"""/v1/embeddings: texts to vectors, OpenAI's shape."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request

from edgeinf.engine.embedder import unit
from edgeinf.errors import InvalidRequestError
from edgeinf.server.answer import runtime
from edgeinf.server.schema import ERRORS, EmbeddingList
from edgeinf.server.wire import EmbeddingRequest

router = APIRouter(responses=ERRORS)


def shorten(vectors: npt.NDArray[np.float32], dimensions: int | None) -> npt.NDArray[np.float32]:
    """The first `dimensions` of each vector, unit length again (what Matryoshka-trained
    models are made for, and what Ollama and OpenAI do); None keeps them whole."""
    if dimensions is None:
        return vectors
    if dimensions > vectors.shape[1]:
        raise InvalidRequestError(
            f"dimensions: the model's vectors have {vectors.shape[1]}; ask for at most that",
            param="dimensions",
        )
    return unit(vectors[:, :dimensions])


@router.post("/v1/embeddings", response_model=EmbeddingList)
async def embeddings(req: EmbeddingRequest, request: Request) -> dict[str, Any]:
    rt = runtime(request)
    resident, done = await rt.embed(req.model, req.texts(), req.truncate, req.keep_alive)
    vectors = shorten(done.vectors, req.dimensions)
    rt.metrics.embedded.inc(len(vectors))

    def encoded(row: npt.NDArray[np.float32]) -> list[float] | str:
        if req.encoding_format == "base64":  # little-endian float32, as OpenAI sends it
            return base64.b64encode(row.astype("<f4").tobytes()).decode()
        return [float(x) for x in row]

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encoded(row)}
            for i, row in enumerate(vectors)
        ],
        "model": resident.name,
        "usage": {"prompt_tokens": done.tokens, "total_tokens": done.tokens},
    }
