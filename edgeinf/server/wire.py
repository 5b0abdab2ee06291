"""OpenAI wire types (pydantic), kept apart from the engine's own types."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOPS = 4


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class WireMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class Sampling(BaseModel):
    """Fields shared by chat and text completions, each bounded before any compute."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(None, ge=1, le=1 << 20)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int = Field(40, ge=0, le=1000)
    min_p: float = Field(0.05, ge=0.0, le=1.0, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    repeat_penalty: float = Field(1.0, gt=0.0, le=2.0, allow_inf_nan=False)
    n: int = Field(1, ge=1, le=1)
    seed: int | None = Field(None, ge=0, lt=1 << 32)
    stop: str | list[str] | None = None
    stream: bool = False
    user: str | None = Field(None, max_length=256)
    session_id: str | None = Field(None, max_length=64)
    # Accepted only to be refused with a clear error (a request may not supply templates).
    chat_template: Any = None
    chat_template_kwargs: Any = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOPS or any(not s or len(s) > 256 for s in stops):
            raise ValueError(f"stop takes at most {MAX_STOPS} non-empty strings of <= 256 chars")
        return stops


class ChatCompletionRequest(Sampling):
    messages: list[WireMessage] = Field(min_length=1, max_length=2048)
    # edgeinf: where to answer (default: the server's `route` setting), and privacy
    route: Literal["auto", "local", "remote"] | None = None
    private: bool = False


class CompletionRequest(Sampling):
    prompt: str = Field(max_length=1 << 22)


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    restored_tokens: int = 0  # edgeinf: prompt tokens whose KV state came from disk


def now() -> int:
    return int(time.time())
