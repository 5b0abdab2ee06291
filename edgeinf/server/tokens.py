"""/tokenize and /detokenize as llama.cpp's server answers them: a model's tokens for a text
and the text of tokens (clients count a prompt's tokens before sending it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from edgeinf.server.answer import runtime
from edgeinf.server.schema import ERRORS, Detokenized, Tokenized
from edgeinf.server.wire import Text

router = APIRouter(responses=ERRORS)


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Text = Field(max_length=1 << 22)
    model: Text | None = Field(None, max_length=512, description="edgeinf: default the server's")
    add_special: bool = False  # the BOS token, for a model that has one
    parse_special: bool = True  # control-token text becomes the control token
    with_pieces: bool = False  # each token with its text


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[int] = Field(max_length=1 << 20)
    model: Text | None = Field(None, max_length=512, description="edgeinf: default the server's")


def _piece(data: bytes) -> str | list[int]:
    """A token's text; its bytes when they are not whole UTF-8 (a character split across
    tokens), as llama.cpp's server gives them."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return list(data)


@router.post("/tokenize", response_model=Tokenized)
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    service = (await runtime(request).serving(body.model)).service
    tokens = service.tokenize(body.content, body.add_special, body.parse_special)
    if not body.with_pieces:
        return {"tokens": tokens}
    return {"tokens": [{"id": t, "piece": _piece(service.piece(t))} for t in tokens]}


@router.post("/detokenize", response_model=Detokenized)
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    service = (await runtime(request).serving(body.model)).service
    return {"content": service.detokenize(body.tokens)}
