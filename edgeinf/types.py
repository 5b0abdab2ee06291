"""Small frozen value types shared by every layer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from edgeinf.errors import InvalidRequestError

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidRequestError(what)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. temperature 0 means greedy (deterministic)."""

    max_tokens: int = 512
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF the answer must match (engine.grammar checks it)

    def __post_init__(self) -> None:
        for name in (
            "temperature",
            "top_p",
            "min_p",
            "repeat_penalty",
            "frequency_penalty",
            "presence_penalty",
        ):
            value = getattr(self, name)
            _check(math.isfinite(value), f"{name} must be a finite number, got {value}")
        _check(self.max_tokens >= 1, f"max_tokens must be at least 1, got {self.max_tokens}")
        _check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        _check(self.top_k >= 0, f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        _check(self.repeat_penalty > 0, f"repeat_penalty must be > 0, got {self.repeat_penalty}")
        _check(self.repeat_last_n >= 0, f"repeat_last_n must be >= 0, got {self.repeat_last_n}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            _check(-2 <= value <= 2, f"{name} must be in [-2, 2], got {value}")
        _check(
            self.seed is None or 0 <= self.seed < 2**32,
            f"seed must be in [0, 2^32), got {self.seed}",
        )
        _check(all(self.stop), "stop strings must not be empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        """Whether repetition penalties apply (they need the token history)."""
        return (
            self.repeat_penalty != 1.0
            or self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
        )


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Timings:
    """Seconds from the start of the request; decode speed excludes the first token."""

    ttft_s: float
    total_s: float
    decode_tok_s: float


@dataclass(frozen=True)
class Chunk:
    """One streamed piece of text; always whole UTF-8 characters."""

    text: str


@dataclass(frozen=True)
class Completion:
    """What a finished generation returns after its stream."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    token_ids: tuple[int, ...] = field(default=(), repr=False)
